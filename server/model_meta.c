/* Validation of the metadata CI publishes with a model version; the naming rules are lib/model.c. */
#include "model_meta.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "crypto.h"
#include "drift.h"
#include "requirements.h"

static const char *const dtypes[] = {"float32", "float16", "int8", "uint8", "int32", "int64"};

static int index_of(const char *const *list, size_t n, const char *s)
{
	for (size_t i = 0; s && i < n; i++)
		if (strcmp(list[i], s) == 0)
			return (int)i;
	return -1;
}

static int check_tensors(const json_t *arr, const char *what, gn_err *err)
{
	static const gn_json_field fields[] = {
		{"name", GN_JSON_STRING, true, false},
		{"dtype", GN_JSON_STRING, true, false},
		{"shape", GN_JSON_ARRAY, true, false},
	};
	size_t i, j;
	json_t *t, *d;
	if (!json_is_array(arr))
		return gn_err_set(err, GN_EINVAL, "%s must be an array of tensor specs", what);
	json_array_foreach(arr, i, t) {
		gn_err e;
		if (gn_json_check(t, fields, GN_ARRAY_LEN(fields), &e))
			return gn_err_set(err, GN_EINVAL, "%s[%zu]: %s", what, i, e.msg);
		if (index_of(dtypes, GN_ARRAY_LEN(dtypes), gn_json_str(t, "dtype")) < 0)
			return gn_err_set(err, GN_EINVAL,
					  "%s[%zu].dtype must be one of float32, float16, int8, uint8, int32, int64",
					  what, i);
		json_array_foreach(json_object_get(t, "shape"), j, d) {
			if (!json_is_integer(d) || json_integer_value(d) < -1 || json_integer_value(d) == 0)
				return gn_err_set(err, GN_EINVAL,
						  "%s[%zu].shape holds positive integers or -1 (dynamic)", what, i);
		}
		for (size_t k = 0; k < i; k++)
			if (strcmp(gn_json_str(json_array_get(arr, k), "name"), gn_json_str(t, "name")) == 0)
				return gn_err_set(err, GN_EINVAL, "%s: tensor name '%.64s' appears twice", what,
						  gn_json_str(t, "name"));
	}
	return 0;
}

/* Number of elements of a tensor spec, or -1 when a dimension is dynamic. A count past
 * INT64_MAX is INT64_MAX, which no sample can match. */
static int64_t elements(const json_t *spec)
{
	int64_t n = 1;
	bool huge = false;
	size_t i;
	json_t *d;
	json_array_foreach(json_object_get(spec, "shape"), i, d) {
		int64_t v = json_integer_value(d);
		if (v < 1) /* -1: dynamic (check_tensors refused 0 and the rest) */
			return -1;
		huge = huge || n > INT64_MAX / v;
		n = huge ? INT64_MAX : n * v;
	}
	return n;
}

static const json_t *find_tensor(const json_t *specs, const char *name)
{
	size_t i;
	json_t *t;
	json_array_foreach(specs, i, t)
		if (strcmp(gn_json_str(t, "name"), name) == 0)
			return t;
	return NULL;
}

/* A sample tensor held in a file: {"format": "npy", "sha256": 64 hex digits, "length": bytes}. */
static int check_sample_file(const json_t *v, const char *what, const char *k, gn_err *err)
{
	static const gn_json_field fields[] = {
		{"format", GN_JSON_STRING, true, false},
		{"sha256", GN_JSON_STRING, true, false},
		{"length", GN_JSON_INTEGER, true, false},
	};
	gn_err e;
	const char *sha = gn_json_str(v, "sha256");
	if (gn_json_check(v, fields, GN_ARRAY_LEN(fields), &e))
		return gn_err_set(err, GN_EINVAL, "sample.%s.%.64s: %s", what, k, e.msg);
	if (strcmp(gn_json_str(v, "format"), "npy") != 0)
		return gn_err_set(err, GN_EINVAL, "sample.%s.%.64s.format must be \"npy\"", what, k);
	if (strlen(sha) != 64 || strspn(sha, "0123456789abcdef") != 64)
		return gn_err_set(err, GN_EINVAL, "sample.%s.%.64s.sha256 must be 64 lower-case hex digits", what, k);
	if (json_integer_value(json_object_get(v, "length")) < 1)
		return gn_err_set(err, GN_EINVAL, "sample.%s.%.64s.length must be at least 1", what, k);
	return 0;
}

int64_t model_meta_sample_elements(const json_t *meta, const char *list, const char *name)
{
	const json_t *spec = find_tensor(json_object_get(meta, list), name);
	return spec ? elements(spec) : -1;
}

