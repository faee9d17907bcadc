/* Reference profiles, window counts and drift measures: see drift.h. */
#include "drift.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/* --- profiles ------------------------------------------------------------------------------ */

void gn_drift_feature_cleanup(struct gn_drift_feature *f)
{
	if (!f)
		return;
	free(f->name);
	free(f->tensor);
	free(f->edges);
	free(f->ref);
	if (f->vocab)
		for (size_t i = 0; i + 1 < f->nbins; i++)
			free(f->vocab[i]);
	free(f->vocab);
	free(f->vocab_num);
	memset(f, 0, sizeof(*f));
}

void gn_drift_profile_free(struct gn_drift_profile *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->ninputs; i++)
		gn_drift_feature_cleanup(&p->inputs[i]);
	for (size_t i = 0; i < p->noutputs; i++)
		gn_drift_feature_cleanup(&p->outputs[i]);
	free(p->inputs);
	free(p->outputs);
	if (p->image) {
		free(p->image->tensor);
		free(p->image->mean);
		free(p->image->variance);
		gn_drift_feature_cleanup(&p->image->intensity);
		free(p->image);
	}
	free(p);
}

static bool name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	return n >= 1 && n <= GN_DRIFT_NAME_MAX && gn_utf8_valid(s, n);
}

/* Reads an array of finite numbers into a new array of *out_n doubles; GN_EINVAL with the message
 * "WHAT MUST" otherwise. */
static int numbers(double **out, size_t *out_n, const json_t *arr, const char *what, const char *must, gn_err *err)
{
	size_t i;
	json_t *x;
	*out_n = json_array_size(arr);
	*out = gn_calloc(*out_n ? *out_n : 1, sizeof(double));
	json_array_foreach(arr, i, x) {
		if (!json_is_number(x) || !isfinite(json_number_value(x)))
			return gn_err_set(err, GN_EINVAL, "%s %s", what, must);
		(*out)[i] = json_number_value(x);
	}
	return 0;
}

/* Fills f->vocab_num: the number each vocabulary value names when it is a number written as
 * gn_drift_number_name writes it, else NaN, so the agent matches numbers without formatting them. */
static void vocab_numbers(struct gn_drift_feature *f)
{
	f->vocab_num = gn_calloc(f->nbins, sizeof(double));
	for (size_t i = 0; i + 1 < f->nbins; i++) {
		char *end, back[40];
		double x = strtod(f->vocab[i], &end);
		f->vocab_num[i] = NAN;
		if (end != f->vocab[i] && !*end && isfinite(x)) {
			gn_drift_number_name(back, sizeof(back), x);
			if (strcmp(back, f->vocab[i]) == 0)
				f->vocab_num[i] = x;
		}
	}
}

/* Checks k shares in [0, 1] summing to 1. */
static int check_shares(const double *ref, size_t k, const char *what, gn_err *err)
{
	double sum = 0;
	for (size_t i = 0; i < k; i++) {
		if (ref[i] < 0 || ref[i] > 1)
			return gn_err_set(err, GN_EINVAL, "%s.proportions must be in [0, 1]", what);
		sum += ref[i];
	}
	if (fabs(sum - 1.0) > GN_DRIFT_SUM_TOLERANCE)
		return gn_err_set(err, GN_EINVAL, "%s.proportions sum to %g, not 1", what, sum);
	return 0;
}

static int parse_numeric(struct gn_drift_feature *f, const json_t *j, const char *what, gn_err *err)
{
	const json_t *edges = json_object_get(j, "edges"), *props = json_object_get(j, "proportions");
	char w[96];
	size_t ne, np;
	int rc;
	if (json_object_get(j, "vocabulary"))
		return gn_err_set(err, GN_EINVAL, "%s: a numeric feature has edges, not a vocabulary", what);
	if (!json_is_array(edges) || !json_is_array(props))
		return gn_err_set(err, GN_EINVAL, "%s: a numeric feature needs the arrays edges and proportions", what);
	snprintf(w, sizeof(w), "%s.edges", what);
	if ((rc = numbers(&f->edges, &ne, edges, w, "must be strictly increasing numbers", err)))
		return rc;
	snprintf(w, sizeof(w), "%s.proportions", what);
	if ((rc = numbers(&f->ref, &np, props, w, "must be in [0, 1]", err)))
		return rc;
	if (ne < 2 || np != ne - 1)
		return gn_err_set(err, GN_EINVAL, "%s: k+1 edges need k proportions (k >= 1)", what);
	if (np > GN_DRIFT_MAX_BINS)
		return gn_err_set(err, GN_EINVAL, "%s has %zu bins; at most %d", what, np, GN_DRIFT_MAX_BINS);
	f->nbins = np;
	for (size_t i = 1; i < ne; i++)
		if (!(f->edges[i] > f->edges[i - 1]))
			return gn_err_set(err, GN_EINVAL, "%s.edges must be strictly increasing numbers", what);
	return check_shares(f->ref, np, what, err);
}

