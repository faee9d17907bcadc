/* The /v1/agent/auth routes and /v1/agent/self: thin handlers over device_auth.c and devices.c. */
#include <stdlib.h>
#include <string.h>

#include "device_auth.h"
#include "devices.h"
#include "http.h"

const gn_json_field http_agent_challenge_fields[] = {{"device_id", GN_JSON_STRING, true, false}};
const size_t http_agent_challenge_nfields = GN_ARRAY_LEN(http_agent_challenge_fields);

static void http_agent_challenge(struct gd_req *r)
{
	json_t *body = NULL, *out = NULL;
	gn_err err;
	const struct gd_config *cfg = config_get();
	if (gd_body_json(&body, r, http_agent_challenge_fields, http_agent_challenge_nfields))
		return;
	if (gd_rate_limit_device(r, "challenge", gn_json_str(body, "device_id")))
		goto out;
	if (device_auth_challenge(&out, gd_db(r), gn_json_str(body, "device_id"), cfg->challenge_ttl,
				  (int)cfg->max_device_challenges, &err))
		gd_reply_error(r, &err);
	else
		gd_reply_json(r, 200, out);
out:
	json_decref(body);
}

const gn_json_field http_agent_token_fields[] = {
	{"device_id", GN_JSON_STRING, true, false},
	{"nonce", GN_JSON_STRING, true, false},
	{"signature", GN_JSON_STRING, true, false},
};
const size_t http_agent_token_nfields = GN_ARRAY_LEN(http_agent_token_fields);

static void http_agent_token(struct gd_req *r)
{
	json_t *body = NULL, *out = NULL;
	gn_err err;
	if (gd_body_json(&body, r, http_agent_token_fields, http_agent_token_nfields))
		return;
	if (gd_rate_limit_device(r, "token", gn_json_str(body, "device_id"))) {
		json_decref(body);
		return;
	}
	if (device_auth_token(&out, gd_db(r), gn_json_str(body, "device_id"), gn_json_str(body, "nonce"),
			      gn_json_str(body, "signature"), config_get()->device_token_ttl, &err))
		gd_reply_error(r, &err);
	else
		gd_reply_json(r, 200, out);
	json_decref(body);
}

static void http_agent_self(struct gd_req *r)
{
	char *out = NULL;
	gn_err err;
	int rc = devices_get(&out, gd_db(r), gd_actor(r)->id, &err);
	gd_reply_text(r, rc, 200, out, &err);
}

const struct gd_route http_agent_routes[] = {
	{"POST", "/v1/agent/auth/challenge", GD_SCOPE_PUBLIC, http_agent_challenge, NULL},
	{"POST", "/v1/agent/auth/token", GD_SCOPE_PUBLIC, http_agent_token, NULL},
	{"GET", "/v1/agent/self", GD_SCOPE_DEVICE, http_agent_self, NULL},
};
const size_t http_agent_nroutes = GN_ARRAY_LEN(http_agent_routes);
