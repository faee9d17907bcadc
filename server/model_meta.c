/* Validation of model names, semantic versions and the metadata CI publishes with a version. */
#include "model_meta.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"

static const char *const formats[] = {"onnx", "tflite", "tensorrt-plan", "other"};
static const char *const format_ext[] = {"onnx", "tflite", "plan", "bin"};
static const char *const dtypes[] = {"float32", "float16", "int8", "uint8", "int32", "int64"};

int model_name_check(const char *name, gn_err *err)
{
	size_t n = name ? strlen(name) : 0;
	bool ok = n >= 1 && n <= 63 && name[0] != '-' && name[n - 1] != '-';
	for (size_t i = 0; ok && i < n; i++)
		ok = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') || name[i] == '-';
	if (!ok)
		return gn_err_set(err, GN_EINVAL,
				  "model name must be a lower-case DNS label (a-z, 0-9, '-', 1 to 63 characters, no "
				  "leading or trailing '-')");
	return 0;
}

int model_alias_check(const char *alias, gn_err *err)
{
	size_t n = alias ? strlen(alias) : 0;
	bool ok = n >= 1 && n <= 63 && (islower((unsigned char)alias[0]) || isdigit((unsigned char)alias[0]));
	for (size_t i = 0; ok && i < n; i++)
		ok = islower((unsigned char)alias[i]) || isdigit((unsigned char)alias[i]) || strchr("._-", alias[i]);
	if (!ok)
		return gn_err_set(err, GN_EINVAL, "alias must be 1 to 63 characters of a-z, 0-9, '.', '_', '-'");
	/* An alias spelled like a version would shadow that version in lookups. */
	struct semver sv;
	if (model_version_parse(&sv, alias, NULL) == 0)
		return gn_err_set(err, GN_EINVAL, "alias '%s' looks like a version; aliases are names such as production", alias);
	return 0;
}

/* Parses one numeric identifier: digits, no leading zero. */
static const char *num(const char *p, int64_t *out)
{
	if (!isdigit((unsigned char)*p) || (p[0] == '0' && isdigit((unsigned char)p[1])))
		return NULL;
	int64_t v = 0;
	for (; isdigit((unsigned char)*p); p++) {
		if (v > (INT64_MAX - 9) / 10)
			return NULL;
		v = v * 10 + (*p - '0');
	}
	*out = v;
	return p;
}

/* Checks dot-separated identifiers of [0-9A-Za-z-] up to `end`; with `numeric_rule`, an
 * all-digit identifier must not have a leading zero (SemVer 2.0.0 rule 9, pre-releases). */
static bool idents(const char *p, const char *end, bool numeric_rule)
{
	while (p < end) {
		const char *dot = memchr(p, '.', (size_t)(end - p));
		const char *e = dot ? dot : end;
		bool digits = true;
		if (e == p)
			return false;
		for (const char *q = p; q < e; q++) {
			if (!isalnum((unsigned char)*q) && *q != '-')
				return false;
			digits = digits && isdigit((unsigned char)*q);
		}
		if (numeric_rule && digits && e - p > 1 && *p == '0')
			return false;
		if (!dot)
			return true;
		p = dot + 1;
		if (p == end)
			return false;
	}
	return false;
}

/* Builds a key whose bytewise (COLLATE "C") order is SemVer pre-release precedence: identifiers
 * joined by \x01 (below every identifier byte, so a shorter list sorts first), numeric ones as
 * "0" + 20 zero-padded digits (numerically, and before alphanumerics), the others as "1" + text. */
static void prerelease_key(char *out, size_t outlen, const char *pre)
{
	gn_buf b;
	gn_buf_init(&b);
	const char *p = pre;
	while (*p) {
		size_t n = strcspn(p, ".");
		bool digits = n > 0;
		for (size_t i = 0; i < n; i++)
			digits = digits && isdigit((unsigned char)p[i]);
		if (b.len)
			gn_buf_append(&b, "\x01", 1);
		if (digits && n <= 20)
			gn_buf_printf(&b, "0%020llu", strtoull(p, NULL, 10));
		else
			gn_buf_printf(&b, "1%.*s", (int)n, p);
		p += n;
		if (*p == '.')
			p++;
	}
	snprintf(out, outlen, "%s", b.data ? b.data : "");
	gn_buf_cleanup(&b);
}

