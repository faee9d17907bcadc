/* Drift statistics shared by the agent (which counts what its model serves), gangliond (which
 * merges the fleet's counts and judges them) and the CLI (which builds a reference profile from
 * training data), so that all three bin, summarise and compare with the same code.
 *
 * A reference profile describes a model version's training data:
 * - a numeric feature: k bins (edges[0] < ... < edges[k], from the data's quantiles) and the
 *   share of the data in each. Bin i holds edges[i] <= x < edges[i+1], the last bin also x ==
 *   edges[k] (numpy.histogram's rule); below edges[0] is underflow, above edges[k] overflow.
 * - a categorical feature: a vocabulary of n values and n+1 shares, the last for "other".
 * - images: per channel the mean and variance of the pixel values, and a numeric feature over
 *   every pixel value (intensity).
 * Its JSON form is documented in docs/TELEMETRY.md (and api/openapi.yaml's ReferenceProfile).
 *
 * A window's counts for one feature (struct gn_drift_counts): counts on the profile's bins,
 * underflow, overflow and NaN, and the values' count, mean, variance (Welford), minimum and
 * maximum. Counts from several windows or devices merge by element-wise sums.
 *
 * Drift measures compare observed shares q with reference shares p:
 * - PSI = sum (q_i - p_i) ln(q_i / p_i), each share floored at GN_DRIFT_FLOOR first (not
 *   renormalised), so an empty bin contributes a finite amount;
 * - Jensen-Shannon distance, base 2: sqrt of the JS divergence of p and q (each normalised to
 *   sum 1), in [0, 1]; as scipy.spatial.distance.jensenshannon(p, q, base=2);
 * - L-infinity (categorical features): max |q_i - p_i|.
 * A numeric feature is compared over k+2 cells, underflow, the k bins and overflow (the reference
 * has none outside its edges); NaN values are counted apart and take no part. */
#ifndef GN_DRIFT_H
#define GN_DRIFT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

#define GN_DRIFT_FLOOR 1e-4         /* PSI's floor for an empty bin */
#define GN_DRIFT_MAX_BINS 100       /* bins of a numeric feature */
#define GN_DRIFT_MAX_VOCAB 256      /* values of a categorical feature's vocabulary */
#define GN_DRIFT_MAX_FEATURES 1024  /* input features of a profile */
#define GN_DRIFT_MAX_OUTPUTS 256    /* output features of a profile */
#define GN_DRIFT_MAX_CHANNELS 16    /* image channels */
#define GN_DRIFT_NAME_MAX 64        /* a feature's name, a vocabulary entry, a tensor's name */
#define GN_DRIFT_SUM_TOLERANCE 1e-3 /* reference shares must sum to 1 within this */

enum gn_drift_kind { GN_DRIFT_NUMERIC, GN_DRIFT_CATEGORICAL };
/* What a feature reads from its tensor: one element, or a reduction over all of them (an output's
 * predicted class, argmax, or its confidence, max). */
enum gn_drift_reduce { GN_DRIFT_ELEMENT, GN_DRIFT_ARGMAX, GN_DRIFT_MAX };
enum gn_drift_layout { GN_DRIFT_NCHW, GN_DRIFT_NHWC };

struct gn_drift_feature {
	char *name;
	enum gn_drift_kind kind;
	char *tensor;   /* NULL: the model's first input (for inputs) or first output (for outputs) */
	int64_t index;  /* the element read (GN_DRIFT_ELEMENT); its position in the list if not stated */
	bool index_set; /* index was stated in the profile */
	enum gn_drift_reduce reduce;
	size_t nbins;      /* numeric: bins; categorical: vocabulary entries + 1 ("other") */
	double *edges;     /* numeric: nbins + 1 strictly increasing; NULL for categorical */
	char **vocab;      /* categorical: nbins - 1 distinct values; NULL for numeric */
	double *vocab_num; /* categorical: each value as the number it names (gn_drift_number_name), or NaN */
	double *ref;       /* the reference shares, nbins, summing to 1 */
	int64_t samples;   /* how many values the reference saw; -1 when not stated */
};

struct gn_drift_image {
	char *tensor; /* NULL: the model's first input */
	enum gn_drift_layout layout;
	size_t nchannels;
	double *mean, *variance;           /* per channel, nchannels each */
	struct gn_drift_feature intensity; /* numeric, named "intensity", over every pixel value */
};

struct gn_drift_profile {
	size_t ninputs, noutputs;
	struct gn_drift_feature *inputs, *outputs;
	struct gn_drift_image *image; /* NULL when the profile has none */
};

/* Checks a reference profile's JSON and reads it into *out (new; gn_drift_profile_free). The
 * names are unique among inputs and among outputs; every limit above holds. GN_EINVAL with a
 * message naming the field ("features[2].edges must ...") otherwise. */
int gn_drift_profile_parse(struct gn_drift_profile **out, const json_t *j, gn_err *err) GN_WUR;
/* Returns the profile's JSON (new reference); gn_drift_profile_parse reads it back equal. */
json_t *gn_drift_profile_json(const struct gn_drift_profile *p);
void gn_drift_profile_free(struct gn_drift_profile *p);
/* Releases what a feature holds (not the struct itself). */
void gn_drift_feature_cleanup(struct gn_drift_feature *f);

