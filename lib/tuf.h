/* The Update Framework (TUF 1.0) building blocks shared by the server (which signs) and the agent
 * (which verifies): Ed25519 key objects and key ids, signing and threshold verification of
 * metadata envelopes {"signed": ..., "signatures": [{"keyid","sig"}]} over canonical JSON.
 * A function that returns 0 leaves err as it was: keys and signatures skipped on the way are no
 * failure and leave no message. */
#ifndef GN_TUF_H
#define GN_TUF_H

#include <jansson.h>

#include "common.h"
#include "crypto.h"

#define GN_TUF_SPEC_VERSION "1.0.0"
/* The most signatures one metadata file may carry. A role has a handful of keys; more signatures
 * than this are refused before any is verified (docs/DESIGN.md, "What the agent checks, and its
 * limits"). */
#define GN_TUF_MAX_SIGNATURES 256

/* Returns the TUF key object {"keytype":"ed25519","scheme":"ed25519","keyval":{"public":hex}} (new). */
json_t *gn_tuf_key_json(const unsigned char pub[GN_ED25519_PUB_LEN]);
/* Writes the key id (SHA-256 hex of the canonical JSON of the key object) into out. */
int gn_tuf_keyid(char out[GN_SHA256_HEX_LEN + 1], const json_t *key, gn_err *err) GN_WUR;
/* Returns a new envelope {"signed": signed, "signatures": [...]} signed by each of keys (signed's
 * reference is not stolen). */
int gn_tuf_sign(json_t **out, const json_t *signed_part, gn_ed25519_key *const *keys, size_t nkeys, gn_err *err) GN_WUR;
/* Decodes into out the Ed25519 public key that keyid names in keys (the "keys" object of a root).
 * GN_EINVAL when keys has no such id, the key is not an ed25519 key with a 32-byte hex public
 * value, or keyid is not the SHA-256 of the key's canonical JSON (a key that is not what it
 * claims). */
int gn_tuf_key_public(unsigned char out[GN_ED25519_PUB_LEN], const json_t *keys, const char *keyid, gn_err *err) GN_WUR;
/* Counts the distinct key ids among role_keyids (a JSON array) whose signature over the canonical
 * JSON of env.signed verifies with the key in keys (a "keys" object of a root). Only the first
 * signature that names a key id is verified for it: a key counts once, and a flood of signatures
 * under one key id costs one verification. A bad signature by one key does not spoil another's.
 * GN_EINVAL when env carries more than GN_TUF_MAX_SIGNATURES signatures (none is verified). */
int gn_tuf_count_valid(size_t *out, const json_t *env, const json_t *keys, const json_t *role_keyids,
		       gn_err *err) GN_WUR;
/* Checks that env is signed by at least the role's threshold in root's signed part (root_signed:
 * the "signed" object of a root), verifying no more signatures than it needs to reach it; GN_EAUTH
 * if not, GN_EINVAL for a role that is missing or has no threshold of at least 1, or for too many
 * signatures (gn_tuf_count_valid). */
int gn_tuf_verify_role(const json_t *env, const json_t *root_signed, const char *role, gn_err *err) GN_WUR;
/* Formats t as the UTC time TUF uses ("2026-11-27T14:23:02Z") into out (21 bytes). */
void gn_tuf_time(char out[21], int64_t t);
/* Parses such a time; GN_EINVAL for anything else. */
int gn_tuf_time_parse(int64_t *out, const char *s) GN_WUR;

#endif
