/* Rollout strategies: parsing with defaults, and every check a setting needs to take effect. */
#include "strategy.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "json.h"

static const gn_json_field top_fields[] = {
	{"stages", GN_JSON_ARRAY, false, false},  {"probation", GN_JSON_INTEGER, false, false},
	{"gates", GN_JSON_OBJECT, false, false},  {"on_failure", GN_JSON_STRING, false, false},
	{"approval", GN_JSON_BOOL, false, false}, {"max_parallel", GN_JSON_INTEGER, false, true},
};
static const gn_json_field stage_fields[] = {
	{"percent", GN_JSON_INTEGER, true, false},
	{"bake", GN_JSON_INTEGER, false, false},
};
static const gn_json_field gate_fields[] = {
	{"max_failed", GN_JSON_INTEGER, false, false},          {"max_failed_share", GN_JSON_NUMBER, false, false},
	{"min_healthy", GN_JSON_INTEGER, false, false},         {"min_success_share", GN_JSON_NUMBER, false, false},
	{"max_error_rate", GN_JSON_NUMBER, false, true},        {"max_error_increase", GN_JSON_NUMBER, false, true},
	{"min_requests", GN_JSON_INTEGER, false, false},        {"max_p95_latency_ms", GN_JSON_NUMBER, false, true},
	{"max_p95_latency_ratio", GN_JSON_NUMBER, false, true}, {"canary_judgement", GN_JSON_OBJECT, false, true},
	{"max_output_psi", GN_JSON_NUMBER, false, true},
};
static const gn_json_field judgement_fields[] = {
	{"min_score", GN_JSON_NUMBER, false, false},
	{"marginal_score", GN_JSON_NUMBER, false, false},
};

#define WEEK_S (7 * 86400)

/* Puts where in front of the message already in err (GN_EINVAL). */
static int prefixed(gn_err *err, const char *where)
{
	char why[sizeof(err->msg)];
	snprintf(why, sizeof(why), "%s", err->msg);
	return gn_err_set(err, GN_EINVAL, "%s: %s", where, why);
}

static void defaults(struct strategy *s)
{
	memset(s, 0, sizeof(*s));
	s->stages[0] = (struct strategy_stage){100, 0};
	s->nstages = 1;
	s->min_healthy = 1;
	s->min_success_share = 1.0;
	s->max_error_rate = -1;
	s->max_error_increase = -1;
	s->max_p95_latency_ms = -1;
	s->max_p95_latency_ratio = -1;
	s->min_requests = 100;
	s->canary_min_score = 95;
	s->canary_marginal_score = 75;
	s->max_output_psi = -1;
	s->rollback_on_failure = true;
}

static int parse_stages(struct strategy *s, const json_t *arr, gn_err *err)
{
	size_t i;
	json_t *st;
	if (json_array_size(arr) < 1 || json_array_size(arr) > STRATEGY_MAX_STAGES)
		return gn_err_set(err, GN_EINVAL, "strategy.stages must list 1 to %d stages", STRATEGY_MAX_STAGES);
	s->nstages = 0;
	json_array_foreach(arr, i, st) {
		if (!json_is_object(st))
			return gn_err_set(err, GN_EINVAL, "strategy.stages[%zu] must be an object", i);
		if (gn_json_check(st, stage_fields, GN_ARRAY_LEN(stage_fields), err))
			return prefixed(err, "strategy.stages[]");
		json_int_t pct = json_integer_value(json_object_get(st, "percent"));
		json_t *bake = json_object_get(st, "bake");
		int prev = i ? s->stages[i - 1].percent : 0;
		if (pct <= prev || pct > 100)
			return gn_err_set(
				err, GN_EINVAL,
				"strategy.stages[%zu].percent must be above the stage before (%d) and at most "
				"100, not %lld",
				i, prev, (long long)pct);
		int64_t b = bake ? (int64_t)json_integer_value(bake) : 0;
		if (b < 0 || b > WEEK_S)
			return gn_err_set(err, GN_EINVAL, "strategy.stages[%zu].bake must be 0 to %d seconds", i,
					  WEEK_S);
		s->stages[s->nstages++] = (struct strategy_stage){(int)pct, b};
	}
	if (s->stages[s->nstages - 1].percent != 100)
		return gn_err_set(err, GN_EINVAL, "the last of strategy.stages must be 100 percent, not %d",
				  s->stages[s->nstages - 1].percent);
	return 0;
}

/* Reads a share in [0, 1]; null (when allowed) is -1, no such gate. */
static int share(double *out, const json_t *v, const char *name, gn_err *err)
{
	if (!v)
		return 0;
	if (json_is_null(v)) {
		*out = -1;
		return 0;
	}
	double d = json_number_value(v);
	if (!isfinite(d) || d < 0 || d > 1)
		return gn_err_set(err, GN_EINVAL, "strategy.gates.%s must be a share from 0 to 1", name);
	*out = d;
	return 0;
}

