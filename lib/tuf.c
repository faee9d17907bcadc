/* TUF key ids, signing and threshold verification over canonical JSON. */
#include "tuf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"

json_t *gn_tuf_key_json(const unsigned char pub[GN_ED25519_PUB_LEN])
{
	char hex[2 * GN_ED25519_PUB_LEN + 1];
	gn_hex_encode(hex, pub, GN_ED25519_PUB_LEN);
	return json_pack("{s:s,s:s,s:{s:s}}", "keytype", "ed25519", "scheme", "ed25519", "keyval", "public", hex);
}

int gn_tuf_keyid(char out[GN_SHA256_HEX_LEN + 1], const json_t *key, gn_err *err)
{
	char *c = NULL;
	size_t n;
	int rc = gn_json_canonical(&c, &n, key, err);
	if (rc)
		return rc;
	gn_sha256_hex(out, c, n);
	free(c);
	return 0;
}

int gn_tuf_sign(json_t **out, const json_t *signed_part, gn_ed25519_key *const *keys, size_t nkeys, gn_err *err)
{
	char *c = NULL;
	size_t n;
	int rc = gn_json_canonical(&c, &n, signed_part, err);
	if (rc)
		return rc;
	json_t *sigs = json_array();
	for (size_t i = 0; i < nkeys; i++) {
		unsigned char pub[GN_ED25519_PUB_LEN], sig[GN_ED25519_SIG_LEN];
		char keyid[GN_SHA256_HEX_LEN + 1], sighex[2 * GN_ED25519_SIG_LEN + 1];
		gn_ed25519_public(pub, keys[i]);
		json_t *kj = gn_tuf_key_json(pub);
		rc = gn_tuf_keyid(keyid, kj, err);
		json_decref(kj);
		if (!rc)
			rc = gn_ed25519_sign(sig, keys[i], c, n, err);
		if (rc) {
			json_decref(sigs);
			free(c);
			return rc;
		}
		gn_hex_encode(sighex, sig, sizeof(sig));
		json_array_append_new(sigs, json_pack("{s:s,s:s}", "keyid", keyid, "sig", sighex));
	}
	free(c);
	*out = json_pack("{s:O,s:o}", "signed", signed_part, "signatures", sigs);
	return 0;
}

int gn_tuf_key_public(unsigned char out[GN_ED25519_PUB_LEN], const json_t *keys, const char *keyid, gn_err *err)
{
	const json_t *key = keyid ? json_object_get(keys, keyid) : NULL;
	const char *type = json_string_value(json_object_get(key, "keytype"));
	const char *pubhex = json_string_value(json_object_get(json_object_get(key, "keyval"), "public"));
	char check[GN_SHA256_HEX_LEN + 1];
	gn_err why;
	if (!key)
		return gn_err_set(err, GN_EINVAL, "key %.16s... is not defined", keyid ? keyid : "(none)");
	if (!type || strcmp(type, "ed25519") != 0 || !pubhex || gn_hex_decode(out, GN_ED25519_PUB_LEN, pubhex))
		return gn_err_set(err, GN_EINVAL, "key %.16s... is not an Ed25519 key with a 32-byte public value",
				  keyid);
	if (gn_tuf_keyid(check, key, &why) || strcmp(check, keyid) != 0)
		return gn_err_set(err, GN_EINVAL, "key id %.16s... is not the SHA-256 of its key", keyid);
	return 0;
}

/* Returns the first signature in sigs that names keyid, or NULL. */
static const json_t *first_signature(const json_t *sigs, const char *keyid)
{
	size_t j;
	json_t *s;
	json_array_foreach(sigs, j, s) {
		const char *sid = json_string_value(json_object_get(s, "keyid"));
		if (sid && strcmp(sid, keyid) == 0)
			return s;
	}
	return NULL;
}

/* Whether the signature object s is a valid signature of msg by pub. */
static bool signature_ok(const unsigned char pub[GN_ED25519_PUB_LEN], const char *msg, size_t n, const json_t *s)
{
	const char *sighex = json_string_value(json_object_get(s, "sig"));
	unsigned char sig[GN_ED25519_SIG_LEN];
	gn_err ignore;
	return sighex && gn_hex_decode(sig, sizeof(sig), sighex) == 0 &&
	       gn_ed25519_verify(pub, msg, n, sig, &ignore) == 0;
}

