/* Unit tests for lib/common.c's UUID text <-> 16 bytes conversion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"

static void test_uuid_round_trip(void **state)
{
	(void)state;
	unsigned char u[16];
	char text[37];
	static const unsigned char want[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
					       0xf0, 0x0d, 0x00, 0xff, 0x10, 0x20, 0x30, 0x4a};
	assert_int_equal(gn_uuid_parse(u, "01234567-89ab-cdef-f00d-00ff1020304a"), 0);
	assert_memory_equal(u, want, 16);
	gn_uuid_format(text, u);
	assert_string_equal(text, "01234567-89ab-cdef-f00d-00ff1020304a");
	/* Upper case is the same UUID; its text comes back lower case. */
	assert_int_equal(gn_uuid_parse(u, "01234567-89AB-CDEF-F00D-00FF1020304A"), 0);
	assert_memory_equal(u, want, 16);
	gn_uuid_format(text, u);
	assert_string_equal(text, "01234567-89ab-cdef-f00d-00ff1020304a");
}

static void test_uuid_refusals(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"",
		"01234567-89ab-cdef-f00d-00ff1020304",   /* short */
		"01234567-89ab-cdef-f00d-00ff1020304a0", /* long */
		"0123456789ab-cdef-f00d-00ff1020304a-",  /* dashes misplaced */
		"01234567-89ab-cdef-f00d-00ff1020304g",  /* not hex */
		"dev-1",
	};
	unsigned char u[16];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(gn_uuid_parse(u, bad[i]), GN_EINVAL);
	assert_int_equal(gn_uuid_parse(u, NULL), GN_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uuid_round_trip),
		cmocka_unit_test(test_uuid_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
