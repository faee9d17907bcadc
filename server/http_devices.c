/* /v1/devices: thin handlers over devices.c (inventory, label selectors, label edits,
 * decommissioning, token rotation). */
#include <stdlib.h>
#include <string.h>

#include "device_tokens.h"
#include "devices.h"
#include "http.h"

static void http_devices_list(struct gd_req *r)
{
	char *sp[5] = {0};
	gn_err err;
	const char *status = gd_query(r, "status");
	if (status && strcmp(status, "active") != 0 && strcmp(status, "decommissioned") != 0) {
		gd_reply_problem(r, 400, "status must be active or decommissioned");
		return;
	}
	if (devices_selector_params(sp, gd_query(r, "selector"), &err)) {
		gd_reply_problem(r, 400, err.msg);
		return;
	}
	const char *p[] = {sp[0], sp[1], sp[2], sp[3], sp[4], status, gd_query(r, "name")};
	gd_list(r, &devices_list_stmt, CURSOR_UUID, p, 7);
	for (int i = 0; i < 5; i++)
		free(sp[i]);
}

static void http_devices_get(struct gd_req *r)
{
	char *out = NULL;
	gn_err err;
	int rc = devices_get(&out, gd_db(r), gd_param(r, 0), &err);
	gd_reply_text(r, rc, 200, out, &err);
}

const gn_json_field http_devices_patch_fields[] = {
	{"labels", GN_JSON_OBJECT, false, false},
	{"name", GN_JSON_STRING, false, false},
};
const size_t http_devices_patch_nfields = GN_ARRAY_LEN(http_devices_patch_fields);

static void http_devices_patch(struct gd_req *r)
{
	json_t *body = NULL;
	char *out = NULL;
	gn_err err;
	if (!gn_is_uuid(gd_param(r, 0))) {
		gd_reply_problem(r, 404, "no such device");
		return;
	}
	if (gd_body_json(&body, r, http_devices_patch_fields, http_devices_patch_nfields))
		return;
	int rc = devices_update(&out, gd_db(r), gd_actor(r), gd_param(r, 0), body, &err);
	gd_reply_text(r, rc, 200, out, &err);
	json_decref(body);
}

static void http_devices_decommission(struct gd_req *r)
{
	char *out = NULL;
	bool changed;
	gn_err err;
	int rc = devices_decommission(&out, &changed, gd_db(r), gd_actor(r), gd_param(r, 0), &err);
	/* and on every replica; a device decommissioned before notifies none (nothing to wait for) */
	if (!rc && changed)
		device_tokens_wait_heard(gd_db(r), gd_param(r, 0), -1, true);
	gd_reply_text(r, rc, 200, out, &err);
}

static void http_devices_rotate_token(struct gd_req *r)
{
	json_t *out = NULL;
	gn_err err;
	if (device_tokens_rotate(&out, gd_db(r), gd_actor(r), gd_param(r, 0), &err)) {
		gd_reply_error(r, &err);
		return;
	}
	gd_reply_json(r, 200, out);
}

const struct gd_route http_devices_routes[] = {
	{"GET", "/v1/devices", GD_SCOPE_READ, http_devices_list, NULL},
	{"GET", "/v1/devices/{id}", GD_SCOPE_READ, http_devices_get, NULL},
	{"PATCH", "/v1/devices/{id}", GD_SCOPE_OPERATOR, http_devices_patch, NULL},
	{"DELETE", "/v1/devices/{id}", GD_SCOPE_OPERATOR, http_devices_decommission, NULL},
	{"POST", "/v1/devices/{id}/rotate-token", GD_SCOPE_OPERATOR, http_devices_rotate_token, NULL},
};
const size_t http_devices_nroutes = GN_ARRAY_LEN(http_devices_routes);
