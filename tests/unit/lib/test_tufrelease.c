/* Unit tests for lib/tufrelease.c: the check CI makes before signing the server's release draft.
 * Each tampered draft is the honest one with one change a compromised server could make. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "json.h"
#include "tuf.h"
#include "tufrelease.h"

#define NOW 1800000000LL
#define PATH "models/resnet/2.0.0/model.onnx"
#define OLD "models/resnet/1.0.0/model.onnx"
#define SHA "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define LEN 1234

static json_t *meta(void)
{
	return json_pack("{s:s,s:s,s:{s:s},s:[{s:s}],s:{s:i}}", "version", "2.0.0", "format", "onnx", "requirements",
			 "runtime", "onnx", "inputs", "name", "x", "sample", "n", 1);
}

static json_t *custom_of(const json_t *m)
{
	json_t *c = NULL;
	char *file = NULL;
	gn_err err;
	assert_int_equal(gn_tufr_expected_custom(&c, &file, "resnet", m, &err), 0);
	assert_string_equal(file, "model.onnx");
	free(file);
	return c;
}

static json_t *entry(const char *sha, json_t *custom)
{
	return json_pack("{s:i,s:{s:s},s:o}", "length", LEN, "hashes", "sha256", sha, "custom", custom);
}

static char *expiry(int64_t t)
{
	char s[21];
	gn_tuf_time(s, t);
	return gn_strdup(s);
}

/* The honest draft: version 3 after a current version 2 listing OLD, with delegations. */
static json_t *honest(void)
{
	json_t *m = meta();
	json_t *deleg = json_pack("{s:{},s:[]}", "keys", "roles");
	json_t *cur =
		json_pack("{s:s,s:s,s:i,s:s,s:{s:o},s:O}", "_type", "targets", "spec_version", "1.0.0", "version", 2,
			  "expires", "2030-01-01T00:00:00Z", "targets", OLD,
			  entry("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", json_object()),
			  "delegations", deleg);
	char *exp = expiry(NOW + 90 * 86400);
	json_t *targets = json_deep_copy(json_object_get(cur, "targets"));
	/* The server adds when it stored the upload to the custom fields. */
	json_t *custom = custom_of(m);
	char *at = expiry(NOW - 60);
	json_object_set_new(custom, "published_at", json_string(at));
	free(at);
	json_object_set_new(targets, PATH, entry(SHA, custom));
	json_t *sp = json_pack("{s:s,s:s,s:i,s:s,s:o,s:o}", "_type", "targets", "spec_version", "1.0.0", "version", 3,
			       "expires", exp, "targets", targets, "delegations", deleg);
	free(exp);
	json_decref(m);
	return json_pack("{s:s,s:s,s:{s:o,s:[]},s:o}", "role", "ci", "path", PATH, "current", "signed", cur,
			 "signatures", "signed", sp);
}

/* Runs the check on draft (taken) with this push's expected values; returns its result and the
 * message in msg. */
static int check(json_t *draft, bool first, char *msg, size_t n)
{
	json_t *m = meta(), *c = custom_of(m);
	struct gn_tufr_expect want = {
		.path = PATH, .sha256 = SHA, .length = LEN, .custom = c, .first_release = first, .now = NOW};
	gn_err err = {0};
	int rc = gn_tufr_draft_check(draft, &want, &err);
	snprintf(msg, n, "%.400s", rc ? err.msg : "");
	json_decref(draft);
	json_decref(c);
	json_decref(m);
	return rc;
}

#define REFUSED(draft, first, what)                                                   \
	do {                                                                          \
		char msg_[512];                                                       \
		assert_int_not_equal(check((draft), (first), msg_, sizeof(msg_)), 0); \
		if (!strstr(msg_, (what)) || !strstr(msg_, "refusing to sign"))       \
			fail_msg("message '%s' lacks '%s'", msg_, (what));            \
	} while (0)

static json_t *sp_of(json_t *d)
{
	return json_object_get(d, "signed");
}

static void test_honest_passes(void **state)
{
	char msg[512];
	(void)state;
	assert_int_equal(check(honest(), false, msg, sizeof(msg)), 0);
}

