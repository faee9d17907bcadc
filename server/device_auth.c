/* Device challenge-response authentication. */
#include "device_auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <ctype.h>
#include <string.h>

#include "crypto.h"
#include "device_tokens.h"

#define AUTH_MESSAGE_PREFIX "ganglion-device-auth:v1:"

static const db_stmt st_device = {"agent_device", "SELECT status, public_key FROM devices WHERE id = $1", 1};
/* A new nonce, and only the newest few kept per device: an unauthenticated caller cannot pile
 * up rows. (The DELETE sees the rows from before the INSERT, so it keeps $4 - 1 of them.) */
static const db_stmt st_challenge = {
	"agent_challenge",
	"WITH n AS (INSERT INTO device_challenges (nonce, device_id, expires_at)"
	"  VALUES ($1, $2, now() + make_interval(secs => $3::bigint)) RETURNING expires_at),"
	" d AS (DELETE FROM device_challenges WHERE nonce IN (SELECT nonce FROM device_challenges"
	"  WHERE device_id = $2 ORDER BY issued_at DESC, nonce OFFSET $4::int - 1))"
	" SELECT gn_ts(expires_at) FROM n",
	4};
/* Deleting the nonce as it is used makes it single-use even with replicas racing. */
static const db_stmt st_take_nonce = {
	"agent_take_nonce",
	"DELETE FROM device_challenges WHERE nonce = $1 AND device_id = $2 RETURNING expires_at > now()", 2};
/* The device's token generation for its signed token (device_tokens.c), and its last-seen time. */
static const db_stmt st_session = {
	"agent_session",
	"WITH u AS (UPDATE devices SET last_seen_at = now() WHERE id = $1 AND status = 'active'"
	"  RETURNING token_generation)"
	" SELECT token_generation, gn_ts(to_timestamp($2::bigint)) FROM u",
	2};
static const db_stmt st_gc = {"agent_gc",
			      "WITH a AS (DELETE FROM device_challenges WHERE expires_at < now() - interval '1 minute')"
			      " DELETE FROM device_sessions WHERE expires_at < now() - interval '1 hour'",
			      0};

/* Looks the device up: 0 and its public key when it is active. */
static int active_device(unsigned char pub[GN_ED25519_PUB_LEN], db_conn *c, const char *id, gn_err *err)
{
	PGresult *res = NULL;
	int error;
	if (!gn_is_uuid(id))
		return gn_err_set(err, GN_ENOTFOUND, "no such device");
	const char *p[] = {id};
	if ((error = db_exec(&res, c, &st_device, p, err)))
		return error;
	if (PQntuples(res) == 0)
		error = gn_err_set(err, GN_ENOTFOUND, "no such device");
	else if (strcmp(PQgetvalue(res, 0, 0), "active") != 0)
		error = gn_err_set(err, GN_EFORBIDDEN, "device has been decommissioned");
	else if (gn_hex_decode(pub, GN_ED25519_PUB_LEN, PQgetvalue(res, 0, 1)))
		error = gn_err_set(err, GN_ERROR, "stored public key of device %s is corrupt", id);
	PQclear(res);
	return error;
}

int device_auth_challenge(json_t **out, db_conn *c, const char *device_id, int64_t ttl, int keep, gn_err *err)
{
	PGresult *res = NULL;
	unsigned char raw[32], pub[GN_ED25519_PUB_LEN];
	char nonce[65], sttl[32], skeep[16];
	int error;
	*out = NULL;
	if ((error = active_device(pub, c, device_id, err)) || (error = gn_random_bytes(raw, sizeof(raw), err)))
		return error;
	gn_hex_encode(nonce, raw, sizeof(raw));
	snprintf(sttl, sizeof(sttl), "%lld", (long long)ttl);
	snprintf(skeep, sizeof(skeep), "%d", keep > 0 ? keep : 1);
	const char *p[] = {nonce, device_id, sttl, skeep};
	if ((error = db_exec(&res, c, &st_challenge, p, err)))
		return error;
	*out = json_pack("{s:s,s:s}", "nonce", nonce, "expires_at", PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

/* Uses up the nonce and checks the device's signature over it. */
static int check_nonce(db_conn *c, const unsigned char pub[GN_ED25519_PUB_LEN], const char *id, const char *nonce,
		       const unsigned char sig[GN_ED25519_SIG_LEN], gn_err *err)
{
	PGresult *res = NULL;
	char *msg = NULL;
	const char *p[] = {nonce, id};
	int error = db_exec(&res, c, &st_take_nonce, p, err);
	if (error)
		return error;
	if (PQntuples(res) == 0)
		error = gn_err_set(err, GN_EAUTH, "unknown or already used nonce; ask for a new challenge");
	else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
		error = gn_err_set(err, GN_EAUTH, "nonce has expired; ask for a new challenge");
	PQclear(res);
	if (error)
		return error;
	msg = gn_asprintf(AUTH_MESSAGE_PREFIX "%s:%s", id, nonce);
	if (gn_ed25519_verify(pub, msg, strlen(msg), sig, err))
		error = gn_err_set(err, GN_EAUTH, "signature does not verify with the device's enrolled key");
	free(msg);
	return error;
}

int device_auth_token(json_t **out, db_conn *c, const char *device_id, const char *nonce, const char *signature,
		      int64_t ttl, gn_err *err)
{
	PGresult *res = NULL;
	char *token = NULL;
	unsigned char pub[GN_ED25519_PUB_LEN], sig[GN_ED25519_SIG_LEN];
	char sexp[32];
	int error;
	*out = NULL;
	if (gn_hex_decode(sig, sizeof(sig), signature))
		return gn_err_set(err, GN_EINVAL, "signature must be 128 hex digits (Ed25519)");
	if ((error = active_device(pub, c, device_id, err)) ||
	    (error = check_nonce(c, pub, device_id, nonce, sig, err)))
		return error;
	/* The token names the device as PostgreSQL writes a uuid (lower case), whatever case the device
	 * sent: revocations arrive in that form and are matched by text. */
	char id[37];
	for (int i = 0; i < 37; i++)
		id[i] = (char)tolower((unsigned char)device_id[i]);
	device_id = id;
	int64_t exp = gn_now() + ttl;
	snprintf(sexp, sizeof(sexp), "%lld", (long long)exp);
	const char *ps[] = {device_id, sexp};
	if ((error = db_exec(&res, c, &st_session, ps, err)))
		return error;
	if (PQntuples(res) != 1)
		error = gn_err_set(err, GN_EFORBIDDEN, "device has been decommissioned");
	else if (!(error = device_tokens_mint(&token, c, device_id, strtoll(PQgetvalue(res, 0, 0), NULL, 10), exp,
					      err)))
		*out = json_pack("{s:s,s:s}", "token", token, "expires_at", PQgetvalue(res, 0, 1));
	PQclear(res);
	free(token);
	return error;
}

int device_auth_gc(db_conn *c, gn_err *err)
{
	return db_exec(NULL, c, &st_gc, NULL, err);
}
