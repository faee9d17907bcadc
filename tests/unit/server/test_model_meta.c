/* Unit tests for server/model_meta.c: the metadata CI publishes with a model version. Each case
 * changes a valid metadata object (the one the integration tests publish) and names the error
 * code and a piece of the message it expects. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "model_meta.h"

static const char base_json[] =
	"{\"version\": \"1.0.0\", \"format\": \"onnx\","
	" \"requirements\": {\"runtime\": \"onnx\", \"accelerators\": [\"cpu\"], \"min_memory_mb\": 64},"
	" \"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [1, 4]}],"
	" \"outputs\": [{\"name\": \"y\", \"dtype\": \"float32\", \"shape\": [1, 2]}],"
	" \"sample\": {\"inputs\": {\"x\": [0.1, 0.2, 0.3, 0.4]}, \"outputs\": {\"y\": [0.5, 0.6]},"
	"             \"tolerance\": 0.0001},"
	" \"reference_profile\": {\"features\": [{\"name\": \"x0\", \"edges\": [0, 0.5, 1],"
	"                                        \"proportions\": [0.4, 0.6]}]},"
	" \"provenance\": {\"commit\": \"abc123\", \"metrics\": {\"accuracy\": 0.93}}}";

struct meta_case {
	const char *what;
	const char *set;  /* JSON object whose members replace the base's; NULL for none */
	const char *drop; /* a member of the base to remove; NULL for none */
	int code;         /* 0 when the result must be accepted */
	const char *msg;  /* a piece of the message (refused), or of the file name (accepted) */
};

/* Returns the base metadata with c's changes (new). */
static json_t *meta_for(const struct meta_case *c)
{
	json_error_t jerr;
	json_t *meta = json_loads(base_json, 0, &jerr), *set = NULL;
	if (!meta)
		fail_msg("base metadata: %s", jerr.text);
	if (c->set && !(set = json_loads(c->set, JSON_DECODE_ANY, &jerr)))
		fail_msg("%s: %s", c->what, jerr.text);
	if (set && !json_is_object(set)) { /* not an object: it replaces the whole metadata */
		json_decref(meta);
		return set;
	}
	if (set)
		json_object_update(meta, set);
	if (c->drop)
		json_object_del(meta, c->drop);
	json_decref(set);
	return meta;
}

static void run(const struct meta_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct meta_case *c = &cases[i];
		json_t *meta = meta_for(c);
		struct model_meta m;
		gn_err err = {.code = 1, .msg = "untouched"};
		int rc = model_meta_check(&m, meta, &err);
		if (rc != c->code)
			fail_msg("%s: got %d (%s), expected %d", c->what, rc, err.msg, c->code);
		if (c->code && !strstr(err.msg, c->msg))
			fail_msg("%s: message '%s' lacks '%s'", c->what, err.msg, c->msg);
		if (!c->code && !strstr(m.filename, c->msg))
			fail_msg("%s: file name '%s' lacks '%s'", c->what, m.filename, c->msg);
		if (!c->code)
			assert_string_equal(err.msg, "untouched");
		json_decref(meta);
	}
}

