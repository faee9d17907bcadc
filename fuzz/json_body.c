/* Fuzz target: the JSON request bodies of every gangliond route that takes one. The input's first
 * byte picks the route, the rest is the body. It goes through what gd_body_json does (bounded
 * parsing, then the route's own field table: unknown fields, wrong types, missing fields), then,
 * when the table accepts it, to the domain function the route's handler calls, as the server
 * itself would act, over a database connection that is down: every check a domain function makes
 * of its input before it reaches the database runs on the fuzzed body. The metadata part of a
 * model upload is fuzzed the same way (models_upload_check), as its bytes.
 *
 * Properties: no body makes a domain function fail with an internal error (a 500): bad input is
 * refused as bad input, or reaches the database (503 here). And every route whose method takes a
 * body is listed below (a new one fails this target, in make check too, until it is). */
#include <string.h>

#include "config.h"
#include "db.h"
#include "deployments.h"
#include "device_auth.h"
#include "device_tokens.h"
#include "devices.h"
#include "director.h"
#include "enroll.h"
#include "fuzz.h"
#include "gangliond.h"
#include "gitops.h"
#include "http.h"
#include "log.h"
#include "models.h"
#include "tokens.h"
#include "tuf_deleg.h"
#include "tuf_keys.h"
#include "tuf_sign.h"
#include "telemetry.h"
#include "alerts.h"

/* main.c is not linked: the server-wide state it defines. */
struct gd_server gd;

static db_conn *down; /* a stand-in connection whose every call fails with GN_EUNAVAIL */
static struct gd_actor who;
static struct tuf_settings ts;

#define DEVICE "5f0c6d2e-1111-4222-8333-944455556666"

/* Runs the domain function of one route on an accepted body; returns its status code. */
typedef int (*body_fn)(const json_t *body, gn_err *err);

static int tokens(const json_t *b, gn_err *err)
{
	json_t *out = NULL;
	int rc = tokens_create(&out, down, &who, b, err);
	json_decref(out);
	return rc;
}

static int enroll_tokens(const json_t *b, gn_err *err)
{
	json_t *out = NULL;
	int rc = enroll_tokens_create(&out, down, &who, b, err);
	json_decref(out);
	return rc;
}

static int enroll(const json_t *b, gn_err *err)
{
	json_t *out = NULL;
	int rc = enroll_device(&out, down, "fuzz", b, err);
	json_decref(out);
	return rc;
}

static int challenge(const json_t *b, gn_err *err)
{
	json_t *out = NULL;
	int rc = device_auth_challenge(&out, down, gn_json_str(b, "device_id"), 60, 4, err);
	json_decref(out);
	return rc;
}

static int token(const json_t *b, gn_err *err)
{
	json_t *out = NULL;
	int rc = device_auth_token(&out, down, gn_json_str(b, "device_id"), gn_json_str(b, "nonce"),
				   gn_json_str(b, "signature"), 3600, err);
	json_decref(out);
	return rc;
}

static int checkin(const json_t *b, gn_err *err)
{
	enum director_report_outcome outcome;
	int64_t last = 0;
	json_t *facts = json_object_get(b, "facts"), *op = json_object_get(b, "last_operation");
	char *reported = gn_json_dump(b), *f = json_is_object(facts) ? gn_json_dump(facts) : NULL,
	     *o = json_is_object(op) ? gn_json_dump(op) : NULL;
	int rc = director_report(&outcome, &last, down, DEVICE, reported, f, o,
				 (int64_t)json_integer_value(json_object_get(b, "seq")), 100, err);
	free(reported);
	free(f);
	free(o);
	return rc;
}

static int devices_patch(const json_t *b, gn_err *err)
{
	char *out = NULL;
	int rc = devices_update(&out, down, &who, DEVICE, b, err);
	free(out);
	return rc;
}

