/* Unit tests for lib/npy.c (.npy and .npz): files written by numpy itself (tests/unit/lib/npy/gen.py, Debian's
 * python3-numpy), each beside a NAME.txt in which numpy wrote its dtype, shape and values; the
 * files numpy writes that the reader must refuse; and hand-made headers for the strict parts. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fileio.h"
#include "npy.h"

#define DIR SRCDIR "/tests/unit/lib/npy/"

static char *slurp(const char *name, size_t *len)
{
	char path[512], *data = NULL;
	gn_err err;
	snprintf(path, sizeof(path), DIR "%s", name);
	if (gn_file_read(&data, len, path, 1 << 20, &err))
		fail_msg("%s: %s", path, err.msg);
	return data;
}

/* Checks NAME.npy against what numpy wrote in NAME.txt. */
static void check_fixture(const char *name)
{
	char file[128], *txt, *bin, *line, *save = NULL, shape[256];
	size_t tlen, blen;
	gn_npy n;
	gn_err err;
	snprintf(file, sizeof(file), "%s.npy", name);
	bin = slurp(file, &blen);
	snprintf(file, sizeof(file), "%s.txt", name);
	txt = slurp(file, &tlen);
	if (gn_npy_parse(&n, bin, blen, UINT64_MAX, &err))
		fail_msg("%s refused: %s", name, err.msg);
	line = strtok_r(txt, "\n", &save);
	assert_string_equal(n.descr, line);
	/* The shape line is empty for a scalar: strtok_r would skip it. */
	line = save;
	char *nl = strchr(line, '\n');
	*nl = '\0';
	save = nl + 1;
	shape[0] = '\0';
	for (int i = 0; i < n.ndim; i++)
		snprintf(shape + strlen(shape), sizeof(shape) - strlen(shape), "%s%llu", i ? " " : "",
			 (unsigned long long)n.shape[i]);
	assert_string_equal(shape, line);
	char *p = save, *end;
	uint64_t i = 0;
	for (;; i++) {
		double want = strtod(p, &end);
		if (end == p)
			break;
		p = end;
		assert_true(i < n.count);
		double got = gn_npy_get(&n, i);
		if (!(got == want && signbit(got) == signbit(want)))
			fail_msg("%s[%llu]: got %.17g, numpy says %.17g", name, (unsigned long long)i, got, want);
	}
	assert_int_equal(i, n.count);
	assert_true(n.data == (unsigned char *)bin + n.header_len);
	free(txt);
	free(bin);
}

static void test_numpy_files(void **state)
{
	static const char *const names[] = {"f4_2x3", "f8_scalar", "f8_image", "i8_1d", "i4_1d",
					    "i2_1d",  "i1_1d",     "u1_img",   "u2_1d", "u4_1d",
					    "u8_1d",  "b1_1d",     "f4_empty", "f4_v2", "f4_v3"};
	(void)state;
	for (size_t i = 0; i < GN_ARRAY_LEN(names); i++)
		check_fixture(names[i]);
}

static void test_image_shape(void **state)
{
	size_t len;
	char *bin = slurp("f8_image.npy", &len), buf[64];
	gn_npy n;
	gn_err err;
	(void)state;
	assert_int_equal(gn_npy_parse(&n, bin, len, UINT64_MAX, &err), 0);
	assert_int_equal(n.ndim, 4);
	assert_int_equal(n.count, 48);
	assert_int_equal(n.kind, GN_NPY_FLOAT);
	assert_int_equal(n.itemsize, 8);
	assert_string_equal(gn_npy_shape_str(&n, buf, sizeof(buf)), "(1, 3, 4, 4)");
	/* The header alone (as a server sees the first bytes of an upload) says how long the file is. */
	assert_int_equal(gn_npy_header_parse(&n, bin, 200, UINT64_MAX, &err), 0);
	assert_null(n.data);
	assert_int_equal(n.header_len + n.data_len, len);
	/* Over the caller's bound: GN_ETOOBIG. */
	assert_int_equal(gn_npy_parse(&n, bin, len, 48 * 8 - 1, &err), GN_ETOOBIG);
	/* One byte short, one byte over. */
	assert_int_equal(gn_npy_parse(&n, bin, len - 1, UINT64_MAX, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "needs 384"));
	char *more = malloc(len + 1);
	memcpy(more, bin, len);
	more[len] = 0;
	assert_int_equal(gn_npy_parse(&n, more, len + 1, UINT64_MAX, &err), GN_EINVAL);
	free(more);
	free(bin);
}

static void test_numpy_refusals(void **state)
{
	static const struct {
		const char *name, *why;
	} cases[] = {
		{"bad_fortran", "fortran_order True"},     {"bad_big_endian", "'>f4' is not supported"},
		{"bad_f2", "'<f2' is not supported"},      {"bad_c8", "'<c8' is not supported"},
		{"bad_unicode", "'<U2' is not supported"}, {"bad_struct", "descr must be a quoted string"},
		{"bad_object", "'|O' is not supported"},
	};
	(void)state;
	for (size_t i = 0; i < GN_ARRAY_LEN(cases); i++) {
		char file[128];
		size_t len;
		gn_npy n;
		gn_err err = {0};
		snprintf(file, sizeof(file), "%s.npy", cases[i].name);
		char *bin = slurp(file, &len);
		int rc = gn_npy_parse(&n, bin, len, UINT64_MAX, &err);
		if (rc != GN_EINVAL || !strstr(err.msg, cases[i].why))
			fail_msg("%s: rc %d, '%s' (wanted '%s')", cases[i].name, rc, err.msg, cases[i].why);
		free(bin);
	}
}