static int parse_categorical(struct gn_drift_feature *f, const json_t *j, const char *what, gn_err *err)
{
	const json_t *vocab = json_object_get(j, "vocabulary"), *props = json_object_get(j, "proportions");
	char w[96];
	size_t i, np;
	json_t *v;
	int rc;
	if (json_object_get(j, "edges"))
		return gn_err_set(err, GN_EINVAL, "%s: a categorical feature has a vocabulary, not edges", what);
	if (!json_is_array(vocab) || !json_is_array(props))
		return gn_err_set(err, GN_EINVAL,
				  "%s: a categorical feature needs the arrays vocabulary and proportions", what);
	if (json_array_size(vocab) < 1 || json_array_size(vocab) > GN_DRIFT_MAX_VOCAB)
		return gn_err_set(err, GN_EINVAL, "%s.vocabulary must hold 1 to %d values", what, GN_DRIFT_MAX_VOCAB);
	f->nbins = json_array_size(vocab) + 1;
	f->vocab = gn_calloc(f->nbins, sizeof(char *));
	json_array_foreach(vocab, i, v) {
		if (!json_is_string(v) || !name_ok(json_string_value(v)))
			return gn_err_set(err, GN_EINVAL, "%s.vocabulary holds strings of 1 to %d bytes", what,
					  GN_DRIFT_NAME_MAX);
		for (size_t k = 0; k < i; k++)
			if (strcmp(f->vocab[k], json_string_value(v)) == 0)
				return gn_err_set(err, GN_EINVAL, "%s.vocabulary has '%s' twice", what, f->vocab[k]);
		f->vocab[i] = gn_strdup(json_string_value(v));
	}
	snprintf(w, sizeof(w), "%s.proportions", what);
	if ((rc = numbers(&f->ref, &np, props, w, "must be in [0, 1]", err)))
		return rc;
	if (np != f->nbins)
		return gn_err_set(err, GN_EINVAL, "%s: n vocabulary values need n+1 proportions (the last for other)",
				  what);
	vocab_numbers(f);
	return check_shares(f->ref, np, what, err);
}

static const gn_json_field feature_fields[] = {
	{"name", GN_JSON_STRING, true, false},       {"kind", GN_JSON_STRING, false, false},
	{"edges", GN_JSON_ARRAY, false, false},      {"vocabulary", GN_JSON_ARRAY, false, false},
	{"proportions", GN_JSON_ARRAY, true, false}, {"tensor", GN_JSON_STRING, false, false},
	{"index", GN_JSON_INTEGER, false, false},    {"reduce", GN_JSON_STRING, false, false},
	{"samples", GN_JSON_INTEGER, false, false},
};

/* Reads where the feature takes its value: tensor, index, reduce. */
static int parse_source(struct gn_drift_feature *f, const json_t *j, size_t pos, const char *what, gn_err *err)
{
	const char *tensor = gn_json_str(j, "tensor"), *reduce = gn_json_str(j, "reduce");
	const json_t *index = json_object_get(j, "index");
	if (tensor && !name_ok(tensor))
		return gn_err_set(err, GN_EINVAL, "%s.tensor must be 1 to %d bytes", what, GN_DRIFT_NAME_MAX);
	f->tensor = tensor ? gn_strdup(tensor) : NULL;
	f->reduce = GN_DRIFT_ELEMENT;
	if (reduce && strcmp(reduce, "argmax") == 0)
		f->reduce = GN_DRIFT_ARGMAX;
	else if (reduce && strcmp(reduce, "max") == 0)
		f->reduce = GN_DRIFT_MAX;
	else if (reduce)
		return gn_err_set(err, GN_EINVAL, "%s.reduce must be argmax or max", what);
	if (index && f->reduce != GN_DRIFT_ELEMENT)
		return gn_err_set(err, GN_EINVAL, "%s: index and reduce exclude each other", what);
	if (f->reduce == GN_DRIFT_ARGMAX && f->kind != GN_DRIFT_CATEGORICAL)
		return gn_err_set(err, GN_EINVAL, "%s: reduce argmax gives a class, so the feature is categorical",
				  what);
	if (f->reduce == GN_DRIFT_MAX && f->kind != GN_DRIFT_NUMERIC)
		return gn_err_set(err, GN_EINVAL, "%s: reduce max gives a number, so the feature is numeric", what);
	f->index_set = index != NULL;
	f->index = index ? (int64_t)json_integer_value(index) : (int64_t)pos;
	if (f->index < 0)
		return gn_err_set(err, GN_EINVAL, "%s.index must not be negative", what);
	return 0;
}

