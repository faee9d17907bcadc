/* Unit tests for server/device_tokens.c: signed device tokens are refused when altered anywhere,
 * malformed, expired or signed with another key; they name the key that signed them (the first
 * key's keep the older gnd_v2 form), a superseded key verifies until its verify_until and a
 * retired one not at all; and the revocation state is not trusted before it has been read (the
 * database then decides). */
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
	assert_int_equal(device_tokens_use_key(1, key_a, &err), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	device_tokens_cleanup();
	return 0;
}

/* A new token, asserting that minting works. */
static char *mint(const char *id, int64_t gen, int64_t exp)
{
	char *tok = NULL;
	gn_err err;
	if (device_tokens_mint(&tok, NULL, id, gen, exp, &err))
		fail_msg("mint: %s", err.msg);
	return tok;
}

/* GN_EAUTH (with err's message in msg) or 0 for token at now; a token signed with a key this
 * replica has not loaded counts as refused (GN_ENOTFOUND here; the server then asks the database). */
static int check_at(const char *token, int64_t now, struct device_token *out, char *msg, size_t n)
{
	enum device_token_verdict v;
	struct device_token t;
	gn_err err;
	int rc = device_tokens_check(&v, out ? out : &t, token, now, &err);
	if (msg)
		snprintf(msg, n, "%.160s", rc ? err.msg : "");
	if (!rc && v == DEVICE_TOKEN_NO_KEY)
		return GN_ENOTFOUND;
	if (!rc)
		assert_int_equal(v, DEVICE_TOKEN_UNKNOWN); /* nothing read yet: the database decides */
	else
		assert_string_equal((out ? out : &t)->device_id, "");
	return rc;
}

static int check(const char *token, char id[40], int64_t *gen, char *msg, size_t n)
{
	struct device_token t;
	int rc = check_at(token, NOW, &t, msg, n);
	snprintf(id, 40, "%s", t.device_id);
	if (!rc)
		*gen = t.gen;
	return rc;
}

static void test_round_trip(void **state)
{
	char id[40], msg[200];
	int64_t gen = -1;
	(void)state;
	char *tok = mint(ID, 7, NOW + 60);
	assert_true(device_tokens_is_signed(tok));
	/* The first key signs in the form of the release before key ids. */
	assert_memory_equal(tok, "gnd_v2." ID ".7.", strlen("gnd_v2." ID ".7."));
	assert_true(strlen(tok) < 128); /* what agents keep */
	assert_int_equal(check(tok, id, &gen, msg, sizeof(msg)), 0);
	assert_string_equal(id, ID);
	assert_int_equal(gen, 7);
	free(tok);
}

/* A token naming its device in upper case (validly signed) is refused: revocations name devices
 * in lower case and would miss it. */
