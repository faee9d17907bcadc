/* A strict reader of NumPy .npy files: the magic, the version, and the header, a Python dict
 * literal with exactly the keys 'descr', 'fortran_order' and 'shape' (as numpy.lib.format writes
 * it), then the raw elements. See npy.h for what is accepted. */
#include <stdio.h>
#include <string.h>

#include "npy.h"

/* The header text being read: p moves from start to end. */
struct cursor {
	const char *p, *end;
};

static void skip_space(struct cursor *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
		c->p++;
}

static bool eat(struct cursor *c, char ch)
{
	skip_space(c);
	if (c->p < c->end && *c->p == ch) {
		c->p++;
		return true;
	}
	return false;
}

/* Reads a '…'-quoted string without escapes into buf (size bytes). */
static int read_str(char *buf, size_t size, struct cursor *c, const char *what, gn_err *err)
{
	size_t n = 0;
	if (!eat(c, '\''))
		return gn_err_set(err, GN_EINVAL, "npy header: %s must be a quoted string", what);
	while (c->p < c->end && *c->p != '\'') {
		if (*c->p == '\\' || (unsigned char)*c->p < 0x20 || (unsigned char)*c->p > 0x7e || n + 1 >= size)
			return gn_err_set(err, GN_EINVAL, "npy header: %s is not a short plain string", what);
		buf[n++] = *c->p++;
	}
	if (c->p == c->end)
		return gn_err_set(err, GN_EINVAL, "npy header: %s: unterminated string", what);
	c->p++;
	buf[n] = '\0';
	return 0;
}

/* Maps numpy's type string to a kind and item size; only the ones npy.h accepts. */
static int parse_descr(gn_npy *out, const char *d, gn_err *err)
{
	static const struct {
		const char *descr;
		enum gn_npy_kind kind;
		size_t size;
	} types[] = {
		{"|b1", GN_NPY_BOOL, 1}, {"|i1", GN_NPY_INT, 1},   {"|u1", GN_NPY_UINT, 1},  {"<i2", GN_NPY_INT, 2},
		{"<u2", GN_NPY_UINT, 2}, {"<i4", GN_NPY_INT, 4},   {"<u4", GN_NPY_UINT, 4},  {"<i8", GN_NPY_INT, 8},
		{"<u8", GN_NPY_UINT, 8}, {"<f4", GN_NPY_FLOAT, 4}, {"<f8", GN_NPY_FLOAT, 8},
	};
	for (size_t i = 0; i < GN_ARRAY_LEN(types); i++)
		if (strcmp(d, types[i].descr) == 0) {
			memcpy(out->descr, types[i].descr, 4);
			out->kind = types[i].kind;
			out->itemsize = types[i].size;
			return 0;
		}
	return gn_err_set(err, GN_EINVAL,
			  "npy: dtype '%s' is not supported (use a little-endian bool, integer, float32 or float64 "
			  "array: '<f4', '<f8', '<i8', '|u1', ...)",
			  d);
}

/* Reads a non-negative decimal integer below 2^62. */
static int read_dim(uint64_t *out, struct cursor *c, gn_err *err)
{
	uint64_t v = 0;
	const char *start;
	skip_space(c);
	start = c->p;
	while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
		uint64_t d = (uint64_t)(*c->p++ - '0');
		/* Checked before multiplying: 10 * v wraps past 2^64 long before v reaches 2^62 otherwise. */
		if (v > ((1ULL << 62) - 1 - d) / 10)
			return gn_err_set(err, GN_EINVAL, "npy header: a dimension is too large");
		v = v * 10 + d;
	}
	if (c->p == start)
		return gn_err_set(err, GN_EINVAL, "npy header: shape must be a tuple of non-negative integers");
	*out = v;
	return 0;
}

