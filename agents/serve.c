/* The local inference endpoint: HTTP on a Unix socket for apps on the node. Every model the device
 * runs serves at once, addressed by name.
 *   POST /v1/models/{name}/infer   JSON {"inputs":{"x":[...]}} -> {"outputs":{"y":[...]}, "version", ...},
 *                                  optionally with "shapes":{"x":[2,3,8,8]} (needed for an input with
 *                                  more than one dynamic dimension);
 *                                  or application/octet-stream: raw little-endian float32 in and out
 *   GET  /v1/models                what runs: per model, name, version, digest, target, counters
 *   POST /v1/models/{name}/rollback swap that model's previous version back in (kept on disk,
 *                                  re-verified)
 *   POST /v1/rollback              the same for the one model the device runs (400 with several)
 *   GET  /healthz                  alive, and whether a model is serving
 *   GET  /metrics                  Prometheus text (0.0.4): per serving model version its counters,
 *                                  latency histogram and the drift of the open telemetry window
 * Each request holds a reference on the model it started with, so a swap never fails it. */
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent.h"
#include "json.h"
#include "log.h"
#include "telemetry.h"

/* Outputs are first sized from their declared shapes; past this many values a guess is not worth
 * allocating, and the runtime's GANGLION_RT_ESPACE answer says what is needed. */
#define OUTPUT_GUESS_MAX ((size_t)16 << 20)

/* One request: its body, and what the route table matched. */
struct sreq {
	struct agent *a;
	struct MHD_Connection *conn;
	gn_buf body;
	bool too_big;
	char *param;       /* the route's "{name}" segment (owned), or NULL */
	const char *allow; /* the methods the path takes, for a 405 (static) */
};

typedef enum MHD_Result (*serve_handler)(struct sreq *r);

