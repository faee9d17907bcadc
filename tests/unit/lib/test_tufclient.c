/* Unit tests for lib/tufclient.c: every refusal the agent relies on, with metadata built and
 * signed here (lib/tuf.c), so no server is needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/sha.h>

#include "crypto.h"
#include "json.h"
#include "tuf.h"
#include "tufclient.h"

#define NOW 1800000000LL

static gn_ed25519_key *keys[6];
static char ids[6][65];

static int setup(void **state)
{
	gn_err err;
	for (int i = 0; i < 6; i++) {
		unsigned char pub[32];
		assert_int_equal(gn_ed25519_generate(&keys[i], &err), 0);
		gn_ed25519_public(pub, keys[i]);
		json_t *k = gn_tuf_key_json(pub);
		assert_int_equal(gn_tuf_keyid(ids[i], k, &err), 0);
		json_decref(k);
	}
	return 0;
}

static int teardown(void **state)
{
	for (int i = 0; i < 6; i++)
		gn_ed25519_key_free(keys[i]);
	return 0;
}

static json_t *key_obj(int i)
{
	unsigned char pub[32];
	gn_ed25519_public(pub, keys[i]);
	return gn_tuf_key_json(pub);
}

/* Root signed part: root keys rk[0..nr) with threshold t; targets key tk. */
static json_t *root_signed(int version, const int *rk, int nr, int t, int tk, int64_t expires)
{
	char exp[21];
	gn_tuf_time(exp, expires);
	json_t *kobj = json_object(), *rids = json_array();
	for (int i = 0; i < nr; i++) {
		json_object_set_new(kobj, ids[rk[i]], key_obj(rk[i]));
		json_array_append_new(rids, json_string(ids[rk[i]]));
	}
	json_object_set_new(kobj, ids[tk], key_obj(tk));
	return json_pack("{s:s,s:s,s:i,s:s,s:b,s:o,s:{s:{s:o,s:i},s:{s:[s],s:i}}}", "_type", "root", "spec_version",
			 "1.0.0", "version", version, "expires", exp, "consistent_snapshot", 1, "keys", kobj, "roles",
			 "root", "keyids", rids, "threshold", t, "targets", "keyids", ids[tk], "threshold", 1);
}

static json_t *sign(json_t *signed_part, const int *by, int n)
{
	gn_ed25519_key *ks[6];
	json_t *env = NULL;
	gn_err err;
	for (int i = 0; i < n; i++)
		ks[i] = keys[by[i]];
	assert_int_equal(gn_tuf_sign(&env, signed_part, ks, (size_t)n, &err), 0);
	json_decref(signed_part);
	return env;
}

static json_t *targets_env(int version, int64_t expires, const char *path, int len, const char *sha, int by)
{
	char exp[21];
	gn_tuf_time(exp, expires);
	json_t *t = json_object();
	if (path)
		json_object_set_new(t, path, json_pack("{s:i,s:{s:s}}", "length", len, "hashes", "sha256", sha));
	json_t *s = json_pack("{s:s,s:s,s:i,s:s,s:o}", "_type", "targets", "spec_version", "1.0.0", "version", version,
			      "expires", exp, "targets", t);
	return sign(s, &by, 1);
}

