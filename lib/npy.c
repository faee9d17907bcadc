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
		v = v * 10 + (uint64_t)(*c->p++ - '0');
		if (v >= (1ULL << 62))
			return gn_err_set(err, GN_EINVAL, "npy header: a dimension is too large");
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
