/* The keys and roots of both TUF repositories (image and director): creation at first start,
 * listing, rotation of their online keys, the draft of a repository's next root for offline
 * signing, the import of a root signed offline, and re-signing roots before they expire (with
 * root keys this server holds). Domain layer; every writer takes DB_LOCK_TUF. */
#ifndef GD_TUF_KEYS_H
#define GD_TUF_KEYS_H

#include <jansson.h>

#include "actor.h"
#include "db.h"
#include "tuf_sign.h"

/* Creates each repository's keys (root keys as files in data_dir/keys) and first root if it has
 * none, and the image repository's first targets, snapshot and timestamp. Opens its own
 * transaction. */
int tuf_keys_init(db_conn *c, const struct tuf_settings *s, gn_err *err) GN_WUR;
/* Signs a new root for each repository whose root has less than half of its lifetime left, when
 * this server holds enough root keys (else it only logs a warning). Opens its own transaction. */
int tuf_keys_refresh(db_conn *c, const struct tuf_settings *s, gn_err *err) GN_WUR;
/* Lists the active keys of both repositories: [{"keyid","repo","role","public","online","active",
 * "created_at"}], root keys with their "threshold" and "online" when their file is here (new).
 * Plain reads, no transaction of its own. */
int tuf_keys_list(json_t **out, db_conn *c, const struct tuf_settings *s, gn_err *err) GN_WUR;
/* Replaces an online key: role is targets, snapshot or timestamp (the image repository's) or
 * director (the director's targets key); GN_EINVAL otherwise. With enough of that repository's
 * root keys here it publishes its new root at once, then the image repository's fresh targets,
 * snapshot and timestamp, or for the director the re-signing of every device's targets at its
 * next check-in (director_key_changed); otherwise the new key is pending until an offline-signed
 * root lists it, and the old key signs until then. *out: {"role","keyid","pending",
 * "root_version" or "next"} (new). Opens its own transaction, audited (tuf.key_rotate). */
int tuf_keys_rotate(json_t **out, db_conn *c, const struct tuf_settings *s, const struct gd_actor *who,
		    const char *role, gn_err *err) GN_WUR;
/* Returns the unsigned next root of repo ("image" or "director", else GN_EINVAL) as
 * {"signed": ..., "signatures": []}, listing pending keys in place of the active ones they
 * replace (new). Plain reads, no transaction of its own. */
int tuf_keys_root_draft(json_t **out, db_conn *c, const struct tuf_settings *s, const char *repo, gn_err *err) GN_WUR;
/* Verifies a root of repo ("image" or "director") signed offline (version = current + 1, only
 * the repository's roles, a threshold of the current and of its own root keys, online roles as
 * now or as a pending rotation has them; with offline_targets, the image repository's targets
 * role may list any keys: those not held here take its top-level targets offline, tuf_deleg.h)
 * and publishes it; a pending key it lists signs from now on. *out_version is its version. GN_EINVAL when it is
 * refused. Opens its own transaction, audited (tuf.root_import). */
int tuf_keys_root_import(int *out_version, db_conn *c, const struct tuf_settings *s, const struct gd_actor *who,
			 const char *repo, const json_t *env, bool offline_targets, gn_err *err) GN_WUR;

#endif
