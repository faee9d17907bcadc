/* The director: per-device targets, the desired state they name, and check-in reports. */
#include "director.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "crypto.h"
#include "devices.h"
#include "log.h"
#include "models.h"
#include "runnable.h"
#include "tuf.h"

#define SELECTOR_MAX_DEVICES 100000

/* The newest signed targets, and whether a director key since retired signed them. */
static const db_stmt st_latest = {
	"director_latest",
	"SELECT version, body, extract(epoch FROM expires_at)::bigint, extract(epoch FROM created_at)::bigint,"
	/* Targets signed before several models per device name their one model in these columns. */
	" coalesce(desired_key, CASE WHEN model IS NULL THEN '' ELSE model || '=' || coalesce(model_version, '')"
	"  || '@' || coalesce(gn_ts(assigned_at), '') END),"
	" EXISTS (SELECT 1 FROM tuf_keys k, unnest(ARRAY[t.body, t.snapshot_body, t.timestamp_body]) AS m(body)"
	"   WHERE k.repo = 'director' AND k.role <> 'root' AND NOT k.active AND NOT k.pending"
	"   AND jsonb_path_exists(m.body::jsonb, '$.signatures[*] ? (@.keyid == $k)', jsonb_build_object('k', k.keyid))),"
	/* Signed without snapshot and timestamp, while the director now has keys for them. */
	" t.timestamp_body IS NULL AND EXISTS (SELECT 1 FROM tuf_keys k WHERE k.repo = 'director'"
	"   AND k.role = 'timestamp' AND k.active)"
	" FROM director_targets t WHERE device_id = $1"
	" ORDER BY version DESC LIMIT 1",
	1};
static const db_stmt st_desired = {
	"director_desired",
	"SELECT d.model, d.version, v.filename, v.sha256, v.length, gn_ts(d.assigned_at) FROM device_desired d"
	" JOIN model_versions v ON v.model = d.model AND v.version = d.version WHERE d.device_id = $1"
	" ORDER BY d.model COLLATE \"C\"",
	1};
static const db_stmt st_store = {
	"director_store",
	"INSERT INTO director_targets (device_id, version, body, model, model_version, expires_at, assigned_at,"
	" desired_key, snapshot_body, timestamp_body) VALUES ($1, $2, $3, nullif($4, ''), nullif($5, ''),"
	" to_timestamp($6::bigint), nullif($7, '')::timestamptz, $8, $9, $10)",
	10};
/* One role's metadata of a device at a version. */
static const db_stmt st_role_at = {
	"director_role_at",
	"SELECT CASE $3 WHEN 'targets' THEN body WHEN 'snapshot' THEN snapshot_body ELSE timestamp_body END"
	" FROM director_targets WHERE device_id = $1 AND version = $2::integer",
	3};
/* Whether the director has active snapshot and timestamp keys (a root that lists them). */
static const db_stmt st_full = {
	"director_full",
	"SELECT count(DISTINCT role) = 2 FROM tuf_keys WHERE repo = 'director' AND role IN ('snapshot', 'timestamp')"
	" AND active",
	0};
static const db_stmt st_resolve = {"director_resolve",
				   "SELECT v.version FROM model_versions v WHERE v.model = $1 AND v.version ="
				   " coalesce((SELECT version FROM model_aliases WHERE model = $1 AND alias = $2), $2)",
				   2};
static const db_stmt st_set_desired = {
	"director_set_desired",
	"INSERT INTO device_desired (device_id, model, version, assigned_by) SELECT id, $2, $3, $4 FROM devices"
	" WHERE id = $1 AND status = 'active'"
	" ON CONFLICT (device_id, model) DO UPDATE SET version = excluded.version, assigned_by = excluded.assigned_by,"
	" assigned_at = now(), deployment_id = NULL, stale_at = NULL RETURNING device_id",
	4};
/* The device's per-device assignments: of model $2, or of every model when $2 is NULL. */
static const db_stmt st_clear_desired = {"director_clear_desired",
					 "DELETE FROM device_desired WHERE device_id = $1 AND deployment_id IS NULL"
					 " AND ($2::text IS NULL OR model = $2) RETURNING model",
					 2};