static void test_upper_case_id_is_refused(void **state)
{
	char id[40], msg[200], upper[40];
	int64_t gen = -1;
	(void)state;
	snprintf(upper, sizeof(upper), "%s", ID);
	for (char *p = upper; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	assert_string_not_equal(upper, ID);
	char *tok = mint(upper, 1, NOW + 60);
	assert_int_equal(check(tok, id, &gen, msg, sizeof(msg)), GN_EAUTH);
	free(tok);
}

static void test_expired(void **state)
{
	char id[40], msg[200];
	int64_t gen;
	(void)state;
	char *tok = mint(ID, 0, NOW);
	assert_int_equal(check(tok, id, &gen, msg, sizeof(msg)), GN_EAUTH);
	assert_non_null(strstr(msg, "expired"));
	assert_string_equal(id, "");
	free(tok);
}

/* Any one character of tok changed, anywhere, is refused. */
static void every_alteration_refused(const char *tok)
{
	char id[40];
	int64_t gen;
	size_t n = strlen(tok);
	assert_int_equal(check(tok, id, &gen, NULL, 0), 0);
	for (size_t i = 0; i < n; i++) {
		char *bad = strdup(tok);
		bad[i] = bad[i] == '1' ? '2' : '1';
		if (check(bad, id, &gen, NULL, 0) == 0)
			fail_msg("accepted with character %zu changed: %s", i, bad);
		/* A letter in another case is another character too (the MAC's hex digits, the id's). */
		memcpy(bad, tok, n);
		if (bad[i] >= 'a' && bad[i] <= 'z') {
			bad[i] = (char)(bad[i] - 'a' + 'A');
			if (check(bad, id, &gen, NULL, 0) == 0)
				fail_msg("accepted with character %zu in upper case: %s", i, bad);
		}
		free(bad);
	}
}

static void test_every_alteration_is_refused(void **state)
{
	gn_err err;
	(void)state;
	char *v2 = mint(ID, 12, NOW + 3600);
	every_alteration_refused(v2);
	assert_int_equal(device_tokens_use_key(2, key_b, &err), 0);
	char *v3 = mint(ID, 12, NOW + 3600);
	assert_memory_equal(v3, "gnd_v3.2.", 9);
	every_alteration_refused(v3);
	free(v2);
	free(v3);
}

static void test_malformed(void **state)
{
	char id[40], good[200], bad[300];
	int64_t gen;
	(void)state;
	char *tok = mint(ID, 3, NOW + 3600);
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
		"gnd_v3." ID ".3.1800003600.00000000000000000000000000000000",
		"gnd_v3..." ID ".3.1800003600.00000000000000000000000000000000",
		"gnd_v3.0." ID ".3.1800003600.00000000000000000000000000000000",
		"gnd_v3.01." ID ".3.1800003600.00000000000000000000000000000000",
		"gnd_v3.-1." ID ".3.1800003600.00000000000000000000000000000000",
		"gnd_v3.x." ID ".3.1800003600.00000000000000000000000000000000",
		"gnd_v3.1234567890." ID ".3.1800003600.00000000000000000000000000000000",
		"gnd_v3.1.2." ID ".3.1800003600.00000000000000000000000000000000",
		"gnd_v4." ID ".3.1800003600.00000000000000000000000000000000",
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
	char *tok = mint(ID, 1, NOW + 60);
	device_tokens_cleanup();
	assert_int_equal(device_tokens_use_key(1, key_b, &err), 0);
	assert_int_equal(check(tok, id, &gen, NULL, 0), GN_EAUTH);
	char *mine = mint(ID, 1, NOW + 60);
	assert_string_not_equal(mine, tok);
	assert_int_equal(check(mine, id, &gen, NULL, 0), 0);
	free(tok);
	free(mine);
}

/* After a rotation the new key signs, with its id in the token, and the previous key's tokens
 * (the gnd_v2 form included) verify until its verify_until; the body of a token signed by one key
 * does not pass under another id. */
static void test_rotation_overlap(void **state)
{
	struct device_token t;
	char msg[200], bad[200];
	gn_err err;
	(void)state;
	char *old = mint(ID, 4, NOW + 3600);
	assert_int_equal(device_tokens_use_key(2, key_b, &err), 0);
	device_tokens_on_key_notify("1 verifying 1800001800"); /* superseded; verifies 30 min more */
	char *fresh = mint(ID, 4, NOW + 3600);
	assert_memory_equal(fresh, "gnd_v3.2." ID ".4.", strlen("gnd_v3.2." ID ".4."));
	assert_true(strlen(fresh) < 128);
	assert_int_equal(check_at(fresh, NOW, &t, NULL, 0), 0);
	assert_int_equal(t.key_id, 2);
	assert_string_equal(t.device_id, ID);
	assert_int_equal(t.gen, 4);
	assert_int_equal(t.exp, NOW + 3600);
	assert_int_equal(check_at(old, NOW, &t, NULL, 0), 0);
	assert_int_equal(t.key_id, 1);
	assert_int_equal(check_at(old, 1800001799, &t, NULL, 0), 0);
	/* Past its verify_until, though the token itself has not expired. */
	assert_int_equal(check_at(old, 1800001800, &t, msg, sizeof(msg)), GN_EAUTH);
	assert_non_null(strstr(msg, "retired key"));
	assert_int_equal(check_at(fresh, 1800001800, &t, NULL, 0), 0);
	/* The old token's body under the new key's id, and the new one's as a gnd_v2 token: refused. */
	snprintf(bad, sizeof(bad), "gnd_v3.2.%s", old + strlen("gnd_v2."));
	assert_int_equal(check_at(bad, NOW, &t, NULL, 0), GN_EAUTH);
	snprintf(bad, sizeof(bad), "gnd_v3.1.%s", old + strlen("gnd_v2."));
	assert_int_equal(check_at(bad, NOW, &t, NULL, 0), GN_EAUTH);
	snprintf(bad, sizeof(bad), "gnd_v2.%s", fresh + strlen("gnd_v3.2."));
	assert_int_equal(check_at(bad, NOW, &t, NULL, 0), GN_EAUTH);
	/* A later verify_until changes nothing; an earlier one holds. */
	device_tokens_on_key_notify("1 verifying 1800009999");
	assert_int_equal(check_at(old, 1800001800, &t, NULL, 0), GN_EAUTH);
	free(old);
	free(fresh);
}

/* A retired key verifies nothing from then on, whatever else is heard later; a key that is not
 * loaded is for the database to decide. */
static void test_retired_and_unknown_keys(void **state)
{
	struct device_token t;
	char msg[200], *tok = NULL;
	gn_err err;
	(void)state;
	char *old = mint(ID, 0, NOW + 3600);
	assert_int_equal(device_tokens_use_key(2, key_b, &err), 0);
	char *fresh = mint(ID, 0, NOW + 3600);
	device_tokens_on_key_notify("1 retired 1800000000");
	assert_int_equal(check_at(old, NOW, &t, msg, sizeof(msg)), GN_EAUTH);
	assert_non_null(strstr(msg, "retired key"));
	assert_int_equal(device_tokens_use_key(1, key_a, &err), 0); /* a reload does not revive it */
	assert_int_equal(check_at(old, NOW, &t, NULL, 0), GN_EAUTH);
	assert_int_equal(check_at(fresh, NOW, &t, NULL, 0), 0);
	/* Key 3 announced but not loaded: key 2 signs meanwhile, and key 3's tokens go to the database. */
	device_tokens_on_key_notify("3 signing 0");
	free(fresh);
	fresh = mint(ID, 0, NOW + 3600);
	assert_memory_equal(fresh, "gnd_v3.2.", 9);
	char *other = gn_asprintf("gnd_v3.3.%s", fresh + strlen("gnd_v3.2."));
	assert_int_equal(check_at(other, NOW, &t, NULL, 0), GN_ENOTFOUND);
	/* Notifications that say nothing usable change nothing. */
	const char *junk[] = {"", "x", "0 signing 0", "-1 retired 0", "2 retired", "2 retired -5"};
	for (size_t i = 0; i < sizeof(junk) / sizeof(*junk); i++)
		device_tokens_on_key_notify(junk[i]);
	assert_int_equal(check_at(fresh, NOW, &t, NULL, 0), 0);
	/* With every key retired none signs. */
	device_tokens_on_key_notify("2 retired 1800000000");
	assert_int_equal(device_tokens_mint(&tok, NULL, ID, 0, NOW + 60, &err), GN_EUNAVAIL);
	assert_null(tok);
	assert_int_equal(check_at(fresh, NOW, &t, NULL, 0), GN_EAUTH);
	free(old);
	free(fresh);
	free(other);
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
	char *tok = mint(ID, 0, NOW + 60);
	assert_int_equal(check(tok, id, &gen, NULL, 0), 0);
	free(tok);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expired, setup, teardown),
		cmocka_unit_test_setup_teardown(test_upper_case_id_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_alteration_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_another_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rotation_overlap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retired_and_unknown_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notifications_raise_the_state, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
