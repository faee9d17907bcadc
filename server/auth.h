/* Bearer-token authentication (API tokens and device tokens) into actors, scopes, and the first
 * admin token. Domain layer. */
#ifndef GD_AUTH_H
#define GD_AUTH_H

#include "crypto.h"
#include "db.h"
#include "actor.h"

#define AUTH_API_PREFIX "gna_"
#define AUTH_DEVICE_PREFIX "gnd_"
#define AUTH_ENROLL_PREFIX "gne_"

/* Writes the stored form of a token (SHA-256 hex) into out. Tokens are 256-bit random, so a plain
 * hash is enough: nothing to brute-force, and lookups stay one index probe. */
void auth_hash_token(char out[GN_SHA256_HEX_LEN + 1], const char *token);
/* Parses "SCOPE" names into GD_SCOPE_* bits; GN_EINVAL for an unknown name. */
int auth_scope_parse(unsigned *out, const char *name) GN_WUR;
/* Authenticates an Authorization header value into the actor *out (its kind, id, name and scopes;
 * request_id is left as it is): GN_EAUTH (401) when missing, unknown, expired or revoked. */
int auth_authenticate(struct gd_actor *out, db_conn *c, const char *header, gn_err *err) GN_WUR;
/* The same without the database where memory can tell (a signed device token: its signature,
 * expiry and revocation state, device_tokens.h): *out_done true when it has decided (0 or the
 * error), false when auth_authenticate must. */
int auth_authenticate_memory(struct gd_actor *out, bool *out_done, const char *header, gn_err *err) GN_WUR;
/* Checks that the actor may do what needs `scope` (any one of its bits); GN_EFORBIDDEN (403) when not. */
int auth_allows(const struct gd_actor *who, unsigned scope, gn_err *err) GN_WUR;
/* Creates an admin token and writes it to DATA_DIR/admin.token (0600) if the database has no
 * usable admin token; run once at start-up, under an advisory lock shared by all replicas. */
int auth_bootstrap_admin(db_conn *c, const char *data_dir, gn_err *err) GN_WUR;

#endif
