/* Unit tests for lib/drift.c. The expected measures, edges, shares and moments come from numpy
 * and scipy (tests/fixtures/drift/make_fixtures.py wrote cases.json); the binning rule, the
 * profile's checks and the counts' checks are worked by hand here. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "drift.h"
#include "json.h"

static json_t *cases;

static int load_cases(void **state)
{
	json_error_t e;
	(void)state;
	cases = json_load_file(SRCDIR "/tests/fixtures/drift/cases.json", 0, &e);
	if (!cases)
		fprintf(stderr, "cases.json: %s (line %d)\n", e.text, e.line);
	return cases ? 0 : -1;
}

static int free_cases(void **state)
{
	(void)state;
	json_decref(cases);
	return 0;
}

/* Relative closeness, for values computed in another order (numpy sums pairwise). */
static void assert_close(double got, double want, double rel)
{
	if (fabs(got - want) > rel * (fabs(want) + 1e-12)) {
		fprintf(stderr, "got %.17g, want %.17g\n", got, want);
		fail();
	}
}

static double *doubles(const json_t *a, size_t *out_n)
{
	size_t i;
	json_t *x;
	double *v = calloc(json_array_size(a) + 1, sizeof(double));
	json_array_foreach(a, i, x)
		v[i] = json_is_null(x) ? NAN : json_number_value(x);
	*out_n = json_array_size(a);
	return v;
}

static void test_measures(void **state)
{
	size_t i, n, m;
	json_t *c;
	(void)state;
	json_array_foreach(json_object_get(cases, "measures"), i, c) {
		double *p = doubles(json_object_get(c, "p"), &n), *q = doubles(json_object_get(c, "q"), &m);
		assert_int_equal(n, m);
		assert_close(gn_drift_psi(p, q, n), json_number_value(json_object_get(c, "psi")), 1e-9);
		assert_close(gn_drift_js(p, q, n), json_number_value(json_object_get(c, "js")), 1e-9);
		assert_close(gn_drift_linf(p, q, n), json_number_value(json_object_get(c, "linf")), 1e-12);
		free(p);
		free(q);
	}
}

/* By hand: PSI's floor, JS's range and normalisation. */
static void test_measures_by_hand(void **state)
{
	(void)state;
	double p[] = {0.5, 0.5, 0}, q[] = {0.5, 0.4, 0.1};
	/* (0.4-0.5) ln(0.8) + (0.1-0.0001) ln(1000) */
	assert_close(gn_drift_psi(p, q, 3), -0.1 * log(0.8) + 0.0999 * log(1000.0), 1e-12);
	double a[] = {1, 0}, b[] = {0, 1}, a2[] = {2, 0};
	assert_close(gn_drift_js(a, b, 2), 1.0, 1e-12);
	assert_close(gn_drift_js(a, a2, 2), 0.0, 1e-12); /* normalised: the same distribution */
	double z[] = {0, 0};
	assert_true(isnan(gn_drift_js(a, z, 2)));
	assert_close(gn_drift_linf(p, q, 3), 0.1, 1e-12);
}

static void test_bins(void **state)
{
	(void)state;
	const double e[] = {0, 1, 2, 4};
	assert_int_equal(gn_drift_bin(e, 3, -0.001), GN_DRIFT_UNDER);
	assert_int_equal(gn_drift_bin(e, 3, 0), 0); /* a bin holds its left edge */
	assert_int_equal(gn_drift_bin(e, 3, 0.999), 0);
	assert_int_equal(gn_drift_bin(e, 3, 1), 1);
	assert_int_equal(gn_drift_bin(e, 3, 3.9), 2);
	assert_int_equal(gn_drift_bin(e, 3, 4), 2); /* the last bin also its right edge */
	assert_int_equal(gn_drift_bin(e, 3, 4.0001), GN_DRIFT_OVER);
	assert_int_equal(gn_drift_bin(e, 3, INFINITY), GN_DRIFT_OVER);
	assert_int_equal(gn_drift_bin(e, 3, -INFINITY), GN_DRIFT_UNDER);
	assert_int_equal(gn_drift_bin(e, 3, NAN), GN_DRIFT_NAN);
	const double one[] = {5, 6};
	assert_int_equal(gn_drift_bin(one, 1, 5), 0);
	assert_int_equal(gn_drift_bin(one, 1, 6), 0);
}

