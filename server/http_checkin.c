/* Agent check-ins (POST /v1/agent/checkin) and the operations they report (GET
 * /v1/devices/{id}/events): thin handlers over director.c. While nothing changed for a device, the
 * answer comes from memory (checkin_cache.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkin_cache.h"
#include "config.h"
#include "devices.h"
#include "director.h"
#include "http.h"
#include "last_seen.h"
#include "log.h"
#include "rollouts.h"

const gn_json_field http_checkin_fields[] = {
	{"agent_version", GN_JSON_STRING, false, false}, {"models", GN_JSON_ARRAY, false, false},
	{"facts", GN_JSON_OBJECT, false, true},          {"last_operation", GN_JSON_OBJECT, false, true},
	{"seq", GN_JSON_INTEGER, false, false},
};
const size_t http_checkin_nfields = GN_ARRAY_LEN(http_checkin_fields);

/* A check-in's parts: the hash and size of the report as it would be stored, and (only when it
 * is to be written: report_texts) its JSON texts: the report, facts and last operation (NULL
 * when absent). The common check-in (304, nothing changed) allocates no text. */
struct report {
	const json_t *body; /* borrowed */
	char *reported, *facts, *operation;
	bool texts;    /* the three above are made */
	int64_t seq;   /* its sequence number; 0 when the agent sends none */
	uint64_t hash; /* of all three (not seq), to notice a changed report */
	size_t size;   /* of the report and facts texts */
};

#define REPORT_JSON (JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY)

/* Streams JSON text into a hash and a byte count instead of a buffer. */
struct sink {
	uint64_t h;
	size_t len;
};

static int sink_bytes(const char *buf, size_t n, void *data)
{
	struct sink *s = data;
	s->h = gn_fnv1a(s->h, buf, n);
	s->len += n;
	return 0;
}

static void sink_text(struct sink *s, const char *t)
{
	sink_bytes(t, strlen(t), s);
}

/* v as json_dumps(v, REPORT_JSON) writes it; "null" for NULL. */
static void sink_json(struct sink *s, const json_t *v)
{
	if (!v || json_dump_callback(v, sink_bytes, s, REPORT_JSON) != 0)
		sink_text(s, "null");
}

static void report_init(struct report *out, const json_t *body)
{
	const json_t *facts = json_object_get(body, "facts"), *op = json_object_get(body, "last_operation");
	struct sink s = {0, 0};
	/* The bytes report_texts makes of the report: its keys sorted, compact. */
	sink_text(&s, "{\"agent_version\":");
	sink_json(&s, json_object_get(body, "agent_version"));
	sink_text(&s, ",\"last_operation\":");
	sink_json(&s, op);
	sink_text(&s, ",\"models\":");
	sink_json(&s, json_object_get(body, "models"));
	sink_text(&s, "}");
	size_t reported_len = s.len;
	s.len = 0;
	if (json_is_object(facts))
		sink_json(&s, facts);
	else
		sink_text(&s, "-");
	out->size = reported_len + (json_is_object(facts) ? s.len : 0);
	if (json_is_object(op))
		sink_json(&s, op);
	else
		sink_text(&s, "-");
	out->hash = s.h;
	out->body = body;
	json_t *seq = json_object_get(body, "seq");
	out->seq = seq ? (int64_t)json_integer_value(seq) : 0;
}

