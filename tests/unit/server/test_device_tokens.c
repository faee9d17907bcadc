/* Unit tests for server/device_tokens.c: signed device tokens are refused when altered anywhere,
 * malformed, expired or signed with another key, and the revocation state is not trusted before
 * it has been read (the database then decides). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "device_tokens.h"

#define ID "0b5f4f4e-3c1a-4b8e-9a52-6f0e2d1c7a90"
#define NOW 1800000000LL

static const unsigned char key_a[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
					17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const unsigned char key_b[32] = {32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17,
					16, 15, 14, 13, 12, 11, 10, 9,  8,  7,  6,  5,  4,  3,  2,  1};

static int setup(void **state)
{
	gn_err err;
	(void)state;
	assert_int_equal(device_tokens_use_key(key_a, &err), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	device_tokens_cleanup();
	return 0;
}

/* GN_EAUTH (with err's message in msg) or 0 for token at NOW. */
static int check(const char *token, char id[40], int64_t *gen, char *msg, size_t n)
{
	enum device_token_verdict v;
	gn_err err;
	int rc = device_tokens_check(&v, id, gen, token, NOW, &err);
	if (msg)
		snprintf(msg, n, "%.160s", rc ? err.msg : "");
	if (!rc)
		assert_int_equal(v, DEVICE_TOKEN_UNKNOWN); /* nothing read yet: the database decides */
	return rc;
}

static void test_round_trip(void **state)
{
	char id[40], msg[200];
	int64_t gen = -1;
	(void)state;
	char *tok = device_tokens_mint(ID, 7, NOW + 60);
	assert_non_null(tok);
	assert_true(device_tokens_is_signed(tok));
	assert_true(strlen(tok) < 128); /* what agents keep */
	assert_int_equal(check(tok, id, &gen, msg, sizeof(msg)), 0);
	assert_string_equal(id, ID);
	assert_int_equal(gen, 7);
	free(tok);
}

static void test_expired(void **state)
{
	char id[40], msg[200];
	int64_t gen;
	(void)state;
	char *tok = device_tokens_mint(ID, 0, NOW);
	assert_int_equal(check(tok, id, &gen, msg, sizeof(msg)), GN_EAUTH);
	assert_non_null(strstr(msg, "expired"));
	assert_string_equal(id, "");
	free(tok);
}

/* Any one character changed, anywhere, is refused. */
static void test_every_alteration_is_refused(void **state)
{
	char id[40];
	int64_t gen;
	(void)state;
	char *tok = device_tokens_mint(ID, 12, NOW + 3600);
	size_t n = strlen(tok);
	for (size_t i = 0; i < n; i++) {
		char *bad = strdup(tok);
		bad[i] = bad[i] == '1' ? '2' : '1';
		if (check(bad, id, &gen, NULL, 0) != GN_EAUTH)
			fail_msg("accepted with character %zu changed: %s", i, bad);
		/* A letter in another case is another character too (the MAC's hex digits, the id's). */
		memcpy(bad, tok, n);
		if (bad[i] >= 'a' && bad[i] <= 'z') {
			bad[i] = (char)(bad[i] - 'a' + 'A');
			if (check(bad, id, &gen, NULL, 0) != GN_EAUTH)
				fail_msg("accepted with character %zu in upper case: %s", i, bad);
		}
		free(bad);
	}
	free(tok);
}

static void test_malformed(void **state)
{
	char id[40], good[200], bad[300];
	int64_t gen;
	(void)state;
	char *tok = device_tokens_mint(ID, 3, NOW + 3600);
	snprintf(good, sizeof(good), "%s", tok);
	free(tok);
	const char *mac = strrchr(good, '.') + 1;
	const char *cases[] = {
		"",
		"gnd_v2.",
		"gnd_v2." ID,
		"gnd_v2." ID ".3",
		"gnd_v2." ID ".3.1800003600",
		"gnd_v2." ID "..1800003600.00000000000000000000000000000000",
		"gnd_v2." ID ".x.1800003600.00000000000000000000000000000000",
		"gnd_v2." ID ".-3.1800003600.00000000000000000000000000000000",
		"gnd_v2." ID ".3.99999999999999999999.00000000000000000000000000000000",
		"gnd_v2.not-a-uuid-not-a-uuid-not-a-uuid-xx.3.1800003600.00000000000000000000000000000000",
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++)
		if (check(cases[i], id, &gen, NULL, 0) != GN_EAUTH)
			fail_msg("accepted '%s'", cases[i]);
	/* Truncated, lengthened, or its MAC moved onto another body. */
	snprintf(bad, sizeof(bad), "%.*s", (int)strlen(good) - 1, good);
	assert_int_equal(check(bad, id, &gen, NULL, 0), GN_EAUTH);
	snprintf(bad, sizeof(bad), "%s0", good);
	assert_int_equal(check(bad, id, &gen, NULL, 0), GN_EAUTH);
	snprintf(bad, sizeof(bad), "gnd_v2." ID ".4.1800003600.%s", mac);
	assert_int_equal(check(bad, id, &gen, NULL, 0), GN_EAUTH);
	assert_int_equal(check(good, id, &gen, NULL, 0), 0);
}

static void test_another_key(void **state)
{
	char id[40];
	int64_t gen;
	gn_err err;
	(void)state;
	char *tok = device_tokens_mint(ID, 1, NOW + 60);
	device_tokens_cleanup();
	assert_int_equal(device_tokens_use_key(key_b, &err), 0);
	assert_int_equal(check(tok, id, &gen, NULL, 0), GN_EAUTH);
	char *mine = device_tokens_mint(ID, 1, NOW + 60);
	assert_string_not_equal(mine, tok);
	assert_int_equal(check(mine, id, &gen, NULL, 0), 0);
	free(tok);
	free(mine);
}

static void test_notifications_raise_the_state(void **state)
{
	(void)state;
	assert_int_equal(device_tokens_revoked_count(), 0);
	device_tokens_on_notify(ID " 2 active");
	device_tokens_on_notify(ID " 1 active"); /* an older one changes nothing */
	device_tokens_on_notify("not a payload");
	device_tokens_on_notify("");
	assert_int_equal(device_tokens_revoked_count(), 1);
	/* Untrusted until read after a listener starts: still the database's to decide. */
	char id[40];
	int64_t gen;
	char *tok = device_tokens_mint(ID, 0, NOW + 60);
	assert_int_equal(check(tok, id, &gen, NULL, 0), 0);
	free(tok);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expired, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_alteration_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_another_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notifications_raise_the_state, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
