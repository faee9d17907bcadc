/* A fixed-size PostgreSQL connection pool with per-connection lazily prepared statements, bounded
 * waits (connecting, each statement, a free connection) and a monitor that notices a database that
 * stopped answering. */
#include "db.h"

#include <assert.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"

/* What a statement may take past the server's own statement_timeout before gangliond gives up on
 * the connection: PostgreSQL cancels a slow statement itself, so only a server that does not
 * answer at all gets here. */
#define CLIENT_SLACK_MS 2000
/* How often the monitor asks the database whether it answers. */
#define PROBE_INTERVAL_MS 1000

enum conn_kind {
	CONN_POOLED,
	CONN_DOWN, /* stands in while the database does not answer */
	CONN_BUSY, /* stands in when no pooled connection came free in time */
};

struct db_conn {
	PGconn *pg; /* NULL: not connected (a stand-in, or dropped after a timeout) */
	db_pool *pool;
	enum conn_kind kind;
	int sock; /* the socket while lent out, so the monitor can cut a wait short (under pool lock) */
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
	struct db_limits limits; /* all 0 until db_pool_set_limits: wait forever, as at start-up */
	/* The monitor's verdict: while down, requests get the CONN_DOWN stand-in at once. */
	bool down;
	char down_why[160];
	uint64_t down_since_ns;
	db_conn stand_down, stand_busy;
	pthread_t monitor;
	bool monitoring, stopping;
	pthread_cond_t stop_cond;
};

static uint64_t mono_ms(void)
{
	return gn_mono_ns() / 1000000ull;
}

static void conn_forget_prepared(db_conn *c)
{
	free(c->prepared);
	c->prepared = NULL;
	c->nprepared = 0;
}

/* Logs a PostgreSQL notice (such as "relation ... already exists, skipping" from a CREATE ... IF
 * NOT EXISTS on every restart) at debug, instead of libpq's default: raw lines on stderr. */
static void on_notice(void *arg, const PGresult *res)
{
	const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	(void)arg;
	gn_log(GN_LOG_DEBUG, "event=pg_notice severity=%s msg=\"%s\"", sev ? sev : "-", msg ? msg : "");
}

PGconn *db_connect(const char *conninfo, int64_t timeout_s)
{
	char t[24];
	PGconn *pg;
	if (timeout_s <= 0) {
		pg = PQconnectdb(conninfo);
	} else {
		snprintf(t, sizeof(t), "%lld", (long long)timeout_s);
		/* dbname first, expanded as a connection string or URI; connect_timeout after it wins. */
		const char *const keys[] = {"dbname", "connect_timeout", NULL};
		const char *const vals[] = {conninfo, t, NULL};
		pg = PQconnectdbParams(keys, vals, 1);
	}
	if (pg)
		PQsetNoticeReceiver(pg, on_notice, NULL);
	return pg;
}

/* Waits until pg has a whole answer or deadline_ms (monotonic; 0: no deadline) passes. Returns 0,
 * 1 on timeout, -1 when the connection broke. */
static int wait_answer(PGconn *pg, uint64_t deadline_ms)
{
	while (PQisBusy(pg)) {
		int timeout = -1;
		if (deadline_ms) {
			uint64_t now = mono_ms();
			if (now >= deadline_ms)
				return 1;
			timeout = (int)(deadline_ms - now);
		}
		struct pollfd pfd = {.fd = PQsocket(pg), .events = POLLIN};
		int n = poll(&pfd, 1, timeout);
		if (n < 0)
			continue; /* EINTR */
		if (n == 0)
			return 1;
		if (!PQconsumeInput(pg))
			return -1;
	}
	return 0;
}

/* Collects the results of what was sent: the first failed one, else the last. */
static PGresult *collect(PGconn *pg)
{
	PGresult *keep = NULL, *r;
	while ((r = PQgetResult(pg))) {
		ExecStatusType st = PQresultStatus(r);
		bool failed = st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && st != PGRES_EMPTY_QUERY;
		if (keep && (!failed || PQresultStatus(keep) == PGRES_FATAL_ERROR)) {
			PQclear(r);
			continue;
		}
		PQclear(keep);
		keep = r;
	}
	return keep;
}

