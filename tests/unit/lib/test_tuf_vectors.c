/* lib/tuf.c and lib/tufclient.c against TUF metadata made outside the project: keys, canonical
 * JSON and Ed25519 signatures from python-securesystemslib (tests/fixtures/tuf/make_fixtures.py;
 * the output is committed). test_tufclient signs with lib/tuf.c and verifies with lib/tufclient.c,
 * so a bug both share (canonical form, key ids, what is signed) passes there and fails here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crypto.h"
#include "json.h"
#include "tuf.h"
#include "tufclient.h"

/* 2027-01-15: every fixture is valid then (targets expire in 2030, roots in 2035). */
#define NOW 1800000000LL
#define AFTER_2030 1900000000LL

/* Reads a fixture file whole (new, NUL-terminated); *len is its size. */
static char *fixture(const char *name, size_t *len)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/tests/fixtures/tuf/%s", SRCDIR, name);
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s (the fixtures are committed: tests/fixtures/tuf)", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	if (len)
		*len = (size_t)n;
	return buf;
}

/* Parses a fixture envelope as the agent does (new reference). */
static json_t *envelope(const char *name)
{
	gn_err err;
	size_t len;
	char *bytes = fixture(name, &len);
	json_t *env = NULL;
	if (gn_tufc_parse(&env, bytes, len, &err))
		fail_msg("%s: %s", name, err.msg);
	free(bytes);
	return env;
}

/* The key ids securesystemslib computed are the ones lib/tuf.c computes for the same keys. */
static void test_key_ids(void **state)
{
	gn_err err;
	json_t *keys = NULL;
	size_t len;
	char *bytes = fixture("keys.json", &len);
	json_error_t je;
	keys = json_loadb(bytes, len, 0, &je);
	assert_non_null(keys);
	free(bytes);
	const char *name;
	json_t *k;
	size_t n = 0;
	json_object_foreach(keys, name, k) {
		char id[65];
		assert_int_equal(gn_tuf_keyid(id, json_object_get(k, "key"), &err), 0);
		if (strcmp(id, json_string_value(json_object_get(k, "keyid"))) != 0)
			fail_msg("%s: lib/tuf.c computes key id %s, securesystemslib %s", name, id,
				 json_string_value(json_object_get(k, "keyid")));
		/* And the key object lib/tuf.c builds from the raw public key is the same object. */
		unsigned char pub[32];
		assert_int_equal(
			gn_hex_decode(pub, 32,
				      json_string_value(json_object_get(
					      json_object_get(json_object_get(k, "key"), "keyval"), "public"))),
			0);
		json_t *mine = gn_tuf_key_json(pub);
		assert_true(json_equal(mine, json_object_get(k, "key")));
		json_decref(mine);
		n++;
	}
	assert_int_equal(n, 6);
	json_decref(keys);
}

/* gn_json_canonical gives exactly the bytes securesystemslib signed: unicode raw, only " and \
 * escaped, control characters as they are, keys sorted, no whitespace. */
static void test_canonical_bytes(void **state)
{
	const char *names[] = {"1.root", "2.root", "targets", "snapshot", "timestamp", "director-targets"};
	for (size_t i = 0; i < GN_ARRAY_LEN(names); i++) {
		gn_err err;
		char file[64], canon[64];
		snprintf(file, sizeof(file), "%s.json", names[i]);
		snprintf(canon, sizeof(canon), "%s.canonical", names[i]);
		json_t *env = envelope(file);
		size_t want_len, got_len;
		char *want = fixture(canon, &want_len), *got = NULL;
		assert_int_equal(gn_json_canonical(&got, &got_len, json_object_get(env, "signed"), &err), 0);
		if (got_len != want_len || memcmp(got, want, want_len) != 0)
			fail_msg("%s: canonical JSON differs from securesystemslib's:\n got: %.*s\nwant: %s", names[i],
				 (int)got_len, got, want);
		free(got);
		free(want);
		json_decref(env);
	}
}

