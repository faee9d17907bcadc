/* The S3 backend of the artifact store (see artifacts.h); only artifacts.c calls it. */
#ifndef GD_ARTIFACTS_S3_H
#define GD_ARTIFACTS_S3_H

#include "artifacts.h"

typedef struct s3_upload s3_upload;

/* True for a 64-character lower-case hex name. */
bool artifacts_is_digest(const char *name);

int artifacts_s3_init(const struct artifacts_settings *s, gn_err *err) GN_WUR;
/* Waits (a few seconds at most) for streams in flight, then frees the backend. */
void artifacts_s3_cleanup(void);
int artifacts_s3_sweep_temp(int64_t before, gn_err *err) GN_WUR;
int artifacts_s3_list(char ***out, size_t *out_n, int64_t before, gn_err *err) GN_WUR;
int artifacts_s3_remove(const char *digest, gn_err *err) GN_WUR;
int artifacts_s3_size(uint64_t *out, const char *digest, gn_err *err) GN_WUR;
int artifacts_s3_stream(int *out_fd, const char *digest, uint64_t off, uint64_t len, gn_err *err) GN_WUR;
int artifacts_s3_begin(s3_upload **out, gn_err *err) GN_WUR;
int artifacts_s3_write(s3_upload *up, const void *buf, size_t len, gn_err *err) GN_WUR;
int artifacts_s3_finish(s3_upload *up, const char *digest, gn_err *err) GN_WUR;
/* Stores the upload under its digest and frees it. */
int artifacts_s3_commit(s3_upload *up, gn_err *err) GN_WUR;
/* Drops what the upload stored (multipart upload or temp object) and frees it. */
void artifacts_s3_abort(s3_upload *up);

#endif
