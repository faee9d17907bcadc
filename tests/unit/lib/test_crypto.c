/* Unit tests for lib/crypto.c: hashing (token storage), hex, tokens, Ed25519, atomic writes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "crypto.h"

static void test_sha256_vectors(void **state)
{
	char hex[65];
	gn_sha256_hex(hex, "", 0);
	assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	gn_sha256_hex(hex, "abc", 3);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

/* Tokens are stored as their SHA-256: same token, same hash; different token, different hash. */
static void test_token_hashing(void **state)
{
	gn_err err;
	char *a = gn_token_new("gna_", &err), *b = gn_token_new("gna_", &err);
	char ha[65], hb[65], ha2[65];
	assert_non_null(a);
	assert_int_equal(strlen(a), 4 + 43);
	assert_memory_equal(a, "gna_", 4);
	for (const char *p = a + 4; *p; p++)
		assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *p));
	assert_string_not_equal(a, b);
	gn_sha256_hex(ha, a, strlen(a));
	gn_sha256_hex(ha2, a, strlen(a));
	gn_sha256_hex(hb, b, strlen(b));
	assert_string_equal(ha, ha2);
	assert_string_not_equal(ha, hb);
	assert_null(strstr(ha, a + 4));
	free(a);
	free(b);
}

static void test_hex(void **state)
{
	unsigned char raw[3] = {0x00, 0xab, 0xff}, back[3];
	char hex[7];
	gn_hex_encode(hex, raw, 3);
	assert_string_equal(hex, "00abff");
	assert_int_equal(gn_hex_decode(back, 3, "00ABff"), 0);
	assert_memory_equal(raw, back, 3);
	assert_int_equal(gn_hex_decode(back, 3, "00abf"), GN_EINVAL);
	assert_int_equal(gn_hex_decode(back, 3, "00abfg"), GN_EINVAL);
	assert_int_equal(gn_hex_decode(back, 3, "00abff00"), GN_EINVAL);
}

static void test_ed25519(void **state)
{
	gn_ed25519_key *k = NULL, *k2 = NULL;
	gn_err err;
	unsigned char pub[32], sig[64];
	const char *msg = "ganglion-device-auth:v1:x:y";
	assert_int_equal(gn_ed25519_generate(&k, &err), 0);
	gn_ed25519_public(pub, k);
	assert_int_equal(gn_ed25519_sign(sig, k, msg, strlen(msg), &err), 0);
	assert_int_equal(gn_ed25519_verify(pub, msg, strlen(msg), sig, &err), 0);
	assert_int_equal(gn_ed25519_verify(pub, msg, strlen(msg) - 1, sig, &err), GN_EAUTH);
	sig[10] ^= 1;
	assert_int_equal(gn_ed25519_verify(pub, msg, strlen(msg), sig, &err), GN_EAUTH);

	char path[] = "/tmp/gn-test-key-XXXXXX";
	int fd = mkstemp(path);
	close(fd);
	assert_int_equal(gn_ed25519_save(k, path, &err), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(gn_ed25519_load(&k2, path, &err), 0);
	unsigned char pub2[32];
	gn_ed25519_public(pub2, k2);
	assert_memory_equal(pub, pub2, 32);
	unlink(path);
	assert_int_equal(gn_ed25519_load(&k2 /* unchanged on failure */, "/nonexistent", &err), GN_ENOTFOUND);
	gn_ed25519_key_free(k);
	gn_ed25519_key_free(k2);
}

static void test_atomic_write(void **state)
{
	gn_err err;
	char path[] = "/tmp/gn-test-atomic-XXXXXX";
	int fd = mkstemp(path);
	close(fd);
	assert_int_equal(gn_file_write_atomic(path, "hello", 5, 0640, &err), 0);
	FILE *f = fopen(path, "r");
	char buf[16] = {0};
	assert_int_equal(fread(buf, 1, sizeof(buf), f), 5);
	fclose(f);
	assert_string_equal(buf, "hello");
	unlink(path);
	assert_int_equal(gn_file_write_atomic("/nonexistent-dir/x", "a", 1, 0600, &err), GN_ERROR);
}

static void test_sha256_file(void **state)
{
	gn_err err;
	char hex[65];
	uint64_t len = 99;
	char path[] = "/tmp/gn-test-sha-XXXXXX";
	int fd = mkstemp(path);
	assert_int_equal(write(fd, "abc", 3), 3);
	close(fd);
	assert_int_equal(gn_sha256_file(hex, &len, path, NULL, NULL, &err), 0);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_int_equal(len, 3);
	unlink(path);
	assert_int_equal(gn_sha256_file(hex, &len, path, NULL, NULL, &err), GN_ENOTFOUND);
	assert_int_equal(gn_sha256_file(hex, &len, "/tmp", NULL, NULL, &err), GN_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha256_vectors),
		cmocka_unit_test(test_token_hashing),
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_ed25519),
		cmocka_unit_test(test_atomic_write),
		cmocka_unit_test(test_sha256_file),
	};
	return cmocka_run_group_tests_name("crypto", tests, NULL, NULL);
}