/* Reads a number in [min, max]; null is -1, no such gate. */
static int bounded(double *out, const json_t *v, const char *name, double min, double max, const char *unit,
		   gn_err *err)
{
	if (!v)
		return 0;
	if (json_is_null(v)) {
		*out = -1;
		return 0;
	}
	double d = json_number_value(v);
	if (!isfinite(d) || d < min || d > max)
		return gn_err_set(err, GN_EINVAL, "strategy.gates.%s must be from %g to %g%s", name, min, max, unit);
	*out = d;
	return 0;
}

static int count(int64_t *out, const json_t *v, const char *name, int64_t max, gn_err *err)
{
	if (!v)
		return 0;
	json_int_t n = json_integer_value(v);
	if (n < 0 || n > max)
		return gn_err_set(err, GN_EINVAL, "strategy.gates.%s must be 0 to %lld", name, (long long)max);
	*out = (int64_t)n;
	return 0;
}

/* "canary_judgement": {"min_score", "marginal_score"} (defaults 95 and 75), or null: none. */
static int parse_judgement(struct strategy *s, const json_t *j, gn_err *err)
{
	if (!j || json_is_null(j))
		return 0;
	if (gn_json_check(j, judgement_fields, GN_ARRAY_LEN(judgement_fields), err))
		return prefixed(err, "strategy.gates.canary_judgement");
	s->canary_judgement = true;
	if (bounded(&s->canary_min_score, json_object_get(j, "min_score"), "canary_judgement.min_score", 0, 100, "",
		    err) ||
	    bounded(&s->canary_marginal_score, json_object_get(j, "marginal_score"), "canary_judgement.marginal_score",
		    0, 100, "", err))
		return GN_EINVAL;
	if (s->canary_marginal_score > s->canary_min_score)
		return gn_err_set(
			err, GN_EINVAL,
			"strategy.gates.canary_judgement.marginal_score (%g) must not be above min_score (%g)",
			s->canary_marginal_score, s->canary_min_score);
	return 0;
}

static int parse_gates(struct strategy *s, const json_t *g, gn_err *err)
{
	if (gn_json_check(g, gate_fields, GN_ARRAY_LEN(gate_fields), err))
		return prefixed(err, "strategy.gates");
	if (count(&s->max_failed, json_object_get(g, "max_failed"), "max_failed", 1000000, err) ||
	    share(&s->max_failed_share, json_object_get(g, "max_failed_share"), "max_failed_share", err) ||
	    count(&s->min_healthy, json_object_get(g, "min_healthy"), "min_healthy", 1000000, err) ||
	    share(&s->min_success_share, json_object_get(g, "min_success_share"), "min_success_share", err) ||
	    share(&s->max_error_rate, json_object_get(g, "max_error_rate"), "max_error_rate", err) ||
	    share(&s->max_error_increase, json_object_get(g, "max_error_increase"), "max_error_increase", err) ||
	    count(&s->min_requests, json_object_get(g, "min_requests"), "min_requests", 1000000000, err) ||
	    /* A p95 is the upper bound of a histogram bucket (lib/latency.h): 0.1 ms to 10 s, or above. */
	    bounded(&s->max_p95_latency_ms, json_object_get(g, "max_p95_latency_ms"), "max_p95_latency_ms", 0.1, 10000,
		    " milliseconds", err) ||
	    bounded(&s->max_p95_latency_ratio, json_object_get(g, "max_p95_latency_ratio"), "max_p95_latency_ratio", 1,
		    1000, "", err) ||
	    bounded(&s->max_output_psi, json_object_get(g, "max_output_psi"), "max_output_psi", 0, 100, "", err) ||
	    parse_judgement(s, json_object_get(g, "canary_judgement"), err))
		return GN_EINVAL;
	if (json_is_null(json_object_get(g, "max_failed_share")) ||
	    json_is_null(json_object_get(g, "min_success_share")))
		return gn_err_set(err, GN_EINVAL, "strategy.gates: only the error-rate gates may be null");
	if (s->min_requests < 1 && (s->max_error_rate >= 0 || s->max_error_increase >= 0))
		return gn_err_set(err, GN_EINVAL,
				  "strategy.gates.min_requests must be at least 1 for an error-rate gate");
	if (s->min_requests < 1 && (s->max_p95_latency_ms >= 0 || s->max_p95_latency_ratio >= 0))
		return gn_err_set(err, GN_EINVAL, "strategy.gates.min_requests must be at least 1 for a latency gate");
	if (s->min_requests < 1 && s->max_output_psi >= 0)
		return gn_err_set(
			err, GN_EINVAL,
			"strategy.gates.min_requests must be at least 1 for max_output_psi (it counts outputs)");
	return 0;
}

