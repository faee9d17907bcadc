/* Unit tests for lib/json.c: bounded parsing, strict field checks, problem+json. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "json.h"

static const gn_json_field fields[] = {
	{"name", GN_JSON_STRING, true, false},
	{"count", GN_JSON_INTEGER, false, false},
	{"labels", GN_JSON_STRING_MAP, false, true},
	{"on", GN_JSON_BOOL, false, false},
};

static void test_table(void **state)
{
	static const struct {
		const char *body;
		int rc;
		const char *msg;
	} cases[] = {
		{"{\"name\":\"a\"}", 0, NULL},
		{"{\"name\":\"a\",\"count\":3,\"labels\":{\"k\":\"v\"},\"on\":true}", 0, NULL},
		{"{\"name\":\"a\",\"labels\":null}", 0, NULL},
		{"{\"name\":\"a\"", GN_EINVAL, "malformed JSON"},
		{"", GN_EINVAL, "empty"},
		{"[1]", GN_EINVAL, "object is expected"},
		{"{\"count\":1}", GN_EINVAL, "'name' is required"},
		{"{\"name\":1}", GN_EINVAL, "'name' must be a string"},
		{"{\"name\":\"a\",\"count\":\"3\"}", GN_EINVAL, "'count' must be an integer"},
		{"{\"name\":\"a\",\"count\":1.5}", GN_EINVAL, "'count' must be an integer"},
		{"{\"name\":\"a\",\"labels\":{\"k\":1}}", GN_EINVAL, "'labels' must be an object of strings"},
		{"{\"name\":\"a\",\"extra\":1}", GN_EINVAL, "unknown field 'extra'"},
		{"{\"name\":\"a\",\"name\":\"b\"}", GN_EINVAL, "duplicate"},
		{"{\"name\":\"a\",\"count\":null}", GN_EINVAL, "'count' must be an integer"},
		{"{\"name\":\"[[[[[[\"}", 0, NULL}, /* brackets inside strings do not count as nesting */
	};
	for (size_t i = 0; i < GN_ARRAY_LEN(cases); i++) {
		json_t *j = NULL;
		gn_err err = {0};
		int rc = gn_json_parse(&j, cases[i].body, strlen(cases[i].body), 4, &err);
		if (!rc)
			rc = gn_json_check(j, fields, GN_ARRAY_LEN(fields), &err);
		if (rc != cases[i].rc)
			fail_msg("case %zu (%s): rc %d want %d (%s)", i, cases[i].body, rc, cases[i].rc, err.msg);
		if (cases[i].msg && !strstr(err.msg, cases[i].msg))
			fail_msg("case %zu: message '%s' lacks '%s'", i, err.msg, cases[i].msg);
		json_decref(j);
	}
}

static void test_depth(void **state)
{
	json_t *j = NULL;
	gn_err err;
	const char *ok = "{\"a\":{\"b\":[1]}}";
	assert_int_equal(gn_json_parse(&j, ok, strlen(ok), 3, &err), 0);
	json_decref(j);
	assert_int_equal(gn_json_parse(&j, ok, strlen(ok), 2, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "nested deeper than 2"));
	char deep[20001];
	memset(deep, '[', 10000);
	memset(deep + 10000, ']', 10000);
	deep[20000] = '\0';
	assert_int_equal(gn_json_parse(&j, deep, strlen(deep), 32, &err), GN_EINVAL);
}

static void test_problem(void **state)
{
	char *p = gn_problem_dup(413, "Content Too Large", "body over 1048576 bytes");
	json_t *j = json_loads(p, 0, NULL);
	assert_non_null(j);
	assert_int_equal(json_integer_value(json_object_get(j, "status")), 413);
	assert_string_equal(gn_json_str(j, "title"), "Content Too Large");
	assert_string_equal(gn_json_str(j, "detail"), "body over 1048576 bytes");
	assert_string_equal(gn_json_str(j, "type"), "about:blank");
	json_decref(j);

	char out[256];
	gn_problem_describe(out, sizeof(out), p, strlen(p));
	assert_string_equal(out, "Content Too Large: body over 1048576 bytes");
	free(p);
	/* Quotes stay valid JSON; control characters (from client input) are replaced. */
	p = gn_problem_dup(400, "Bad Request", "field \"x\"\n is bad");
	j = json_loads(p, 0, NULL);
	assert_non_null(j);
	assert_string_equal(gn_json_str(j, "detail"), "field \"x\"? is bad");
	json_decref(j);
	free(p);
	gn_problem_describe(out, sizeof(out), "<html>oops</html>", 17);
	assert_string_equal(out, "<html>oops</html>");
}

/* Expected forms computed with securesystemslib.formats.encode_canonical. */
static void test_canonical(void **state)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{"{}", "{}"},
		{"{\"b\":1,\"a\":[true,false,null],\"c\":{\"z\":\"\",\"y\":-5}}",
		 "{\"a\":[true,false,null],\"b\":1,\"c\":{\"y\":-5,\"z\":\"\"}}"},
		{"{\"k\":\"quote \\\" backslash \\\\ slash / tab \\t\"}",
		 "{\"k\":\"quote \\\" backslash \\\\ slash / tab \t\"}"},
		{"{\"\u00e9\":1,\"z\":2,\"Z\":3,\"a\":4}", "{\"Z\":3,\"a\":4,\"z\":2,\"\xc3\xa9\":1}"},
		{"[9007199254740993, 0, -1]", "[9007199254740993,0,-1]"},
	};
	for (size_t i = 0; i < GN_ARRAY_LEN(cases); i++) {
		json_error_t je;
		json_t *j = json_loads(cases[i].in, JSON_DECODE_ANY, &je);
		char *out = NULL;
		size_t len = 0;
		gn_err err;
		assert_non_null(j);
		assert_int_equal(gn_json_canonical(&out, &len, j, &err), 0);
		if (strcmp(out, cases[i].want) != 0)
			fail_msg("case %zu: got %s want %s", i, out, cases[i].want);
		assert_int_equal(len, strlen(cases[i].want));
		free(out);
		json_decref(j);
	}
	json_t *f = json_pack("{s:f}", "x", 0.5);
	char *out = NULL;
	size_t len;
	gn_err err;
	assert_int_equal(gn_json_canonical(&out, &len, f, &err), GN_EINVAL);
	assert_null(out);
	json_decref(f);
}

/* A detail cut in the middle of a character (or carrying raw bytes) still makes a valid answer. */
static void test_problem_with_broken_utf8(void **state)
{
	const char detail[] = "unknown field 'aaaa\xc3'";
	char *p = gn_problem_dup(400, "Bad Request", detail);
	json_t *j = json_loads(p, 0, NULL);
	assert_non_null(j);
	assert_string_equal(gn_json_str(j, "detail"), "unknown field 'aaaa?'");
	json_decref(j);
	free(p);
	assert_true(gn_utf8_valid("caf\xc3\xa9", 5));
	assert_false(gn_utf8_valid("caf\xc3", 4));
	assert_false(gn_utf8_valid("\xed\xa0\x80", 3)); /* a surrogate */
	assert_false(gn_utf8_valid("\xc0\xaf", 2));     /* overlong */
	char *c = gn_utf8_clean_dup("line\nbreak\x01 caf\xc3\xa9");
	assert_string_equal(c, "line?break? caf\xc3\xa9");
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_depth),
		cmocka_unit_test(test_problem),
		cmocka_unit_test(test_canonical),
		cmocka_unit_test(test_problem_with_broken_utf8),
	};
	return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
