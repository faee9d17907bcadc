/* Unit tests for server/director.c: the rule that decides when a device's director targets must be
 * signed anew (none yet, desired state changed, or less than half of their lifetime left). */
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

/* Signed at T0 for LIFE, naming det 1.0.0 assigned at A; the device should still run that. */
static struct director_state signed_as_desired(void)
{
	struct director_state st;
	memset(&st, 0, sizeof(st));
	st.version = 3;
	st.created = T0;
	st.expires = T0 + LIFE;
	snprintf(st.model, sizeof(st.model), "det");
	snprintf(st.model_version, sizeof(st.model_version), "1.0.0");
	snprintf(st.assigned_at, sizeof(st.assigned_at), "2026-01-01T00:00:00Z");
	st.has_desired = true;
	snprintf(st.want_model, sizeof(st.want_model), "det");
	snprintf(st.want_version, sizeof(st.want_version), "1.0.0");
	snprintf(st.want_assigned_at, sizeof(st.want_assigned_at), "2026-01-01T00:00:00Z");
	return st;
}

/* Signed at T0 for LIFE naming nothing; the device should run nothing. */
static struct director_state signed_empty(void)
{
	struct director_state st;
	memset(&st, 0, sizeof(st));
	st.version = 1;
	st.created = T0;
	st.expires = T0 + LIFE;
	return st;
}

enum change { SAME, NONE_SIGNED, OTHER_MODEL, OTHER_VERSION, REASSIGNED, UNASSIGNED, ASSIGNED };

static void apply(struct director_state *st, enum change c)
{
	switch (c) {
	case SAME: break;
	case NONE_SIGNED: *st = (struct director_state){0}; break;
	case OTHER_MODEL: snprintf(st->want_model, sizeof(st->want_model), "seg"); break;
	case OTHER_VERSION: snprintf(st->want_version, sizeof(st->want_version), "1.0.1"); break;
	/* The same version assigned again: a new assignment time (a rollback to it, say). */
	case REASSIGNED: snprintf(st->want_assigned_at, sizeof(st->want_assigned_at), "2026-01-02T00:00:00Z"); break;
	case UNASSIGNED: st->has_desired = false; break;
	case ASSIGNED:
		st->has_desired = true;
		snprintf(st->want_model, sizeof(st->want_model), "det");
		snprintf(st->want_version, sizeof(st->want_version), "1.0.0");
		snprintf(st->want_assigned_at, sizeof(st->want_assigned_at), "2026-01-01T00:00:00Z");
		break;
	}
}

static const struct {
	const char *name;
	bool empty; /* start from targets naming nothing */
	enum change change;
	int64_t now;
	bool want;
} cases[] = {
	{"none signed yet", false, NONE_SIGNED, T0, true},
	{"none signed yet, nothing desired", true, NONE_SIGNED, T0, true},
	{"unchanged, just signed", false, SAME, T0, false},
	{"unchanged, a quarter of the lifetime gone", false, SAME, T0 + LIFE / 4, false},
	{"unchanged, exactly half left", false, SAME, T0 + LIFE / 2, false},
	{"unchanged, a second under half left", false, SAME, T0 + LIFE / 2 + 1, true},
	{"unchanged, expired", false, SAME, T0 + LIFE + 1, true},
	{"unchanged, clock before signing", false, SAME, T0 - 60, false},
	{"another model", false, OTHER_MODEL, T0, true},
	{"another version", false, OTHER_VERSION, T0, true},
	{"same version assigned again", false, REASSIGNED, T0, true},
	{"unassigned", false, UNASSIGNED, T0, true},
	{"nothing desired, nothing named", true, SAME, T0 + 1, false},
	{"nothing named, now assigned", true, ASSIGNED, T0 + 1, true},
	{"nothing named, half its lifetime gone and a second", true, SAME, T0 + LIFE / 2 + 1, true},
};

static void test_needs_signing(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct director_state st = cases[i].empty ? signed_empty() : signed_as_desired();
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
	struct director_state st = signed_as_desired();
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