static void test_wrong_path(void **state)
{
	(void)state;
	/* CI's bytes under another version: both the draft's path and the targets key moved. */
	json_t *d = honest();
	json_t *t = json_object_get(sp_of(d), "targets");
	json_object_set(t, "models/resnet/9.9.9/model.onnx", json_object_get(t, PATH));
	json_object_del(t, PATH);
	json_object_set_new(d, "path", json_string("models/resnet/9.9.9/model.onnx"));
	REFUSED(d, false, "not " PATH);
	/* Same path claimed, bytes listed elsewhere too. */
	d = honest();
	t = json_object_get(sp_of(d), "targets");
	json_object_set(t, "models/other/1.0.0/model.onnx", json_object_get(t, PATH));
	REFUSED(d, false, "besides " PATH);
}

static void test_extra_delegations(void **state)
{
	(void)state;
	json_t *d = honest();
	json_t *deleg = json_pack("{s:{},s:[{s:s,s:[],s:i,s:[s]}]}", "keys", "roles", "name", "evil", "keyids",
				  "threshold", 1, "paths", "models/*/*/*");
	json_object_set_new(sp_of(d), "delegations", deleg);
	REFUSED(d, false, "changes the delegations");
	/* No delegations in the current version: none may appear. */
	d = honest();
	json_object_del(json_object_get(json_object_get(d, "current"), "signed"), "delegations");
	REFUSED(d, false, "adds delegations");
}

static void test_expiry(void **state)
{
	(void)state;
	char *far = expiry(NOW + GN_TUFR_MAX_EXPIRES_S + 1), *past = expiry(NOW - 1);
	json_t *d = honest();
	json_object_set_new(sp_of(d), "expires", json_string("2999-01-01T00:00:00Z"));
	REFUSED(d, false, "expires at 2999");
	d = honest();
	json_object_set_new(sp_of(d), "expires", json_string(far));
	REFUSED(d, false, "expires");
	d = honest();
	json_object_set_new(sp_of(d), "expires", json_string(past));
	REFUSED(d, false, "expires");
	d = honest();
	json_object_del(sp_of(d), "expires");
	REFUSED(d, false, "expires");
	free(far);
	free(past);
}

static void test_changed_entry(void **state)
{
	(void)state;
	static const char *const fields[] = {"model", "version", "format", "requirements", "inputs", "sample_sha256"};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		json_t *d = honest();
		json_t *c = json_object_get(json_object_get(json_object_get(sp_of(d), "targets"), PATH), "custom");
		json_object_set_new(c, fields[i], json_string("tampered"));
		/* the refusal names the field that differs (what a re-push whose metadata changed needs) */
		char want[120];
		snprintf(want, sizeof(want),
			 "other bytes or custom fields than this push: custom.%s (the server's \"tampered\"",
			 fields[i]);
		REFUSED(d, false, want);
	}
	static const char *const when[] = {"2999-01-01T00:00:00Z", "2020-01-01T00:00:00Z", "yesterday"};
	for (size_t i = 0; i < sizeof(when) / sizeof(when[0]); i++) {
		json_t *d = honest();
		json_t *c = json_object_get(json_object_get(json_object_get(sp_of(d), "targets"), PATH), "custom");
		json_object_set_new(c, "published_at", json_string(when[i]));
		REFUSED(d, false, "custom fields than this push: custom.published_at (");
	}
	json_t *d = honest();
	json_t *e = json_object_get(json_object_get(sp_of(d), "targets"), PATH);
	json_object_set_new(json_object_get(e, "custom"), "extra", json_true());
	REFUSED(d, false, "this push: custom.extra (the server's true, this push's nothing)");
	/* inside requirements: the one field, with both values; several fields are all named */
	d = honest();
	e = json_object_get(json_object_get(sp_of(d), "targets"), PATH);
	json_object_set_new(json_object_get(json_object_get(e, "custom"), "requirements"), "opset", json_integer(18));
	json_object_set_new(json_object_get(json_object_get(e, "custom"), "requirements"), "runtime", json_string("x"));
	REFUSED(d, false,
		"this push: custom.requirements.runtime (the server's \"x\", this push's \"onnx\"), "
		"custom.requirements.opset (the server's 18, this push's nothing); refusing to sign");
	d = honest();
	e = json_object_get(json_object_get(sp_of(d), "targets"), PATH);
	json_object_set_new(e, "length", json_integer(LEN + 1));
	REFUSED(d, false, "other bytes or custom fields than this push: length (the server's 1235, this push's 1234)");
	d = honest();
	e = json_object_get(json_object_get(sp_of(d), "targets"), PATH);
	json_object_set_new(json_object_get(e, "hashes"), "sha512", json_string("00"));
	REFUSED(d, false, "this push: hashes.sha512 (the server's \"00\", this push's nothing)");
	/* a key the server made up reaches the message without its control bytes, and cut */
	d = honest();
	e = json_object_get(json_object_get(sp_of(d), "targets"), PATH);
	json_object_set_new(json_object_get(e, "custom"), "\x1b]0;owned\x07", json_true());
	REFUSED(d, false, "this push: custom.?]0;owned? (the server's true, this push's nothing)");
	char longkey[100];
	memset(longkey, 'k', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	d = honest();
	e = json_object_get(json_object_get(sp_of(d), "targets"), PATH);
	json_object_set_new(json_object_get(e, "custom"), longkey, json_true());
	char want[120];
	snprintf(want, sizeof(want), "this push: custom.%.64s... (the server's true", longkey);
	REFUSED(d, false, want);
}

