/* Unit tests for lib/crypto.c: hashing, hex, tokens, Ed25519, atomic writes. The expectations come
 * from outside the project: FIPS 180-2 digests, RFC 8032 Ed25519 vectors, Python's hashlib. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <dirent.h>
#include <openssl/evp.h>

#include "crypto.h"

/* FIPS 180-2 / NIST example messages: expectations from outside the project. */
static void test_sha256_vectors(void **state)
{
	char hex[65];
	gn_sha256_hex(hex, "", 0);
	assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	gn_sha256_hex(hex, "abc", 3);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	gn_sha256_hex(hex, two, strlen(two));
	assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	char *million = malloc(1000000);
	memset(million, 'a', 1000000);
	gn_sha256_hex(hex, million, 1000000);
	assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	free(million);
}

/* API tokens: prefix plus 43 url-safe base64 characters, each carrying 6 random bits (258 bits in
 * all, at least the 256 promised), never the same twice. */
static void test_token_format(void **state)
{
	gn_err err;
	enum { N = 2000 };
	char *tok[N];
	for (int i = 0; i < N; i++) {
		tok[i] = gn_token_new("gna_", &err);
		assert_non_null(tok[i]);
		assert_int_equal(strlen(tok[i]), 4 + 43);
		assert_memory_equal(tok[i], "gna_", 4);
		for (const char *p = tok[i] + 4; *p; p++)
			assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *p));
	}
	/* 2000 tokens of 256 bits: a repeat, or a character that never shows at a position, would
	 * mean little randomness. */
	int seen[43][128] = {{0}};
	for (int i = 0; i < N; i++) {
		for (int j = 0; j < i; j++)
			assert_string_not_equal(tok[i], tok[j]);
		for (int k = 0; k < 43; k++)
			seen[k][(unsigned char)tok[i][4 + k]]++;
	}
	for (int k = 0; k < 43; k++)
		for (const char *c = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"; *c; c++)
			if (seen[k][(unsigned char)*c] == 0)
				fail_msg("character '%c' never at position %d of %d tokens", *c, k, N);
	for (int i = 0; i < N; i++)
		free(tok[i]);
	char *dev = gn_token_new("gnd_", &err);
	assert_memory_equal(dev, "gnd_", 4);
	free(dev);
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

/* RFC 8032, section 7.1: secret key (the 32-byte seed), public key, message, signature. */
static const struct {
	const char *name, *seed, *pub, *msg, *sig;
} rfc8032[] = {
	{"TEST 1", "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
	 "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
	 "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe"
	 "24655141438e7a100b"},
	{"TEST 2", "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
	 "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
	 "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302a"
	 "eeb00d291612bb0c00"},
	{"TEST 3", "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
	 "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
	 "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed2"
	 "8dc027beceea1ec40a"},
	{"TEST SHA(abc)", "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
	 "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
	 "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce"
	 "80e2a9ac94fa54ca49f",
	 "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac1"
	 "7ad9bef1177331a704"},
};

/* A private key as PEM (PKCS#8, RFC 8410) from its 32-byte seed; new. */
static char *pem_from_seed(const unsigned char seed[32])
{
	static const unsigned char prefix[16] = {0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06,
						 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20};
	unsigned char der[48];
	unsigned char b64[80];
	memcpy(der, prefix, 16);
	memcpy(der + 16, seed, 32);
	int n = EVP_EncodeBlock(b64, der, sizeof(der));
	assert_int_equal(n, 64);
	char *pem = malloc(160);
	snprintf(pem, 160, "-----BEGIN PRIVATE KEY-----\n%s\n-----END PRIVATE KEY-----\n", (char *)b64);
	return pem;
}

static void test_ed25519_rfc8032_vectors(void **state)
{
	for (size_t i = 0; i < GN_ARRAY_LEN(rfc8032); i++) {
		gn_err err;
		unsigned char seed[32], pub[32], want_pub[32], sig[64], want_sig[64], msg[64];
		size_t mlen = strlen(rfc8032[i].msg) / 2;
		assert_int_equal(gn_hex_decode(seed, 32, rfc8032[i].seed), 0);
		assert_int_equal(gn_hex_decode(want_pub, 32, rfc8032[i].pub), 0);
		assert_int_equal(gn_hex_decode(want_sig, 64, rfc8032[i].sig), 0);
		if (mlen)
			assert_int_equal(gn_hex_decode(msg, mlen, rfc8032[i].msg), 0);
		/* Verification of the published signature with the published key. */
		if (gn_ed25519_verify(want_pub, msg, mlen, want_sig, &err))
			fail_msg("%s: the RFC's signature does not verify: %s", rfc8032[i].name, err.msg);
		/* The key from the seed, and its signature: Ed25519 is deterministic, byte for byte. */
		char *pem = pem_from_seed(seed);
		gn_ed25519_key *k = NULL;
		assert_int_equal(gn_ed25519_from_pem(&k, pem, strlen(pem), &err), 0);
		gn_ed25519_public(pub, k);
		assert_memory_equal(pub, want_pub, 32);
		assert_int_equal(gn_ed25519_sign(sig, k, msg, mlen, &err), 0);
		if (memcmp(sig, want_sig, 64) != 0) {
			char got[129];
			gn_hex_encode(got, sig, 64);
			fail_msg("%s: signature %s, RFC 8032 says %s", rfc8032[i].name, got, rfc8032[i].sig);
		}
		/* Any change to message, signature or key is refused. */
		unsigned char bad[64];
		memcpy(bad, want_sig, 64);
		bad[i * 7 % 64] ^= 0x01;
		assert_int_equal(gn_ed25519_verify(want_pub, msg, mlen, bad, &err), GN_EAUTH);
		unsigned char longer[65];
		memcpy(longer, msg, mlen);
		longer[mlen] = 0;
		assert_int_equal(gn_ed25519_verify(want_pub, longer, mlen + 1, want_sig, &err), GN_EAUTH);
		unsigned char other[32];
		assert_int_equal(gn_hex_decode(other, 32, rfc8032[(i + 1) % GN_ARRAY_LEN(rfc8032)].pub), 0);
		assert_int_equal(gn_ed25519_verify(other, msg, mlen, want_sig, &err), GN_EAUTH);
		free(pem);
		gn_ed25519_key_free(k);
	}
}

/* RFC 8032 5.1.7: S must be below the group order L. TEST 1's signature with S + L is the same
 * point arithmetic but a malleated encoding; it must not verify. */
static void test_ed25519_refuses_non_canonical_s(void **state)
{
	gn_err err;
	unsigned char pub[32], sig[64];
	assert_int_equal(gn_hex_decode(pub, 32, rfc8032[0].pub), 0);
	assert_int_equal(
		gn_hex_decode(sig, 64,
			      "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901554c8c7872aa064e049d"
			      "bb3013fbf29380d25bf5f0595bbe24655141438e7a101b"),
		0);
	assert_int_equal(gn_ed25519_verify(pub, "", 0, sig, &err), GN_EAUTH);
	/* All-zero key and signature: not a valid signature of anything. */
	memset(pub, 0, sizeof(pub));
	memset(sig, 0, sizeof(sig));
	assert_int_not_equal(gn_ed25519_verify(pub, "", 0, sig, &err), 0);
}

static void test_ed25519_keys(void **state)
{
	gn_ed25519_key *k = NULL, *k2 = NULL, *k3 = NULL;
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
	/* Two generated keys differ. */
	unsigned char pub3[32];
	assert_int_equal(gn_ed25519_generate(&k3, &err), 0);
	gn_ed25519_public(pub3, k3);
	assert_memory_not_equal(pub, pub3, 32);

	/* Saved with mode 0600 whatever the umask, and loaded back as the same key. */
	char path[] = "/tmp/gn-test-key-XXXXXX";
	int fd = mkstemp(path);
	close(fd);
	mode_t old = umask(0);
	assert_int_equal(gn_ed25519_save(k, path, &err), 0);
	umask(old);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(gn_ed25519_load(&k2, path, &err), 0);
	unsigned char pub2[32];
	gn_ed25519_public(pub2, k2);
	assert_memory_equal(pub, pub2, 32);
	/* The PEM round trip too. */
	char *pem = gn_ed25519_to_pem(k);
	assert_non_null(strstr(pem, "-----BEGIN PRIVATE KEY-----"));
	gn_ed25519_key_free(k2);
	k2 = NULL;
	assert_int_equal(gn_ed25519_from_pem(&k2, pem, strlen(pem), &err), 0);
	gn_ed25519_public(pub2, k2);
	assert_memory_equal(pub, pub2, 32);
	free(pem);
	unlink(path);
	gn_ed25519_key *none = NULL;
	assert_int_equal(gn_ed25519_load(&none, "/nonexistent", &err), GN_ENOTFOUND);
	assert_null(none);
	assert_int_not_equal(gn_ed25519_from_pem(&none, "not a key", 9, &err), 0);
	assert_null(none);
	gn_ed25519_key_free(k);
	gn_ed25519_key_free(k2);
	gn_ed25519_key_free(k3);
}

/* The file gets exactly the mode asked for, whatever the umask, replaces what was there, and no
 * temporary file is left beside it. */
static void test_atomic_write(void **state)
{
	gn_err err;
	char dir[] = "/tmp/gn-test-atomic-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[64];
	snprintf(path, sizeof(path), "%s/f", dir);
	FILE *f = fopen(path, "w");
	fputs("old content, longer than the new", f);
	fclose(f);
	const int modes[] = {0640, 0600, 0644, 0400};
	mode_t old = umask(077);
	for (size_t i = 0; i < GN_ARRAY_LEN(modes); i++) {
		assert_int_equal(gn_file_write_atomic(path, "hello", 5, modes[i], &err), 0);
		struct stat st;
		assert_int_equal(stat(path, &st), 0);
		if ((int)(st.st_mode & 07777) != modes[i])
			fail_msg("asked for mode %o, got %o (umask 077)", modes[i], st.st_mode & 07777);
		assert_int_equal(st.st_size, 5);
	}
	umask(old);
	f = fopen(path, "r");
	char buf[64] = {0};
	assert_int_equal(fread(buf, 1, sizeof(buf), f), 5);
	fclose(f);
	assert_string_equal(buf, "hello");
	DIR *d = opendir(dir);
	int entries = 0;
	for (struct dirent *e; (e = readdir(d));)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			entries++;
	closedir(d);
	assert_int_equal(entries, 1);
	unlink(path);
	rmdir(dir);
	assert_int_equal(gn_file_write_atomic("/nonexistent-dir/x", "a", 1, 0600, &err), GN_ERROR);
}

static void progress(void *ud, uint64_t done, uint64_t total)
{
	uint64_t *last = ud;
	assert_true(done >= last[0]); /* never goes back */
	last[0] = done;
	last[1] = total;
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
	/* Three 1 MiB pieces and one byte: the digest (from Python's hashlib) and the progress. */
	size_t big = (3u << 20) + 1;
	char *a = malloc(big);
	memset(a, 'a', big);
	FILE *f = fopen(path, "w");
	assert_int_equal(fwrite(a, 1, big, f), big);
	fclose(f);
	free(a);
	uint64_t last[2] = {0, 0};
	assert_int_equal(gn_sha256_file(hex, &len, path, progress, last, &err), 0);
	assert_string_equal(hex, "2b98b70051781969f52a33c9cd0e8392bb7a634a92a3be4597b25e13feb41ee6");
	assert_int_equal(len, big);
	assert_int_equal(last[0], big);
	assert_int_equal(last[1], big);
	unlink(path);
	assert_int_equal(gn_sha256_file(hex, &len, path, NULL, NULL, &err), GN_ENOTFOUND);
	assert_int_equal(gn_sha256_file(hex, &len, "/tmp", NULL, NULL, &err), GN_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha256_vectors),
		cmocka_unit_test(test_token_format),
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_ed25519_rfc8032_vectors),
		cmocka_unit_test(test_ed25519_refuses_non_canonical_s),
		cmocka_unit_test(test_ed25519_keys),
		cmocka_unit_test(test_atomic_write),
		cmocka_unit_test(test_sha256_file),
	};
	return cmocka_run_group_tests_name("crypto", tests, NULL, NULL);
}
