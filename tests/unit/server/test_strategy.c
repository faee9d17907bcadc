/* Unit tests for server/strategy.c: rollout strategies as a deployment gives them. Each refused
 * case names a piece of the message it expects; accepted ones, the settings they must yield. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "strategy.h"

struct refusal {
	const char *json;
	const char *msg;
};

static json_t *load(const char *text)
{
	json_error_t jerr;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
	if (!j)
		fail_msg("%s: %s", text, jerr.text);
	return j;
}

static void test_refused(void **state)
{
	static const struct refusal cases[] = {
		{"[]", "strategy must be an object"},
		{"{\"soak\": 1}", "soak"},
		{"{\"stages\": [{\"percent\": 50}]}", "must be 100 percent"},
		{"{\"stages\": [{\"percent\": 50}, {\"percent\": 50}]}", "above the stage before (50)"},
		{"{\"gates\": {\"max_parallel\": 3}}", "max_parallel"},
		{"{\"max_parallel\": 0}", "strategy.max_parallel must be 1 to 1000000"},
		{"{\"max_parallel\": 1000001}", "strategy.max_parallel must be 1 to 1000000"},
		{"{\"max_parallel\": 2.5}", "max_parallel"},
		{"{\"gates\": {\"max_p95_latency_ms\": 0.05}}",
		 "max_p95_latency_ms must be from 0.1 to 10000 milliseconds"},
		{"{\"gates\": {\"max_p95_latency_ms\": 10000.5}}", "max_p95_latency_ms must be from 0.1 to 10000"},
		{"{\"gates\": {\"max_p95_latency_ms\": \"5\"}}", "max_p95_latency_ms"},
		{"{\"stages\": [{\"percent\": 10}, {\"percent\": 100}], \"gates\": {\"max_p95_latency_ratio\": 0.9}}",
		 "max_p95_latency_ratio must be from 1 to 1000"},
		{"{\"gates\": {\"max_p95_latency_ratio\": 2}}",
		 "max_p95_latency_ratio compares the canary with the devices still on the old version"},
		{"{\"gates\": {\"max_error_increase\": 0.1}}", "max_error_increase compares"},
		{"{\"gates\": {\"max_p95_latency_ms\": 20, \"min_requests\": 0}}",
		 "min_requests must be at least 1 for a latency gate"},
		{"{\"gates\": {\"max_failed_share\": null}}", "max_failed_share"},
		{"{\"gates\": {\"canary_judgement\": {}}}", "canary_judgement compares the canary"},
		{"{\"stages\": [{\"percent\": 10}, {\"percent\": 100}], \"gates\": {\"canary_judgement\": "
		 "{\"min_score\": 50, \"marginal_score\": 60}}}",
		 "marginal_score (60) must not be above min_score (50)"},
		{"{\"stages\": [{\"percent\": 10}, {\"percent\": 100}], \"gates\": {\"canary_judgement\": "
		 "{\"min_score\": -1}}}",
		 "canary_judgement.min_score must be from 0 to 100"},
		{"{\"stages\": [{\"percent\": 10}, {\"percent\": 100}], \"gates\": {\"canary_judgement\": "
		 "{\"alpha\": 0.1}}}",
		 "alpha"},
		{"{\"gates\": {\"max_output_psi\": 101}}", "max_output_psi must be from 0 to 100"},
		{"{\"gates\": {\"max_output_psi\": 0.2, \"min_requests\": 0}}", "min_requests must be at least 1"},
	};
	for (size_t i = 0; i < GN_ARRAY_LEN(cases); i++) {
		struct strategy st;
		json_t *in = load(cases[i].json), *out = NULL;
		gn_err err = {.code = 1, .msg = "untouched"};
		int rc = strategy_parse(&st, &out, in, &err);
		if (rc != GN_EINVAL)
			fail_msg("%s: got %d (%s), expected GN_EINVAL", cases[i].json, rc, err.msg);
		if (!strstr(err.msg, cases[i].msg))
			fail_msg("%s: message '%s' lacks '%s'", cases[i].json, err.msg, cases[i].msg);
		assert_null(out);
		json_decref(in);
	}
}

static void test_defaults(void **state)
{
	struct strategy st;
	json_t *out = NULL;
	gn_err err;
	assert_int_equal(strategy_parse(&st, &out, NULL, &err), 0);
	assert_int_equal(st.nstages, 1);
	assert_int_equal(st.max_parallel, 0);
	assert_true(st.max_p95_latency_ms < 0 && st.max_p95_latency_ratio < 0);
	assert_false(strategy_compares(&st));
	/* The complete form names every setting, the new ones as null (no gate, no cap). */
	assert_true(json_is_null(json_object_get(out, "max_parallel")));
	assert_true(json_is_null(json_object_get(json_object_get(out, "gates"), "max_p95_latency_ms")));
	assert_true(json_is_null(json_object_get(json_object_get(out, "gates"), "max_p95_latency_ratio")));
	json_decref(out);
}

static void test_latency_gates_and_cap(void **state)
{
	struct strategy st, again;
	json_t *out = NULL, *out2 = NULL;
	gn_err err;
	json_t *in = load("{\"stages\": [{\"percent\": 10, \"bake\": 60}, {\"percent\": 100}], \"max_parallel\": 25,"
			  " \"gates\": {\"max_p95_latency_ms\": 12.5, \"max_p95_latency_ratio\": 1.5,"
			  " \"min_requests\": 500}}");
	assert_int_equal(strategy_parse(&st, &out, in, &err), 0);
	assert_int_equal(st.max_parallel, 25);
	assert_true(st.max_p95_latency_ms == 12.5 && st.max_p95_latency_ratio == 1.5);
	assert_int_equal(st.min_requests, 500);
	assert_true(strategy_compares(&st));
	/* Its complete form parses to the same strategy (a rollout keeps it and reads it back). */
	assert_int_equal(strategy_parse(&again, &out2, out, &err), 0);
	assert_memory_equal(&st, &again, sizeof(st));
	assert_true(json_equal(out, out2));
	/* null: no cap, no gate. */
	json_decref(in);
	in = load("{\"max_parallel\": null, \"gates\": {\"max_p95_latency_ms\": null}}");
	assert_int_equal(strategy_parse(&st, NULL, in, &err), 0);
	assert_int_equal(st.max_parallel, 0);
	assert_true(st.max_p95_latency_ms < 0);
	json_decref(in);
	json_decref(out);
	json_decref(out2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_latency_gates_and_cap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