static void test_numeric_profile(void **state)
{
	size_t i, n, ne, np;
	json_t *c;
	gn_err err;
	(void)state;
	json_array_foreach(json_object_get(cases, "numeric"), i, c) {
		struct gn_drift_feature f;
		double *v = doubles(json_object_get(c, "values"), &n);
		double *e = doubles(json_object_get(c, "edges"), &ne),
		       *p = doubles(json_object_get(c, "proportions"), &np);
		assert_int_equal(gn_drift_feature_numeric(&f, json_string_value(json_object_get(c, "name")), v, n,
							  (size_t)json_integer_value(json_object_get(c, "bins")), &err),
				 0);
		assert_int_equal(f.nbins + 1, ne);
		for (size_t k = 0; k < ne; k++)
			assert_close(f.edges[k], e[k], 1e-12);
		for (size_t k = 0; k < np; k++)
			assert_close(f.ref[k], p[k], 1e-12);
		assert_int_equal(f.samples, json_integer_value(json_object_get(c, "samples")));
		gn_drift_feature_cleanup(&f);
		free(v);
		free(e);
		free(p);
	}
	double nan[] = {NAN, NAN};
	struct gn_drift_feature f;
	assert_int_equal(gn_drift_feature_numeric(&f, "x", nan, 2, 10, &err), GN_EINVAL);
	assert_int_equal(gn_drift_feature_numeric(&f, "x", nan, 0, 10, &err), GN_EINVAL);
	double one[] = {1};
	assert_int_equal(gn_drift_feature_numeric(&f, "x", one, 1, 0, &err), GN_EINVAL);
	assert_int_equal(gn_drift_feature_numeric(&f, "x", one, 1, GN_DRIFT_MAX_BINS + 1, &err), GN_EINVAL);
}

/* Finds the numeric case called name. */
static const json_t *numeric_case(const char *name)
{
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(cases, "numeric"), i, c)
		if (strcmp(json_string_value(json_object_get(c, "name")), name) == 0)
			return c;
	fail();
	return NULL;
}

static void test_compare(void **state)
{
	size_t i, n, no;
	json_t *c;
	gn_err err;
	(void)state;
	json_array_foreach(json_object_get(cases, "compare"), i, c) {
		struct gn_drift_feature f;
		struct gn_drift_counts k;
		struct gn_drift_measure m;
		const json_t *ref = numeric_case(json_string_value(json_object_get(c, "reference")));
		double *v = doubles(json_object_get(ref, "values"), &n),
		       *o = doubles(json_object_get(c, "observed"), &no);
		assert_int_equal(gn_drift_feature_numeric(&f, "x", v, n,
							  (size_t)json_integer_value(json_object_get(c, "bins")), &err),
				 0);
		gn_drift_counts_init(&k, f.nbins);
		for (size_t j = 0; j < no; j++)
			gn_drift_counts_add(&k, &f, o[j]);
		for (size_t j = 0; j < f.nbins; j++)
			assert_int_equal(k.counts[j],
					 json_integer_value(json_array_get(json_object_get(c, "counts"), j)));
		assert_int_equal(k.underflow, json_integer_value(json_object_get(c, "underflow")));
		assert_int_equal(k.overflow, json_integer_value(json_object_get(c, "overflow")));
		assert_int_equal(k.n, no);
		gn_drift_compare(&m, &f, &k);
		assert_int_equal(m.n, no);
		assert_close(m.psi, json_number_value(json_object_get(c, "psi")), 1e-9);
		assert_close(m.js, json_number_value(json_object_get(c, "js")), 1e-9);
		assert_true(isnan(m.linf)); /* numeric */
		gn_drift_counts_cleanup(&k);
		gn_drift_feature_cleanup(&f);
		free(v);
		free(o);
	}
}

