/* Statistical canary judgement, as Kayenta does it: per metric, the canary's observations (one
 * per device and window) against the control's over the same time, a two-sided Mann-Whitney U
 * test, and an effect-size tolerance; weighted metrics give a score and a verdict. Pure functions,
 * shared by gangliond (which judges) and any tool that wants the same numbers. */
#ifndef GN_CANARY_H
#define GN_CANARY_H

#include <stdbool.h>
#include <stddef.h>

/* The two-sided Mann-Whitney U test of x against y with the normal approximation, average ranks
 * for ties with the tie correction of the variance, and the continuity correction, as
 * scipy.stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic") computes it:
 * *out_u is U of x, *out_p the p-value (1 when every value is the same). GN_EINVAL-free: an
 * empty side gives p = 1. NaN values are left out. */
void gn_canary_mwu(double *out_u, double *out_p, const double *x, size_t nx, const double *y, size_t ny);

/* Returns the median of n values (sorted in place; NaN left out), NaN when there is none. */
double gn_canary_median(double *v, size_t n);

enum gn_canary_verdict {
	GN_CANARY_PASS,
	GN_CANARY_MARGINAL,
	GN_CANARY_FAIL,
	GN_CANARY_INCONCLUSIVE, /* too little data: hold, do not pass */
};
/* "pass", "marginal", "fail", "inconclusive". */
const char *gn_canary_verdict_name(enum gn_canary_verdict v);

struct gn_canary_metric {
	const char *name;
	double weight;        /* share of the score */
	bool higher_is_worse; /* error rate, latency, drift: yes */
	double tolerance;     /* relative change of the median allowed before a significant one fails */
	double floor;         /* changes of the median smaller than this (absolute) never fail */
};

struct gn_canary_result {
	enum gn_canary_verdict verdict; /* pass, fail or inconclusive for one metric */
	size_t n_canary, n_control;
	double u, p;
	double median_canary, median_control;
	double effect; /* (median_canary - median_control) / |median_control|; +-infinity from a median of 0 */
};

/* Judges one metric: inconclusive with fewer than min_n observations on either side; fail when
 * the difference is significant (p < alpha) and the canary's median is worse than the control's
 * by more than the tolerance (relative) and the floor (absolute); pass otherwise. canary and
 * control are sorted in place. */
void gn_canary_judge_metric(struct gn_canary_result *out, const struct gn_canary_metric *m, double *canary,
			    size_t n_canary, double *control, size_t n_control, size_t min_n, double alpha);

/* The overall verdict of n judged metrics: inconclusive when any is; else the score, 100 times the
 * weight of the metrics that pass over the weight of all, gives pass (>= pass_score), marginal
 * (>= marginal_score) or fail. *out_score is the score (NaN when inconclusive). */
enum gn_canary_verdict gn_canary_overall(double *out_score, const struct gn_canary_metric *metrics,
					 const struct gn_canary_result *results, size_t n, double pass_score,
					 double marginal_score);

#endif