static int parse_feature(struct gn_drift_feature *f, const json_t *j, size_t pos, const char *what, gn_err *err)
{
	gn_err e;
	int rc;
	if (gn_json_check(j, feature_fields, GN_ARRAY_LEN(feature_fields), &e))
		return gn_err_set(err, GN_EINVAL, "%s: %s", what, e.msg);
	if (!name_ok(gn_json_str(j, "name")))
		return gn_err_set(err, GN_EINVAL, "%s.name must be 1 to %d bytes of UTF-8", what, GN_DRIFT_NAME_MAX);
	f->name = gn_strdup(gn_json_str(j, "name"));
	const char *kind = gn_json_str(j, "kind");
	if (!kind || strcmp(kind, "numeric") == 0)
		f->kind = GN_DRIFT_NUMERIC;
	else if (strcmp(kind, "categorical") == 0)
		f->kind = GN_DRIFT_CATEGORICAL;
	else
		return gn_err_set(err, GN_EINVAL, "%s.kind must be numeric or categorical", what);
	f->samples = -1;
	if (json_object_get(j, "samples") &&
	    (f->samples = (int64_t)json_integer_value(json_object_get(j, "samples"))) < 0)
		return gn_err_set(err, GN_EINVAL, "%s.samples must not be negative", what);
	if ((rc = f->kind == GN_DRIFT_NUMERIC ? parse_numeric(f, j, what, err) : parse_categorical(f, j, what, err)))
		return rc;
	return parse_source(f, j, pos, what, err);
}

static int parse_features(struct gn_drift_feature **out, size_t *out_n, const json_t *arr, const char *what, size_t max,
			  gn_err *err)
{
	char w[64];
	size_t i;
	json_t *f;
	int rc;
	if (!arr)
		return 0;
	if (!json_is_array(arr))
		return gn_err_set(err, GN_EINVAL, "reference_profile.%s must be an array", what);
	if (json_array_size(arr) > max)
		return gn_err_set(err, GN_EINVAL, "reference_profile.%s has %zu entries; at most %zu", what,
				  json_array_size(arr), max);
	*out = gn_calloc(json_array_size(arr) + 1, sizeof(**out));
	json_array_foreach(arr, i, f) {
		snprintf(w, sizeof(w), "reference_profile.%s[%zu]", what, i);
		*out_n = i + 1;
		if ((rc = parse_feature(&(*out)[i], f, i, w, err)))
			return rc;
		for (size_t k = 0; k < i; k++)
			if (strcmp((*out)[k].name, (*out)[i].name) == 0)
				return gn_err_set(err, GN_EINVAL, "%s: the name '%s' appears twice in %s", w,
						  (*out)[i].name, what);
	}
	return 0;
}

static int parse_image(struct gn_drift_image **out, const json_t *j, gn_err *err)
{
	static const gn_json_field fields[] = {
		{"tensor", GN_JSON_STRING, false, false},
		{"layout", GN_JSON_STRING, true, false},
		{"channels", GN_JSON_ARRAY, true, false},
		{"intensity", GN_JSON_OBJECT, true, false},
	};
	static const gn_json_field cfields[] = {
		{"mean", GN_JSON_NUMBER, true, false},
		{"variance", GN_JSON_NUMBER, true, false},
	};
	gn_err e;
	size_t i;
	json_t *c;
	struct gn_drift_image *im = *out = gn_calloc(1, sizeof(*im));
	if (gn_json_check(j, fields, GN_ARRAY_LEN(fields), &e))
		return gn_err_set(err, GN_EINVAL, "reference_profile.image: %s", e.msg);
	const char *tensor = gn_json_str(j, "tensor"), *layout = gn_json_str(j, "layout");
	if (tensor && !name_ok(tensor))
		return gn_err_set(err, GN_EINVAL, "reference_profile.image.tensor must be 1 to %d bytes",
				  GN_DRIFT_NAME_MAX);
	im->tensor = tensor ? gn_strdup(tensor) : NULL;
	if (strcmp(layout, "nchw") == 0)
		im->layout = GN_DRIFT_NCHW;
	else if (strcmp(layout, "nhwc") == 0)
		im->layout = GN_DRIFT_NHWC;
	else
		return gn_err_set(err, GN_EINVAL, "reference_profile.image.layout must be nchw or nhwc");
	const json_t *ch = json_object_get(j, "channels");
	if (json_array_size(ch) < 1 || json_array_size(ch) > GN_DRIFT_MAX_CHANNELS)
		return gn_err_set(err, GN_EINVAL, "reference_profile.image.channels must hold 1 to %d channels",
				  GN_DRIFT_MAX_CHANNELS);
	im->nchannels = json_array_size(ch);
	im->mean = gn_calloc(im->nchannels, sizeof(double));
	im->variance = gn_calloc(im->nchannels, sizeof(double));
	json_array_foreach(ch, i, c) {
		if (gn_json_check(c, cfields, GN_ARRAY_LEN(cfields), &e))
			return gn_err_set(err, GN_EINVAL, "reference_profile.image.channels[%zu]: %s", i, e.msg);
		im->mean[i] = json_number_value(json_object_get(c, "mean"));
		im->variance[i] = json_number_value(json_object_get(c, "variance"));
		if (!isfinite(im->mean[i]) || !isfinite(im->variance[i]) || im->variance[i] < 0)
			return gn_err_set(err, GN_EINVAL,
					  "reference_profile.image.channels[%zu]: a finite mean and a variance >= 0",
					  i);
	}
	json_t *in = json_deep_copy(json_object_get(j, "intensity"));
	json_object_set_new(in, "name", json_string("intensity"));
	int rc = json_object_get(in, "kind") || json_object_get(in, "tensor") || json_object_get(in, "index") ||
				 json_object_get(in, "reduce")
			 ? gn_err_set(err, GN_EINVAL,
				      "reference_profile.image.intensity holds edges, proportions and samples only")
			 : parse_feature(&im->intensity, in, 0, "reference_profile.image.intensity", err);
	json_decref(in);
	return rc;
}

