/* Unit tests for lib/tuf.c: key ids, signing and threshold counting, and that a count which
 * skips unusable keys succeeds without leaving a message in err. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "tuf.h"

static gn_ed25519_key *keys[2];
static char ids[2][GN_SHA256_HEX_LEN + 1];

static json_t *key_obj(int i)
{
	unsigned char pub[GN_ED25519_PUB_LEN];
	gn_ed25519_public(pub, keys[i]);
	return gn_tuf_key_json(pub);
}

static int setup(void **state)
{
	gn_err err;
	for (int i = 0; i < 2; i++) {
		assert_int_equal(gn_ed25519_generate(&keys[i], &err), 0);
		json_t *k = key_obj(i);
		assert_int_equal(gn_tuf_keyid(ids[i], k, &err), 0);
		json_decref(k);
	}
	return 0;
}

static int teardown(void **state)
{
	for (int i = 0; i < 2; i++)
		gn_ed25519_key_free(keys[i]);
	return 0;
}

/* Returns {"targets": 1} signed by keys[0..n) (new). */
static json_t *signed_env(size_t n)
{
	json_t *part = json_pack("{s:s,s:i}", "_type", "targets", "version", 1), *env = NULL;
	gn_err err;
	assert_int_equal(gn_tuf_sign(&env, part, keys, n, &err), 0);
	json_decref(part);
	return env;
}

static void test_keyid_is_the_hash_of_the_key(void **state)
{
	char id[GN_SHA256_HEX_LEN + 1];
	gn_err err;
	json_t *k = key_obj(0);
	assert_int_equal(gn_tuf_keyid(id, k, &err), 0);
	assert_string_equal(id, ids[0]);
	assert_int_equal(strlen(id), 64);
	assert_string_not_equal(ids[0], ids[1]);
	/* Canonical JSON has no real numbers: such a key has no id. */
	json_object_set_new(k, "x", json_real(1.5));
	assert_int_equal(gn_tuf_keyid(id, k, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "real numbers"));
	json_decref(k);
}

static void test_count_and_threshold(void **state)
{
	json_t *env = signed_env(2), *ks = json_object(), *role = json_pack("[s,s,s]", ids[0], ids[1], ids[0]);
	size_t n = 9;
	gn_err err;
	json_object_set_new(ks, ids[0], key_obj(0));
	json_object_set_new(ks, ids[1], key_obj(1));
	assert_int_equal(gn_tuf_count_valid(&n, env, ks, role, &err), 0);
	assert_int_equal(n, 2); /* a key listed twice counts once */
	json_t *root =
		json_pack("{s:O,s:{s:{s:O,s:i}}}", "keys", ks, "roles", "targets", "keyids", role, "threshold", 3);
	assert_int_equal(gn_tuf_verify_role(env, root, "targets", &err), GN_EAUTH);
	assert_non_null(strstr(err.msg, "2 valid signature(s), the threshold is 3"));
	json_decref(root);
	json_decref(role);
	json_decref(ks);
	json_decref(env);
}

/* A key that cannot even be hashed (a real number in it) is skipped like any key that is not
 * what it claims; the count still succeeds, and err keeps no message from the skipped key. */
static void test_skipped_key_leaves_err_untouched(void **state)
{
	json_t *env = signed_env(1), *ks = json_object(), *bad = key_obj(1);
	json_t *role = json_pack("[s,s]", "bad", ids[0]);
	size_t n = 9;
	gn_err err = {.code = 1, .msg = "untouched"};
	json_object_set_new(json_object_get(bad, "keyval"), "x", json_real(0.5));
	json_object_set_new(ks, "bad", bad);
	json_object_set_new(ks, ids[0], key_obj(0));
	assert_int_equal(gn_tuf_count_valid(&n, env, ks, role, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(err.code, 1);
	assert_string_equal(err.msg, "untouched");

	json_t *root =
		json_pack("{s:O,s:{s:{s:O,s:i}}}", "keys", ks, "roles", "targets", "keyids", role, "threshold", 1);
	assert_int_equal(gn_tuf_verify_role(env, root, "targets", &err), 0);
	assert_string_equal(err.msg, "untouched");
	json_decref(root);
	json_decref(role);
	json_decref(ks);
	json_decref(env);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keyid_is_the_hash_of_the_key),
		cmocka_unit_test(test_count_and_threshold),
		cmocka_unit_test(test_skipped_key_leaves_err_untouched),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