static void test_metadata_made_elsewhere_verifies(void **state)
{
	gn_err err;
	json_t *root1 = envelope("1.root.json"), *root2 = envelope("2.root.json");
	json_t *targets = envelope("targets.json"), *snapshot = envelope("snapshot.json");
	json_t *timestamp = envelope("timestamp.json");
	/* Root 1 is self-signed to its threshold; root 2 follows it (old and new keys sign it). */
	if (gn_tufc_check_role(root1, "root", root1, NULL, NOW, &err))
		fail_msg("1.root.json: %s", err.msg);
	if (gn_tufc_root_update(root1, root2, &err))
		fail_msg("2.root.json: %s", err.msg);
	if (gn_tufc_check_role(root2, "root", root2, NULL, NOW, &err))
		fail_msg("2.root.json: %s", err.msg);
	/* timestamp -> snapshot (version, length, SHA-256 of the exact bytes) -> targets. */
	const json_t *roles[][2] = {{timestamp, NULL}, {snapshot, NULL}, {targets, NULL}};
	const char *names[] = {"timestamp", "snapshot", "targets"};
	for (size_t i = 0; i < 3; i++)
		if (gn_tufc_check_role(root2, names[i], roles[i][0], NULL, NOW, &err))
			fail_msg("%s.json: %s", names[i], err.msg);
	size_t sn_len;
	char *sn_bytes = fixture("snapshot.json", &sn_len);
	if (gn_tufc_snapshot_matches(timestamp, snapshot, sn_bytes, sn_len, &err))
		fail_msg("snapshot.json against timestamp.json: %s", err.msg);
	assert_int_equal(gn_tufc_targets_matches(snapshot, targets, &err), 0);
	/* Some other bytes for the snapshot: refused. */
	sn_bytes[sn_len - 2] = sn_bytes[sn_len - 2] == '}' ? ' ' : '}';
	assert_int_equal(gn_tufc_snapshot_matches(timestamp, snapshot, sn_bytes, sn_len, &err), GN_EAUTH);
	free(sn_bytes);
	/* The threshold count of lib/tuf.c on them. */
	size_t n = 0;
	const json_t *rs = json_object_get(root2, "signed");
	const json_t *rootrole = json_object_get(json_object_get(rs, "roles"), "root");
	assert_int_equal(
		gn_tuf_count_valid(&n, root2, json_object_get(rs, "keys"), json_object_get(rootrole, "keyids"), &err),
		0);
	assert_int_equal(n, 2); /* k0 and k4; k1's signature counts only for root 1 */
	assert_int_equal(gn_tuf_verify_role(targets, rs, "targets", &err), 0);
	assert_int_equal(gn_tuf_verify_role(targets, rs, "snapshot", &err), GN_EAUTH);
	/* A target as the agent looks it up (a path with non-ASCII bytes too). */
	const json_t *t = gn_tufc_target(targets, "models/det/2.0.0/m\xc3\xa9t\xc3\xa9o.bin");
	assert_non_null(t);
	assert_int_equal(json_integer_value(json_object_get(t, "length")), 0);
	json_t *objs[] = {root1, root2, targets, snapshot, timestamp};
	for (size_t i = 0; i < GN_ARRAY_LEN(objs); i++)
		json_decref(objs[i]);
}

