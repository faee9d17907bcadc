/* Release requirements: strict validation and matching against a device's reported facts. */
#include "requirements.h"

#include <stdio.h>
#include <string.h>

#include "json.h"

/* A runtime name or an accelerator kind: lower-case letters, digits, '.', '_' and '-', starting
 * with a letter or a digit (what plugins call themselves: opencv-dnn, onnxruntime). */
static bool name_ok(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || strchr("._-", s[i])))
			return false;
	return true;
}

static int check_names(const json_t *arr, const char *field, size_t max, const char *example, gn_err *err)
{
	size_t i;
	json_t *v;
	if (!arr)
		return 0;
	if (json_array_size(arr) == 0 || json_array_size(arr) > GN_REQ_MAX_NAMES)
		return gn_err_set(err, GN_EINVAL, "requirements.%s lists 1 to %d names (%s), any of which will do",
				  field, GN_REQ_MAX_NAMES, example);
	json_array_foreach(arr, i, v) {
		if (!json_is_string(v) || !name_ok(json_string_value(v), max))
			return gn_err_set(err, GN_EINVAL,
					  "requirements.%s[%zu] must be a name of 1 to %zu lower-case letters, digits, "
					  "'.', '_' or '-' (%s)",
					  field, i, max, example);
		for (size_t k = 0; k < i; k++)
			if (strcmp(json_string_value(json_array_get(arr, k)), json_string_value(v)) == 0)
				return gn_err_set(err, GN_EINVAL, "requirements.%s names '%s' twice", field,
						  json_string_value(v));
	}
	return 0;
}

int gn_requirements_check(const json_t *req, gn_err *err)
{
	static const gn_json_field fields[] = {
		{"runtime", GN_JSON_STRING, false, false},     {"runtimes", GN_JSON_ARRAY, false, false},
		{"accelerators", GN_JSON_ARRAY, false, false}, {"min_memory_mb", GN_JSON_INTEGER, false, false},
		{"opset", GN_JSON_INTEGER, false, false},
	};
	gn_err e;
	int rc;
	if (gn_json_check(req, fields, GN_ARRAY_LEN(fields), &e))
		return gn_err_set(err, GN_EINVAL, "requirements: %s", e.msg);
	const char *note = gn_json_str(req, "runtime");
	if (note && (strlen(note) == 0 || strlen(note) > 64))
		return gn_err_set(err, GN_EINVAL, "requirements.runtime must be 1 to 64 bytes");
	if ((rc = check_names(json_object_get(req, "runtimes"), "runtimes", GN_REQ_NAME_MAX,
			      "e.g. onnxruntime, opencv-dnn", err)) ||
	    (rc = check_names(json_object_get(req, "accelerators"), "accelerators", GN_REQ_ACCEL_MAX,
			      "e.g. cpu, opencl, cuda, tensorrt", err)))
		return rc;
	json_t *mem = json_object_get(req, "min_memory_mb");
	if (mem && (json_integer_value(mem) < 0 || json_integer_value(mem) > GN_REQ_MEMORY_MB_MAX))
		return gn_err_set(err, GN_EINVAL, "requirements.min_memory_mb must be 0 to %d", GN_REQ_MEMORY_MB_MAX);
	json_t *opset = json_object_get(req, "opset");
	if (opset && (json_integer_value(opset) < 1 || json_integer_value(opset) > GN_REQ_OPSET_MAX))
		return gn_err_set(err, GN_EINVAL, "requirements.opset must be an ONNX opset, 1 to %d",
				  GN_REQ_OPSET_MAX);
	return 0;
}

static bool listed(const json_t *arr, const char *s)
{
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v)
		if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
			return true;
	return false;
}

/* Joins the names of a JSON array of strings (or of objects' "name") into buf, comma-separated. */
static const char *join(char *buf, size_t len, const json_t *arr, bool objects)
{
	size_t i, used = 0;
	json_t *v;
	buf[0] = '\0';
	json_array_foreach(arr, i, v) {
		const char *s = objects ? gn_json_str(v, "name") : json_string_value(v);
		int w = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", s ? s : "?");
		if (w < 0 || (size_t)w >= len - used)
			break;
		used += (size_t)w;
	}
	return used ? buf : "none";
}

uint64_t gn_requirements_target_memory(const json_t *req, const json_t *facts)
{
	const json_t *accels = req ? json_object_get(req, "accelerators") : NULL;
	const json_t *targets = json_object_get(json_object_get(facts, "runtime"), "targets");
	uint64_t best = 0;
	size_t i;
	json_t *t;
	json_array_foreach(targets, i, t) {
		const char *name = gn_json_str(t, "name");
		json_int_t m = json_integer_value(json_object_get(t, "mem_total_bytes"));
		if (name && (!accels || listed(accels, name)) && m > 0 && (uint64_t)m > best)
			best = (uint64_t)m;
	}
	return best;
}

