/* Signed device tokens: a device's bearer token carries its device id, token generation and
 * expiry, signed with HMAC-SHA256 (cut to 128 bits) under a key every replica shares through PostgreSQL
 * (device_token_keys, migrations/0020_device_token_keys.sql), so a check-in is authenticated in
 * memory. Tokens name the key that signed them; a rotation makes a new key sign while the previous
 * ones still verify what they signed until it expires, or are retired at once.
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

#define DEVICE_TOKEN_PREFIX "gnd_v3."    /* gnd_v3.KEY.DEVICE.GENERATION.EXPIRY.MAC */
#define DEVICE_TOKEN_PREFIX_V2 "gnd_v2." /* gnd_v2.DEVICE.GENERATION.EXPIRY.MAC, signed by key 1 */
/* The key that signed the tokens without a key id; while it signs, tokens keep that older form,
 * so that replicas of the previous release accept them during an upgrade. */
#define DEVICE_TOKEN_FIRST_KEY 1

/* Loads the shared keys, creating the first one when no replica has yet. Run once at start-up. */
int device_tokens_init(db_conn *c, gn_err *err) GN_WUR;
/* Knows key (32 bytes) as key number id, the signing key when it is the newest: what
 * device_tokens_init does with the shared ones (and tests with their own). */
int device_tokens_use_key(int id, const unsigned char key[32], gn_err *err) GN_WUR;
/* Forgets the keys and the revocation state. */
void device_tokens_cleanup(void);
/* Writes a new token (*out, new) for device_id (a UUID) of generation gen, valid until exp (Unix
 * seconds), signed with the newest key; with c (may be NULL), first reads the keys again when a
 * newer one was announced. GN_EUNAVAIL when no key can sign. */
int device_tokens_mint(char **out, db_conn *c, const char *device_id, int64_t gen, int64_t exp, gn_err *err) GN_WUR;
/* True when token has a signed format (else it is an older, database-backed token). */
bool device_tokens_is_signed(const char *token);

enum device_token_verdict {
	DEVICE_TOKEN_OK,
	DEVICE_TOKEN_REVOKED,     /* of a generation below the device's */
	DEVICE_TOKEN_DEAD,        /* the device was decommissioned */
	DEVICE_TOKEN_KEY_RETIRED, /* its key was retired, or is past its verify_until */
	DEVICE_TOKEN_UNKNOWN,     /* memory cannot tell: ask the database (device_tokens_check_db) */
	DEVICE_TOKEN_NO_KEY,      /* signed with a key this replica has not loaded: the database may have it */
};
/* What a signed token says once its signature is checked. */
struct device_token {
	char device_id[40];
	int64_t gen, exp;
	int key_id; /* DEVICE_TOKEN_FIRST_KEY for a gnd_v2 token */
};
/* Checks a signed token's signature, key and expiry at now in memory (GN_EAUTH with the reason
 * otherwise) and fills *out; *out_verdict says what memory knows of it (with DEVICE_TOKEN_NO_KEY,
 * *out is not filled). */
int device_tokens_check(enum device_token_verdict *out_verdict, struct device_token *out, const char *token,
			int64_t now, gn_err *err) GN_WUR;
/* The same check, deciding what memory cannot from the database: its keys, the device's row and
 * the key's; *out_verdict is never DEVICE_TOKEN_UNKNOWN nor DEVICE_TOKEN_NO_KEY. */
int device_tokens_check_db(enum device_token_verdict *out_verdict, struct device_token *out, db_conn *c,
			   const char *token, int64_t now, gn_err *err) GN_WUR;

/* Makes a new key the signing key on every replica, in a transaction of its own, audited as
 * device_token_key.rotate, and waits, briefly, until every replica has heard it. The previous
 * keys verify the tokens they signed for overlap seconds more (the longest a token lives), or
 * with retire_previous are retired at once: every token they signed is refused, and agents
 * authenticate again with their enrolled keys. *out is {"key_id", "keys": [as device_tokens_keys]}. */
int device_tokens_rotate_key(json_t **out, db_conn *c, const struct gd_actor *who, bool retire_previous,
			     int64_t overlap, gn_err *err) GN_WUR;
/* The keys, newest first, never their secrets: *out is [{"id", "state" (signing, verifying,
 * expired or retired), "created_at", "superseded_at", "verify_until", "retired_at"}]. A plain read. */
int device_tokens_keys(json_t **out, db_conn *c, gn_err *err) GN_WUR;
/* Retires the keys past their verify_until, erasing their secrets (a periodic job; they already
 * verify nothing). One statement. */
int device_tokens_gc(db_conn *c, gn_err *err) GN_WUR;
/* The "gn_device_token_keys" channel's callbacks: payload "ID STATE VERIFY_UNTIL". */
void device_tokens_on_key_notify(const char *payload);
void device_tokens_on_key_ack(const char *payload);

/* Ends every token of the device on every replica (its generation goes up; its older-format
 * sessions are deleted) and waits, briefly, until every replica has acknowledged it; the agent
 * gets a new token by authenticating again with its enrolled key. *out is {"device_id",
 * "token_generation"}. GN_ENOTFOUND for no such device, GN_ECONFLICT for a decommissioned one. */
int device_tokens_rotate(json_t **out, db_conn *c, const struct gd_actor *who, const char *id, gn_err *err) GN_WUR;

/* Waits, at most 2 s, until every replica listening now (this one included) has acknowledged
 * that device id reached generation gen (any, when negative) and, with dead, was decommissioned:
 * so that the change holds everywhere before it is answered. */
void device_tokens_wait_heard(db_conn *c, const char *id, int64_t gen, bool dead);
/* The "gn_device_tokens" channel's callbacks (notify.h): payload "ID GENERATION STATUS". Listening
 * (re)started also reads the keys again. */
void device_tokens_on_notify(const char *payload);
void device_tokens_on_listening(bool up);
/* The "gn_device_tokens_ack" channel's callback: a replica has applied payload. */
void device_tokens_on_ack(const char *payload);
/* Reloads the revocation state when the listener has (re)connected since the last reload (the
 * state is trusted from then on), and the keys when a new one was announced. Returns 0 when there
 * was nothing to do. */
int device_tokens_reload(db_conn *c, gn_err *err) GN_WUR;
/* True when a reload is wanted (the background thread's cue). */
bool device_tokens_reload_wanted(void);
/* How many devices the revocation state holds (for /metrics and tests). */
size_t device_tokens_revoked_count(void);

#endif
