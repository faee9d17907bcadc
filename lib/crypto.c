/* SHA-256, random tokens, hex and Ed25519 via OpenSSL 3 EVP. */
#include "crypto.h"
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

struct gn_ed25519_key {
	EVP_PKEY *pkey;
};

void gn_sha256_hex(char out[GN_SHA256_HEX_LEN + 1], const void *data, size_t len)
{
	unsigned char md[GN_SHA256_LEN];
	unsigned int mdlen = 0;
	EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
	gn_hex_encode(out, md, GN_SHA256_LEN);
}

int gn_sha256_file(char out[GN_SHA256_HEX_LEN + 1], uint64_t *out_len, const char *path, gn_progress_fn progress,
		   void *ud, gn_err *err)
{
	int error = 0;
	unsigned char *buf = gn_malloc(1 << 20), md[GN_SHA256_LEN];
	unsigned int mdlen;
	uint64_t total = 0;
	struct stat st;
	EVP_MD_CTX *ctx = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		error = gn_err_set(err, GN_ENOTFOUND, "cannot open %s: %s", path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		error = gn_err_set(err, GN_EINVAL, "%s is not a regular file", path);
		goto out;
	}
	if (!(ctx = EVP_MD_CTX_new()) || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		abort(); /* only fails on allocation */
	for (;;) {
		ssize_t n = read(fd, buf, 1 << 20);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			error = gn_err_set(err, GN_ERROR, "cannot read %s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		EVP_DigestUpdate(ctx, buf, (size_t)n);
		total += (uint64_t)n;
		if (progress)
			progress(ud, total, (uint64_t)st.st_size);
	}
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	gn_hex_encode(out, md, sizeof(md));
	if (out_len)
		*out_len = total;
out:
	EVP_MD_CTX_free(ctx);
	free(buf);
	if (fd >= 0)
		close(fd);
	return error;
}

void gn_hex_encode(char *out, const unsigned char *in, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * len] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int gn_hex_decode(unsigned char *out, size_t outlen, const char *hex)
{
	if (strlen(hex) != 2 * outlen)
		return GN_EINVAL;
	for (size_t i = 0; i < outlen; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return GN_EINVAL;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

int gn_random_bytes(void *buf, size_t len, gn_err *err)
{
	if (RAND_bytes(buf, (int)len) != 1)
		return gn_err_set(err, GN_ERROR, "random number generator failed");
	return 0;
}

char *gn_token_new(const char *prefix, gn_err *err)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char raw[33];
	char body[45];
	if (gn_random_bytes(raw, sizeof(raw), err))
		return NULL;
	/* 33 bytes = 264 bits -> 44 chars; keep 43 (258 bits) for a fixed length. */
	size_t j = 0;
	for (size_t i = 0; i < sizeof(raw); i += 3) {
		uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
		body[j++] = b64[v >> 18 & 63];
		body[j++] = b64[v >> 12 & 63];
		body[j++] = b64[v >> 6 & 63];
		body[j++] = b64[v & 63];
	}
	body[43] = '\0';
	return gn_asprintf("%s%s", prefix, body);
}

bool gn_consttime_eq(const void *a, const void *b, size_t len)
{
	const unsigned char *x = a, *y = b;
	unsigned char d = 0;
	for (size_t i = 0; i < len; i++)
		d |= x[i] ^ y[i];
	return d == 0;
}

int gn_ed25519_verify(const unsigned char pub[GN_ED25519_PUB_LEN], const void *msg, size_t len,
		      const unsigned char sig[GN_ED25519_SIG_LEN], gn_err *err)
{
	int error = GN_EAUTH;
	EVP_MD_CTX *ctx = NULL;
	EVP_PKEY *pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, GN_ED25519_PUB_LEN);
	if (!pkey)
		return gn_err_set(err, GN_EINVAL, "not a valid Ed25519 public key");
	ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) != 1) {
		error = gn_err_set(err, GN_ERROR, "cannot initialise Ed25519 verification");
		goto out;
	}
	/* Only 1 means valid; 0 is a bad signature and negative values are errors. */
	if (EVP_DigestVerify(ctx, sig, GN_ED25519_SIG_LEN, msg, len) == 1)
		error = 0;
	else
		gn_err_set(err, GN_EAUTH, "signature does not verify");
out:
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	return error;
}

int gn_ed25519_generate(gn_ed25519_key **out, gn_err *err)
{
	EVP_PKEY *pkey = NULL;
	EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
	if (!pctx || EVP_PKEY_keygen_init(pctx) != 1 || EVP_PKEY_keygen(pctx, &pkey) != 1) {
		EVP_PKEY_CTX_free(pctx);
		return gn_err_set(err, GN_ERROR, "Ed25519 key generation failed");
	}
	EVP_PKEY_CTX_free(pctx);
	*out = gn_malloc(sizeof(**out));
	(*out)->pkey = pkey;
	return 0;
}

int gn_ed25519_load(gn_ed25519_key **out, const char *path, gn_err *err)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return gn_err_set(err, GN_ENOTFOUND, "cannot open key %s: %s", path, strerror(errno));
	EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (!pkey || EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519) {
		EVP_PKEY_free(pkey);
		return gn_err_set(err, GN_EINVAL, "%s is not an Ed25519 private key in PEM form", path);
	}
	*out = gn_malloc(sizeof(**out));
	(*out)->pkey = pkey;
	return 0;
}

int gn_ed25519_from_pem(gn_ed25519_key **out, const char *pem, size_t len, gn_err *err)
{
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	EVP_PKEY *pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	if (!pkey || EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519) {
		EVP_PKEY_free(pkey);
		return gn_err_set(err, GN_EINVAL, "not an Ed25519 private key in PEM form");
	}
	*out = gn_malloc(sizeof(**out));
	(*out)->pkey = pkey;
	return 0;
}

char *gn_ed25519_to_pem(const gn_ed25519_key *key)
{
	char *data = NULL, *copy;
	BIO *bio = BIO_new(BIO_s_mem());
	if (!bio || PEM_write_bio_PrivateKey(bio, key->pkey, NULL, NULL, 0, NULL, NULL) != 1)
		abort(); /* only fails on allocation */
	long len = BIO_get_mem_data(bio, &data);
	copy = gn_strndup(data, (size_t)len);
	BIO_free(bio);
	return copy;
}

int gn_ed25519_save(const gn_ed25519_key *key, const char *path, gn_err *err)
{
	char *pem = gn_ed25519_to_pem(key);
	int error = gn_file_write_atomic(path, pem, strlen(pem), 0600, err);
	free(pem);
	return error;
}

void gn_ed25519_public(unsigned char out[GN_ED25519_PUB_LEN], const gn_ed25519_key *key)
{
	size_t len = GN_ED25519_PUB_LEN;
	EVP_PKEY_get_raw_public_key(key->pkey, out, &len);
}

int gn_ed25519_sign(unsigned char sig[GN_ED25519_SIG_LEN], const gn_ed25519_key *key, const void *msg, size_t len,
		    gn_err *err)
{
	int error = 0;
	size_t siglen = GN_ED25519_SIG_LEN;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestSignInit(ctx, NULL, NULL, NULL, key->pkey) != 1 ||
	    EVP_DigestSign(ctx, sig, &siglen, msg, len) != 1 || siglen != GN_ED25519_SIG_LEN)
		error = gn_err_set(err, GN_ERROR, "Ed25519 signing failed");
	EVP_MD_CTX_free(ctx);
	return error;
}

void gn_ed25519_key_free(gn_ed25519_key *key)
{
	if (!key)
		return;
	EVP_PKEY_free(key->pkey);
	free(key);
}
