/* The content-addressed artifact store, on the backend `artifact-store` chooses:
 * - dir: DIR/sha256/ab/abcdef… in a directory: DATA_DIR/artifacts, or artifact-dir, which every
 *   replica mounts (NFS, CephFS, any POSIX shared file system). Uploads stream into DIR/tmp while
 *   SHA-256 and length are computed; only a complete, fsynced file is renamed into place, so no
 *   path ever holds a partial artifact.
 * - s3: objects PREFIX/sha256/ab/abcdef… in an S3-compatible bucket, each request signed with
 *   AWS SigV4 by libcurl. An upload smaller than a part is kept in memory and PUT under its
 *   content address once its digest is known; a larger one streams as a multipart upload to
 *   PREFIX/tmp/upload-…, and is copied under its content address (server side) when committed.
 * Nothing here assumes that a temp file or object it did not create is garbage: another replica
 * may be writing it. */
#ifndef GD_ARTIFACTS_H
#define GD_ARTIFACTS_H

#include "common.h"
#include "crypto.h"

typedef struct artifact_upload artifact_upload;

enum artifacts_kind { ARTIFACTS_DIR, ARTIFACTS_S3 };

struct artifacts_settings {
	enum artifacts_kind kind;
	const char *dir;           /* dir: the store's directory */
	const char *s3_url;        /* s3: http(s)://host[:port]/bucket[/prefix] (path-style addressing) */
	const char *s3_region;     /* s3: the SigV4 region */
	const char *s3_access_key; /* s3 */
	const char *s3_secret_key; /* s3 */
	int64_t s3_part_size;      /* s3: bytes per multipart part (and the in-memory threshold) */
	int64_t s3_timeout_s;      /* s3: a request that moves no byte for this long fails */
};

/* Checks and parses an S3 URL: GN_EINVAL with a message when it is not
 * http(s)://host[:port]/bucket[/prefix] with a plain bucket name and prefix. */
int artifacts_s3_url_check(const char *url, gn_err *err) GN_WUR;
/* Opens the store (copies what it needs from s): creates the directories (dir), or checks that
 * the bucket answers to these credentials (s3). */
int artifacts_init(const struct artifacts_settings *s, gn_err *err) GN_WUR;
/* Releases the store (at exit). */
void artifacts_cleanup(void);
/* Removes temp files (dir), temp objects and unfinished multipart uploads (s3) unchanged for
 * grace_s seconds: those are uploads that died with their process, while a younger one may be
 * another replica's upload in flight. Run under the sweep's advisory lock. */
int artifacts_sweep_temp(int64_t grace_s, gn_err *err) GN_WUR;
/* Lists the digests of the stored artifacts last changed before `before` (epoch seconds): *out
 * is a new array of new strings (free each, then the array), *out_n its length. */
int artifacts_list(char ***out, size_t *out_n, int64_t before, gn_err *err) GN_WUR;
/* Deletes the stored artifact of digest (none there is fine). Only under the digest's lock, with
 * no committed version referencing it: see models_sweep_artifacts. */
int artifacts_remove(const char *digest, gn_err *err) GN_WUR;

/* A stored artifact opened for reading. */
struct artifact_source {
	int fd;        /* dir: an open regular file (the caller's to close); s3: -1, read with artifacts_stream */
	uint64_t size; /* its length */
};
/* Opens the artifact with this digest: GN_ENOTFOUND when it is not stored, GN_EUNAVAIL when the
 * store does not answer. */
int artifacts_open(struct artifact_source *out, const char *digest, gn_err *err) GN_WUR;
/* s3: starts fetching bytes [off, off + len) of the artifact on a thread of its own and returns
 * in *out_fd the read end of a pipe that carries them (the caller's to close: closing it early
 * stops the fetch). Fewer than len bytes before the end of the pipe means the fetch failed. */
int artifacts_stream(int *out_fd, const char *digest, uint64_t off, uint64_t len, gn_err *err) GN_WUR;

/* Starts an upload (new; finish with artifacts_commit or artifacts_abort). */
int artifacts_begin(artifact_upload **out, gn_err *err) GN_WUR;
/* Appends bytes, hashing them; GN_ETOOBIG past max bytes. */
int artifacts_write(artifact_upload *up, const void *buf, size_t len, uint64_t max, gn_err *err) GN_WUR;
/* Makes what was written durable (fsync, or the last part and the multipart completion); fills
 * the digest (hex) and length. */
int artifacts_finish(artifact_upload *up, char digest[GN_SHA256_HEX_LEN + 1], uint64_t *out_len, gn_err *err) GN_WUR;
/* Moves a finished upload under its content address (identical content is stored once) and
 * frees it. Run under the digest's lock, before the row that references it commits. */
int artifacts_commit(artifact_upload *up, gn_err *err) GN_WUR;
/* Deletes the temp file (or object, or multipart upload) and frees the upload; NULL is fine. */
void artifacts_abort(artifact_upload *up);

#endif