static void test_moments(void **state)
{
	size_t i, n;
	json_t *c;
	(void)state;
	json_array_foreach(json_object_get(cases, "moments"), i, c) {
		struct gn_drift_counts all, a, b;
		double *v = doubles(json_object_get(c, "values"), &n);
		size_t h = (size_t)json_integer_value(json_object_get(c, "split"));
		gn_drift_counts_init(&all, 0);
		gn_drift_counts_init(&a, 0);
		gn_drift_counts_init(&b, 0);
		for (size_t j = 0; j < n; j++) {
			gn_drift_counts_add_value(&all, v[j]);
			gn_drift_counts_add_value(j < h ? &a : &b, v[j]);
		}
		gn_drift_counts_merge(&a, &b);
		struct gn_drift_counts *both[] = {&all, &a};
		for (size_t k = 0; k < 2; k++) {
			assert_int_equal(both[k]->n, n);
			assert_close(both[k]->mean, json_number_value(json_object_get(c, "mean")), 1e-12);
			assert_close(gn_drift_counts_variance(both[k]),
				     json_number_value(json_object_get(c, "variance")), 1e-8);
			assert_close(both[k]->min, json_number_value(json_object_get(c, "min")), 0);
			assert_close(both[k]->max, json_number_value(json_object_get(c, "max")), 0);
		}
		gn_drift_counts_cleanup(&all);
		gn_drift_counts_cleanup(&a);
		gn_drift_counts_cleanup(&b);
		free(v);
	}
}

static void test_categorical(void **state)
{
	size_t i, j;
	json_t *c, *x;
	gn_err err;
	(void)state;
	json_array_foreach(json_object_get(cases, "categorical"), i, c) {
		const json_t *vals = json_object_get(c, "values");
		const char **v = calloc(json_array_size(vals) + 1, sizeof(char *));
		struct gn_drift_feature f;
		json_array_foreach(vals, j, x)
			v[j] = json_is_null(x) ? NULL : json_string_value(x);
		assert_int_equal(
			gn_drift_feature_categorical(&f, "c", v, json_array_size(vals),
						     (size_t)json_integer_value(json_object_get(c, "max_vocab")), &err),
			0);
		const json_t *vocab = json_object_get(c, "vocabulary"), *props = json_object_get(c, "proportions");
		assert_int_equal(f.nbins, json_array_size(vocab) + 1);
		json_array_foreach(vocab, j, x)
			assert_string_equal(f.vocab[j], json_string_value(x));
		json_array_foreach(props, j, x)
			assert_close(f.ref[j], json_number_value(x), 1e-12);
		/* counting the same values again reproduces the shares: L-infinity 0 */
		struct gn_drift_counts k;
		struct gn_drift_measure m;
		gn_drift_counts_init(&k, f.nbins);
		for (j = 0; j < json_array_size(vals); j++)
			gn_drift_counts_add_category(&k, v[j] ? gn_drift_category(&f, v[j]) : GN_DRIFT_NAN, NAN);
		gn_drift_compare(&m, &f, &k);
		assert_close(m.linf, 0, 1e-12);
		assert_close(m.psi, 0, 1e-12);
		gn_drift_counts_cleanup(&k);
		gn_drift_feature_cleanup(&f);
		free(v);
	}
}

static void test_category_of_numbers(void **state)
{
	gn_err err;
	struct gn_drift_feature f;
	const char *v[] = {"0", "3", "0.5", "3", "-2"};
	(void)state;
	assert_int_equal(gn_drift_feature_categorical(&f, "c", v, 5, 10, &err), 0);
	/* vocabulary by count, then bytewise: 3, -2, 0, 0.5 */
	assert_int_equal(gn_drift_category_num(&f, 3.0), 0);
	assert_int_equal(gn_drift_category_num(&f, -2.0), 1);
	assert_int_equal(gn_drift_category_num(&f, -0.0), 2);
	assert_int_equal(gn_drift_category_num(&f, 0.5), 3);
	assert_int_equal(gn_drift_category_num(&f, 7.0), 4); /* other */
	assert_int_equal(gn_drift_category_num(&f, NAN), GN_DRIFT_NAN);
	assert_int_equal(gn_drift_category(&f, "nope"), 4);
	gn_drift_feature_cleanup(&f);
}

static json_t *parse_json(const char *s)
{
	json_error_t e;
	json_t *j = json_loads(s, 0, &e);
	if (!j)
		fprintf(stderr, "bad test JSON: %s: %s\n", s, e.text);
	assert_non_null(j);
	return j;
}

