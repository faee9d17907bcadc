/* Unit tests for lib/canary.c: Mann-Whitney U and p-values against scipy's
 * (tests/fixtures/canary, the script committed), and the verdicts worked by hand. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "canary.h"
#include "json.h"

static double *doubles(const json_t *a, size_t *out_n)
{
	size_t i;
	json_t *x;
	double *v = calloc(json_array_size(a) + 1, sizeof(double));
	json_array_foreach(a, i, x)
		v[i] = json_number_value(x);
	*out_n = json_array_size(a);
	return v;
}

static void close_to(double got, double want, double rel)
{
	if (fabs(got - want) > rel * (fabs(want) + 1e-300)) {
		fprintf(stderr, "got %.17g, want %.17g\n", got, want);
		fail();
	}
}

static void test_mwu_against_scipy(void **state)
{
	json_error_t e;
	size_t i, nx, ny;
	json_t *c, *cases = json_load_file(SRCDIR "/tests/fixtures/canary/cases.json", 0, &e);
	(void)state;
	assert_non_null(cases);
	json_array_foreach(json_object_get(cases, "mwu"), i, c) {
		double u, p, *x = doubles(json_object_get(c, "x"), &nx), *y = doubles(json_object_get(c, "y"), &ny);
		gn_canary_mwu(&u, &p, x, nx, y, ny);
		close_to(u, json_number_value(json_object_get(c, "u")), 1e-12);
		close_to(p, json_number_value(json_object_get(c, "p")), 1e-9);
		close_to(gn_canary_median(x, nx), json_number_value(json_object_get(c, "median_x")), 1e-12);
		close_to(gn_canary_median(y, ny), json_number_value(json_object_get(c, "median_y")), 1e-12);
		free(x);
		free(y);
	}
	json_decref(cases);
	double same[] = {1, 1, 1}, u, p;
	gn_canary_mwu(&u, &p, same, 3, same, 3);
	assert_true(p == 1.0); /* every value the same */
	gn_canary_mwu(&u, &p, same, 3, same, 0);
	assert_true(p == 1.0);
}

static const struct gn_canary_metric errors = {"error_rate", 1, true, 0.1, 0.001};

static void test_verdicts(void **state)
{
	struct gn_canary_result r;
	(void)state;
	/* clearly worse: 10 % errors against 1 % */
	double bad[12], good[12];
	for (int i = 0; i < 12; i++) {
		bad[i] = 0.10 + 0.001 * i;
		good[i] = 0.01 + 0.001 * i;
	}
	gn_canary_judge_metric(&r, &errors, bad, 12, good, 12, 5, 0.02);
	assert_int_equal(r.verdict, GN_CANARY_FAIL);
	assert_true(r.p < 0.02 && r.effect > 1);
	/* the same the other way round: better is not a failure */
	for (int i = 0; i < 12; i++) {
		bad[i] = 0.10 + 0.001 * i;
		good[i] = 0.01 + 0.001 * i;
	}
	gn_canary_judge_metric(&r, &errors, good, 12, bad, 12, 5, 0.02);
	assert_int_equal(r.verdict, GN_CANARY_PASS);
	/* significant but within the tolerance: 1.05 against 1.00 */
	double a[10], b[10];
	for (int i = 0; i < 10; i++) {
		a[i] = 1.05 + 0.0001 * i;
		b[i] = 1.00 + 0.0001 * i;
	}
	struct gn_canary_metric lat = {"p95_latency_us", 1, true, 0.1, 0};
	gn_canary_judge_metric(&r, &lat, a, 10, b, 10, 5, 0.02);
	assert_true(r.p < 0.02);
	assert_int_equal(r.verdict, GN_CANARY_PASS);
	/* too few observations */
	gn_canary_judge_metric(&r, &errors, bad, 3, good, 12, 5, 0.02);
	assert_int_equal(r.verdict, GN_CANARY_INCONCLUSIVE);
	/* rare errors: both medians 0, but the canary errs in most windows */
	double rare_c[10] = {0, 0.02, 0.03, 0, 0.02, 0.03, 0.02, 0.04, 0.02, 0.03}, rare_k[10] = {0};
	gn_canary_judge_metric(&r, &errors, rare_c, 10, rare_k, 10, 5, 0.02);
	assert_int_equal(r.verdict, GN_CANARY_FAIL);
}

static void test_overall(void **state)
{
	struct gn_canary_metric m[3] = {
		{"error_rate", 2, true, 0.1, 0},
		{"p95_latency_us", 1, true, 0.2, 0},
		{"output_drift", 1, true, 0.5, 0},
	};
	struct gn_canary_result r[3] = {
		{.verdict = GN_CANARY_PASS}, {.verdict = GN_CANARY_PASS}, {.verdict = GN_CANARY_PASS}};
	double score;
	(void)state;
	assert_int_equal(gn_canary_overall(&score, m, r, 3, 95, 75), GN_CANARY_PASS);
	assert_true(score == 100);
	r[1].verdict = GN_CANARY_FAIL; /* 3 of 4 */
	assert_int_equal(gn_canary_overall(&score, m, r, 3, 95, 75), GN_CANARY_MARGINAL);
	assert_true(score == 75);
	r[0].verdict = GN_CANARY_FAIL; /* 1 of 4 */
	assert_int_equal(gn_canary_overall(&score, m, r, 3, 95, 75), GN_CANARY_FAIL);
	r[2].verdict = GN_CANARY_INCONCLUSIVE;
	assert_int_equal(gn_canary_overall(&score, m, r, 3, 95, 75), GN_CANARY_INCONCLUSIVE);
	assert_true(isnan(score));
	assert_string_equal(gn_canary_verdict_name(GN_CANARY_MARGINAL), "marginal");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mwu_against_scipy),
		cmocka_unit_test(test_verdicts),
		cmocka_unit_test(test_overall),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