/* Sample tensors: {tensor name: [numbers]} matching the specs by name and element count. */
static int check_sample_tensors(const json_t *obj, const json_t *specs, const char *what, gn_err *err)
{
	const char *k;
	json_t *v;
	if (!json_is_object(obj) || json_object_size(obj) == 0)
		return gn_err_set(err, GN_EINVAL, "sample.%s must be an object of tensor name to numbers", what);
	json_object_foreach((json_t *)obj, k, v) {
		const json_t *spec = find_tensor(specs, k);
		size_t i;
		json_t *x;
		if (!spec)
			return gn_err_set(err, GN_EINVAL, "sample.%s names '%.64s', which is not among the model's %s",
					  what, k, what);
		if (json_is_object(v)) { /* a tensor file, sent as a 'sample' part: checked when it arrives */
			int rc = check_sample_file(v, what, k, err);
			if (rc)
				return rc;
			continue;
		}
		if (!json_is_array(v) || json_array_size(v) == 0)
			return gn_err_set(err, GN_EINVAL,
					  "sample.%s.%.64s must be a non-empty array of numbers or a tensor file "
					  "{\"format\": \"npy\", \"sha256\", \"length\"}",
					  what, k);
		json_array_foreach(v, i, x)
			if (!json_is_number(x))
				return gn_err_set(err, GN_EINVAL, "sample.%s.%.64s must hold numbers only", what, k);
		int64_t want = elements(spec);
		if (want > 0 && (int64_t)json_array_size(v) != want)
			return gn_err_set(err, GN_EINVAL, "sample.%s.%.64s has %zu values, its shape needs %lld", what,
					  k, json_array_size(v), (long long)want);
	}
	return 0;
}

static int check_sample(const json_t *s, const json_t *inputs, const json_t *outputs, gn_err *err)
{
	static const gn_json_field fields[] = {
		{"inputs", GN_JSON_OBJECT, true, false},
		{"outputs", GN_JSON_OBJECT, true, false},
		{"tolerance", GN_JSON_NUMBER, false, false},
	};
	gn_err e;
	int rc;
	if (gn_json_check(s, fields, GN_ARRAY_LEN(fields), &e))
		return gn_err_set(err, GN_EINVAL, "sample: %s", e.msg);
	if ((rc = check_sample_tensors(json_object_get(s, "inputs"), inputs, "inputs", err)) ||
	    (rc = check_sample_tensors(json_object_get(s, "outputs"), outputs, "outputs", err)))
		return rc;
	const json_t *tol = json_object_get(s, "tolerance");
	if (tol && json_number_value(tol) < 0)
		return gn_err_set(err, GN_EINVAL, "sample.tolerance must not be negative");
	return 0;
}

/* A feature that names a tensor (or reads the first one) must find it among the specs, and an
 * element index must fall inside a tensor of fixed shape. */
static int check_feature_source(const struct gn_drift_feature *f, const json_t *specs, const char *list, size_t i,
				const char *kind, gn_err *err)
{
	const json_t *spec = f->tensor ? find_tensor(specs, f->tensor) : json_array_get(specs, 0);
	if (!specs)
		return 0; /* no specs to check against */
	if (!spec)
		return gn_err_set(err, GN_EINVAL,
				  "reference_profile.%s[%zu] reads %s '%.64s', which is not among the %s", list, i,
				  kind, f->tensor ? f->tensor : "(the first)", kind);
	int64_t n = elements(spec);
	if (f->reduce == GN_DRIFT_ELEMENT && n > 0 && f->index >= n)
		return gn_err_set(err, GN_EINVAL,
				  "reference_profile.%s[%zu] reads element %lld of '%.64s', which has %lld elements",
				  list, i, (long long)f->index, gn_json_str(spec, "name"), (long long)n);
	return 0;
}

/* The profile's own rules are lib/drift.c's (the agent reads it with the same code). */
static int check_profile(const json_t *p, const json_t *inputs, const json_t *outputs, gn_err *err)
{
	struct gn_drift_profile *prof = NULL;
	int rc = gn_drift_profile_parse(&prof, p, err);
	for (size_t i = 0; !rc && i < prof->ninputs; i++)
		rc = check_feature_source(&prof->inputs[i], inputs, "features", i, "inputs", err);
	for (size_t i = 0; !rc && i < prof->noutputs; i++)
		rc = check_feature_source(&prof->outputs[i], outputs, "outputs", i, "outputs", err);
	if (!rc && prof->image && inputs &&
	    !(prof->image->tensor ? find_tensor(inputs, prof->image->tensor) : json_array_get(inputs, 0)))
		rc = gn_err_set(err, GN_EINVAL, "reference_profile.image reads '%.64s', which is not among the inputs",
				prof->image->tensor ? prof->image->tensor : "(the first)");
	gn_drift_profile_free(prof);
	return rc;
}