int db_pg_run(PGconn *pg, const char *sql, int64_t timeout_ms, gn_err *err)
{
	if (!PQsendQuery(pg, sql))
		return gn_err_set(err, GN_EUNAVAIL, "cannot send to PostgreSQL: %s", PQerrorMessage(pg));
	int w = wait_answer(pg, timeout_ms > 0 ? mono_ms() + (uint64_t)timeout_ms : 0);
	if (w > 0)
		return gn_err_set(err, GN_EUNAVAIL, "no answer within %lld ms", (long long)timeout_ms);
	if (w < 0)
		return gn_err_set(err, GN_EUNAVAIL, "connection lost");
	PGresult *res = collect(pg);
	ExecStatusType st = PQresultStatus(res);
	int rc = 0;
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		rc = gn_err_set(err, PQstatus(pg) == CONNECTION_OK ? GN_ERROR : GN_EUNAVAIL, "%s",
				msg ? msg : PQerrorMessage(pg));
	}
	PQclear(res);
	return rc;
}

/* Marks the database as not answering (why: for logs and answers) and cuts every wait on a lent
 * connection short, so the threads blocked on it answer 503 now. Under p->lock. */
static void mark_down_locked(db_pool *p, const char *why)
{
	snprintf(p->down_why, sizeof(p->down_why), "%s", why);
	if (!p->down) {
		p->down = true;
		p->down_since_ns = gn_mono_ns();
		gn_log(GN_LOG_ERROR, "event=db_unavailable msg=\"%s\" note=\"requests get 503 until it answers again\"",
		       why);
	}
	for (int i = 0; i < p->size; i++)
		if (p->conns[i].busy && p->conns[i].sock >= 0)
			shutdown(p->conns[i].sock, SHUT_RDWR);
	pthread_cond_broadcast(&p->freed);
}

static void mark_down(db_pool *p, const char *why)
{
	pthread_mutex_lock(&p->lock);
	mark_down_locked(p, why);
	pthread_mutex_unlock(&p->lock);
}

/* Closes c's connection (after a timeout or a failed reconnect); the next db_acquire reconnects. */
static void conn_drop(db_conn *c)
{
	if (c->pool) {
		pthread_mutex_lock(&c->pool->lock);
		c->sock = -1;
		pthread_mutex_unlock(&c->pool->lock);
	}
	if (c->pg)
		PQfinish(c->pg);
	c->pg = NULL;
	conn_forget_prepared(c);
}

/* Gives up on c after its statement got no answer in time. */
static int timed_out(db_conn *c, const char *what, gn_err *err)
{
	db_pool *p = c->pool;
	char why[160];
	snprintf(why, sizeof(why), "a statement got no answer within %lld s",
		 (long long)(p->limits.statement_timeout_s + CLIENT_SLACK_MS / 1000));
	gn_log(GN_LOG_WARN, "event=db_timeout stmt=%s msg=\"%s\"", what, why);
	conn_drop(c);
	mark_down(p, why);
	return gn_err_set(err, GN_EUNAVAIL, "the database did not answer in time (%s); try again shortly", what);
}

/* Waits for the answer to what was just sent on c and returns it in *out (new); a timeout or a
 * lost connection is GN_EUNAVAIL with *out NULL. */
static int await(PGresult **out, db_conn *c, const char *what, gn_err *err)
{
	db_pool *p = c->pool;
	uint64_t deadline = 0;
	*out = NULL;
	if (p && p->limits.statement_timeout_s > 0)
		deadline = mono_ms() + (uint64_t)p->limits.statement_timeout_s * 1000 + CLIENT_SLACK_MS;
	int w = wait_answer(c->pg, deadline);
	if (w > 0)
		return timed_out(c, what, err);
	*out = collect(c->pg);
	if (w < 0 && !*out)
		return gn_err_set(err, GN_EUNAVAIL, "database connection lost during %s", what);
	return 0;
}

