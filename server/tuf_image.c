/* The TUF image repository: targets, snapshot and timestamp metadata. */
#include "tuf_image.h"

#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "log.h"
#include "tuf_deleg.h"

static const db_stmt st_targets = {
	"tuf_targets",
	"SELECT coalesce(jsonb_object_agg('models/' || model || '/' || version || '/' || filename,"
	" jsonb_build_object('length', length, 'hashes', jsonb_build_object('sha256', sha256), 'custom', custom)),"
	" '{}')::text FROM model_versions",
	0};

/* Signs timestamp N+1 over the snapshot whose bytes are snapshot_body. */
static int publish_timestamp(db_conn *c, const struct tuf_settings *s, int snapshot_version, const char *snapshot_body,
			     gn_err *err)
{
	struct tuf_latest ts;
	char sum[GN_SHA256_HEX_LEN + 1];
	json_t *sp = NULL;
	int error;
	if ((error = tuf_sign_latest(&ts, c, "image", "timestamp", err)))
		goto out;
	int64_t exp = gn_now() + tuf_sign_lifetime(s, "timestamp");
	sp = tuf_sign_header("timestamp", ts.version + 1, exp);
	gn_sha256_hex(sum, snapshot_body, strlen(snapshot_body));
	json_object_set_new(sp, "meta",
			    json_pack("{s:{s:i,s:I,s:{s:s}}}", "snapshot.json", "version", snapshot_version, "length",
				      (json_int_t)strlen(snapshot_body), "hashes", "sha256", sum));
	error = tuf_sign_online(NULL, c, "image", "timestamp", ts.version + 1, sp, exp, err);
out:
	json_decref(sp);
	tuf_sign_latest_cleanup(&ts);
	return error;
}

/* The newest version of every delegated targets role: {"ROLE.json": {"version": N}} (new). */
static const db_stmt st_delegated = {
	"tuf_delegated_latest",
	"SELECT coalesce(jsonb_object_agg(role || '.json', jsonb_build_object('version', v)), '{}')::text FROM"
	" (SELECT role, max(version) AS v FROM tuf_metadata WHERE repo = 'image'"
	"  AND role NOT IN ('root', 'targets', 'snapshot', 'timestamp') GROUP BY role) d",
	0};

/* Signs snapshot N+1 naming targets_version and the newest version of every delegated role, then
 * a timestamp over it. */
static int publish_snapshot(db_conn *c, const struct tuf_settings *s, int targets_version, gn_err *err)
{
	struct tuf_latest sn;
	char *body = NULL;
	json_t *sp = NULL, *meta = NULL;
	PGresult *res = NULL;
	int error;
	if ((error = tuf_sign_latest(&sn, c, "image", "snapshot", err)) ||
	    (error = db_exec(&res, c, &st_delegated, NULL, err)))
		goto out;
	if (!(meta = json_loads(PQgetvalue(res, 0, 0), 0, NULL))) {
		error = gn_err_set(err, GN_ERROR, "cannot list the delegated roles");
		goto out;
	}
	int64_t exp = gn_now() + tuf_sign_lifetime(s, "snapshot");
	sp = tuf_sign_header("snapshot", sn.version + 1, exp);
	json_object_set_new(meta, "targets.json", json_pack("{s:i}", "version", targets_version));
	json_object_set_new(sp, "meta", meta);
	if (!(error = tuf_sign_online(&body, c, "image", "snapshot", sn.version + 1, sp, exp, err)))
		error = publish_timestamp(c, s, sn.version + 1, body, err);
out:
	json_decref(sp);
	free(body);
	PQclear(res);
	tuf_sign_latest_cleanup(&sn);
	return error;
}

int tuf_image_publish_snapshot(db_conn *c, const struct tuf_settings *s, gn_err *err)
{
	struct tuf_latest tg;
	int error = tuf_sign_latest(&tg, c, "image", "targets", err);
	if (!error)
		error = publish_snapshot(c, s, tg.version, err);
	tuf_sign_latest_cleanup(&tg);
	return error;
}

