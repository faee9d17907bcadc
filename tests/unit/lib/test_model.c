/* Unit tests for lib/model.c: model names, aliases, SemVer 2.0.0 versions and their precedence,
 * formats and artifact file names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "model.h"

#define A63 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

struct check_case {
	const char *s;
	bool ok;
};

/* Runs each case through check; a refusal must be GN_EINVAL with a message naming `what`. */
static void run_cases(int (*check)(const char *, gn_err *), const struct check_case *cases, size_t n, const char *what)
{
	for (size_t i = 0; i < n; i++) {
		gn_err err = {.code = 1, .msg = "untouched"};
		int rc = check(cases[i].s, &err);
		if (cases[i].ok && rc != 0)
			fail_msg("'%s' refused: %s", cases[i].s ? cases[i].s : "(null)", err.msg);
		if (!cases[i].ok && rc != GN_EINVAL)
			fail_msg("'%s' accepted (rc %d)", cases[i].s ? cases[i].s : "(null)", rc);
		if (cases[i].ok)
			assert_string_equal(err.msg, "untouched");
		else if (!strstr(err.msg, what))
			fail_msg("'%s': message '%s' does not name %s", cases[i].s, err.msg, what);
	}
}

static void test_names(void **state)
{
	static const struct check_case cases[] = {
		{"a", true},    {"0", true},      {"a-0", true},       {"detector-v2", true},
		{A63, true},    {A63 "a", false}, {"", false},         {NULL, false},
		{"-x", false},  {"x-", false},    {"Bad_Name", false}, {"UPPER", false},
		{"a.b", false}, {"a_b", false},   {"a b", false},      {"caf\xc3\xa9", false},
		{"a\n", false},
	};
	run_cases(gn_model_name_check, cases, GN_ARRAY_LEN(cases), "model name");
}

static void test_aliases(void **state)
{
	static const struct check_case cases[] = {
		{"production", true}, {"stable", true}, {"v1", true},       {"canary.eu_west-1", true},
		{"1", true},          {"1.0", true},    {A63, true},        {A63 "a", false},
		{"", false},          {NULL, false},    {".hidden", false}, {"-x", false},
		{"_x", false},        {"Prod", false},  {"a/b", false},     {"a b", false},
	};
	run_cases(gn_model_alias_check, cases, GN_ARRAY_LEN(cases), "alias");
}

static void test_alias_shaped_like_a_version(void **state)
{
	static const struct check_case cases[] = {
		{"1.0.0", false},
		{"1.0.0-rc.1", false},
		{"10.20.30", false},
		{"1.0.0-", true},
	};
	run_cases(gn_model_alias_check, cases, GN_ARRAY_LEN(cases), "looks like a version");
}

static int version_check(const char *v, gn_err *err)
{
	struct gn_semver sv;
	return gn_model_version_parse(&sv, v, err);
}