/* A statement could not even be sent: the connection is broken (or was cut by the monitor). */
static int send_failed(db_conn *c, const char *what, gn_err *err)
{
	const char *m = PQerrorMessage(c->pg);
	gn_log(GN_LOG_WARN, "event=db_send_failed stmt=%s msg=\"%.*s\"", what, (int)strcspn(m, "\n"), m);
	return gn_err_set(err, GN_EUNAVAIL, "database connection lost during %s", what);
}

/* Fails a call on a connection that is not there: a stand-in, or one whose reconnect failed. */
static int unusable(db_conn *c, gn_err *err)
{
	db_pool *p = c->pool;
	if (c->kind == CONN_BUSY)
		return gn_err_set(
			err, GN_EUNAVAIL,
			"all %d database connections stayed busy for %lld s (db-pool-wait); try again shortly", p->size,
			(long long)p->limits.pool_wait_s);
	if (c->kind == CONN_DOWN) {
		char why[160];
		pthread_mutex_lock(&p->lock);
		snprintf(why, sizeof(why), "%s", p->down_why);
		pthread_mutex_unlock(&p->lock);
		return gn_err_set(err, GN_EUNAVAIL, "the database is unavailable (%s); try again shortly", why);
	}
	return gn_err_set(err, GN_EUNAVAIL, "no database connection (reconnecting failed); try again shortly");
}

/* Connects c (again), with the pool's connect and statement timeouts. */
static void conn_open(db_conn *c)
{
	db_pool *p = c->pool;
	gn_err err;
	conn_drop(c);
	uint64_t t0 = mono_ms();
	c->pg = db_connect(p->conninfo, p->limits.connect_timeout_s);
	if (PQstatus(c->pg) != CONNECTION_OK) {
		if (p->limits.connect_timeout_s > 0 && mono_ms() - t0 >= (uint64_t)p->limits.connect_timeout_s * 1000) {
			char why[160];
			snprintf(why, sizeof(why), "connecting took over %lld s",
				 (long long)p->limits.connect_timeout_s);
			mark_down(p, why);
		}
		PQfinish(c->pg);
		c->pg = NULL;
		return;
	}
	if (p->limits.statement_timeout_s > 0) {
		char sql[64];
		snprintf(sql, sizeof(sql), "SET statement_timeout = %lld",
			 (long long)p->limits.statement_timeout_s * 1000);
		if (db_pg_run(c->pg, sql, (int64_t)p->limits.statement_timeout_s * 1000 + CLIENT_SLACK_MS, &err)) {
			gn_log(GN_LOG_WARN, "event=db_connect_failed msg=\"%s\"", err.msg);
			PQfinish(c->pg);
			c->pg = NULL;
			return;
		}
	}
	/* No JIT: PostgreSQL compiles any statement it costs above jit_above_cost, and the statements
	 * over a whole fleet (the rollout controller's) spent seconds of CPU compiling, each time, for
	 * work that takes less. Every statement here is short enough to run interpreted. */
	if (db_pg_run(c->pg, "SET jit = off", 10000, &err)) {
		gn_log(GN_LOG_WARN, "event=db_connect_failed msg=\"%s\"", err.msg);
		PQfinish(c->pg);
		c->pg = NULL;
	}
}

