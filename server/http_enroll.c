/* /v1/enroll-tokens (bootstrap tokens bound to labels, with expiry and a use quota) and
 * POST /v1/enroll, where a device trades one for an identity bound to its Ed25519 key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "auth.h"
#include "http.h"
#include "selector.h"

#define ENROLL_JSON                                                                                   \
	"jsonb_build_object('id', id, 'name', name, 'labels', labels, 'max_uses', max_uses, 'uses', uses, \
	 'expires_at', gn_ts(expires_at), 'revoked_at', gn_ts(revoked_at), 'created_at', gn_ts(created_at))"

static const db_stmt st_create = {
	"enroll_tokens_create",
	"INSERT INTO enroll_tokens (name, hash, labels, max_uses, expires_at, created_by)"
	" VALUES ($1, $2, $3::jsonb, $4::integer, now() + make_interval(secs => $5::bigint), $6)"
	" RETURNING " ENROLL_JSON "::text, id",
	6};
static const db_stmt st_list = {
	"enroll_tokens_list",
	"SELECT " ENROLL_JSON "::text, id FROM enroll_tokens WHERE ($1::uuid IS NULL OR id > $1::uuid)"
	" ORDER BY id LIMIT $2",
	2};
static const db_stmt st_revoke = {
	"enroll_tokens_revoke",
	"UPDATE enroll_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING id",
	1};

/* Takes one use of the token and creates the device in one statement, so two devices racing for
 * the last use cannot both win; the audit row goes in with it. */
static const db_stmt st_enroll = {
	"enroll_device",
	"WITH t AS (UPDATE enroll_tokens SET uses = uses + 1 WHERE hash = $1 AND revoked_at IS NULL"
	"   AND expires_at > now() AND uses < max_uses RETURNING id, labels),"
	" d AS (INSERT INTO devices (name, public_key, labels, facts, enroll_token_id)"
	"   SELECT $2, $3, t.labels, coalesce($4::jsonb, '{}'), t.id FROM t RETURNING id, name, labels, enroll_token_id),"
	" a AS (INSERT INTO audit_log (actor, action, object_type, object_id, request_id, detail)"
	"   SELECT 'enroll_token:' || d.enroll_token_id, 'device.enroll', 'device', d.id::text, $5,"
	"   jsonb_build_object('name', d.name, 'labels', d.labels) FROM d)"
	" SELECT jsonb_build_object('device_id', id, 'name', name, 'labels', labels)::text FROM d",
	5};
static const db_stmt st_why = {
	"enroll_why",
	"SELECT revoked_at IS NOT NULL, expires_at <= now(), uses >= max_uses FROM enroll_tokens WHERE hash = $1",
	1};

static const gn_json_field create_fields[] = {
	{"name", GN_JSON_STRING, false, true},
	{"labels", GN_JSON_STRING_MAP, false, true},
	{"expires_in", GN_JSON_INTEGER, false, true},
	{"max_uses", GN_JSON_INTEGER, false, true},
};

/* Checks every key and value of a labels object; answers 400 and returns non-zero when bad. */
static int check_labels(struct gd_req *r, const json_t *labels)
{
	const char *k;
	json_t *v;
	gn_err err;
	json_object_foreach((json_t *)labels, k, v)
	{
		if (gn_label_key_check(k, &err) || (json_is_string(v) && gn_label_value_check(json_string_value(v), &err))) {
			gd_reply_problem(r, 400, err.msg);
			return GN_EINVAL;
		}
	}
	return 0;
}