static void test_root_chain(void **state)
{
	gn_err err;
	int r0[] = {0, 1}, r1[] = {1, 2};
	json_t *v1 = sign(root_signed(1, r0, 2, 2, 5, NOW + 100), r0, 2);
	/* v2 rotates key 0 out for key 2: needs 2 of {0,1} and 2 of {1,2}. */
	int all[] = {0, 1, 2};
	json_t *v2 = sign(root_signed(2, r1, 2, 2, 5, NOW + 100), all, 3);
	assert_int_equal(gn_tufc_root_update(v1, v2, &err), 0);

	/* Signed only by the new keys: the old threshold is not met. */
	json_t *v2new = sign(root_signed(2, r1, 2, 2, 5, NOW + 100), r1, 2);
	assert_int_equal(gn_tufc_root_update(v1, v2new, &err), GN_EAUTH);
	/* Signed only by the old keys: its own threshold is not met. */
	json_t *v2old = sign(root_signed(2, r1, 2, 2, 5, NOW + 100), r0, 2);
	assert_int_equal(gn_tufc_root_update(v1, v2old, &err), GN_EAUTH);
	/* Skipping a version. */
	json_t *v3 = sign(root_signed(3, r0, 2, 2, 5, NOW + 100), r0, 2);
	assert_int_equal(gn_tufc_root_update(v1, v3, &err), GN_EAUTH);
	assert_non_null(strstr(err.msg, "does not follow"));
	json_decref(v1);
	json_decref(v2);
	json_decref(v2new);
	json_decref(v2old);
	json_decref(v3);
}

static void test_threshold_counts_each_key_once(void **state)
{
	gn_err err;
	int r[] = {0, 1};
	json_t *root = sign(root_signed(1, r, 2, 2, 5, NOW + 100), r, 2);
	/* The same key twice does not make two signatures. */
	int twice[] = {0, 0};
	json_t *dup = sign(root_signed(1, r, 2, 2, 5, NOW + 100), twice, 2);
	assert_int_equal(gn_tufc_check_role(root, "root", dup, NULL, NOW, &err), GN_EAUTH);
	assert_non_null(strstr(err.msg, "1 valid signature"));
	/* An unknown key does not count either. */
	int unknown[] = {0, 3};
	json_t *unk = sign(root_signed(1, r, 2, 2, 5, NOW + 100), unknown, 2);
	assert_int_equal(gn_tufc_check_role(root, "root", unk, NULL, NOW, &err), GN_EAUTH);
	/* A bad signature beside enough good ones does not spoil them. */
	int three[] = {0, 1, 3};
	json_t *good = sign(root_signed(1, r, 2, 2, 5, NOW + 100), three, 3);
	json_t *bad = json_pack("{s:s,s:s}", "keyid", ids[0], "sig", "00");
	json_array_append_new(json_object_get(good, "signatures"), bad);
	assert_int_equal(gn_tufc_check_role(root, "root", good, NULL, NOW, &err), 0);
	/* A role that lists one key twice with threshold 2 is not satisfied by that key alone. */
	json_t *rs = root_signed(1, r, 2, 2, 5, NOW + 100);
	json_t *rk = json_object_get(json_object_get(json_object_get(rs, "roles"), "root"), "keyids");
	json_array_set_new(rk, 1, json_string(ids[0]));
	int one[] = {0};
	json_t *twice_listed = sign(rs, one, 1);
	assert_int_equal(gn_tufc_check_role(twice_listed, "root", twice_listed, NULL, NOW, &err), GN_EAUTH);
	json_decref(root);
	json_decref(dup);
	json_decref(unk);
	json_decref(good);
	json_decref(twice_listed);
}

