/* A fixed-size PostgreSQL connection pool with per-connection lazily prepared statements. */
#include "db.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct db_conn {
	PGconn *pg;
	const db_stmt **prepared;
	size_t nprepared;
	bool busy;
	bool in_tx; /* inside db_tx_begin .. db_tx_commit/rollback */
};

struct db_pool {
	pthread_mutex_t lock;
	pthread_cond_t freed;
	char *conninfo;
	db_conn *conns;
	int size;
	int in_use;
	uint64_t waits;
};

static void conn_forget_prepared(db_conn *c)
{
	free(c->prepared);
	c->prepared = NULL;
	c->nprepared = 0;
}

int db_pool_new(db_pool **out, const char *conninfo, int size, gn_err *err)
{
	db_pool *p = gn_calloc(1, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->freed, NULL);
	p->conninfo = gn_strdup(conninfo);
	p->size = size;
	p->conns = gn_calloc((size_t)size, sizeof(*p->conns));
	for (int i = 0; i < size; i++) {
		p->conns[i].pg = PQconnectdb(conninfo);
		if (PQstatus(p->conns[i].pg) != CONNECTION_OK) {
			gn_err_set(err, GN_EUNAVAIL, "cannot connect to PostgreSQL: %s",
				   PQerrorMessage(p->conns[i].pg));
			/* strip libpq's trailing newline */
			if (err && strlen(err->msg) && err->msg[strlen(err->msg) - 1] == '\n')
				err->msg[strlen(err->msg) - 1] = '\0';
			db_pool_free(p);
			return GN_EUNAVAIL;
		}
	}
	*out = p;
	return 0;
}

void db_pool_free(db_pool *p)
{
	if (!p)
		return;
	for (int i = 0; i < p->size; i++) {
		if (p->conns[i].pg)
			PQfinish(p->conns[i].pg);
		conn_forget_prepared(&p->conns[i]);
	}
	free(p->conns);
	free(p->conninfo);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->freed);
	free(p);
}

db_conn *db_acquire(db_pool *p)
{
	db_conn *c = NULL;
	pthread_mutex_lock(&p->lock);
	if (p->in_use == p->size)
		p->waits++;
	while (p->in_use == p->size)
		pthread_cond_wait(&p->freed, &p->lock);
	for (int i = 0; i < p->size; i++) {
		if (!p->conns[i].busy) {
			c = &p->conns[i];
			break;
		}
	}
	c->busy = true;
	p->in_use++;
	pthread_mutex_unlock(&p->lock);
	if (PQstatus(c->pg) != CONNECTION_OK) {
		/* The server restarted or the network dropped: reconnect; statements are gone. */
		conn_forget_prepared(c);
		PQreset(c->pg);
		if (PQstatus(c->pg) == CONNECTION_OK)
			gn_log(GN_LOG_INFO, "event=db_reconnected");
	}
	return c;
}

void db_release(db_pool *p, db_conn *c)
{
	if (!c)
		return;
	if (c->in_tx)
		gn_log(GN_LOG_WARN,
		       "event=db_tx_left_open note=\"rolled back when the connection went back to the pool\"");
	c->in_tx = false;
	if (PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
		PGresult *r = PQexec(c->pg, "ROLLBACK");
		PQclear(r);
	}
	pthread_mutex_lock(&p->lock);
	c->busy = false;
	p->in_use--;
	pthread_cond_signal(&p->freed);
	pthread_mutex_unlock(&p->lock);
}

static int result_error(PGresult *res, db_conn *c, const char *what, gn_err *err)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	if (!msg)
		msg = PQerrorMessage(c->pg);
	if (PQstatus(c->pg) != CONNECTION_OK)
		return gn_err_set(err, GN_EUNAVAIL, "database connection lost during %s", what);
	if (state && strcmp(state, "23505") == 0)
		return gn_err_set(err, GN_ECONFLICT, "%s", msg);
	if (state && (strncmp(state, "22", 2) == 0 || strcmp(state, "23514") == 0))
		return gn_err_set(err, GN_EINVAL, "%s", msg);
	gn_log(GN_LOG_ERROR, "event=db_error stmt=%s sqlstate=%s msg=\"%s\"", what, state ? state : "-", msg);
	return gn_err_set(err, GN_ERROR, "database error in %s", what);
}

static int ensure_prepared(db_conn *c, const db_stmt *s, gn_err *err)
{
	for (size_t i = 0; i < c->nprepared; i++)
		if (c->prepared[i] == s)
			return 0;
	PGresult *res = PQprepare(c->pg, s->name, s->sql, s->nparams, NULL);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		int rc = result_error(res, c, s->name, err);
		PQclear(res);
		return rc;
	}
	PQclear(res);
	c->prepared = gn_realloc(c->prepared, (c->nprepared + 1) * sizeof(*c->prepared));
	c->prepared[c->nprepared++] = s;
	return 0;
}

int db_exec(PGresult **out, db_conn *c, const db_stmt *s, const char *const *params, gn_err *err)
{
	int rc;
	if (out)
		*out = NULL;
	if ((rc = ensure_prepared(c, s, err)))
		return rc;
	PGresult *res = PQexecPrepared(c->pg, s->name, s->nparams, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		rc = result_error(res, c, s->name, err);
		PQclear(res);
		return rc;
	}
	if (out)
		*out = res;
	else
		PQclear(res);
	return 0;
}

