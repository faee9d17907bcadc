/* The default-domain opset of an ONNX model: a bounded walk over ModelProto's top-level fields. */
#include "onnx.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Where the bytes are: in memory (buf) or in a file (fd), size bytes in all. */
struct src {
	const uint8_t *buf;
	int fd;
	uint64_t size;
};

/* Copies n bytes at off into dst; the caller has checked that off + n <= size. */
static int read_at(const struct src *s, uint64_t off, void *dst, size_t n, gn_err *err)
{
	if (s->buf) {
		memcpy(dst, s->buf + off, n);
		return 0;
	}
	size_t have = 0;
	while (have < n) {
		ssize_t r = pread(s->fd, (char *)dst + have, n - have, (off_t)(off + have));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return gn_err_set(err, GN_ERROR, "cannot read the model: %s", strerror(errno));
		if (r == 0)
			return gn_err_set(err, GN_EINVAL, "the model file shrank while it was read");
		have += (size_t)r;
	}
	return 0;
}

/* Decodes a varint of at most 10 bytes from p[0 .. n-1]; returns the bytes used, 0 if bad. */
static size_t varint(const uint8_t *p, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n && i < 10; i++) {
		if (i == 9 && p[i] > 1)
			return 0; /* more than 64 bits */
		v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80)) {
			*out = v;
			return i + 1;
		}
	}
	return 0;
}

/* Reads the varint at *off of s and moves *off past it. */
static int src_varint(const struct src *s, uint64_t *off, uint64_t *out, const char *what, gn_err *err)
{
	uint8_t tmp[10];
	size_t n = s->size - *off < sizeof(tmp) ? (size_t)(s->size - *off) : sizeof(tmp), used;
	int rc = read_at(s, *off, tmp, n, err);
	if (rc)
		return rc;
	if (!(used = varint(tmp, n, out)))
		return gn_err_set(err, GN_EINVAL, "not an ONNX model: %s at byte %llu is cut off or too long", what,
				  (unsigned long long)*off);
	*off += used;
	return 0;
}

/* Skips a field of wire type wt at *off (its tag read); for a length-delimited one sets *len and
 * *at to its payload. end is where the enclosing message ends. */
static int skip(const struct src *s, uint64_t *off, uint64_t end, unsigned wt, uint64_t *at, uint64_t *len, gn_err *err)
{
	uint64_t v, n;
	int rc;
	switch (wt) {
	case 0: return src_varint(s, off, &v, "a number", err);
	case 1:
	case 5: n = wt == 1 ? 8 : 4; break;
	case 2:
		if ((rc = src_varint(s, off, &n, "a length", err)))
			return rc;
		break;
	default: /* 3 and 4 are proto1 groups, which ONNX never uses; 6 and 7 do not exist */
		return gn_err_set(err, GN_EINVAL, "not an ONNX model: wire type %u at byte %llu", wt,
				  (unsigned long long)*off);
	}
	if (n > end - *off)
		return gn_err_set(err, GN_EINVAL,
				  "not an ONNX model: a field at byte %llu runs %llu bytes past the end",
				  (unsigned long long)*off, (unsigned long long)(n - (end - *off)));
	if (at)
		*at = *off, *len = n;
	*off += n;
	return 0;
}

/* One OperatorSetIdProto, len bytes at off: folds a default-domain version into *best. */
static int opset_entry(const struct src *s, uint64_t off, uint64_t len, int64_t *best, gn_err *err)
{
	uint8_t buf[GN_ONNX_OPSET_ENTRY_MAX];
	if (len > sizeof(buf))
		return gn_err_set(err, GN_EINVAL, "not an ONNX model: an opset_import entry of %llu bytes (at most %d)",
				  (unsigned long long)len, GN_ONNX_OPSET_ENTRY_MAX);
	int rc = read_at(s, off, buf, (size_t)len, err);
	if (rc)
		return rc;
	struct src m = {buf, -1, len};
	uint64_t p = 0, at = 0, n = 0, tag, version = 0;
	bool has_version = false, default_domain = true; /* an absent domain is "" */
	while (p < len) {
		if ((rc = src_varint(&m, &p, &tag, "a field tag", err)))
			return rc;
		unsigned wt = (unsigned)(tag & 7);
		if (tag >> 3 == 1 && wt == 2) {
			if ((rc = skip(&m, &p, len, wt, &at, &n, err)))
				return rc;
			default_domain = n == 0 || (n == 7 && memcmp(buf + at, "ai.onnx", 7) == 0);
		} else if (tag >> 3 == 2 && wt == 0) {
			if ((rc = src_varint(&m, &p, &version, "an opset version", err)))
				return rc;
			has_version = true;
		} else if (tag >> 3 == 0) {
			return gn_err_set(err, GN_EINVAL, "not an ONNX model: field number 0 in opset_import");
		} else if ((rc = skip(&m, &p, len, wt, NULL, NULL, err))) {
			return rc;
		}
	}
	if (!default_domain || !has_version)
		return 0;
	if ((int64_t)version < 1 || (int64_t)version > GN_ONNX_OPSET_MAX)
		return gn_err_set(err, GN_EINVAL, "the model declares ONNX opset %lld (1 to %d are known)",
				  (long long)(int64_t)version, GN_ONNX_OPSET_MAX);
	if ((int64_t)version > *best)
		*best = (int64_t)version;
	return 0;
}

static int walk(int64_t *opset, const struct src *s, gn_err *err)
{
	uint64_t off = 0, tag, at = 0, len = 0;
	int64_t best = 0;
	int rc;
	*opset = 0;
	if (s->size == 0)
		return gn_err_set(err, GN_EINVAL, "not an ONNX model: the file is empty");
	for (unsigned long fields = 0; off < s->size; fields++) {
		if (fields >= GN_ONNX_MAX_FIELDS)
			return gn_err_set(err, GN_EINVAL, "not an ONNX model: more than %d top-level fields",
					  GN_ONNX_MAX_FIELDS);
		if ((rc = src_varint(s, &off, &tag, "a field tag", err)))
			return rc;
		unsigned wt = (unsigned)(tag & 7);
		if (tag >> 3 == 0 || tag >> 3 > 536870911u)
			return gn_err_set(err, GN_EINVAL, "not an ONNX model: field number %llu at byte %llu",
					  (unsigned long long)(tag >> 3), (unsigned long long)off);
		if ((rc = skip(s, &off, s->size, wt, &at, &len, err)))
			return rc;
		if (tag >> 3 == 8 && wt == 2 && (rc = opset_entry(s, at, len, &best, err)))
			return rc;
	}
	if (best == 0)
		return gn_err_set(err, GN_ENOTFOUND, "the model declares no opset for the default ONNX domain");
	*opset = best;
	return 0;
}

int gn_onnx_opset_buf(int64_t *opset, const void *data, size_t len, gn_err *err)
{
	static const uint8_t none[1];
	struct src s = {data ? data : none, -1, data ? len : 0};
	return walk(opset, &s, err);
}

int gn_onnx_opset_fd(int64_t *opset, int fd, gn_err *err)
{
	struct stat st;
	*opset = 0;
	if (fstat(fd, &st) != 0)
		return gn_err_set(err, GN_ERROR, "cannot read the model: %s", strerror(errno));
	if (!S_ISREG(st.st_mode))
		return gn_err_set(err, GN_EINVAL, "the model is not a regular file");
	struct src s = {NULL, fd, (uint64_t)st.st_size};
	return walk(opset, &s, err);
}