static void test_profile_round_trip(void **state)
{
	gn_err err;
	struct gn_drift_profile *p = NULL, *p2 = NULL;
	(void)state;
	json_t *j = parse_json(
		"{\"features\":[{\"name\":\"x0\",\"edges\":[0.0,0.5,1.0],\"proportions\":[0.4,0.6]},"
		"{\"name\":\"colour\",\"kind\":\"categorical\",\"vocabulary\":[\"3\",\"1\"],\"proportions\":[0.5,0.25,0.25],"
		"\"tensor\":\"x\",\"index\":3,\"samples\":40}],"
		"\"outputs\":[{\"name\":\"class\",\"kind\":\"categorical\",\"vocabulary\":[\"0\",\"1\"],"
		"\"proportions\":[0.7,0.3,0.0],\"reduce\":\"argmax\"},"
		"{\"name\":\"confidence\",\"edges\":[0.5,0.9,1.0],\"proportions\":[0.2,0.8],\"reduce\":\"max\"}],"
		"\"image\":{\"layout\":\"nhwc\",\"channels\":[{\"mean\":0.4,\"variance\":0.01},{\"mean\":0.5,\"variance\":0.02}],"
		"\"intensity\":{\"edges\":[0.0,0.25,1.0],\"proportions\":[0.5,0.5]}}}");
	assert_int_equal(gn_drift_profile_parse(&p, j, &err), 0);
	assert_int_equal(p->ninputs, 2);
	assert_int_equal(p->noutputs, 2);
	assert_int_equal(p->inputs[0].index, 0); /* its position */
	assert_false(p->inputs[0].index_set);
	assert_int_equal(p->inputs[1].index, 3);
	assert_string_equal(p->inputs[1].tensor, "x");
	assert_int_equal(p->inputs[1].nbins, 3);
	assert_int_equal(p->outputs[0].reduce, GN_DRIFT_ARGMAX);
	assert_int_equal(p->outputs[1].reduce, GN_DRIFT_MAX);
	assert_int_equal(p->image->nchannels, 2);
	assert_int_equal(p->image->layout, GN_DRIFT_NHWC);
	assert_int_equal(p->image->intensity.nbins, 2);
	json_t *back = gn_drift_profile_json(p);
	assert_true(json_equal(back, j)); /* reals written as reals: jansson tells 1 from 1.0 */
	assert_int_equal(gn_drift_profile_parse(&p2, back, &err), 0);
	json_decref(back);
	json_decref(j);
	gn_drift_profile_free(p);
	gn_drift_profile_free(p2);
}

