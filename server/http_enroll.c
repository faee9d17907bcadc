/* /v1/enroll-tokens and POST /v1/enroll: thin handlers over enroll.c. */
#include "auth.h"
#include "enroll.h"
#include "http.h"

static void http_enroll_tokens_create(struct gd_req *r)
{
	json_t *body = NULL, *out = NULL;
	gn_err err;
	if (gd_body_json(&body, r, enroll_tokens_create_fields, enroll_tokens_create_nfields))
		return;
	if (enroll_tokens_create(&out, gd_db(r), gd_actor(r), body, &err))
		gd_reply_error(r, &err);
	else
		gd_reply_json(r, 201, out);
	json_decref(body);
}

static void http_enroll_tokens_list(struct gd_req *r)
{
	gd_list(r, &enroll_tokens_list_stmt, CURSOR_UUID, NULL, 0);
}

static void http_enroll_tokens_revoke(struct gd_req *r)
{
	gn_err err;
	if (enroll_tokens_revoke(gd_db(r), gd_actor(r), gd_param(r, 0), &err))
		gd_reply_error(r, &err);
	else
		gd_reply_raw(r, 204, NULL, "", 0);
}

static void http_enroll_device(struct gd_req *r)
{
	json_t *body = NULL, *out = NULL;
	gn_err err;
	char hash[GN_SHA256_HEX_LEN + 1];
	if (gd_body_json(&body, r, enroll_device_fields, enroll_device_nfields))
		return;
	/* The enrollment token is the identity; it is counted by its hash, never kept. */
	auth_hash_token(hash, json_is_string(json_object_get(body, "token")) ? gn_json_str(body, "token") : "");
	if (gd_rate_limit(r, "enroll", hash)) {
		json_decref(body);
		return;
	}
	if (enroll_device(&out, gd_db(r), gd_actor(r)->request_id, body, &err))
		gd_reply_error(r, &err);
	else
		gd_reply_json(r, 201, out);
	json_decref(body);
}

const struct gd_route http_enroll_routes[] = {
	{"POST", "/v1/enroll-tokens", GD_SCOPE_OPERATOR, http_enroll_tokens_create, NULL},
	{"GET", "/v1/enroll-tokens", GD_SCOPE_OPERATOR, http_enroll_tokens_list, NULL},
	{"DELETE", "/v1/enroll-tokens/{id}", GD_SCOPE_OPERATOR, http_enroll_tokens_revoke, NULL},
	{"POST", "/v1/enroll", GD_SCOPE_PUBLIC, http_enroll_device, NULL},
};
const size_t http_enroll_nroutes = GN_ARRAY_LEN(http_enroll_routes);