int model_version_parse(struct semver *out, const char *v, gn_err *err)
{
	const char *p = v;
	memset(out, 0, sizeof(*out));
	if (!v || strlen(v) > 64)
		goto bad;
	if (!(p = num(p, &out->major)) || *p++ != '.' || !(p = num(p, &out->minor)) || *p++ != '.' ||
	    !(p = num(p, &out->patch)))
		goto bad;
	if (*p == '-') {
		const char *end = strchr(p, '+');
		if (!end)
			end = p + strlen(p);
		if (!idents(p + 1, end, true))
			goto bad;
		snprintf(out->prerelease, sizeof(out->prerelease), "%.*s", (int)(end - p - 1), p + 1);
		prerelease_key(out->prerelease_key, sizeof(out->prerelease_key), out->prerelease);
		p = end;
	}
	if (*p == '+') {
		if (!idents(p + 1, p + strlen(p), false))
			goto bad;
		p += strlen(p);
	}
	if (*p)
		goto bad;
	return 0;
bad:
	return gn_err_set(err, GN_EINVAL, "version '%.70s' is not a semantic version (MAJOR.MINOR.PATCH[-PRE][+BUILD])",
			  v ? v : "");
}

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
	json_array_foreach(arr, i, t)
	{
		gn_err e;
		if (gn_json_check(t, fields, GN_ARRAY_LEN(fields), &e))
			return gn_err_set(err, GN_EINVAL, "%s[%zu]: %s", what, i, e.msg);
		if (index_of(dtypes, GN_ARRAY_LEN(dtypes), gn_json_str(t, "dtype")) < 0)
			return gn_err_set(err, GN_EINVAL, "%s[%zu].dtype must be one of float32, float16, int8, uint8, int32, int64", what, i);
		json_array_foreach(json_object_get(t, "shape"), j, d)
		{
			if (!json_is_integer(d) || json_integer_value(d) < -1 || json_integer_value(d) == 0)
				return gn_err_set(err, GN_EINVAL, "%s[%zu].shape holds positive integers or -1 (dynamic)", what, i);
		}
		for (size_t k = 0; k < i; k++)
			if (strcmp(gn_json_str(json_array_get(arr, k), "name"), gn_json_str(t, "name")) == 0)
				return gn_err_set(err, GN_EINVAL, "%s: tensor name '%.64s' appears twice", what, gn_json_str(t, "name"));
	}
	return 0;
}

