/* API tokens: creation with scopes and expiry, revocation; every change audited. */
#include "tokens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "auth.h"
#include "common.h"

#define TOKEN_JSON \
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
const db_stmt tokens_list_stmt = {"tokens_list",
				  "SELECT " TOKEN_JSON
				  "::text, id FROM api_tokens WHERE ($1::uuid IS NULL OR id > $1::uuid)"
				  " ORDER BY id LIMIT $2",
				  2};
/* The live token (not revoked, not expired) with this name, if any. */
static const db_stmt st_live_named = {
	"tokens_live_named",
	"SELECT id, gn_ts(created_at) FROM api_tokens WHERE name = $1 AND revoked_at IS NULL"
	" AND (expires_at IS NULL OR expires_at > now()) LIMIT 1",
	1};
static const db_stmt st_get = {"tokens_get", "SELECT " TOKEN_JSON "::text FROM api_tokens WHERE id = $1", 1};
static const db_stmt st_revoke = {
	"tokens_revoke", "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING id",
	1};

const gn_json_field tokens_create_fields[] = {
	{"name", GN_JSON_STRING, true, false},
	{"scopes", GN_JSON_ARRAY, true, false},
	{"expires_in", GN_JSON_INTEGER, false, true},
};
const size_t tokens_create_nfields = GN_ARRAY_LEN(tokens_create_fields);

/* Checks the scope names and writes them, without repeats, comma-separated into out. */
static int scopes_join(gn_buf *out, const json_t *arr, gn_err *err)
{
	json_t *v;
	size_t i;
	unsigned seen = 0;
	if (json_array_size(arr) == 0)
		return gn_err_set(err, GN_EINVAL, "scopes must list at least one of admin, operator, ci, read");
	json_array_foreach((json_t *)arr, i, v) {
		unsigned bit;
		if (!json_is_string(v) || auth_scope_parse(&bit, json_string_value(v)))
			return gn_err_set(err, GN_EINVAL, "scopes must be among admin, operator, ci, read");
		if (seen & bit)
			continue;
		seen |= bit;
		gn_buf_printf(out, "%s%s", out->len ? "," : "", json_string_value(v));
	}
	return 0;
}

/* Refuses a name that a live token has (so an audit entry's actor names one token), naming that
 * token. Under the name's lock, inside the caller's transaction. */
static int name_free(db_conn *c, const char *name, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {name};
	int error;
	if ((error = db_lock_xact_text(c, DB_LOCK_NS_TOKEN_NAME, name, err)) ||
	    (error = db_exec(&res, c, &st_live_named, p, err)))
		goto out;
	if (PQntuples(res) > 0)
		error = gn_err_set(
			err, GN_ECONFLICT,
			"a live token named '%s' exists already (id %s, created %s): names are unique "
			"among tokens that are neither revoked nor expired; choose another name or revoke it",
			name, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
out:
	PQclear(res);
	return error;
}

int tokens_create(json_t **out, db_conn *c, const struct gd_actor *who, const json_t *req, gn_err *err)
{
	int error;
	PGresult *res = NULL;
	char *token = NULL;
	gn_buf scopes;
	char hash[GN_SHA256_HEX_LEN + 1], ttl[32];
	const char *name = gn_json_str(req, "name");
	json_t *arr = json_object_get(req, "scopes"), *exp = json_object_get(req, "expires_in");
	gn_buf_init(&scopes);
	*out = NULL;
	if (strlen(name) < 1 || strlen(name) > 64) {
		error = gn_err_set(err, GN_EINVAL, "name must be 1 to 64 characters");
		goto out;
	}
	if ((error = scopes_join(&scopes, arr, err)))
		goto out;
	if (json_is_integer(exp) && json_integer_value(exp) <= 0) {
		error = gn_err_set(err, GN_EINVAL, "expires_in must be a positive number of seconds");
		goto out;
	}
	if (json_is_integer(exp))
		snprintf(ttl, sizeof(ttl), "%lld", (long long)json_integer_value(exp));
	if (!(token = gn_token_new(AUTH_API_PREFIX, err))) {
		error = GN_ERROR;
		goto out;
	}
	auth_hash_token(hash, token);
	const char *p[] = {name, hash, scopes.data, who->kind == GD_ACTOR_TOKEN ? who->id : NULL,
			   json_is_integer(exp) ? ttl : NULL};
	if ((error = db_tx_begin(c, err)) || (error = name_free(c, name, err)) ||
	    (error = db_exec(&res, c, &st_create, p, err)) ||
	    (error = audit_write(c, who, "token.create", "token", PQgetvalue(res, 0, 1),
				 json_pack("{s:s,s:O}", "name", name, "scopes", arr), err)) ||
	    (error = db_tx_commit(c, err)))
		goto out;
	*out = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
	json_object_set_new(*out, "token", json_string(token));
out:
	if (error)
		db_tx_rollback(c);
	PQclear(res);
	free(token);
	gn_buf_cleanup(&scopes);
	return error;
}

int tokens_get(char **out, db_conn *c, const char *id, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {id};
	int error = 0;
	*out = NULL;
	if (!gn_is_uuid(id))
		return gn_err_set(err, GN_ENOTFOUND, "no such token '%.40s'", id);
	if ((error = db_exec(&res, c, &st_get, p, err)))
		return error;
	if (PQntuples(res) == 0)
		error = gn_err_set(err, GN_ENOTFOUND, "no such token '%s'", id);
	else
		*out = gn_strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return error;
}

int tokens_revoke(db_conn *c, const struct gd_actor *who, const char *id, gn_err *err)
{
	PGresult *res = NULL;
	if (!gn_is_uuid(id))
		return gn_err_set(err, GN_ENOTFOUND, "no such token");
	const char *p[] = {id};
	int error = audit_change(&res, c, who, &st_revoke, p, "no such token", "token.revoke", "token", id, NULL, err);
	PQclear(res);
	return error;
}