/* Where the device's desired version of model $2 comes from: (deployment name or NULL). */
static const db_stmt st_desired_source = {
	"director_desired_source",
	"SELECT (SELECT name FROM deployments WHERE id = dd.deployment_id) FROM device_desired dd"
	" WHERE dd.device_id = $1 AND dd.model = $2",
	2};
static const db_stmt st_device_exists = {"director_device_exists", "SELECT status FROM devices WHERE id = $1", 1};
/* Every active device the selector matches (one past the limit, to tell that it is over). */
static const db_stmt st_select = {"director_select",
				  "SELECT d.id FROM devices d WHERE d.status = 'active' AND" DEVICES_SELECTOR_WHERE
				  " ORDER BY d.id LIMIT 100001",
				  5};
/* A check-in's report, in one statement under the device's row lock: the sequence number decides
 * first (older: refused; the same: a replay, nothing stored; none from a device that sent one
 * before: nothing stored), then the hourly budget of writes (a changed report and a new event
 * count one each). Last seen at most every 30 seconds. Returns (verdict, last sequence number,
 * dropped, first drop of this hour). A new sequence number is recorded even when nothing else is:
 * replays below it are refused from then on. */
static const db_stmt st_report = {
	"director_report",
	"WITH cur AS (SELECT d.report_seq, d.reported IS DISTINCT FROM $2::jsonb AS report_changed,"
	"   (d.reported IS DISTINCT FROM $2::jsonb OR ($3::jsonb IS NOT NULL AND d.facts IS DISTINCT FROM $3::jsonb))"
	"    AS changed,"
	"   ($4::jsonb IS NOT NULL AND NOT EXISTS (SELECT 1 FROM (SELECT operation FROM device_events"
	"    WHERE device_id = $1 ORDER BY id DESC LIMIT 1) last WHERE last.operation = $4::jsonb)) AS new_event,"
	"   (d.last_seen_at IS NULL OR d.last_seen_at < now() - interval '30 seconds') AS seen_due,"
	"   CASE WHEN d.report_window > now() - interval '1 hour' THEN d.report_writes ELSE 0 END AS writes,"
	"   CASE WHEN d.report_window > now() - interval '1 hour' THEN d.report_drops ELSE 0 END AS drops"
	"  FROM devices d WHERE d.id = $1 FOR UPDATE),"
	" v AS (SELECT cur.*, CASE WHEN $5::bigint IS NULL THEN CASE WHEN report_seq IS NULL THEN 'ok' ELSE 'no_seq' END"
	"   WHEN report_seq IS NULL OR $5::bigint > report_seq THEN 'ok'"
	"   WHEN $5::bigint = report_seq THEN 'replay' ELSE 'older' END AS verdict FROM cur),"
	" w AS (SELECT v.*, (verdict = 'ok' AND changed AND writes < $6::int) AS store_report FROM v),"
	" x AS (SELECT w.*, (verdict = 'ok' AND new_event AND writes + store_report::int < $6::int) AS store_event FROM w),"
	" y AS (SELECT x.*, (verdict = 'ok' AND ((changed AND NOT store_report) OR (new_event AND NOT store_event)))"
	"   AS dropped FROM x),"
	" u AS (UPDATE devices SET last_seen_at = now(),"
	"   reported = CASE WHEN y.store_report THEN $2::jsonb ELSE devices.reported END,"
	"   reported_at = CASE WHEN y.store_report AND y.report_changed THEN now() ELSE devices.reported_at END,"
	"   facts = CASE WHEN y.store_report AND $3::jsonb IS NOT NULL THEN $3::jsonb ELSE devices.facts END,"
	"   report_seq = coalesce($5::bigint, devices.report_seq),"
	"   report_window = CASE WHEN devices.report_window > now() - interval '1 hour' THEN devices.report_window"
	"    ELSE now() END,"
	"   report_writes = y.writes + y.store_report::int + y.store_event::int,"
	"   report_drops = y.drops + y.dropped::int"
	"  FROM y WHERE devices.id = $1 AND y.verdict = 'ok' AND (y.seen_due OR y.store_report OR y.store_event OR y.dropped OR $5::bigint IS NOT NULL)"
	"  RETURNING 1),"
	" e AS (INSERT INTO device_events (device_id, operation) SELECT $1, $4::jsonb FROM y WHERE y.store_event)"
	" SELECT verdict, coalesce(report_seq::text, '0'), dropped, dropped AND drops = 0 FROM y",
	6};