static void test_valid(void **state)
{
	static const struct meta_case cases[] = {
		{"the base", NULL, NULL, 0, "model.onnx"},
		{"only a version", "{\"version\": \"2.0.0-rc.1+b7\"}", NULL, 0, "model.onnx"},
		{"no format: other", NULL, "format", 0, "model.bin"},
		{"tflite", "{\"format\": \"tflite\"}", NULL, 0, "model.tflite"},
		{"tensorrt-plan", "{\"format\": \"tensorrt-plan\"}", NULL, 0, "model.plan"},
		{"a file name", "{\"filename\": \"det_v2.onnx\"}", NULL, 0, "det_v2.onnx"},
		{"no sample, and no self-test said so", "{\"no_self_test\": true}", "sample", 0, "model"},
		{"a sample, and no_self_test false", "{\"no_self_test\": false}", NULL, 0, "model"},
		{"no tolerance", "{\"sample\": {\"inputs\": {\"x\": [1, 2, 3, 4]}, \"outputs\": {\"y\": [1, 2]}}}",
		 NULL, 0, "model"},
		{"a dynamic dimension takes any sample length",
		 "{\"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [-1, 4]}],"
		 " \"sample\": {\"inputs\": {\"x\": [1, 2]}, \"outputs\": {\"y\": [1, 2]}}}",
		 NULL, 0, "model"},
		{"several tensors",
		 "{\"outputs\": [{\"name\": \"y\", \"dtype\": \"int64\", \"shape\": [1, 2]},"
		 " {\"name\": \"z\", \"dtype\": \"uint8\", \"shape\": []}]}",
		 NULL, 0, "model"},
		{"a null reference profile", "{\"reference_profile\": null}", NULL, 0, "model"},
		{"proportions off by less than 0.001",
		 "{\"reference_profile\": {\"features\": [{\"name\": \"f\", \"edges\": [-1.5, 0, 2.5],"
		 " \"proportions\": [0.3333, 0.6662]}]}}",
		 NULL, 0, "model"},
		{"empty requirements", "{\"requirements\": {}}", NULL, 0, "model"},
		{"a stated digest and length",
		 "{\"sha256\": \"ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789\", \"length\": "
		 "0}",
		 NULL, 0, "model"},
	};
	run(cases, GN_ARRAY_LEN(cases));
}