/* Queues body (taken over) as the answer; m, when set, names the version that answered. */
static enum MHD_Result reply(struct sreq *r, unsigned status, const char *type, char *body, size_t len,
			     const struct agent_model *m)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (m) {
		MHD_add_response_header(resp, "X-Model-Version", m->version);
		MHD_add_response_header(resp, "X-Model-Target", m->target);
	}
	if (status == 405 && r->allow)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
	enum MHD_Result ret = MHD_queue_response(r->conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result problem(struct sreq *r, unsigned status, const char *title, const char *detail)
{
	char *p = gn_problem_dup((int)status, title, detail);
	return reply(r, status, "application/problem+json", p, strlen(p), NULL);
}

/* The answer for an error from the model: the caller's (400) or the runtime's (500). */
static enum MHD_Result infer_problem(struct sreq *r, const gn_err *err)
{
	bool theirs = err->code == GN_EINVAL;
	return problem(r, theirs ? 400 : 500, theirs ? "Bad Request" : "Inference Failed", err->msg);
}

/* Counts the values of a shape, a dynamic dimension counting as one. */
static size_t elements(const int64_t *shape, int ndim)
{
	size_t n = 1;
	for (int d = 0; d < ndim; d++)
		n *= shape[d] > 0 ? (size_t)shape[d] : 1;
	return n;
}

/* How many times the request's inputs exceed the model's declared shapes, i.e. their solved
 * dynamic dimensions (a batch): an output with a dynamic dimension likely grows as much. */
static size_t batch_scale(const ganglion_rt_model_info *info, const ganglion_rt_input *in, size_t nin)
{
	size_t scale = 1;
	for (size_t i = 0; i < nin; i++) {
		size_t s = elements(in[i].shape, in[i].ndim) / elements(info->inputs[i].shape, info->inputs[i].ndim);
		scale = s > scale ? s : scale;
	}
	return scale;
}

/* A first guess at an output's size: its declared shape, scaled by the batch when it has a
 * dynamic dimension, within reason. */
static size_t output_guess(const ganglion_rt_tensor_info *ti, size_t scale)
{
	size_t n = elements(ti->shape, ti->ndim), scaled;
	bool dyn = false;
	for (int d = 0; d < ti->ndim; d++)
		dyn = dyn || ti->shape[d] <= 0;
	if (dyn && !__builtin_mul_overflow(n, scale, &scaled) && scaled <= OUTPUT_GUESS_MAX)
		n = scaled;
	return n + 16;
}

static void free_outputs(const ganglion_rt_model_info *info, ganglion_rt_output *out)
{
	for (size_t i = 0; out && i < info->n_outputs; i++)
		free(out[i].data);
	free(out);
}

/* Grows the outputs the runtime found too small (it set the shape it needs); false if none. */
static bool grow_outputs(const ganglion_rt_model_info *info, ganglion_rt_output *out)
{
	bool grown = false;
	for (size_t i = 0; i < info->n_outputs; i++) {
		size_t need = elements(out[i].shape, out[i].ndim);
		if (out[i].ndim > 0 && need > out[i].capacity) {
			out[i].capacity = need;
			out[i].data = gn_realloc(out[i].data, need * sizeof(float));
			grown = true;
		}
	}
	return grown;
}

/* Runs the model with outputs sized from their declared shapes (retrying once if it needs more);
 * *out_outputs is new (free_outputs). */
static int run(struct agent *a, struct agent_model *m, ganglion_rt_input *in, size_t nin,
	       ganglion_rt_output **out_outputs, gn_err *err)
{
	const ganglion_rt_model_info *info = m->info;
	ganglion_rt_output *out = gn_calloc(info->n_outputs, sizeof(*out));
	size_t scale = batch_scale(info, in, nin);
	for (size_t i = 0; i < info->n_outputs; i++) {
		out[i].name = info->outputs[i].name;
		out[i].capacity = output_guess(&info->outputs[i], scale);
		out[i].data = gn_malloc(out[i].capacity * sizeof(float));
	}
	int rc = models_infer(a, m, in, nin, out, info->n_outputs, err);
	/* ESPACE reports the needed shape: grow and run again. */
	if (rc && grow_outputs(info, out))
		rc = models_infer(a, m, in, nin, out, info->n_outputs, err);
	if (rc) {
		free_outputs(info, out);
		return rc;
	}
	*out_outputs = out;
	return 0;
}

/* Reads shapes.NAME into shape when the request gives it (*out_ndim stays -1 when not). */
static int given_shape(int64_t shape[GANGLION_RT_MAX_DIMS], int *out_ndim, const json_t *shapes, const char *name,
		       gn_err *err)
{
	const json_t *v = json_object_get(shapes, name), *d;
	size_t k;
	*out_ndim = -1;
	if (!v)
		return 0;
	if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > GANGLION_RT_MAX_DIMS)
		return gn_err_set(err, GN_EINVAL, "shapes.%s must be an array of 1 to %d positive integers", name,
				  GANGLION_RT_MAX_DIMS);
	json_array_foreach(v, k, d) {
		if (!json_is_integer(d) || json_integer_value(d) < 1)
			return gn_err_set(err, GN_EINVAL, "shapes.%s must be an array of 1 to %d positive integers",
					  name, GANGLION_RT_MAX_DIMS);
		shape[k] = json_integer_value(d);
	}
	*out_ndim = (int)json_array_size(v);
	return 0;
}

