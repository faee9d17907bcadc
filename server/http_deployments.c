/* /v1/deployments: thin handlers over deployments.c and the rollout plan (rollouts.c). */
#include <stdlib.h>
#include <string.h>

#include "deployments.h"
#include "http.h"
#include "rollouts.h"
#include "runnable.h"

static void http_deployments_create(struct gd_req *r)
{
	json_t *body = NULL;
	char *out = NULL;
	gn_err err;
	if (gd_body_json(&body, r, deployments_create_fields, deployments_create_nfields))
		return;
	int rc = deployments_create(&out, gd_db(r), gd_actor(r), body, &err);
	gd_reply_text(r, rc, 201, out, &err);
	json_decref(body);
}

static void http_deployments_list(struct gd_req *r)
{
	gd_list(r, &deployments_list_stmt, CURSOR_TEXT, NULL, 0);
}

static void http_deployments_get(struct gd_req *r)
{
	char *out = NULL;
	gn_err err;
	int rc = deployments_get(&out, gd_db(r), gd_param(r, 0), &err);
	gd_reply_text(r, rc, 200, out, &err);
}

static void http_deployments_patch(struct gd_req *r)
{
	json_t *body = NULL;
	char *out = NULL;
	gn_err err;
	if (gd_body_json(&body, r, deployments_update_fields, deployments_update_nfields))
		return;
	int rc = deployments_update(&out, gd_db(r), gd_actor(r), gd_param(r, 0), body, &err);
	gd_reply_text(r, rc, 200, out, &err);
	json_decref(body);
}

static void http_deployments_delete(struct gd_req *r)
{
	gn_err err;
	if (deployments_delete(gd_db(r), gd_actor(r), gd_param(r, 0), &err))
		gd_reply_error(r, &err);
	else
		gd_reply_raw(r, 204, NULL, "", 0);
}

static void http_deployments_plan(struct gd_req *r)
{
	json_t *out = NULL;
	gn_err err;
	if (rollouts_plan(&out, gd_db(r), gd_param(r, 0), &err) ||
	    runnable_plan(out, gd_db(r), gd_param(r, 0), gd_query(r, "version"), &err)) {
		json_decref(out);
		gd_reply_error(r, &err);
	} else
		gd_reply_json(r, 200, out);
}

const struct gd_route http_deployments_routes[] = {
	{"POST", "/v1/deployments", GD_SCOPE_OPERATOR | GD_SCOPE_CI, http_deployments_create, NULL},
	{"GET", "/v1/deployments", GD_SCOPE_READ, http_deployments_list, NULL},
	{"GET", "/v1/deployments/{name}", GD_SCOPE_READ, http_deployments_get, NULL},
	{"PATCH", "/v1/deployments/{name}", GD_SCOPE_OPERATOR | GD_SCOPE_CI, http_deployments_patch, NULL},
	{"DELETE", "/v1/deployments/{name}", GD_SCOPE_OPERATOR, http_deployments_delete, NULL},
	{"GET", "/v1/deployments/{name}/plan", GD_SCOPE_READ, http_deployments_plan, NULL},
};
const size_t http_deployments_nroutes = GN_ARRAY_LEN(http_deployments_routes);
