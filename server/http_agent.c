/* Device authentication: a single-use nonce signed with the device's enrolled Ed25519 key buys a
 * short-lived bearer token for the /v1/agent endpoints. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "gangliond.h"
#include "http.h"

#define AUTH_MESSAGE_PREFIX "ganglion-device-auth:v1:"

static const db_stmt st_device = {
	"agent_device", "SELECT status, public_key FROM devices WHERE id = $1", 1};
static const db_stmt st_challenge = {
	"agent_challenge",
	"INSERT INTO device_challenges (nonce, device_id, expires_at)"
	" VALUES ($1, $2, now() + make_interval(secs => $3::bigint)) RETURNING gn_ts(expires_at)",
	3};
/* Deleting the nonce as it is used makes it single-use even with replicas racing. */
static const db_stmt st_take_nonce = {
	"agent_take_nonce",
	"DELETE FROM device_challenges WHERE nonce = $1 AND device_id = $2 RETURNING expires_at > now()",
	2};
static const db_stmt st_session = {
	"agent_session",
	"WITH s AS (INSERT INTO device_sessions (hash, device_id, expires_at)"
	"  VALUES ($1, $2, now() + make_interval(secs => $3::bigint)) RETURNING expires_at),"
	" u AS (UPDATE devices SET last_seen_at = now() WHERE id = $2)"
	" SELECT gn_ts(expires_at) FROM s",
	3};
static const db_stmt st_self = {
	"agent_self", "SELECT gn_device_json(d)::text FROM devices d WHERE id = $1", 1};
static const db_stmt st_gc = {
	"agent_gc",
	"WITH a AS (DELETE FROM device_challenges WHERE expires_at < now() - interval '1 minute')"
	" DELETE FROM device_sessions WHERE expires_at < now() - interval '1 hour'",
	0};

/* Looks the device up: 0 and its public key when active; otherwise answers 404/403. */
static int active_device(struct gd_req *r, const char *id, unsigned char pub[GN_ED25519_PUB_LEN])
{
	PGresult *res = NULL;
	gn_err err;
	int error = GN_ENOTFOUND;
	if (!gn_is_uuid(id)) {
		gd_reply_problem(r, 404, "no such device");
		return error;
	}
	const char *p[] = {id};
	if (db_exec(&res, gd_db(r), &st_device, p, &err)) {
		gd_reply_error(r, &err);
		return GN_ERROR;
	}
	if (PQntuples(res) == 0)
		gd_reply_problem(r, 404, "no such device");
	else if (strcmp(PQgetvalue(res, 0, 0), "active") != 0)
		gd_reply_problem(r, 403, "device has been decommissioned");
	else if (gn_hex_decode(pub, GN_ED25519_PUB_LEN, PQgetvalue(res, 0, 1)))
		gd_reply_problem(r, 500, "stored public key is corrupt");
	else
		error = 0;
	PQclear(res);
	return error;
}

static const gn_json_field challenge_fields[] = {{"device_id", GN_JSON_STRING, true, false}};

void http_agent_challenge(struct gd_req *r)
{
	json_t *body = NULL;
	PGresult *res = NULL;
	gn_err err;
	unsigned char raw[32], pub[GN_ED25519_PUB_LEN];
	char nonce[65], ttl[32];

	if (gd_body_json(&body, r, challenge_fields, 1))
		goto out;
	const char *id = gn_json_str(body, "device_id");
	if (active_device(r, id, pub))
		goto out;
	if (gn_random_bytes(raw, sizeof(raw), &err)) {
		gd_reply_error(r, &err);
		goto out;
	}
	gn_hex_encode(nonce, raw, sizeof(raw));
	snprintf(ttl, sizeof(ttl), "%lld", (long long)atomic_load(&gd.challenge_ttl));
	const char *p[] = {nonce, id, ttl};
	if (db_exec(&res, gd_db(r), &st_challenge, p, &err)) {
		gd_reply_error(r, &err);
		goto out;
	}
	gd_reply_json(r, 200, json_pack("{s:s,s:s}", "nonce", nonce, "expires_at", PQgetvalue(res, 0, 0)));
out:
	json_decref(body);
	PQclear(res);
}

static const gn_json_field token_fields[] = {
	{"device_id", GN_JSON_STRING, true, false},
	{"nonce", GN_JSON_STRING, true, false},
	{"signature", GN_JSON_STRING, true, false},
};

void http_agent_token(struct gd_req *r)
{
	json_t *body = NULL;
	PGresult *res = NULL;
	char *msg = NULL, *token = NULL;
	gn_err err;
	unsigned char pub[GN_ED25519_PUB_LEN], sig[GN_ED25519_SIG_LEN];
	char hash[GN_SHA256_HEX_LEN + 1], ttl[32];

	if (gd_body_json(&body, r, token_fields, GN_ARRAY_LEN(token_fields)))
		goto out;
	const char *id = gn_json_str(body, "device_id"), *nonce = gn_json_str(body, "nonce");
	if (gn_hex_decode(sig, sizeof(sig), gn_json_str(body, "signature"))) {
		gd_reply_problem(r, 400, "signature must be 128 hex digits (Ed25519)");
		goto out;
	}
	if (active_device(r, id, pub))
		goto out;
	const char *p[] = {nonce, id};
	if (db_exec(&res, gd_db(r), &st_take_nonce, p, &err)) {
		gd_reply_error(r, &err);
		goto out;
	}
	if (PQntuples(res) == 0) {
		gd_reply_problem(r, 401, "unknown or already used nonce; ask for a new challenge");
		goto out;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		gd_reply_problem(r, 401, "nonce has expired; ask for a new challenge");
		goto out;
	}
	msg = gn_asprintf(AUTH_MESSAGE_PREFIX "%s:%s", id, nonce);
	if (gn_ed25519_verify(pub, msg, strlen(msg), sig, &err)) {
		gd_reply_problem(r, 401, "signature does not verify with the device's enrolled key");
		goto out;
	}
	if (!(token = gn_token_new(AUTH_DEVICE_PREFIX, &err))) {
		gd_reply_error(r, &err);
		goto out;
	}
	auth_hash_token(hash, token);
	snprintf(ttl, sizeof(ttl), "%lld", (long long)atomic_load(&gd.device_token_ttl));
	PQclear(res);
	res = NULL;
	const char *ps[] = {hash, id, ttl};
	if (db_exec(&res, gd_db(r), &st_session, ps, &err)) {
		gd_reply_error(r, &err);
		goto out;
	}
	gd_reply_json(r, 200, json_pack("{s:s,s:s}", "token", token, "expires_at", PQgetvalue(res, 0, 0)));
out:
	json_decref(body);
	PQclear(res);
	free(msg);
	free(token);
}

void http_agent_self(struct gd_req *r)
{
	PGresult *res = NULL;
	gn_err err;
	const char *p[] = {r->actor.id};
	if (db_exec(&res, gd_db(r), &st_self, p, &err)) {
		gd_reply_error(r, &err);
		return;
	}
	if (PQntuples(res) == 0)
		gd_reply_problem(r, 404, "no such device");
	else
		gd_reply_raw(r, 200, "application/json", PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
	PQclear(res);
}

/* Deletes expired nonces and device sessions; called by the housekeeping loop. */

int http_agent_gc(db_conn *c, gn_err *err)
{
	return db_exec(NULL, c, &st_gc, NULL, err);
}
