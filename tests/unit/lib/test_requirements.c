/* Unit tests for lib/requirements.c: strict validation of a release's requirements, and the
 * verdict on a device's reported facts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "json.h"
#include "requirements.h"

static json_t *parse(const char *s)
{
	json_error_t je;
	json_t *j = json_loads(s, 0, &je);
	if (!j)
		fail_msg("bad test JSON %s: %s", s, je.text);
	return j;
}

static void test_valid(void **state)
{
	static const char *const ok[] = {
		"{}",
		"{\"runtime\": \"onnx\", \"accelerators\": [\"cpu\"], \"min_memory_mb\": 64}",
		"{\"runtimes\": [\"onnxruntime\"]}",
		"{\"runtimes\": [\"opencv-dnn\", \"onnxruntime\"], \"accelerators\": [\"cuda\", \"tensorrt\"]}",
		"{\"min_memory_mb\": 0}",
		"{\"opset\": 1}",
		"{\"opset\": 17, \"runtimes\": [\"onnxruntime\"]}",
	};
	(void)state;
	for (size_t i = 0; i < GN_ARRAY_LEN(ok); i++) {
		gn_err err = {0};
		json_t *j = parse(ok[i]);
		if (gn_requirements_check(j, &err))
			fail_msg("%s refused: %s", ok[i], err.msg);
		json_decref(j);
	}
}

static void test_invalid(void **state)
{
	static const struct {
		const char *req, *msg;
	} bad[] = {
		{"[]", "requirements: "},
		{"{\"gpu\": true}", "unknown field 'gpu'"},
		{"{\"runtimes\": \"onnxruntime\"}", "field 'runtimes' must be an array"},
		{"{\"runtimes\": []}", "requirements.runtimes lists 1 to 8 names"},
		{"{\"runtimes\": [\"ONNX\"]}", "requirements.runtimes[0] must be a name"},
		{"{\"runtimes\": [\"onnxruntime\", 3]}", "requirements.runtimes[1] must be a name"},
		{"{\"runtimes\": [\"a\", \"a\"]}", "requirements.runtimes names 'a' twice"},
		{"{\"runtimes\": [\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\"]}", "1 to 8 names"},
		{"{\"accelerators\": [\"\"]}", "requirements.accelerators[0]"},
		{"{\"accelerators\": [\"a-sixteen-bytes!\"]}", "requirements.accelerators[0]"},
		{"{\"accelerators\": [\"sixteen-letters0\"]}", "requirements.accelerators[0]"},
		{"{\"min_memory_mb\": -1}", "requirements.min_memory_mb must be 0 to"},
		{"{\"opset\": 0}", "requirements.opset must be an ONNX opset, 1 to 1000"},
		{"{\"opset\": 1001}", "requirements.opset must be an ONNX opset, 1 to 1000"},
		{"{\"opset\": \"17\"}", "field 'opset' must be an integer"},
		{"{\"min_memory_mb\": 1.5}", "field 'min_memory_mb' must be an integer"},
		{"{\"min_memory_mb\": 99999999999}", "requirements.min_memory_mb must be 0 to"},
		{"{\"runtime\": \"\"}", "requirements.runtime must be 1 to 64 bytes"},
	};
	(void)state;
	for (size_t i = 0; i < GN_ARRAY_LEN(bad); i++) {
		gn_err err = {0};
		json_t *j = parse(bad[i].req);
		int rc = gn_requirements_check(j, &err);
		if (rc != GN_EINVAL || !strstr(err.msg, bad[i].msg))
			fail_msg("%s: rc %d, message '%s', expected '%s'", bad[i].req, rc, err.msg, bad[i].msg);
		json_decref(j);
	}
}

#define ORT_FACTS                                                                                           \
	"{\"arch\": \"x86_64\", \"runtime\": {\"name\": \"onnxruntime\", \"targets\": [{\"name\": \"cpu\"," \
	" \"mem_total_bytes\": 4294967296}, {\"name\": \"cuda\", \"mem_total_bytes\": 1073741824}]}}"
#define CV_FACTS "{\"runtime\": {\"name\": \"opencv-dnn\", \"targets\": [{\"name\": \"cpu\"}]}}"
#define CV_OPSET_FACTS \
	"{\"runtime\": {\"name\": \"opencv-dnn\", \"onnx_opset\": 13, \"targets\": [{\"name\": \"cpu\"}]}}"

static void test_match(void **state)
{
	static const struct {
		const char *req, *facts;
		enum gn_req_verdict want;
		const char *why;
	} cases[] = {
		{"{}", NULL, GN_REQ_OK, ""},
		{"{\"runtime\": \"onnx\"}", NULL, GN_REQ_OK, ""}, /* a note: nothing to check */
		{"{\"runtimes\": [\"onnxruntime\"]}", NULL, GN_REQ_UNKNOWN, "has not reported its runtime"},
		{"{\"runtimes\": [\"onnxruntime\"]}", "{\"runtime\": {\"plugin\": \"/x.so\"}}", GN_REQ_UNKNOWN,
		 "has not reported"},
		{"{\"runtimes\": [\"onnxruntime\"]}", ORT_FACTS, GN_REQ_OK, ""},
		{"{\"runtimes\": [\"onnxruntime\"]}", CV_FACTS, GN_REQ_REFUSED,
		 "it runs opencv-dnn; the release needs onnxruntime"},
		{"{\"runtimes\": [\"opencv-dnn\", \"onnxruntime\"]}", CV_FACTS, GN_REQ_OK, ""},
		{"{\"accelerators\": [\"cuda\"]}", ORT_FACTS, GN_REQ_OK, ""},
		{"{\"accelerators\": [\"cuda\", \"tensorrt\"]}", CV_FACTS, GN_REQ_REFUSED,
		 "its runtime opencv-dnn offers cpu; the release needs one of cuda, tensorrt"},
		/* memory on the accelerators the release may use, not on the others */
		{"{\"accelerators\": [\"cuda\"], \"min_memory_mb\": 2048}", ORT_FACTS, GN_REQ_REFUSED,
		 "it has 1024 MB on its target; the release needs 2048 MB"},
		{"{\"min_memory_mb\": 2048}", ORT_FACTS, GN_REQ_OK, ""},
		{"{\"min_memory_mb\": 8192}", ORT_FACTS, GN_REQ_REFUSED, "has 4096 MB"},
		/* memory not reported: not refused (the agent checks free memory before it loads) */
		{"{\"min_memory_mb\": 8192}", CV_FACTS, GN_REQ_OK, ""},
		/* opset: refused above the runtime's, not when the runtime does not say */
		{"{\"opset\": 13}", CV_OPSET_FACTS, GN_REQ_OK, ""},
		{"{\"opset\": 14}", CV_OPSET_FACTS, GN_REQ_REFUSED,
		 "its runtime opencv-dnn runs ONNX opsets up to 13; the release needs opset 14"},
		{"{\"opset\": 17, \"runtimes\": [\"opencv-dnn\"]}", CV_OPSET_FACTS, GN_REQ_REFUSED, "up to 13"},
		{"{\"opset\": 99}", CV_FACTS, GN_REQ_OK, ""},
		{"{\"opset\": 17}", NULL, GN_REQ_UNKNOWN, "has not reported its runtime"},
	};
	(void)state;
	for (size_t i = 0; i < GN_ARRAY_LEN(cases); i++) {
		char why[256] = "x";
		json_t *req = parse(cases[i].req), *facts = cases[i].facts ? parse(cases[i].facts) : NULL;
		enum gn_req_verdict v = gn_requirements_match(req, facts, why, sizeof(why));
		if (v != cases[i].want || (*cases[i].why ? !strstr(why, cases[i].why) : *why != '\0'))
			fail_msg("case %zu (%s): verdict %d '%s', expected %d '%s'", i, cases[i].req, v, why,
				 cases[i].want, cases[i].why);
		json_decref(req);
		json_decref(facts);
	}
}