int db_pool_new(db_pool **out, const char *conninfo, int size, gn_err *err)
{
	db_pool *p = gn_calloc(1, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->freed, NULL);
	pthread_cond_init(&p->stop_cond, NULL);
	p->conninfo = gn_strdup(conninfo);
	p->size = size;
	p->conns = gn_calloc((size_t)size, sizeof(*p->conns));
	p->stand_down = (db_conn){.pool = p, .kind = CONN_DOWN, .sock = -1};
	p->stand_busy = (db_conn){.pool = p, .kind = CONN_BUSY, .sock = -1};
	for (int i = 0; i < size; i++) {
		p->conns[i].pool = p;
		p->conns[i].sock = -1;
		p->conns[i].pg = db_connect(conninfo, 0);
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

/* Asks the database every PROBE_INTERVAL_MS whether it answers, on a connection of its own, and
 * marks the pool down or up. */
static void *monitor_main(void *arg)
{
	db_pool *p = arg;
	PGconn *pg = NULL;
	int64_t timeout_ms = p->limits.connect_timeout_s * 1000;
	pthread_mutex_lock(&p->lock);
	while (!p->stopping) {
		pthread_mutex_unlock(&p->lock);
		char why[160] = "";
		gn_err err;
		if (pg && PQstatus(pg) != CONNECTION_OK) {
			PQfinish(pg);
			pg = NULL;
		}
		if (!pg) {
			uint64_t t0 = mono_ms();
			pg = db_connect(p->conninfo, p->limits.connect_timeout_s);
			if (PQstatus(pg) != CONNECTION_OK) {
				const char *m = PQerrorMessage(pg);
				if (mono_ms() - t0 >= (uint64_t)timeout_ms)
					snprintf(why, sizeof(why), "connecting took over %lld s",
						 (long long)p->limits.connect_timeout_s);
				else
					snprintf(why, sizeof(why), "cannot connect: %.*s", (int)strcspn(m, "\n"), m);
				PQfinish(pg);
				pg = NULL;
			}
		}
		if (pg && db_pg_run(pg, "SELECT 1", timeout_ms, &err)) {
			snprintf(why, sizeof(why), "a probe got %.140s", err.msg);
			PQfinish(pg);
			pg = NULL;
		}
		pthread_mutex_lock(&p->lock);
		if (p->stopping)
			break;
		if (pg && p->down) {
			gn_log(GN_LOG_INFO, "event=db_available down_s=%.1f",
			       (double)(gn_mono_ns() - p->down_since_ns) / 1e9);
			p->down = false;
		} else if (!pg) {
			mark_down_locked(p, why);
		}
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += PROBE_INTERVAL_MS * 1000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		if (!p->stopping)
			pthread_cond_timedwait(&p->stop_cond, &p->lock, &ts);
	}
	pthread_mutex_unlock(&p->lock);
	if (pg)
		PQfinish(pg);
	return NULL;
}

int db_pool_set_limits(db_pool *p, const struct db_limits *limits, gn_err *err)
{
	pthread_condattr_t attr;
	pthread_mutex_lock(&p->lock);
	p->limits = *limits;
	pthread_mutex_unlock(&p->lock);
	if (p->monitoring || limits->connect_timeout_s <= 0)
		return 0;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_destroy(&p->stop_cond);
	pthread_cond_init(&p->stop_cond, &attr);
	pthread_condattr_destroy(&attr);
	if (pthread_create(&p->monitor, NULL, monitor_main, p) != 0)
		return gn_err_set(err, GN_ERROR, "cannot start the database monitor thread");
	p->monitoring = true;
	/* Connections opened before get the statement timeout too. */
	for (int i = 0; i < p->size; i++) {
		db_conn *c = &p->conns[i];
		char sql[64];
		gn_err e2;
		if (c->busy || !c->pg || limits->statement_timeout_s <= 0)
			continue;
		snprintf(sql, sizeof(sql), "SET statement_timeout = %lld",
			 (long long)limits->statement_timeout_s * 1000);
		if (db_pg_run(c->pg, sql, limits->statement_timeout_s * 1000 + CLIENT_SLACK_MS, &e2))
			conn_drop(c);
	}
	return 0;
}

bool db_pool_down(db_pool *p, char *why, size_t n)
{
	pthread_mutex_lock(&p->lock);
	bool down = p->down;
	if (down && why)
		snprintf(why, n, "%s (for %.0f s)", p->down_why, (double)(gn_mono_ns() - p->down_since_ns) / 1e9);
	pthread_mutex_unlock(&p->lock);
	return down;
}

void db_pool_free(db_pool *p)
{
	if (!p)
		return;
	if (p->monitoring) {
		pthread_mutex_lock(&p->lock);
		p->stopping = true;
		pthread_cond_signal(&p->stop_cond);
		pthread_mutex_unlock(&p->lock);
		pthread_join(p->monitor, NULL);
	}
	for (int i = 0; i < p->size; i++) {
		if (p->conns[i].pg)
			PQfinish(p->conns[i].pg);
		conn_forget_prepared(&p->conns[i]);
	}
	free(p->conns);
	free(p->conninfo);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->freed);
	pthread_cond_destroy(&p->stop_cond);
	free(p);
}

db_conn *db_acquire(db_pool *p)
{
	db_conn *c = NULL;
	struct timespec until;
	pthread_mutex_lock(&p->lock);
	bool bounded = p->limits.pool_wait_s > 0;
	if (bounded && p->down) {
		pthread_mutex_unlock(&p->lock);
		return &p->stand_down;
	}
	if (p->in_use == p->size) {
		p->waits++;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += (time_t)p->limits.pool_wait_s;
	}
	while (p->in_use == p->size) {
		if (!bounded) {
			pthread_cond_wait(&p->freed, &p->lock);
			continue;
		}
		int rc = pthread_cond_timedwait(&p->freed, &p->lock, &until);
		if (p->down || (rc != 0 && p->in_use == p->size)) {
			db_conn *stand = p->down ? &p->stand_down : &p->stand_busy;
			pthread_mutex_unlock(&p->lock);
			return stand;
		}
	}
	for (int i = 0; i < p->size; i++) {
		if (!p->conns[i].busy) {
			c = &p->conns[i];
			break;
		}
	}
	c->busy = true;
	p->in_use++;
	pthread_mutex_unlock(&p->lock);
	if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) {
		/* The server restarted, the network dropped, or a timeout closed it: reconnect;
		 * statements are gone. */
		conn_open(c);
		if (c->pg)
			gn_log(GN_LOG_INFO, "event=db_reconnected");
	}
	pthread_mutex_lock(&p->lock);
	c->sock = c->pg ? PQsocket(c->pg) : -1;
	pthread_mutex_unlock(&p->lock);
	return c;
}

