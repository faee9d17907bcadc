/* Unit tests for lib/selector.c: label selectors and label rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "selector.h"

struct expect {
	enum gn_selector_op op;
	const char *key, *value;
};

static void check(const char *s, size_t n, const struct expect *want)
{
	gn_selector sel;
	gn_err err;
	if (gn_selector_parse(&sel, s, &err))
		fail_msg("'%s' did not parse: %s", s, err.msg);
	assert_int_equal(sel.n, n);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(sel.terms[i].op, want[i].op);
		assert_string_equal(sel.terms[i].key, want[i].key);
		if (want[i].value)
			assert_string_equal(sel.terms[i].value, want[i].value);
		else
			assert_null(sel.terms[i].value);
	}
	gn_selector_cleanup(&sel);
}

static void test_valid(void **state)
{
	check("", 0, NULL);
	check("site=north", 1, (struct expect[]){{GN_SEL_EQ, "site", "north"}});
	check("site==north", 1, (struct expect[]){{GN_SEL_EQ, "site", "north"}});
	check("site=north,type=camera", 2,
	      (struct expect[]){{GN_SEL_EQ, "site", "north"}, {GN_SEL_EQ, "type", "camera"}});
	check("site!=south", 1, (struct expect[]){{GN_SEL_NE, "site", "south"}});
	check("gpu", 1, (struct expect[]){{GN_SEL_HAS, "gpu", NULL}});
	check("!gpu", 1, (struct expect[]){{GN_SEL_NOTHAS, "gpu", NULL}});
	check("gpu,!npu,zone=a", 3,
	      (struct expect[]){{GN_SEL_HAS, "gpu", NULL}, {GN_SEL_NOTHAS, "npu", NULL}, {GN_SEL_EQ, "zone", "a"}});
	check("site=", 1, (struct expect[]){{GN_SEL_EQ, "site", ""}});
	/* Values are data: SQL-looking text is just text. */
	check("name='; DROP TABLE devices; --", 1, (struct expect[]){{GN_SEL_EQ, "name", "'; DROP TABLE devices; --"}});
	check("city.gov/zone=a", 1, (struct expect[]){{GN_SEL_EQ, "city.gov/zone", "a"}});
}

static void test_invalid(void **state)
{
	static const char *bad[] = {
		",",
		"a,",
		",a",
		"a,,b",
		"=x",
		"!=x",
		"!",
		"a b=c",
		"a=b\x01",
		"0123456789012345678901234567890123456789012345678901234567890123=x",
		"a=1,a=2,a=3,a=4,a=5,a=6,a=7,a=8,a=9,a=10,a=11,a=12,a=13,a=14,a=15,a=16,a=17,a=18,a=19,a=20,"
		"a=21,a=22,a=23,a=24,a=25,a=26,a=27,a=28,a=29,a=30,a=31,a=32,a=33",
	};
	for (size_t i = 0; i < GN_ARRAY_LEN(bad); i++) {
		gn_selector sel;
		gn_err err;
		if (gn_selector_parse(&sel, bad[i], &err) != GN_EINVAL)
			fail_msg("'%s' should not parse", bad[i]);
		assert_null(sel.terms);
		assert_int_equal(sel.n, 0);
	}
}

static void test_label_rules(void **state)
{
	gn_err err;
	assert_int_equal(gn_label_key_check("site", &err), 0);
	assert_int_equal(gn_label_key_check("x'--", &err), 0);
	assert_int_equal(gn_label_key_check("", &err), GN_EINVAL);
	assert_int_equal(gn_label_key_check("a=b", &err), GN_EINVAL);
	assert_int_equal(gn_label_key_check("a,b", &err), GN_EINVAL);
	assert_int_equal(gn_label_key_check("a b", &err), GN_EINVAL);
	assert_int_equal(gn_label_value_check("", &err), 0);
	assert_int_equal(gn_label_value_check("x' OR '1'='1", &err), 0);
	assert_int_equal(gn_label_value_check("tab\there", &err), GN_EINVAL);
	char longv[300];
	memset(longv, 'v', sizeof(longv) - 1);
	longv[sizeof(longv) - 1] = '\0';
	assert_int_equal(gn_label_value_check(longv, &err), GN_EINVAL);
	/* selectors read facts.* from what devices report; a label may not pose as one */
	assert_int_equal(gn_label_key_settable("facts.runtime", &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "starts with 'facts.'"));
	assert_int_equal(gn_label_key_settable("site", &err), 0);
	assert_int_equal(gn_label_key_settable("factsheet", &err), 0);
	assert_int_equal(gn_label_key_settable("bad key", &err), GN_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_label_rules),
	};
	return cmocka_run_group_tests_name("selector", tests, NULL, NULL);
}
