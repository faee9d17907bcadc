/* /v1/device-token-keys: thin handlers over device_tokens.c (the keys that sign device tokens). */
#include "config.h"
#include "device_tokens.h"
#include "http.h"

const gn_json_field http_device_tokens_rotate_fields[] = {
	{"retire_previous", GN_JSON_BOOL, false, false},
};
const size_t http_device_tokens_rotate_nfields = GN_ARRAY_LEN(http_device_tokens_rotate_fields);

static void http_device_tokens_keys(struct gd_req *r)
{
	json_t *keys = NULL;
	gn_err err;
	if (device_tokens_keys(&keys, gd_db(r), &err))
		gd_reply_error(r, &err);
	else
		gd_reply_json(r, 200, json_pack("{s:o}", "items", keys));
}

/* The previous keys verify for as long as a token lives (device-token-ttl), unless retired. */
static void http_device_tokens_rotate(struct gd_req *r)
{
	json_t *body = NULL, *out = NULL;
	gn_err err;
	if (gd_body_json_opt(&body, r, http_device_tokens_rotate_fields, http_device_tokens_rotate_nfields))
		return;
	if (device_tokens_rotate_key(&out, gd_db(r), gd_actor(r),
				     json_is_true(json_object_get(body, "retire_previous")),
				     config_get()->device_token_ttl, &err))
		gd_reply_error(r, &err);
	else
		gd_reply_json(r, 200, out);
	json_decref(body);
}

const struct gd_route http_device_tokens_routes[] = {
	{"GET", "/v1/device-token-keys", GD_SCOPE_ADMIN, http_device_tokens_keys, NULL},
	{"POST", "/v1/device-token-keys/rotate", GD_SCOPE_ADMIN, http_device_tokens_rotate, NULL},
};
const size_t http_device_tokens_nroutes = GN_ARRAY_LEN(http_device_tokens_routes);