int gn_drift_profile_parse(struct gn_drift_profile **out, const json_t *j, gn_err *err)
{
	static const gn_json_field fields[] = {
		{"features", GN_JSON_ARRAY, true, false},
		{"outputs", GN_JSON_ARRAY, false, false},
		{"image", GN_JSON_OBJECT, false, false},
	};
	struct gn_drift_profile *p = gn_calloc(1, sizeof(*p));
	gn_err e;
	int rc;
	*out = NULL;
	if (gn_json_check(j, fields, GN_ARRAY_LEN(fields), &e)) {
		rc = gn_err_set(err, GN_EINVAL, "reference_profile: %s", e.msg);
		goto out;
	}
	if ((rc = parse_features(&p->inputs, &p->ninputs, json_object_get(j, "features"), "features",
				 GN_DRIFT_MAX_FEATURES, err)) ||
	    (rc = parse_features(&p->outputs, &p->noutputs, json_object_get(j, "outputs"), "outputs",
				 GN_DRIFT_MAX_OUTPUTS, err)))
		goto out;
	if (json_object_get(j, "image") && (rc = parse_image(&p->image, json_object_get(j, "image"), err)))
		goto out;
	*out = p;
	p = NULL;
out:
	gn_drift_profile_free(p);
	return rc;
}

static json_t *doubles_json(const double *v, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_real(v[i]));
	return a;
}

static json_t *feature_json(const struct gn_drift_feature *f, bool image)
{
	json_t *j = json_object();
	if (!image)
		json_object_set_new(j, "name", json_string(f->name));
	if (f->kind == GN_DRIFT_CATEGORICAL) {
		json_t *v = json_array();
		json_object_set_new(j, "kind", json_string("categorical"));
		for (size_t i = 0; i + 1 < f->nbins; i++)
			json_array_append_new(v, json_string(f->vocab[i]));
		json_object_set_new(j, "vocabulary", v);
	} else {
		json_object_set_new(j, "edges", doubles_json(f->edges, f->nbins + 1));
	}
	json_object_set_new(j, "proportions", doubles_json(f->ref, f->nbins));
	if (f->tensor)
		json_object_set_new(j, "tensor", json_string(f->tensor));
	if (f->index_set)
		json_object_set_new(j, "index", json_integer((json_int_t)f->index));
	if (f->reduce != GN_DRIFT_ELEMENT)
		json_object_set_new(j, "reduce", json_string(f->reduce == GN_DRIFT_ARGMAX ? "argmax" : "max"));
	if (f->samples >= 0)
		json_object_set_new(j, "samples", json_integer((json_int_t)f->samples));
	return j;
}

static json_t *features_json(const struct gn_drift_feature *fs, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, feature_json(&fs[i], false));
	return a;
}