/* Where a numeric value falls: a bin (0 .. nbins-1) or one of these. */
#define GN_DRIFT_UNDER SIZE_MAX
#define GN_DRIFT_OVER (SIZE_MAX - 1)
#define GN_DRIFT_NAN (SIZE_MAX - 2)
/* Returns the bin of x among edges[0..nbins] (binary search). */
size_t gn_drift_bin(const double *edges, size_t nbins, double x);
/* Returns the category of value s: its vocabulary index, or nbins - 1 ("other"). */
size_t gn_drift_category(const struct gn_drift_feature *f, const char *s);
/* Writes number x as a categorical value: an integer as one ("3", never "-0"), anything else with
 * 17 significant digits ("0.5"). out holds at least 32 bytes. */
void gn_drift_number_name(char *out, size_t n, double x);
/* Returns the category of a number, by the name gn_drift_number_name gives it; GN_DRIFT_NAN for
 * NaN. The agent sees categorical inputs as numbers. */
size_t gn_drift_category_num(const struct gn_drift_feature *f, double x);

/* One window's counts for one feature (or image channel: nbins 0). */
struct gn_drift_counts {
	size_t nbins;
	uint64_t *counts; /* nbins */
	uint64_t underflow, overflow, nan;
	uint64_t n;      /* values counted, NaN excluded: sum of counts + underflow + overflow */
	double mean, m2; /* Welford: running mean and sum of squared deviations */
	double min, max; /* meaningful when n > 0 */
};
/* Sets c up for nbins bins, all zero. */
void gn_drift_counts_init(struct gn_drift_counts *c, size_t nbins);
void gn_drift_counts_cleanup(struct gn_drift_counts *c);
/* Sets every count back to zero (keeping nbins). */
void gn_drift_counts_reset(struct gn_drift_counts *c);
/* Counts value x on numeric feature f (nbins == f->nbins): its bin, mean, variance, min, max. */
void gn_drift_counts_add(struct gn_drift_counts *c, const struct gn_drift_feature *f, double x);
/* Counts category `cat` (a gn_drift_category result, or GN_DRIFT_NAN) with value x for the
 * moments (the class index for argmax; NAN to leave the moments alone). */
void gn_drift_counts_add_category(struct gn_drift_counts *c, size_t cat, double x);
/* Counts x in the moments only (an image channel). */
void gn_drift_counts_add_value(struct gn_drift_counts *c, double x);
/* Adds src into dst (same nbins): counts summed, moments combined (Chan et al.). */
void gn_drift_counts_merge(struct gn_drift_counts *dst, const struct gn_drift_counts *src);
/* Returns the population variance (m2 / n); NaN when n == 0. */
double gn_drift_counts_variance(const struct gn_drift_counts *c);

/* The counts' JSON: {"counts": [...], "underflow", "overflow", "nan", "n", "mean", "variance",
 * "min", "max"} (the last four null when n == 0). New reference. */
json_t *gn_drift_counts_json(const struct gn_drift_counts *c);
/* Reads and checks counts of a feature with nbins bins from j (numeric says whether underflow and
 * overflow may be non-zero) into out (initialised here; cleanup on success only). Checks: no
 * unknown field, counts are nbins non-negative integers, n equals their sum with underflow and
 * overflow (unless nbins is 0: an image channel's moments alone), moments finite, variance >= 0,
 * min <= mean <= max (within rounding). GN_EINVAL with a message naming the field, prefixed with
 * what. */
int gn_drift_counts_parse(struct gn_drift_counts *out, const json_t *j, size_t nbins, bool numeric, const char *what,
			  gn_err *err) GN_WUR;

/* Population stability index of n shares q against p (each floored at GN_DRIFT_FLOOR). */
double gn_drift_psi(const double *p, const double *q, size_t n);
/* Jensen-Shannon distance, base 2, of p and q (n shares each, normalised here); NaN when either
 * sums to zero. */
double gn_drift_js(const double *p, const double *q, size_t n);
/* Largest |p_i - q_i|. */
double gn_drift_linf(const double *p, const double *q, size_t n);

/* A feature's drift: counts c (with f's bins) against f's reference. psi, js and linf are NaN
 * when c holds no value, linf also for a numeric feature. */
struct gn_drift_measure {
	uint64_t n;
	double psi, js, linf;
};
void gn_drift_compare(struct gn_drift_measure *out, const struct gn_drift_feature *f, const struct gn_drift_counts *c);

/* Builds a numeric feature (name copied; kind numeric, index unset) from n values, which are
 * sorted in place; NaN values are left out. Edges are the quantiles i/nbins, i = 0..nbins,
 * interpolated linearly (numpy.quantile's default method), with repeated edges dropped, so a
 * feature with few distinct values gets fewer bins; all values equal give one bin [v, v']
 * where v' is the next double above v. Shares by gn_drift_bin. GN_EINVAL when no value is a
 * number or nbins is out of 1..GN_DRIFT_MAX_BINS. */
int gn_drift_feature_numeric(struct gn_drift_feature *out, const char *name, double *values, size_t n, size_t nbins,
			     gn_err *err) GN_WUR;
/* Builds a categorical feature from n values (NULL entries are missing values and left out):
 * the vocabulary is the max_vocab most frequent values (ties: the bytewise smaller first), the
 * rest is "other". GN_EINVAL when no value is there, a value is longer than GN_DRIFT_NAME_MAX or
 * max_vocab is out of 1..GN_DRIFT_MAX_VOCAB. */
int gn_drift_feature_categorical(struct gn_drift_feature *out, const char *name, const char *const *values, size_t n,
				 size_t max_vocab, gn_err *err) GN_WUR;

#endif