int db_exec_sql(db_conn *c, const char *sql, gn_err *err)
{
	PGresult *res = PQexec(c->pg, sql);
	ExecStatusType st = PQresultStatus(res);
	int rc = 0;
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		rc = gn_err_set(err, PQstatus(c->pg) == CONNECTION_OK ? GN_ERROR : GN_EUNAVAIL, "SQL failed: %s",
				msg ? msg : PQerrorMessage(c->pg));
	}
	PQclear(res);
	return rc;
}

static void exec_logged(db_conn *c, const char *sql)
{
	gn_err err;
	if (db_exec_sql(c, sql, &err))
		gn_log(GN_LOG_WARN, "event=db_error sql=\"%s\" msg=\"%s\"", sql, err.msg);
}

int db_tx_begin(db_conn *c, gn_err *err)
{
	int rc;
	if (c->in_tx || PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
		gn_log(GN_LOG_ERROR, "event=bug msg=\"nested transaction refused\"");
		return gn_err_set(err, GN_ERROR, "internal error: a transaction was opened inside another");
	}
	if ((rc = db_exec_sql(c, "BEGIN", err)))
		return rc;
	c->in_tx = true;
	return 0;
}

int db_tx_commit(db_conn *c, gn_err *err)
{
	assert(c->in_tx);
	c->in_tx = false;
	PGresult *res = PQexec(c->pg, "COMMIT");
	int rc = 0;
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		rc = result_error(res, c, "COMMIT", err);
	else if (strcmp(PQcmdStatus(res), "COMMIT") != 0)
		/* PostgreSQL answers COMMIT in a failed transaction with ROLLBACK, and no error. */
		rc = gn_err_set(err, GN_ERROR, "the transaction had failed and was rolled back, not committed");
	PQclear(res);
	/* A failed COMMIT leaves the transaction aborted (or the connection gone): end it. */
	if (rc && PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
		exec_logged(c, "ROLLBACK");
	return rc;
}

void db_tx_rollback(db_conn *c)
{
	if (!c->in_tx)
		return;
	c->in_tx = false;
	if (PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
		exec_logged(c, "ROLLBACK");
}

bool db_in_tx(const db_conn *c)
{
	return c->in_tx;
}

static const db_stmt st_lock_xact = {"db_lock_xact", "SELECT pg_advisory_xact_lock($1::bigint)", 1};
static const db_stmt st_lock_xact_text = {"db_lock_xact_text",
					  "SELECT pg_advisory_xact_lock(hashtextextended($2, $1::bigint))", 2};
static const db_stmt st_lock = {"db_lock_session", "SELECT pg_advisory_lock($1::bigint)", 1};
static const db_stmt st_trylock = {"db_trylock_session", "SELECT pg_try_advisory_lock($1::bigint)", 1};
static const db_stmt st_unlock = {"db_unlock_session", "SELECT pg_advisory_unlock($1::bigint)", 1};

int db_lock_xact(db_conn *c, enum db_lock key, gn_err *err)
{
	char k[24];
	assert(c->in_tx);
	snprintf(k, sizeof(k), "%lld", (long long)key);
	const char *p[] = {k};
	return db_exec(NULL, c, &st_lock_xact, p, err);
}

int db_lock_xact_text(db_conn *c, enum db_lock_ns ns, const char *text, gn_err *err)
{
	char k[24];
	assert(c->in_tx);
	snprintf(k, sizeof(k), "%d", (int)ns);
	const char *p[] = {k, text};
	return db_exec(NULL, c, &st_lock_xact_text, p, err);
}

int db_lock_session(db_conn *c, int64_t key, gn_err *err)
{
	char k[24];
	snprintf(k, sizeof(k), "%lld", (long long)key);
	const char *p[] = {k};
	return db_exec(NULL, c, &st_lock, p, err);
}

int db_try_lock_session(bool *out_got, db_conn *c, int64_t key, gn_err *err)
{
	char k[24];
	PGresult *res = NULL;
	snprintf(k, sizeof(k), "%lld", (long long)key);
	const char *p[] = {k};
	*out_got = false;
	int rc = db_exec(&res, c, &st_trylock, p, err);
	if (!rc)
		*out_got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return rc;
}

void db_unlock_session(db_conn *c, int64_t key)
{
	char k[24];
	gn_err err;
	snprintf(k, sizeof(k), "%lld", (long long)key);
	const char *p[] = {k};
	if (db_exec(NULL, c, &st_unlock, p, &err))
		gn_log(GN_LOG_WARN, "event=db_unlock_failed key=%s msg=\"%s\"", k, err.msg);
}

PGconn *db_pg(db_conn *c)
{
	return c->pg;
}

const char *db_val(const PGresult *res, int r, int col)
{
	return PQgetisnull(res, r, col) ? NULL : PQgetvalue(res, r, col);
}

void db_pool_stats(db_pool *p, int *out_size, int *out_in_use, uint64_t *out_waits)
{
	pthread_mutex_lock(&p->lock);
	*out_size = p->size;
	*out_in_use = p->in_use;
	*out_waits = p->waits;
	pthread_mutex_unlock(&p->lock);
}