static int desired(const json_t *b, gn_err *err)
{
	struct director_assignment a;
	return director_assign(&a, down, &ts, &who, DEVICE, gn_json_str(b, "model"), gn_json_str(b, "version"), err);
}

static int desired_bulk(const json_t *b, gn_err *err)
{
	json_t *ids = NULL;
	char version[72];
	int rc = director_assign_selector(&ids, version, down, &ts, &who, gn_json_str(b, "selector"),
					  gn_json_str(b, "model"), gn_json_str(b, "version"), err);
	json_decref(ids);
	return rc;
}

static int alias(const json_t *b, gn_err *err)
{
	char *out = NULL;
	int rc = models_alias_set(&out, down, &who, "probe", "stable", gn_json_str(b, "version"), err);
	free(out);
	return rc;
}

static int root_import(const json_t *b, gn_err *err)
{
	int version;
	return tuf_keys_root_import(&version, down, &ts, &who, "image", b, true, err);
}

static int rotate(const json_t *b, gn_err *err)
{
	json_t *out = NULL;
	int rc = tuf_keys_rotate(&out, down, &ts, &who, gn_json_str(b, "role"), err);
	json_decref(out);
	return rc;
}

static int targets_import(const json_t *b, gn_err *err)
{
	int version;
	return tuf_deleg_targets_import(&version, down, &ts, &who, b, err);
}

static int release_draft(const json_t *b, gn_err *err)
{
	json_t *out = NULL;
	int rc = tuf_deleg_release_draft(&out, down, &ts, gn_json_str(b, "model"), gn_json_str(b, "version"), err);
	json_decref(out);
	return rc;
}

static int role_publish(const json_t *b, gn_err *err)
{
	int version;
	return tuf_deleg_role_publish(&version, down, &ts, &who, "ci", b, err);
}

static int deployment_create(const json_t *b, gn_err *err)
{
	char *out = NULL;
	int rc = deployments_create(&out, down, &who, b, err);
	free(out);
	return rc;
}

static int yank(const json_t *b, gn_err *err)
{
	char *out = NULL;
	int rc = models_yank(&out, down, &who, "probe", "1.0.0", true, gn_json_str(b, "reason"), err);
	free(out);
	return rc;
}

/* The metadata part of an upload, as its bytes. */
static int upload_metadata(const char *bytes, size_t len, gn_err *err)
{
	const struct gd_config *cfg = config_get();
	return models_upload_check(down, "probe", bytes, len, (int)cfg->max_json_depth, cfg->max_artifact_size, err);
}

static int deployment_update(const json_t *b, gn_err *err)
{
	char *out = NULL;
	int rc = deployments_update(&out, down, &who, "probe", b, err);
	free(out);
	return rc;
}

/* GitOps is off in the fuzzer's configuration: its calls check the body's fields, then refuse. */
static int gitops_sync_body(const json_t *b, gn_err *err)
{
	json_t *out = NULL;
	int rc = gitops_sync(&out, down, config_get(), "fuzz", json_is_true(json_object_get(b, "force")),
			     json_is_true(json_object_get(b, "allow_rewrite")), err);
	json_decref(out);
	return rc;
}

static int telemetry(const json_t *b, gn_err *err)
{
	json_t *out = NULL;
	struct telemetry_limits lim = {500, 30 * 86400, 1750000000};
	int rc = telemetry_ingest(&out, down, DEVICE, b, &lim, err);
	json_decref(out);
	return rc;
}

static int gitops_plan_body(const json_t *b, gn_err *err)
{
	json_t *out = NULL;
	int rc = gitops_plan(&out, down, config_get(), gn_json_str(b, "ref"), err);
	json_decref(out);
	return rc;
}

/* The webhook's body is only authenticated (here: no secret is configured). */
static int gitops_hook_body(const char *bytes, size_t len, gn_err *err)
{
	return gitops_hook(down, config_get(), "sha256=00", NULL, NULL, bytes, len, err);
}

