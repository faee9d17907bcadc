/* Signed device tokens: a device's bearer token carries its device id, token generation and
 * expiry, signed with HMAC-SHA256 (cut to 128 bits) under a key every replica shares through PostgreSQL
 * (server_secrets, migrations/0013_device_tokens.sql), so a check-in is authenticated in memory.
 * Revocation is a per-device minimum generation (and a decommissioned flag) that each replica
 * keeps in memory: loaded after the NOTIFY listener (re)connects and raised by the
 * "gn_device_tokens" channel. While that state cannot be trusted (no listener, or not reloaded
 * yet), callers read the device's row instead. Domain layer. */
#ifndef GD_DEVICE_TOKENS_H
#define GD_DEVICE_TOKENS_H

#include <jansson.h>
#include <stdbool.h>

#include "actor.h"
#include "db.h"

#define DEVICE_TOKEN_PREFIX "gnd_v2."

/* Loads the shared key, creating it when no replica has yet. Run once at start-up. */
int device_tokens_init(db_conn *c, gn_err *err) GN_WUR;
/* Uses key (32 bytes) from now on: what device_tokens_init does with the shared one (and tests
 * with their own). */
int device_tokens_use_key(const unsigned char key[32], gn_err *err) GN_WUR;
/* Forgets the key and the revocation state. */
void device_tokens_cleanup(void);
/* A new token for device_id (a UUID) of generation gen, valid until exp (Unix seconds). */
char *device_tokens_mint(const char *device_id, int64_t gen, int64_t exp);
/* True when token has the signed format (else it is an older, database-backed token). */
bool device_tokens_is_signed(const char *token);

enum device_token_verdict {
	DEVICE_TOKEN_OK,
	DEVICE_TOKEN_REVOKED, /* of a generation below the device's */
	DEVICE_TOKEN_DEAD,    /* the device was decommissioned */
	DEVICE_TOKEN_UNKNOWN, /* memory cannot tell: ask the database (device_tokens_check_db) */
};
/* Checks a signed token's signature and expiry at now (GN_EAUTH with the reason otherwise) and
 * writes its device id (out_id) and generation; *out_verdict says what memory knows of it. */
int device_tokens_check(enum device_token_verdict *out_verdict, char out_id[40], int64_t *out_gen, const char *token,
			int64_t now, gn_err *err) GN_WUR;
/* The same verdict from the device's row (when memory cannot tell). */
int device_tokens_check_db(enum device_token_verdict *out_verdict, db_conn *c, const char *id, int64_t gen,
			   gn_err *err) GN_WUR;

/* Ends every token of the device on every replica (its generation goes up; its older-format
 * sessions are deleted) and waits, briefly, until every replica has acknowledged it; the agent
 * gets a new token by authenticating again with its enrolled key. *out is {"device_id",
 * "token_generation"}. GN_ENOTFOUND for no such device, GN_ECONFLICT for a decommissioned one. */
int device_tokens_rotate(json_t **out, db_conn *c, const struct gd_actor *who, const char *id, gn_err *err) GN_WUR;

/* Waits, at most 2 s, until every replica listening now (this one included) has acknowledged
 * that device id reached generation gen (any, when negative) and, with dead, was decommissioned:
 * so that the change holds everywhere before it is answered. */
void device_tokens_wait_heard(db_conn *c, const char *id, int64_t gen, bool dead);
/* The "gn_device_tokens" channel's callbacks (notify.h): payload "ID GENERATION STATUS". */
void device_tokens_on_notify(const char *payload);
void device_tokens_on_listening(bool up);
/* The "gn_device_tokens_ack" channel's callback: a replica has applied payload. */
void device_tokens_on_ack(const char *payload);
/* Reloads the revocation state when the listener has (re)connected since the last reload; the
 * state is trusted from then on. Returns 0 when there was nothing to do. */
int device_tokens_reload(db_conn *c, gn_err *err) GN_WUR;
/* True when a reload is wanted (the background thread's cue). */
bool device_tokens_reload_wanted(void);
/* How many devices the revocation state holds (for /metrics and tests). */
size_t device_tokens_revoked_count(void);

#endif
