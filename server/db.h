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

/* Opens size connections to conninfo (new pool). Fails if the first connection fails. */
int db_pool_new(db_pool **out, const char *conninfo, int size, gn_err *err) GN_WUR;
void db_pool_free(db_pool *pool);
/* Takes a connection, waiting while all are busy (borrowed until db_release). */
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

/* Advisory lock keys, one list for the whole server so no two uses collide. */
enum db_lock {
	DB_LOCK_MIGRATE = 1734438503,     /* session lock: migrations */
	DB_LOCK_ADMIN_TOKEN = 1734438504, /* session lock: first admin token */
	DB_LOCK_TUF = 1734438505,         /* transaction lock: TUF image repository writers */
	DB_LOCK_JOBS = 1734438600,        /* jobs: DB_LOCK_JOBS + the job's index */
};
/* Namespaces of locks keyed by text (hashed with hashtextextended(text, ns)). */
enum db_lock_ns {
	DB_LOCK_NS_DIGEST = 7,    /* an artifact digest: publishing vs. sweeping its file */
	DB_LOCK_NS_DIRECTOR = 11, /* a device's director repository */
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
/* Borrowed libpq handle of c. */
PGconn *db_pg(db_conn *c);
/* Returns the value of row r, column col (NULL for SQL NULL). Borrowed from res. */
const char *db_val(const PGresult *res, int r, int col);
/* Reads pool gauges for /metrics. */
void db_pool_stats(db_pool *pool, int *out_size, int *out_in_use, uint64_t *out_waits);

#endif
