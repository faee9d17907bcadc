/* /v1/tokens: thin handlers over tokens.c (API tokens with scopes, expiry and revocation). */
#include "http.h"
#include "tokens.h"

static void http_tokens_create(struct gd_req *r)
{
	json_t *body = NULL, *out = NULL;
	gn_err err;
	if (gd_body_json(&body, r, tokens_create_fields, tokens_create_nfields))
		return;
	if (tokens_create(&out, gd_db(r), gd_actor(r), body, &err))
		gd_reply_error(r, &err);
	else
		gd_reply_json(r, 201, out);
	json_decref(body);
}

static void http_tokens_list(struct gd_req *r)
{
	gd_list(r, &tokens_list_stmt, CURSOR_UUID, NULL, 0);
}

static void http_tokens_revoke(struct gd_req *r)
{
	gn_err err;
	if (tokens_revoke(gd_db(r), gd_actor(r), gd_param(r, 0), &err))
		gd_reply_error(r, &err);
	else
		gd_reply_raw(r, 204, NULL, "", 0);
}

/* The token the request came with: who the caller is to the server, its scopes and expiry. */
static void http_tokens_whoami(struct gd_req *r)
{
	char *json = NULL;
	gn_err err;
	int rc = tokens_get(&json, gd_db(r), gd_actor(r)->id, &err);
	gd_reply_text(r, rc, 200, json, &err);
}

const struct gd_route http_tokens_routes[] = {
	{"POST", "/v1/tokens", GD_SCOPE_ADMIN, http_tokens_create, NULL},
	{"GET", "/v1/tokens", GD_SCOPE_ADMIN, http_tokens_list, NULL},
	{"DELETE", "/v1/tokens/{id}", GD_SCOPE_ADMIN, http_tokens_revoke, NULL},
	/* Every API token may ask who it is (read is implied by every scope); devices have /v1/agent/self. */
	{"GET", "/v1/whoami", GD_SCOPE_READ, http_tokens_whoami, NULL},
};
const size_t http_tokens_nroutes = GN_ARRAY_LEN(http_tokens_routes);