/* Fills in (name, data, shape) from inputs.NAME and shapes.NAME of a JSON request; in->data is new. */
static int json_input(ganglion_rt_input *in, const ganglion_rt_tensor_info *ti, const json_t *inputs,
		      const json_t *shapes, gn_err *err)
{
	const json_t *v = json_object_get(inputs, ti->name);
	int64_t shape[GANGLION_RT_MAX_DIMS];
	int ndim;
	if (!json_is_array(v))
		return gn_err_set(err, GN_EINVAL, "inputs.%s must be an array of numbers", ti->name);
	float *data = gn_malloc((json_array_size(v) + 1) * sizeof(float));
	in->name = ti->name;
	in->data = data;
	for (size_t k = 0; k < json_array_size(v); k++) {
		if (!json_is_number(json_array_get(v, k)))
			return gn_err_set(err, GN_EINVAL, "inputs hold numbers only");
		data[k] = (float)json_number_value(json_array_get(v, k));
	}
	int rc = given_shape(shape, &ndim, shapes, ti->name, err);
	return rc ? rc : shape_solve(in, ti, json_array_size(v), ndim < 0 ? NULL : shape, ndim, err);
}

/* Checks that every key of obj (inputs or shapes) names an input of the model. */
static int names_inputs(const json_t *obj, const char *what, const ganglion_rt_model_info *info, gn_err *err)
{
	const char *k;
	const json_t *v;
	json_object_foreach((json_t *)obj, k, v) {
		size_t i = 0;
		while (i < info->n_inputs && strcmp(info->inputs[i].name, k) != 0)
			i++;
		if (i == info->n_inputs)
			return gn_err_set(err, GN_EINVAL, "%s names '%.64s', the model has no such input", what, k);
	}
	return 0;
}

/* Turns the outputs into {"model", "version", "target", "outputs": {NAME: [...]}} (new). */
static json_t *outputs_json(const struct agent_model *m, const ganglion_rt_output *out)
{
	json_t *outs = json_object();
	for (size_t i = 0; i < m->info->n_outputs; i++) {
		json_t *arr = json_array();
		size_t n = elements(out[i].shape, out[i].ndim);
		for (size_t k = 0; k < n; k++)
			json_array_append_new(arr, json_real(out[i].data[k]));
		json_object_set_new(outs, out[i].name, arr);
	}
	return json_pack("{s:s,s:s,s:s,s:o}", "model", m->name, "version", m->version, "target", m->target, "outputs",
			 outs);
}

static enum MHD_Result infer_json(struct sreq *r, struct agent_model *m)
{
	static const gn_json_field fields[] = {{"inputs", GN_JSON_OBJECT, true, false},
					       {"shapes", GN_JSON_OBJECT, false, false}};
	const ganglion_rt_model_info *info = m->info;
	json_t *j = NULL, *outj = NULL;
	gn_err err;
	ganglion_rt_input *in = gn_calloc(info->n_inputs, sizeof(*in));
	ganglion_rt_output *out = NULL;
	enum MHD_Result ret;
	int rc = gn_json_parse(&j, r->body.data ? r->body.data : "", r->body.len, 8, &err);
	if (!rc)
		rc = gn_json_check(j, fields, GN_ARRAY_LEN(fields), &err);
	const json_t *inputs = json_object_get(j, "inputs"), *shapes = json_object_get(j, "shapes");
	for (size_t i = 0; !rc && i < info->n_inputs; i++)
		rc = json_input(&in[i], &info->inputs[i], inputs, shapes, &err);
	if (!rc && json_object_size(inputs) != info->n_inputs)
		rc = gn_err_set(&err, GN_EINVAL, "inputs must name each model input exactly once");
	if (!rc)
		rc = names_inputs(shapes, "shapes", info, &err);
	if (rc) {
		/* A well-formed request this model cannot take (a changed interface) counts against it:
		 * the local apps did not change, the model did, and a rollout's error gate must see it. */
		if (j && json_is_object(inputs)) {
			atomic_fetch_add(&m->requests, 1);
			atomic_fetch_add(&m->errors, 1);
		}
		ret = problem(r, 400, "Bad Request", err.msg);
		goto out;
	}
	if (run(r->a, m, in, info->n_inputs, &out, &err)) {
		ret = infer_problem(r, &err);
		goto out;
	}
	outj = outputs_json(m, out);
	char *s = gn_json_dump(outj);
	ret = reply(r, 200, "application/json", s, strlen(s), m);
out:
	for (size_t i = 0; i < info->n_inputs; i++)
		free((void *)in[i].data);
	free(in);
	free_outputs(info, out);
	json_decref(j);
	json_decref(outj);
	return ret;
}

