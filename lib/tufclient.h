/* A TUF 1.0 client's checks, without I/O: the agent fetches bytes, this decides whether to trust
 * them. Each function takes what the client already trusts and the new metadata, and answers 0
 * (trust it) or GN_EAUTH/GN_EINVAL with the reason. Testable on its own. */
#ifndef GN_TUFCLIENT_H
#define GN_TUFCLIENT_H

#include <jansson.h>

#include "common.h"

/* Limits (docs/DESIGN.md, "What the agent checks, and its limits"). Metadata larger than its
 * role's cap is refused before it is parsed: the agent stops reading at the cap (or at the length
 * the timestamp or snapshot lists, when smaller). GN_TUF_MAX_METADATA is the cap of any metadata,
 * and of targets. */
#define GN_TUF_MAX_METADATA (32 * 1024 * 1024)
#define GN_TUF_MAX_ROOT_BYTES (512 * 1024)
#define GN_TUF_MAX_TIMESTAMP_BYTES (16 * 1024)
#define GN_TUF_MAX_SNAPSHOT_BYTES (2 * 1024 * 1024)
#define GN_TUF_MAX_TARGETS_BYTES GN_TUF_MAX_METADATA
/* The most root versions one refresh follows; a chain that goes on is an error, not trusted. The
 * TUF reference client uses the same bound. */
#define GN_TUF_MAX_ROOT_ROTATIONS 256

/* Parses at most GN_TUF_MAX_METADATA bytes of metadata into an envelope (new reference):
 * {"signed": {...}, "signatures": [...]} with a string "_type" inside "signed". */
int gn_tufc_parse(json_t **out, const char *bytes, size_t len, gn_err *err) GN_WUR;

/* Checks that next is the root that follows trusted (both envelopes): _type root, version exactly
 * trusted+1, signed by a threshold of trusted's root keys and of its own, and usable: it has the
 * roles root, targets and every role trusted has, each role's threshold is between 1 and the
 * number of its distinct keys, and every key id a role lists names an Ed25519 key whose id is its
 * SHA-256 (a root that could never verify its own roles is refused before it is trusted). Expiry
 * is not checked here (a chain may pass through expired roots); check the final one with
 * gn_tufc_check_fresh. GN_EAUTH or GN_EINVAL with the reason. */
int gn_tufc_root_update(const json_t *trusted, const json_t *next, gn_err *err) GN_WUR;

/* Checks env as `role` metadata under root (an envelope): _type, signatures to the role's
 * threshold, not expired at now, and not older than trusted (an envelope or NULL): a lower version
 * is a rollback, and the same version with different signed content is refused too. */
int gn_tufc_check_role(const json_t *root, const char *role, const json_t *env, const json_t *trusted, int64_t now,
		       gn_err *err) GN_WUR;

/* Checks that env's "expires" is after now. */
int gn_tufc_check_fresh(const json_t *env, int64_t now, gn_err *err) GN_WUR;

/* Checks metadata against the entry that lists it: file ("snapshot.json" in a timestamp,
 * "targets.json" in a snapshot) in listing's "meta", with env (parsed from bytes) having the
 * version it lists, and bytes the length and every hash of a supported algorithm (sha256, sha512)
 * it lists. Length and hashes are optional in TUF; hashes that list no supported algorithm are
 * refused. GN_EINVAL when listing lists no such file, GN_EAUTH when something differs. */
int gn_tufc_meta_matches(const json_t *listing, const char *file, const json_t *env, const char *bytes, size_t len,
			 gn_err *err) GN_WUR;

/* gn_tufc_meta_matches for the snapshot listed in a timestamp. */
int gn_tufc_snapshot_matches(const json_t *timestamp, const json_t *snapshot, const char *bytes, size_t len,
			     gn_err *err) GN_WUR;

/* Checks that targets has the version the snapshot lists for targets.json (gn_tufc_meta_matches
 * also checks the bytes). */
int gn_tufc_targets_matches(const json_t *snapshot, const json_t *targets, gn_err *err) GN_WUR;

/* Returns the length that listing ("meta" of a timestamp or snapshot) gives for file when it is
 * smaller than cap, else cap: the most bytes worth reading for that file. */
size_t gn_tufc_fetch_limit(const json_t *listing, const char *file, size_t cap);

/* Returns the target entry at path in a targets envelope, or NULL. Borrowed. */
const json_t *gn_tufc_target(const json_t *targets, const char *path);

/* Checks a director target against the image repository's targets: the image must list the same
 * path with the same length and SHA-256 (the director may only choose among released bytes), a
 * hash of a supported algorithm (sha256, sha512), and no supported hash that differs from one the
 * director lists. */
int gn_tufc_director_target_ok(const json_t *image_targets, const char *path, const json_t *director_entry,
			       gn_err *err) GN_WUR;
/* gn_tufc_director_target_ok against the image repository's entry for path (NULL: it signed none),
 * as a delegation walk found it (lib/tufdeleg.h). */
int gn_tufc_director_entry_ok(const json_t *image_entry, const char *path, const json_t *director_entry,
			      gn_err *err) GN_WUR;

/* Checks a target file's bytes against its signed entry ({"length", "hashes"}): the length, and
 * every listed hash of a supported algorithm (sha256, sha512); an entry that lists none is
 * refused. path names the target in messages. GN_EAUTH with the reason. */
int gn_tufc_target_bytes_ok(const json_t *entry, const char *path, const void *bytes, size_t len, gn_err *err) GN_WUR;

/* The clock the client trusts: never earlier than the newest signed time it has seen. */
int64_t gn_tufc_clock(int64_t system_now, int64_t newest_seen);

#endif