/* A version 1.0 file with this header text (padded as numpy pads it) and data bytes. */
static size_t make(unsigned char *buf, const char *dict, const void *data, size_t dlen)
{
	size_t h = strlen(dict);
	memcpy(buf, "\x93NUMPY\x01\x00", 8);
	buf[8] = (unsigned char)(h & 0xff);
	buf[9] = (unsigned char)(h >> 8);
	memcpy(buf + 10, dict, h);
	memcpy(buf + 10 + h, data, dlen);
	return 10 + h + dlen;
}

static void test_headers(void **state)
{
	static const struct {
		const char *dict;
		size_t dlen;
		int rc;
		const char *why;
	} cases[] = {
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }  \n", 8, 0, NULL},
		{"{'shape': (2,), 'fortran_order': False, 'descr': '<f4'}\n", 8, 0, NULL},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2,), }\n", 8, 0, NULL},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (2), }\n", 8, GN_EINVAL, "tuple"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 8, GN_EINVAL, "newline"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } x\n", 8, GN_EINVAL, "text after"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'shape': (2,)}\n", 8, GN_EINVAL, "repeated"},
		{"{'descr': '<f4', 'fortran_order': False}\n", 4, GN_EINVAL, "must hold"},
		{"{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}\n", 8, GN_EINVAL, "must be False"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}\n", 0, GN_EINVAL, "non-negative"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (2L,)}\n", 8, GN_EINVAL, "shape"},
		{"{'descr': '<f4', 'fortran_order': False, 'extra': 1, 'shape': (2,)}\n", 8, GN_EINVAL, "'extra'"},
		{"{\"descr\": '<f4', 'fortran_order': False, 'shape': (2,)}\n", 8, GN_EINVAL, "quoted string"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387903, 4611686018427387903)}\n", 0,
		 GN_ETOOBIG, "too many"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}\n", 0, GN_EINVAL,
		 "too large"},
		/* 2^64 + 1: wraps to 1 if the bound is checked after multiplying (then 4 bytes would fit). */
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551617,)}\n", 4, GN_EINVAL,
		 "too large"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904,)}\n", 0, GN_EINVAL,
		 "too large"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"
		 "1,1,1,1,1,1,1,1)}\n",
		 4, GN_EINVAL, "more than 32"},
	};
	static const unsigned char data[16] = {0};
	unsigned char buf[512];
	(void)state;
	for (size_t i = 0; i < GN_ARRAY_LEN(cases); i++) {
		gn_npy n;
		gn_err err = {0};
		size_t len = make(buf, cases[i].dict, data, cases[i].dlen);
		int rc = gn_npy_parse(&n, buf, len, UINT64_MAX, &err);
		if (rc != cases[i].rc || (cases[i].why && !strstr(err.msg, cases[i].why)))
			fail_msg("case %zu: rc %d '%s'", i, rc, err.msg);
	}
	/* Magic, version, truncation, a header longer than allowed. */
	gn_npy n;
	gn_err err;
	size_t len = make(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n", data, 8);
	assert_int_equal(gn_npy_parse(&n, buf, 9, UINT64_MAX, &err), GN_EINVAL);
	assert_int_equal(gn_npy_parse(&n, buf, 20, UINT64_MAX, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "truncated"));
	buf[6] = 4;
	assert_int_equal(gn_npy_parse(&n, buf, len, UINT64_MAX, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "version 4.0"));
	buf[6] = 2; /* a 4-byte length: 0x00xx 0x0000 plus the dict's first bytes read as length */
	buf[10] = 0xff;
	buf[11] = 0xff;
	assert_int_equal(gn_npy_parse(&n, buf, len, UINT64_MAX, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "longer than"));
	buf[0] = 'X';
	assert_int_equal(gn_npy_parse(&n, buf, len, UINT64_MAX, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "magic"));
}

/* Members of numpy.savez's archive are numpy.save's files byte for byte. */
static void test_npz(void **state)
{
	size_t zlen, flen, ylen, mlen;
	char *zip = slurp("sample.npz", &zlen), *f4 = slurp("f4_2x3.npy", &flen), *i8 = slurp("i8_1d.npy", &ylen);
	const unsigned char *m;
	gn_err err;
	(void)state;
	assert_int_equal(gn_npz_member(&m, &mlen, zip, zlen, "x.npy", &err), 0);
	assert_int_equal(mlen, flen);
	assert_memory_equal(m, f4, flen);
	assert_int_equal(gn_npz_member(&m, &mlen, zip, zlen, "y.npy", &err), 0);
	assert_int_equal(mlen, ylen);
	assert_memory_equal(m, i8, ylen);
	assert_int_equal(gn_npz_member(&m, &mlen, zip, zlen, "z.npy", &err), GN_ENOTFOUND);
	assert_int_equal(gn_npz_member(&m, &mlen, zip, zlen, "x", &err), GN_ENOTFOUND);
	/* A flipped data byte fails the CRC; a cut archive has no directory. */
	size_t at = (size_t)((const char *)m - zip) + mlen - 1;
	zip[at] ^= 1;
	assert_int_equal(gn_npz_member(&m, &mlen, zip, zlen, "y.npy", &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "CRC-32"));
	zip[at] ^= 1;
	assert_int_equal(gn_npz_member(&m, &mlen, zip, zlen - 1, "x.npy", &err), GN_EINVAL);
	assert_int_equal(gn_npz_member(&m, &mlen, f4, flen, "x.npy", &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "not a .npz"));
	free(zip);
	zip = slurp("bad_compressed.npz", &zlen);
	assert_int_equal(gn_npz_member(&m, &mlen, zip, zlen, "x.npy", &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "numpy.savez_compressed"));
	free(zip);
	free(f4);
	free(i8);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_numpy_files),
		cmocka_unit_test(test_image_shape),
		cmocka_unit_test(test_numpy_refusals),
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_npz),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
