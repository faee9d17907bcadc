/* The artifact store's front and its directory backend: streaming, hashing, atomic writes into
 * DIR/sha256/ab/abcdef…; the S3 backend is artifacts_s3.c. */
#include "artifacts.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "artifacts_s3.h"
#include "fileio.h"
#include "log.h"

#define WRITE_BUF (1024 * 1024)

static enum artifacts_kind kind;
static char *root_dir; /* dir: the store's directory */

struct artifact_upload {
	EVP_MD_CTX *sha;
	uint64_t len;
	char digest[GN_SHA256_HEX_LEN + 1];
	/* dir: the temp file; small network chunks are gathered in buf so the disk sees large writes */
	int fd;
	char *tmp;
	unsigned char *buf;
	size_t buflen;
	s3_upload *s3; /* s3: the backend's upload */
};

static int mkdir_ok(const char *path, gn_err *err)
{
	if (mkdir(path, 0750) < 0 && errno != EEXIST)
		return gn_err_set(err, GN_ERROR, "cannot create %s: %s", path, strerror(errno));
	return 0;
}

/* True when the file at path was last changed before `before` (epoch seconds). */
static bool older_than(const char *path, int64_t before)
{
	struct stat st;
	return lstat(path, &st) == 0 && S_ISREG(st.st_mode) && (int64_t)st.st_mtime < before;
}

bool artifacts_is_digest(const char *name)
{
	return strlen(name) == GN_SHA256_HEX_LEN && strspn(name, "0123456789abcdef") == GN_SHA256_HEX_LEN;
}

int artifacts_init(const struct artifacts_settings *s, gn_err *err)
{
	int rc;
	artifacts_cleanup();
	kind = s->kind;
	if (kind == ARTIFACTS_S3)
		return artifacts_s3_init(s, err);
	root_dir = gn_strdup(s->dir);
	char *sha = gn_asprintf("%s/sha256", root_dir), *tmp = gn_asprintf("%s/tmp", root_dir);
	if (!(rc = mkdir_ok(root_dir, err)) && !(rc = mkdir_ok(sha, err)))
		rc = mkdir_ok(tmp, err);
	free(sha);
	free(tmp);
	return rc;
}

void artifacts_cleanup(void)
{
	if (kind == ARTIFACTS_S3)
		artifacts_s3_cleanup();
	free(root_dir);
	root_dir = NULL;
	kind = ARTIFACTS_DIR;
}

int artifacts_sweep_temp(int64_t grace_s, gn_err *err)
{
	int64_t before = gn_now() - grace_s;
	if (kind == ARTIFACTS_S3)
		return artifacts_s3_sweep_temp(before, err);
	/* Temp files belong to uploads that died with their process, unless they are still growing:
	 * with a shared artifact directory, another replica may be receiving one now. */
	char *tmp = gn_asprintf("%s/tmp", root_dir);
	DIR *d = opendir(tmp);
	struct dirent *e;
	if (!d) {
		int e2 = errno;
		free(tmp);
		return gn_err_set(err, GN_ERROR, "cannot read the artifact store's tmp directory: %s", strerror(e2));
	}
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, "upload-", 7) != 0)
			continue;
		char *p = gn_asprintf("%s/%s", tmp, e->d_name);
		if (older_than(p, before) && unlink(p) == 0)
			gn_log(GN_LOG_INFO, "event=artifact_tmp_removed file=%s", p);
		free(p);
	}
	closedir(d);
	free(tmp);
	return 0;
}

int artifacts_list(char ***out, size_t *out_n, int64_t before, gn_err *err)
{
	*out = NULL;
	*out_n = 0;
	if (kind == ARTIFACTS_S3)
		return artifacts_s3_list(out, out_n, before, err);
	char *sha = gn_asprintf("%s/sha256", root_dir);
	DIR *top = opendir(sha);
	struct dirent *e;
	char **list = NULL;
	size_t n = 0;
	if (!top) {
		int e2 = errno;
		free(sha);
		return gn_err_set(err, GN_ERROR, "cannot read the artifact store: %s", strerror(e2));
	}
	while ((e = readdir(top))) {
		if (strlen(e->d_name) != 2 || strspn(e->d_name, "0123456789abcdef") != 2)
			continue;
		char *sub = gn_asprintf("%s/%s", sha, e->d_name);
		DIR *d = opendir(sub);
		struct dirent *f;
		while (d && (f = readdir(d))) {
			if (!artifacts_is_digest(f->d_name) || strncmp(f->d_name, e->d_name, 2) != 0)
				continue;
			char *p = gn_asprintf("%s/%s", sub, f->d_name);
			if (older_than(p, before)) {
				list = gn_realloc(list, (n + 1) * sizeof(*list));
				list[n++] = gn_strdup(f->d_name);
			}
			free(p);
		}
		if (d)
			closedir(d);
		free(sub);
	}
	closedir(top);
	free(sha);
	*out = list;
	*out_n = n;
	return 0;
}

/* Returns the path of the artifact with this digest in the directory store (new). */
static char *file_path(const char *digest)
{
	return gn_asprintf("%s/sha256/%.2s/%s", root_dir, digest, digest);
}

int artifacts_remove(const char *digest, gn_err *err)
{
	if (kind == ARTIFACTS_S3)
		return artifacts_s3_remove(digest, err);
	char *path = file_path(digest);
	int rc = 0;
	if (unlink(path) < 0 && errno != ENOENT)
		rc = gn_err_set(err, GN_ERROR, "cannot remove %s: %s", path, strerror(errno));
	free(path);
	return rc;
}

