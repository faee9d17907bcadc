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
/* Runs fixed SQL text (BEGIN, COMMIT, migrations); never pass text built from input. */
int db_exec_sql(db_conn *c, const char *sql, gn_err *err) GN_WUR;
/* Runs fixed SQL whose failure the caller can only log (ROLLBACK, unlock). */
void db_exec_sql_logged(db_conn *c, const char *sql);
/* Borrowed libpq handle of c. */
PGconn *db_pg(db_conn *c);
/* Returns the value of row r, column col (NULL for SQL NULL). Borrowed from res. */
const char *db_val(const PGresult *res, int r, int col);
/* Reads pool gauges for /metrics. */
void db_pool_stats(db_pool *pool, int *out_size, int *out_in_use, uint64_t *out_waits);

#endif