json_t *gn_drift_profile_json(const struct gn_drift_profile *p)
{
	json_t *j = json_object();
	json_object_set_new(j, "features", features_json(p->inputs, p->ninputs));
	if (p->noutputs)
		json_object_set_new(j, "outputs", features_json(p->outputs, p->noutputs));
	if (p->image) {
		const struct gn_drift_image *im = p->image;
		json_t *ch = json_array(), *o = json_object();
		for (size_t i = 0; i < im->nchannels; i++)
			json_array_append_new(ch,
					      json_pack("{s:f,s:f}", "mean", im->mean[i], "variance", im->variance[i]));
		if (im->tensor)
			json_object_set_new(o, "tensor", json_string(im->tensor));
		json_object_set_new(o, "layout", json_string(im->layout == GN_DRIFT_NCHW ? "nchw" : "nhwc"));
		json_object_set_new(o, "channels", ch);
		json_object_set_new(o, "intensity", feature_json(&im->intensity, true));
		json_object_set_new(j, "image", o);
	}
	return j;
}

/* --- binning --------------------------------------------------------------------------------- */

size_t gn_drift_bin(const double *edges, size_t nbins, double x)
{
	if (isnan(x))
		return GN_DRIFT_NAN;
	if (x < edges[0])
		return GN_DRIFT_UNDER;
	if (x > edges[nbins])
		return GN_DRIFT_OVER;
	if (x == edges[nbins])
		return nbins - 1;
	if (nbins <= 16) { /* few edges: count those <= x, without branches to mispredict */
		size_t b = 0;
		for (size_t i = 1; i < nbins; i++)
			b += edges[i] <= x;
		return b;
	}
	/* the last edge <= x among edges[0..nbins-1] */
	size_t lo = 0, hi = nbins;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (edges[mid] <= x)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

size_t gn_drift_category(const struct gn_drift_feature *f, const char *s)
{
	for (size_t i = 0; s && i + 1 < f->nbins; i++)
		if (strcmp(f->vocab[i], s) == 0)
			return i;
	return f->nbins - 1;
}

void gn_drift_number_name(char *out, size_t n, double x)
{
	if (x == floor(x) && fabs(x) < 9007199254740992.0)
		snprintf(out, n, "%.0f", x == 0 ? 0.0 : x); /* no "-0" */
	else
		snprintf(out, n, "%.17g", x);
}

size_t gn_drift_category_num(const struct gn_drift_feature *f, double x)
{
	char s[40];
	if (isnan(x))
		return GN_DRIFT_NAN;
	if (f->vocab_num) { /* what gn_drift_number_name would write, compared as numbers */
		for (size_t i = 0; i + 1 < f->nbins; i++)
			if (f->vocab_num[i] == x)
				return i;
		return f->nbins - 1;
	}
	gn_drift_number_name(s, sizeof(s), x);
	return gn_drift_category(f, s);
}

/* --- counts ---------------------------------------------------------------------------------- */

void gn_drift_counts_init(struct gn_drift_counts *c, size_t nbins)
{
	memset(c, 0, sizeof(*c));
	c->nbins = nbins;
	c->counts = gn_calloc(nbins ? nbins : 1, sizeof(uint64_t));
}

void gn_drift_counts_cleanup(struct gn_drift_counts *c)
{
	if (!c)
		return;
	free(c->counts);
	memset(c, 0, sizeof(*c));
}

void gn_drift_counts_reset(struct gn_drift_counts *c)
{
	uint64_t *counts = c->counts;
	size_t nbins = c->nbins;
	memset(counts, 0, (nbins ? nbins : 1) * sizeof(uint64_t));
	memset(c, 0, sizeof(*c));
	c->counts = counts;
	c->nbins = nbins;
}

void gn_drift_counts_add_value(struct gn_drift_counts *c, double x)
{
	if (isnan(x)) {
		c->nan++;
		return;
	}
	c->n++;
	double d = x - c->mean;
	c->mean += d / (double)c->n;
	c->m2 += d * (x - c->mean);
	if (c->n == 1 || x < c->min)
		c->min = x;
	if (c->n == 1 || x > c->max)
		c->max = x;
}

void gn_drift_counts_add(struct gn_drift_counts *c, const struct gn_drift_feature *f, double x)
{
	size_t b = gn_drift_bin(f->edges, f->nbins, x);
	if (b == GN_DRIFT_NAN) {
		c->nan++;
		return;
	}
	if (b == GN_DRIFT_UNDER)
		c->underflow++;
	else if (b == GN_DRIFT_OVER)
		c->overflow++;
	else
		c->counts[b]++;
	gn_drift_counts_add_value(c, x);
}

void gn_drift_counts_add_category(struct gn_drift_counts *c, size_t cat, double x)
{
	if (cat == GN_DRIFT_NAN || cat >= c->nbins) {
		c->nan++;
		return;
	}
	c->counts[cat]++;
	if (isnan(x)) { /* no moments for this value: count it, keep n = sum of counts */
		c->n++;
		return;
	}
	gn_drift_counts_add_value(c, x);
}

void gn_drift_counts_merge(struct gn_drift_counts *dst, const struct gn_drift_counts *src)
{
	for (size_t i = 0; i < dst->nbins && i < src->nbins; i++)
		dst->counts[i] += src->counts[i];
	dst->underflow += src->underflow;
	dst->overflow += src->overflow;
	dst->nan += src->nan;
	if (src->n == 0)
		return;
	if (dst->n == 0) {
		dst->n = src->n;
		dst->mean = src->mean;
		dst->m2 = src->m2;
		dst->min = src->min;
		dst->max = src->max;
		return;
	}
	double na = (double)dst->n, nb = (double)src->n, n = na + nb, d = src->mean - dst->mean;
	dst->mean += d * nb / n;
	dst->m2 += src->m2 + d * d * na * nb / n;
	dst->n += src->n;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

double gn_drift_counts_variance(const struct gn_drift_counts *c)
{
	return c->n ? c->m2 / (double)c->n : NAN;
}

static json_t *real_or_null(double x, bool have)
{
	return have && isfinite(x) ? json_real(x) : json_null();
}

json_t *gn_drift_counts_json(const struct gn_drift_counts *c)
{
	json_t *counts = json_array();
	for (size_t i = 0; i < c->nbins; i++)
		json_array_append_new(counts, json_integer((json_int_t)c->counts[i]));
	bool have = c->n > 0;
	return json_pack("{s:o,s:I,s:I,s:I,s:I,s:o,s:o,s:o,s:o}", "counts", counts, "underflow",
			 (json_int_t)c->underflow, "overflow", (json_int_t)c->overflow, "nan", (json_int_t)c->nan, "n",
			 (json_int_t)c->n, "mean", real_or_null(c->mean, have), "variance",
			 real_or_null(gn_drift_counts_variance(c), have), "min", real_or_null(c->min, have), "max",
			 real_or_null(c->max, have));
}

/* Reads a count: a non-negative JSON integer. */
static int count_get(uint64_t *out, const json_t *x, const char *what, const char *field, gn_err *err)
{
	if (!x) {
		*out = 0;
		return 0;
	}
	if (!json_is_integer(x) || json_integer_value(x) < 0)
		return gn_err_set(err, GN_EINVAL, "%s.%s must be a non-negative integer", what, field);
	*out = (uint64_t)json_integer_value(x);
	return 0;
}

/* Reads a moment: a finite number when there are values, null or absent when there are none. */
static int moment_get(double *out, const json_t *j, const char *field, uint64_t n, const char *what, gn_err *err)
{
	const json_t *x = json_object_get(j, field);
	*out = 0;
	if (n == 0) {
		if (x && !json_is_null(x))
			return gn_err_set(err, GN_EINVAL, "%s.%s must be null when n is 0", what, field);
		return 0;
	}
	if (!json_is_number(x) || !isfinite(json_number_value(x)))
		return gn_err_set(err, GN_EINVAL, "%s.%s must be a finite number (n is %llu)", what, field,
				  (unsigned long long)n);
	*out = json_number_value(x);
	return 0;
}

static int parse_moments(struct gn_drift_counts *c, const json_t *j, const char *what, gn_err *err)
{
	double var;
	int rc;
	if ((rc = moment_get(&c->mean, j, "mean", c->n, what, err)) ||
	    (rc = moment_get(&var, j, "variance", c->n, what, err)) ||
	    (rc = moment_get(&c->min, j, "min", c->n, what, err)) ||
	    (rc = moment_get(&c->max, j, "max", c->n, what, err)))
		return rc;
	if (c->n == 0)
		return 0;
	/* rounding: a mean computed in float may fall a hair outside its own min and max */
	double slack = 1e-9 * (fabs(c->min) + fabs(c->max) + 1);
	if (var < 0 || c->min > c->max || c->mean < c->min - slack || c->mean > c->max + slack)
		return gn_err_set(err, GN_EINVAL, "%s: needs variance >= 0 and min <= mean <= max", what);
	c->m2 = var * (double)c->n;
	return 0;
}

int gn_drift_counts_parse(struct gn_drift_counts *out, const json_t *j, size_t nbins, bool numeric, const char *what,
			  gn_err *err)
{
	static const gn_json_field fields[] = {
		{"counts", GN_JSON_ARRAY, true, false},      {"underflow", GN_JSON_INTEGER, false, false},
		{"overflow", GN_JSON_INTEGER, false, false}, {"nan", GN_JSON_INTEGER, false, false},
		{"n", GN_JSON_INTEGER, true, false},         {"mean", GN_JSON_NUMBER, false, true},
		{"variance", GN_JSON_NUMBER, false, true},   {"min", GN_JSON_NUMBER, false, true},
		{"max", GN_JSON_NUMBER, false, true},
	};
	gn_err e;
	size_t i;
	json_t *x;
	uint64_t sum = 0;
	int rc;
	gn_drift_counts_init(out, nbins);
	if (gn_json_check(j, fields, GN_ARRAY_LEN(fields), &e)) {
		rc = gn_err_set(err, GN_EINVAL, "%s: %s", what, e.msg);
		goto fail;
	}
	const json_t *counts = json_object_get(j, "counts");
	if (json_array_size(counts) != nbins) {
		rc = gn_err_set(err, GN_EINVAL, "%s.counts has %zu bins; the model version's reference profile has %zu",
				what, json_array_size(counts), nbins);
		goto fail;
	}
	json_array_foreach(counts, i, x) {
		if (!json_is_integer(x) || json_integer_value(x) < 0) {
			rc = gn_err_set(err, GN_EINVAL, "%s.counts must hold non-negative integers", what);
			goto fail;
		}
		out->counts[i] = (uint64_t)json_integer_value(x);
		sum += out->counts[i];
	}
	if ((rc = count_get(&out->underflow, json_object_get(j, "underflow"), what, "underflow", err)) ||
	    (rc = count_get(&out->overflow, json_object_get(j, "overflow"), what, "overflow", err)) ||
	    (rc = count_get(&out->nan, json_object_get(j, "nan"), what, "nan", err)) ||
	    (rc = count_get(&out->n, json_object_get(j, "n"), what, "n", err)))
		goto fail;
	if (!numeric && (out->underflow || out->overflow)) {
		rc = gn_err_set(err, GN_EINVAL, "%s: a categorical feature has no underflow or overflow", what);
		goto fail;
	}
	if (nbins > 0 && out->n != sum + out->underflow + out->overflow) {
		rc = gn_err_set(err, GN_EINVAL, "%s.n is %llu, but the counts, underflow and overflow add up to %llu",
				what, (unsigned long long)out->n,
				(unsigned long long)(sum + out->underflow + out->overflow));
		goto fail;
	}
	if ((rc = parse_moments(out, j, what, err)))
		goto fail;
	return 0;
fail:
	gn_drift_counts_cleanup(out);
	return rc;
}

/* --- measures -------------------------------------------------------------------------------- */

double gn_drift_psi(const double *p, const double *q, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++) {
		double a = p[i] > GN_DRIFT_FLOOR ? p[i] : GN_DRIFT_FLOOR,
		       b = q[i] > GN_DRIFT_FLOOR ? q[i] : GN_DRIFT_FLOOR;
		s += (b - a) * log(b / a);
	}
	return s;
}

double gn_drift_js(const double *p, const double *q, size_t n)
{
	double sp = 0, sq = 0, d = 0;
	for (size_t i = 0; i < n; i++) {
		sp += p[i];
		sq += q[i];
	}
	if (!(sp > 0) || !(sq > 0))
		return NAN;
	for (size_t i = 0; i < n; i++) {
		double a = p[i] / sp, b = q[i] / sq, m = (a + b) / 2;
		if (a > 0)
			d += a * log2(a / m);
		if (b > 0)
			d += b * log2(b / m);
	}
	d /= 2;
	return d > 0 ? (d < 1 ? sqrt(d) : 1.0) : 0.0; /* rounding may leave a hair outside [0, 1] */
}

double gn_drift_linf(const double *p, const double *q, size_t n)
{
	double m = 0;
	for (size_t i = 0; i < n; i++)
		if (fabs(p[i] - q[i]) > m)
			m = fabs(p[i] - q[i]);
	return m;
}

void gn_drift_compare(struct gn_drift_measure *out, const struct gn_drift_feature *f, const struct gn_drift_counts *c)
{
	bool num = f->kind == GN_DRIFT_NUMERIC;
	size_t n = num ? f->nbins + 2 : f->nbins, off = num ? 1 : 0;
	double *p = gn_calloc(n, sizeof(double)), *q = gn_calloc(n, sizeof(double));
	out->n = c->n;
	out->psi = out->js = out->linf = NAN;
	if (c->n == 0 || c->nbins != f->nbins)
		goto out;
	double total = (double)c->n;
	for (size_t i = 0; i < f->nbins; i++) {
		p[i + off] = f->ref[i];
		q[i + off] = (double)c->counts[i] / total;
	}
	if (num) {
		q[0] = (double)c->underflow / total;
		q[n - 1] = (double)c->overflow / total;
	}
	out->psi = gn_drift_psi(p, q, n);
	out->js = gn_drift_js(p, q, n);
	if (!num)
		out->linf = gn_drift_linf(p, q, n);
out:
	free(p);
	free(q);
}

/* --- building a profile ------------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* numpy.quantile's default ("linear", type 7) on n sorted values. */
static double quantile(const double *v, size_t n, double q)
{
	double h = (double)(n - 1) * q;
	size_t lo = (size_t)floor(h);
	if (lo + 1 >= n)
		return v[n - 1];
	return v[lo] + (h - (double)lo) * (v[lo + 1] - v[lo]);
}

int gn_drift_feature_numeric(struct gn_drift_feature *out, const char *name, double *values, size_t n, size_t nbins,
			     gn_err *err)
{
	size_t m = 0, k = 0;
	memset(out, 0, sizeof(*out));
	if (nbins < 1 || nbins > GN_DRIFT_MAX_BINS)
		return gn_err_set(err, GN_EINVAL, "bins must be 1 to %d", GN_DRIFT_MAX_BINS);
	for (size_t i = 0; i < n; i++) /* NaN out, keeping the order of the rest */
		if (!isnan(values[i]))
			values[m++] = values[i];
	if (m == 0)
		return gn_err_set(err, GN_EINVAL, "feature '%s' has no numeric value", name);
	qsort(values, m, sizeof(double), cmp_double);
	double *edges = gn_calloc(nbins + 2, sizeof(double));
	for (size_t i = 0; i <= nbins; i++) {
		double e = i == nbins ? values[m - 1] : quantile(values, m, (double)i / (double)nbins);
		if (k == 0 || e > edges[k - 1])
			edges[k++] = e;
	}
	if (k == 1) /* one distinct value: one bin, closed on both sides */
		edges[k++] = nextafter(edges[0], INFINITY);
	out->name = gn_strdup(name);
	out->kind = GN_DRIFT_NUMERIC;
	out->nbins = k - 1;
	out->edges = edges;
	out->ref = gn_calloc(out->nbins, sizeof(double));
	out->samples = (int64_t)m;
	/* sorted values: walk the bins once */
	for (size_t i = 0; i < m; i++)
		out->ref[gn_drift_bin(edges, out->nbins, values[i])] += 1;
	for (size_t i = 0; i < out->nbins; i++)
		out->ref[i] /= (double)m;
	return 0;
}

struct tally {
	const char *value;
	size_t count;
};

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_tally(const void *a, const void *b)
{
	const struct tally *x = a, *y = b;
	if (x->count != y->count)
		return x->count < y->count ? 1 : -1;
	return strcmp(x->value, y->value);
}

int gn_drift_feature_categorical(struct gn_drift_feature *out, const char *name, const char *const *values, size_t n,
				 size_t max_vocab, gn_err *err)
{
	size_t m = 0, nt = 0;
	int rc = 0;
	memset(out, 0, sizeof(*out));
	if (max_vocab < 1 || max_vocab > GN_DRIFT_MAX_VOCAB)
		return gn_err_set(err, GN_EINVAL, "the vocabulary holds 1 to %d values", GN_DRIFT_MAX_VOCAB);
	const char **v = gn_calloc(n ? n : 1, sizeof(char *));
	struct tally *t = gn_calloc(n ? n : 1, sizeof(*t));
	for (size_t i = 0; i < n; i++) {
		if (!values[i])
			continue;
		if (!name_ok(values[i])) {
			rc = gn_err_set(err, GN_EINVAL, "feature '%s': the value '%.64s...' is longer than %d bytes",
					name, values[i], GN_DRIFT_NAME_MAX);
			goto out;
		}
		v[m++] = values[i];
	}
	if (m == 0) {
		rc = gn_err_set(err, GN_EINVAL, "feature '%s' has no value", name);
		goto out;
	}
	qsort(v, m, sizeof(char *), cmp_str);
	for (size_t i = 0; i < m; i++) {
		if (nt == 0 || strcmp(t[nt - 1].value, v[i]) != 0)
			t[nt++].value = v[i];
		t[nt - 1].count++;
	}
	qsort(t, nt, sizeof(*t), cmp_tally);
	size_t nv = nt < max_vocab ? nt : max_vocab;
	out->name = gn_strdup(name);
	out->kind = GN_DRIFT_CATEGORICAL;
	out->nbins = nv + 1;
	out->vocab = gn_calloc(nv + 1, sizeof(char *));
	out->ref = gn_calloc(nv + 1, sizeof(double));
	out->samples = (int64_t)m;
	for (size_t i = 0; i < nt; i++) {
		if (i < nv)
			out->vocab[i] = gn_strdup(t[i].value);
		out->ref[i < nv ? i : nv] += (double)t[i].count / (double)m;
	}
	vocab_numbers(out);
out:
	free(v);
	free(t);
	return rc;
}
