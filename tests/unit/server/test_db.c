/* Unit tests for server/db.c against a real PostgreSQL (a throwaway private cluster started with
 * server/pgcluster.c): owned transactions refuse to nest and never commit the caller's work early,
 * a connection handed back inside a transaction is rolled back, advisory locks exclude. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "db.h"
#include "pgcluster.h"

static pgcluster *pg;
static db_pool *pool;
static char dir[] = "/tmp/gn-test-db-XXXXXX";

static const db_stmt st_insert = {"t_insert", "INSERT INTO t (v) VALUES ($1)", 1};
static const db_stmt st_count = {"t_count", "SELECT count(*) FROM t WHERE v = $1", 1};

static int setup(void **state)
{
	gn_err err;
	char *conninfo = NULL;
	(void)state;
	if (!mkdtemp(dir))
		return -1;
	if (pgcluster_start(&pg, &conninfo, dir, "", "", &err)) {
		fprintf(stderr, "cannot start PostgreSQL: %s\n", err.msg);
		return -1;
	}
	int rc = db_pool_new(&pool, conninfo, 8, &err);
	free(conninfo);
	if (rc) {
		fprintf(stderr, "cannot connect: %s\n", err.msg);
		return -1;
	}
	db_conn *c = db_acquire(pool);
	rc = db_exec_sql(c, "CREATE TABLE t (v text)", &err);
	db_release(pool, c);
	return rc;
}

static int teardown(void **state)
{
	(void)state;
	db_pool_free(pool);
	pgcluster_stop(pg);
	char *cmd = gn_asprintf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	free(cmd);
	return 0;
}

static long count(db_conn *c, const char *v)
{
	PGresult *res = NULL;
	gn_err err;
	const char *p[] = {v};
	assert_int_equal(db_exec(&res, c, &st_count, p, &err), 0);
	long n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return n;
}

static void insert(db_conn *c, const char *v)
{
	gn_err err;
	const char *p[] = {v};
	assert_int_equal(db_exec(NULL, c, &st_insert, p, &err), 0);
}

static void test_nested_begin_refused(void **state)
{
	gn_err err;
	(void)state;
	db_conn *c = db_acquire(pool);
	assert_int_equal(db_tx_begin(c, &err), 0);
	insert(c, "outer");
	/* A plain BEGIN here would only warn, and a nested COMMIT would commit "outer" early. */
	memset(&err, 0, sizeof(err));
	assert_int_equal(db_tx_begin(c, &err), GN_ERROR);
	assert_non_null(strstr(err.msg, "inside another"));
	assert_true(db_in_tx(c));
	db_tx_rollback(c);
	assert_false(db_in_tx(c));
	assert_int_equal(count(c, "outer"), 0);
	db_release(pool, c);
}

static void test_commit_and_rollback(void **state)
{
	gn_err err;
	(void)state;
	db_conn *c = db_acquire(pool);
	assert_int_equal(db_tx_begin(c, &err), 0);
	insert(c, "kept");
	assert_int_equal(db_tx_commit(c, &err), 0);
	assert_false(db_in_tx(c));
	assert_int_equal(db_tx_begin(c, &err), 0);
	insert(c, "dropped");
	db_tx_rollback(c);
	db_tx_rollback(c); /* harmless outside a transaction */
	assert_int_equal(count(c, "kept"), 1);
	assert_int_equal(count(c, "dropped"), 0);
	db_release(pool, c);
}

static void test_failed_commit_ends_transaction(void **state)
{
	gn_err err;
	(void)state;
	db_conn *c = db_acquire(pool);
	assert_int_equal(db_tx_begin(c, &err), 0);
	/* An error inside the transaction aborts it: COMMIT then fails and must leave it closed. */
	assert_int_not_equal(db_exec_sql(c, "SELECT 1/0", &err), 0);
	memset(&err, 0, sizeof(err));
	assert_int_not_equal(db_tx_commit(c, &err), 0);
	assert_non_null(strstr(err.msg, "rolled back"));
	assert_false(db_in_tx(c));
	assert_int_equal(PQtransactionStatus(db_pg(c)), PQTRANS_IDLE);
	assert_int_equal(db_tx_begin(c, &err), 0);
	db_tx_rollback(c);
	db_release(pool, c);
}

static void test_release_rolls_back(void **state)
{
	gn_err err;
	(void)state;
	db_conn *c = db_acquire(pool);
	assert_int_equal(db_tx_begin(c, &err), 0);
	insert(c, "abandoned");
	db_release(pool, c);
	c = db_acquire(pool);
	assert_false(db_in_tx(c));
	assert_int_equal(count(c, "abandoned"), 0);
	assert_int_equal(db_tx_begin(c, &err), 0);
	db_tx_rollback(c);
	db_release(pool, c);
}

static void test_advisory_locks_exclude(void **state)
{
	gn_err err;
	bool got = false;
	(void)state;
	db_conn *a = db_acquire(pool), *b = db_acquire(pool);
	assert_int_equal(db_lock_session(a, DB_LOCK_JOBS, &err), 0);
	assert_int_equal(db_try_lock_session(&got, b, DB_LOCK_JOBS, &err), 0);
	assert_false(got);
	db_unlock_session(a, DB_LOCK_JOBS);
	assert_int_equal(db_try_lock_session(&got, b, DB_LOCK_JOBS, &err), 0);
	assert_true(got);
	db_unlock_session(b, DB_LOCK_JOBS);
	/* A transaction lock is released by the end of its transaction. */
	assert_int_equal(db_tx_begin(a, &err), 0);
	assert_int_equal(db_lock_xact(a, DB_LOCK_TUF, &err), 0);
	assert_int_equal(db_try_lock_session(&got, b, DB_LOCK_TUF, &err), 0);
	assert_false(got);
	assert_int_equal(db_tx_commit(a, &err), 0);
	assert_int_equal(db_try_lock_session(&got, b, DB_LOCK_TUF, &err), 0);
	assert_true(got);
	db_unlock_session(b, DB_LOCK_TUF);
	db_release(pool, a);
	db_release(pool, b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nested_begin_refused),           cmocka_unit_test(test_commit_and_rollback),
		cmocka_unit_test(test_failed_commit_ends_transaction), cmocka_unit_test(test_release_rolls_back),
		cmocka_unit_test(test_advisory_locks_exclude),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
