/* Statistical canary judgement: see canary.h. */
#include "canary.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

struct obs {
	double v;
	int side; /* 0: x, 1: y */
};

static int cmp_obs(const void *a, const void *b)
{
	double x = ((const struct obs *)a)->v, y = ((const struct obs *)b)->v;
	return (x > y) - (x < y);
}

void gn_canary_mwu(double *out_u, double *out_p, const double *x, size_t nx, const double *y, size_t ny)
{
	struct obs *o = gn_calloc(nx + ny + 1, sizeof(*o));
	size_t n = 0, n1 = 0, n2 = 0;
	for (size_t i = 0; i < nx; i++)
		if (!isnan(x[i])) {
			o[n++] = (struct obs){x[i], 0};
			n1++;
		}
	for (size_t i = 0; i < ny; i++)
		if (!isnan(y[i])) {
			o[n++] = (struct obs){y[i], 1};
			n2++;
		}
	*out_u = 0;
	*out_p = 1;
	if (!n1 || !n2)
		goto out;
	qsort(o, n, sizeof(*o), cmp_obs);
	/* average ranks over ties; the tie term sum(t^3 - t) */
	double r1 = 0, ties = 0;
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j + 1 < n && o[j + 1].v == o[i].v)
			j++;
		double rank = (double)(i + j) / 2.0 + 1.0, t = (double)(j - i + 1);
		for (size_t k = i; k <= j; k++)
			if (o[k].side == 0)
				r1 += rank;
		ties += t * t * t - t;
		i = j + 1;
	}
	double a = (double)n1, b = (double)n2, total = a + b;
	double u1 = r1 - a * (a + 1) / 2, u2 = a * b - u1, u = u1 > u2 ? u1 : u2;
	double mu = a * b / 2, s = sqrt(a * b / 12 * ((total + 1) - ties / (total * (total - 1))));
	*out_u = u1;
	if (s > 0) {
		double z = (u - mu - 0.5) / s;
		double p = 2 * 0.5 * erfc(z / sqrt(2.0));
		*out_p = p < 0 ? 0 : p > 1 ? 1 : p;
	}
out:
	free(o);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double gn_canary_median(double *v, size_t n)
{
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (!isnan(v[i]))
			v[m++] = v[i];
	if (!m)
		return NAN;
	qsort(v, m, sizeof(double), cmp_double);
	return m % 2 ? v[m / 2] : (v[m / 2 - 1] + v[m / 2]) / 2;
}

const char *gn_canary_verdict_name(enum gn_canary_verdict v)
{
	switch (v) {
	case GN_CANARY_PASS: return "pass";
	case GN_CANARY_MARGINAL: return "marginal";
	case GN_CANARY_FAIL: return "fail";
	default: return "inconclusive";
	}
}

static size_t count_numbers(const double *v, size_t n)
{
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		m += !isnan(v[i]);
	return m;
}

/* A change relative to base; from 0, any change is infinitely large. */
static double relative(double diff, double base)
{
	if (base != 0)
		return diff / fabs(base);
	return diff > 0 ? INFINITY : diff < 0 ? -INFINITY : 0;
}

void gn_canary_judge_metric(struct gn_canary_result *out, const struct gn_canary_metric *m, double *canary,
			    size_t n_canary, double *control, size_t n_control, size_t min_n, double alpha)
{
	memset(out, 0, sizeof(*out));
	out->n_canary = count_numbers(canary, n_canary);
	out->n_control = count_numbers(control, n_control);
	out->p = 1;
	out->median_canary = out->median_control = out->effect = NAN;
	if (out->n_canary < min_n || out->n_control < min_n || out->n_canary == 0 || out->n_control == 0) {
		out->verdict = GN_CANARY_INCONCLUSIVE;
		return;
	}
	gn_canary_mwu(&out->u, &out->p, canary, n_canary, control, n_control);
	out->median_canary = gn_canary_median(canary, n_canary);
	out->median_control = gn_canary_median(control, n_control);
	double diff = out->median_canary - out->median_control;
	out->effect = relative(diff, out->median_control);
	double worse = m->higher_is_worse ? diff : -diff, effect = m->higher_is_worse ? out->effect : -out->effect;
	bool significant = out->p < alpha;
	/* Medians of rare events are often both 0 while the distributions differ: then the means of
	 * the sorted values stand in for them. */
	if (significant && worse == 0) {
		double sc = 0, sk = 0;
		for (size_t i = 0; i < out->n_canary; i++)
			sc += canary[i];
		for (size_t i = 0; i < out->n_control; i++)
			sk += control[i];
		sc /= (double)out->n_canary;
		sk /= (double)out->n_control;
		worse = m->higher_is_worse ? sc - sk : sk - sc;
		effect = relative(worse, sk);
		out->effect = m->higher_is_worse ? effect : -effect;
	}
	out->verdict = significant && worse > m->floor && effect > m->tolerance ? GN_CANARY_FAIL : GN_CANARY_PASS;
}

enum gn_canary_verdict gn_canary_overall(double *out_score, const struct gn_canary_metric *metrics,
					 const struct gn_canary_result *results, size_t n, double pass_score,
					 double marginal_score)
{
	double all = 0, passed = 0;
	*out_score = NAN;
	for (size_t i = 0; i < n; i++)
		if (results[i].verdict == GN_CANARY_INCONCLUSIVE)
			return GN_CANARY_INCONCLUSIVE;
	for (size_t i = 0; i < n; i++) {
		all += metrics[i].weight;
		if (results[i].verdict == GN_CANARY_PASS)
			passed += metrics[i].weight;
	}
	if (all <= 0)
		return GN_CANARY_INCONCLUSIVE;
	*out_score = 100 * passed / all;
	return *out_score >= pass_score       ? GN_CANARY_PASS
	       : *out_score >= marginal_score ? GN_CANARY_MARGINAL
					      : GN_CANARY_FAIL;
}