int artifacts_open(struct artifact_source *out, const char *digest, gn_err *err)
{
	struct stat st;
	out->fd = -1;
	out->size = 0;
	if (kind == ARTIFACTS_S3)
		return artifacts_s3_size(&out->size, digest, err);
	char *path = file_path(digest);
	int fd = open(path, O_RDONLY | O_CLOEXEC), e = errno;
	free(path);
	if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		out->fd = fd;
		out->size = (uint64_t)st.st_size;
		return 0;
	}
	if (fd >= 0)
		close(fd);
	if (fd < 0 && e != ENOENT)
		return gn_err_set(err, GN_EUNAVAIL, "cannot open the stored artifact: %s", strerror(e));
	return gn_err_set(err, GN_ENOTFOUND, "no such artifact");
}

int artifacts_stream(int *out_fd, const char *digest, uint64_t off, uint64_t len, gn_err *err)
{
	*out_fd = -1;
	if (kind != ARTIFACTS_S3)
		return gn_err_set(err, GN_ERROR, "internal error: only the s3 store streams through a pipe");
	return artifacts_s3_stream(out_fd, digest, off, len, err);
}

int artifacts_begin(artifact_upload **out, gn_err *err)
{
	artifact_upload *up = gn_calloc(1, sizeof(*up));
	int rc;
	up->fd = -1;
	if (kind == ARTIFACTS_S3) {
		if ((rc = artifacts_s3_begin(&up->s3, err))) {
			free(up);
			return rc;
		}
	} else {
		up->tmp = gn_asprintf("%s/tmp/upload-XXXXXX", root_dir);
		up->fd = mkostemp(up->tmp, O_CLOEXEC);
		if (up->fd < 0) {
			int e = errno;
			free(up->tmp);
			free(up);
			return gn_err_set(err, GN_ERROR, "cannot create an upload file: %s", strerror(e));
		}
		fchmod(up->fd, 0640);
		up->buf = gn_malloc(WRITE_BUF);
	}
	up->sha = EVP_MD_CTX_new();
	if (!up->sha || EVP_DigestInit_ex(up->sha, EVP_sha256(), NULL) != 1)
		abort();
	*out = up;
	return 0;
}

static int flush(artifact_upload *up, gn_err *err)
{
	size_t off = 0;
	while (off < up->buflen) {
		ssize_t n = write(up->fd, up->buf + off, up->buflen - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return gn_err_set(err, errno == ENOSPC ? GN_EUNAVAIL : GN_ERROR,
					  "cannot write the artifact: %s", strerror(errno));
		off += (size_t)n;
	}
	up->buflen = 0;
	return 0;
}

int artifacts_write(artifact_upload *up, const void *buf, size_t len, uint64_t max, gn_err *err)
{
	if (up->len + len > max)
		return gn_err_set(err, GN_ETOOBIG, "artifact larger than the %llu-byte limit", (unsigned long long)max);
	EVP_DigestUpdate(up->sha, buf, len);
	up->len += len;
	if (up->s3)
		return artifacts_s3_write(up->s3, buf, len, err);
	const unsigned char *p = buf;
	while (len) {
		size_t take = WRITE_BUF - up->buflen < len ? WRITE_BUF - up->buflen : len;
		memcpy(up->buf + up->buflen, p, take);
		up->buflen += take;
		p += take;
		len -= take;
		if (up->buflen == WRITE_BUF) {
			int rc = flush(up, err);
			if (rc)
				return rc;
		}
	}
	return 0;
}

int artifacts_finish(artifact_upload *up, char digest[GN_SHA256_HEX_LEN + 1], uint64_t *out_len, gn_err *err)
{
	unsigned char md[GN_SHA256_LEN];
	unsigned int mdlen;
	int rc;
	EVP_DigestFinal_ex(up->sha, md, &mdlen);
	gn_hex_encode(up->digest, md, sizeof(md));
	if (up->s3) {
		if ((rc = artifacts_s3_finish(up->s3, up->digest, err)))
			return rc;
	} else {
		if ((rc = flush(up, err)))
			return rc;
		if (fsync(up->fd) < 0)
			return gn_err_set(err, GN_ERROR, "cannot sync the artifact: %s", strerror(errno));
	}
	memcpy(digest, up->digest, sizeof(up->digest));
	*out_len = up->len;
	return 0;
}

static void upload_free(artifact_upload *up)
{
	if (up->fd >= 0)
		close(up->fd);
	EVP_MD_CTX_free(up->sha);
	free(up->buf);
	free(up->tmp);
	free(up);
}

int artifacts_commit(artifact_upload *up, gn_err *err)
{
	int rc = 0;
	if (up->s3) {
		rc = artifacts_s3_commit(up->s3, err);
		up->s3 = NULL;
		upload_free(up);
		return rc;
	}
	char *dir = gn_asprintf("%s/sha256/%.2s", root_dir, up->digest), *final = file_path(up->digest);
	struct stat st;
	if ((rc = mkdir_ok(dir, err))) {
		unlink(up->tmp);
		goto out;
	}
	if (stat(final, &st) == 0 && (uint64_t)st.st_size == up->len) {
		/* Same bytes already stored (same digest): keep one copy. */
		unlink(up->tmp);
	} else if ((rc = gn_file_commit(-1, up->tmp, final, -1, err))) { /* synced by artifacts_finish */
		unlink(up->tmp);
		goto out;
	}
out:
	free(dir);
	free(final);
	upload_free(up);
	return rc;
}

void artifacts_abort(artifact_upload *up)
{
	if (!up)
		return;
	if (up->s3)
		artifacts_s3_abort(up->s3);
	else
		unlink(up->tmp);
	upload_free(up);
}