/* Changes made after securesystemslib signed are refused, each for its reason. */
static void test_changed_metadata_is_refused(void **state)
{
	gn_err err;
	json_t *root1 = envelope("1.root.json"), *root2 = envelope("2.root.json");
	json_t *targets = envelope("targets.json");

	/* A byte of the signed content: here the unicode in a custom value. */
	json_t *t = json_deep_copy(targets);
	json_t *custom = json_object_get(json_object_get(json_object_get(json_object_get(t, "signed"), "targets"),
							 "models/det/1.0.0/model.onnx"),
					 "custom");
	const char *note = json_string_value(json_object_get(custom, "note"));
	char *changed = strdup(note);
	changed[1] = 'u'; /* "Zürich": the first byte of "ü" */
	json_object_set_new(custom, "note", json_string_nocheck(changed));
	free(changed);
	assert_int_equal(gn_tufc_check_role(root2, "targets", t, NULL, NOW, &err), GN_EAUTH);
	json_decref(t);

	/* The signature: one bit. */
	t = json_deep_copy(targets);
	json_t *sig = json_object_get(json_array_get(json_object_get(t, "signatures"), 0), "sig");
	char *s = strdup(json_string_value(sig));
	s[10] = s[10] == '0' ? '1' : '0';
	json_string_set(sig, s);
	free(s);
	assert_int_equal(gn_tufc_check_role(root2, "targets", t, NULL, NOW, &err), GN_EAUTH);
	json_decref(t);

	/* Expired (the fixtures expire in 2030), and a rollback below a trusted version. */
	assert_int_equal(gn_tufc_check_role(root2, "targets", targets, NULL, AFTER_2030, &err), GN_EAUTH);
	assert_non_null(strstr(err.msg, "expired"));
	t = json_deep_copy(targets);
	json_object_set_new(json_object_get(t, "signed"), "version", json_integer(4));
	assert_int_equal(gn_tufc_check_role(root2, "targets", targets, t, NOW, &err), GN_EAUTH);
	json_decref(t);

	/* Root 2 needs root 1's threshold too: only the new keys' signatures are not enough. */
	json_t *r2 = json_deep_copy(root2);
	json_t *sigs = json_object_get(r2, "signatures");
	const char *k1 = json_string_value(json_array_get(
		json_object_get(json_object_get(json_object_get(json_object_get(root1, "signed"), "roles"), "root"),
				"keyids"),
		1));
	for (size_t i = json_array_size(sigs); i-- > 0;)
		if (strcmp(json_string_value(json_object_get(json_array_get(sigs, i), "keyid")), k1) == 0)
			json_array_remove(sigs, i);
	assert_int_equal(json_array_size(sigs), 2);
	assert_int_equal(gn_tufc_root_update(root1, r2, &err), GN_EAUTH);
	/* Root 1 after root 2: not the next version. */
	assert_int_equal(gn_tufc_root_update(root2, root1, &err), GN_EAUTH);
	json_decref(r2);
	json_decref(root1);
	json_decref(root2);
	json_decref(targets);
}

/* The director's targets (signed by the director's key, made elsewhere) name a target the image
 * repository signed with the same length and hash. */
static void test_director_targets_made_elsewhere(void **state)
{
	gn_err err;
	json_t *image = envelope("targets.json"), *director = envelope("director-targets.json");
	const char *path = "models/det/1.0.0/model.onnx";
	const json_t *entry = gn_tufc_target(director, path);
	assert_non_null(entry);
	if (gn_tufc_director_target_ok(image, path, entry, &err))
		fail_msg("%s", err.msg);
	json_t *longer = json_deep_copy(entry);
	json_object_set_new(longer, "length", json_integer(json_integer_value(json_object_get(entry, "length")) + 1));
	assert_int_equal(gn_tufc_director_target_ok(image, path, longer, &err), GN_EAUTH);
	json_decref(longer);
	assert_int_equal(gn_tufc_director_target_ok(image, "models/det/9.9.9/model.onnx", entry, &err), GN_EAUTH);
	/* Under a root that gives k5 the targets role, the director's signature verifies. */
	json_t *keys = NULL;
	size_t len;
	char *bytes = fixture("keys.json", &len);
	json_error_t je;
	keys = json_loadb(bytes, len, 0, &je);
	free(bytes);
	json_t *k5 = json_object_get(keys, "k5");
	json_t *rs = json_pack("{s:{s:O},s:{s:{s:[s],s:i}}}", "keys", json_string_value(json_object_get(k5, "keyid")),
			       json_object_get(k5, "key"), "roles", "targets", "keyids",
			       json_string_value(json_object_get(k5, "keyid")), "threshold", 1);
	assert_non_null(rs);
	assert_int_equal(gn_tuf_verify_role(director, rs, "targets", &err), 0);
	assert_int_equal(gn_tuf_verify_role(image, rs, "targets", &err), GN_EAUTH);
	json_decref(rs);
	json_decref(keys);
	json_decref(image);
	json_decref(director);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_ids),
		cmocka_unit_test(test_canonical_bytes),
		cmocka_unit_test(test_metadata_made_elsewhere_verifies),
		cmocka_unit_test(test_changed_metadata_is_refused),
		cmocka_unit_test(test_director_targets_made_elsewhere),
	};
	return cmocka_run_group_tests_name("tuf_vectors", tests, NULL, NULL);
}
