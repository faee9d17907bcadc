/* Unit tests for lib/gzip.c: a stream made by another gzip (Python's) inflates; what gn_gzip makes
 * inflates back; the inflated size is bounded exactly at max; broken streams are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gzip.h"

/* gzip.compress(b'{"a":1}', mtime=0) */
static const unsigned char PY_GZIP[] = {0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
					0x03, 0xab, 0x56, 0x4a, 0x54, 0xb2, 0x32, 0xac, 0x05,
					0x00, 0xaf, 0xac, 0x1b, 0x56, 0x07, 0x00, 0x00, 0x00};

static int gunzip(gn_buf *out, const void *in, size_t len, size_t max)
{
	gn_err err;
	gn_buf_init(out);
	return gn_gunzip(out, in, len, max, &err);
}

static void test_inflates_another_gzip(void **state)
{
	(void)state;
	gn_buf out;
	assert_int_equal(gunzip(&out, PY_GZIP, sizeof(PY_GZIP), 7), 0);
	assert_int_equal(out.len, 7);
	assert_string_equal(out.data, "{\"a\":1}");
	gn_buf_cleanup(&out);
	/* one byte less room than it inflates to */
	assert_int_equal(gunzip(&out, PY_GZIP, sizeof(PY_GZIP), 6), GN_ETOOBIG);
	assert_int_equal(out.len, 0);
	gn_buf_cleanup(&out);
}

static void test_round_trip_and_bomb(void **state)
{
	(void)state;
	size_t n = 4 << 20;
	char *zeros = calloc(1, n);
	gn_buf z, out;
	gn_err err;
	gn_buf_init(&z);
	assert_int_equal(gn_gzip(&z, zeros, n, &err), 0);
	assert_true(z.len < n / 500); /* zeros compress about 1000:1 */
	assert_int_equal(gunzip(&out, z.data, z.len, n), 0);
	assert_int_equal(out.len, n);
	assert_memory_equal(out.data, zeros, n);
	gn_buf_cleanup(&out);
	assert_int_equal(gunzip(&out, z.data, z.len, n - 1), GN_ETOOBIG);
	assert_int_equal(out.len, 0);
	gn_buf_cleanup(&out);
	gn_buf_cleanup(&z);
	free(zeros);
}

static void test_refusals(void **state)
{
	(void)state;
	gn_buf out;
	unsigned char b[sizeof(PY_GZIP) + 2];
	assert_int_equal(gunzip(&out, PY_GZIP, sizeof(PY_GZIP) - 4, 100), GN_EINVAL); /* truncated */
	gn_buf_cleanup(&out);
	assert_int_equal(gunzip(&out, "", 0, 100), GN_EINVAL); /* empty */
	gn_buf_cleanup(&out);
	assert_int_equal(gunzip(&out, "{\"a\":1}", 7, 100), GN_EINVAL); /* not gzip */
	gn_buf_cleanup(&out);
	memcpy(b, PY_GZIP, sizeof(PY_GZIP));
	b[sizeof(PY_GZIP) - 6] ^= 1; /* the CRC-32 */
	assert_int_equal(gunzip(&out, b, sizeof(PY_GZIP), 100), GN_EINVAL);
	gn_buf_cleanup(&out);
	memcpy(b, PY_GZIP, sizeof(PY_GZIP));
	b[sizeof(PY_GZIP)] = 'x';
	b[sizeof(PY_GZIP) + 1] = 'y';
	assert_int_equal(gunzip(&out, b, sizeof(b), 100), GN_EINVAL); /* bytes after the stream */
	assert_int_equal(out.len, 0);
	gn_buf_cleanup(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_inflates_another_gzip),
		cmocka_unit_test(test_round_trip_and_bomb),
		cmocka_unit_test(test_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
