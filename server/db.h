/* PostgreSQL connection pool. Statements are declared next to the code that runs them as
 * static db_stmt values and prepared on each connection the first time they run there. */
#ifndef GD_DB_H
#define GD_DB_H

#include <libpq-fe.h>

#include "common.h"

typedef struct db_stmt {
	const char *name; /* unique prepared-statement name */
	const char *sql;  /* parameters only ($1, $2...), never text built from input */
	int nparams;
} db_stmt;

typedef struct db_pool db_pool;
typedef struct db_conn db_conn;

/* Opens size connections to conninfo (new pool). Fails if the first connection fails. Until
 * db_pool_set_limits, every wait is unbounded (start-up work such as migrations may take long). */
int db_pool_new(db_pool **out, const char *conninfo, int size, gn_err *err) GN_WUR;
/* Stops the monitor and closes every connection. */
void db_pool_free(db_pool *pool);

/* Bounds on waiting for PostgreSQL, in seconds (0: unbounded). */
struct db_limits {
	int64_t connect_timeout_s;   /* a connection attempt; also a probe's deadline */
	int64_t statement_timeout_s; /* PostgreSQL's statement_timeout; gangliond gives up 2 s later */
	int64_t pool_wait_s;         /* waiting for a free pooled connection */
};
/* Applies limits from now on, and (with a connect timeout) starts the monitor: a thread that asks
 * the database every second, on a connection of its own, whether it answers. While it does not
 * (no answer within the connect timeout, or a statement past its deadline), the pool is down:
 * db_acquire returns a stand-in at once whose every call fails with GN_EUNAVAIL, and waits on
 * connections lent out are cut short. Call once serving starts. */
int db_pool_set_limits(db_pool *pool, const struct db_limits *limits, gn_err *err) GN_WUR;
/* True while the monitor finds the database not answering; why (may be NULL) gets the reason. */
bool db_pool_down(db_pool *pool, char *why, size_t n);
/* Takes a connection, waiting while all are busy (borrowed until db_release). With limits set it
 * never blocks long: after pool_wait_s, or at once while the pool is down, it returns a stand-in
 * whose calls fail with GN_EUNAVAIL (503) and whose release does nothing. */
db_conn *db_acquire(db_pool *pool);
/* Returns a connection; one left inside a transaction is rolled back, a broken one reset. */
void db_release(db_pool *pool, db_conn *c);
/* Runs a prepared statement with text parameters (NULL entries are SQL NULL). On success *out
 * is a new result (PQclear it; may be NULL when out is NULL). Unique violations map to
 * GN_ECONFLICT, a lost connection to GN_EUNAVAIL. */
int db_exec(PGresult **out, db_conn *c, const db_stmt *s, const char *const *params, gn_err *err) GN_WUR;
/* Runs fixed SQL text (migrations); never pass text built from input. Transactions go through
 * db_tx_*, never through this. */
int db_exec_sql(db_conn *c, const char *sql, gn_err *err) GN_WUR;
/* Transactions. A function that opens one says so in its header; one that must run inside the
 * caller's says that instead. db_tx_begin refuses to nest (GN_ERROR, logged as a bug): a nested
 * BEGIN would otherwise commit the caller's work early. */
int db_tx_begin(db_conn *c, gn_err *err) GN_WUR;
/* Commits; on failure the transaction is rolled back and c is out of it either way. */
int db_tx_commit(db_conn *c, gn_err *err) GN_WUR;
/* Rolls back if a transaction is open (a failure is only logged); harmless otherwise. */
void db_tx_rollback(db_conn *c);
/* True while c is inside a transaction opened with db_tx_begin. */
bool db_in_tx(const db_conn *c);

/* Rows for a COPY ... FROM STDIN (FORMAT binary), encoded here and sent in one go by db_copy_send:
 * the fastest way PostgreSQL takes many rows, with no text to escape (each value goes as its type's
 * binary form). Start each row with db_copy_row (its field count must match the COPY's column
 * list), then one db_copy_* call per field, in column order. */