/* Reads the shape tuple: "()", "(n,)", "(n, m)" (a trailing comma allowed). */
static int read_shape(gn_npy *out, struct cursor *c, gn_err *err)
{
	int rc;
	out->ndim = 0;
	if (!eat(c, '('))
		return gn_err_set(err, GN_EINVAL, "npy header: shape must be a tuple");
	if (eat(c, ')'))
		return 0;
	for (;;) {
		if (out->ndim == GN_NPY_MAX_DIMS)
			return gn_err_set(err, GN_EINVAL, "npy header: more than %d dimensions", GN_NPY_MAX_DIMS);
		if ((rc = read_dim(&out->shape[out->ndim++], c, err)))
			return rc;
		bool comma = eat(c, ',');
		if (eat(c, ')')) {
			if (out->ndim == 1 && !comma) /* "(3)" is the number 3, not a tuple */
				break;
			return 0;
		}
		if (!comma)
			break;
	}
	return gn_err_set(err, GN_EINVAL, "npy header: shape must be a tuple of integers");
}

/* Reads the dict: each of the three keys once, in any order. */
static int read_dict(gn_npy *out, struct cursor *c, gn_err *err)
{
	char key[16], descr[16];
	bool seen_descr = false, seen_order = false, seen_shape = false;
	int rc;
	if (!eat(c, '{'))
		return gn_err_set(err, GN_EINVAL, "npy header: not a dict");
	while (!eat(c, '}')) {
		if ((rc = read_str(key, sizeof(key), c, "a key", err)))
			return rc;
		if (!eat(c, ':'))
			return gn_err_set(err, GN_EINVAL, "npy header: ':' expected after '%s'", key);
		if (strcmp(key, "descr") == 0 && !seen_descr) {
			seen_descr = true;
			if ((rc = read_str(descr, sizeof(descr), c, "descr", err)) ||
			    (rc = parse_descr(out, descr, err)))
				return rc;
		} else if (strcmp(key, "fortran_order") == 0 && !seen_order) {
			seen_order = true;
			skip_space(c);
			if ((size_t)(c->end - c->p) >= 4 && memcmp(c->p, "True", 4) == 0)
				return gn_err_set(err, GN_EINVAL,
						  "npy: fortran_order True is not supported (save a C-ordered array: "
						  "numpy.ascontiguousarray)");
			if ((size_t)(c->end - c->p) < 5 || memcmp(c->p, "False", 5) != 0)
				return gn_err_set(err, GN_EINVAL, "npy header: fortran_order must be False");
			c->p += 5;
		} else if (strcmp(key, "shape") == 0 && !seen_shape) {
			seen_shape = true;
			if ((rc = read_shape(out, c, err)))
				return rc;
		} else {
			return gn_err_set(err, GN_EINVAL, "npy header: unexpected or repeated key '%s'", key);
		}
		if (!eat(c, ',')) {
			if (!eat(c, '}'))
				return gn_err_set(err, GN_EINVAL, "npy header: ',' or '}' expected");
			break;
		}
	}
	if (!seen_descr || !seen_order || !seen_shape)
		return gn_err_set(err, GN_EINVAL, "npy header: it must hold 'descr', 'fortran_order' and 'shape'");
	skip_space(c);
	if (c->p + 1 != c->end || *c->p != '\n')
		return gn_err_set(err, GN_EINVAL,
				  "npy header: text after the dict (it must end with spaces and a newline)");
	return 0;
}

