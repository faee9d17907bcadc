/* Unit tests for server/director.c: the rule that decides when a device's director targets must be
 * signed anew (none yet, desired state changed -- one model or several --, or less than half of
 * their lifetime left). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "director.h"
#include "models.h"

/* director.c asks models.c whether a version is yanked; the re-sign rule tested here never does,
 * and linking the registry (artifacts, TUF image signing) would bring in far more than it needs. */
int models_targetable(db_conn *c, const char *name, const char *version, const char *what, gn_err *err)
{
	(void)c, (void)name, (void)version, (void)what, (void)err;
	fail_msg("models_targetable is not expected in these tests");
	return GN_ERROR;
}

#define T0 1700000000LL /* when the targets were signed */
#define LIFE 86400LL    /* their lifetime */

#define DET "det=1.0.0@2026-01-01T00:00:00Z"
#define CLS "cls=2.0.0@2026-01-01T00:00:00Z"

/* Keys as director.c and gn_desired_key write them; the rule only compares them. */
static char signed_key[256], want_key[256];

/* Signed at T0 for LIFE naming `named` (a key); the device should run `wanted`. */
static struct director_state state_of(int version, const char *named, const char *wanted)
{
	struct director_state st;
	memset(&st, 0, sizeof(st));
	st.version = version;
	st.created = T0;
	st.expires = T0 + LIFE;
	snprintf(signed_key, sizeof(signed_key), "%s", named);
	snprintf(want_key, sizeof(want_key), "%s", wanted);
	st.key = signed_key;
	st.want_key = want_key;
	return st;
}

enum start { DET_SIGNED, NOTHING_SIGNED, TWO_SIGNED };
enum change {
	SAME,
	NONE_SIGNED,
	OTHER_MODEL,
	OTHER_VERSION,
	REASSIGNED,
	UNASSIGNED,
	ASSIGNED,
	MODEL_ADDED,
	MODEL_REMOVED,
	RETIRED_KEY,
	NO_SNAPSHOT
};

static void apply(struct director_state *st, enum change c)
{
	switch (c) {
	case SAME: break;
	case NONE_SIGNED: st->version = 0; break;
	case OTHER_MODEL: snprintf(want_key, sizeof(want_key), "seg=1.0.0@2026-01-01T00:00:00Z"); break;
	case OTHER_VERSION: snprintf(want_key, sizeof(want_key), "det=1.0.1@2026-01-01T00:00:00Z"); break;
	/* The same version assigned again: a new assignment time (a rollback to it, say). */
	case REASSIGNED: snprintf(want_key, sizeof(want_key), "det=1.0.0@2026-01-02T00:00:00Z"); break;
	case UNASSIGNED: want_key[0] = '\0'; break;
	case ASSIGNED: snprintf(want_key, sizeof(want_key), DET); break;
	case MODEL_ADDED: snprintf(want_key, sizeof(want_key), CLS "," DET); break;
	case MODEL_REMOVED: snprintf(want_key, sizeof(want_key), DET); break;
	case RETIRED_KEY: st->retired_key = true; break;
	/* Signed before the director had snapshot and timestamp keys, which it has now. */
	case NO_SNAPSHOT: st->unsnapshotted = true; break;
	}
}

static const struct {
	const char *name;
	enum start start;
	enum change change;
	int64_t now;
	bool want;
} cases[] = {
	{"none signed yet", DET_SIGNED, NONE_SIGNED, T0, true},
	{"none signed yet, nothing desired", NOTHING_SIGNED, NONE_SIGNED, T0, true},
	{"unchanged, just signed", DET_SIGNED, SAME, T0, false},
	{"unchanged, a quarter of the lifetime gone", DET_SIGNED, SAME, T0 + LIFE / 4, false},
	{"unchanged, exactly half left", DET_SIGNED, SAME, T0 + LIFE / 2, false},
	{"unchanged, a second under half left", DET_SIGNED, SAME, T0 + LIFE / 2 + 1, true},
	{"unchanged, expired", DET_SIGNED, SAME, T0 + LIFE + 1, true},
	{"unchanged, clock before signing", DET_SIGNED, SAME, T0 - 60, false},
	{"another model", DET_SIGNED, OTHER_MODEL, T0, true},
	{"another version", DET_SIGNED, OTHER_VERSION, T0, true},
	{"same version assigned again", DET_SIGNED, REASSIGNED, T0, true},
	{"unassigned", DET_SIGNED, UNASSIGNED, T0, true},
	{"nothing desired, nothing named", NOTHING_SIGNED, SAME, T0 + 1, false},
	{"nothing named, now assigned", NOTHING_SIGNED, ASSIGNED, T0 + 1, true},
	{"nothing named, half its lifetime gone and a second", NOTHING_SIGNED, SAME, T0 + LIFE / 2 + 1, true},
	{"a second model added", DET_SIGNED, MODEL_ADDED, T0, true},
	{"two models, unchanged", TWO_SIGNED, SAME, T0 + 1, false},
	{"two models, one removed", TWO_SIGNED, MODEL_REMOVED, T0, true},
	{"unchanged, signed by a retired key", DET_SIGNED, RETIRED_KEY, T0 + 1, true},
	{"unchanged, without snapshot and timestamp", DET_SIGNED, NO_SNAPSHOT, T0 + 1, true},
	{"nothing named, without snapshot and timestamp", NOTHING_SIGNED, NO_SNAPSHOT, T0 + 1, true},
};

static struct director_state start_of(enum start s)
{
	switch (s) {
	case NOTHING_SIGNED: return state_of(1, "", "");
	case TWO_SIGNED: return state_of(4, CLS "," DET, CLS "," DET);
	default: return state_of(3, DET, DET);
	}
}

static void test_needs_signing(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct director_state st = start_of(cases[i].start);
		apply(&st, cases[i].change);
		bool got = director_needs_signing(&st, cases[i].now);
		if (got != cases[i].want)
			fail_msg("case '%s': director_needs_signing = %d, want %d", cases[i].name, got, cases[i].want);
	}
}

/* A check-in is answered from memory until director_fresh_until: never past the moment the rule
 * wants new targets signed. */
static void test_fresh_until_matches_the_rule(void **state)
{
	(void)state;
	struct director_state st = start_of(DET_SIGNED);
	int64_t until = director_fresh_until(&st);
	assert_int_equal(until, T0 + LIFE / 2);
	assert_false(director_needs_signing(&st, until));
	assert_true(director_needs_signing(&st, until + 1));
	st.expires = T0 + 7; /* an odd lifetime: the answer goes stale a little early, never late */
	assert_int_equal(director_fresh_until(&st), T0 + 3);
	assert_false(director_needs_signing(&st, T0 + 4));
	assert_true(director_needs_signing(&st, T0 + 5));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_needs_signing),
		cmocka_unit_test(test_fresh_until_matches_the_rule),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
