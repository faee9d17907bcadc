/* The TUF image repository: keys, and root/targets/snapshot/timestamp metadata signed over
 * canonical JSON and stored byte for byte in PostgreSQL. Every writer runs inside a transaction
 * and takes one advisory lock, so versions only go up and are never signed twice. */
#ifndef GD_TUFREPO_H
#define GD_TUFREPO_H

#include <jansson.h>

#include "db.h"

/* Creates keys and the first root/targets/snapshot/timestamp if the repository is empty. */
int tufrepo_init(db_conn *c, gn_err *err) GN_WUR;
/* Publishes new targets (every model version), snapshot and timestamp. Call inside the caller's
 * transaction, after its change to model_versions. */
int tufrepo_publish_targets(db_conn *c, gn_err *err) GN_WUR;
/* Re-signs whatever has less than half its lifetime left (own transaction). */
int tufrepo_refresh(db_conn *c, gn_err *err) GN_WUR;
/* Returns the stored bytes of role's metadata at version (0 = newest) in *out (new). */
int tufrepo_get(char **out, db_conn *c, const char *repo, const char *role, int version, gn_err *err) GN_WUR;
/* Lists the keys: [{"keyid","role","public","online","created_at"}] (new). */
int tufrepo_keys_list(json_t **out, db_conn *c, gn_err *err) GN_WUR;
/* Replaces the online key of role, publishes a new root (needs root keys in DATA_DIR/keys;
 * GN_ECONFLICT otherwise) and fresh role metadata. *out: {"role","keyid","root_version"} (new). */
int tufrepo_rotate(json_t **out, db_conn *c, const char *role, gn_err *err) GN_WUR;
/* Returns the unsigned next root {"signed":…, "signatures":[]} (new). */
int tufrepo_root_draft(json_t **out, db_conn *c, gn_err *err) GN_WUR;
/* Verifies a root signed offline (version = current + 1, threshold of the current and of its own
 * root keys, same online keys) and publishes it. */
int tufrepo_root_import(db_conn *c, const json_t *env, gn_err *err) GN_WUR;

/* Returns the device's current director targets metadata (new bytes) and its version, signing a
 * new version first when the desired state changed or less than half its lifetime is left;
 * *out_fresh_until (may be NULL) is when that answer will need re-signing. */
int tufrepo_director_current(char **out_body, int *out_version, int64_t *out_fresh_until, db_conn *c,
			     const char *device_id, gn_err *err) GN_WUR;

#endif