static void test_current_null(void **state)
{
	(void)state;
	json_t *d = honest();
	json_object_set_new(d, "current", json_null());
	REFUSED(d, false, "no current version");
	/* Even with --first-release: only as version 1 with this file alone. */
	d = honest();
	json_object_set_new(d, "current", json_null());
	json_object_del(sp_of(d), "delegations");
	REFUSED(d, true, "not version 1");
	d = honest();
	json_object_set_new(d, "current", json_null());
	json_object_set_new(sp_of(d), "version", json_integer(1));
	json_object_del(sp_of(d), "delegations");
	REFUSED(d, true, "besides " PATH); /* OLD is still listed */
	d = honest();
	json_object_del(d, "current");
	json_object_set_new(sp_of(d), "version", json_integer(1));
	json_object_del(sp_of(d), "delegations");
	json_object_del(json_object_get(sp_of(d), "targets"), OLD);
	char msg[512];
	assert_int_equal(check(d, true, msg, sizeof(msg)), 0);
}

static void test_unknown_key_and_version(void **state)
{
	(void)state;
	json_t *d = honest();
	json_object_set_new(sp_of(d), "x-extra", json_string("y"));
	REFUSED(d, false, "unexpected field 'x-extra'");
	d = honest();
	json_object_set_new(sp_of(d), "version", json_integer(7));
	REFUSED(d, false, "not version 3");
	d = honest();
	json_object_set_new(sp_of(d), "spec_version", json_string("1.9.9"));
	REFUSED(d, false, "spec_version");
	d = honest();
	json_object_set_new(sp_of(d), "_type", json_string("root"));
	REFUSED(d, false, "targets role");
}

static void test_previous_targets(void **state)
{
	(void)state;
	json_t *d = honest();
	json_object_del(json_object_get(sp_of(d), "targets"), OLD);
	REFUSED(d, false, "besides " PATH);
	d = honest();
	json_t *old = json_object_get(json_object_get(sp_of(d), "targets"), OLD);
	json_object_set_new(json_object_get(old, "hashes"), "sha256", json_string(SHA));
	REFUSED(d, false, "besides " PATH);
	/* The current version already lists this path with other bytes: not replaced. */
	d = honest();
	json_t *ct = json_object_get(json_object_get(json_object_get(d, "current"), "signed"), "targets");
	json_object_set(ct, PATH, json_object_get(json_object_get(sp_of(d), "targets"), OLD));
	REFUSED(d, false, "already lists");
}

static void test_expected_custom(void **state)
{
	(void)state;
	/* What the server signs (server/models.c target_custom), computed independently here. */
	json_t *m = json_pack("{s:s,s:{s:i,s:s}}", "version", "1.0.0", "sample", "n", 1, "a", "b"), *c = NULL;
	char *file = NULL;
	gn_err err;
	assert_int_equal(gn_tufr_expected_custom(&c, &file, "net", m, &err), 0);
	assert_string_equal(file, "model.bin");
	json_t *want = json_pack("{s:s,s:s,s:s,s:n,s:n,s:n,s:s,s:n}", "model", "net", "version", "1.0.0", "format",
				 "other", "requirements", "inputs", "outputs", "sample_sha256",
				 /* sha256 of {"a":"b","n":1} */
				 "e3536650ddcc58c0f0f8fc66a011a6b2ef84471b5890caecab4bd7a7b1da2bbf",
				 "reference_profile_sha256");
	assert_true(json_equal(c, want));
	json_decref(want);
	json_decref(c);
	free(file);
	json_decref(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_honest_passes),           cmocka_unit_test(test_wrong_path),
		cmocka_unit_test(test_extra_delegations),       cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_changed_entry),           cmocka_unit_test(test_current_null),
		cmocka_unit_test(test_unknown_key_and_version), cmocka_unit_test(test_previous_targets),
		cmocka_unit_test(test_expected_custom),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