static void test_targets_refusals(void **state)
{
	gn_err err;
	int r[] = {0};
	const char *sha = "aa00000000000000000000000000000000000000000000000000000000000000";
	json_t *root = sign(root_signed(1, r, 1, 1, 5, NOW + 1000), r, 1);
	json_t *t2 = targets_env(2, NOW + 100, "models/m/1.0.0/model.onnx", 10, sha, 5);
	assert_int_equal(gn_tufc_check_role(root, "targets", t2, NULL, NOW, &err), 0);
	/* Unsigned (no signatures). */
	json_t *unsigned_ = json_deep_copy(t2);
	json_array_clear(json_object_get(unsigned_, "signatures"));
	assert_int_equal(gn_tufc_check_role(root, "targets", unsigned_, NULL, NOW, &err), GN_EAUTH);
	/* Signed by a key the root does not give the role (the root key). */
	json_t *wrongkey = targets_env(2, NOW + 100, NULL, 0, NULL, 0);
	assert_int_equal(gn_tufc_check_role(root, "targets", wrongkey, NULL, NOW, &err), GN_EAUTH);
	/* Expired. */
	json_t *expired = targets_env(3, NOW - 1, NULL, 0, NULL, 5);
	assert_int_equal(gn_tufc_check_role(root, "targets", expired, NULL, NOW, &err), GN_EAUTH);
	assert_non_null(strstr(err.msg, "expired"));
	/* Rollback to a lower version. */
	json_t *t1 = targets_env(1, NOW + 100, NULL, 0, NULL, 5);
	assert_int_equal(gn_tufc_check_role(root, "targets", t1, t2, NOW, &err), GN_EAUTH);
	assert_non_null(strstr(err.msg, "rollback"));
	/* The same version with different content. */
	json_t *t2b = targets_env(2, NOW + 100, "models/m/1.0.1/model.onnx", 10, sha, 5);
	assert_int_equal(gn_tufc_check_role(root, "targets", t2b, t2, NOW, &err), GN_EAUTH);
	/* The same version, same content: fine (a re-fetch). */
	assert_int_equal(gn_tufc_check_role(root, "targets", t2, t2, NOW, &err), 0);
	/* Tampered content under a valid signature. */
	json_t *tampered = json_deep_copy(t2);
	json_object_set_new(json_object_get(json_object_get(json_object_get(tampered, "signed"), "targets"),
					    "models/m/1.0.0/model.onnx"),
			    "length", json_integer(11));
	assert_int_equal(gn_tufc_check_role(root, "targets", tampered, NULL, NOW, &err), GN_EAUTH);
	/* Wrong type. */
	assert_int_equal(gn_tufc_check_role(root, "snapshot", t2, NULL, NOW, &err), GN_EINVAL);
	json_t *objs[] = {root, t2, unsigned_, wrongkey, expired, t1, t2b, tampered};
	for (size_t i = 0; i < GN_ARRAY_LEN(objs); i++)
		json_decref(objs[i]);
}

static void test_director_must_match_image(void **state)
{
	gn_err err;
	const char *sha = "bb00000000000000000000000000000000000000000000000000000000000000";
	const char *other = "cc00000000000000000000000000000000000000000000000000000000000000";
	json_t *image = targets_env(1, NOW + 100, "models/m/1.0.0/model.onnx", 10, sha, 5);
	json_t *ok = json_pack("{s:i,s:{s:s}}", "length", 10, "hashes", "sha256", sha);
	json_t *badlen = json_pack("{s:i,s:{s:s}}", "length", 11, "hashes", "sha256", sha);
	json_t *badsha = json_pack("{s:i,s:{s:s}}", "length", 10, "hashes", "sha256", other);
	assert_int_equal(gn_tufc_director_target_ok(image, "models/m/1.0.0/model.onnx", ok, &err), 0);
	assert_int_equal(gn_tufc_director_target_ok(image, "models/m/1.0.0/model.onnx", badlen, &err), GN_EAUTH);
	assert_int_equal(gn_tufc_director_target_ok(image, "models/m/1.0.0/model.onnx", badsha, &err), GN_EAUTH);
	assert_int_equal(gn_tufc_director_target_ok(image, "models/m/9.9.9/model.onnx", ok, &err), GN_EAUTH);
	assert_non_null(strstr(err.msg, "not signed"));
	json_decref(image);
	json_decref(ok);
	json_decref(badlen);
	json_decref(badsha);
}

