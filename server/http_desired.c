/* What devices should run: PUT and DELETE /v1/devices/{id}/desired for one device (one model at a
 * time; a device runs one version of each of several), POST /v1/desired for the devices a label
 * selector matches. Thin handlers over director.c. */
#include <stdlib.h>

#include "config.h"
#include "director.h"
#include "http.h"
#include "model.h"

const gn_json_field http_desired_fields[] = {
	{"model", GN_JSON_STRING, true, false},
	{"version", GN_JSON_STRING, true, false},
};
const size_t http_desired_nfields = GN_ARRAY_LEN(http_desired_fields);

static void http_desired_put(struct gd_req *r)
{
	json_t *body = NULL;
	struct director_assignment a;
	struct tuf_settings ts;
	gn_err err;
	const char *id = gd_param(r, 0);
	if (!gn_is_uuid(id)) {
		gd_reply_problem(r, 404, "no such device");
		return;
	}
	if (gd_body_json(&body, r, http_desired_fields, http_desired_nfields))
		return;
	tuf_sign_settings(&ts, config_get());
	const char *model = gn_json_str(body, "model");
	if (director_assign(&a, gd_db(r), &ts, gd_actor(r), id, model, gn_json_str(body, "version"), &err))
		gd_reply_error(r, &err);
	else
		gd_reply_json(r, 200,
			      json_pack("{s:s,s:s,s:s,s:i}", "device_id", id, "model", model, "version", a.version,
					"director_version", a.director_version));
	json_decref(body);
}

/* DELETE /v1/devices/{id}/desired[?model=NAME]: the device's assignment of that model, or all of
 * its assignments (what deployments give it stays). */
static void http_desired_delete(struct gd_req *r)
{
	struct tuf_settings ts;
	gn_err err;
	const char *model = gd_query(r, "model");
	if (model && gn_model_name_check(model, &err)) {
		gd_reply_problem(r, 400, err.msg);
		return;
	}
	tuf_sign_settings(&ts, config_get());
	if (director_unassign(NULL, gd_db(r), &ts, gd_actor(r), gd_param(r, 0), model, &err))
		gd_reply_error(r, &err);
	else
		gd_reply_raw(r, 204, NULL, "", 0);
}

const gn_json_field http_desired_bulk_fields[] = {
	{"selector", GN_JSON_STRING, true, false},
	{"model", GN_JSON_STRING, true, false},
	{"version", GN_JSON_STRING, true, false},
};
const size_t http_desired_bulk_nfields = GN_ARRAY_LEN(http_desired_bulk_fields);

static void http_desired_bulk(struct gd_req *r)
{
	json_t *body = NULL, *ids = NULL;
	struct tuf_settings ts;
	char version[72];
	gn_err err;
	if (gd_body_json(&body, r, http_desired_bulk_fields, http_desired_bulk_nfields))
		return;
	tuf_sign_settings(&ts, config_get());
	const char *model = gn_json_str(body, "model");
	if (director_assign_selector(&ids, version, gd_db(r), &ts, gd_actor(r), gn_json_str(body, "selector"), model,
				     gn_json_str(body, "version"), &err))
		gd_reply_error(r, &err);
	else
		gd_reply_json(r, 200,
			      json_pack("{s:s,s:s,s:I,s:o}", "model", model, "version", version, "count",
					(json_int_t)json_array_size(ids), "devices", ids));
	json_decref(body);
}

const struct gd_route http_desired_routes[] = {
	{"PUT", "/v1/devices/{id}/desired", GD_SCOPE_OPERATOR, http_desired_put, NULL},
	{"DELETE", "/v1/devices/{id}/desired", GD_SCOPE_OPERATOR, http_desired_delete, NULL},
	{"POST", "/v1/desired", GD_SCOPE_OPERATOR, http_desired_bulk, NULL},
};
const size_t http_desired_nroutes = GN_ARRAY_LEN(http_desired_routes);
