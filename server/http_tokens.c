/* /v1/tokens: API tokens for people and CI, with scopes, expiry and revocation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "auth.h"
#include "http.h"

#define TOKEN_JSON                                                                                   \
	"jsonb_build_object('id', id, 'name', name, 'scopes', to_jsonb(scopes), 'created_at',           \
	 gn_ts(created_at), 'expires_at', gn_ts(expires_at), 'revoked_at', gn_ts(revoked_at),           \
	 'last_used_at', gn_ts(last_used_at))"

static const db_stmt st_create = {
	"tokens_create",
	"INSERT INTO api_tokens (name, hash, scopes, created_by, expires_at)"
	" VALUES ($1, $2, string_to_array($3, ','), $4,"
	"  CASE WHEN $5::bigint IS NULL THEN NULL ELSE now() + make_interval(secs => $5::bigint) END)"
	" RETURNING " TOKEN_JSON "::text, id",
	5};
static const db_stmt st_list = {
	"tokens_list",
	"SELECT " TOKEN_JSON "::text, id FROM api_tokens WHERE ($1::uuid IS NULL OR id > $1::uuid)"
	" ORDER BY id LIMIT $2",
	2};
static const db_stmt st_revoke = {
	"tokens_revoke",
	"UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING id",
	1};

static const gn_json_field create_fields[] = {
	{"name", GN_JSON_STRING, true, false},
	{"scopes", GN_JSON_ARRAY, true, false},
	{"expires_in", GN_JSON_INTEGER, false, true},
};

void http_tokens_create(struct gd_req *r)
{
	json_t *body = NULL, *out = NULL;
	PGresult *res = NULL;
	char *token = NULL;
	gn_buf scopes;
	gn_err err;
	char hash[GN_SHA256_HEX_LEN + 1], ttl[32];
	gn_buf_init(&scopes);

	if (gd_body_json(&body, r, create_fields, GN_ARRAY_LEN(create_fields)))
		goto out;
	const char *name = gn_json_str(body, "name");
	if (strlen(name) < 1 || strlen(name) > 64) {
		gd_reply_problem(r, 400, "name must be 1 to 64 characters");
		goto out;
	}
	json_t *arr = json_object_get(body, "scopes"), *v;
	size_t i;
	unsigned seen = 0;
	if (json_array_size(arr) == 0) {
		gd_reply_problem(r, 400, "scopes must list at least one of admin, operator, ci, read");
		goto out;
	}
	json_array_foreach(arr, i, v)
	{
		unsigned bit;
		if (!json_is_string(v) || auth_scope_parse(&bit, json_string_value(v))) {
			gd_reply_problem(r, 400, "scopes must be among admin, operator, ci, read");
			goto out;
		}
		if (seen & bit)
			continue;
		seen |= bit;
		gn_buf_printf(&scopes, "%s%s", scopes.len ? "," : "", json_string_value(v));
	}
	json_t *exp = json_object_get(body, "expires_in");
	if (exp && json_is_integer(exp) && json_integer_value(exp) <= 0) {
		gd_reply_problem(r, 400, "expires_in must be a positive number of seconds");
		goto out;
	}
	if (exp && json_is_integer(exp))
		snprintf(ttl, sizeof(ttl), "%lld", (long long)json_integer_value(exp));
	if (!(token = gn_token_new(AUTH_API_PREFIX, &err))) {
		gd_reply_error(r, &err);
		goto out;
	}
	auth_hash_token(hash, token);
	const char *p[] = {name, hash, scopes.data, r->auth.token_id, exp && json_is_integer(exp) ? ttl : NULL};
	if (db_exec_sql(gd_db(r), "BEGIN", &err) || db_exec(&res, gd_db(r), &st_create, p, &err) ||
	    audit_write(r, "token.create", "token", PQgetvalue(res, 0, 1), json_pack("{s:s,s:O}", "name", name, "scopes", arr), &err) ||
	    db_exec_sql(gd_db(r), "COMMIT", &err)) {
		gd_reply_error(r, &err);
		goto out;
	}
	out = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
	json_object_set_new(out, "token", json_string(token));
	gd_reply_json(r, 201, out);
out:
	json_decref(body);
	PQclear(res);
	free(token);
	gn_buf_cleanup(&scopes);
}

void http_tokens_list(struct gd_req *r)
{
	gd_list(r, &st_list, CURSOR_UUID, NULL, 0);
}

void http_tokens_revoke(struct gd_req *r)
{
	PGresult *res = NULL;
	const char *id = gd_param(r, 0);
	if (!gd_is_uuid(id)) {
		gd_reply_problem(r, 404, "no such token");
		return;
	}
	const char *p[] = {id};
	if (audit_change(&res, r, &st_revoke, p, "no such token", "token.revoke", "token", id, NULL))
		return;
	gd_reply_raw(r, 204, NULL, "", 0);
	PQclear(res);
}