static void test_filled(void **state)
{
	static const struct meta_case c = {
		"filled",
		"{\"version\": \"3.1.4-beta.2\", \"sha256\": "
		"\"ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789\", \"length\": 9}",
		"format", 0, NULL};
	json_t *meta = meta_for(&c);
	struct model_meta m;
	gn_err err;
	assert_int_equal(model_meta_check(&m, meta, &err), 0);
	assert_string_equal(m.version, "3.1.4-beta.2");
	assert_int_equal(m.semver.major, 3);
	assert_int_equal(m.semver.patch, 4);
	assert_string_equal(m.semver.prerelease, "beta.2");
	assert_string_equal(m.format, "other");
	assert_string_equal(m.filename, "model.bin");
	assert_string_equal(m.stated_sha256, "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
	assert_int_equal(m.stated_length, 9);
	json_decref(meta);

	meta = meta_for(&(struct meta_case){"nothing stated", NULL, NULL, 0, NULL});
	assert_int_equal(model_meta_check(&m, meta, &err), 0);
	assert_string_equal(m.stated_sha256, "");
	assert_int_equal(m.stated_length, -1);
	json_decref(meta);
}

static void test_fields_and_types(void **state)
{
	static const struct meta_case cases[] = {
		{"not an object", "[]", NULL, GN_EINVAL, "a JSON object is expected"},
		{"unknown field", "{\"colour\": \"blue\"}", NULL, GN_EINVAL, "unknown field 'colour'"},
		{"missing version", NULL, "version", GN_EINVAL, "field 'version' is required"},
		{"version not a string", "{\"version\": 1}", NULL, GN_EINVAL, "field 'version' must be a string"},
		{"version not SemVer", "{\"version\": \"1.0\"}", NULL, GN_EINVAL, "is not a semantic version"},
		{"pre-release with a leading zero", "{\"version\": \"1.0.0-01\"}", NULL, GN_EINVAL, "semantic version"},
		{"unknown format", "{\"format\": \"pickle\"}", NULL, GN_EINVAL, "format must be one of"},
		{"format not a string", "{\"format\": 3}", NULL, GN_EINVAL, "field 'format' must be a string"},
		{"file name with a path", "{\"filename\": \"../evil\"}", NULL, GN_EINVAL, "filename"},
		{"hidden file name", "{\"filename\": \".x\"}", NULL, GN_EINVAL, "not starting with '.'"},
		{"requirements not an object", "{\"requirements\": []}", NULL, GN_EINVAL, "field 'requirements'"},
		{"unknown requirement", "{\"requirements\": {\"gpu\": true}}", NULL, GN_EINVAL,
		 "requirements: unknown field 'gpu'"},
		{"runtime not a string", "{\"requirements\": {\"runtime\": 5}}", NULL, GN_EINVAL,
		 "requirements: field 'runtime' must be a string"},
		{"empty accelerator", "{\"requirements\": {\"accelerators\": [\"\"]}}", NULL, GN_EINVAL,
		 "requirements.accelerators"},
		{"accelerator not a string", "{\"requirements\": {\"accelerators\": [1]}}", NULL, GN_EINVAL,
		 "requirements.accelerators"},
		{"negative memory", "{\"requirements\": {\"min_memory_mb\": -1}}", NULL, GN_EINVAL,
		 "requirements.min_memory_mb must be 0 to"},
		{"provenance not an object", "{\"provenance\": \"ci\"}", NULL, GN_EINVAL, "field 'provenance'"},
		{"sha256 not hex", "{\"sha256\": \"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\"}",
		 NULL, GN_EINVAL, "sha256 must be 64 hex digits"},
		{"sha256 too short", "{\"sha256\": \"abcd\"}", NULL, GN_EINVAL, "sha256 must be 64 hex digits"},
		{"negative length", "{\"length\": -1}", NULL, GN_EINVAL, "length must not be negative"},
		{"no sample", NULL, "sample", GN_EINVAL, "\"no_self_test\": true"},
		{"no sample, no_self_test false", "{\"no_self_test\": false}", "sample", GN_EINVAL, "no sample"},
		{"a sample and no_self_test", "{\"no_self_test\": true}", NULL, GN_EINVAL, "drop one of them"},
		{"no_self_test not a boolean", "{\"no_self_test\": 1}", "sample", GN_EINVAL, "field 'no_self_test'"},
		{"length not an integer", "{\"length\": \"9\"}", NULL, GN_EINVAL, "field 'length' must be"},
	};
	run(cases, GN_ARRAY_LEN(cases));
}

static void test_tensor_specs(void **state)
{
	static const struct meta_case cases[] = {
		{"inputs not an array", "{\"inputs\": {}}", NULL, GN_EINVAL, "field 'inputs' must be"},
		{"a spec not an object", "{\"inputs\": [1]}", "sample", GN_EINVAL,
		 "inputs[0]: a JSON object is expected"},
		{"unknown dtype", "{\"inputs\": [{\"name\": \"x\", \"dtype\": \"float64\", \"shape\": [1, 4]}]}", NULL,
		 GN_EINVAL, "inputs[0].dtype must be one of"},
		{"zero dimension", "{\"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [0, 4]}]}",
		 "sample", GN_EINVAL, "inputs[0].shape holds positive integers or -1"},
		{"dimension below -1", "{\"outputs\": [{\"name\": \"y\", \"dtype\": \"int8\", \"shape\": [-2]}]}",
		 "sample", GN_EINVAL, "outputs[0].shape holds positive integers"},
		{"dimension not a number", "{\"inputs\": [{\"name\": \"x\", \"dtype\": \"int8\", \"shape\": [\"4\"]}]}",
		 "sample", GN_EINVAL, "inputs[0].shape holds positive integers"},
		{"fractional dimension", "{\"inputs\": [{\"name\": \"x\", \"dtype\": \"int8\", \"shape\": [1.5]}]}",
		 "sample", GN_EINVAL, "inputs[0].shape holds positive integers"},
		{"no shape", "{\"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\"}]}", "sample", GN_EINVAL,
		 "inputs[0]: field 'shape' is required"},
		{"unknown spec field",
		 "{\"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [1, 4], \"layout\": "
		 "\"nchw\"}]}",
		 NULL, GN_EINVAL, "inputs[0]: unknown field 'layout'"},
		{"a name twice",
		 "{\"outputs\": [{\"name\": \"y\", \"dtype\": \"float32\", \"shape\": [1, 2]},"
		 " {\"name\": \"y\", \"dtype\": \"float32\", \"shape\": [1]}]}",
		 NULL, GN_EINVAL, "outputs: tensor name 'y' appears twice"},
	};
	run(cases, GN_ARRAY_LEN(cases));
}

static void test_sample(void **state)
{
	static const struct meta_case cases[] = {
		{"sample without input specs", NULL, "inputs", GN_EINVAL,
		 "a sample needs the inputs and outputs tensor specs"},
		{"sample without output specs", NULL, "outputs", GN_EINVAL, "a sample needs the inputs and outputs"},
		{"input length vs shape",
		 "{\"sample\": {\"inputs\": {\"x\": [1, 2, 3]}, \"outputs\": {\"y\": [1, 2]}}}", NULL, GN_EINVAL,
		 "sample.inputs.x has 3 values, its shape needs 4"},
		{"output length vs shape",
		 "{\"sample\": {\"inputs\": {\"x\": [1, 2, 3, 4]}, \"outputs\": {\"y\": [1]}}}", NULL, GN_EINVAL,
		 "sample.outputs.y has 1 values, its shape needs 2"},
		{"unknown tensor", "{\"sample\": {\"inputs\": {\"z\": [1, 2, 3, 4]}, \"outputs\": {\"y\": [1, 2]}}}",
		 NULL, GN_EINVAL, "sample.inputs names 'z', which is not among the model's inputs"},
		{"no tensors", "{\"sample\": {\"inputs\": {}, \"outputs\": {\"y\": [1, 2]}}}", NULL, GN_EINVAL,
		 "sample.inputs must be an object of tensor name to numbers"},
		{"no values", "{\"sample\": {\"inputs\": {\"x\": []}, \"outputs\": {\"y\": [1, 2]}}}", NULL, GN_EINVAL,
		 "sample.inputs.x must be a non-empty array of numbers"},
		{"values not numbers",
		 "{\"sample\": {\"inputs\": {\"x\": [1, 2, \"3\", 4]}, \"outputs\": {\"y\": [1, 2]}}}", NULL, GN_EINVAL,
		 "sample.inputs.x must hold numbers only"},
		{"no outputs", "{\"sample\": {\"inputs\": {\"x\": [1, 2, 3, 4]}}}", NULL, GN_EINVAL,
		 "sample: field 'outputs' is required"},
		{"unknown sample field",
		 "{\"sample\": {\"inputs\": {\"x\": [1, 2, 3, 4]}, \"outputs\": {\"y\": [1, 2]}, \"seed\": 1}}", NULL,
		 GN_EINVAL, "sample: unknown field 'seed'"},
		{"negative tolerance",
		 "{\"sample\": {\"inputs\": {\"x\": [1, 2, 3, 4]}, \"outputs\": {\"y\": [1, 2]}, \"tolerance\": "
		 "-1}}",
		 NULL, GN_EINVAL, "sample.tolerance must not be negative"},
		/* 2^96 elements: counted without overflow, and no sample has that many. */
		{"a shape past int64",
		 "{\"inputs\": [{\"name\": \"x\", \"dtype\": \"uint8\", \"shape\": [4294967296, 4294967296, "
		 "4294967296]}]}",
		 NULL, GN_EINVAL, "sample.inputs.x has 4 values, its shape needs 9223372036854775807"},
	};
	run(cases, GN_ARRAY_LEN(cases));
}

static void test_reference_profile(void **state)
{
#define PROFILE(edges, props) \
	"{\"reference_profile\": {\"features\": [{\"name\": \"f\", \"edges\": " edges ", \"proportions\": " props "}]}}"
	static const struct meta_case cases[] = {
		{"proportions do not sum to 1", PROFILE("[0, 1, 2]", "[0.5, 0.6]"), NULL, GN_EINVAL,
		 "reference_profile.features[0].proportions sum to 1.1, not 1"},
		{"edges not increasing", PROFILE("[0, 2, 1]", "[0.5, 0.5]"), NULL, GN_EINVAL,
		 "reference_profile.features[0].edges must be strictly increasing numbers"},
		{"edges equal", PROFILE("[0, 1, 1]", "[0.5, 0.5]"), NULL, GN_EINVAL, "strictly increasing"},
		{"edges not numbers", PROFILE("[\"a\", 1, 2]", "[0.5, 0.5]"), NULL, GN_EINVAL, "strictly increasing"},
		{"k+1 edges, not k proportions", PROFILE("[0, 1, 2]", "[1.0]"), NULL, GN_EINVAL,
		 "k+1 edges need k proportions"},
		{"one edge", PROFILE("[0]", "[]"), NULL, GN_EINVAL, "k+1 edges need k proportions"},
		{"proportion out of range", PROFILE("[0, 1, 2]", "[1.5, -0.5]"), NULL, GN_EINVAL,
		 "proportions must be in [0, 1]"},
		{"proportion not a number", PROFILE("[0, 1, 2]", "[\"1\", 0]"), NULL, GN_EINVAL,
		 "proportions must be in [0, 1]"},
		{"no features", "{\"reference_profile\": {}}", NULL, GN_EINVAL,
		 "reference_profile: field 'features' is required"},
		{"feature without proportions",
		 "{\"reference_profile\": {\"features\": [{\"name\": \"f\", \"edges\": [0, 1]}]}}", NULL, GN_EINVAL,
		 "reference_profile.features[0]: field 'proportions' is required"},
		{"profile not an object", "{\"reference_profile\": [1]}", NULL, GN_EINVAL, "field 'reference_profile'"},
		/* where features read their values, against the tensor specs (x is [1, 4], y is [1, 2]) */
		{"element past the tensor",
		 "{\"reference_profile\": {\"features\": [{\"name\": \"f\", \"edges\": [0, 1], \"proportions\": [1],"
		 " \"index\": 4}]}}",
		 NULL, GN_EINVAL, "reads element 4 of 'x', which has 4 elements"},
		{"unknown tensor",
		 "{\"reference_profile\": {\"features\": [{\"name\": \"f\", \"edges\": [0, 1], \"proportions\": [1],"
		 " \"tensor\": \"z\"}]}}",
		 NULL, GN_EINVAL, "reads inputs 'z', which is not among the inputs"},
		{"fifth feature of four elements",
		 "{\"reference_profile\": {\"features\": [{\"name\": \"a\", \"edges\": [0, 1], \"proportions\": [1]},"
		 " {\"name\": \"b\", \"edges\": [0, 1], \"proportions\": [1]}, {\"name\": \"c\", \"edges\": [0, 1],"
		 " \"proportions\": [1]}, {\"name\": \"d\", \"edges\": [0, 1], \"proportions\": [1]},"
		 " {\"name\": \"e\", \"edges\": [0, 1], \"proportions\": [1]}]}}",
		 NULL, GN_EINVAL, "features[4] reads element 4"},
		{"output class and confidence",
		 "{\"reference_profile\": {\"features\": [], \"outputs\": [{\"name\": \"class\", \"kind\": \"categorical\","
		 " \"vocabulary\": [\"0\", \"1\"], \"proportions\": [0.5, 0.5, 0], \"reduce\": \"argmax\"},"
		 " {\"name\": \"p1\", \"tensor\": \"y\", \"index\": 1, \"edges\": [0, 1], \"proportions\": [1]}]}}",
		 NULL, 0, "model"},
		{"output element past the tensor",
		 "{\"reference_profile\": {\"features\": [], \"outputs\": [{\"name\": \"p2\", \"index\": 2,"
		 " \"edges\": [0, 1], \"proportions\": [1]}]}}",
		 NULL, GN_EINVAL, "outputs[0] reads element 2 of 'y'"},
		{"image of an unknown tensor",
		 "{\"reference_profile\": {\"features\": [], \"image\": {\"tensor\": \"img\", \"layout\": \"nchw\","
		 " \"channels\": [{\"mean\": 0, \"variance\": 1}], \"intensity\": {\"edges\": [0, 1], \"proportions\": [1]}}}}",
		 NULL, GN_EINVAL, "image reads 'img'"},
	};
#undef PROFILE
	run(cases, GN_ARRAY_LEN(cases));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_filled),
		cmocka_unit_test(test_fields_and_types),
		cmocka_unit_test(test_tensor_specs),
		cmocka_unit_test(test_sample),
		cmocka_unit_test(test_reference_profile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
