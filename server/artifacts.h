/* The content-addressed artifact store: DATA_DIR/artifacts/sha256/ab/abcdef… Uploads stream into
 * a temp file under DATA_DIR/artifacts/tmp while SHA-256 and length are computed; only a complete,
 * fsynced file is renamed into place, so no path ever holds a partial artifact. */
#ifndef GD_ARTIFACTS_H
#define GD_ARTIFACTS_H

#include "common.h"
#include "crypto.h"

typedef struct artifact_upload artifact_upload;

/* Creates the store's directories and removes temp files left by a crash: those unchanged for
 * grace_s seconds (a replica sharing the directory may be writing a younger one). */
int artifacts_init(const char *data_dir, int64_t grace_s, gn_err *err) GN_WUR;
/* Lists the digests of the stored files last changed before `before` (epoch seconds): *out is a
 * new array of new strings (free each, then the array), *out_n its length. */
int artifacts_list(char ***out, size_t *out_n, int64_t before, gn_err *err) GN_WUR;
/* Deletes the stored file of digest (none there is fine). Only under the digest's lock, with no
 * committed version referencing it: see models_sweep_artifacts. */
int artifacts_remove(const char *digest, gn_err *err) GN_WUR;
/* Returns the path of the artifact with this digest (new); it may not exist. */
char *artifacts_path(const char *digest);
/* Starts an upload (new; finish with artifacts_commit or artifacts_abort). */
int artifacts_begin(artifact_upload **out, gn_err *err) GN_WUR;
/* Appends bytes, hashing them; GN_ETOOBIG past max bytes. */
int artifacts_write(artifact_upload *up, const void *buf, size_t len, uint64_t max, gn_err *err) GN_WUR;
/* Flushes and fsyncs; fills the digest (hex) and length. */
int artifacts_finish(artifact_upload *up, char digest[GN_SHA256_HEX_LEN + 1], uint64_t *out_len, gn_err *err) GN_WUR;
/* Moves a finished upload into place (identical content is stored once) and frees it. */
int artifacts_commit(artifact_upload *up, gn_err *err) GN_WUR;
/* Deletes the temp file and frees the upload; NULL is fine. */
void artifacts_abort(artifact_upload *up);

#endif