/* Each refused profile and a piece of the message it gets. */
static void test_profile_refusals(void **state)
{
	static const struct {
		const char *json, *msg;
	} bad[] = {
		{"{}", "features"},
		{"{\"features\":[],\"extra\":1}", "extra"},
		{"{\"features\":[{\"name\":\"f\",\"edges\":[0,1,2],\"proportions\":[0.5,0.6]}]}", "sum to 1.1"},
		{"{\"features\":[{\"name\":\"f\",\"edges\":[0,2,1],\"proportions\":[0.5,0.5]}]}",
		 "strictly increasing"},
		{"{\"features\":[{\"name\":\"f\",\"edges\":[0,1,1],\"proportions\":[0.5,0.5]}]}",
		 "strictly increasing"},
		{"{\"features\":[{\"name\":\"f\",\"edges\":[0,1,2],\"proportions\":[1.0]}]}", "k+1 edges"},
		{"{\"features\":[{\"name\":\"f\",\"edges\":[0],\"proportions\":[]}]}", "k+1 edges"},
		{"{\"features\":[{\"name\":\"f\",\"edges\":[0,1,2],\"proportions\":[1.5,-0.5]}]}", "[0, 1]"},
		{"{\"features\":[{\"name\":\"f\",\"edges\":[0,\"1\"],\"proportions\":[1]}]}", "strictly increasing"},
		{"{\"features\":[{\"name\":\"f\",\"edges\":[0,1],\"proportions\":[null]}]}", "[0, 1]"},
		{"{\"features\":[{\"name\":\"\",\"edges\":[0,1],\"proportions\":[1]}]}", "name must be"},
		{"{\"features\":[{\"name\":\"f\",\"edges\":[0,1],\"proportions\":[1]},"
		 "{\"name\":\"f\",\"edges\":[0,1],\"proportions\":[1]}]}",
		 "appears twice"},
		{"{\"features\":[{\"name\":\"f\",\"proportions\":[1]}]}", "edges and proportions"},
		{"{\"features\":[{\"name\":\"f\",\"kind\":\"ordinal\",\"edges\":[0,1],\"proportions\":[1]}]}", "kind"},
		{"{\"features\":[{\"name\":\"f\",\"kind\":\"categorical\",\"vocabulary\":[\"a\"],\"proportions\":[1]}]}",
		 "n+1 proportions"},
		{"{\"features\":[{\"name\":\"f\",\"kind\":\"categorical\",\"vocabulary\":[\"a\",\"a\"],"
		 "\"proportions\":[0.5,0.5,0]}]}",
		 "twice"},
		{"{\"features\":[{\"name\":\"f\",\"kind\":\"categorical\",\"vocabulary\":[],\"proportions\":[1]}]}",
		 "1 to 256"},
		{"{\"features\":[{\"name\":\"f\",\"kind\":\"categorical\",\"edges\":[0,1],\"proportions\":[1]}]}",
		 "not edges"},
		{"{\"features\":[{\"name\":\"f\",\"edges\":[0,1],\"proportions\":[1],\"index\":-1}]}", "negative"},
		{"{\"features\":[{\"name\":\"f\",\"edges\":[0,1],\"proportions\":[1],\"reduce\":\"mean\"}]}",
		 "argmax or max"},
		{"{\"features\":[{\"name\":\"f\",\"edges\":[0,1],\"proportions\":[1],\"reduce\":\"argmax\"}]}",
		 "categorical"},
		{"{\"features\":[{\"name\":\"f\",\"edges\":[0,1],\"proportions\":[1],\"reduce\":\"max\",\"index\":0}]}",
		 "exclude"},
		{"{\"features\":[],\"image\":{\"layout\":\"chw\",\"channels\":[{\"mean\":0,\"variance\":1}],"
		 "\"intensity\":{\"edges\":[0,1],\"proportions\":[1]}}}",
		 "nchw or nhwc"},
		{"{\"features\":[],\"image\":{\"layout\":\"nchw\",\"channels\":[{\"mean\":0,\"variance\":-1}],"
		 "\"intensity\":{\"edges\":[0,1],\"proportions\":[1]}}}",
		 "variance >= 0"},
		{"{\"features\":[],\"image\":{\"layout\":\"nchw\",\"channels\":[],"
		 "\"intensity\":{\"edges\":[0,1],\"proportions\":[1]}}}",
		 "1 to 16 channels"},
		{"{\"features\":[],\"image\":{\"layout\":\"nchw\",\"channels\":[{\"mean\":0,\"variance\":1}],"
		 "\"intensity\":{\"edges\":[0,1],\"proportions\":[1],\"tensor\":\"x\"}}}",
		 "edges, proportions and samples only"},
	};
	(void)state;
	for (size_t i = 0; i < GN_ARRAY_LEN(bad); i++) {
		struct gn_drift_profile *p = NULL;
		gn_err err;
		json_t *j = parse_json(bad[i].json);
		assert_int_equal(gn_drift_profile_parse(&p, j, &err), GN_EINVAL);
		assert_null(p);
		if (!strstr(err.msg, bad[i].msg)) {
			fprintf(stderr, "case %zu: '%s' lacks '%s'\n", i, err.msg, bad[i].msg);
			fail();
		}
		json_decref(j);
	}
	/* too many bins */
	json_t *edges = json_array(), *props = json_array();
	for (int i = 0; i <= GN_DRIFT_MAX_BINS + 1; i++)
		json_array_append_new(edges, json_integer(i));
	for (int i = 0; i <= GN_DRIFT_MAX_BINS; i++)
		json_array_append_new(props, json_real(i == 0 ? 1.0 : 0.0));
	json_t *j = json_pack("{s:[{s:s,s:o,s:o}]}", "features", "name", "f", "edges", edges, "proportions", props);
	struct gn_drift_profile *p = NULL;
	gn_err err;
	assert_int_equal(gn_drift_profile_parse(&p, j, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "at most 100"));
	json_decref(j);
}