typedef struct db_copy {
	gn_buf buf;
	int64_t rows;
} db_copy;
/* Starts an empty set of rows (the binary COPY header). */
void db_copy_init(db_copy *cp);
void db_copy_cleanup(db_copy *cp);
void db_copy_row(db_copy *cp, int nfields);
void db_copy_null(db_copy *cp);
/* text (NUL-terminated; the client encoding, UTF-8). */
void db_copy_text(db_copy *cp, const char *s);
void db_copy_int4(db_copy *cp, int32_t v);
void db_copy_int8(db_copy *cp, int64_t v);
void db_copy_float8(db_copy *cp, double v);
/* timestamptz at whole seconds since the Unix epoch. */
void db_copy_timestamptz(db_copy *cp, int64_t unix_s);
/* uuid, from 16 bytes (gn_uuid_parse). */
void db_copy_uuid(db_copy *cp, const uint8_t u[16]);
/* bigint[] of n elements (one dimension, no NULLs; n may be 0: an empty array). */
void db_copy_int8_array(db_copy *cp, const int64_t *v, size_t n);
/* Runs s (fixed SQL: "COPY table (columns) FROM STDIN (FORMAT binary)", no parameters) with cp's
 * rows; *out_rows (may be NULL) gets the count PostgreSQL reports. Errors as db_exec (a row that
 * breaks a constraint is GN_EINVAL or GN_ECONFLICT); on failure no row of this COPY is stored,
 * and inside a transaction the transaction is failed (roll it back). cp is left as it was. */
int db_copy_send(int64_t *out_rows, db_conn *c, const db_stmt *s, const db_copy *cp, gn_err *err) GN_WUR;

/* Advisory lock keys, one list for the whole server so no two uses collide. */
enum db_lock {
	DB_LOCK_MIGRATE = 1734438503,           /* session lock: migrations */
	DB_LOCK_ADMIN_TOKEN = 1734438504,       /* session lock: first admin token */
	DB_LOCK_TUF = 1734438505,               /* transaction lock: TUF image repository writers */
	DB_LOCK_DEPLOYMENTS = 1734438506,       /* transaction lock: deployment writers (overlap checks) */
	DB_LOCK_GITOPS = 1734438507,            /* session lock: a GitOps sync or plan (gitops.c) */
	DB_LOCK_ARTIFACT_SWEEP = 1734438508,    /* session lock: the unreferenced-artifact sweep */
	DB_LOCK_DEVICE_TOKEN_KEYS = 1734438530, /* transaction lock: device token key rotation */
	DB_LOCK_JOBS = 1734438600,              /* jobs: DB_LOCK_JOBS + the job's index */
	/* transaction lock: telemetry partitions created or dropped; taken by migration 0012's SQL
	 * functions gn_telemetry_partition and gn_telemetry_drop_before, which hold the number */
	DB_LOCK_TELEMETRY_PARTITIONS = 1734438520,
};
/* Namespaces of locks keyed by text (hashed with hashtextextended(text, ns)). */
enum db_lock_ns {
	DB_LOCK_NS_DIGEST = 7,      /* an artifact digest: publishing vs. sweeping its file */
	DB_LOCK_NS_DIRECTOR = 11,   /* a device's director repository */
	DB_LOCK_NS_TOKEN_NAME = 13, /* an API token's name: unique among live tokens */
};
/* Takes a transaction-scoped advisory lock (released at commit or rollback); needs a transaction. */
int db_lock_xact(db_conn *c, enum db_lock key, gn_err *err) GN_WUR;
/* Same, keyed by text within a namespace. */
int db_lock_xact_text(db_conn *c, enum db_lock_ns ns, const char *text, gn_err *err) GN_WUR;
/* Takes (waiting) or releases a session-scoped advisory lock (release failures are logged). */
int db_lock_session(db_conn *c, int64_t key, gn_err *err) GN_WUR;
void db_unlock_session(db_conn *c, int64_t key);
/* Tries a session-scoped advisory lock without waiting; *out_got tells whether it was taken. */
int db_try_lock_session(bool *out_got, db_conn *c, int64_t key, gn_err *err) GN_WUR;
/* Borrowed libpq handle of c (NULL for a stand-in, or a connection being re-opened). */
PGconn *db_pg(db_conn *c);
/* Connects to conninfo (a connection string or URI) giving up after timeout_s (0: libpq's
 * default, no limit), with PostgreSQL's notices going to the log at debug. Returns a new PGconn
 * (check PQstatus; PQfinish it either way). */
PGconn *db_connect(const char *conninfo, int64_t timeout_s);
/* Runs fixed SQL on a bare connection, waiting at most timeout_ms for the answer (0: no limit);
 * GN_EUNAVAIL for no answer or a lost connection. For the listener and the monitor. */
int db_pg_run(PGconn *pg, const char *sql, int64_t timeout_ms, gn_err *err) GN_WUR;
/* Returns the value of row r, column col (NULL for SQL NULL). Borrowed from res. */
const char *db_val(const PGresult *res, int r, int col);
/* Reads pool gauges for /metrics. */
void db_pool_stats(db_pool *pool, int *out_size, int *out_in_use, uint64_t *out_waits);

#endif