static int alert_rule(const json_t *b, gn_err *err)
{
	char *out = NULL;
	int rc = alerts_rule_create(&out, down, &who, b, err);
	free(out);
	return rc;
}

static int device_token_key_rotate(const json_t *b, gn_err *err)
{
	json_t *out = NULL;
	int rc = device_tokens_rotate_key(&out, down, &who, json_is_true(json_object_get(b, "retire_previous")), 3600,
					  err);
	json_decref(out);
	return rc;
}

/* Every route whose method takes a body: its table and domain call, or the domain call that takes
 * the raw bytes, or neither (no JSON body). The input's first byte indexes this table: append. */
static const struct body_route {
	const char *method, *pattern;
	const gn_json_field *fields;
	const size_t *nfields;
	body_fn fn;
	int (*raw_fn)(const char *bytes, size_t len, gn_err *err);
} routes[] = {
	{"POST", "/v1/tokens", tokens_create_fields, &tokens_create_nfields, tokens, NULL},
	{"POST", "/v1/enroll-tokens", enroll_tokens_create_fields, &enroll_tokens_create_nfields, enroll_tokens, NULL},
	{"POST", "/v1/enroll", enroll_device_fields, &enroll_device_nfields, enroll, NULL},
	{"POST", "/v1/agent/auth/challenge", http_agent_challenge_fields, &http_agent_challenge_nfields, challenge,
	 NULL},
	{"POST", "/v1/agent/auth/token", http_agent_token_fields, &http_agent_token_nfields, token, NULL},
	{"POST", "/v1/agent/checkin", http_checkin_fields, &http_checkin_nfields, checkin, NULL},
	{"PATCH", "/v1/devices/{id}", http_devices_patch_fields, &http_devices_patch_nfields, devices_patch, NULL},
	{"PUT", "/v1/devices/{id}/desired", http_desired_fields, &http_desired_nfields, desired, NULL},
	{"POST", "/v1/desired", http_desired_bulk_fields, &http_desired_bulk_nfields, desired_bulk, NULL},
	{"PUT", "/v1/models/{name}/aliases/{alias}", http_models_alias_fields, &http_models_alias_nfields, alias, NULL},
	{"POST", "/v1/tuf/image/root", http_tuf_root_fields, &http_tuf_root_nfields, root_import, NULL},
	{"POST", "/v1/tuf/director/root", http_tuf_root_fields, &http_tuf_root_nfields, root_import, NULL},
	{"POST", "/v1/keys/rotate", http_tuf_rotate_fields, &http_tuf_rotate_nfields, rotate, NULL},
	{"POST", "/v1/deployments", deployments_create_fields, &deployments_create_nfields, deployment_create, NULL},
	{"PATCH", "/v1/deployments/{name}", deployments_update_fields, &deployments_update_nfields, deployment_update,
	 NULL},
	/* The upload is multipart (fuzz/multipart.c): its metadata part. */
	{"POST", "/v1/models/{name}/versions", NULL, NULL, NULL, upload_metadata},
	/* No body: the action is in the path. */
	{"POST", "/v1/rollouts/{id}/{action}", NULL, NULL, NULL, NULL},
	{"PUT", "/v1/models/{name}/versions/{version}/yank", http_models_yank_fields, &http_models_yank_nfields, yank,
	 NULL},
	{"POST", "/v1/gitops/sync", http_gitops_sync_fields, &http_gitops_sync_nfields, gitops_sync_body, NULL},
	{"POST", "/v1/gitops/plan", http_gitops_plan_fields, &http_gitops_plan_nfields, gitops_plan_body, NULL},
	/* No body. */
	{"POST", "/v1/devices/{id}/rotate-token", NULL, NULL, NULL, NULL},
	{"POST", "/v1/gitops/suspend", NULL, NULL, NULL, NULL},
	{"POST", "/v1/gitops/resume", NULL, NULL, NULL, NULL},
	{"POST", "/v1/gitops/hook", NULL, NULL, NULL, gitops_hook_body},
	{"POST", "/v1/agent/telemetry", telemetry_batch_fields, &telemetry_batch_nfields, telemetry, NULL},
	{"POST", "/v1/alert-rules", alerts_rule_fields, &alerts_rule_nfields, alert_rule, NULL},
	{"POST", "/v1/tuf/image/targets", http_tuf_root_fields, &http_tuf_root_nfields, targets_import, NULL},
	{"POST", "/v1/tuf/image/release-draft", http_tuf_draft_fields, &http_tuf_draft_nfields, release_draft, NULL},
	{"POST", "/v1/tuf/image/roles/{role}", http_tuf_root_fields, &http_tuf_root_nfields, role_publish, NULL},
	{"POST", "/v1/device-token-keys/rotate", http_device_tokens_rotate_fields, &http_device_tokens_rotate_nfields,
	 device_token_key_rotate, NULL},
};

