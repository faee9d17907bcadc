/* The director over HTTP: agents check in and get their signed desired state; operators assign
 * model versions to devices, one by one or by label selector. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "checkin_cache.h"
#include "devices.h"
#include "gangliond.h"
#include "http.h"
#include "tufrepo.h"

static const db_stmt st_checkin = {
	"director_checkin",
	"WITH u AS (UPDATE devices SET last_seen_at = now(), reported = $2::jsonb,"
	"   reported_at = CASE WHEN reported IS DISTINCT FROM $2::jsonb THEN now() ELSE reported_at END,"
	"   facts = CASE WHEN $3::jsonb IS NULL THEN facts ELSE $3::jsonb END"
	"  WHERE id = $1 AND (reported IS DISTINCT FROM $2::jsonb OR ($3::jsonb IS NOT NULL AND facts IS DISTINCT FROM $3::jsonb)"
	"   OR last_seen_at IS NULL OR last_seen_at < now() - interval '30 seconds') RETURNING 1),"
	" e AS (INSERT INTO device_events (device_id, operation) SELECT $1, $4::jsonb WHERE $4::jsonb IS NOT NULL"
	"   AND NOT EXISTS (SELECT 1 FROM (SELECT operation FROM device_events WHERE device_id = $1"
	"   ORDER BY id DESC LIMIT 1) last WHERE last.operation = $4::jsonb))"
	" SELECT 1",
	4};
static const db_stmt st_roots = {
	"director_roots",
	"SELECT (SELECT max(version) FROM tuf_metadata WHERE repo = 'image' AND role = 'root'),"
	" (SELECT max(version) FROM tuf_metadata WHERE repo = 'director' AND role = 'root')",
	0};

static const gn_json_field checkin_fields[] = {
	{"agent_version", GN_JSON_STRING, false, false},
	{"models", GN_JSON_ARRAY, false, false},
	{"facts", GN_JSON_OBJECT, false, true},
	{"last_operation", GN_JSON_OBJECT, false, true},
};

void http_agent_checkin(struct gd_req *r)
{
	json_t *body = NULL, *reported = NULL;
	PGresult *res = NULL;
	char *s_rep = NULL, *s_facts = NULL, *s_op = NULL, *dt = NULL, etag[32];
	int dt_version = 0;
	gn_err err;
	const char *id = r->actor.id;

	if (gd_body_json(&body, r, checkin_fields, GN_ARRAY_LEN(checkin_fields)))
		goto out;
	json_t *facts = json_object_get(body, "facts"), *op = json_object_get(body, "last_operation");
	reported = json_pack("{s:O?,s:O?,s:O?}", "agent_version", json_object_get(body, "agent_version"), "models",
			     json_object_get(body, "models"), "last_operation", op);
	s_rep = json_dumps(reported, JSON_COMPACT | JSON_SORT_KEYS);
	if (json_is_object(facts))
		s_facts = json_dumps(facts, JSON_COMPACT | JSON_SORT_KEYS);
	if (json_is_object(op))
		s_op = json_dumps(op, JSON_COMPACT | JSON_SORT_KEYS);
	const char *p[] = {id, s_rep, s_facts, s_op};
	const char *inm = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
	int64_t now = gn_now(), fresh_until = 0;
	uint64_t hash = checkin_cache_hash(0, s_rep, strlen(s_rep));
	hash = checkin_cache_hash(hash, s_facts ? s_facts : "-", s_facts ? strlen(s_facts) : 1);
	hash = checkin_cache_hash(hash, s_op ? s_op : "-", s_op ? strlen(s_op) : 1);
	int told;
	bool write;
	/* Nothing changed since the answer this device holds: answer from memory (and write its
	 * report only when it changed or its last-seen time is due). */
	if (inm && sscanf(inm, "\"dt-%d\"", &told) == 1 && checkin_cache_fresh(id, told, hash, now, &write)) {
		if (write && db_exec(NULL, gd_db(r), &st_checkin, p, &err)) {
			gd_reply_error(r, &err);
			goto out;
		}
		gd_header(r, "ETag", inm);
		gd_reply_raw(r, 304, NULL, "", 0);
		goto out;
	}
	uint64_t epoch = checkin_cache_epoch();
	if (db_exec(NULL, gd_db(r), &st_checkin, p, &err) ||
	    tufrepo_director_current(&dt, &dt_version, &fresh_until, gd_db(r), id, &err)) {
		gd_reply_error(r, &err);
		goto out;
	}
	checkin_cache_put(id, dt_version, fresh_until, hash, now, epoch);
	snprintf(etag, sizeof(etag), "\"dt-%d\"", dt_version);
	gd_header(r, "ETag", etag);
	if (inm && strcmp(inm, etag) == 0) {
		gd_reply_raw(r, 304, NULL, "", 0);
		goto out;
	}
	if (db_exec(&res, gd_db(r), &st_roots, NULL, &err)) {
		gd_reply_error(r, &err);
		goto out;
	}
	/* The signed director metadata travels as it was signed, byte for byte. */
	gn_buf b;
	gn_buf_init(&b);
	gn_buf_printf(&b,
		      "{\"poll_interval\":%lld,\"director_version\":%d,\"image_root_version\":%s,"
		      "\"director_root_version\":%s,\"director_targets\":%s}",
		      (long long)atomic_load(&gd.agent_poll_interval), dt_version, PQgetvalue(res, 0, 0),
		      PQgetvalue(res, 0, 1), dt);
	gd_reply_raw(r, 200, "application/json", b.data, b.len);
	gn_buf_cleanup(&b);