static void test_versions(void **state)
{
	static const struct check_case cases[] = {
		/* semver.org's examples of valid versions */
		{"0.0.0", true},
		{"1.0.0-alpha", true},
		{"1.0.0-alpha.1", true},
		{"1.0.0-0.3.7", true},
		{"1.0.0-x.7.z.92", true},
		{"1.0.0-x-y-z.--", true},
		{"1.0.0+20130313144700", true},
		{"1.0.0-beta+exp.sha.5114f85", true},
		{"1.0.0+21AF26D3----117B344092BD", true},
		{"10.20.30", true},
		{"1.0.0-0A.is.legal", true},
		{"1.0.0+0.build.1-rc.10000aaa-kk-0.1", true}, /* build identifiers may have leading zeros */
		{"9223372036854775807.0.0", true},
		/* invalid */
		{"1.0", false},
		{"1", false},
		{"", false},
		{NULL, false},
		{"1.0.0.0", false},
		{"01.0.0", false},
		{"1.00.0", false},
		{"1.0.00", false},
		{"v1.0.0", false},
		{" 1.0.0", false},
		{"1.0.0 ", false},
		{"1.0.0-", false},
		{"1.0.0+", false},
		{"1.0.0-a..b", false},
		{"1.0.0-a.", false},
		{"1.0.0-01", false}, /* numeric pre-release identifiers have no leading zero */
		{"1.0.0-rc.01", false},
		{"1.0.0+a+b", false},
		{"1.0.0-\xc3\xa9", false},
		{"1.0.0-a_b", false},
		{"-1.0.0", false},
		{"9223372036854775808.0.0", false}, /* past int64 */
		{"1.2.3-0123", false},
		{"1.2.3----RC-SNAPSHOT.12.9.1--.12+788.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false}, /* > 64 bytes */
	};
	run_cases(version_check, cases, GN_ARRAY_LEN(cases), "semantic version");
}

static void test_version_fields(void **state)
{
	struct gn_semver sv;
	gn_err err;
	assert_int_equal(gn_model_version_parse(&sv, "1.22.333-rc.1+build.7", &err), 0);
	assert_int_equal(sv.major, 1);
	assert_int_equal(sv.minor, 22);
	assert_int_equal(sv.patch, 333);
	assert_string_equal(sv.prerelease, "rc.1");
	assert_int_equal(gn_model_version_parse(&sv, "2.0.0+build", &err), 0);
	assert_string_equal(sv.prerelease, "");
	assert_string_equal(sv.prerelease_key, "");
	/* A refused version leaves nothing half-parsed behind. */
	assert_int_equal(gn_model_version_parse(&sv, "3.1.4-01", &err), GN_EINVAL);
	assert_int_equal(sv.major, 0);
	assert_string_equal(sv.prerelease, "");
}

static int cmp(const char *a, const char *b)
{
	struct gn_semver x, y;
	gn_err err;
	if (gn_model_version_parse(&x, a, &err) || gn_model_version_parse(&y, b, &err))
		fail_msg("%s", err.msg);
	return gn_model_version_cmp(&x, &y);
}

/* Each list is in ascending precedence: every pair must compare that way, both ways round. */
static void assert_ascending(const char *const *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < n; j++) {
			int want = (i > j) - (i < j), got = cmp(v[i], v[j]);
			if (got != want)
				fail_msg("%s vs %s: %d, expected %d", v[i], v[j], got, want);
		}
	}
}

static void test_precedence(void **state)
{
	/* semver.org, items 11.2 and 11.4 */
	static const char *const spec[] = {
		"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta",
		"1.0.0-beta",  "1.0.0-beta.2",  "1.0.0-beta.11",
		"1.0.0-rc.1",  "1.0.0",         "2.0.0",
		"2.1.0",       "2.1.1",
	};
	/* Numeric identifiers compare as numbers, before alphanumeric ones, at any length; ASCII
	 * order for the rest (upper case first); more identifiers win when the others are equal. */
	static const char *const numeric[] = {
		"1.0.0-0",
		"1.0.0-2",
		"1.0.0-10",
		"1.0.0-18446744073709551615",
		"1.0.0-18446744073709551616",
		"1.0.0-99999999999999999999",
		"1.0.0-100000000000000000000",
		"1.0.0-999999999999999999999",
		"1.0.0-1000000000000000000000",
		"1.0.0--",
		"1.0.0-0a",
		"1.0.0-A",
		"1.0.0-a",
		"1.0.0-a.0",
		"1.0.0-a.0.0",
		"1.0.0-a.1",
		"1.0.0-a-",
		"1.0.0-b",
		"1.0.0",
		"1.0.1-0",
		"1.0.10",
		"1.2.0",
		"1.10.0",
		"9223372036854775807.0.0",
	};
	assert_ascending(spec, GN_ARRAY_LEN(spec));
	assert_ascending(numeric, GN_ARRAY_LEN(numeric));
	/* Build metadata does not count. */
	assert_int_equal(cmp("1.0.0+a", "1.0.0+b"), 0);
	assert_int_equal(cmp("1.0.0-rc.1+a", "1.0.0-rc.1"), 0);
}

/* The server sorts by the key in SQL (COLLATE "C"): the key alone must give the order among
 * pre-releases of one version, including long lists of numeric identifiers. */