/* Makes the texts to store. */
static void report_texts(struct report *out)
{
	if (out->texts)
		return;
	const json_t *body = out->body;
	json_t *facts = json_object_get(body, "facts"), *op = json_object_get(body, "last_operation");
	json_t *reported = json_pack("{s:O?,s:O?,s:O?}", "agent_version", json_object_get(body, "agent_version"),
				     "models", json_object_get(body, "models"), "last_operation", op);
	out->reported = json_dumps(reported, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(reported);
	out->facts = json_is_object(facts) ? json_dumps(facts, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	out->operation = json_is_object(op) ? json_dumps(op, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	out->texts = true;
	/* The streamed hash and size must be those of these very texts. */
	uint64_t h = gn_fnv1a(0, out->reported, strlen(out->reported));
	h = gn_fnv1a(h, out->facts ? out->facts : "-", out->facts ? strlen(out->facts) : 1);
	h = gn_fnv1a(h, out->operation ? out->operation : "-", out->operation ? strlen(out->operation) : 1);
	if (h != out->hash || strlen(out->reported) + (out->facts ? strlen(out->facts) : 0) != out->size)
		gn_log(GN_LOG_ERROR, "event=bug what=\"check-in report hash or size differs from its text\"");
}

/* Checks what the body cannot say by its types: a sequence number from 1, a report that fits
 * max-report-size. Answers and returns non-zero otherwise. */
static int report_check(struct gd_req *r, const struct report *rep, const json_t *body)
{
	char msg[160];
	size_t size = rep->size;
	int64_t max = config_get()->max_report_size;
	if (json_object_get(body, "seq") && rep->seq < 1) {
		gd_reply_problem(r, 400, "field 'seq' must be a positive integer");
		return -1;
	}
	if ((int64_t)size > max) {
		snprintf(msg, sizeof(msg), "the report and facts take %zu bytes; at most %lld (max-report-size)", size,
			 (long long)max);
		gd_reply_problem(r, 413, msg);
		return -1;
	}
	return 0;
}

/* Records the report; on failure answers (409 with last_seq for a replayed, older sequence
 * number) and returns non-zero. */
static int record(struct gd_req *r, struct report *rep)
{
	enum director_report_outcome outcome;
	int64_t last = 0;
	gn_err err;
	report_texts(rep);
	int rc = director_report(&outcome, &last, gd_db(r), gd_actor(r)->id, rep->reported, rep->facts, rep->operation,
				 rep->seq, (int)config_get()->device_reports_per_hour, &err);
	if (rc == GN_ECONFLICT) {
		/* The agent learns where the server stands (its own counter may have gone back). */
		json_t *p = json_pack("{s:s,s:s,s:i,s:s,s:I}", "type", "about:blank", "title", "Conflict", "status",
				      409, "detail", err.msg, "last_seq", (json_int_t)last);
		char *body = gn_json_dump(p);
		gd_reply_raw(r, 409, "application/problem+json", body, strlen(body));
		free(body);
		json_decref(p);
		return -1;
	}
	if (rc) {
		gd_reply_error(r, &err);
		return -1;
	}
	return 0;
}

static void report_cleanup(struct report *rep)
{
	free(rep->reported);
	free(rep->facts);
	free(rep->operation);
}

/* The ETag of a check-in answer: the director targets' version and the check-in interval, so an
 * agent that holds one is told anew when either changes. */
#define CHECKIN_ETAG "\"dt-%d-p%lld\""

/* Reads up to max decimal digits at *p (at least one) into *out; advances *p. */
static bool etag_digits(long long *out, const char **p, int max)
{
	long long v = 0;
	int n = 0;
	for (; **p >= '0' && **p <= '9' && n < max; (*p)++, n++)
		v = v * 10 + (**p - '0');
	*out = v;
	return n > 0 && !(**p >= '0' && **p <= '9');
}

/* Parses an ETag exactly as CHECKIN_ETAG writes it, and nothing more (cheaper than sscanf, on
 * every check-in). */
static bool etag_parse(int *out_version, long long *out_poll, const char *s)
{
	long long v;
	bool neg;
	if (strncmp(s, "\"dt-", 4) != 0)
		return false;
	s += 4;
	neg = *s == '-';
	s += neg;
	if (!etag_digits(&v, &s, 9) || strncmp(s, "-p", 2) != 0)
		return false;
	s += 2;
	if (!etag_digits(out_poll, &s, 18) || strcmp(s, "\"") != 0)
		return false;
	*out_version = (int)(neg ? -v : v);
	return true;
}

/* Nothing changed since the answer this device holds: answers 304 from memory (writing its report
 * only when it changed; its last-seen time goes to the batched writer, last_seen.c) and returns
 * true. Such a check-in is routine (logged at debug) unless its report changed. */
static bool reply_from_memory(struct gd_req *r, struct report *rep, const char *inm, int64_t now)
{
	int told;
	long long poll;
	bool write, changed;
	const char *id = gd_actor(r)->id;
	const struct gd_config *cfg = config_get();
	const int64_t intervals[2] = {config_poll_interval(cfg, false), config_poll_interval(cfg, true)};
	if (!inm || !etag_parse(&told, &poll, inm) ||
	    !checkin_cache_fresh(id, told, (int64_t)poll, intervals, rep->hash, rep->seq, now, &write, &changed))
		return false;
	if (!changed)
		gd_routine(r);
	if (write && record(r, rep))
		return true;
	if (!write)
		last_seen_touch(id, rep->seq);
	gd_header(r, "ETag", inm);
	gd_reply_raw(r, 304, NULL, "", 0);
	return true;
}

/* Answers 200 with the device's signed director targets, byte for byte as they were signed. */
static void reply_targets(struct gd_req *r, int version, int64_t poll, const char *targets)
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
		      (long long)poll, version, image_root, director_root, targets);
	gd_reply_raw(r, 200, "application/json", b.data, b.len);
	gn_buf_cleanup(&b);
}

static void http_checkin_post(struct gd_req *r)
{
	json_t *body = NULL;
	struct report rep = {0};
	struct tuf_settings ts;
	char *targets = NULL, etag[48];
	int version = 0;
	bool in_stage = false;
	int64_t now = gn_now(), fresh_until = 0;
	gn_err err;
	const char *id = gd_actor(r)->id;
	const char *inm = MHD_lookup_connection_value(gd_connection(r), MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);

	if (gd_body_json(&body, r, http_checkin_fields, http_checkin_nfields))
		goto out;
	report_init(&rep, body);
	if (report_check(r, &rep, body) || reply_from_memory(r, &rep, inm, now))
		goto out;
	tuf_sign_settings(&ts, config_get());
	uint64_t epoch = checkin_cache_epoch();
	if (record(r, &rep))
		goto out;
	if (director_current(&targets, &version, &fresh_until, gd_db(r), &ts, id, &err) ||
	    rollouts_device_in_stage(&in_stage, gd_db(r), id, &err)) {
		gd_reply_error(r, &err);
		goto out;
	}
	int64_t poll = config_poll_interval(config_get(), in_stage);
	checkin_cache_put(id, version, in_stage, fresh_until, rep.hash, rep.seq, now, epoch);
	snprintf(etag, sizeof(etag), CHECKIN_ETAG, version, (long long)poll);
	gd_header(r, "ETag", etag);
	if (gd_not_modified(r, etag))
		gd_reply_raw(r, 304, NULL, "", 0);
	else
		reply_targets(r, version, poll, targets);
out:
	json_decref(body);
	report_cleanup(&rep);
	free(targets);
}

static void http_checkin_events(struct gd_req *r)
{
	const char *id = gd_param(r, 0);
	char *device = NULL;
	gn_err err;
	/* An unknown device is a 404, not an empty list (so a typo does not look like a quiet device). */
	if (devices_get(&device, gd_db(r), id, &err)) {
		gd_reply_error(r, &err);
		return;
	}
	free(device);
	gd_list(r, &director_events_stmt, CURSOR_INT, &id, 1);
}

const struct gd_route http_checkin_routes[] = {
	{"POST", "/v1/agent/checkin", GD_SCOPE_DEVICE, http_checkin_post, NULL},
	{"GET", "/v1/devices/{id}/events", GD_SCOPE_READ, http_checkin_events, NULL},
};
const size_t http_checkin_nroutes = GN_ARRAY_LEN(http_checkin_routes);
