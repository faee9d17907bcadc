/* Streaming, hashing, atomic writes into the content-addressed artifact store. */
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

#include "fileio.h"
#include "log.h"

#define WRITE_BUF (1024 * 1024)

static char *root_dir; /* DATA_DIR/artifacts */

struct artifact_upload {
	int fd;
	char *tmp;
	EVP_MD_CTX *sha;
	uint64_t len;
	char digest[GN_SHA256_HEX_LEN + 1];
	/* Small network chunks are gathered here so the disk sees large writes. */
	unsigned char *buf;
	size_t buflen;
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

int artifacts_init(const char *data_dir, int64_t grace_s, gn_err *err)
{
	int rc;
	free(root_dir);
	root_dir = gn_asprintf("%s/artifacts", data_dir);
	char *sha = gn_asprintf("%s/sha256", root_dir), *tmp = gn_asprintf("%s/tmp", root_dir);
	if (!(rc = mkdir_ok(root_dir, err)) && !(rc = mkdir_ok(sha, err)))
		rc = mkdir_ok(tmp, err);
	if (!rc) {
		/* Temp files belong to uploads that died with a previous process, unless they are still
		 * growing: with a shared artifact directory, another replica may be receiving one now. */
		int64_t before = gn_now() - grace_s;
		DIR *d = opendir(tmp);
		struct dirent *e;
		while (d && (e = readdir(d))) {
			if (strncmp(e->d_name, "upload-", 7) != 0)
				continue;
			char *p = gn_asprintf("%s/%s", tmp, e->d_name);
			if (older_than(p, before) && unlink(p) == 0)
				gn_log(GN_LOG_INFO, "event=artifact_tmp_removed file=%s", p);
			free(p);
		}
		if (d)
			closedir(d);
	}
	free(sha);
	free(tmp);
	return rc;
}

/* True for a 64-character lower-case hex name. */
static bool is_digest(const char *name)
{
	return strlen(name) == GN_SHA256_HEX_LEN && strspn(name, "0123456789abcdef") == GN_SHA256_HEX_LEN;
}

int artifacts_list(char ***out, size_t *out_n, int64_t before, gn_err *err)
{
	char *sha = gn_asprintf("%s/sha256", root_dir);
	DIR *top = opendir(sha);
	struct dirent *e;
	char **list = NULL;
	size_t n = 0;
	*out = NULL;
	*out_n = 0;
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
			if (!is_digest(f->d_name) || strncmp(f->d_name, e->d_name, 2) != 0)
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

int artifacts_remove(const char *digest, gn_err *err)
{
	char *path = artifacts_path(digest);
	int rc = 0;
	if (unlink(path) < 0 && errno != ENOENT)
		rc = gn_err_set(err, GN_ERROR, "cannot remove %s: %s", path, strerror(errno));
	free(path);
	return rc;
}

char *artifacts_path(const char *digest)
{
	return gn_asprintf("%s/sha256/%.2s/%s", root_dir, digest, digest);
}

int artifacts_begin(artifact_upload **out, gn_err *err)
{
	artifact_upload *up = gn_calloc(1, sizeof(*up));
	up->tmp = gn_asprintf("%s/tmp/upload-XXXXXX", root_dir);
	up->fd = mkostemp(up->tmp, O_CLOEXEC);
	if (up->fd < 0) {
		int e = errno;
		free(up->tmp);
		free(up);
		return gn_err_set(err, GN_ERROR, "cannot create an upload file: %s", strerror(e));
	}
	fchmod(up->fd, 0640);
	up->sha = EVP_MD_CTX_new();
	if (!up->sha || EVP_DigestInit_ex(up->sha, EVP_sha256(), NULL) != 1)
		abort();
	up->buf = gn_malloc(WRITE_BUF);
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
	int rc = flush(up, err);
	if (rc)
		return rc;
	if (fsync(up->fd) < 0)
		return gn_err_set(err, GN_ERROR, "cannot sync the artifact: %s", strerror(errno));
	EVP_DigestFinal_ex(up->sha, md, &mdlen);
	gn_hex_encode(up->digest, md, sizeof(md));
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
	char *dir = gn_asprintf("%s/sha256/%.2s", root_dir, up->digest), *final = artifacts_path(up->digest);
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
	unlink(up->tmp);
	upload_free(up);
}