static void test_snapshot_consistency(void **state)
{
	gn_err err;
	char sum[65];
	const char *bytes = "{\"signed\":{}}";
	gn_sha256_hex(sum, bytes, strlen(bytes));
	json_t *ts = json_pack("{s:{s:{s:{s:i,s:i,s:{s:s}}}}}", "signed", "meta", "snapshot.json", "version", 4,
			       "length", (int)strlen(bytes), "hashes", "sha256", sum);
	json_t *sn = json_pack("{s:{s:i,s:{s:{s:i}}}}", "signed", "version", 4, "meta", "targets.json", "version", 7);
	json_t *tg7 = json_pack("{s:{s:i}}", "signed", "version", 7);
	json_t *tg6 = json_pack("{s:{s:i}}", "signed", "version", 6);
	assert_int_equal(gn_tufc_snapshot_matches(ts, sn, bytes, strlen(bytes), &err), 0);
	assert_int_equal(gn_tufc_snapshot_matches(ts, sn, "{\"signed\":{ }}", 14, &err), GN_EAUTH);
	assert_int_equal(gn_tufc_targets_matches(sn, tg7, &err), 0);
	assert_int_equal(gn_tufc_targets_matches(sn, tg6, &err), GN_EAUTH);
	json_decref(ts);
	json_decref(sn);
	json_decref(tg7);
	json_decref(tg6);
}

static void test_parse_limits_and_clock(void **state)
{
	gn_err err;
	json_t *j = NULL;
	size_t big = GN_TUF_MAX_METADATA + 1;
	char *buf = malloc(big);
	memset(buf, ' ', big);
	assert_int_equal(gn_tufc_parse(&j, buf, big, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "cap"));
	free(buf);
	assert_int_equal(gn_tufc_parse(&j, "{\"signed\":{}}", 13, &err), GN_EINVAL);
	const char *ok = "{\"signed\":{\"_type\":\"targets\",\"version\":1},\"signatures\":[]}";
	assert_int_equal(gn_tufc_parse(&j, ok, strlen(ok), &err), 0);
	json_decref(j);
	/* A clock reset to the past does not make expired metadata fresh again. */
	assert_int_equal(gn_tufc_clock(1000, 5000), 5000);
	assert_int_equal(gn_tufc_clock(9000, 5000), 9000);
}

/* Root v2 (signed by the root keys of v1 and its own) whose roles could never verify, or would
 * verify with a key nobody defined: refused before it is trusted. v1 also has a snapshot role. */
static json_t *root_v1_with_snapshot(void)
{
	int r[] = {0};
	json_t *s = root_signed(1, r, 1, 1, 5, NOW + 1000);
	json_object_set_new(json_object_get(s, "keys"), ids[4], key_obj(4));
	json_object_set_new(json_object_get(s, "roles"), "snapshot",
			    json_pack("{s:[s],s:i}", "keyids", ids[4], "threshold", 1));
	return sign(s, r, 1);
}

enum root_flaw {
	FLAW_NONE,
	FLAW_THRESHOLD_0,
	FLAW_THRESHOLD_OVER,
	FLAW_TWICE,
	FLAW_UNDEFINED,
	FLAW_NOT_ED25519,
	FLAW_WRONG_ID,
	FLAW_NO_SNAPSHOT,
	FLAW_NO_TARGETS
};

static json_t *flawed_root_v2(enum root_flaw flaw)
{
	int r[] = {0};
	json_t *v1 = root_v1_with_snapshot();
	json_t *s = json_deep_copy(json_object_get(v1, "signed"));
	json_decref(v1);
	json_t *roles = json_object_get(s, "roles"), *kobj = json_object_get(s, "keys");
	json_t *snap = json_object_get(roles, "snapshot"), *snapids = json_object_get(snap, "keyids");
	json_object_set_new(s, "version", json_integer(2));
	switch (flaw) {
	case FLAW_NONE: break;
	case FLAW_THRESHOLD_0: json_object_set_new(snap, "threshold", json_integer(0)); break;
	case FLAW_THRESHOLD_OVER: json_object_set_new(snap, "threshold", json_integer(2)); break;
	case FLAW_TWICE:
		json_array_append_new(snapids, json_string(ids[4]));
		json_object_set_new(snap, "threshold", json_integer(2));
		break;
	case FLAW_UNDEFINED: json_array_append_new(snapids, json_string(ids[3])); break;
	case FLAW_NOT_ED25519: json_object_set_new(json_object_get(kobj, ids[4]), "keytype", json_string("rsa")); break;
	case FLAW_WRONG_ID:
		/* key 4's id, key 3's public value: not what it claims */
		json_object_set_new(kobj, ids[4], key_obj(3));
		break;
	case FLAW_NO_SNAPSHOT: json_object_del(roles, "snapshot"); break;
	case FLAW_NO_TARGETS: json_object_del(roles, "targets"); break;
	}
	return sign(s, r, 1);
}

