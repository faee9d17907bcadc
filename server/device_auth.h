/* Device authentication: a single-use nonce signed with the device's enrolled Ed25519 key buys a
 * short-lived bearer token for the /v1/agent endpoints. Domain layer; no transactions (each step
 * is one statement). */
#ifndef GD_DEVICE_AUTH_H
#define GD_DEVICE_AUTH_H

#include <jansson.h>

#include "db.h"

/* Issues a nonce for an active device, valid ttl seconds, and drops the device's older nonces
 * beyond the newest `keep`; *out is {"nonce", "expires_at"} (new). GN_ENOTFOUND for no such
 * device, GN_EFORBIDDEN for a decommissioned one. */
int device_auth_challenge(json_t **out, db_conn *c, const char *device_id, int64_t ttl, int keep, gn_err *err) GN_WUR;
/* Trades a nonce signed by the device (signature: 128 hex digits) for a bearer token valid ttl
 * seconds; *out is {"token", "expires_at"} (new). GN_EAUTH for an unknown, used or expired nonce or
 * a bad signature; GN_EINVAL for a malformed signature. */
int device_auth_token(json_t **out, db_conn *c, const char *device_id, const char *nonce, const char *signature,
		      int64_t ttl, gn_err *err) GN_WUR;
/* Deletes expired nonces and device sessions (a periodic job). */
int device_auth_gc(db_conn *c, gn_err *err) GN_WUR;

#endif