void db_release(db_pool *p, db_conn *c)
{
	if (!c || c->kind != CONN_POOLED)
		return;
	if (c->in_tx)
		gn_log(GN_LOG_WARN,
		       "event=db_tx_left_open note=\"rolled back when the connection went back to the pool\"");
	c->in_tx = false;
	if (c->pg && PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
		gn_err err;
		PGresult *r = NULL;
		if (!PQsendQuery(c->pg, "ROLLBACK") || await(&r, c, "ROLLBACK", &err))
			conn_drop(c);
		PQclear(r);
	}
	pthread_mutex_lock(&p->lock);
	c->sock = -1;
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
		msg = c->pg ? PQerrorMessage(c->pg) : "no connection";
	if (!c->pg || PQstatus(c->pg) != CONNECTION_OK)
		return gn_err_set(err, GN_EUNAVAIL, "database connection lost during %s", what);
	/* GN409: a rule a trigger enforces, refusing a change as a conflict (0011_gitops.sql). */
	if (state && (strcmp(state, "23505") == 0 || strcmp(state, "GN409") == 0))
		return gn_err_set(err, GN_ECONFLICT, "%s", msg);
	if (state && strcmp(state, "25006") == 0) {
		/* A read-only server: a standby, or a primary demoted after a failover. Drop the
		 * connection so that the next one looks for the primary again (target_session_attrs). */
		gn_log(GN_LOG_WARN, "event=db_read_only stmt=%s msg=\"%s\" note=\"reconnecting\"", what, msg);
		conn_drop(c);
		return gn_err_set(err, GN_EUNAVAIL, "the database is read-only (a standby?); try again shortly");
	}
	if (state && strcmp(state, "57014") == 0) {
		gn_log(GN_LOG_WARN, "event=db_statement_timeout stmt=%s msg=\"%s\"", what, msg);
		return gn_err_set(err, GN_EUNAVAIL, "the database did not finish %s in time; try again shortly", what);
	}
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
	PGresult *res = NULL;
	int rc;
	if (!PQsendPrepare(c->pg, s->name, s->sql, s->nparams, NULL))
		return send_failed(c, s->name, err);
	if ((rc = await(&res, c, s->name, err)))
		return rc;
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		rc = result_error(res, c, s->name, err);
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
	if (!c->pg)
		return unusable(c, err);
	if ((rc = ensure_prepared(c, s, err)))
		return rc;
	PGresult *res = NULL;
	if (!PQsendQueryPrepared(c->pg, s->name, s->nparams, params, NULL, NULL, 0))
		return send_failed(c, s->name, err);
	if ((rc = await(&res, c, s->name, err)))
		return rc;
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
	PGresult *res = NULL;
	int rc;
	if (!c->pg)
		return unusable(c, err);
	if (!PQsendQuery(c->pg, sql))
		return send_failed(c, "SQL", err);
	if ((rc = await(&res, c, "SQL", err)))
		return rc;
	ExecStatusType st = PQresultStatus(res);
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		if (state && strcmp(state, "57014") == 0)
			rc = gn_err_set(err, GN_EUNAVAIL, "the database did not finish in time; try again shortly");
		else
			rc = gn_err_set(err, PQstatus(c->pg) == CONNECTION_OK ? GN_ERROR : GN_EUNAVAIL,
					"SQL failed: %s", msg ? msg : PQerrorMessage(c->pg));
	}
	PQclear(res);
	return rc;
}