/* Number of elements of a tensor spec, or -1 when a dimension is dynamic. */
static int64_t elements(const json_t *spec)
{
	int64_t n = 1;
	size_t i;
	json_t *d;
	json_array_foreach(json_object_get(spec, "shape"), i, d)
	{
		if (json_integer_value(d) < 0)
			return -1;
		n *= json_integer_value(d);
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

/* Sample tensors: {tensor name: [numbers]} matching the specs by name and element count. */
static int check_sample_tensors(const json_t *obj, const json_t *specs, const char *what, gn_err *err)
{
	const char *k;
	json_t *v;
	if (!json_is_object(obj) || json_object_size(obj) == 0)
		return gn_err_set(err, GN_EINVAL, "sample.%s must be an object of tensor name to numbers", what);
	json_object_foreach((json_t *)obj, k, v)
	{
		const json_t *spec = find_tensor(specs, k);
		size_t i;
		json_t *x;
		if (!spec)
			return gn_err_set(err, GN_EINVAL, "sample.%s names '%.64s', which is not among the model's %s", what, k, what);
		if (!json_is_array(v) || json_array_size(v) == 0)
			return gn_err_set(err, GN_EINVAL, "sample.%s.%.64s must be a non-empty array of numbers", what, k);
		json_array_foreach(v, i, x)
			if (!json_is_number(x))
				return gn_err_set(err, GN_EINVAL, "sample.%s.%.64s must hold numbers only", what, k);
		int64_t want = elements(spec);
		if (want > 0 && (int64_t)json_array_size(v) != want)
			return gn_err_set(err, GN_EINVAL, "sample.%s.%.64s has %zu values, its shape needs %lld", what, k,
					  json_array_size(v), (long long)want);
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

static int check_profile(const json_t *p, gn_err *err)
{
	static const gn_json_field fields[] = {{"features", GN_JSON_ARRAY, true, false}};
	static const gn_json_field ffields[] = {
		{"name", GN_JSON_STRING, true, false},
		{"edges", GN_JSON_ARRAY, true, false},
		{"proportions", GN_JSON_ARRAY, true, false},
	};
	gn_err e;
	size_t i, j;
	json_t *f, *x;
	if (gn_json_check(p, fields, 1, &e))
		return gn_err_set(err, GN_EINVAL, "reference_profile: %s", e.msg);
	json_array_foreach(json_object_get(p, "features"), i, f)
	{
		if (gn_json_check(f, ffields, GN_ARRAY_LEN(ffields), &e))
			return gn_err_set(err, GN_EINVAL, "reference_profile.features[%zu]: %s", i, e.msg);
		const json_t *edges = json_object_get(f, "edges"), *props = json_object_get(f, "proportions");
		if (json_array_size(edges) < 2 || json_array_size(props) != json_array_size(edges) - 1)
			return gn_err_set(err, GN_EINVAL,
					  "reference_profile.features[%zu]: k+1 edges need k proportions (k >= 1)", i);
		double prev = -INFINITY, sum = 0;
		json_array_foreach(edges, j, x)
		{
			if (!json_is_number(x) || json_number_value(x) <= prev)
				return gn_err_set(err, GN_EINVAL,
						  "reference_profile.features[%zu].edges must be strictly increasing numbers", i);
			prev = json_number_value(x);
		}
		json_array_foreach(props, j, x)
		{
			double v = json_number_value(x);
			if (!json_is_number(x) || v < 0 || v > 1)
				return gn_err_set(err, GN_EINVAL, "reference_profile.features[%zu].proportions must be in [0, 1]", i);
			sum += v;
		}
		if (fabs(sum - 1.0) > 0.001)
			return gn_err_set(err, GN_EINVAL, "reference_profile.features[%zu].proportions sum to %g, not 1", i, sum);
	}
	return 0;
}

static int check_requirements(const json_t *r, gn_err *err)
{
	static const gn_json_field fields[] = {
		{"runtime", GN_JSON_STRING, false, false},
		{"accelerators", GN_JSON_ARRAY, false, false},
		{"min_memory_mb", GN_JSON_INTEGER, false, false},
	};
	gn_err e;
	size_t i;
	json_t *a;
	if (gn_json_check(r, fields, GN_ARRAY_LEN(fields), &e))
		return gn_err_set(err, GN_EINVAL, "requirements: %s", e.msg);
	json_array_foreach(json_object_get(r, "accelerators"), i, a)
		if (!json_is_string(a) || json_string_length(a) == 0 || json_string_length(a) > 32)
			return gn_err_set(err, GN_EINVAL, "requirements.accelerators holds names like cpu, opencl, cuda");
	if (json_integer_value(json_object_get(r, "min_memory_mb")) < 0)
		return gn_err_set(err, GN_EINVAL, "requirements.min_memory_mb must not be negative");
	return 0;
}

static const gn_json_field meta_fields[] = {
	{"version", GN_JSON_STRING, true, false},
	{"format", GN_JSON_STRING, false, false},
	{"filename", GN_JSON_STRING, false, false},
	{"requirements", GN_JSON_OBJECT, false, false},
	{"inputs", GN_JSON_ARRAY, false, false},
	{"outputs", GN_JSON_ARRAY, false, false},
	{"sample", GN_JSON_OBJECT, false, false},
	{"reference_profile", GN_JSON_OBJECT, false, true},
	{"provenance", GN_JSON_OBJECT, false, false},
	{"sha256", GN_JSON_STRING, false, false},
	{"length", GN_JSON_INTEGER, false, false},
};

int model_meta_check(struct model_meta *out, const json_t *meta, gn_err *err)
{
	int rc;
	memset(out, 0, sizeof(*out));
	out->stated_length = -1;
	if ((rc = gn_json_check(meta, meta_fields, GN_ARRAY_LEN(meta_fields), err)) ||
	    (rc = model_version_parse(&out->semver, gn_json_str(meta, "version"), err)))
		return rc;
	snprintf(out->version, sizeof(out->version), "%s", gn_json_str(meta, "version"));
	const char *fmt = gn_json_str(meta, "format");
	int fi = fmt ? index_of(formats, GN_ARRAY_LEN(formats), fmt) : 3;
	if (fi < 0)
		return gn_err_set(err, GN_EINVAL, "format must be one of onnx, tflite, tensorrt-plan, other");
	out->format = formats[fi];
	const char *fn = gn_json_str(meta, "filename");
	if (fn) {
		size_t n = strlen(fn);
		bool ok = n >= 1 && n <= 128 && fn[0] != '.';
		for (size_t i = 0; ok && i < n; i++)
			ok = isalnum((unsigned char)fn[i]) || strchr("._-", fn[i]);
		if (!ok)
			return gn_err_set(err, GN_EINVAL, "filename must be 1 to 128 characters of A-Z a-z 0-9 . _ - (not starting with '.')");
		snprintf(out->filename, sizeof(out->filename), "%s", fn);
	} else {
		snprintf(out->filename, sizeof(out->filename), "model.%s", format_ext[fi]);
	}
	const json_t *req = json_object_get(meta, "requirements");
	const json_t *in = json_object_get(meta, "inputs"), *outs = json_object_get(meta, "outputs");
	const json_t *sample = json_object_get(meta, "sample"), *prof = json_object_get(meta, "reference_profile");
	if (req && (rc = check_requirements(req, err)))
		return rc;
	if (in && (rc = check_tensors(in, "inputs", err)))
		return rc;
	if (outs && (rc = check_tensors(outs, "outputs", err)))
		return rc;
	if (sample && (!in || !outs))
		return gn_err_set(err, GN_EINVAL, "a sample needs the inputs and outputs tensor specs");
	if (sample && (rc = check_sample(sample, in, outs, err)))
		return rc;
	if (prof && !json_is_null(prof) && (rc = check_profile(prof, err)))
		return rc;
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
