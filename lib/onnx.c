/* The default-domain opset of an ONNX model: a bounded walk over ModelProto's top-level fields, fed
 * its bytes in pieces of any size (a stream) or reading a file, where it skips what it does not need. */
#include "onnx.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bytes in memory: an opset_import entry, held whole. */
struct src {
	const uint8_t *buf;
	uint64_t size;
};

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
	memcpy(tmp, s->buf + *off, n);
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

/* One OperatorSetIdProto, the len bytes at buf: folds a default-domain version into *best. */
static int opset_entry(const uint8_t *buf, uint64_t len, int64_t *best, gn_err *err)
{
	struct src m = {buf, len};
	int rc;
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

/* Where the walk over the top-level fields is: reading a varint (a tag, a length, or a value of
 * wire type 0), or inside a field's payload, skipping it or collecting an opset_import entry. */
enum stage { AT_TAG, AT_LENGTH, AT_NUMBER, IN_SKIP, IN_ENTRY };

struct gn_onnx_stream {
	enum stage stage;
	uint64_t off;        /* bytes fed so far */
	uint64_t payload_at; /* IN_SKIP, IN_ENTRY: where the field's payload starts */
	uint64_t want;       /* IN_SKIP, IN_ENTRY: its bytes still to come */
	uint64_t tag;        /* the field's tag */
	unsigned long fields;
	int64_t best;
	uint8_t num[10]; /* the varint being read, as far as it came */
	size_t num_len;
	uint8_t entry[GN_ONNX_OPSET_ENTRY_MAX];
	size_t entry_len;
	int rc; /* the first failure, kept: what follows it is not read */
	gn_err err;
};

gn_onnx_stream *gn_onnx_stream_new(void)
{
	return gn_calloc(1, sizeof(gn_onnx_stream));
}

void gn_onnx_stream_free(gn_onnx_stream *s)
{
	free(s);
}

static const char *const stage_what[] = {[AT_TAG] = "a field tag", [AT_LENGTH] = "a length", [AT_NUMBER] = "a number"};

/* A top-level tag was read: where its payload goes. */
static int on_tag(gn_onnx_stream *s, uint64_t tag)
{
	unsigned wt = (unsigned)(tag & 7);
	s->tag = tag;
	s->fields++;
	if (tag >> 3 == 0 || tag >> 3 > 536870911u)
		return gn_err_set(&s->err, GN_EINVAL, "not an ONNX model: field number %llu at byte %llu",
				  (unsigned long long)(tag >> 3), (unsigned long long)s->off);
	switch (wt) {
	case 0: s->stage = AT_NUMBER; return 0;
	case 2: s->stage = AT_LENGTH; return 0;
	case 1:
	case 5:
		s->stage = IN_SKIP;
		s->payload_at = s->off;
		s->want = wt == 1 ? 8 : 4;
		return 0;
	default: /* 3 and 4 are proto1 groups, which ONNX never uses; 6 and 7 do not exist */
		return gn_err_set(&s->err, GN_EINVAL, "not an ONNX model: wire type %u at byte %llu", wt,
				  (unsigned long long)s->off);
	}
}

/* A length-delimited field's length was read: skip its payload, or collect it (opset_import). */
static int on_length(gn_onnx_stream *s, uint64_t len)
{
	s->payload_at = s->off;
	s->want = len;
	s->stage = IN_SKIP;
	if (s->tag >> 3 != 8)
		return 0;
	if (len > GN_ONNX_OPSET_ENTRY_MAX)
		return gn_err_set(&s->err, GN_EINVAL,
				  "not an ONNX model: an opset_import entry of %llu bytes (at most %d)",
				  (unsigned long long)len, GN_ONNX_OPSET_ENTRY_MAX);
	s->stage = IN_ENTRY;
	s->entry_len = 0;
	return 0;
}

/* Takes one byte of a varint; on its last byte, acts on the value. */
static int varint_byte(gn_onnx_stream *s, uint8_t b)
{
	uint64_t v;
	s->num[s->num_len++] = b;
	s->off++;
	if ((b & 0x80) && s->num_len < sizeof(s->num))
		return 0;
	if (!varint(s->num, s->num_len, &v))
		return gn_err_set(&s->err, GN_EINVAL, "not an ONNX model: %s at byte %llu is cut off or too long",
				  stage_what[s->stage], (unsigned long long)(s->off - s->num_len));
	s->num_len = 0;
	switch (s->stage) {
	case AT_TAG: return on_tag(s, v);
	case AT_LENGTH: return on_length(s, v);
	default: s->stage = AT_TAG; return 0;
	}
}

/* Passes over n payload bytes. */
static void pass(gn_onnx_stream *s, uint64_t n)
{
	s->want -= n;
	s->off += n;
}

/* Takes up to len payload bytes; returns how many. */
static size_t payload(gn_onnx_stream *s, const uint8_t *p, size_t len)
{
	size_t n = s->want < len ? (size_t)s->want : len;
	if (n && s->stage == IN_ENTRY) {
		memcpy(s->entry + s->entry_len, p, n);
		s->entry_len += n;
	}
	pass(s, n);
	return n;
}

void gn_onnx_stream_feed(gn_onnx_stream *s, const void *data, size_t len)
{
	const uint8_t *p = data;
	while (!s->rc && (len || ((s->stage == IN_SKIP || s->stage == IN_ENTRY) && !s->want))) {
		if (s->stage == IN_SKIP || s->stage == IN_ENTRY) {
			size_t n = payload(s, p, len);
			if (n) /* p may be NULL when len is 0 */
				p += n, len -= n;
			if (s->want)
				continue;
			if (s->stage == IN_ENTRY)
				s->rc = opset_entry(s->entry, s->entry_len, &s->best, &s->err);
			s->stage = AT_TAG;
			continue;
		}
		if (s->stage == AT_TAG && !s->num_len && s->fields >= GN_ONNX_MAX_FIELDS) {
			s->rc = gn_err_set(&s->err, GN_EINVAL, "not an ONNX model: more than %d top-level fields",
					   GN_ONNX_MAX_FIELDS);
			break;
		}
		s->rc = varint_byte(s, *p);
		p++, len--;
	}
}

int gn_onnx_stream_finish(gn_onnx_stream *s, int64_t *opset, gn_err *err)
{
	*opset = 0;
	if (s->rc) {
		gn_err_set(err, s->rc, "%s", s->err.msg);
		return s->rc;
	}
	if (s->off == 0)
		return gn_err_set(err, GN_EINVAL, "not an ONNX model: the file is empty");
	if (s->stage == IN_SKIP || s->stage == IN_ENTRY)
		return gn_err_set(err, GN_EINVAL,
				  "not an ONNX model: a field at byte %llu runs %llu bytes past the end",
				  (unsigned long long)s->payload_at, (unsigned long long)s->want);
	if (s->stage != AT_TAG || s->num_len)
		return gn_err_set(err, GN_EINVAL, "not an ONNX model: %s at byte %llu is cut off or too long",
				  stage_what[s->stage], (unsigned long long)(s->off - s->num_len));
	if (s->best == 0)
		return gn_err_set(err, GN_ENOTFOUND, "the model declares no opset for the default ONNX domain");
	*opset = s->best;
	return 0;
}

int gn_onnx_opset_buf(int64_t *opset, const void *data, size_t len, gn_err *err)
{
	gn_onnx_stream *s = gn_onnx_stream_new();
	gn_onnx_stream_feed(s, data, data ? len : 0);
	int rc = gn_onnx_stream_finish(s, opset, err);
	gn_onnx_stream_free(s);
	return rc;
}

/* Reads the n bytes at off of fd into buf. */
static int read_chunk(uint8_t *buf, size_t n, int fd, uint64_t off, gn_err *err)
{
	size_t have = 0;
	while (have < n) {
		ssize_t r = pread(fd, buf + have, n - have, (off_t)(off + have));
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

int gn_onnx_opset_fd(int64_t *opset, int fd, gn_err *err)
{
	struct stat st;
	uint8_t buf[512];
	int rc = 0;
	*opset = 0;
	if (fstat(fd, &st) != 0)
		return gn_err_set(err, GN_ERROR, "cannot read the model: %s", strerror(errno));
	if (!S_ISREG(st.st_mode))
		return gn_err_set(err, GN_EINVAL, "the model is not a regular file");
	gn_onnx_stream *s = gn_onnx_stream_new();
	uint64_t size = (uint64_t)st.st_size;
	/* A payload being skipped (the graph: nearly all of the file) is passed over unread. */
	while (!rc && s->off < size) {
		uint64_t left = size - s->off;
		if (s->stage == IN_SKIP && s->want) {
			pass(s, s->want < left ? s->want : left);
			/* A payload passed to its end closes as one fed does: the next byte is a tag (or
			 * the end of the file, which finish then takes for the end of the model). */
			gn_onnx_stream_feed(s, NULL, 0);
			rc = s->rc;
			continue;
		}
		size_t n = left < sizeof(buf) ? (size_t)left : sizeof(buf);
		if (!(rc = read_chunk(buf, n, fd, s->off, err))) {
			gn_onnx_stream_feed(s, buf, n);
			rc = s->rc;
		}
	}
	if (!rc || s->rc)
		rc = gn_onnx_stream_finish(s, opset, err);
	gn_onnx_stream_free(s);
	return rc;
}