/* --- COPY, binary format ------------------------------------------------------------------------ */

/* PostgreSQL's binary COPY: a signature, flags and header extension length, then per row its field
 * count and per field a length (-1: NULL) and the value in network byte order; -1 as the end. */
static const char copy_signature[11] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', '\377', '\r', '\n', '\0'};
#define PG_EPOCH_UNIX 946684800 /* 2000-01-01T00:00:00Z, where timestamps count from */
#define INT8_OID 20
#define COPY_CHUNK ((size_t)1 << 20) /* bytes handed to libpq at a time */

/* Writes v's low `bytes` bytes, most significant first, at p; returns the end. */
static unsigned char *be(unsigned char *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p[i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
	return p + bytes;
}

static void put_be(gn_buf *b, uint64_t v, int bytes)
{
	unsigned char x[8];
	gn_buf_append(b, x, (size_t)(be(x, v, bytes) - x));
}

void db_copy_init(db_copy *cp)
{
	gn_buf_init(&cp->buf);
	gn_buf_append(&cp->buf, copy_signature, sizeof(copy_signature));
	put_be(&cp->buf, 0, 4); /* flags: no OIDs */
	put_be(&cp->buf, 0, 4); /* no header extension */
	cp->rows = 0;
}

void db_copy_cleanup(db_copy *cp)
{
	gn_buf_cleanup(&cp->buf);
	cp->rows = 0;
}

void db_copy_row(db_copy *cp, int nfields)
{
	assert(nfields > 0 && nfields < 1600);
	put_be(&cp->buf, (uint64_t)nfields, 2);
	cp->rows++;
}

void db_copy_null(db_copy *cp)
{
	put_be(&cp->buf, UINT32_MAX, 4);
}

void db_copy_text(db_copy *cp, const char *s)
{
	size_t n = strlen(s);
	assert(n < INT32_MAX);
	put_be(&cp->buf, n, 4);
	gn_buf_append(&cp->buf, s, n);
}

void db_copy_int4(db_copy *cp, int32_t v)
{
	put_be(&cp->buf, 4, 4);
	put_be(&cp->buf, (uint32_t)v, 4);
}

void db_copy_int8(db_copy *cp, int64_t v)
{
	unsigned char x[12];
	be(be(x, 8, 4), (uint64_t)v, 8);
	gn_buf_append(&cp->buf, x, sizeof(x));
}

void db_copy_float8(db_copy *cp, double v)
{
	uint64_t u;
	memcpy(&u, &v, sizeof(u));
	db_copy_int8(cp, (int64_t)u); /* the same 8 bytes, big-endian */
}

void db_copy_timestamptz(db_copy *cp, int64_t unix_s)
{
	db_copy_int8(cp, (unix_s - PG_EPOCH_UNIX) * 1000000);
}

void db_copy_uuid(db_copy *cp, const uint8_t u[16])
{
	put_be(&cp->buf, 16, 4);
	gn_buf_append(&cp->buf, u, 16);
}

void db_copy_int8_array(db_copy *cp, const int64_t *v, size_t n)
{
	assert(n < (INT32_MAX - 20) / 12);
	if (n == 0) { /* an empty array has no dimensions */
		put_be(&cp->buf, 12, 4);
		put_be(&cp->buf, 0, 4); /* dimensions */
		put_be(&cp->buf, 0, 4); /* has NULLs */
		put_be(&cp->buf, INT8_OID, 4);
		return;
	}
	unsigned char head[24], *p = head;
	p = be(p, 20 + 12 * n, 4);
	p = be(p, 1, 4); /* dimensions */
	p = be(p, 0, 4); /* has NULLs */
	p = be(p, INT8_OID, 4);
	p = be(p, n, 4); /* length of the dimension */
	p = be(p, 1, 4); /* its lower bound */
	gn_buf_append(&cp->buf, head, (size_t)(p - head));
	for (size_t i = 0; i < n; i++)
		db_copy_int8(cp, v[i]);
}

int db_copy_send(int64_t *out_rows, db_conn *c, const db_stmt *s, const db_copy *cp, gn_err *err)
{
	static const char trailer[2] = {'\377', '\377'};
	db_pool *p = c->pool;
	uint64_t deadline = 0;
	PGresult *res = NULL;
	int rc;
	assert(s->nparams == 0);
	if (!c->pg)
		return unusable(c, err);
	if (!PQsendQuery(c->pg, s->sql))
		return send_failed(c, s->name, err);
	if (p && p->limits.statement_timeout_s > 0)
		deadline = mono_ms() + (uint64_t)p->limits.statement_timeout_s * 1000 + CLIENT_SLACK_MS;
	int w = wait_answer(c->pg, deadline);
	if (w > 0)
		return timed_out(c, s->name, err);
	/* Not collect(): while a COPY waits for its data, PQgetResult answers PGRES_COPY_IN forever. */
	res = PQgetResult(c->pg);
	if (PQresultStatus(res) != PGRES_COPY_IN) {
		rc = result_error(res, c, s->name, err);
		PQclear(res);
		if (c->pg)
			PQclear(collect(c->pg));
		return rc;
	}
	PQclear(res);
	res = NULL;
	/* A blocking connection: each call returns once libpq has sent or buffered the bytes. A row
	 * PostgreSQL refuses ends the COPY there; it ignores the rest, and the error is the result. */
	bool sent = true;
	for (size_t off = 0; sent && off < cp->buf.len; off += COPY_CHUNK) {
		size_t n = cp->buf.len - off < COPY_CHUNK ? cp->buf.len - off : COPY_CHUNK;
		sent = PQputCopyData(c->pg, cp->buf.data + off, (int)n) == 1;
	}
	sent = sent && PQputCopyData(c->pg, trailer, sizeof(trailer)) == 1 && PQputCopyEnd(c->pg, NULL) == 1;
	if (!sent && PQstatus(c->pg) != CONNECTION_OK)
		return send_failed(c, s->name, err);
	if ((rc = await(&res, c, s->name, err)))
		return rc;
	if (PQresultStatus(res) != PGRES_COMMAND_OK || !sent)
		rc = result_error(res, c, s->name, err);
	else if (out_rows)
		*out_rows = strtoll(PQcmdTuples(res), NULL, 10);
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
	if (!c->pg)
		return unusable(c, err);
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
	PGresult *res = NULL;
	int rc = 0;
	if (!PQsendQuery(c->pg, "COMMIT"))
		rc = send_failed(c, "COMMIT", err);
	else if ((rc = await(&res, c, "COMMIT", err)))
		;
	else if (PQresultStatus(res) != PGRES_COMMAND_OK)
		rc = result_error(res, c, "COMMIT", err);
	else if (strcmp(PQcmdStatus(res), "COMMIT") != 0)
		/* PostgreSQL answers COMMIT in a failed transaction with ROLLBACK, and no error. */
		rc = gn_err_set(err, GN_ERROR, "the transaction had failed and was rolled back, not committed");
	PQclear(res);
	/* A failed COMMIT leaves the transaction aborted (or the connection gone): end it. */
	if (rc && c->pg && PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
		exec_logged(c, "ROLLBACK");
	return rc;
}

void db_tx_rollback(db_conn *c)
{
	if (!c->in_tx)
		return;
	c->in_tx = false;
	if (c->pg && PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
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