static void test_root_roles_must_be_usable(void **state)
{
	static const struct {
		enum root_flaw flaw;
		const char *msg;
	} cases[] = {
		{FLAW_NONE, NULL},
		{FLAW_THRESHOLD_0, "role 'snapshot' has threshold 0 over 1 key(s)"},
		{FLAW_THRESHOLD_OVER, "role 'snapshot' has threshold 2 over 1 key(s)"},
		{FLAW_TWICE, "role 'snapshot' has threshold 2 over 1 key(s)"},
		{FLAW_UNDEFINED, "is not defined"},
		{FLAW_NOT_ED25519, "not an Ed25519 key"},
		{FLAW_WRONG_ID, "is not the SHA-256 of its key"},
		{FLAW_NO_SNAPSHOT, "root version 2 has no 'snapshot' role"},
		{FLAW_NO_TARGETS, "root version 2 has no 'targets' role"},
	};
	for (size_t i = 0; i < GN_ARRAY_LEN(cases); i++) {
		gn_err err = {0};
		json_t *v1 = root_v1_with_snapshot(), *v2 = flawed_root_v2(cases[i].flaw);
		int rc = gn_tufc_root_update(v1, v2, &err);
		if (!cases[i].msg) {
			assert_int_equal(rc, 0);
		} else {
			assert_int_equal(rc, GN_EAUTH);
			if (!strstr(err.msg, cases[i].msg))
				fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, cases[i].msg);
		}
		json_decref(v1);
		json_decref(v2);
	}
}

/* An envelope of a targets role signed by key 5, with n junk signatures under key 5's id before
 * (junk_first) or after its real one. */
static json_t *with_junk(int n, bool junk_first)
{
	json_t *env = targets_env(2, NOW + 100, NULL, 0, NULL, 5);
	json_t *sigs = json_object_get(env, "signatures"), *real = json_incref(json_array_get(sigs, 0));
	char junk[129];
	memset(junk, 'a', 128);
	junk[128] = '\0';
	json_array_clear(sigs);
	if (!junk_first)
		json_array_append(sigs, real);
	for (int i = 0; i < n; i++)
		json_array_append_new(sigs, json_pack("{s:s,s:s}", "keyid", ids[5], "sig", junk));
	if (junk_first)
		json_array_append(sigs, real);
	json_decref(real);
	return env;
}

static void test_signatures_are_capped_and_verified_once_per_key(void **state)
{
	gn_err err;
	int r[] = {0};
	json_t *root = sign(root_signed(1, r, 1, 1, 5, NOW + 1000), r, 1);
	/* The real signature first: it is the one verified for key 5. */
	json_t *ok = with_junk(GN_TUF_MAX_SIGNATURES - 1, false);
	assert_int_equal(gn_tufc_check_role(root, "targets", ok, NULL, NOW, &err), 0);
	/* Only the first signature under a key id is verified: junk there, and the key does not count
	 * (however many signatures follow, they cost nothing). */
	json_t *junk_first = with_junk(GN_TUF_MAX_SIGNATURES - 1, true);
	assert_int_equal(gn_tufc_check_role(root, "targets", junk_first, NULL, NOW, &err), GN_EAUTH);
	assert_non_null(strstr(err.msg, "0 valid signature(s)"));
	/* More signatures than any role needs: refused before any is verified. */
	json_t *flood = with_junk(GN_TUF_MAX_SIGNATURES, false);
	assert_int_equal(gn_tufc_check_role(root, "targets", flood, NULL, NOW, &err), GN_EAUTH);
	assert_non_null(strstr(err.msg, "targets metadata carries 257 signatures, more than the 256 allowed"));
	size_t n = 9;
	json_t *role = json_pack("[s]", ids[5]);
	assert_int_equal(
		gn_tuf_count_valid(&n, flood, json_object_get(json_object_get(root, "signed"), "keys"), role, &err),
		GN_EINVAL);
	json_decref(role);
	assert_int_equal(n, 0);
	json_decref(root);
	json_decref(ok);
	json_decref(junk_first);
	json_decref(flood);
}