static const db_stmt st_roots = {
	"director_roots",
	"SELECT (SELECT max(version) FROM tuf_metadata WHERE repo = 'image' AND role = 'root'),"
	" (SELECT max(version) FROM tuf_metadata WHERE repo = 'director' AND role = 'root')",
	0};
const db_stmt director_events_stmt = {
	"director_events",
	"SELECT jsonb_build_object('id', id, 'at', gn_ts(at), 'operation', operation)::text, id::text AS cursor"
	" FROM device_events WHERE device_id = $1 AND ($2::bigint IS NULL OR id < $2::bigint)"
	" ORDER BY device_events.id DESC LIMIT $3",
	3};
/* Drops every replica's cached check-in answer for every active device (the gn_director channel
 * of migrations/0004_director_notify.sql); sent when the transaction commits. */
static const db_stmt st_notify_all = {
	"director_notify_all", "SELECT count(pg_notify('gn_director', id::text)) FROM devices WHERE status = 'active'",
	0};

/* --- the re-sign rule ------------------------------------------------------------------------- */

void director_state_cleanup(struct director_state *st)
{
	free(st->key);
	free(st->want_key);
	free(st->want);
	memset(st, 0, sizeof(*st));
}

bool director_needs_signing(const struct director_state *st, int64_t now)
{
	if (!st->version || st->retired_key || st->unsnapshotted)
		return true;
	if (strcmp(st->key ? st->key : "", st->want_key ? st->want_key : "") != 0)
		return true;
	return tuf_sign_due(st->created, st->expires, now);
}

int64_t director_fresh_until(const struct director_state *st)
{
	return st->created + (st->expires - st->created) / 2;
}

/* --- signing a device's targets --------------------------------------------------------------- */

/* Reads the newest signed targets into st and *out_body (new; NULL when none). */
static int read_signed(struct director_state *st, char **out_body, db_conn *c, const char *device_id, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {device_id};
	int error = db_exec(&res, c, &st_latest, p, err);
	if (error || PQntuples(res) != 1)
		goto out;
	st->version = atoi(PQgetvalue(res, 0, 0));
	*out_body = gn_strdup(PQgetvalue(res, 0, 1));
	st->expires = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
	st->created = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
	st->key = gn_strdup(PQgetvalue(res, 0, 4));
	st->retired_key = strcmp(PQgetvalue(res, 0, 5), "t") == 0;
	st->unsnapshotted = strcmp(PQgetvalue(res, 0, 6), "t") == 0;
out:
	PQclear(res);
	return error;
}

#define COPY_ROW(dst, res, row, col) snprintf((dst), sizeof(dst), "%s", PQgetvalue((res), (row), (col)))

/* Reads what the device should run into st: each model (ordered by model, bytewise, as
 * gn_desired_key orders them) and the key they make. */
static int read_desired(struct director_state *st, db_conn *c, const char *device_id, gn_err *err)
{
	PGresult *res = NULL;
	gn_buf key;
	const char *p[] = {device_id};
	int error = db_exec(&res, c, &st_desired, p, err);
	if (error)
		return error;
	gn_buf_init(&key);
	st->nwant = (size_t)PQntuples(res);
	st->want = gn_calloc(st->nwant ? st->nwant : 1, sizeof(*st->want));
	for (int i = 0; i < PQntuples(res); i++) {
		struct director_want *w = &st->want[i];
		COPY_ROW(w->model, res, i, 0);
		COPY_ROW(w->version, res, i, 1);
		COPY_ROW(w->filename, res, i, 2);
		COPY_ROW(w->sha256, res, i, 3);
		COPY_ROW(w->length, res, i, 4);
		COPY_ROW(w->assigned_at, res, i, 5);
		gn_buf_printf(&key, "%s%s=%s@%s", i ? "," : "", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
			      PQgetvalue(res, i, 5));
	}
	st->want_key = gn_buf_detach(&key);
	PQclear(res);
	return 0;
}

