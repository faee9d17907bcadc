/* Hashing, randomness, hex, and Ed25519 through OpenSSL's EVP interface. */
#ifndef GN_CRYPTO_H
#define GN_CRYPTO_H

#include "common.h"
/* gn_file_write_atomic lived here; kept visible for the files that still look for it here. */
#include "fileio.h"

#define GN_SHA256_LEN 32
#define GN_SHA256_HEX_LEN 64
#define GN_ED25519_PUB_LEN 32
#define GN_ED25519_SIG_LEN 64

/* Writes the SHA-256 of data as 64 lower-case hex digits plus NUL into out (65 bytes). */
void gn_sha256_hex(char out[GN_SHA256_HEX_LEN + 1], const void *data, size_t len);
/* Called as a file is read: bytes done so far of total. */
typedef void (*gn_progress_fn)(void *ud, uint64_t done, uint64_t total);
/* Computes the SHA-256 (hex) and length of the regular file at path, reading it in pieces;
 * progress (may be NULL) is told as it goes. GN_ENOTFOUND when it cannot be opened, GN_EINVAL
 * when it is not a regular file. */
int gn_sha256_file(char out[GN_SHA256_HEX_LEN + 1], uint64_t *out_len, const char *path, gn_progress_fn progress,
		   void *ud, gn_err *err) GN_WUR;
/* Writes len bytes as lower-case hex plus NUL into out (2*len+1 bytes). */
void gn_hex_encode(char *out, const unsigned char *in, size_t len);
/* Decodes exactly outlen bytes from hex; GN_EINVAL on bad length or digit. */
int gn_hex_decode(unsigned char *out, size_t outlen, const char *hex) GN_WUR;
/* Fills buf with cryptographically strong random bytes. */
int gn_random_bytes(void *buf, size_t len, gn_err *err) GN_WUR;
/* Returns a new random token: prefix followed by 43 url-safe base64 characters (256 bits). */
char *gn_token_new(const char *prefix, gn_err *err);
/* Compares two equal-length buffers in constant time; true when equal. */
bool gn_consttime_eq(const void *a, const void *b, size_t len);

/* Checks an Ed25519 signature; 0 when valid, GN_EAUTH when not, GN_EINVAL for a bad key. */
int gn_ed25519_verify(const unsigned char pub[GN_ED25519_PUB_LEN], const void *msg, size_t len,
		      const unsigned char sig[GN_ED25519_SIG_LEN], gn_err *err) GN_WUR;

typedef struct gn_ed25519_key gn_ed25519_key;
/* Generates a new key pair (new; gn_ed25519_key_free). */
int gn_ed25519_generate(gn_ed25519_key **out, gn_err *err) GN_WUR;
/* Loads a PEM private key file (new). */
int gn_ed25519_load(gn_ed25519_key **out, const char *path, gn_err *err) GN_WUR;
/* Parses a PEM private key from memory (new). */
int gn_ed25519_from_pem(gn_ed25519_key **out, const char *pem, size_t len, gn_err *err) GN_WUR;
/* Returns the private key as PEM text (new). */
char *gn_ed25519_to_pem(const gn_ed25519_key *key);
/* Writes the private key as PEM, mode 0600, atomically (temp file, fsync, rename). */
int gn_ed25519_save(const gn_ed25519_key *key, const char *path, gn_err *err) GN_WUR;
/* Copies the raw 32-byte public key into out. */
void gn_ed25519_public(unsigned char out[GN_ED25519_PUB_LEN], const gn_ed25519_key *key);
/* Signs msg into sig. */
int gn_ed25519_sign(unsigned char sig[GN_ED25519_SIG_LEN], const gn_ed25519_key *key, const void *msg, size_t len,
		    gn_err *err) GN_WUR;
void gn_ed25519_key_free(gn_ed25519_key *key);

#endif