void http_enroll_tokens_create(struct gd_req *r)
{
	json_t *body = NULL, *out = NULL;
	PGresult *res = NULL;
	char *token = NULL, *labels = NULL;
	gn_err err;
	char hash[GN_SHA256_HEX_LEN + 1], ttl[32], uses[32];

	if (gd_body_json(&body, r, create_fields, GN_ARRAY_LEN(create_fields)))
		goto out;
	const char *name = gn_json_str(body, "name");
	json_t *jl = json_object_get(body, "labels");
	json_t *jexp = json_object_get(body, "expires_in"), *juses = json_object_get(body, "max_uses");
	long long exp = json_is_integer(jexp) ? json_integer_value(jexp) : 86400;
	long long max_uses = json_is_integer(juses) ? json_integer_value(juses) : 1;
	if (name && strlen(name) > 128) {
		gd_reply_problem(r, 400, "name must be at most 128 characters");
		goto out;
	}
	if (exp < 1 || exp > 366LL * 86400) {
		gd_reply_problem(r, 400, "expires_in must be from 1 second to 366 days");
		goto out;
	}
	if (max_uses < 1 || max_uses > 1000000) {
		gd_reply_problem(r, 400, "max_uses must be from 1 to 1000000");
		goto out;
	}
	if (json_is_object(jl) && check_labels(r, jl))
		goto out;
	if (!(token = gn_token_new(AUTH_ENROLL_PREFIX, &err))) {
		gd_reply_error(r, &err);
		goto out;
	}
	auth_hash_token(hash, token);
	labels = json_is_object(jl) ? gn_json_dump(jl) : gn_strdup("{}");
	snprintf(ttl, sizeof(ttl), "%lld", exp);
	snprintf(uses, sizeof(uses), "%lld", max_uses);
	const char *p[] = {name ? name : "", hash, labels, uses, ttl, r->auth.token_id};
	if (db_exec_sql(gd_db(r), "BEGIN", &err) || db_exec(&res, gd_db(r), &st_create, p, &err) ||
	    audit_write(r, "enroll_token.create", "enroll_token", PQgetvalue(res, 0, 1),
			json_pack("{s:s,s:o,s:I}", "name", name ? name : "", "labels",
				  json_is_object(jl) ? json_incref(jl) : json_object(), "max_uses", (json_int_t)max_uses),
			&err) ||
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
	free(labels);
}

void http_enroll_tokens_list(struct gd_req *r)
{
	gd_list(r, &st_list, CURSOR_UUID, NULL, 0);
}

void http_enroll_tokens_revoke(struct gd_req *r)
{
	PGresult *res = NULL;
	const char *id = gd_param(r, 0);
	if (!gd_is_uuid(id)) {
		gd_reply_problem(r, 404, "no such enrollment token");
		return;
	}
	const char *p[] = {id};
	if (audit_change(&res, r, &st_revoke, p, "no such enrollment token", "enroll_token.revoke", "enroll_token", id,
			 NULL))
		return;
	gd_reply_raw(r, 204, NULL, "", 0);
	PQclear(res);
}

static const gn_json_field enroll_fields[] = {
	{"token", GN_JSON_STRING, true, false},
	{"public_key", GN_JSON_STRING, true, false},
	{"name", GN_JSON_STRING, false, true},
	{"facts", GN_JSON_OBJECT, false, true},
};

void http_enroll_device(struct gd_req *r)
{
	json_t *body = NULL;
	PGresult *res = NULL;
	char *facts = NULL;
	gn_err err;
	char hash[GN_SHA256_HEX_LEN + 1], pubhex[2 * GN_ED25519_PUB_LEN + 1];
	unsigned char pub[GN_ED25519_PUB_LEN];

	if (gd_body_json(&body, r, enroll_fields, GN_ARRAY_LEN(enroll_fields)))
		goto out;
	const char *token = gn_json_str(body, "token"), *key = gn_json_str(body, "public_key");
	const char *name = gn_json_str(body, "name");
	if (gn_hex_decode(pub, sizeof(pub), key)) {
		gd_reply_problem(r, 400, "public_key must be a raw Ed25519 public key as 64 hex digits");
		goto out;
	}
	/* Store one spelling of each key, so the same key cannot enroll twice in another case. */
	gn_hex_encode(pubhex, pub, sizeof(pub));
	if (name && strlen(name) > 128) {
		gd_reply_problem(r, 400, "name must be at most 128 characters");
		goto out;
	}
	if (json_is_object(json_object_get(body, "facts")))
		facts = gn_json_dump(json_object_get(body, "facts"));
	auth_hash_token(hash, token);
	const char *p[] = {hash, name ? name : "", pubhex, facts, r->id};
	if (db_exec(&res, gd_db(r), &st_enroll, p, &err)) {
		if (err.code == GN_ECONFLICT)
			gd_reply_problem(r, 409, "this public key is already enrolled");
		else
			gd_reply_error(r, &err);
		goto out;
	}
	if (PQntuples(res) == 1) {
		gd_reply_raw(r, 201, "application/json", PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
		goto out;
	}
	/* Refused: say why, so an installer knows whether to ask for a new token. */
	PQclear(res);
	res = NULL;
	const char *pw[] = {hash};
	if (db_exec(&res, gd_db(r), &st_why, pw, &err)) {
		gd_reply_error(r, &err);
		goto out;
	}
	if (PQntuples(res) == 0)
		gd_reply_problem(r, 401, "unknown enrollment token");
	else if (strcmp(PQgetvalue(res, 0, 0), "t") == 0)
		gd_reply_problem(r, 401, "enrollment token has been revoked");
	else if (strcmp(PQgetvalue(res, 0, 1), "t") == 0)
		gd_reply_problem(r, 401, "enrollment token has expired");
	else
		gd_reply_problem(r, 401, "enrollment token is used up (max_uses reached)");
out:
	json_decref(body);
	PQclear(res);
	free(facts);
}
