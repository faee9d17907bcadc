/* Applies the embedded migrations under a PostgreSQL advisory lock, recording checksums. */
#include "migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "log.h"
#include "version.h"

static const db_stmt st_applied = {"migrate_applied", "SELECT checksum FROM schema_migrations WHERE version = $1", 1};
static const db_stmt st_record = {"migrate_record",
				  "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", 3};
static const db_stmt st_latest = {"migrate_latest", "SELECT coalesce(max(version), 0) FROM schema_migrations", 0};
static const db_stmt st_newer = {"migrate_newer",
				 "SELECT version, name FROM schema_migrations WHERE version > $1 ORDER BY version", 1};

/* A database migrated by a newer gangliond (a downgrade) would be served by code that does not
 * know its schema: refuse, naming what this binary does not know. */
static int refuse_unknown(db_conn *c, gn_err *err)
{
	PGresult *res = NULL;
	char ver[16];
	snprintf(ver, sizeof(ver), "%d", gd_migrations_count ? gd_migrations[gd_migrations_count - 1].version : 0);
	const char *p1[] = {ver};
	int error = db_exec(&res, c, &st_newer, p1, err);
	if (!error && PQntuples(res) > 0)
		error = gn_err_set(
			err, GN_ECONFLICT,
			"the database was migrated by a newer gangliond: it has migration %s, which this "
			"gangliond %s does not know (its newest is %s). Downgrading is not supported: run that "
			"version or a newer one, or restore the backup taken before the upgrade",
			PQgetvalue(res, PQntuples(res) - 1, 1), gn_version(),
			gd_migrations_count ? gd_migrations[gd_migrations_count - 1].name : "none");
	PQclear(res);
	return error;
}

static int apply_one(db_conn *c, const struct migration *m, gn_err *err)
{
	int error = 0;
	PGresult *res = NULL;
	char sum[GN_SHA256_HEX_LEN + 1], ver[16];
	gn_sha256_hex(sum, m->sql, strlen(m->sql));
	snprintf(ver, sizeof(ver), "%d", m->version);
	const char *p1[] = {ver};
	if ((error = db_exec(&res, c, &st_applied, p1, err)))
		goto out;
	if (PQntuples(res) == 1) {
		if (strcmp(PQgetvalue(res, 0, 0), sum) != 0)
			error = gn_err_set(err, GN_ECONFLICT,
					   "migration %s was applied but its file has changed since (checksum %s, "
					   "recorded %.64s); restore the original file and add a new migration instead",
					   m->name, sum, PQgetvalue(res, 0, 0));
		goto out;
	}
	if ((error = db_tx_begin(c, err)))
		goto out;
	if ((error = db_exec_sql(c, m->sql, err))) {
		char why[sizeof(err->msg)];
		snprintf(why, sizeof(why), "%s", err ? err->msg : "");
		gn_err_set(err, error, "migration %s failed: %s", m->name, why);
		goto out;
	}
	const char *p3[] = {ver, m->name, sum};
	if ((error = db_exec(NULL, c, &st_record, p3, err)))
		goto out;
	if ((error = db_tx_commit(c, err)))
		goto out;
	gn_log(GN_LOG_INFO, "event=migration_applied name=%s", m->name);
out:
	if (error)
		db_tx_rollback(c);
	PQclear(res);
	return error;
}

int migrate_run(db_conn *c, gn_err *err)
{
	int error;
	if ((error = db_lock_session(c, DB_LOCK_MIGRATE, err)))
		return error;
	error = db_exec_sql(c,
			    "CREATE TABLE IF NOT EXISTS schema_migrations ("
			    " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
			    " applied_at timestamptz NOT NULL DEFAULT now())",
			    err);
	if (!error)
		error = refuse_unknown(c, err);
	for (int i = 0; !error && i < gd_migrations_count; i++)
		error = apply_one(c, &gd_migrations[i], err);
	db_unlock_session(c, DB_LOCK_MIGRATE);
	return error;
}

int migrate_check(db_conn *c, gn_err *err)
{
	PGresult *res = NULL;
	int error = db_exec(&res, c, &st_latest, NULL, err);
	if (error)
		return error;
	int latest = atoi(PQgetvalue(res, 0, 0));
	int want = gd_migrations_count ? gd_migrations[gd_migrations_count - 1].version : 0;
	PQclear(res);
	if (latest < want)
		return gn_err_set(err, GN_EUNAVAIL, "database schema is at version %d, this gangliond needs %d", latest,
				  want);
	return 0;
}