int gn_npy_header_parse(gn_npy *out, const void *buf, size_t len, uint64_t max_data, gn_err *err)
{
	const unsigned char *b = buf;
	size_t start, hlen;
	memset(out, 0, sizeof(*out));
	if (len < 10 || memcmp(b, "\x93NUMPY", GN_NPY_MAGIC_LEN) != 0)
		return gn_err_set(err, GN_EINVAL, "not a NumPy .npy file (no \\x93NUMPY magic)");
	if (b[6] == 1) {
		start = 10;
		hlen = (size_t)b[8] | (size_t)b[9] << 8;
	} else if (b[6] == 2 || b[6] == 3) {
		if (len < 12)
			return gn_err_set(err, GN_EINVAL, "npy: truncated header");
		start = 12;
		hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
	} else {
		return gn_err_set(err, GN_EINVAL, "npy: format version %u.%u is not supported (1.0, 2.0, 3.0 are)",
				  b[6], b[7]);
	}
	if (b[7] != 0)
		return gn_err_set(err, GN_EINVAL, "npy: format version %u.%u is not supported (1.0, 2.0, 3.0 are)",
				  b[6], b[7]);
	if (hlen > GN_NPY_HEADER_MAX - start)
		return gn_err_set(err, GN_EINVAL, "npy: the header is longer than %d bytes", GN_NPY_HEADER_MAX);
	if (len < start + hlen)
		return gn_err_set(err, GN_EINVAL, "npy: truncated header");
	struct cursor c = {(const char *)b + start, (const char *)b + start + hlen};
	int rc = read_dict(out, &c, err);
	if (rc)
		return rc;
	out->header_len = start + hlen;
	out->count = 1;
	for (int i = 0; i < out->ndim; i++) {
		if (out->shape[i] && out->count > UINT64_MAX / out->shape[i] / out->itemsize)
			return gn_err_set(err, GN_ETOOBIG, "npy: the shape holds too many elements");
		out->count *= out->shape[i];
	}
	out->data_len = out->count * out->itemsize;
	if (out->data_len > max_data)
		return gn_err_set(err, GN_ETOOBIG, "npy: %llu bytes of data, more than the %llu allowed",
				  (unsigned long long)out->data_len, (unsigned long long)max_data);
	return 0;
}

int gn_npy_parse(gn_npy *out, const void *buf, size_t len, uint64_t max_data, gn_err *err)
{
	int rc = gn_npy_header_parse(out, buf, len, max_data, err);
	if (rc)
		return rc;
	if ((uint64_t)(len - out->header_len) != out->data_len) {
		rc = gn_err_set(err, GN_EINVAL, "npy: %zu bytes of data after the header, shape %s of %s needs %llu",
				len - out->header_len, gn_npy_shape_str(out, (char[128]){0}, 128), out->descr,
				(unsigned long long)out->data_len);
		memset(out, 0, sizeof(*out));
		return rc;
	}
	out->data = (const unsigned char *)buf + out->header_len;
	return 0;
}

double gn_npy_get(const gn_npy *n, uint64_t i)
{
	const unsigned char *p = n->data + i * n->itemsize;
	uint64_t u = 0;
	for (size_t k = 0; k < n->itemsize; k++) /* little-endian whatever the host is */
		u |= (uint64_t)p[k] << (8 * k);
	switch (n->kind) {
	case GN_NPY_BOOL: return u ? 1.0 : 0.0;
	case GN_NPY_UINT: return (double)u;
	case GN_NPY_INT: {
		unsigned bits = (unsigned)(8 * n->itemsize);
		int64_t s =
			bits == 64 ? (int64_t)u : (int64_t)(u ^ (1ULL << (bits - 1))) - (int64_t)(1ULL << (bits - 1));
		return (double)s;
	}
	case GN_NPY_FLOAT:
		if (n->itemsize == 4) {
			uint32_t w = (uint32_t)u;
			float f;
			memcpy(&f, &w, sizeof(f));
			return f;
		} else {
			double d;
			memcpy(&d, &u, sizeof(d));
			return d;
		}
	}
	return 0;
}

char *gn_npy_shape_str(const gn_npy *n, char *buf, size_t size)
{
	size_t off = 0;
	off += (size_t)snprintf(buf, size, "(");
	for (int i = 0; i < n->ndim && off < size; i++)
		off += (size_t)snprintf(buf + off, size - off, "%s%llu", i ? ", " : "",
					(unsigned long long)n->shape[i]);
	if (off < size)
		snprintf(buf + off, size - off, "%s)", n->ndim == 1 ? "," : "");
	return buf;
}