static void test_target_memory(void **state)
{
	json_t *facts = parse(ORT_FACTS), *cuda = parse("{\"accelerators\": [\"cuda\"]}");
	(void)state;
	assert_int_equal(gn_requirements_target_memory(NULL, facts), 4294967296ull);
	assert_int_equal(gn_requirements_target_memory(cuda, facts), 1073741824ull);
	json_decref(facts);
	json_decref(cuda);
}

/* The opset rule gangliond and the CLI share: left out, filled in from the file (a requirements
 * object made when there is none) or left out when the file gives none; stated, it must be the
 * file's, and each refusal names the file and both sides. */
static void test_opset_reconcile(void **state)
{
	(void)state;
	gn_err err;
	json_t *m = json_object();
	assert_int_equal(gn_requirements_opset_reconcile(m, "f", 0, 17, "", &err), 0);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(m, "requirements"), "opset")), 17);
	assert_int_equal(gn_requirements_opset_reconcile(m, "f", 0, 17, "", &err), 0); /* stated right */
	assert_int_equal(gn_requirements_opset_reconcile(m, "f", 0, 13, "", &err), GN_EMISMATCH);
	assert_string_equal(err.msg,
			    "requirements.opset is 17 but f declares ONNX opset 13 for the default domain "
			    "(its opset_import); state 13 or leave requirements.opset out to have it filled in");
	assert_int_equal(gn_requirements_opset_reconcile(m, "f", GN_ENOTFOUND, 0, "", &err), GN_EMISMATCH);
	assert_non_null(strstr(err.msg, "requirements.opset is 17 but f declares no ONNX opset"));
	assert_int_equal(gn_requirements_opset_reconcile(m, "f", GN_EINVAL, 0, "cut short", &err), GN_EMISMATCH);
	assert_string_equal(err.msg, "requirements.opset is 17 but f cannot be read as an ONNX model: cut short");
	json_decref(m);
	m = json_pack("{s:{s:[s]}}", "requirements", "runtimes", "onnxruntime");
	assert_int_equal(gn_requirements_opset_reconcile(m, "f", GN_ENOTFOUND, 0, "", &err), 0);
	assert_int_equal(gn_requirements_opset_reconcile(m, "f", GN_EINVAL, 0, "x", &err), 0);
	assert_null(json_object_get(json_object_get(m, "requirements"), "opset"));
	json_decref(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),           cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_match),           cmocka_unit_test(test_target_memory),
		cmocka_unit_test(test_opset_reconcile),
	};
	return cmocka_run_group_tests_name("requirements", tests, NULL, NULL);
}