/* GN_REQ_REFUSED when the runtime offers none of the accelerator kinds the release lists. */
static enum gn_req_verdict match_accelerators(const json_t *req, const json_t *rt, char *why, size_t whylen)
{
	const json_t *accels = json_object_get(req, "accelerators"), *targets = json_object_get(rt, "targets");
	char have[256], want[256];
	size_t i;
	json_t *t;
	if (!accels)
		return GN_REQ_OK;
	json_array_foreach(targets, i, t)
		if (gn_json_str(t, "name") && listed(accels, gn_json_str(t, "name")))
			return GN_REQ_OK;
	snprintf(why, whylen, "its runtime %s offers %s; the release needs one of %s", gn_json_str(rt, "name"),
		 join(have, sizeof(have), targets, true), join(want, sizeof(want), accels, false));
	return GN_REQ_REFUSED;
}

enum gn_req_verdict gn_requirements_match(const json_t *req, const json_t *facts, char *why, size_t whylen)
{
	char dummy[8], want[256];
	const json_t *rt = json_object_get(facts, "runtime");
	const char *rtname = gn_json_str(rt, "name");
	if (!why || whylen == 0)
		why = dummy, whylen = sizeof(dummy);
	why[0] = '\0';
	const json_t *runtimes = json_object_get(req, "runtimes"), *mem = json_object_get(req, "min_memory_mb");
	json_int_t opset = json_integer_value(json_object_get(req, "opset"));
	if (!runtimes && !json_object_get(req, "accelerators") && json_integer_value(mem) <= 0 && opset <= 0)
		return GN_REQ_OK; /* nothing to check */
	if (!json_is_object(facts) || !rtname) {
		snprintf(why, whylen, "it has not reported its runtime yet");
		return GN_REQ_UNKNOWN;
	}
	if (runtimes && !listed(runtimes, rtname)) {
		snprintf(why, whylen, "it runs %s; the release needs %s", rtname,
			 join(want, sizeof(want), runtimes, false));
		return GN_REQ_REFUSED;
	}
	if (match_accelerators(req, rt, why, whylen) != GN_REQ_OK)
		return GN_REQ_REFUSED;
	json_int_t max_opset = json_integer_value(json_object_get(rt, "onnx_opset"));
	if (opset > 0 && max_opset > 0 && opset > max_opset) {
		snprintf(why, whylen, "its runtime %s runs ONNX opsets up to %lld; the release needs opset %lld",
			 rtname, (long long)max_opset, (long long)opset);
		return GN_REQ_REFUSED;
	}
	uint64_t need = (uint64_t)json_integer_value(mem) * 1048576u, have = gn_requirements_target_memory(req, facts);
	if (need > 0 && have > 0 && have < need) {
		snprintf(why, whylen, "it has %llu MB on its target; the release needs %llu MB",
			 (unsigned long long)(have / 1048576u), (unsigned long long)(need / 1048576u));
		return GN_REQ_REFUSED;
	}
	return GN_REQ_OK;
}

int gn_requirements_opset_reconcile(json_t *meta, const char *file, int parse_rc, int64_t opset, const char *parse_msg,
				    gn_err *err)
{
	json_t *req = json_object_get(meta, "requirements"), *stated = json_object_get(req, "opset");
	long long want = (long long)json_integer_value(stated);
	if (!stated) {
		if (parse_rc)
			return 0;
		if (!json_is_object(req)) {
			req = json_object();
			json_object_set_new(meta, "requirements", req);
		}
		json_object_set_new(req, "opset", json_integer((json_int_t)opset));
		return 0;
	}
	if (parse_rc == GN_ENOTFOUND)
		return gn_err_set(err, GN_EMISMATCH,
				  "requirements.opset is %lld but %s declares no ONNX opset for the default domain "
				  "(its opset_import); leave requirements.opset out",
				  want, file);
	if (parse_rc)
		return gn_err_set(err, GN_EMISMATCH,
				  "requirements.opset is %lld but %s cannot be read as an ONNX model: %s", want, file,
				  parse_msg);
	if (want != (long long)opset)
		return gn_err_set(err, GN_EMISMATCH,
				  "requirements.opset is %lld but %s declares ONNX opset %lld for the default domain "
				  "(its opset_import); state %lld or leave requirements.opset out to have it filled in",
				  want, file, (long long)opset, (long long)opset);
	return 0;
}
