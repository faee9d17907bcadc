/* Agent check-ins (POST /v1/agent/checkin) and the operations they report (GET
 * /v1/devices/{id}/events): thin handlers over director.c. While nothing changed for a device, the
 * answer comes from memory (checkin_cache.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkin_cache.h"
#include "config.h"
#include "director.h"
#include "http.h"

static const gn_json_field checkin_fields[] = {
	{"agent_version", GN_JSON_STRING, false, false},
	{"models", GN_JSON_ARRAY, false, false},
	{"facts", GN_JSON_OBJECT, false, true},
	{"last_operation", GN_JSON_OBJECT, false, true},
};

/* A check-in's parts as JSON text: the report, facts and last operation (NULL when absent). */
struct report {
	char *reported, *facts, *operation;
	uint64_t hash; /* of all three, to notice a changed report */
};

static void report_init(struct report *out, const json_t *body)
{
	json_t *facts = json_object_get(body, "facts"), *op = json_object_get(body, "last_operation");
	json_t *reported = json_pack("{s:O?,s:O?,s:O?}", "agent_version", json_object_get(body, "agent_version"),
				     "models", json_object_get(body, "models"), "last_operation", op);
	out->reported = json_dumps(reported, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(reported);
	out->facts = json_is_object(facts) ? json_dumps(facts, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	out->operation = json_is_object(op) ? json_dumps(op, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	uint64_t h = checkin_cache_hash(0, out->reported, strlen(out->reported));
	h = checkin_cache_hash(h, out->facts ? out->facts : "-", out->facts ? strlen(out->facts) : 1);
	out->hash = checkin_cache_hash(h, out->operation ? out->operation : "-",
				       out->operation ? strlen(out->operation) : 1);
}

static void report_cleanup(struct report *rep)
{
	free(rep->reported);
	free(rep->facts);
	free(rep->operation);
}

/* Nothing changed since the answer this device holds: answers 304 from memory (writing its report
 * only when it changed or its last-seen time is due) and returns true. */
static bool reply_from_memory(struct gd_req *r, const struct report *rep, const char *inm, int64_t now)
{
	int told;
	bool write;
	gn_err err;
	const char *id = gd_actor(r)->id;
	if (!inm || sscanf(inm, "\"dt-%d\"", &told) != 1 || !checkin_cache_fresh(id, told, rep->hash, now, &write))
		return false;
	if (write && director_report(gd_db(r), id, rep->reported, rep->facts, rep->operation, &err)) {
		gd_reply_error(r, &err);
		return true;
	}
	gd_header(r, "ETag", inm);
	gd_reply_raw(r, 304, NULL, "", 0);
	return true;
}

/* Answers 200 with the device's signed director targets, byte for byte as they were signed. */
static void reply_targets(struct gd_req *r, int version, const char *targets)
{
	int image_root, director_root;
	gn_err err;
	gn_buf b;
	if (director_root_versions(&image_root, &director_root, gd_db(r), &err)) {
		gd_reply_error(r, &err);
		return;
	}
	gn_buf_init(&b);
	gn_buf_printf(&b,
		      "{\"poll_interval\":%lld,\"director_version\":%d,\"image_root_version\":%d,"
		      "\"director_root_version\":%d,\"director_targets\":%s}",
		      (long long)config_get()->agent_poll_interval, version, image_root, director_root, targets);
	gd_reply_raw(r, 200, "application/json", b.data, b.len);
	gn_buf_cleanup(&b);
}

static void http_checkin_post(struct gd_req *r)
{
	json_t *body = NULL;
	struct report rep = {0};
	struct tuf_settings ts;
	char *targets = NULL, etag[32];
	int version = 0;
	int64_t now = gn_now(), fresh_until = 0;
	gn_err err;
	const char *id = gd_actor(r)->id;
	const char *inm = MHD_lookup_connection_value(gd_connection(r), MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);

	if (gd_body_json(&body, r, checkin_fields, GN_ARRAY_LEN(checkin_fields)))
		goto out;
	report_init(&rep, body);
	if (reply_from_memory(r, &rep, inm, now))
		goto out;
	tuf_sign_settings(&ts, config_get());
	uint64_t epoch = checkin_cache_epoch();
	if (director_report(gd_db(r), id, rep.reported, rep.facts, rep.operation, &err) ||
	    director_current(&targets, &version, &fresh_until, gd_db(r), &ts, id, &err)) {
		gd_reply_error(r, &err);
		goto out;
	}
	checkin_cache_put(id, version, fresh_until, rep.hash, now, epoch);
	snprintf(etag, sizeof(etag), "\"dt-%d\"", version);
	gd_header(r, "ETag", etag);
	if (inm && strcmp(inm, etag) == 0)
		gd_reply_raw(r, 304, NULL, "", 0);
	else
		reply_targets(r, version, targets);
out:
	json_decref(body);
	report_cleanup(&rep);
	free(targets);
}

static void http_checkin_events(struct gd_req *r)
{
	const char *id = gd_param(r, 0);
	if (!gn_is_uuid(id)) {
		gd_reply_problem(r, 404, "no such device");
		return;
	}
	gd_list(r, &director_events_stmt, CURSOR_INT, &id, 1);
}

const struct gd_route http_checkin_routes[] = {
	{"POST", "/v1/agent/checkin", GD_SCOPE_DEVICE, http_checkin_post, NULL},
	{"GET", "/v1/devices/{id}/events", GD_SCOPE_READ, http_checkin_events, NULL},
};
const size_t http_checkin_nroutes = GN_ARRAY_LEN(http_checkin_routes);
