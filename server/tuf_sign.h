/* Signing and storing TUF metadata, shared by the image repository (tuf_image), the keys and roots
 * of both repositories (tuf_keys) and the per-device director (director). Metadata is signed over
 * canonical JSON and stored byte for byte in tuf_metadata; online private keys are in tuf_keys,
 * root private keys in files under DATA_DIR/keys. Domain layer: nothing here opens a transaction;
 * a writer runs inside its caller's, which holds the lock that orders its versions (DB_LOCK_TUF,
 * or a device's director lock). */
#ifndef GD_TUF_SIGN_H
#define GD_TUF_SIGN_H

#include <jansson.h>

#include "config.h"
#include "crypto.h"
#include "db.h"

/* What the TUF modules need from the configuration; their caller fills it (they read no global). */
struct tuf_settings {
	const char *data_dir;   /* root private keys live in data_dir/keys (borrowed) */
	int root_keys;          /* root keys a new repository gets */
	int root_threshold;     /* signatures a new repository's root needs */
	int64_t root_expiry;    /* lifetimes of new metadata, in seconds */
	int64_t targets_expiry; /* the image repository's targets */
	int64_t snapshot_expiry;
	int64_t timestamp_expiry;
	int64_t director_expiry; /* a device's director targets */
};

/* Fills out from the configuration cfg (borrowed: out->data_dir points into it). */
void tuf_sign_settings(struct tuf_settings *out, const struct gd_config *cfg);

/* The newest stored metadata of one role. */
struct tuf_latest {
	int version; /* 0 when there is none */
	json_t *env; /* the envelope {"signed", "signatures"} */
	char *body;  /* the stored bytes */
	int64_t expires, created;
};

/* Returns the lifetime in seconds of new image or root metadata of role ("root", "targets",
 * "snapshot" or "timestamp"). */
int64_t tuf_sign_lifetime(const struct tuf_settings *s, const char *role);
/* True when metadata signed at created and expiring at expires has less than half of its
 * lifetime left at now: time to sign it anew. */
bool tuf_sign_due(int64_t created, int64_t expires, int64_t now);

/* Reads the newest metadata of repo/role into *out (version 0 when none); release it with
 * tuf_sign_latest_cleanup, also after a failure. No transaction of its own. */
int tuf_sign_latest(struct tuf_latest *out, db_conn *c, const char *repo, const char *role, gn_err *err) GN_WUR;
void tuf_sign_latest_cleanup(struct tuf_latest *l);
/* Returns the threshold of the root role that the root metadata l names. */
json_int_t tuf_sign_root_threshold(const struct tuf_latest *l);
/* Returns the stored bytes of repo/role at version (0 = the newest) in *out (new); GN_ENOTFOUND
 * when there is no such metadata. No transaction of its own. */
int tuf_sign_get(char **out, db_conn *c, const char *repo, const char *role, int version, gn_err *err) GN_WUR;

/* Returns the common fields of a signed part: _type, spec_version, version, expires (new). */
json_t *tuf_sign_header(const char *type, int version, int64_t expires);
/* Stores body, signed metadata, as repo/role/version expiring at expires. Runs inside the caller's
 * transaction. */
int tuf_sign_put(db_conn *c, const char *repo, const char *role, int version, const char *body, int64_t expires,
		 gn_err *err) GN_WUR;
/* Signs signed_part with keys and stores it as repo/role/version expiring at expires;
 * *out_body (may be NULL) gets the stored bytes (new). Runs inside the caller's transaction. */
int tuf_sign_store(char **out_body, db_conn *c, const char *repo, const char *role, int version,
		   const json_t *signed_part, gn_ed25519_key *const *keys, size_t nkeys, int64_t expires,
		   gn_err *err) GN_WUR;
/* Loads the active online private key of repo/role (new). */
int tuf_sign_online_key(gn_ed25519_key **out, db_conn *c, const char *repo, const char *role, gn_err *err) GN_WUR;
/* tuf_sign_store with the role's online key. Runs inside the caller's transaction. */
int tuf_sign_online(char **out_body, db_conn *c, const char *repo, const char *role, int version,
		    const json_t *signed_part, int64_t expires, gn_err *err) GN_WUR;

#endif
