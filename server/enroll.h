/* Enrollment: bootstrap tokens bound to labels (expiry, use quota), and a device trading one for
 * an identity bound to its Ed25519 public key. Domain layer. */
#ifndef GD_ENROLL_H
#define GD_ENROLL_H

#include <jansson.h>

#include "actor.h"
#include "db.h"
#include "json.h"

/* Request fields of a token create ({"name", "labels", "expires_in", "max_uses"}) and of an
 * enrollment ({"token", "public_key", "name", "facts"}), for gn_json_check. */
extern const gn_json_field enroll_tokens_create_fields[];
extern const size_t enroll_tokens_create_nfields;
extern const gn_json_field enroll_device_fields[];
extern const size_t enroll_device_nfields;
/* Pages over enrollment tokens: ($1 cursor uuid or NULL, $2 limit) -> (JSON text, id). */
extern const db_stmt enroll_tokens_list_stmt;

/* Creates an enrollment token from a checked request; *out is its JSON with the secret in "token"
 * (new). GN_EINVAL for a bad field. Own transaction, audited. */
int enroll_tokens_create(json_t **out, db_conn *c, const struct gd_actor *who, const json_t *req, gn_err *err) GN_WUR;
/* Revokes an enrollment token; GN_ENOTFOUND when there is none. Own transaction, audited. */
int enroll_tokens_revoke(db_conn *c, const struct gd_actor *who, const char *id, gn_err *err) GN_WUR;
/* Enrolls a device from a checked request: takes one use of the token and creates the device in
 * one statement (audited as the token); *out is {"device_id", "name", "labels"} (new). GN_EAUTH
 * naming why the token was refused, GN_ECONFLICT for a key already enrolled, GN_EINVAL for bad
 * input. request_id goes into the audit row. One statement, no transaction of its own needed. */
int enroll_device(json_t **out, db_conn *c, const char *request_id, const json_t *req, gn_err *err) GN_WUR;

#endif