static void test_counts_json(void **state)
{
	struct gn_drift_feature f = {0};
	struct gn_drift_counts c, back;
	gn_err err;
	double edges[] = {0, 1, 2}, ref[] = {0.5, 0.5};
	(void)state;
	f.kind = GN_DRIFT_NUMERIC;
	f.nbins = 2;
	f.edges = edges;
	f.ref = ref;
	gn_drift_counts_init(&c, 2);
	double xs[] = {0.5, 1.5, 1.5, -1, 3, NAN};
	for (size_t i = 0; i < GN_ARRAY_LEN(xs); i++)
		gn_drift_counts_add(&c, &f, xs[i]);
	assert_int_equal(c.counts[0], 1);
	assert_int_equal(c.counts[1], 2);
	assert_int_equal(c.underflow, 1);
	assert_int_equal(c.overflow, 1);
	assert_int_equal(c.nan, 1);
	assert_int_equal(c.n, 5);
	assert_close(c.mean, 5.5 / 5, 1e-12);
	/* values 0.5 1.5 1.5 -1 3, mean 1.1: squared deviations 0.36 0.16 0.16 4.41 3.61 = 8.7 */
	assert_close(gn_drift_counts_variance(&c), 8.7 / 5, 1e-12);
	json_t *j = gn_drift_counts_json(&c);
	assert_int_equal(gn_drift_counts_parse(&back, j, 2, true, "f", &err), 0);
	assert_int_equal(back.n, 5);
	assert_int_equal(back.counts[1], 2);
	assert_close(back.m2, c.m2, 1e-12);
	assert_close(back.min, -1, 0);
	assert_close(back.max, 3, 0);
	/* PSI of the counts over under, 2 bins, over: q = .2 .2 .4 .2 against p = 0 .5 .5 0 */
	struct gn_drift_measure m;
	gn_drift_compare(&m, &f, &c);
	double p4[] = {0, 0.5, 0.5, 0}, q4[] = {0.2, 0.2, 0.4, 0.2};
	assert_close(m.psi, gn_drift_psi(p4, q4, 4), 1e-12);
	assert_close(m.psi, 2 * 0.1999 * log(2000.0) + (-0.3) * log(0.4) + (-0.1) * log(0.8), 1e-12);
	gn_drift_counts_cleanup(&back);
	json_decref(j);
	gn_drift_counts_reset(&c);
	assert_int_equal(c.n + c.nan + c.counts[1], 0);
	gn_drift_compare(&m, &f, &c);
	assert_true(isnan(m.psi) && isnan(m.js));
	j = gn_drift_counts_json(&c);
	assert_true(json_is_null(json_object_get(j, "mean")));
	assert_int_equal(gn_drift_counts_parse(&back, j, 2, true, "f", &err), 0);
	gn_drift_counts_cleanup(&back);
	json_decref(j);
	gn_drift_counts_cleanup(&c);
}

