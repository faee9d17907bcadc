/* Enrollment tokens and device enrollment. */
#include "enroll.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "auth.h"
#include "crypto.h"
#include "devices.h"
#include "selector.h"

#define ENROLL_JSON \
	"jsonb_build_object('id', id, 'name', name, 'labels', labels, 'max_uses', max_uses, 'uses', uses, \
	 'expires_at', gn_ts(expires_at), 'revoked_at', gn_ts(revoked_at), 'created_at', gn_ts(created_at))"

static const db_stmt st_create = {
	"enroll_tokens_create",
	"INSERT INTO enroll_tokens (name, hash, labels, max_uses, expires_at, created_by)"
	" VALUES ($1, $2, $3::jsonb, $4::integer, now() + make_interval(secs => $5::bigint), $6)"
	" RETURNING " ENROLL_JSON "::text, id",
	6};
const db_stmt enroll_tokens_list_stmt = {"enroll_tokens_list",
					 "SELECT " ENROLL_JSON
					 "::text, id FROM enroll_tokens WHERE ($1::uuid IS NULL OR id > $1::uuid)"
					 " ORDER BY id LIMIT $2",
					 2};
static const db_stmt st_revoke = {
	"enroll_tokens_revoke",
	"UPDATE enroll_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING id", 1};

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
	"SELECT revoked_at IS NOT NULL, expires_at <= now(), uses >= max_uses FROM enroll_tokens WHERE hash = $1", 1};

const gn_json_field enroll_tokens_create_fields[] = {
	{"name", GN_JSON_STRING, false, true},
	{"labels", GN_JSON_STRING_MAP, false, true},
	{"expires_in", GN_JSON_INTEGER, false, true},
	{"max_uses", GN_JSON_INTEGER, false, true},
};
const size_t enroll_tokens_create_nfields = GN_ARRAY_LEN(enroll_tokens_create_fields);

const gn_json_field enroll_device_fields[] = {
	{"token", GN_JSON_STRING, true, false},
	{"public_key", GN_JSON_STRING, true, false},
	{"name", GN_JSON_STRING, false, true},
	{"facts", GN_JSON_OBJECT, false, true},
};
const size_t enroll_device_nfields = GN_ARRAY_LEN(enroll_device_fields);

/* Checks every key and value of a labels object. */
static int check_labels(const json_t *labels, gn_err *err)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)labels, k, v) {
		if (gn_label_key_settable(k, err) ||
		    (json_is_string(v) && gn_label_value_check(json_string_value(v), err)))
			return GN_EINVAL;
	}
	return 0;
}

/* Checks a create request; fills the expiry and use quota (defaults: a day, one use). */
static int check_create(long long *out_exp, long long *out_uses, const json_t *req, gn_err *err)
{
	const char *name = gn_json_str(req, "name");
	json_t *jl = json_object_get(req, "labels");
	json_t *jexp = json_object_get(req, "expires_in"), *juses = json_object_get(req, "max_uses");
	*out_exp = json_is_integer(jexp) ? json_integer_value(jexp) : 86400;
	*out_uses = json_is_integer(juses) ? json_integer_value(juses) : 1;
	if (name && strlen(name) > 128)
		return gn_err_set(err, GN_EINVAL, "name must be at most 128 characters");
	if (*out_exp < 1 || *out_exp > 366LL * 86400)
		return gn_err_set(err, GN_EINVAL, "expires_in must be from 1 second to 366 days");
	if (*out_uses < 1 || *out_uses > 1000000)
		return gn_err_set(err, GN_EINVAL, "max_uses must be from 1 to 1000000");
	return json_is_object(jl) ? check_labels(jl, err) : 0;
}