static void test_meta_lengths_and_hashes(void **state)
{
	gn_err err;
	char sum[65], sum512[129];
	unsigned char md[64];
	const char *bytes = "{\"signed\":{}}";
	size_t len = strlen(bytes);
	gn_sha256_hex(sum, bytes, len);
	assert_non_null(SHA512((const unsigned char *)bytes, len, md));
	gn_hex_encode(sum512, md, 64);
	json_t *sn = json_pack("{s:{s:i}}", "signed", "version", 4);
	json_t *ts = json_pack("{s:{s:{s:{s:i,s:i,s:{s:s,s:s}}}}}", "signed", "meta", "snapshot.json", "version", 4,
			       "length", (int)len, "hashes", "sha256", sum, "sha512", sum512);
	json_t *m = json_object_get(json_object_get(json_object_get(ts, "signed"), "meta"), "snapshot.json");
	assert_int_equal(gn_tufc_meta_matches(ts, "snapshot.json", sn, bytes, len, &err), 0);
	assert_int_equal(gn_tufc_fetch_limit(ts, "snapshot.json", 1 << 20), len);
	assert_int_equal(gn_tufc_fetch_limit(ts, "snapshot.json", 4), 4);
	assert_int_equal(gn_tufc_fetch_limit(ts, "targets.json", 99), 99);
	/* Every listed hash of a supported algorithm must match, SHA-512 too. */
	json_object_set_new(json_object_get(m, "hashes"), "sha512", json_string("00"));
	assert_int_equal(gn_tufc_meta_matches(ts, "snapshot.json", sn, bytes, len, &err), GN_EAUTH);
	assert_non_null(strstr(err.msg, "snapshot SHA-512 differs from the one the timestamp lists"));
	/* Hashes of no supported algorithm: refused. Unknown ones beside a supported one: ignored. */
	json_object_set_new(m, "hashes", json_pack("{s:s}", "md5", "00"));
	assert_int_equal(gn_tufc_meta_matches(ts, "snapshot.json", sn, bytes, len, &err), GN_EAUTH);
	assert_non_null(strstr(err.msg, "no hash of snapshot"));
	json_object_set_new(m, "hashes", json_pack("{s:s,s:s}", "md5", "00", "sha256", sum));
	assert_int_equal(gn_tufc_meta_matches(ts, "snapshot.json", sn, bytes, len, &err), 0);
	/* The length, when listed. */
	json_object_set_new(m, "length", json_integer((json_int_t)len + 1));
	assert_int_equal(gn_tufc_meta_matches(ts, "snapshot.json", sn, bytes, len, &err), GN_EAUTH);
	assert_non_null(strstr(err.msg, "the timestamp lists"));
	/* targets.json in a snapshot: the same rules. */
	json_t *snap = json_pack("{s:{s:s,s:{s:{s:i,s:i}}}}", "signed", "_type", "snapshot", "meta", "targets.json",
				 "version", 4, "length", (int)len + 1);
	assert_int_equal(gn_tufc_meta_matches(snap, "targets.json", sn, bytes, len, &err), GN_EAUTH);
	assert_non_null(strstr(err.msg, "targets is 13 bytes, the snapshot lists 14"));
	assert_int_equal(gn_tufc_targets_matches(snap, sn, &err), 0);
	json_decref(ts);
	json_decref(sn);
	json_decref(snap);
}