out:
	PQclear(res);
	json_decref(body);
	json_decref(reported);
	free(s_rep);
	free(s_facts);
	free(s_op);
	free(dt);
}

static const db_stmt st_resolve = {
	"director_resolve",
	"SELECT v.version FROM model_versions v WHERE v.model = $1 AND v.version ="
	" coalesce((SELECT version FROM model_aliases WHERE model = $1 AND alias = $2), $2)",
	2};
static const db_stmt st_set_desired = {
	"director_set_desired",
	"INSERT INTO device_desired (device_id, model, version, assigned_by) SELECT id, $2, $3, $4 FROM devices"
	" WHERE id = $1 AND status = 'active'"
	" ON CONFLICT (device_id) DO UPDATE SET model = excluded.model, version = excluded.version,"
	" assigned_by = excluded.assigned_by, assigned_at = now() RETURNING device_id",
	4};
static const db_stmt st_clear_desired = {
	"director_clear_desired", "DELETE FROM device_desired WHERE device_id = $1 RETURNING device_id", 1};
static const db_stmt st_device_exists = {
	"director_device_exists", "SELECT status FROM devices WHERE id = $1", 1};

static const gn_json_field desired_fields[] = {
	{"model", GN_JSON_STRING, true, false},
	{"version", GN_JSON_STRING, true, false},
};

