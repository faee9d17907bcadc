/* Unit tests for server/db.c against a real PostgreSQL (a throwaway private cluster started with
 * server/pgcluster.c): owned transactions refuse to nest and never commit the caller's work early,
 * a connection handed back inside a transaction is rolled back, advisory locks exclude, binary COPY
 * stores each type's value as PostgreSQL reads it and a refused row leaves nothing of its COPY. */
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

static const db_stmt st_copy_types = {"t_copy_types", "COPY ct (u, s, ts, i, a, e, n, f, z) FROM STDIN (FORMAT binary)",
				      0};
static const db_stmt st_copy_checked = {"t_copy_checked", "COPY cc (v) FROM STDIN (FORMAT binary)", 0};
static const db_stmt st_copy_types_read = {
	"t_copy_types_read",
	"SELECT u::text, s, extract(epoch FROM ts)::bigint, i, a::text, e::text, n, f = 0.1::float8, z IS NULL"
	" FROM ct ORDER BY i",
	0};
static const db_stmt st_copy_checked_count = {"t_copy_checked_count", "SELECT count(*) FROM cc", 0};

static void copy_types_row(db_copy *cp, const uint8_t u[16], const char *s, int64_t ts, int32_t i, const int64_t *a,
			   size_t na, int64_t n)
{
	db_copy_row(cp, 9);
	db_copy_uuid(cp, u);
	db_copy_text(cp, s);
	db_copy_timestamptz(cp, ts);
	db_copy_int4(cp, i);
	db_copy_int8_array(cp, a, na);
	db_copy_int8_array(cp, NULL, 0);
	db_copy_int8(cp, n);
	db_copy_float8(cp, 0.1);
	db_copy_null(cp);
}

static void test_copy_binary_values(void **state)
{
	gn_err err;
	uint8_t u[16];
	PGresult *res = NULL;
	db_copy cp;
	int64_t rows = 0;
	const int64_t a[] = {1, -2, INT64_MAX};
	(void)state;
	db_conn *c = db_acquire(pool);
	assert_int_equal(db_exec_sql(c,
				     "CREATE TABLE ct (u uuid, s text, ts timestamptz, i int, a bigint[], e bigint[],"
				     " n bigint, f float8, z float8)",
				     &err),
			 0);
	assert_int_equal(gn_uuid_parse(u, "01234567-89ab-cdef-0123-456789ABCDEF"), 0);
	db_copy_init(&cp);
	copy_types_row(&cp, u, "tab\there, line\nbreak, back\\slash \"quoted\" \xc3\xa9", 0, 1, a, 3, INT64_MIN);
	copy_types_row(&cp, u, "", 946684800 + 86400 + 1, 2, a, 1, -1);
	assert_int_equal(db_copy_send(&rows, c, &st_copy_types, &cp, &err), 0);
	assert_int_equal(rows, 2);
	db_copy_cleanup(&cp);
	assert_int_equal(db_exec(&res, c, &st_copy_types_read, NULL, &err), 0);
	assert_int_equal(PQntuples(res), 2);
	const char *want[2][9] = {
		{"01234567-89ab-cdef-0123-456789abcdef", "tab\there, line\nbreak, back\\slash \"quoted\" \xc3\xa9", "0",
		 "1", "{1,-2,9223372036854775807}", "{}", "-9223372036854775808", "t", "t"},
		{"01234567-89ab-cdef-0123-456789abcdef", "", "946771201", "2", "{1}", "{}", "-1", "t", "t"},
	};
	for (int r = 0; r < 2; r++)
		for (int k = 0; k < 9; k++)
			assert_string_equal(PQgetvalue(res, r, k), want[r][k]);
	PQclear(res);
	db_release(pool, c);
}

/* A row PostgreSQL refuses in the middle of a COPY larger than one chunk sent to libpq: an error
 * naming the constraint, no row of that COPY stored, and the connection good for the next. */
static void test_copy_refused_row_stores_nothing(void **state)
{
	gn_err err;
	PGresult *res = NULL;
	db_copy cp;
	(void)state;
	db_conn *c = db_acquire(pool);
	assert_int_equal(db_exec_sql(c, "CREATE TABLE cc (v bigint CHECK (v <> 150000))", &err), 0);
	db_copy_init(&cp);
	for (int64_t v = 0; v < 200000; v++) {
		db_copy_row(&cp, 1);
		db_copy_int8(&cp, v);
	}
	assert_true(cp.buf.len > 2u << 20);
	assert_int_equal(db_tx_begin(c, &err), 0);
	assert_int_equal(db_copy_send(NULL, c, &st_copy_checked, &cp, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "cc_v_check"));
	db_tx_rollback(c);
	/* outside a transaction too */
	assert_int_equal(db_copy_send(NULL, c, &st_copy_checked, &cp, &err), GN_EINVAL);
	db_copy_cleanup(&cp);
	/* a row of the wrong width */
	db_copy_init(&cp);
	db_copy_row(&cp, 2);
	db_copy_int8(&cp, 1);
	db_copy_int8(&cp, 2);
	assert_int_not_equal(db_copy_send(NULL, c, &st_copy_checked, &cp, &err), 0);
	db_copy_cleanup(&cp);
	assert_int_equal(db_exec(&res, c, &st_copy_checked_count, NULL, &err), 0);
	assert_string_equal(PQgetvalue(res, 0, 0), "0");
	PQclear(res);
	/* the connection still works: a good COPY goes in */
	db_copy_init(&cp);
	db_copy_row(&cp, 1);
	db_copy_int8(&cp, 7);
	assert_int_equal(db_copy_send(NULL, c, &st_copy_checked, &cp, &err), 0);
	db_copy_cleanup(&cp);
	assert_int_equal(db_exec(&res, c, &st_copy_checked_count, NULL, &err), 0);
	assert_string_equal(PQgetvalue(res, 0, 0), "1");
	PQclear(res);
	db_release(pool, c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nested_begin_refused),
		cmocka_unit_test(test_commit_and_rollback),
		cmocka_unit_test(test_failed_commit_ends_transaction),
		cmocka_unit_test(test_release_rolls_back),
		cmocka_unit_test(test_advisory_locks_exclude),
		cmocka_unit_test(test_copy_binary_values),
		cmocka_unit_test(test_copy_refused_row_stores_nothing),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