/* Whether role_keyids lists the key at index i earlier too (a key listed twice counts once). */
static bool listed_before(const json_t *role_keyids, size_t i)
{
	for (size_t k = 0; k < i; k++)
		if (json_equal(json_array_get(role_keyids, k), json_array_get(role_keyids, i)))
			return true;
	return false;
}

/* Checks env's shape, and that it carries no more signatures than any role may need. */
static int check_envelope(const json_t *env, gn_err *err)
{
	const json_t *sigs = json_object_get(env, "signatures");
	const char *type = json_string_value(json_object_get(json_object_get(env, "signed"), "_type"));
	if (!json_is_object(json_object_get(env, "signed")) || !json_is_array(sigs))
		return gn_err_set(err, GN_EINVAL, "metadata must be {\"signed\": {...}, \"signatures\": [...]}");
	if (json_array_size(sigs) > GN_TUF_MAX_SIGNATURES)
		return gn_err_set(err, GN_EINVAL, "%s metadata carries %zu signatures, more than the %d allowed",
				  type ? type : "the", json_array_size(sigs), GN_TUF_MAX_SIGNATURES);
	return 0;
}

/* gn_tuf_count_valid, stopping once `enough` keys have verified. */
static int count_valid_upto(size_t *out, const json_t *env, const json_t *keys, const json_t *role_keyids,
			    size_t enough, gn_err *err)
{
	char *c = NULL;
	size_t n, count = 0, i;
	json_t *kid;
	const json_t *sigs = json_object_get(env, "signatures");
	*out = 0;
	int rc = check_envelope(env, err);
	if (rc)
		return rc;
	if ((rc = gn_json_canonical(&c, &n, json_object_get(env, "signed"), err)))
		return rc;
	json_array_foreach(role_keyids, i, kid) {
		const char *id = json_string_value(kid);
		unsigned char pub[GN_ED25519_PUB_LEN];
		gn_err skipped; /* a key we skip is no failure of the count: err stays as it was */
		if (count >= enough)
			break;
		if (!id || listed_before(role_keyids, i) || gn_tuf_key_public(pub, keys, id, &skipped))
			continue;
		const json_t *s = first_signature(sigs, id);
		if (s && signature_ok(pub, c, n, s))
			count++;
	}
	free(c);
	*out = count;
	return 0;
}

int gn_tuf_count_valid(size_t *out, const json_t *env, const json_t *keys, const json_t *role_keyids, gn_err *err)
{
	return count_valid_upto(out, env, keys, role_keyids, SIZE_MAX, err);
}

int gn_tuf_verify_role(const json_t *env, const json_t *root_signed, const char *role, gn_err *err)
{
	const json_t *r = json_object_get(json_object_get(root_signed, "roles"), role);
	const json_t *keyids = json_object_get(r, "keyids");
	json_int_t threshold = json_integer_value(json_object_get(r, "threshold"));
	size_t valid;
	if (!json_is_array(keyids) || threshold < 1)
		return gn_err_set(err, GN_EINVAL, "root has no usable '%s' role", role);
	int rc = count_valid_upto(&valid, env, json_object_get(root_signed, "keys"), keyids, (size_t)threshold, err);
	if (rc)
		return rc;
	if ((json_int_t)valid < threshold)
		return gn_err_set(err, GN_EAUTH, "%s metadata has %zu valid signature(s), the threshold is %lld", role,
				  valid, (long long)threshold);
	return 0;
}

void gn_tuf_time(char out[21], int64_t t)
{
	struct tm tm;
	time_t tt = (time_t)t;
	gmtime_r(&tt, &tm);
	strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int gn_tuf_time_parse(int64_t *out, const char *s)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	if (!s || strlen(s) != 20)
		return GN_EINVAL;
	const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (!end || *end)
		return GN_EINVAL;
	*out = (int64_t)timegm(&tm);
	return 0;
}