/* Resolves model + version-or-alias to a published version into out; answers 404 otherwise. */
static int resolve(struct gd_req *r, const char *model, const char *version, char out[72])
{
	PGresult *res = NULL;
	gn_err err;
	const char *p[] = {model, version};
	if (db_exec(&res, gd_db(r), &st_resolve, p, &err)) {
		gd_reply_error(r, &err);
		return -1;
	}
	if (PQntuples(res) == 0) {
		PQclear(res);
		gd_reply_problem(r, 404, "no such model version or alias");
		return -1;
	}
	snprintf(out, 72, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

/* Re-signs the device's director targets now, so its next check-in sees the change. */
static int resign(struct gd_req *r, const char *id, int *out_version, gn_err *err)
{
	char *body = NULL;
	int rc = tufrepo_director_current(&body, out_version, NULL, gd_db(r), id, err);
	free(body);
	return rc;
}

void http_devices_desired_put(struct gd_req *r)
{
	json_t *body = NULL;
	PGresult *res = NULL;
	gn_err err;
	char version[72];
	int dv = 0;
	const char *id = gd_param(r, 0);
	if (!gn_is_uuid(id)) {
		gd_reply_problem(r, 404, "no such device");
		return;
	}
	if (gd_body_json(&body, r, desired_fields, GN_ARRAY_LEN(desired_fields)))
		return;
	const char *model = gn_json_str(body, "model");
	if (resolve(r, model, gn_json_str(body, "version"), version))
		goto out;
	const char *p[] = {id, model, version, r->actor.name};
	if (db_exec_sql(gd_db(r), "BEGIN", &err) || db_exec(&res, gd_db(r), &st_set_desired, p, &err)) {
		gd_reply_error(r, &err);
		goto out;
	}
	if (PQntuples(res) == 0) {
		gd_reply_problem(r, 404, "no such active device");
		goto out;
	}
	if (audit_write(gd_db(r), &r->actor, "device.assign", "device", id, json_pack("{s:s,s:s}", "model", model, "version", version), &err) ||
	    db_exec_sql(gd_db(r), "COMMIT", &err) || resign(r, id, &dv, &err)) {
		gd_reply_error(r, &err);
		goto out;
	}
	gd_reply_json(r, 200, json_pack("{s:s,s:s,s:s,s:i}", "device_id", id, "model", model, "version", version,
					"director_version", dv));
out:
	PQclear(res);
	json_decref(body);
}

void http_devices_desired_delete(struct gd_req *r)
{
	PGresult *res = NULL;
	gn_err err;
	int dv = 0;
	const char *id = gd_param(r, 0);
	if (!gn_is_uuid(id)) {
		gd_reply_problem(r, 404, "no such device");
		return;
	}
	const char *p[] = {id};
	if (db_exec(&res, gd_db(r), &st_device_exists, p, &err)) {
		gd_reply_error(r, &err);
		return;
	}
	if (PQntuples(res) == 0) {
		PQclear(res);
		gd_reply_problem(r, 404, "no such device");
		return;
	}
	PQclear(res);
	res = NULL;
	if (db_exec_sql(gd_db(r), "BEGIN", &err) || db_exec(&res, gd_db(r), &st_clear_desired, p, &err) ||
	    audit_write(gd_db(r), &r->actor, "device.unassign", "device", id, NULL, &err) || db_exec_sql(gd_db(r), "COMMIT", &err) ||
	    resign(r, id, &dv, &err)) {
		gd_reply_error(r, &err);
		PQclear(res);
		return;
	}
	PQclear(res);
	gd_reply_raw(r, 204, NULL, "", 0);
}

/* Every active device the selector matches (the same fixed statement as the device list). */
static const db_stmt st_select = {
	"director_select",
	"SELECT d.id FROM devices d WHERE d.status = 'active'"
	"  AND d.labels @> $1::jsonb"
	"  AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements($2::jsonb) e WHERE d.labels->>(e->>0) IS DISTINCT FROM e->>1)"
	"  AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements($3::jsonb) e WHERE d.labels->>(e->>0) = e->>1)"
	"  AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text($4::jsonb) k WHERE NOT d.labels ? k)"
	"  AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text($5::jsonb) k WHERE d.labels ? k)"
	" ORDER BY d.id LIMIT 100001",
	5};

static const gn_json_field bulk_fields[] = {
	{"selector", GN_JSON_STRING, true, false},
	{"model", GN_JSON_STRING, true, false},
	{"version", GN_JSON_STRING, true, false},
};

void http_desired_bulk(struct gd_req *r)
{
	json_t *body = NULL, *ids = json_array();
	PGresult *res = NULL;
	gn_err err;
	char version[72];
	char *sp[5] = {0};
	if (gd_body_json(&body, r, bulk_fields, GN_ARRAY_LEN(bulk_fields)))
		goto out;
	const char *model = gn_json_str(body, "model");
	if (!*gn_json_str(body, "selector")) {
		gd_reply_problem(r, 400, "the selector is empty; name the devices (e.g. site=north), a fleet-wide change is a rollout");
		goto out;
	}
	if (devices_selector_params(sp, gn_json_str(body, "selector"), &err)) {
		gd_reply_problem(r, 400, err.msg);
		goto out;
	}
	if (resolve(r, model, gn_json_str(body, "version"), version))
		goto out;
	if (db_exec_sql(gd_db(r), "BEGIN", &err) || db_exec(&res, gd_db(r), &st_select, (const char *const *)sp, &err)) {
		gd_reply_error(r, &err);
		goto out;
	}
	if (PQntuples(res) > 100000) {
		gd_reply_problem(r, 400, "the selector matches more than 100000 devices; narrow it or use a rollout");
		goto out;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		const char *p[] = {PQgetvalue(res, i, 0), model, version, r->actor.name};
		if (db_exec(NULL, gd_db(r), &st_set_desired, p, &err)) {
			gd_reply_error(r, &err);
			goto out;
		}
		json_array_append_new(ids, json_string(PQgetvalue(res, i, 0)));
	}
	if (audit_write(gd_db(r), &r->actor, "device.assign", "selector", gn_json_str(body, "selector"),
			json_pack("{s:s,s:s,s:i}", "model", model, "version", version, "devices", PQntuples(res)), &err) ||
	    db_exec_sql(gd_db(r), "COMMIT", &err)) {
		gd_reply_error(r, &err);
		goto out;
	}
	/* Sign now so the devices see the change at their next check-in; a failure here is healed
	 * by the check-in itself, which signs whatever is stale. */
	size_t i;
	json_t *v;
	json_array_foreach(ids, i, v)
	{
		int dv;
		gn_err e2;
		if (resign(r, json_string_value(v), &dv, &e2))
			break;
	}
	gd_reply_json(r, 200, json_pack("{s:s,s:s,s:I,s:O}", "model", model, "version", version, "count",
					(json_int_t)json_array_size(ids), "devices", ids));
out:
	PQclear(res);
	json_decref(body);
	json_decref(ids);
	for (int k = 0; k < 5; k++)
		free(sp[k]);
}

static const db_stmt st_events = {
	"director_events",
	"SELECT jsonb_build_object('id', id, 'at', gn_ts(at), 'operation', operation)::text, id::text AS cursor"
	" FROM device_events WHERE device_id = $1 AND ($2::bigint IS NULL OR id < $2::bigint)"
	" ORDER BY device_events.id DESC LIMIT $3",
	3};

void http_devices_events(struct gd_req *r)
{
	const char *id = gd_param(r, 0);
	if (!gn_is_uuid(id)) {
		gd_reply_problem(r, 404, "no such device");
		return;
	}
	gd_list(r, &st_events, CURSOR_INT, &id, 1);
}