static void test_every_supported_target_hash_must_match(void **state)
{
	gn_err err;
	const unsigned char data[] = "model bytes";
	size_t len = sizeof(data) - 1;
	char sum[65], sum512[129];
	unsigned char md[64];
	const char *path = "models/m/1.0.0/model.onnx";
	gn_sha256_hex(sum, data, len);
	assert_non_null(SHA512(data, len, md));
	gn_hex_encode(sum512, md, 64);
	json_t *right = json_pack("{s:i,s:{s:s,s:s}}", "length", (int)len, "hashes", "sha256", sum, "sha512", sum512);
	json_t *bad512 = json_pack("{s:i,s:{s:s,s:s}}", "length", (int)len, "hashes", "sha256", sum, "sha512", sum);
	json_t *only512 = json_pack("{s:i,s:{s:s}}", "length", (int)len, "hashes", "sha512", sum512);
	json_t *none = json_pack("{s:i,s:{s:s}}", "length", (int)len, "hashes", "md5", "00");
	json_t *nolen = json_pack("{s:{s:s}}", "hashes", "sha256", sum);
	assert_int_equal(gn_tufc_target_bytes_ok(right, path, data, len, &err), 0);
	assert_int_equal(gn_tufc_target_bytes_ok(only512, path, data, len, &err), 0);
	assert_int_equal(gn_tufc_target_bytes_ok(bad512, path, data, len, &err), GN_EAUTH);
	assert_non_null(strstr(err.msg, "SHA-512 differs"));
	assert_int_equal(gn_tufc_target_bytes_ok(none, path, data, len, &err), GN_EAUTH);
	assert_non_null(strstr(err.msg, "lists no hash this client supports"));
	assert_int_equal(gn_tufc_target_bytes_ok(right, path, data, len - 1, &err), GN_EAUTH);
	assert_int_equal(gn_tufc_target_bytes_ok(nolen, path, data, len, &err), GN_EAUTH);

	/* Director and image: the image must list a supported hash, and no supported hash listed on
	 * both sides may differ. */
	json_t *image = targets_env(1, NOW + 100, path, (int)len, sum, 5);
	json_t *ientry = json_object_get(json_object_get(json_object_get(image, "signed"), "targets"), path);
	json_t *dir = json_pack("{s:i,s:{s:s,s:s}}", "length", (int)len, "hashes", "sha256", sum, "sha512", sum512);
	assert_int_equal(gn_tufc_director_target_ok(image, path, dir, &err), 0);
	json_object_set_new(json_object_get(ientry, "hashes"), "sha512", json_string(sum));
	assert_int_equal(gn_tufc_director_target_ok(image, path, dir, &err), GN_EAUTH);
	assert_non_null(strstr(err.msg, "disagree on the SHA-512"));
	json_object_set_new(ientry, "hashes", json_pack("{s:s}", "md5", "00"));
	assert_int_equal(gn_tufc_director_target_ok(image, path, dir, &err), GN_EAUTH);
	assert_non_null(strstr(err.msg, "lists no hash this client supports"));
	json_t *objs[] = {right, bad512, only512, none, nolen, image, dir};
	for (size_t i = 0; i < GN_ARRAY_LEN(objs); i++)
		json_decref(objs[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_root_chain),
		cmocka_unit_test(test_threshold_counts_each_key_once),
		cmocka_unit_test(test_targets_refusals),
		cmocka_unit_test(test_director_must_match_image),
		cmocka_unit_test(test_snapshot_consistency),
		cmocka_unit_test(test_parse_limits_and_clock),
		cmocka_unit_test(test_root_roles_must_be_usable),
		cmocka_unit_test(test_signatures_are_capped_and_verified_once_per_key),
		cmocka_unit_test(test_meta_lengths_and_hashes),
		cmocka_unit_test(test_every_supported_target_hash_must_match),
	};
	return cmocka_run_group_tests_name("tufclient", tests, setup, teardown);
}