int enroll_tokens_create(json_t **out, db_conn *c, const struct gd_actor *who, const json_t *req, gn_err *err)
{
	int error;
	PGresult *res = NULL;
	char *token = NULL, *labels = NULL;
	char hash[GN_SHA256_HEX_LEN + 1], ttl[32], uses[32];
	long long exp, max_uses;
	const char *name = gn_json_str(req, "name");
	json_t *jl = json_object_get(req, "labels");
	*out = NULL;
	if ((error = check_create(&exp, &max_uses, req, err)))
		goto out;
	if (!(token = gn_token_new(AUTH_ENROLL_PREFIX, err))) {
		error = GN_ERROR;
		goto out;
	}
	auth_hash_token(hash, token);
	labels = json_is_object(jl) ? gn_json_dump(jl) : gn_strdup("{}");
	snprintf(ttl, sizeof(ttl), "%lld", exp);
	snprintf(uses, sizeof(uses), "%lld", max_uses);
	const char *p[] = {name ? name : "", hash, labels, uses, ttl, who->kind == GD_ACTOR_TOKEN ? who->id : NULL};
	if ((error = db_tx_begin(c, err)) || (error = db_exec(&res, c, &st_create, p, err)) ||
	    (error = audit_write(c, who, "enroll_token.create", "enroll_token", PQgetvalue(res, 0, 1),
				 json_pack("{s:s,s:o,s:I}", "name", name ? name : "", "labels",
					   json_is_object(jl) ? json_incref(jl) : json_object(), "max_uses",
					   (json_int_t)max_uses),
				 err)) ||
	    (error = db_tx_commit(c, err)))
		goto out;
	*out = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
	json_object_set_new(*out, "token", json_string(token));
out:
	if (error)
		db_tx_rollback(c);
	PQclear(res);
	free(token);
	free(labels);
	return error;
}

int enroll_tokens_revoke(db_conn *c, const struct gd_actor *who, const char *id, gn_err *err)
{
	PGresult *res = NULL;
	if (!gn_is_uuid(id))
		return gn_err_set(err, GN_ENOTFOUND, "no such enrollment token");
	const char *p[] = {id};
	int error = audit_change(&res, c, who, &st_revoke, p, "no such enrollment token", "enroll_token.revoke",
				 "enroll_token", id, NULL, err);
	PQclear(res);
	return error;
}

/* Says why a token was refused, so an installer knows whether to ask for a new one. */
static int refusal(db_conn *c, const char *hash, gn_err *err)
{
	PGresult *res = NULL;
	const char *pw[] = {hash};
	int error = db_exec(&res, c, &st_why, pw, err);
	if (error)
		return error;
	if (PQntuples(res) == 0)
		error = gn_err_set(err, GN_EAUTH, "unknown enrollment token");
	else if (strcmp(PQgetvalue(res, 0, 0), "t") == 0)
		error = gn_err_set(err, GN_EAUTH, "enrollment token has been revoked");
	else if (strcmp(PQgetvalue(res, 0, 1), "t") == 0)
		error = gn_err_set(err, GN_EAUTH, "enrollment token has expired");
	else
		error = gn_err_set(err, GN_EAUTH, "enrollment token is used up (max_uses reached)");
	PQclear(res);
	return error;
}

int enroll_device(json_t **out, db_conn *c, const char *request_id, const json_t *req, gn_err *err)
{
	int error = 0;
	PGresult *res = NULL;
	char *facts = NULL;
	char hash[GN_SHA256_HEX_LEN + 1], pubhex[2 * GN_ED25519_PUB_LEN + 1];
	unsigned char pub[GN_ED25519_PUB_LEN];
	const char *token = gn_json_str(req, "token"), *key = gn_json_str(req, "public_key");
	const char *name = gn_json_str(req, "name");
	*out = NULL;
	if (gn_hex_decode(pub, sizeof(pub), key))
		return gn_err_set(err, GN_EINVAL, "public_key must be a raw Ed25519 public key as 64 hex digits");
	/* Store one spelling of each key, so the same key cannot enroll twice in another case. */
	gn_hex_encode(pubhex, pub, sizeof(pub));
	if (name && (error = devices_name_check(name, true, err)))
		return error;
	if (json_is_object(json_object_get(req, "facts")))
		facts = gn_json_dump(json_object_get(req, "facts"));
	auth_hash_token(hash, token);
	const char *p[] = {hash, name ? name : "", pubhex, facts, request_id};
	if ((error = db_exec(&res, c, &st_enroll, p, err))) {
		if (error == GN_ECONFLICT && !devices_name_taken(name ? name : "", err))
			gn_err_set(err, GN_ECONFLICT, "this public key is already enrolled");
		goto out;
	}
	if (PQntuples(res) == 1)
		*out = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
	else
		error = refusal(c, hash, err);
out:
	PQclear(res);
	free(facts);
	return error;
}
