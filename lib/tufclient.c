/* TUF client checks: root chain and the usability of each root's roles, role signatures and
 * thresholds, expiry, rollback, consistency between timestamp, snapshot and targets (versions,
 * lengths, hashes), director-versus-image agreement, and target bytes against their hashes. */
#include "tufclient.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "crypto.h"
#include "json.h"
#include "tuf.h"

static const json_t *signed_of(const json_t *env)
{
	return json_object_get(env, "signed");
}

static const char *type_of(const json_t *env)
{
	return json_string_value(json_object_get(signed_of(env), "_type"));
}

static json_int_t version_of(const json_t *env)
{
	return json_integer_value(json_object_get(signed_of(env), "version"));
}

int gn_tufc_parse(json_t **out, const char *bytes, size_t len, gn_err *err)
{
	json_error_t je;
	if (len > GN_TUF_MAX_METADATA)
		return gn_err_set(err, GN_EINVAL, "metadata of %zu bytes is over the %d-byte cap", len,
				  GN_TUF_MAX_METADATA);
	json_t *j = json_loadb(bytes, len, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		return gn_err_set(err, GN_EINVAL, "metadata is not JSON: %s", je.text);
	const json_t *s = json_object_get(j, "signed");
	if (!json_is_object(s) || !json_is_array(json_object_get(j, "signatures")) ||
	    !json_is_string(json_object_get(s, "_type")) || !json_is_integer(json_object_get(s, "version")) ||
	    json_integer_value(json_object_get(s, "version")) < 1) {
		json_decref(j);
		return gn_err_set(err, GN_EINVAL, "metadata lacks signed/_type/version or signatures");
	}
	*out = j;
	return 0;
}

int gn_tufc_check_fresh(const json_t *env, int64_t now, gn_err *err)
{
	int64_t exp;
	if (gn_tuf_time_parse(&exp, json_string_value(json_object_get(signed_of(env), "expires"))))
		return gn_err_set(err, GN_EINVAL, "%s metadata has no valid 'expires'",
				  type_of(env) ? type_of(env) : "?");
	if (exp <= now)
		return gn_err_set(err, GN_EAUTH, "%s metadata version %lld expired at %s", type_of(env),
				  (long long)version_of(env),
				  json_string_value(json_object_get(signed_of(env), "expires")));
	return 0;
}

/* Checks one role of a root: every key id resolves to a usable key, and the threshold is between
 * 1 and the number of distinct keys. */
static int role_usable(const json_t *root_signed, const char *name, const json_t *role, gn_err *err)
{
	const json_t *keyids = json_object_get(role, "keyids"), *t = json_object_get(role, "threshold");
	const json_t *keys = json_object_get(root_signed, "keys");
	long long v = (long long)json_integer_value(json_object_get(root_signed, "version"));
	size_t i, distinct = 0;
	json_t *kid;
	if (!json_is_array(keyids) || !json_is_integer(t))
		return gn_err_set(err, GN_EAUTH, "root version %lld: role '%s' lacks keyids or threshold", v, name);
	json_array_foreach(keyids, i, kid) {
		unsigned char pub[GN_ED25519_PUB_LEN];
		gn_err why;
		const char *id = json_string_value(kid);
		if (gn_tuf_key_public(pub, keys, id, &why))
			return gn_err_set(err, GN_EAUTH,
					  "root version %lld: role '%s' lists key %.16s..., unusable: %s", v, name,
					  id ? id : "(not a string)", why.msg);
		bool again = false;
		for (size_t k = 0; k < i && !again; k++)
			again = json_equal(json_array_get(keyids, k), kid);
		distinct += !again;
	}
	if (json_integer_value(t) < 1 || (size_t)json_integer_value(t) > distinct)
		return gn_err_set(
			err, GN_EAUTH,
			"root version %lld: role '%s' has threshold %lld over %zu key(s); it must be between 1 "
			"and the number of its keys",
			v, name, (long long)json_integer_value(t), distinct);
	return 0;
}

/* Checks that every role of root (signed part) is usable, and that it has root, targets and every
 * role that prev (the root it follows) has. */
static int roles_usable(const json_t *root, const json_t *prev, gn_err *err)
{
	const json_t *roles = json_object_get(root, "roles"), *role;
	const char *name;
	int rc;
	static const char *const always[] = {"root", "targets"};
	for (size_t i = 0; i < GN_ARRAY_LEN(always); i++)
		if (!json_object_get(roles, always[i]))
			return gn_err_set(err, GN_EAUTH, "root version %lld has no '%s' role",
					  (long long)json_integer_value(json_object_get(root, "version")), always[i]);
	json_object_foreach((json_t *)json_object_get(prev, "roles"), name, role) {
		if (!json_object_get(roles, name))
			return gn_err_set(err, GN_EAUTH, "root version %lld has no '%s' role",
					  (long long)json_integer_value(json_object_get(root, "version")), name);
	}
	json_object_foreach((json_t *)roles, name, role) {
		if ((rc = role_usable(root, name, role, err)))
			return rc;
	}
	return 0;
}

int gn_tufc_root_update(const json_t *trusted, const json_t *next, gn_err *err)
{
	int rc;
	if (!type_of(next) || strcmp(type_of(next), "root") != 0)
		return gn_err_set(err, GN_EINVAL, "expected root metadata, got %s",
				  type_of(next) ? type_of(next) : "?");
	if (version_of(next) != version_of(trusted) + 1)
		return gn_err_set(err, GN_EAUTH, "root version %lld does not follow the trusted version %lld",
				  (long long)version_of(next), (long long)version_of(trusted));
	/* N+1 must be signed by a threshold of N's root keys and of its own. */
	if ((rc = gn_tuf_verify_role(next, signed_of(trusted), "root", err)))
		return rc == GN_EINVAL ? GN_EAUTH : rc;
	if ((rc = gn_tuf_verify_role(next, signed_of(next), "root", err)))
		return rc == GN_EINVAL ? GN_EAUTH : rc;
	/* Signed, but a root whose roles can never verify (or verify with keys nobody defined) would
	 * lock the device out of every later update: refuse it now, while the old root still works. */
	return roles_usable(signed_of(next), signed_of(trusted), err);
}

int gn_tufc_check_role(const json_t *root, const char *role, const json_t *env, const json_t *trusted, int64_t now,
		       gn_err *err)
{
	int rc;
	if (!type_of(env) || strcmp(type_of(env), role) != 0)
		return gn_err_set(err, GN_EINVAL, "expected %s metadata, got %s", role,
				  type_of(env) ? type_of(env) : "?");
	if ((rc = gn_tuf_verify_role(env, signed_of(root), role, err)))
		return rc == GN_EINVAL ? GN_EAUTH : rc;
	if (trusted) {
		json_int_t have = version_of(trusted), got = version_of(env);
		if (got < have)
			return gn_err_set(err, GN_EAUTH,
					  "%s version %lld is older than the trusted version %lld (rollback)", role,
					  (long long)got, (long long)have);
		if (got == have && !json_equal((json_t *)signed_of(env), (json_t *)signed_of(trusted)))
			return gn_err_set(err, GN_EAUTH,
					  "%s version %lld differs from the trusted metadata of the same version", role,
					  (long long)got);
	}
	return gn_tufc_check_fresh(env, now, err);
}

/* The hash algorithms this client checks, by their TUF names. */
static const struct {
	const char *name, *label;
	const EVP_MD *(*md)(void);
} algorithms[] = {{"sha256", "SHA-256", EVP_sha256}, {"sha512", "SHA-512", EVP_sha512}};

/* Checks bytes against every supported algorithm that hashes lists; *out_checked counts them.
 * what and by name the file and who lists its hashes, in messages. */
static int hashes_match(size_t *out_checked, const json_t *hashes, const void *bytes, size_t len, const char *what,
			const char *by, gn_err *err)
{
	*out_checked = 0;
	for (size_t i = 0; i < GN_ARRAY_LEN(algorithms); i++) {
		const json_t *want = json_object_get(hashes, algorithms[i].name);
		unsigned char md[EVP_MAX_MD_SIZE];
		unsigned int mdlen = 0;
		char hex[2 * EVP_MAX_MD_SIZE + 1];
		if (!want)
			continue;
		if (EVP_Digest(bytes, len, md, &mdlen, algorithms[i].md(), NULL) != 1)
			return gn_err_set(err, GN_ERROR, "cannot compute %s", algorithms[i].label);
		gn_hex_encode(hex, md, mdlen);
		if (!json_is_string(want) || strcmp(json_string_value(want), hex) != 0)
			return gn_err_set(err, GN_EAUTH, "%s %s differs from the one %s lists", what,
					  algorithms[i].label, by);
		(*out_checked)++;
	}
	return 0;
}

/* Whether hashes (an object or NULL) lists an algorithm this client supports. */
static bool lists_supported(const json_t *hashes)
{
	for (size_t i = 0; i < GN_ARRAY_LEN(algorithms); i++)
		if (json_object_get(hashes, algorithms[i].name))
			return true;
	return false;
}

int gn_tufc_meta_matches(const json_t *listing, const char *file, const json_t *env, const char *bytes, size_t len,
			 gn_err *err)
{
	const json_t *m = json_object_get(json_object_get(signed_of(listing), "meta"), file);
	const char *what = strcmp(file, "snapshot.json") == 0 ? "snapshot" : "targets";
	const char *lister = strcmp(file, "snapshot.json") == 0 ? "timestamp" : "snapshot";
	const json_t *l = json_object_get(m, "length"), *h = json_object_get(m, "hashes");
	size_t checked;
	if (!m)
		return gn_err_set(err, GN_EINVAL, "%s lists no %s", lister, file);
	if (json_integer_value(json_object_get(m, "version")) != version_of(env))
		return gn_err_set(err, GN_EAUTH, "%s version %lld is not the %lld the %s lists", what,
				  (long long)version_of(env),
				  (long long)json_integer_value(json_object_get(m, "version")), lister);
	if (!bytes)
		return 0;
	if (l && (!json_is_integer(l) || json_integer_value(l) < 0 || (size_t)json_integer_value(l) != len))
		return gn_err_set(err, GN_EAUTH, "%s is %zu bytes, the %s lists %lld", what, len, lister,
				  (long long)json_integer_value(l));
	if (h && !lists_supported(h))
		return gn_err_set(err, GN_EAUTH,
				  "the %s lists no hash of %s that this client supports (sha256, sha512)", lister,
				  what);
	return hashes_match(&checked, h, bytes, len, what,
			    strcmp(lister, "timestamp") == 0 ? "the timestamp" : "the snapshot", err);
}

int gn_tufc_snapshot_matches(const json_t *timestamp, const json_t *snapshot, const char *bytes, size_t len,
			     gn_err *err)
{
	return gn_tufc_meta_matches(timestamp, "snapshot.json", snapshot, bytes, len, err);
}

int gn_tufc_targets_matches(const json_t *snapshot, const json_t *targets, gn_err *err)
{
	return gn_tufc_meta_matches(snapshot, "targets.json", targets, NULL, 0, err);
}

size_t gn_tufc_fetch_limit(const json_t *listing, const char *file, size_t cap)
{
	const json_t *l = json_object_get(json_object_get(json_object_get(signed_of(listing), "meta"), file), "length");
	if (json_is_integer(l) && json_integer_value(l) >= 0 && (uint64_t)json_integer_value(l) < cap)
		return (size_t)json_integer_value(l);
	return cap;
}

const json_t *gn_tufc_target(const json_t *targets, const char *path)
{
	return json_object_get(json_object_get(signed_of(targets), "targets"), path);
}

int gn_tufc_director_target_ok(const json_t *image_targets, const char *path, const json_t *director_entry, gn_err *err)
{
	return gn_tufc_director_entry_ok(gn_tufc_target(image_targets, path), path, director_entry, err);
}

int gn_tufc_director_entry_ok(const json_t *img, const char *path, const json_t *director_entry, gn_err *err)
{
	if (!img)
		return gn_err_set(err, GN_EAUTH, "the image repository has not signed target %s", path);
	const json_t *dl = json_object_get(director_entry, "length"), *il = json_object_get(img, "length");
	const json_t *dhs = json_object_get(director_entry, "hashes"), *ihs = json_object_get(img, "hashes");
	if (!lists_supported(ihs))
		return gn_err_set(err, GN_EAUTH, "target %s lists no hash this client supports (sha256, sha512)", path);
	if (!json_is_integer(dl) || !json_is_integer(il) || json_integer_value(dl) != json_integer_value(il))
		return gn_err_set(err, GN_EAUTH, "director and image repository disagree on the length of %s", path);
	/* SHA-256 is required on both sides: artifacts are addressed by it. */
	if (!json_is_string(json_object_get(dhs, "sha256")) || !json_is_string(json_object_get(ihs, "sha256")))
		return gn_err_set(err, GN_EAUTH, "director and image repository disagree on the SHA-256 of %s", path);
	for (size_t i = 0; i < GN_ARRAY_LEN(algorithms); i++) {
		const json_t *d = json_object_get(dhs, algorithms[i].name),
			     *m = json_object_get(ihs, algorithms[i].name);
		if (d && m && !json_equal((json_t *)d, (json_t *)m))
			return gn_err_set(err, GN_EAUTH, "director and image repository disagree on the %s of %s",
					  algorithms[i].label, path);
	}
	return 0;
}

int gn_tufc_target_bytes_ok(const json_t *entry, const char *path, const void *bytes, size_t len, gn_err *err)
{
	const json_t *l = json_object_get(entry, "length"), *h = json_object_get(entry, "hashes");
	size_t checked = 0;
	if (!json_is_integer(l) || json_integer_value(l) < 0 || (uint64_t)json_integer_value(l) != (uint64_t)len)
		return gn_err_set(err, GN_EAUTH, "target %s is %zu bytes, its metadata lists %lld", path, len,
				  (long long)json_integer_value(l));
	char *what = gn_asprintf("target %s", path);
	int rc = hashes_match(&checked, h, bytes, len, what, "its metadata", err);
	free(what);
	if (!rc && checked == 0)
		rc = gn_err_set(err, GN_EAUTH, "target %s lists no hash this client supports (sha256, sha512)", path);
	return rc;
}

int64_t gn_tufc_clock(int64_t system_now, int64_t newest_seen)
{
	return system_now > newest_seen ? system_now : newest_seen;
}