/* Reads the device's state afresh into st and *body (replacing what they held). */
static int read_state(struct director_state *st, char **body, db_conn *c, const char *device_id, gn_err *err)
{
	int error;
	free(*body);
	*body = NULL;
	director_state_cleanup(st);
	if ((error = read_signed(st, body, c, device_id, err)))
		return error;
	return read_desired(st, c, device_id, err);
}

/* Returns the signed part of version st->version + 1 of the device's targets (new). */
static json_t *targets_signed(const struct director_state *st, const char *device_id, int64_t expires)
{
	json_t *sp = tuf_sign_header("targets", st->version + 1, expires), *targets = json_object();
	/* One target per model: their paths differ by model, whatever their bytes. */
	for (size_t i = 0; i < st->nwant; i++) {
		const struct director_want *w = &st->want[i];
		char *path = gn_asprintf("models/%s/%s/%s", w->model, w->version, w->filename);
		json_object_set_new(targets, path,
				    json_pack("{s:I,s:{s:s},s:{s:s,s:s,s:s,s:s}}", "length",
					      (json_int_t)strtoll(w->length, NULL, 10), "hashes", "sha256", w->sha256,
					      "custom", "device_id", device_id, "model", w->model, "version",
					      w->version, "assigned_at", w->assigned_at));
		free(path);
	}
	json_object_set_new(sp, "targets", targets);
	/* The device id is inside what is signed: metadata for one device is useless to another. */
	char issued[21];
	gn_tuf_time(issued, gn_now());
	json_object_set_new(sp, "custom", json_pack("{s:s,s:s}", "device_id", device_id, "issued_at", issued));
	return sp;
}

