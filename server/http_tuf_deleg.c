/* The image repository's offline targets and CI-signed delegated roles over HTTP: the top-level
 * targets signed offline, the draft CI signs to release a model version, and the delegated role's
 * metadata CI signed. Thin handlers over tuf_deleg.c. */
#include <stdlib.h>

#include "config.h"
#include "http.h"
#include "tuf_deleg.h"

/* POST /v1/tuf/image/targets: top-level targets signed by the offline targets keys. */
static void http_tuf_targets_import(struct gd_req *r)
{
	json_t *body = NULL;
	struct tuf_settings ts;
	int version;
	gn_err err;
	if (gd_body_json(&body, r, http_tuf_root_fields, http_tuf_root_nfields))
		return;
	tuf_sign_settings(&ts, config_get());
	if (tuf_deleg_targets_import(&version, gd_db(r), &ts, gd_actor(r), body, &err))
		gd_reply_error(r, &err);
	else
		gd_reply_json(r, 201, json_pack("{s:s,s:i}", "role", "targets", "version", version));
	json_decref(body);
}

const gn_json_field http_tuf_draft_fields[] = {
	{"model", GN_JSON_STRING, true, false},
	{"version", GN_JSON_STRING, true, false},
};
const size_t http_tuf_draft_nfields = GN_ARRAY_LEN(http_tuf_draft_fields);

/* POST /v1/tuf/image/release-draft: what CI signs to release a model version. */
static void http_tuf_release_draft(struct gd_req *r)
{
	json_t *body = NULL, *out = NULL;
	struct tuf_settings ts;
	gn_err err;
	if (gd_body_json(&body, r, http_tuf_draft_fields, http_tuf_draft_nfields))
		return;
	tuf_sign_settings(&ts, config_get());
	if (tuf_deleg_release_draft(&out, gd_db(r), &ts, gn_json_str(body, "model"), gn_json_str(body, "version"),
				    &err))
		gd_reply_error(r, &err);
	else
		gd_reply_json(r, 200, out);
	json_decref(body);
}

/* POST /v1/tuf/image/roles/{role}: a delegated role's next version, signed by CI. */
static void http_tuf_role_publish(struct gd_req *r)
{
	json_t *body = NULL;
	struct tuf_settings ts;
	int version;
	gn_err err;
	if (gd_body_json(&body, r, http_tuf_root_fields, http_tuf_root_nfields))
		return;
	tuf_sign_settings(&ts, config_get());
	if (tuf_deleg_role_publish(&version, gd_db(r), &ts, gd_actor(r), gd_param(r, 0), body, &err))
		gd_reply_error(r, &err);
	else
		gd_reply_json(r, 201, json_pack("{s:s,s:i}", "role", gd_param(r, 0), "version", version));
	json_decref(body);
}

const struct gd_route http_tuf_deleg_routes[] = {
	{"POST", "/v1/tuf/image/targets", GD_SCOPE_ADMIN, http_tuf_targets_import, NULL},
	{"POST", "/v1/tuf/image/release-draft", GD_SCOPE_CI, http_tuf_release_draft, NULL},
	{"POST", "/v1/tuf/image/roles/{role}", GD_SCOPE_CI, http_tuf_role_publish, NULL},
};
const size_t http_tuf_deleg_nroutes = GN_ARRAY_LEN(http_tuf_deleg_routes);