static const gn_json_field meta_fields[] = {
	{"version", GN_JSON_STRING, true, false},     {"format", GN_JSON_STRING, false, false},
	{"filename", GN_JSON_STRING, false, false},   {"requirements", GN_JSON_OBJECT, false, false},
	{"inputs", GN_JSON_ARRAY, false, false},      {"outputs", GN_JSON_ARRAY, false, false},
	{"sample", GN_JSON_OBJECT, false, false},     {"reference_profile", GN_JSON_OBJECT, false, true},
	{"provenance", GN_JSON_OBJECT, false, false}, {"sha256", GN_JSON_STRING, false, false},
	{"length", GN_JSON_INTEGER, false, false},    {"no_self_test", GN_JSON_BOOL, false, false},
};

/* Fills out's format and file name: the stated ones, checked, or "other" and model.EXT. */
static int check_format_filename(struct model_meta *out, const json_t *meta, gn_err *err)
{
	const struct gn_model_format *f;
	const char *fmt = gn_json_str(meta, "format"), *fn = gn_json_str(meta, "filename");
	int rc;
	if ((rc = gn_model_format_lookup(&f, fmt ? fmt : GN_MODEL_FORMAT_DEFAULT, err)))
		return rc;
	out->format = f->name;
	if (fn && (rc = gn_model_filename_check(fn, err)))
		return rc;
	if (fn)
		snprintf(out->filename, sizeof(out->filename), "%s", fn);
	else
		snprintf(out->filename, sizeof(out->filename), "model.%s", f->ext);
	return 0;
}

/* Checks requirements, tensor specs, sample and reference profile. */
static int check_specs(const json_t *meta, gn_err *err)
{
	const json_t *req = json_object_get(meta, "requirements");
	const json_t *in = json_object_get(meta, "inputs"), *outs = json_object_get(meta, "outputs");
	const json_t *sample = json_object_get(meta, "sample"), *prof = json_object_get(meta, "reference_profile");
	int rc;
	if (req && (rc = gn_requirements_check(req, err)))
		return rc;
	if (in && (rc = check_tensors(in, "inputs", err)))
		return rc;
	if (outs && (rc = check_tensors(outs, "outputs", err)))
		return rc;
	if (sample && (!in || !outs))
		return gn_err_set(err, GN_EINVAL, "a sample needs the inputs and outputs tensor specs");
	if (sample && (rc = check_sample(sample, in, outs, err)))
		return rc;
	if (prof && !json_is_null(prof) && (rc = check_profile(prof, in, outs, err)))
		return rc;
	return 0;
}

/* Fills out's stated digest and length, which the upload must then match. */
static int check_stated(struct model_meta *out, const json_t *meta, gn_err *err)
{
	const char *sha = gn_json_str(meta, "sha256");
	if (sha) {
		unsigned char raw[GN_SHA256_LEN];
		if (gn_hex_decode(raw, sizeof(raw), sha))
			return gn_err_set(err, GN_EINVAL, "sha256 must be 64 hex digits");
		gn_hex_encode(out->stated_sha256, raw, sizeof(raw));
	}
	if (json_object_get(meta, "length")) {
		out->stated_length = json_integer_value(json_object_get(meta, "length"));
		if (out->stated_length < 0)
			return gn_err_set(err, GN_EINVAL, "length must not be negative");
	}
	return 0;
}

/* A release carries a sample, which every device runs through the model before swapping it in,
 * unless the publisher says explicitly that it has none. */
static int check_self_test(const json_t *meta, gn_err *err)
{
	bool sample = json_object_get(meta, "sample") != NULL;
	bool none = json_is_true(json_object_get(meta, "no_self_test"));
	if (sample && none)
		return gn_err_set(err, GN_EINVAL,
				  "the metadata has a sample and \"no_self_test\": true; drop one of them");
	if (!sample && !none)
		return gn_err_set(
			err, GN_EINVAL,
			"no sample: a release carries a sample (inputs and expected outputs) that each device "
			"runs as a self-test before it swaps the model in; add \"sample\", or publish without "
			"a self-test by saying \"no_self_test\": true (ganglion models push --no-self-test)");
	return 0;
}

int model_meta_check(struct model_meta *out, const json_t *meta, gn_err *err)
{
	int rc;
	memset(out, 0, sizeof(*out));
	out->stated_length = -1;
	if ((rc = gn_json_check(meta, meta_fields, GN_ARRAY_LEN(meta_fields), err)) ||
	    (rc = gn_model_version_parse(&out->semver, gn_json_str(meta, "version"), err)) ||
	    (rc = check_format_filename(out, meta, err)))
		return rc;
	snprintf(out->version, sizeof(out->version), "%s", gn_json_str(meta, "version"));
	if ((rc = check_specs(meta, err)) || (rc = check_stated(out, meta, err)) || (rc = check_self_test(meta, err)))
		return rc;
	return 0;
}
