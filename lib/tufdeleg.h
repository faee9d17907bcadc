/* TUF 1.0 delegations (specification 5.6.7): which targets role may speak for a target path, and
 * the walk that finds a target's entry through delegated targets roles. Shared by the agent and
 * `ganglion-agent tuf-client` (which verify) and by the server (which checks what it is given to
 * serve). No I/O of its own: the caller supplies a function that fetches a role's metadata. */
#ifndef GN_TUFDELEG_H
#define GN_TUFDELEG_H

#include <jansson.h>

#include "common.h"

/* The most roles one target lookup visits, the top-level targets included; a lookup that would
 * visit more finds nothing. The TUF reference client uses the same bound. */
#define GN_TUF_MAX_DELEGATIONS 32
/* The longest delegated role name: it names a file (VERSION.ROLE.json). */
#define GN_TUF_ROLE_NAME_MAX 64

/* Checks that name may name a delegated role: 1 to GN_TUF_ROLE_NAME_MAX characters of
 * [A-Za-z0-9._-], not starting with '.', and none of the top-level role names. */
int gn_tufd_role_name_check(const char *name, gn_err *err) GN_WUR;

/* Checks the "delegations" of a targets signed part (absent is fine): "keys" an object of Ed25519
 * keys whose ids are their SHA-256, "roles" an array of roles each with a valid, distinct name,
 * key ids that name keys of "keys", a threshold between 1 and its number of distinct keys, a
 * boolean "terminating" (optional) and exactly one of "paths" (strings) and "path_hash_prefixes"
 * (lower-case hex strings). GN_EINVAL with the first problem. */
int gn_tufd_delegations_check(const json_t *targets_signed, gn_err *err) GN_WUR;

/* Whether the delegated role (an element of "roles") is trusted for path: a "paths" pattern
 * matches it (shell-style wildcards in which '*', '?' and '[...]' never match '/', as the
 * specification says), or the SHA-256 hex of path starts with one of its "path_hash_prefixes". */
bool gn_tufd_role_matches(const json_t *role, const char *path);

/* Fetches the metadata of delegated role `role` at version (the file VERSION.ROLE.json), at most
 * max bytes, into *out (new, malloc'd) and *out_len. */
typedef int (*gn_tufd_fetch_fn)(void *ctx, char **out, size_t *out_len, const char *role, long long version, size_t max,
				gn_err *err);
/* Reads the trusted copy of role's metadata into *out (new); GN_ENOTFOUND when there is none. */
typedef int (*gn_tufd_trusted_fn)(void *ctx, json_t **out, const char *role, gn_err *err);

/* One lookup context. Fill the first fields; `loaded` starts NULL and collects, by role name, the
 * delegated roles' envelopes that were fetched and verified (new; free with gn_tufd_walk_cleanup):
 * the caller stores them as the trusted copies once it accepts the result. A second lookup with
 * the same context reuses them. */
struct gn_tufd_walk {
	const json_t *targets;  /* the verified top-level targets envelope (borrowed) */
	const json_t *snapshot; /* the verified snapshot envelope that lists each ROLE.json (borrowed) */
	int64_t now;            /* the time expiry is checked against */
	gn_tufd_fetch_fn fetch;
	gn_tufd_trusted_fn trusted; /* NULL: no trusted copies to check rollback against */
	void *ctx;                  /* passed to fetch and trusted */
	json_t *loaded;
};

/* Finds the entry for target path (TUF 5.6.7): a pre-order depth-first search from the top-level
 * targets over the delegations whose paths match, each role visited once and at most
 * GN_TUF_MAX_DELEGATIONS of them, a terminating delegation ending the search when the target is
 * not found below it. Each delegated role is fetched at the version the snapshot lists and must
 * match the snapshot's length and hashes, carry a threshold of valid signatures by the keys its
 * delegating role names, not be older than (or differ at the same version from) its trusted copy,
 * and not be expired at now. *out is borrowed from w->targets or w->loaded. GN_ENOTFOUND when no
 * role trusted for path lists it; GN_EAUTH or GN_EINVAL when a role on the way fails its checks
 * (nothing it says is used). */
int gn_tufd_find_target(const json_t **out, struct gn_tufd_walk *w, const char *path, gn_err *err) GN_WUR;

/* Releases what a walk loaded. */
void gn_tufd_walk_cleanup(struct gn_tufd_walk *w);

#endif
