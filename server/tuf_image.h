/* The TUF image repository: targets listing every released model file, with snapshot and
 * timestamp over it, signed by online keys and re-signed before they expire. Its keys and roots
 * are tuf_keys'. Domain layer; every writer takes DB_LOCK_TUF, so versions only go up and are
 * never signed twice. */
#ifndef GD_TUF_IMAGE_H
#define GD_TUF_IMAGE_H

#include "db.h"
#include "tuf_sign.h"

/* Publishes new targets (every model version), snapshot and timestamp. Runs inside the caller's
 * transaction (after its change to model_versions) and takes DB_LOCK_TUF until that ends. With the
 * targets key offline (tuf_deleg.h) it signs nothing: CI releases a version by signing its role. */
int tuf_image_publish_targets(db_conn *c, const struct tuf_settings *s, gn_err *err) GN_WUR;
/* Signs a new snapshot (over the newest targets and delegated roles) and timestamp. Inside the
 * caller's transaction, which holds DB_LOCK_TUF. */
int tuf_image_publish_snapshot(db_conn *c, const struct tuf_settings *s, gn_err *err) GN_WUR;
/* Re-signs the first of targets, snapshot and timestamp found with less than half of its
 * lifetime left, and those below it. Opens its own transaction. */
int tuf_image_refresh(db_conn *c, const struct tuf_settings *s, gn_err *err) GN_WUR;
/* Returns the stored bytes of role's metadata at version (0 = the newest) in *out (new);
 * GN_ENOTFOUND when there is none. A plain read (no transaction of its own). */
int tuf_image_get(char **out, db_conn *c, const char *role, int version, gn_err *err) GN_WUR;

#endif