static enum MHD_Result infer_raw(struct sreq *r, struct agent_model *m)
{
	gn_err err;
	ganglion_rt_output *out = NULL;
	size_t len = r->body.len;
	if (m->info->n_inputs != 1 || m->info->n_outputs < 1)
		return problem(r, 415, "Unsupported Media Type",
			       "raw float32 bodies need a model with one input; send JSON");
	if (len % sizeof(float))
		return problem(r, 400, "Bad Request", "a raw body is a whole number of little-endian float32 values");
	ganglion_rt_input in = {.name = m->info->inputs[0].name};
	float *data = gn_malloc(len + sizeof(float));
	if (len)
		memcpy(data, r->body.data, len);
	in.data = data;
	if (shape_solve(&in, &m->info->inputs[0], len / sizeof(float), NULL, 0, &err)) {
		free(data);
		return problem(r, 400, "Bad Request", err.msg);
	}
	int rc = run(r->a, m, &in, 1, &out, &err);
	free(data);
	if (rc)
		return problem(r, err.code == GN_EINVAL ? 400 : 500, "Inference Failed", err.msg);
	size_t n = elements(out[0].shape, out[0].ndim);
	char *bytes = gn_malloc(n * sizeof(float) + 1);
	memcpy(bytes, out[0].data, n * sizeof(float));
	free_outputs(m->info, out);
	return reply(r, 200, "application/octet-stream", bytes, n * sizeof(float), m);
}

/* Local clients connected at once (each has a thread; more wait in the listen backlog). */
#define MAX_CONNECTIONS 256

/* Inferences running at once: at most the agent's `threads` (one agent per process). */
static sem_t infer_slots;

/* Answers a request for model name that does not serve: 503 while it (or any model) is still to
 * be loaded, 404 for a model this device does not run. */
static enum MHD_Result not_serving(struct sreq *r, const char *name)
{
	bool known = false, any = false;
	char *detail;
	pthread_mutex_lock(&r->a->lock);
	for (size_t i = 0; i < r->a->nslots; i++) {
		known = known || strcmp(r->a->slots[i]->name, name) == 0;
		any = any || r->a->slots[i]->current;
	}
	pthread_mutex_unlock(&r->a->lock);
	if (known)
		detail = gn_asprintf("model %.64s is not loaded yet", name);
	else if (!any)
		detail = gn_strdup("no model is loaded yet");
	else
		detail = gn_asprintf("this device does not run model %.64s", name);
	enum MHD_Result ret =
		problem(r, known || !any ? 503 : 404, known || !any ? "Service Unavailable" : "Not Found", detail);
	free(detail);
	return ret;
}

/* POST /v1/models/{name}/infer */
static enum MHD_Result on_infer(struct sreq *r)
{
	struct agent_model *m = models_get(r->a, r->param);
	enum MHD_Result ret;
	atomic_fetch_add(&r->a->infer_total, 1);
	if (!m) {
		ret = not_serving(r, r->param);
	} else {
		const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
		while (sem_wait(&infer_slots) != 0 && errno == EINTR)
			;
		if (ct && strncasecmp(ct, "application/octet-stream", 24) == 0)
			ret = infer_raw(r, m);
		else
			ret = infer_json(r, m);
		sem_post(&infer_slots);
	}
	models_unref(r->a, m);
	return ret;
}

/* GET /healthz */
static enum MHD_Result on_healthz(struct sreq *r)
{
	bool serving = false;
	pthread_mutex_lock(&r->a->lock);
	for (size_t i = 0; i < r->a->nslots; i++)
		serving = serving || r->a->slots[i]->current;
	pthread_mutex_unlock(&r->a->lock);
	char *s = gn_asprintf("{\"status\":\"ok\",\"serving\":%s}", serving ? "true" : "false");
	return reply(r, 200, "application/json", s, strlen(s), NULL);
}

