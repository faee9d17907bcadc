/* Unit tests for server/artifacts_s3.c: which artifact-s3-url values are accepted (the rules that
 * keep every key plain, so it signs the same in libcurl and in the store). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "artifacts_s3.h"

struct url_case {
	const char *url;
	const char *msg; /* NULL: accepted; else a piece of the refusal */
};

static const struct url_case cases[] = {
	{"https://s3.eu-west-1.amazonaws.com/my-bucket", NULL},
	{"https://s3.eu-west-1.amazonaws.com/my-bucket/", NULL},
	{"http://127.0.0.1:9000/models.v2/ganglion/prod", NULL},
	{"http://[::1]:9000/bucket/a_b-c.d/", NULL},
	{"ftp://host/bucket", "must start with https:// or http://"},
	{"s3://bucket/prefix", "must start with https:// or http://"},
	{"https://host", "must name a host and a bucket"},
	{"https://host/", "must name a host and a bucket"},
	{"https:///bucket", "must name a host and a bucket"},
	{"https://user:secret@host/bucket", "no user, query or fragment"},
	{"https://host/bucket?x=1", "no user, query or fragment"},
	{"https://host/bucket#f", "no user, query or fragment"},
	{"https://host/ab", "not a valid bucket name"},
	{"https://host/Bucket", "not a valid bucket name"},
	{"https://host/bu_cket", "not a valid bucket name"},
	{"https://host/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "not a valid bucket name"},
	{"https://host/bucket/a b", "the prefix may hold only"},
	{"https://host/bucket/a%20b", "the prefix may hold only"},
	{"https://host/bucket/a//b", "the prefix may hold only"},
	{"https://host/bucket/../other", "the prefix may hold only"},
};

static void test_url_rules(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		gn_err err = {0};
		int rc = artifacts_s3_url_check(cases[i].url, &err);
		if (!cases[i].msg) {
			if (rc != 0)
				fail_msg("%s: refused: %s", cases[i].url, err.msg);
			continue;
		}
		if (rc != GN_EINVAL)
			fail_msg("%s: expected GN_EINVAL, got %d", cases[i].url, rc);
		if (!strstr(err.msg, cases[i].msg))
			fail_msg("%s: message '%s' lacks '%s'", cases[i].url, err.msg, cases[i].msg);
	}
}

static void test_digest_names(void **state)
{
	(void)state;
	assert_true(artifacts_is_digest("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
	assert_false(artifacts_is_digest("0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"));
	assert_false(artifacts_is_digest("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde"));
	assert_false(artifacts_is_digest("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0"));
	assert_false(artifacts_is_digest("upload-x"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_rules),
		cmocka_unit_test(test_digest_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