static void test_counts_refusals(void **state)
{
	static const struct {
		const char *json, *msg;
		size_t nbins;
		bool numeric;
	} bad[] = {
		{"{\"counts\":[1,2],\"n\":3,\"extra\":0}", "extra", 2, true},
		{"{\"counts\":[1,2,3],\"n\":6}", "has 3 bins", 2, true},
		{"{\"counts\":[1,-2],\"n\":-1}", "non-negative", 2, true},
		{"{\"counts\":[1,2.5],\"n\":3}", "non-negative integers", 2, true},
		{"{\"counts\":[1,\"NaN\"],\"n\":1}", "non-negative integers", 2, true},
		{"{\"counts\":[1,2],\"n\":4,\"mean\":1,\"variance\":0,\"min\":1,\"max\":1}", "add up to 3", 2, true},
		{"{\"counts\":[1,2],\"n\":3}", "mean must be a finite number", 2, true},
		{"{\"counts\":[1,2],\"n\":3,\"mean\":1,\"variance\":-1,\"min\":0,\"max\":2}", "variance >= 0", 2, true},
		{"{\"counts\":[1,2],\"n\":3,\"mean\":5,\"variance\":1,\"min\":0,\"max\":2}", "min <= mean", 2, true},
		{"{\"counts\":[0,0],\"n\":0,\"mean\":1}", "null when n is 0", 2, true},
		{"{\"counts\":[1,2],\"n\":4,\"underflow\":1,\"mean\":1,\"variance\":1,\"min\":0,\"max\":2}",
		 "no underflow", 2, false},
		{"{\"counts\":[1,2],\"n\":3,\"nan\":-1}", "nan must be", 2, true},
		{"[]", "object", 2, true},
	};
	(void)state;
	{ /* an image channel: moments without bins, so n is not the (empty) counts' sum */
		struct gn_drift_counts c;
		gn_err err;
		json_t *j = parse_json("{\"counts\":[],\"n\":4,\"mean\":0.5,\"variance\":0.25,\"min\":0,\"max\":1}");
		assert_int_equal(gn_drift_counts_parse(&c, j, 0, false, "ch", &err), 0);
		assert_int_equal(c.n, 4);
		assert_true(fabs(c.m2 - 1.0) < 1e-12);
		gn_drift_counts_cleanup(&c);
		json_decref(j);
	}
	for (size_t i = 0; i < GN_ARRAY_LEN(bad); i++) {
		struct gn_drift_counts c;
		gn_err err;
		json_t *j = parse_json(bad[i].json);
		assert_int_equal(gn_drift_counts_parse(&c, j, bad[i].nbins, bad[i].numeric, "w", &err), GN_EINVAL);
		if (!strstr(err.msg, bad[i].msg)) {
			fprintf(stderr, "case %zu: '%s' lacks '%s'\n", i, err.msg, bad[i].msg);
			fail();
		}
		json_decref(j);
	}
}

/* Counts merged from several devices give the same measures as the counts of all values at once. */
static void test_merge_equals_whole(void **state)
{
	struct gn_drift_feature f;
	struct gn_drift_counts whole, part[3], sum;
	struct gn_drift_measure a, b;
	gn_err err;
	double ref[200], obs[300];
	(void)state;
	for (int i = 0; i < 200; i++)
		ref[i] = (double)((i * 37) % 101) / 10.0;
	for (int i = 0; i < 300; i++)
		obs[i] = (double)((i * 53) % 113) / 10.0 - 0.5;
	assert_int_equal(gn_drift_feature_numeric(&f, "x", ref, 200, 10, &err), 0);
	gn_drift_counts_init(&whole, f.nbins);
	gn_drift_counts_init(&sum, f.nbins);
	for (int k = 0; k < 3; k++)
		gn_drift_counts_init(&part[k], f.nbins);
	for (int i = 0; i < 300; i++) {
		gn_drift_counts_add(&whole, &f, obs[i]);
		gn_drift_counts_add(&part[i % 3], &f, obs[i]);
	}
	for (int k = 0; k < 3; k++)
		gn_drift_counts_merge(&sum, &part[k]);
	gn_drift_compare(&a, &f, &whole);
	gn_drift_compare(&b, &f, &sum);
	assert_int_equal(a.n, 300);
	assert_int_equal(b.n, 300);
	assert_close(b.psi, a.psi, 1e-12);
	assert_close(b.js, a.js, 1e-12);
	assert_close(sum.mean, whole.mean, 1e-12);
	assert_close(gn_drift_counts_variance(&sum), gn_drift_counts_variance(&whole), 1e-9);
	assert_true(a.psi > 0.01); /* the observed values do differ from the reference */
	for (int k = 0; k < 3; k++)
		gn_drift_counts_cleanup(&part[k]);
	gn_drift_counts_cleanup(&whole);
	gn_drift_counts_cleanup(&sum);
	gn_drift_feature_cleanup(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_measures),
		cmocka_unit_test(test_measures_by_hand),
		cmocka_unit_test(test_bins),
		cmocka_unit_test(test_numeric_profile),
		cmocka_unit_test(test_compare),
		cmocka_unit_test(test_moments),
		cmocka_unit_test(test_categorical),
		cmocka_unit_test(test_category_of_numbers),
		cmocka_unit_test(test_profile_round_trip),
		cmocka_unit_test(test_profile_refusals),
		cmocka_unit_test(test_counts_json),
		cmocka_unit_test(test_counts_refusals),
		cmocka_unit_test(test_merge_equals_whole),
	};
	return cmocka_run_group_tests(tests, load_cases, free_cases);
}
