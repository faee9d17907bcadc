/* A rollout strategy: stages with bake times, health gates, what to do when a gate fails, and
 * whether an operator must approve. Parsed and checked whole when a deployment is created or
 * changed: a setting that cannot take effect is an error, never ignored. Pure (no database). */
#ifndef GD_STRATEGY_H
#define GD_STRATEGY_H

#include <jansson.h>

#include "common.h"

#define STRATEGY_MAX_STAGES 10

struct strategy_stage {
	int percent;    /* of the deployment's devices, cumulative; the last stage is 100 */
	int64_t bake_s; /* seconds the stage must run (and pass its gates) before the next */
};

struct strategy {
	struct strategy_stage stages[STRATEGY_MAX_STAGES];
	int nstages;
	int64_t probation_s;          /* a device counts as healthy once active this long */
	int64_t max_failed;           /* failed installs in the rollout before the gate fails */
	double max_failed_share;      /* failed installs / devices in the stage */
	int64_t min_healthy;          /* healthy devices a stage needs (fewer if it has fewer) */
	double min_success_share;     /* healthy devices / devices in the stage, to move on */
	double max_error_rate;        /* canary errors / requests; < 0: no such gate */
	double max_error_increase;    /* canary error rate minus control's; < 0: no such gate */
	double max_p95_latency_ms;    /* canary p95 inference latency, milliseconds; < 0: no such gate */
	double max_p95_latency_ratio; /* canary p95 / control's p95; < 0: no such gate */
	int64_t min_requests;         /* requests a cohort needs before its error rate or latency is judged */
	bool canary_judgement;        /* judge the canary's telemetry against the control's (lib/canary.h) */
	double canary_min_score;      /* its score that passes (0-100) */
	double canary_marginal_score; /* at or above it, below min_score: marginal, the stage holds */
	double max_output_psi;        /* the canary's merged output PSI against its profile; < 0: no gate */
	int64_t max_parallel;         /* devices of a stage told the new version before they report it
				       * installed or failed; 0: no cap */
	bool rollback_on_failure;     /* else pause */
	bool approval;                /* wait for an operator's approve before the first stage */
};

/* True when the strategy has a gate that compares the canary with the devices still on the old
 * version's reported counters (max_error_increase, max_p95_latency_ratio; canary_judgement compares
 * their telemetry windows instead). */
bool strategy_compares(const struct strategy *s);

/* Parses and checks a strategy object (NULL: the default, one stage of 100 % at once) into out,
 * and writes its complete form, defaults filled in, into *out_json (new). GN_EINVAL naming the
 * field and the reason otherwise (unknown fields included). */
int strategy_parse(struct strategy *out, json_t **out_json, const json_t *in, gn_err *err) GN_WUR;

#endif
