/* /v1/gitops: thin handlers over gitops.c (status, sync, plan, suspend, resume, the webhook). */
#include <stdlib.h>
#include <string.h>

#include "gitops.h"
#include "http.h"

const gn_json_field http_gitops_sync_fields[] = {
	{"force", GN_JSON_BOOL, false, false},
	{"allow_rewrite", GN_JSON_BOOL, false, false},
};
const size_t http_gitops_sync_nfields = GN_ARRAY_LEN(http_gitops_sync_fields);
const gn_json_field http_gitops_plan_fields[] = {
	{"ref", GN_JSON_STRING, false, true},
};
const size_t http_gitops_plan_nfields = GN_ARRAY_LEN(http_gitops_plan_fields);

static void reply(struct gd_req *r, int rc, json_t *out, const gn_err *err)
{
	if (rc)
		gd_reply_error(r, err);
	else
		gd_reply_json(r, 200, out);
}

static void http_gitops_status(struct gd_req *r)
{
	json_t *out = NULL;
	gn_err err;
	int rc = gitops_status(&out, gd_db(r), config_get(), &err);
	reply(r, rc, out, &err);
}

static void http_gitops_sync(struct gd_req *r)
{
	json_t *body = NULL, *out = NULL;
	char by[128];
	gn_err err;
	if (gd_body_json_opt(&body, r, http_gitops_sync_fields, http_gitops_sync_nfields))
		return;
	actor_label(by, sizeof(by), gd_actor(r));
	int rc = gitops_sync(&out, gd_db(r), config_get(), by, json_is_true(json_object_get(body, "force")),
			     json_is_true(json_object_get(body, "allow_rewrite")), &err);
	reply(r, rc, out, &err);
	json_decref(body);
}

static void http_gitops_plan(struct gd_req *r)
{
	json_t *body = NULL, *out = NULL;
	gn_err err;
	if (gd_body_json_opt(&body, r, http_gitops_plan_fields, http_gitops_plan_nfields))
		return;
	int rc = gitops_plan(&out, gd_db(r), config_get(), gn_json_str(body, "ref"), &err);
	reply(r, rc, out, &err);
	json_decref(body);
}

static void suspend(struct gd_req *r, bool yes)
{
	json_t *out = NULL;
	gn_err err;
	int rc = gitops_suspend(&out, gd_db(r), gd_actor(r), config_get(), yes, &err);
	reply(r, rc, out, &err);
}

static void http_gitops_suspend(struct gd_req *r)
{
	suspend(r, true);
}

static void http_gitops_resume(struct gd_req *r)
{
	suspend(r, false);
}

static const char *header(struct gd_req *r, const char *name)
{
	return MHD_lookup_connection_value(gd_connection(r), MHD_HEADER_KIND, name);
}

/* Public: a git host's push event, authenticated by its signature; only wakes the sync. */
static void http_gitops_hook(struct gd_req *r)
{
	size_t len = 0;
	gn_err err;
	if (gd_rate_limit(r, "webhook", NULL))
		return;
	const char *body = gd_body(r, &len);
	if (gitops_hook(gd_db(r), config_get(), header(r, "X-Hub-Signature-256"), header(r, "X-Gitea-Signature"),
			header(r, "X-Gitlab-Token"), body, len, &err))
		gd_reply_error(r, &err);
	else
		gd_reply_json(r, 202, json_pack("{s:s}", "status", "sync requested"));
}

const struct gd_route http_gitops_routes[] = {
	{"GET", "/v1/gitops", GD_SCOPE_READ, http_gitops_status, NULL},
	{"POST", "/v1/gitops/sync", GD_SCOPE_OPERATOR, http_gitops_sync, NULL},
	{"POST", "/v1/gitops/plan", GD_SCOPE_OPERATOR | GD_SCOPE_CI, http_gitops_plan, NULL},
	{"POST", "/v1/gitops/suspend", GD_SCOPE_OPERATOR, http_gitops_suspend, NULL},
	{"POST", "/v1/gitops/resume", GD_SCOPE_OPERATOR, http_gitops_resume, NULL},
	{"POST", "/v1/gitops/hook", GD_SCOPE_PUBLIC, http_gitops_hook, NULL},
};
const size_t http_gitops_nroutes = GN_ARRAY_LEN(http_gitops_routes);