int tuf_image_publish_targets(db_conn *c, const struct tuf_settings *s, gn_err *err)
{
	struct tuf_latest tg;
	PGresult *res = NULL;
	json_t *sp = NULL, *targets = NULL;
	int error;
	bool offline = false;
	memset(&tg, 0, sizeof(tg));
	if ((error = db_lock_xact(c, DB_LOCK_TUF, err)) || (error = tuf_deleg_offline(&offline, c, err)))
		goto out;
	/* Offline targets: a new model version is released when CI signs its delegated role, not here. */
	if (offline)
		goto out;
	if ((error = tuf_sign_latest(&tg, c, "image", "targets", err)) ||
	    (error = db_exec(&res, c, &st_targets, NULL, err)))
		goto out;
	if (!(targets = json_loads(PQgetvalue(res, 0, 0), 0, NULL))) {
		error = gn_err_set(err, GN_ERROR, "cannot build targets");
		goto out;
	}
	int64_t exp = gn_now() + tuf_sign_lifetime(s, "targets");
	sp = tuf_sign_header("targets", tg.version + 1, exp);
	json_object_set_new(sp, "targets", targets);
	if (!(error = tuf_sign_online(NULL, c, "image", "targets", tg.version + 1, sp, exp, err)))
		error = publish_snapshot(c, s, tg.version + 1, err);
out:
	json_decref(sp);
	PQclear(res);
	tuf_sign_latest_cleanup(&tg);
	return error;
}

/* Re-signs the timestamp if it is due (over the newest snapshot). */
static int refresh_timestamp(db_conn *c, const struct tuf_settings *s, const struct tuf_latest *sn, int64_t now,
			     gn_err *err)
{
	struct tuf_latest ts;
	int error = tuf_sign_latest(&ts, c, "image", "timestamp", err);
	if (!error && ts.version && sn->body && tuf_sign_due(ts.created, ts.expires, now))
		error = publish_timestamp(c, s, sn->version, sn->body, err);
	tuf_sign_latest_cleanup(&ts);
	return error;
}

/* Re-signs the snapshot (and timestamp) if it is due, else the timestamp if that is. */
static int refresh_snapshot(db_conn *c, const struct tuf_settings *s, int targets_version, int64_t now, gn_err *err)
{
	struct tuf_latest sn;
	int error = tuf_sign_latest(&sn, c, "image", "snapshot", err);
	if (error)
		goto out;
	if (sn.version && tuf_sign_due(sn.created, sn.expires, now))
		error = publish_snapshot(c, s, targets_version, err);
	else
		error = refresh_timestamp(c, s, &sn, now, err);
out:
	tuf_sign_latest_cleanup(&sn);
	return error;
}

/* Re-signs targets (and what is below it) if due, else looks one role down. Inside the caller's
 * locked transaction. */
static int refresh_locked(db_conn *c, const struct tuf_settings *s, int64_t now, gn_err *err)
{
	struct tuf_latest tg;
	bool offline = false;
	int error = tuf_sign_latest(&tg, c, "image", "targets", err);
	if (!error)
		error = tuf_deleg_offline(&offline, c, err);
	if (error)
		goto out;
	if (tg.version && tuf_sign_due(tg.created, tg.expires, now) && offline)
		/* Only its offline keys can sign it anew: say so while there is time. */
		gn_log(GN_LOG_WARN, "event=tuf_offline_targets_due version=%d expires_in_s=%lld", tg.version,
		       (long long)(tg.expires - now));
	if (tg.version && tuf_sign_due(tg.created, tg.expires, now) && !offline)
		error = tuf_image_publish_targets(c, s, err);
	else
		error = refresh_snapshot(c, s, tg.version, now, err);
out:
	tuf_sign_latest_cleanup(&tg);
	return error;
}

int tuf_image_refresh(db_conn *c, const struct tuf_settings *s, gn_err *err)
{
	int error;
	if ((error = db_tx_begin(c, err)))
		return error;
	if ((error = db_lock_xact(c, DB_LOCK_TUF, err)) || (error = refresh_locked(c, s, gn_now(), err)) ||
	    (error = db_tx_commit(c, err)))
		db_tx_rollback(c);
	return error;
}

int tuf_image_get(char **out, db_conn *c, const char *role, int version, gn_err *err)
{
	return tuf_sign_get(out, c, "image", role, version, err);
}