bool strategy_compares(const struct strategy *s)
{
	return s->max_error_increase >= 0 || s->max_p95_latency_ratio >= 0;
}

/* Checks what needs the stages and the gates together. */
static int check_whole(const struct strategy *s, gn_err *err)
{
	/* The last stage holds every device: only an earlier one leaves devices on the old version. */
	if (strategy_compares(s) && s->nstages < 2)
		return gn_err_set(err, GN_EINVAL,
				  "strategy.gates.%s compares the canary with the devices still on the old version: "
				  "it needs a stage below 100 percent before the last",
				  s->max_error_increase >= 0 ? "max_error_increase" : "max_p95_latency_ratio");
	if (s->canary_judgement && s->nstages < 2)
		return gn_err_set(
			err, GN_EINVAL,
			"strategy.gates.canary_judgement compares the canary with the devices still on the old "
			"version: it needs a stage below 100 percent before the last");
	return 0;
}

static json_t *dump(const struct strategy *s)
{
	json_t *stages = json_array();
	for (int i = 0; i < s->nstages; i++)
		json_array_append_new(stages, json_pack("{s:i,s:I}", "percent", s->stages[i].percent, "bake",
							(json_int_t)s->stages[i].bake_s));
	json_t *gates = json_pack("{s:I,s:f,s:I,s:f,s:I}", "max_failed", (json_int_t)s->max_failed, "max_failed_share",
				  s->max_failed_share, "min_healthy", (json_int_t)s->min_healthy, "min_success_share",
				  s->min_success_share, "min_requests", (json_int_t)s->min_requests);
	json_object_set_new(gates, "max_error_rate",
			    s->max_error_rate < 0 ? json_null() : json_real(s->max_error_rate));
	json_object_set_new(gates, "max_error_increase",
			    s->max_error_increase < 0 ? json_null() : json_real(s->max_error_increase));
	json_object_set_new(gates, "max_p95_latency_ms",
			    s->max_p95_latency_ms < 0 ? json_null() : json_real(s->max_p95_latency_ms));
	json_object_set_new(gates, "max_p95_latency_ratio",
			    s->max_p95_latency_ratio < 0 ? json_null() : json_real(s->max_p95_latency_ratio));
	json_object_set_new(gates, "canary_judgement",
			    s->canary_judgement ? json_pack("{s:f,s:f}", "min_score", s->canary_min_score,
							    "marginal_score", s->canary_marginal_score)
						: json_null());
	json_object_set_new(gates, "max_output_psi",
			    s->max_output_psi < 0 ? json_null() : json_real(s->max_output_psi));
	return json_pack("{s:o,s:I,s:o,s:s,s:b,s:o}", "stages", stages, "probation", (json_int_t)s->probation_s,
			 "gates", gates, "on_failure", s->rollback_on_failure ? "rollback" : "pause", "approval",
			 s->approval, "max_parallel",
			 s->max_parallel ? json_integer((json_int_t)s->max_parallel) : json_null());
}

int strategy_parse(struct strategy *out, json_t **out_json, const json_t *in, gn_err *err)
{
	defaults(out);
	if (out_json)
		*out_json = NULL;
	if (in && !json_is_null(in)) {
		if (!json_is_object(in))
			return gn_err_set(err, GN_EINVAL, "strategy must be an object");
		if (gn_json_check(in, top_fields, GN_ARRAY_LEN(top_fields), err))
			return prefixed(err, "strategy");
		json_t *v;
		if ((v = json_object_get(in, "stages")) && parse_stages(out, v, err))
			return GN_EINVAL;
		if ((v = json_object_get(in, "probation"))) {
			out->probation_s = (int64_t)json_integer_value(v);
			if (out->probation_s < 0 || out->probation_s > WEEK_S)
				return gn_err_set(err, GN_EINVAL, "strategy.probation must be 0 to %d seconds", WEEK_S);
		}
		if ((v = json_object_get(in, "gates")) && parse_gates(out, v, err))
			return GN_EINVAL;
		const char *f = gn_json_str(in, "on_failure");
		if (f && strcmp(f, "rollback") != 0 && strcmp(f, "pause") != 0)
			return gn_err_set(err, GN_EINVAL, "strategy.on_failure must be rollback or pause, not '%.40s'",
					  f);
		out->rollback_on_failure = !f || strcmp(f, "rollback") == 0;
		out->approval = json_is_true(json_object_get(in, "approval"));
		if ((v = json_object_get(in, "max_parallel")) && !json_is_null(v)) {
			json_int_t n = json_integer_value(v);
			if (n < 1 || n > 1000000)
				return gn_err_set(
					err, GN_EINVAL,
					"strategy.max_parallel must be 1 to 1000000 devices (or null: no cap)");
			out->max_parallel = (int64_t)n;
		}
		if (check_whole(out, err))
			return GN_EINVAL;
	}
	if (out_json)
		*out_json = dump(out);
	return 0;
}