/* GET /v1/models: the models that serve, by name. */
static enum MHD_Result on_models(struct sreq *r)
{
	json_t *items = json_array();
	pthread_mutex_lock(&r->a->lock);
	for (size_t i = 0; i < r->a->nslots; i++) {
		const struct agent_model *m = r->a->slots[i]->current;
		if (!m)
			continue;
		json_array_append_new(items, json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I}", "name", m->name,
						       "version", m->version, "sha256", m->sha256, "target", m->target,
						       "requested_target", r->a->cfg.runtime_target, "target_detail",
						       models_target_detail(m), "state", "active", "self_test",
						       m->self_test, "requests", (json_int_t)atomic_load(&m->requests),
						       "errors", (json_int_t)atomic_load(&m->errors)));
	}
	pthread_mutex_unlock(&r->a->lock);
	json_t *j = json_pack("{s:o}", "items", items);
	char *s = gn_json_dump(j);
	json_decref(j);
	return reply(r, 200, "application/json", s, strlen(s), NULL);
}

/* Rolls back model name (NULL: the only one) and answers. */
static enum MHD_Result rollback(struct sreq *r, const char *name)
{
	gn_err err;
	char model[64];
	/* Rollbacks and updates both swap models: one at a time. */
	if (pthread_mutex_trylock(&r->a->update_lock) != 0)
		return problem(r, 409, "Conflict", "an update is in progress; try the rollback again when it ends");
	int rc = update_rollback(r->a, name, &err);
	if (!rc) {
		struct agent_slot *s = NULL;
		/* The slot that was rolled back: name's, or the one that serves. */
		pthread_mutex_lock(&r->a->lock);
		for (size_t i = 0; i < r->a->nslots && !s; i++)
			if (name ? strcmp(r->a->slots[i]->name, name) == 0 : r->a->slots[i]->current != NULL)
				s = r->a->slots[i];
		snprintf(model, sizeof(model), "%s", s ? s->name : "");
		pthread_mutex_unlock(&r->a->lock);
	}
	pthread_mutex_unlock(&r->a->update_lock);
	if (rc)
		return problem(r,
			       rc == GN_ENOTFOUND ? 404
			       : rc == GN_EINVAL  ? 400
						  : 500,
			       rc == GN_ENOTFOUND ? "Not Found"
			       : rc == GN_EINVAL  ? "Bad Request"
						  : "Rollback Failed",
			       err.msg);
	struct agent_model *m = models_get(r->a, model);
	if (!m)
		return problem(r, 409, "Conflict", "the model changed again during the rollback");
	json_t *j = json_pack("{s:s,s:s,s:s}", "status", "rolled_back", "model", m->name, "version", m->version);
	char *s = gn_json_dump(j);
	json_decref(j);
	enum MHD_Result ret = reply(r, 200, "application/json", s, strlen(s), m);
	models_unref(r->a, m);
	return ret;
}

/* POST /v1/rollback */
static enum MHD_Result on_rollback(struct sreq *r)
{
	return rollback(r, NULL);
}

/* POST /v1/models/{name}/rollback */
static enum MHD_Result on_model_rollback(struct sreq *r)
{
	return rollback(r, r->param);
}

/* Appends `name{model="..",version=".."` (no closing brace: the caller adds more labels or '}'). */
static void series(gn_buf *b, const char *name, const struct agent_model *m)
{
	gn_buf_printf(b, "%s{model=\"", name);
	gn_prom_label(b, m->name);
	gn_buf_puts(b, "\",version=\"");
	gn_prom_label(b, m->version);
	gn_buf_puts(b, "\"");
}

