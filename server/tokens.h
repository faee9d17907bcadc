/* API tokens for people and CI: scopes, expiry, revocation. Domain layer. */
#ifndef GD_TOKENS_H
#define GD_TOKENS_H

#include <jansson.h>

#include "actor.h"
#include "db.h"
#include "json.h"

/* The fields of a create request ({"name", "scopes", "expires_in"}), for gn_json_check. */
extern const gn_json_field tokens_create_fields[];
extern const size_t tokens_create_nfields;
/* Pages over tokens: ($1 cursor uuid or NULL, $2 limit) -> (JSON text, id). */
extern const db_stmt tokens_list_stmt;

/* Creates a token from a checked request object; *out is the token's JSON with the secret in
 * "token", shown once (new). GN_EINVAL for a bad name, scope or expiry; GN_ECONFLICT when a live
 * token (neither revoked nor expired) has that name. Own transaction, audited. */
int tokens_create(json_t **out, db_conn *c, const struct gd_actor *who, const json_t *req, gn_err *err) GN_WUR;
/* Reads token id as GET /v1/tokens lists it (never the secret) into *out (JSON text, new);
 * GN_ENOTFOUND when there is none. A plain read. */
int tokens_get(char **out, db_conn *c, const char *id, gn_err *err) GN_WUR;
/* Revokes token id (idempotent); GN_ENOTFOUND when there is none. Own transaction, audited. */
int tokens_revoke(db_conn *c, const struct gd_actor *who, const char *id, gn_err *err) GN_WUR;

#endif
