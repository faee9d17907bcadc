/* Atomic, durable file writes: temp file, fsync, rename, fsync of the directory; secrets read
 * from files. */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Fsyncs the directory that holds path, so that a rename in it survives a power cut. Best
 * effort: some file systems refuse fsync on a directory, and the file is in place already. */
static void sync_parent(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = slash ? gn_strndup(path, slash == path ? 1 : (size_t)(slash - path)) : gn_strdup(".");
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	free(dir);
}

/* Writes all len bytes to fd, retrying short writes and EINTR; 0 or errno. */
static int write_all(int fd, const void *data, size_t len)
{
	const unsigned char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int gn_file_commit(int fd, const char *tmp_path, const char *final_path, int mode, gn_err *err)
{
	if (fd >= 0 && mode >= 0 && fchmod(fd, (mode_t)mode) < 0)
		return gn_err_set(err, GN_ERROR, "cannot set the mode of %s: %s", tmp_path, strerror(errno));
	if (fd >= 0 && fsync(fd) < 0)
		return gn_err_set(err, GN_ERROR, "cannot sync %s: %s", tmp_path, strerror(errno));
	if (rename(tmp_path, final_path) < 0)
		return gn_err_set(err, GN_ERROR, "cannot rename %s to %s: %s", tmp_path, final_path, strerror(errno));
	sync_parent(final_path);
	return 0;
}

int gn_file_write_atomic(const char *path, const void *data, size_t len, int mode, gn_err *err)
{
	int error = 0, e;
	/* A unique name: two threads (or processes) writing the same file must not share one. */
	char *tmp = gn_asprintf("%s.tmp.XXXXXX", path);
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		error = gn_err_set(err, GN_ERROR, "cannot create %s: %s", tmp, strerror(errno));
		free(tmp);
		return error;
	}
	if ((e = write_all(fd, data, len))) {
		error = gn_err_set(err, GN_ERROR, "cannot write %s: %s", tmp, strerror(e));
		goto out;
	}
	error = gn_file_commit(fd, tmp, path, mode, err);
out:
	close(fd); /* fsync has reported any write error */
	if (error)
		unlink(tmp);
	free(tmp);
	return error;
}

int gn_secret_file_read(char **out, const char *path, size_t max, gn_err *err)
{
	int error = 0, fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf = gn_malloc(max + 1);
	size_t len = 0, start = 0;
	ssize_t n = 0;
	*out = NULL;
	if (fd < 0) {
		error = gn_err_set(err, GN_EINVAL, "cannot open %s: %s", path, strerror(errno));
		goto out;
	}
	/* One byte more than max tells a file that is too large. */
	while (len <= max && (n = read(fd, buf + len, max + 1 - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			error = gn_err_set(err, GN_EINVAL, "cannot read %s: %s", path, strerror(errno));
			goto out;
		}
		len += (size_t)n;
	}
	if (len > max) {
		error = gn_err_set(err, GN_EINVAL, "%s is larger than %zu bytes: not a token", path, max);
		goto out;
	}
	while (start < len && strchr(" \t\r\n", buf[start]))
		start++;
	while (len > start && strchr(" \t\r\n", buf[len - 1]))
		len--;
	for (size_t i = start; i < len; i++)
		if ((unsigned char)buf[i] <= ' ' || buf[i] == 0x7f) {
			error = gn_err_set(err, GN_EINVAL, "%s holds more than one word: not a token", path);
			goto out;
		}
	if (len == start)
		error = gn_err_set(err, GN_EINVAL, "%s is empty", path);
	else
		*out = gn_strndup(buf + start, len - start);
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return error;
}

int gn_file_read(char **out, size_t *out_len, const char *path, size_t max, gn_err *err)
{
	struct stat st;
	gn_buf b;
	char chunk[8192];
	ssize_t n;
	int error = 0, fd = open(path, O_RDONLY | O_CLOEXEC);
	*out = NULL;
	*out_len = 0;
	if (fd < 0)
		return gn_err_set(err, errno == ENOENT ? GN_ENOTFOUND : GN_ERROR, "cannot open %s: %s", path,
				  strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return gn_err_set(err, GN_ERROR, "%s is not a regular file", path);
	}
	gn_buf_init(&b);
	while (!error && (n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			error = gn_err_set(err, GN_ERROR, "cannot read %s: %s", path, strerror(errno));
		else if (b.len + (size_t)n > max)
			error = gn_err_set(err, GN_ETOOBIG, "%s is larger than %zu bytes", path, max);
		else
			gn_buf_append(&b, chunk, (size_t)n);
	}
	close(fd);
	if (error) {
		gn_buf_cleanup(&b);
		return error;
	}
	*out_len = b.len;
	*out = gn_buf_detach(&b);
	return 0;
}