/* Writes "1.0.0-1.1. ... .1.last": 29 identifiers, 63 bytes, the longest list a version holds. */
static void many_identifiers(char *out, char last)
{
	strcpy(out, "1.0.0-");
	for (int i = 0; i < 28; i++)
		strcat(out, "1.");
	strncat(out, &last, 1);
}

/* The server sorts by the key in SQL (COLLATE "C"): the key alone must give the order among
 * pre-releases of one version, even for the longest list of numeric identifiers. */
static void test_prerelease_key_orders(void **state)
{
	struct gn_semver a, b;
	gn_err err;
	char lo[80], hi[80];
	many_identifiers(lo, '1');
	many_identifiers(hi, '2');
	assert_int_equal(strlen(hi), 63);
	assert_int_equal(gn_model_version_parse(&a, lo, &err), 0);
	assert_int_equal(gn_model_version_parse(&b, hi, &err), 0);
	assert_true(strcmp(a.prerelease_key, b.prerelease_key) < 0);
	/* Keys of identifiers up to 20 digits are what they were when keys were first stored. */
	assert_int_equal(gn_model_version_parse(&a, "1.0.0-rc.7", &err), 0);
	assert_string_equal(a.prerelease_key, "1rc\x01"
					      "0"
					      "00000000000000000007");
}

static void test_version_length(void **state)
{
	struct gn_semver sv;
	gn_err err;
	char v[80] = "1.0.0-";
	memset(v + 6, 'a', 58);
	v[64] = '\0';
	assert_int_equal(gn_model_version_parse(&sv, v, &err), 0);
	strcat(v, "a");
	assert_int_equal(gn_model_version_parse(&sv, v, &err), GN_EINVAL);
}

static void test_formats(void **state)
{
	static const struct {
		const char *name, *ext;
	} ok[] = {{"onnx", "onnx"}, {"tflite", "tflite"}, {"tensorrt-plan", "plan"}, {"other", "bin"}};
	static const char *const bad[] = {"pickle", "ONNX", "", "onnx ", NULL};
	const struct gn_model_format *f;
	gn_err err;
	for (size_t i = 0; i < GN_ARRAY_LEN(ok); i++) {
		assert_int_equal(gn_model_format_lookup(&f, ok[i].name, &err), 0);
		assert_string_equal(f->name, ok[i].name);
		assert_string_equal(f->ext, ok[i].ext);
	}
	assert_int_equal(gn_model_format_lookup(&f, GN_MODEL_FORMAT_DEFAULT, &err), 0);
	assert_string_equal(f->ext, "bin");
	for (size_t i = 0; i < GN_ARRAY_LEN(bad); i++) {
		assert_int_equal(gn_model_format_lookup(&f, bad[i], &err), GN_EINVAL);
		assert_non_null(strstr(err.msg, "format must be one of onnx, tflite, tensorrt-plan, other"));
	}
}

static void test_filenames(void **state)
{
	static const struct check_case cases[] = {
		{"model.onnx", true},
		{"det_v2-final.tflite", true},
		{"M", true},
		{"a..b", true},
		{"x.", true},
		{"", false},
		{NULL, false},
		{".", false},
		{"..", false},
		{".hidden", false},
		{"../evil", false},
		{"a/b", false},
		{"a b", false},
		{"a\\b", false},
		{"caf\xc3\xa9", false},
		{"a\n", false},
	};
	char longest[GN_MODEL_FILENAME_MAX + 2];
	gn_err err;
	run_cases(gn_model_filename_check, cases, GN_ARRAY_LEN(cases), "filename");
	memset(longest, 'a', GN_MODEL_FILENAME_MAX);
	longest[GN_MODEL_FILENAME_MAX] = '\0';
	assert_int_equal(gn_model_filename_check(longest, &err), 0);
	strcat(longest, "a");
	assert_int_equal(gn_model_filename_check(longest, &err), GN_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_aliases),
		cmocka_unit_test(test_alias_shaped_like_a_version),
		cmocka_unit_test(test_versions),
		cmocka_unit_test(test_version_fields),
		cmocka_unit_test(test_precedence),
		cmocka_unit_test(test_prerelease_key_orders),
		cmocka_unit_test(test_version_length),
		cmocka_unit_test(test_formats),
		cmocka_unit_test(test_filenames),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