/* Fails when the server has a route with a body that the table above does not list. */
static void check_listed(void)
{
	size_t n;
	const struct gd_route *all = http_routes(&n);
	for (size_t i = 0; i < n; i++) {
		bool body = strcmp(all[i].method, "POST") == 0 || strcmp(all[i].method, "PUT") == 0 ||
			    strcmp(all[i].method, "PATCH") == 0;
		bool listed = false;
		for (size_t k = 0; k < GN_ARRAY_LEN(routes) && !listed; k++)
			listed = strcmp(routes[k].method, all[i].method) == 0 &&
				 strcmp(routes[k].pattern, all[i].pattern) == 0;
		FUZZ_CHECK(!body || listed, "%s %s takes a body: list it in fuzz/json_body.c", all[i].method,
			   all[i].pattern);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct gd_config cfg;
	db_pool *pool = NULL;
	gn_err err;
	memset(&cfg, 0, sizeof(cfg));
	FUZZ_CHECK(gn_conf_defaults(&config_table, &cfg, &err) == 0, "%s", err.msg);
	config_install(&cfg);
	gn_log_set_level(GN_LOG_ERROR);
	/* A pool of no connection with a bounded wait: db_acquire hands out its busy stand-in. */
	struct db_limits limits = {.pool_wait_s = 1};
	FUZZ_CHECK(db_pool_new(&pool, "", 0, &err) == 0 && db_pool_set_limits(pool, &limits, &err) == 0, "%s", err.msg);
	down = db_acquire(pool);
	actor_system(&who, "fuzz");
	tuf_sign_settings(&ts, config_get());
	check_listed();
	return 0;
}

/* A domain function's answer to a body its table accepted: anything but an internal error. */
static void check_outcome(int rc, const gn_err *err, const char *what)
{
	if (getenv("FUZZ_VERBOSE")) /* to see how far the seeds get */
		fprintf(stderr, "%s: %d %s\n", what, rc ? gd_http_status(rc) : 0, rc ? err->msg : "");
	FUZZ_CHECK(rc == 0 || gd_http_status(rc) != 500, "%s: a 500 for a client's body: %s", what, err->msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct gd_config *cfg = config_get();
	gn_err err;
	if (size < 1)
		return 0;
	const struct body_route *r = &routes[data[0] % GN_ARRAY_LEN(routes)];
	const char *body = (const char *)data + 1;
	size_t len = size - 1;
	char what[128];
	json_t *j = NULL;
	snprintf(what, sizeof(what), "%s %s", r->method, r->pattern);
	if (r->raw_fn) {
		int rc = r->raw_fn(body, len, &err);
		check_outcome(rc, &err, what);
		return 0;
	}
	if (!r->fields || gn_json_parse(&j, body, len, (int)cfg->max_json_depth, &err))
		return 0;
	if (gn_json_check(j, r->fields, *r->nfields, &err) == 0)
		check_outcome(r->fn(j, &err), &err, what);
	json_decref(j);
	return 0;
}