/* --- .npz: a ZIP archive of .npy members ------------------------------------------------------ */

static uint32_t le16(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t le32(const unsigned char *p)
{
	return le16(p) | le16(p + 2) << 16;
}

/* CRC-32 as ZIP computes it (reflected polynomial 0xEDB88320). */
static uint32_t crc32_of(const unsigned char *p, size_t n)
{
	uint32_t c = 0xffffffffu;
	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
	}
	return ~c;
}

/* Returns the offset of the end-of-central-directory record, or -1. */
static int64_t find_eocd(const unsigned char *z, size_t len)
{
	if (len < 22)
		return -1;
	size_t stop = len - 22 > 65535 ? len - 22 - 65535 : 0;
	for (size_t i = len - 22 + 1; i-- > stop;)
		if (memcmp(z + i, "PK\x05\x06", 4) == 0 && i + 22 + le16(z + i + 20) == len)
			return (int64_t)i;
	return -1;
}

int gn_npz_member(const unsigned char **out, size_t *out_len, const void *zip, size_t len, const char *name,
		  gn_err *err)
{
	const unsigned char *z = zip;
	int64_t e = find_eocd(z, len);
	if (e < 0)
		return gn_err_set(err, GN_EINVAL, "not a .npz file (no ZIP end-of-central-directory record)");
	uint32_t count = le16(z + e + 10), cd_size = le32(z + e + 12), cd_off = le32(z + e + 16);
	if (count == 0xffff || cd_off == 0xffffffffu || cd_size == 0xffffffffu)
		return gn_err_set(err, GN_EINVAL,
				  "npz: a ZIP64 archive (over 4 GiB or 65535 members) is not supported");
	if ((uint64_t)cd_off + cd_size > (uint64_t)e)
		return gn_err_set(err, GN_EINVAL, "npz: the central directory lies outside the file");
	size_t p = cd_off, want = strlen(name);
	for (uint32_t i = 0; i < count; i++) {
		if (p + 46 > (size_t)e || memcmp(z + p, "PK\x01\x02", 4) != 0)
			return gn_err_set(err, GN_EINVAL, "npz: a damaged central directory");
		uint32_t flags = le16(z + p + 8), method = le16(z + p + 10), crc = le32(z + p + 16);
		uint32_t csize = le32(z + p + 20), usize = le32(z + p + 24), off = le32(z + p + 42);
		size_t nlen = le16(z + p + 28), next = p + 46 + nlen + le16(z + p + 30) + le16(z + p + 32);
		if (next > (size_t)e)
			return gn_err_set(err, GN_EINVAL, "npz: a damaged central directory");
		if (nlen != want || memcmp(z + p + 46, name, want) != 0) {
			p = next;
			continue;
		}
		if (method != 0)
			return gn_err_set(
				err, GN_EINVAL,
				"npz: member %s is compressed (numpy.savez_compressed); save with numpy.savez", name);
		if (flags & 1)
			return gn_err_set(err, GN_EINVAL, "npz: member %s is encrypted", name);
		if (csize != usize || csize == 0xffffffffu)
			return gn_err_set(err, GN_EINVAL, "npz: member %s has a size numpy.savez does not write", name);
		if ((size_t)off + 30 > cd_off || memcmp(z + off, "PK\x03\x04", 4) != 0)
			return gn_err_set(err, GN_EINVAL, "npz: member %s: no local header where the directory says",
					  name);
		size_t data = (size_t)off + 30 + le16(z + off + 26) + le16(z + off + 28);
		if (data > cd_off || usize > cd_off - data)
			return gn_err_set(err, GN_EINVAL, "npz: member %s runs past the archive's data", name);
		if (crc32_of(z + data, usize) != crc)
			return gn_err_set(err, GN_EINVAL, "npz: member %s fails its CRC-32 check", name);
		*out = z + data;
		*out_len = usize;
		return 0;
	}
	return gn_err_set(err, GN_ENOTFOUND, "npz: no member %s", name);
}
