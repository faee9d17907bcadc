/* The image repository with its top-level targets offline (TUF delegations): the operator signs
 * the top-level targets, which delegates model paths to roles whose keys CI holds; CI signs each
 * release of a delegated role; the server verifies and serves what they signed and signs only
 * snapshot and timestamp. The mode is on when no active image targets key has its private key
 * here (a root whose targets role lists offline keys, imported with tuf_keys_root_import).
 * Domain layer; every writer takes DB_LOCK_TUF. */
#ifndef GD_TUF_DELEG_H
#define GD_TUF_DELEG_H

#include <jansson.h>

#include "actor.h"
#include "db.h"
#include "tuf_sign.h"

/* *out: true when the image repository's targets key is offline (delegated mode). A plain read. */
int tuf_deleg_offline(bool *out, db_conn *c, gn_err *err) GN_WUR;

/* Verifies top-level targets signed offline (a threshold of the current root's targets keys,
 * version = current + 1, not expired, valid delegations) and publishes it with a new snapshot and
 * timestamp. GN_EINVAL when refused (also in server-held mode). *out_version: its version. Opens
 * its own transaction, audited (tuf.targets_import). */
int tuf_deleg_targets_import(int *out_version, db_conn *c, const struct tuf_settings *s, const struct gd_actor *who,
			     const json_t *env, gn_err *err) GN_WUR;

/* Returns in *out (new) what CI signs to release model@version: {"role", "path", "keyids",
 * "threshold", "current" (the role's metadata now, signed, or null), "signed" (the next version:
 * the current targets plus this version's entry)}. The role is the first delegation of the top-level
 * targets whose paths cover the version's target path. GN_ENOTFOUND for no such version,
 * GN_EINVAL in server-held mode or when no delegation covers it. Plain reads. */
int tuf_deleg_release_draft(json_t **out, db_conn *c, const struct tuf_settings *s, const char *model,
			    const char *version, gn_err *err) GN_WUR;

/* Verifies a delegated role's metadata signed by CI (a role the top-level targets delegate to,
 * version = current + 1, a threshold of the delegation's keys, every target within its paths, not
 * expired) and publishes it with a new snapshot and timestamp. GN_ECONFLICT when another version
 * was published first (get a new draft), GN_ENOTFOUND for a role not delegated, GN_EINVAL when
 * refused. Opens its own transaction, audited (tuf.role_publish). */
int tuf_deleg_role_publish(int *out_version, db_conn *c, const struct tuf_settings *s, const struct gd_actor *who,
			   const char *role, const json_t *env, gn_err *err) GN_WUR;

#endif