/* One drift gauge per feature: which 0 PSI, 1 JS distance, 2 L-infinity (features with values in
 * the window and that measure only), 3 the values counted. */
static void drift_gauges(gn_buf *b, const struct agent_model *m, const char *name, int which, const char *side,
			 const struct gn_drift_feature *fs, const struct gn_drift_measure *ms, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		double v = which == 0 ? ms[i].psi : which == 1 ? ms[i].js : which == 2 ? ms[i].linf : (double)ms[i].n;
		if (which != 3 && (ms[i].n == 0 || isnan(v)))
			continue;
		series(b, name, m);
		gn_buf_printf(b, ",feature=\"%s:", side);
		gn_prom_label(b, fs[i].name);
		gn_buf_printf(b, "\"} %.17g\n", v);
	}
}

static const struct {
	const char *name, *help;
} drift_metrics[] = {
	{"ganglion_agent_drift_psi", "population stability index of the open window against the reference profile"},
	{"ganglion_agent_drift_js_distance",
	 "Jensen-Shannon distance (base 2) of the open window against the reference"},
	{"ganglion_agent_drift_linf",
	 "largest difference of shares, categorical features, open window against the reference"},
	{"ganglion_agent_drift_samples", "values of the feature counted in the open window"},
};

/* GET /metrics: Prometheus text for the models that serve. The counters are the ones /v1/models
 * shows (since the version began to serve); drift is that of the telemetry window still open,
 * read under the telemetry locks (telemetry_drift), never closing it. */
static enum MHD_Result on_metrics(struct sreq *r)
{
	struct agent *a = r->a;
	struct agent_model **ms;
	size_t n = models_serving(&ms, a);

