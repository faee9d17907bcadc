/* TUF key ids, signing and threshold verification over canonical JSON. */
#include "tuf.h"

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

int gn_tuf_count_valid(size_t *out, const json_t *env, const json_t *keys, const json_t *role_keyids, gn_err *err)
{
	char *c = NULL;
	size_t n, count = 0, i;
	json_t *kid;
	const json_t *sigs = json_object_get(env, "signatures");
	*out = 0;
	if (!json_is_object(json_object_get(env, "signed")) || !json_is_array(sigs))
		return gn_err_set(err, GN_EINVAL, "metadata must be {\"signed\": {...}, \"signatures\": [...]}");
	int rc = gn_json_canonical(&c, &n, json_object_get(env, "signed"), err);
	if (rc)
		return rc;
	json_array_foreach(role_keyids, i, kid) {
		const char *id = json_string_value(kid);
		/* A key listed twice still counts once. */
		bool seen = false;
		for (size_t k = 0; id && k < i && !seen; k++)
			seen = json_equal(json_array_get(role_keyids, k), kid);
		if (seen)
			continue;
		const json_t *key = id ? json_object_get(keys, id) : NULL;
		const char *pubhex = json_string_value(json_object_get(json_object_get(key, "keyval"), "public"));
		unsigned char pub[GN_ED25519_PUB_LEN];
		char check[GN_SHA256_HEX_LEN + 1];
		gn_err skipped; /* a key we skip is no failure of the count: err stays as it was */
		/* Skip keys that are not what they claim: wrong type, or an id that is not their hash. */
		if (!pubhex || gn_hex_decode(pub, sizeof(pub), pubhex) ||
		    !json_is_string(json_object_get(key, "keytype")) ||
		    strcmp(json_string_value(json_object_get(key, "keytype")), "ed25519") != 0 ||
		    gn_tuf_keyid(check, key, &skipped) || strcmp(check, id) != 0)
			continue;
		/* Each listed key counts once, whichever of its signatures verifies. */
		size_t j;
		json_t *s;
		json_array_foreach(sigs, j, s) {
			const char *sid = json_string_value(json_object_get(s, "keyid"));
			const char *sighex = json_string_value(json_object_get(s, "sig"));
			unsigned char sig[GN_ED25519_SIG_LEN];
			gn_err ignore;
			if (!sid || !sighex || strcmp(sid, id) != 0 || gn_hex_decode(sig, sizeof(sig), sighex))
				continue;
			if (gn_ed25519_verify(pub, c, n, sig, &ignore) == 0) {
				count++;
				break;
			}
		}
	}
	free(c);
	*out = count;
	return 0;
}

int gn_tuf_verify_role(const json_t *env, const json_t *root_signed, const char *role, gn_err *err)
{
	const json_t *r = json_object_get(json_object_get(root_signed, "roles"), role);
	const json_t *keyids = json_object_get(r, "keyids");
	json_int_t threshold = json_integer_value(json_object_get(r, "threshold"));
	size_t valid;
	if (!json_is_array(keyids) || threshold < 1)
		return gn_err_set(err, GN_EINVAL, "root has no usable '%s' role", role);
	int rc = gn_tuf_count_valid(&valid, env, json_object_get(root_signed, "keys"), keyids, err);
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
