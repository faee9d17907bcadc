/* Telemetry and drift routes: POST /v1/agent/telemetry (a device's window summaries, plain or gzip), the fleet's
 * drift of a model version, a canary version judged against a control, drift alert rules and alerts. Thin handlers over
 * telemetry.c and alerts.c. */
#include <stdlib.h>

#include "alerts.h"
#include "http.h"
#include "telemetry.h"

static void http_telemetry_post(struct gd_req *r)
{
	json_t *body = NULL, *out = NULL;
	gn_err err;
	const struct gd_config *cfg = config_get();
	struct telemetry_limits lim = {cfg->telemetry_max_windows, cfg->telemetry_retention, gn_now()};
	if (gd_body_gunzip(r) || gd_body_json(&body, r, telemetry_batch_fields, telemetry_batch_nfields))
		return;
	if (telemetry_ingest(&out, gd_db(r), gd_actor(r)->id, body, &lim, &err))
		gd_reply_error(r, &err);
	else
		gd_reply_json(r, 200, out);
	json_decref(body);
}

static void http_telemetry_drift(struct gd_req *r)
{
	struct telemetry_query q;
	char *out = NULL;
	gn_err err;
	if (telemetry_query_parse(&q, gd_query(r, "since"), gd_query(r, "until"), gd_query(r, "selector"),
				  gd_query(r, "by"), gn_now(), &err)) {
		gd_reply_problem(r, 400, err.msg);
		return;
	}
	int rc = telemetry_drift(&out, gd_db(r), gd_param(r, 0), gd_param(r, 1), &q, &err);
	gd_reply_text(r, rc, 200, out, &err);
}

static void http_telemetry_canary(struct gd_req *r)
{
	struct telemetry_query q;
	char *out = NULL;
	gn_err err;
	const char *canary = gd_query(r, "canary"), *control = gd_query(r, "control");
	if (!canary || !control) {
		gd_reply_problem(r, 400,
				 "query parameters 'canary' and 'control' (two versions of the model) are required");
		return;
	}
	if (telemetry_query_parse(&q, gd_query(r, "since"), gd_query(r, "until"), gd_query(r, "selector"), NULL,
				  gn_now(), &err)) {
		gd_reply_problem(r, 400, err.msg);
		return;
	}
	int rc = telemetry_canary(&out, gd_db(r), gd_param(r, 0), canary, control, &q, &err);
	gd_reply_text(r, rc, 200, out, &err);
}

static void http_telemetry_device(struct gd_req *r)
{
	struct telemetry_query q;
	char *out = NULL;
	gn_err err;
	int limit;
	if (gd_limit_arg(&limit, r, 20))
		return;
	const char *since = gd_query(r, "since");
	if (telemetry_query_parse(&q, since ? since : "7d", NULL, NULL, NULL, gn_now(), &err)) {
		gd_reply_problem(r, 400, err.msg);
		return;
	}
	int rc = telemetry_device(&out, gd_db(r), gd_param(r, 0), q.since, limit, &err);
	gd_reply_text(r, rc, 200, out, &err);
}

static void http_telemetry_rule_create(struct gd_req *r)
{
	json_t *body = NULL;
	char *out = NULL;
	gn_err err;
	if (gd_body_json(&body, r, alerts_rule_fields, alerts_rule_nfields))
		return;
	int rc = alerts_rule_create(&out, gd_db(r), gd_actor(r), body, &err);
	gd_reply_text(r, rc, 201, out, &err);
	json_decref(body);
}

static void http_telemetry_rules(struct gd_req *r)
{
	gd_list(r, &alerts_rules_list_stmt, CURSOR_TEXT, NULL, 0);
}

static void http_telemetry_rule_delete(struct gd_req *r)
{
	gn_err err;
	if (alerts_rule_delete(gd_db(r), gd_actor(r), gd_param(r, 0), &err))
		gd_reply_error(r, &err);
	else
		gd_reply_raw(r, 204, NULL, "", 0);
}

static void http_telemetry_alerts(struct gd_req *r)
{
	const char *state, *model = gd_query(r, "model");
	gn_err err;
	if (alerts_list_check(&state, gd_query(r, "state"), model, &err)) {
		gd_reply_problem(r, 400, err.msg);
		return;
	}
	const char *p[] = {state, model};
	gd_list(r, &alerts_list_stmt, CURSOR_INT, p, 2);
}

const struct gd_route http_telemetry_routes[] = {
	{"POST", "/v1/agent/telemetry", GD_SCOPE_DEVICE, http_telemetry_post, NULL},
	{"GET", "/v1/models/{name}/versions/{version}/drift", GD_SCOPE_READ, http_telemetry_drift, NULL},
	{"GET", "/v1/models/{name}/canary", GD_SCOPE_READ, http_telemetry_canary, NULL},
	{"GET", "/v1/devices/{id}/telemetry", GD_SCOPE_READ, http_telemetry_device, NULL},
	{"GET", "/v1/alert-rules", GD_SCOPE_READ, http_telemetry_rules, NULL},
	{"POST", "/v1/alert-rules", GD_SCOPE_OPERATOR, http_telemetry_rule_create, NULL},
	{"DELETE", "/v1/alert-rules/{name}", GD_SCOPE_OPERATOR, http_telemetry_rule_delete, NULL},
	{"GET", "/v1/alerts", GD_SCOPE_READ, http_telemetry_alerts, NULL},
};
const size_t http_telemetry_nroutes = GN_ARRAY_LEN(http_telemetry_routes);