/* Signs sp with the director's online key of role; *out is the stored form (new). */
static int sign_role(char **out, db_conn *c, const char *role, const json_t *sp, gn_err *err)
{
	gn_ed25519_key *key = NULL;
	json_t *env = NULL;
	int error = tuf_sign_online_key(&key, c, "director", role, err);
	if (!error && !(error = gn_tuf_sign(&env, sp, &key, 1, err)))
		*out = json_dumps(env, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(env);
	gn_ed25519_key_free(key);
	return error;
}

/* Signs the snapshot over targets version `version` (whose bytes are targets) and the timestamp
 * over that snapshot, both at that version, when the director has keys for them (a root that
 * lists them); else leaves *out_snapshot and *out_timestamp NULL (a director root of two roles). */
static int sign_snapshot_timestamp(char **out_snapshot, char **out_timestamp, db_conn *c, int version,
				   const char *targets, int64_t expires, gn_err *err)
{
	PGresult *res = NULL;
	json_t *sn = NULL, *ts = NULL;
	char sum[GN_SHA256_HEX_LEN + 1];
	int error = db_exec(&res, c, &st_full, NULL, err);
	if (error || strcmp(PQgetvalue(res, 0, 0), "t") != 0)
		goto out;
	sn = tuf_sign_header("snapshot", version, expires);
	gn_sha256_hex(sum, targets, strlen(targets));
	json_object_set_new(sn, "meta",
			    json_pack("{s:{s:i,s:I,s:{s:s}}}", "targets.json", "version", version, "length",
				      (json_int_t)strlen(targets), "hashes", "sha256", sum));
	if ((error = sign_role(out_snapshot, c, "snapshot", sn, err)))
		goto out;
	ts = tuf_sign_header("timestamp", version, expires);
	gn_sha256_hex(sum, *out_snapshot, strlen(*out_snapshot));
	json_object_set_new(ts, "meta",
			    json_pack("{s:{s:i,s:I,s:{s:s}}}", "snapshot.json", "version", version, "length",
				      (json_int_t)strlen(*out_snapshot), "hashes", "sha256", sum));
	error = sign_role(out_timestamp, c, "timestamp", ts, err);
out:
	PQclear(res);
	json_decref(sn);
	json_decref(ts);
	return error;
}

/* Signs and stores the next version of the device's targets (with its snapshot and timestamp);
 * st and *body become it. Inside the caller's transaction, under the device's director lock. */
static int sign(struct director_state *st, char **body, db_conn *c, const struct tuf_settings *s, const char *device_id,
		gn_err *err)
{
	char *signed_body = NULL, *snapshot = NULL, *timestamp = NULL, ver[16], exps[32];
	int64_t exp = gn_now() + s->director_expiry;
	json_t *sp = targets_signed(st, device_id, exp);
	int error;
	if ((error = sign_role(&signed_body, c, "targets", sp, err)) ||
	    (error = sign_snapshot_timestamp(&snapshot, &timestamp, c, st->version + 1, signed_body, exp, err)))
		goto out;
	snprintf(ver, sizeof(ver), "%d", st->version + 1);
	snprintf(exps, sizeof(exps), "%lld", (long long)exp);
	/* The one-model columns keep naming a device's only model, for whoever reads them. */
	const struct director_want *one = st->nwant == 1 ? &st->want[0] : NULL;
	const char *p[] = {device_id,
			   ver,
			   signed_body,
			   one ? one->model : "",
			   one ? one->version : "",
			   exps,
			   one ? one->assigned_at : "",
			   st->want_key ? st->want_key : "",
			   snapshot,
			   timestamp};
	if ((error = db_exec(NULL, c, &st_store, p, err)))
		goto out;
	free(*body);
	*body = signed_body;
	signed_body = NULL;
	free(st->key);
	st->key = gn_strdup(st->want_key ? st->want_key : "");
	st->version++;
	st->retired_key = false;
	st->unsnapshotted = false;
	st->created = exp - s->director_expiry;
	st->expires = exp;
out:
	free(signed_body);
	free(snapshot);
	free(timestamp);
	json_decref(sp);
	return error;
}

/* Takes the device's director lock, reads its state and signs it anew if it needs it. Inside the
 * caller's transaction. */
static int sync_locked(struct director_state *st, char **body, db_conn *c, const struct tuf_settings *s,
		       const char *device_id, gn_err *err)
{
	int error;
	if ((error = db_lock_xact_text(c, DB_LOCK_NS_DIRECTOR, device_id, err)) ||
	    (error = read_state(st, body, c, device_id, err)))
		return error;
	if (director_needs_signing(st, gn_now()))
		error = sign(st, body, c, s, device_id, err);
	return error;
}

int director_sync(int *out_version, db_conn *c, const struct tuf_settings *s, const char *device_id, gn_err *err)
{
	struct director_state st = {0};
	char *body = NULL;
	int error = sync_locked(&st, &body, c, s, device_id, err);
	if (!error && out_version)
		*out_version = st.version;
	free(body);
	director_state_cleanup(&st);
	return error;
}

int director_current(char **out_body, int *out_version, int64_t *out_fresh_until, db_conn *c,
		     const struct tuf_settings *s, const char *device_id, gn_err *err)
{
	struct director_state st = {0};
	char *body = NULL;
	int error;
	assert(!db_in_tx(c));
	/* Most check-ins find nothing to sign: decide on a plain read, lock only to sign. */
	if ((error = read_state(&st, &body, c, device_id, err)))
		goto out;
	if (director_needs_signing(&st, gn_now())) {
		if ((error = db_tx_begin(c, err)))
			goto out;
		if ((error = sync_locked(&st, &body, c, s, device_id, err)) || (error = db_tx_commit(c, err))) {
			db_tx_rollback(c);
			goto out;
		}
	}
	*out_body = body;
	body = NULL;
	*out_version = st.version;
	if (out_fresh_until)
		*out_fresh_until = director_fresh_until(&st);
out:
	free(body);
	director_state_cleanup(&st);
	return error;
}

int director_metadata_get(char **out, db_conn *c, const struct tuf_settings *s, const char *device_id, const char *role,
			  int version, gn_err *err)
{
	PGresult *res = NULL;
	char *targets = NULL, ver[16];
	int error = 0;
	/* The newest: signed anew first if it needs it, as at a check-in. */
	if (!version && (error = director_current(&targets, &version, NULL, c, s, device_id, err)))
		return error;
	free(targets);
	snprintf(ver, sizeof(ver), "%d", version);
	const char *p[] = {device_id, ver, role};
	if ((error = db_exec(&res, c, &st_role_at, p, err)))
		return error;
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
		error = gn_err_set(err, GN_ENOTFOUND, "this device's director has no %s metadata at version %d%s", role,
				   version,
				   strcmp(role, "targets") == 0 ? "" : " (the director root lists no such role yet)");
	else
		*out = gn_strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return error;
}

int director_root_get(char **out, db_conn *c, int version, gn_err *err)
{
	return tuf_sign_get(out, c, "director", "root", version, err);
}

int director_key_changed(db_conn *c, gn_err *err)
{
	/* Signing every device's targets here would hold the TUF lock (and a device lock each) over
	 * the whole fleet; the re-sign rule does it at each device's next check-in instead, as
	 * targets signed by a retired key need signing anew. Only the cached answers must go. */
	int error = db_exec(NULL, c, &st_notify_all, NULL, err);
	if (!error)
		gn_log(GN_LOG_INFO,
		       "event=director_key_changed msg=\"each device's targets are signed anew at its next check-in\"");
	return error;
}

/* --- desired state ---------------------------------------------------------------------------- */

/* Resolves model + version-or-alias to a published version, into out. */
static int resolve(char out[72], db_conn *c, const char *model, const char *version, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {model, version};
	int error = db_exec(&res, c, &st_resolve, p, err);
	if (error)
		return error;
	if (PQntuples(res) == 0)
		error = gn_err_set(err, GN_ENOTFOUND, "no such model version or alias");
	else
		snprintf(out, 72, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return error ? error : models_targetable(c, model, out, "a device assignment", err);
}

/* Records that the active device should run model at version; GN_ENOTFOUND when no active
 * device has that id. */
static int set_desired(db_conn *c, const struct gd_actor *who, const char *device_id, const char *model,
		       const char *version, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {device_id, model, version, who->name};
	int error = db_exec(&res, c, &st_set_desired, p, err);
	if (!error && PQntuples(res) == 0)
		error = gn_err_set(err, GN_ENOTFOUND, "no such active device");
	PQclear(res);
	return error;
}

int director_assign(struct director_assignment *out, db_conn *c, const struct tuf_settings *s,
		    const struct gd_actor *who, const char *device_id, const char *model, const char *version,
		    gn_err *err)
{
	int error;
	memset(out, 0, sizeof(*out));
	if (!gn_is_uuid(device_id))
		return gn_err_set(err, GN_ENOTFOUND, "no such device");
	if ((error = resolve(out->version, c, model, version, err)) ||
	    (error = runnable_check(c, model, out->version, NULL, device_id, "assignment", err)) ||
	    (error = db_tx_begin(c, err)))
		return error;
	if ((error = set_desired(c, who, device_id, model, out->version, err)) ||
	    (error = audit_write(c, who, "device.assign", "device", device_id,
				 json_pack("{s:s,s:s}", "model", model, "version", out->version), err)) ||
	    (error = director_sync(&out->director_version, c, s, device_id, err)) || (error = db_tx_commit(c, err)))
		db_tx_rollback(c);
	return error;
}

/* GN_ENOTFOUND unless a device (of any status) has this id. */
static int device_exists(db_conn *c, const char *device_id, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {device_id};
	if (!gn_is_uuid(device_id))
		return gn_err_set(err, GN_ENOTFOUND, "no such device");
	int error = db_exec(&res, c, &st_device_exists, p, err);
	if (!error && PQntuples(res) == 0)
		error = gn_err_set(err, GN_ENOTFOUND, "no such device");
	PQclear(res);
	return error;
}

/* Checks that model names an assignment of the device that unassign may remove: GN_ENOTFOUND when
 * it has no desired version of model, GN_ECONFLICT when a deployment gives it. */
static int removable(db_conn *c, const char *device_id, const char *model, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {device_id, model};
	int error = db_exec(&res, c, &st_desired_source, p, err);
	if (error)
		return error;
	if (PQntuples(res) == 0)
		error = gn_err_set(err, GN_ENOTFOUND, "device %s has no desired version of model %s", device_id, model);
	else if (!PQgetisnull(res, 0, 0))
		error = gn_err_set(err, GN_ECONFLICT,
				   "model %s comes to device %s from deployment %s, not from an assignment; change the"
				   " deployment's selector or the device's labels, or assign an override",
				   model, device_id, PQgetvalue(res, 0, 0));
	PQclear(res);
	return error;
}

int director_unassign(int *out_version, db_conn *c, const struct tuf_settings *s, const struct gd_actor *who,
		      const char *device_id, const char *model, gn_err *err)
{
	PGresult *res = NULL;
	json_t *removed = json_array();
	const char *p[] = {device_id, model};
	int error;
	if ((error = device_exists(c, device_id, err)) || (error = db_tx_begin(c, err)))
		goto out;
	if ((model && (error = removable(c, device_id, model, err))) ||
	    (error = db_exec(&res, c, &st_clear_desired, p, err)))
		goto out;
	for (int i = 0; i < PQntuples(res); i++)
		json_array_append_new(removed, json_string(PQgetvalue(res, i, 0)));
	if ((error = audit_write(c, who, "device.unassign", "device", device_id, json_pack("{s:O}", "models", removed),
				 err)) ||
	    (error = director_sync(out_version, c, s, device_id, err)) || (error = db_tx_commit(c, err)))
		goto out;
out:
	if (error && db_in_tx(c))
		db_tx_rollback(c);
	PQclear(res);
	json_decref(removed);
	return error;
}

/* Sets the desired state of every device in res (one id per row) and audits it once. Inside the
 * caller's transaction. */
static int set_desired_all(json_t *ids, db_conn *c, const struct gd_actor *who, const PGresult *res,
			   const char *selector, const char *model, const char *version, gn_err *err)
{
	int error;
	for (int i = 0; i < PQntuples(res); i++) {
		const char *id = PQgetvalue(res, i, 0);
		if ((error = set_desired(c, who, id, model, version, err)))
			return error;
		json_array_append_new(ids, json_string(id));
	}
	return audit_write(c, who, "device.assign", "selector", selector,
			   json_pack("{s:s,s:s,s:i}", "model", model, "version", version, "devices", PQntuples(res)),
			   err);
}

/* Signs each device's targets anew, so that they see the change at their next check-in; the
 * first failure stops it (those check-ins sign whatever is stale). */
static void sync_each(db_conn *c, const struct tuf_settings *s, const json_t *ids)
{
	size_t i;
	json_t *v;
	json_array_foreach(ids, i, v) {
		char *body = NULL;
		int version;
		gn_err err;
		int error = director_current(&body, &version, NULL, c, s, json_string_value(v), &err);
		free(body);
		if (error) {
			gn_log(GN_LOG_WARN, "event=director_sign_failed device_id=%s msg=\"%s\"", json_string_value(v),
			       err.msg);
			break;
		}
	}
}

/* Assigns model at version to the devices that sp (selector parameters) matches, in a
 * transaction of its own; ids gets their ids. */
static int assign_matching(json_t *ids, db_conn *c, const struct gd_actor *who, char *const sp[5], const char *selector,
			   const char *model, const char *version, gn_err *err)
{
	PGresult *res = NULL;
	int error;
	if ((error = db_tx_begin(c, err)))
		return error;
	if ((error = db_exec(&res, c, &st_select, (const char *const *)sp, err)))
		goto out;
	if (PQntuples(res) > SELECTOR_MAX_DEVICES) {
		error = gn_err_set(err, GN_EINVAL,
				   "the selector matches more than %d devices; narrow it or use a rollout",
				   SELECTOR_MAX_DEVICES);
		goto out;
	}
	if (!(error = set_desired_all(ids, c, who, res, selector, model, version, err)))
		error = db_tx_commit(c, err);
out:
	if (error)
		db_tx_rollback(c);
	PQclear(res);
	return error;
}

int director_assign_selector(json_t **out_devices, char out_version[72], db_conn *c, const struct tuf_settings *s,
			     const struct gd_actor *who, const char *selector, const char *model, const char *version,
			     gn_err *err)
{
	char *sp[5] = {0};
	json_t *ids = json_array();
	int error;
	*out_devices = NULL;
	if (!*selector) {
		error = gn_err_set(
			err, GN_EINVAL,
			"the selector is empty; name the devices (e.g. site=north), a fleet-wide change is a rollout");
		goto out;
	}
	if ((error = devices_selector_params(sp, selector, err)) ||
	    (error = resolve(out_version, c, model, version, err)) ||
	    (error = runnable_check(c, model, out_version, sp, NULL, "assignment", err)) ||
	    (error = assign_matching(ids, c, who, sp, selector, model, out_version, err)))
		goto out;
	sync_each(c, s, ids);
	*out_devices = ids;
	ids = NULL;
out:
	json_decref(ids);
	for (int k = 0; k < 5; k++)
		free(sp[k]);
	return error;
}

/* --- check-ins -------------------------------------------------------------------------------- */

int director_report(enum director_report_outcome *out, int64_t *out_last_seq, db_conn *c, const char *device_id,
		    const char *reported, const char *facts, const char *operation, int64_t seq, int per_hour,
		    gn_err *err)
{
	PGresult *res = NULL;
	char sseq[24], sbudget[16];
	snprintf(sseq, sizeof(sseq), "%lld", (long long)seq);
	snprintf(sbudget, sizeof(sbudget), "%d", per_hour);
	const char *p[] = {device_id, reported, facts, operation, seq > 0 ? sseq : NULL, sbudget};
	int error = db_exec(&res, c, &st_report, p, err);
	*out = DIRECTOR_REPORT_STORED;
	*out_last_seq = 0;
	if (error || PQntuples(res) != 1)
		goto out;
	const char *verdict = PQgetvalue(res, 0, 0);
	*out_last_seq = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	if (strcmp(verdict, "older") == 0) {
		error = gn_err_set(
			err, GN_ECONFLICT,
			"report sequence number %lld is older than the last one recorded for this device (%lld):"
			" a replayed check-in is not recorded",
			(long long)seq, (long long)*out_last_seq);
	} else if (strcmp(verdict, "replay") == 0) {
		*out = DIRECTOR_REPORT_REPLAY;
	} else if (strcmp(verdict, "no_seq") == 0) {
		*out = DIRECTOR_REPORT_NO_SEQ;
	} else if (strcmp(PQgetvalue(res, 0, 2), "t") == 0) {
		*out = DIRECTOR_REPORT_OVER_BUDGET;
		if (strcmp(PQgetvalue(res, 0, 3), "t") == 0)
			gn_log(GN_LOG_WARN,
			       "event=report_budget_exceeded device_id=%s per_hour=%d note=\"reports and events of this "
			       "device are not recorded until its hour is over\"",
			       device_id, per_hour);
	}
out:
	PQclear(res);
	return error;
}

int director_root_versions(int *out_image, int *out_director, db_conn *c, gn_err *err)
{
	PGresult *res = NULL;
	int error = db_exec(&res, c, &st_roots, NULL, err);
	if (error)
		return error;
	*out_image = atoi(PQgetvalue(res, 0, 0));
	*out_director = atoi(PQgetvalue(res, 0, 1));
	PQclear(res);
	return 0;
}