	gn_buf b;
	gn_buf_init(&b);
	gn_buf_puts(&b, "# HELP ganglion_agent_requests_total inferences since the model version began to serve\n"
			"# TYPE ganglion_agent_requests_total counter\n");
	for (size_t i = 0; i < n; i++) {
		series(&b, "ganglion_agent_requests_total", ms[i]);
		gn_buf_printf(&b, "} %llu\n", (unsigned long long)atomic_load(&ms[i]->requests));
	}
	gn_buf_puts(&b, "# HELP ganglion_agent_errors_total failed inferences since the model version began to serve\n"
			"# TYPE ganglion_agent_errors_total counter\n");
	for (size_t i = 0; i < n; i++) {
		series(&b, "ganglion_agent_errors_total", ms[i]);
		gn_buf_printf(&b, "} %llu\n", (unsigned long long)atomic_load(&ms[i]->errors));
	}
	gn_buf_puts(&b,
		    "# HELP ganglion_agent_latency_seconds inference latency since the model version began to serve\n"
		    "# TYPE ganglion_agent_latency_seconds histogram\n");
	for (size_t i = 0; i < n; i++) {
		uint64_t cum = 0;
		for (size_t k = 0; k < GN_LATENCY_NBUCKETS; k++) {
			cum += atomic_load(&ms[i]->latency_buckets[k]);
			series(&b, "ganglion_agent_latency_seconds_bucket", ms[i]);
			if (k < GN_LATENCY_NBOUNDS)
				gn_buf_printf(&b, ",le=\"%g\"} %llu\n", (double)gn_latency_bounds_us[k] / 1e6,
					      (unsigned long long)cum);
			else
				gn_buf_printf(&b, ",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
		}
		series(&b, "ganglion_agent_latency_seconds_sum", ms[i]);
		gn_buf_printf(&b, "} %.17g\n", (double)atomic_load(&ms[i]->latency_us_sum) / 1e6);
		series(&b, "ganglion_agent_latency_seconds_count", ms[i]);
		gn_buf_printf(&b, "} %llu\n", (unsigned long long)cum);
	}

	/* drift of each version's open window */
	int64_t *starts = gn_calloc(n + 1, sizeof(*starts));
	struct gn_drift_measure **din = gn_calloc(n + 1, sizeof(*din)), **dout = gn_calloc(n + 1, sizeof(*dout));
	for (size_t i = 0; i < n; i++)
		if (ms[i]->telemetry)
			telemetry_drift(ms[i]->telemetry, &starts[i], &din[i], &dout[i]);
	gn_buf_puts(&b,
		    "# HELP ganglion_agent_drift_window_start_seconds start of the open telemetry window (Unix time)\n"
		    "# TYPE ganglion_agent_drift_window_start_seconds gauge\n");
	for (size_t i = 0; i < n; i++)
		if (ms[i]->telemetry) {
			series(&b, "ganglion_agent_drift_window_start_seconds", ms[i]);
			gn_buf_printf(&b, "} %lld\n", (long long)starts[i]);
		}
	for (int w = 0; w < 4; w++) {
		gn_buf_printf(&b, "# HELP %s %s\n# TYPE %s gauge\n", drift_metrics[w].name, drift_metrics[w].help,
			      drift_metrics[w].name);
		for (size_t i = 0; i < n; i++) {
			const struct gn_drift_profile *p =
				ms[i]->telemetry ? telemetry_counter_profile(ms[i]->telemetry) : NULL;
			if (!p)
				continue;
			drift_gauges(&b, ms[i], drift_metrics[w].name, w, "input", p->inputs, din[i], p->ninputs);
			drift_gauges(&b, ms[i], drift_metrics[w].name, w, "output", p->outputs, dout[i], p->noutputs);
		}
	}
	for (size_t i = 0; i < n; i++) {
		free(din[i]);
		free(dout[i]);
		models_unref(a, ms[i]);
	}
	free(din);
	free(dout);
	free(starts);
	free(ms);

	if (a->spool) {
		gn_buf_printf(
			&b,
			"# HELP ganglion_agent_telemetry_spool_reports telemetry reports waiting in the spool\n"
			"# TYPE ganglion_agent_telemetry_spool_reports gauge\n"
			"ganglion_agent_telemetry_spool_reports %zu\n"
			"# HELP ganglion_agent_telemetry_dropped_pending windows dropped (spool full or refused), "
			"not yet reported to the server\n"
			"# TYPE ganglion_agent_telemetry_dropped_pending gauge\n"
			"ganglion_agent_telemetry_dropped_pending %llu\n",
			telemetry_spool_count(a->spool), (unsigned long long)telemetry_spool_dropped(a->spool));
	}
	size_t len = b.len;
	return reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", gn_buf_detach(&b), len, NULL);
}

/* Every endpoint of the socket; one method per path. */
static const struct serve_route {
	const char *method;
	const char *pattern; /* "{name}" matches one non-empty path segment */
	serve_handler handler;
} routes[] = {
	{"GET", "/healthz", on_healthz},
	{"GET", "/v1/models", on_models},
	{"GET", "/metrics", on_metrics},
	{"POST", "/v1/models/{name}/infer", on_infer},
	{"POST", "/v1/models/{name}/rollback", on_model_rollback},
	{"POST", "/v1/rollback", on_rollback},
};

/* Matches url against pattern; the "{...}" segment, if any, is copied into *out_param (new). */
static bool match(const char *pattern, const char *url, char **out_param)
{
	const char *open = strchr(pattern, '{');
	if (!open)
		return strcmp(pattern, url) == 0;
	const char *post = strchr(open, '}') + 1;
	size_t pre = (size_t)(open - pattern), postlen = strlen(post), ul = strlen(url);
	if (ul <= pre + postlen || strncmp(url, pattern, pre) != 0 || strcmp(url + ul - postlen, post) != 0 ||
	    memchr(url + pre, '/', ul - pre - postlen))
		return false;
	*out_param = gn_strndup(url + pre, ul - pre - postlen);
	return true;
}

/* Runs the handler of the route for method and url: 404 for no such path, 405 for another method. */
static enum MHD_Result dispatch(struct sreq *r, const char *url, const char *method)
{
	for (size_t i = 0; i < GN_ARRAY_LEN(routes); i++) {
		char *param = NULL;
		if (!match(routes[i].pattern, url, &param))
			continue;
		if (strcmp(routes[i].method, method) == 0) {
			r->param = param;
			return routes[i].handler(r);
		}
		free(param);
		r->allow = routes[i].method;
		char *detail = gn_asprintf("%s takes %s", routes[i].pattern, routes[i].method);
		enum MHD_Result ret = problem(r, 405, "Method Not Allowed", detail);
		free(detail);
		return ret;
	}
	return problem(r, 404, "Not Found", "no such endpoint");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				  const char *version, const char *upload, size_t *upload_size, void **ctx)
{
	struct agent *a = cls;
	struct sreq *r = *ctx;
	if (!r) {
		r = gn_calloc(1, sizeof(*r));
		r->a = a;
		r->conn = c;
		gn_buf_init(&r->body);
		*ctx = r;
		return MHD_YES;
	}
	if (*upload_size) {
		if (r->too_big || r->body.len + *upload_size > (size_t)a->cfg.max_infer_body)
			r->too_big = true;
		else
			gn_buf_append(&r->body, upload, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	if (r->too_big)
		return problem(r, 413, "Content Too Large", "request body over max-infer-body");
	return dispatch(r, url, method);
}

static void on_done(void *cls, struct MHD_Connection *c, void **ctx, enum MHD_RequestTerminationCode toe)
{
	struct sreq *r = *ctx;
	if (!r)
		return;
	gn_buf_cleanup(&r->body);
	free(r->param);
	free(r);
	*ctx = NULL;
}

/* Binds the Unix socket (replacing a stale one) and listens; the fd is new. */
static int listen_unix(int *out, const char *path, gn_err *err)
{
	struct sockaddr_un sa;
	if (strlen(path) >= sizeof(sa.sun_path))
		return gn_err_set(err, GN_EINVAL, "socket-path is too long for a Unix socket");
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return gn_err_set(err, GN_ERROR, "cannot create a Unix socket: %s", strerror(errno));
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	unlink(path); /* a stale socket from a previous run */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0660) < 0 || listen(fd, 256) < 0) {
		int e = errno;
		close(fd);
		return gn_err_set(err, GN_ERROR, "cannot listen on %s: %s", path, strerror(e));
	}
	*out = fd;
	return 0;
}

int serve_start(struct agent *a, gn_err *err)
{
	int fd = -1, rc = listen_unix(&fd, a->cfg.socket_path, err);
	if (rc)
		return rc;
	/* A thread per connection, not a pool: a pool worker keeps every connection it accepts, and
	 * one worker accepts a burst of them, so four clients' requests all ran on one thread, one
	 * core (measured). Each client now runs on its own thread; `threads` bounds the inferences
	 * running at once, and the runtime runs them in parallel. */
	sem_init(&infer_slots, 0, (unsigned)a->cfg.threads);
	a->daemon = MHD_start_daemon(
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL | MHD_USE_ITC, 0, NULL,
		NULL, on_request, a, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT,
		(unsigned)MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60, MHD_OPTION_NOTIFY_COMPLETED,
		on_done, NULL, MHD_OPTION_END);
	if (!a->daemon) {
		sem_destroy(&infer_slots);
		close(fd);
		return gn_err_set(err, GN_ERROR, "cannot start the inference endpoint on %s", a->cfg.socket_path);
	}
	gn_log(GN_LOG_INFO, "event=serving socket=%s", a->cfg.socket_path);
	return 0;
}

void serve_stop(struct agent *a)
{
	if (!a->daemon)
		return;
	MHD_stop_daemon(a->daemon);
	a->daemon = NULL;
	sem_destroy(&infer_slots);
	unlink(a->cfg.socket_path);
}
