/* The local inference endpoint: HTTP on a Unix socket for apps on the node.
 *   POST /v1/models/{name}/infer   JSON {"inputs":{"x":[...]}} -> {"outputs":{"y":[...]}, "version", ...}
 *                                  or application/octet-stream: raw little-endian float32 in and out
 *   GET  /v1/models                what runs: name, version, digest, target, counters
 *   POST /v1/rollback              swap the previous version back in (kept on disk, re-verified)
 *   GET  /healthz                  alive, and whether a model is serving
 * Each request holds a reference on the model it started with, so a swap never fails it. */
#include <errno.h>
#include <microhttpd.h>
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

static struct MHD_Daemon *daemon_;
static struct agent *agent_;
/* Serialises model changes (rollback here, updates in the main loop). */
pthread_mutex_t update_lock = PTHREAD_MUTEX_INITIALIZER;

struct sreq {
	gn_buf body;
	bool too_big;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type, char *body, size_t len,
			     const struct agent_model *m)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (m) {
		MHD_add_response_header(r, "X-Model-Version", m->version);
		MHD_add_response_header(r, "X-Model-Target", m->target);
	}
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result problem(struct MHD_Connection *c, unsigned status, const char *title, const char *detail)
{
	char *p = gn_problem_dup((int)status, title, detail);
	return reply(c, status, "application/problem+json", p, strlen(p), NULL);
}

static size_t elements(const int64_t *shape, int ndim)
{
	size_t n = 1;
	for (int d = 0; d < ndim; d++)
		n *= shape[d] > 0 ? (size_t)shape[d] : 1;
	return n;
}

/* Runs the model with outputs sized from its declared shapes (retrying once if it needs more). */
static int run(struct agent_model *m, ganglion_rt_input *in, size_t nin, ganglion_rt_output **out_outputs,
	       gn_err *err)
{
	const ganglion_rt_model_info *info = m->info;
	ganglion_rt_output *out = gn_calloc(info->n_outputs, sizeof(*out));
	size_t in_elems = 0;
	for (size_t i = 0; i < nin; i++)
		in_elems += elements(in[i].shape, in[i].ndim);
	for (size_t i = 0; i < info->n_outputs; i++) {
		out[i].name = info->outputs[i].name;
		out[i].capacity = elements(info->outputs[i].shape, info->outputs[i].ndim) * (in_elems > 1 ? 1 : 1) + 16;
		out[i].data = gn_malloc(out[i].capacity * sizeof(float));
	}
	int rc = models_infer(agent_, m, in, nin, out, info->n_outputs, err);
	if (rc) {
		/* ESPACE reports the needed shape: grow and run again. */
		bool grown = false;
		for (size_t i = 0; i < info->n_outputs; i++) {
			size_t need = elements(out[i].shape, out[i].ndim);
			if (out[i].ndim > 0 && need > out[i].capacity) {
				out[i].capacity = need;
				out[i].data = gn_realloc(out[i].data, need * sizeof(float));
				grown = true;
			}
		}
		if (grown)
			rc = models_infer(agent_, m, in, nin, out, info->n_outputs, err);
	}
	if (rc) {
		for (size_t i = 0; i < info->n_outputs; i++)
			free(out[i].data);
		free(out);
		return rc;
	}
	*out_outputs = out;
	return 0;
}

static void free_outputs(struct agent_model *m, ganglion_rt_output *out)
{
	for (size_t i = 0; out && i < m->info->n_outputs; i++)
		free(out[i].data);
	free(out);
}

static enum MHD_Result infer_json(struct MHD_Connection *c, struct agent_model *m, const char *body, size_t len)
{
	json_t *j = NULL, *outj = NULL;
	gn_err err;
	ganglion_rt_input *in = NULL;
	ganglion_rt_output *out = NULL;
	size_t nin = m->info->n_inputs;
	enum MHD_Result ret;
	static const gn_json_field fields[] = {{"inputs", GN_JSON_OBJECT, true, false}};
	if (gn_json_parse(&j, body, len, 8, &err) || gn_json_check(j, fields, 1, &err)) {
		ret = problem(c, 400, "Bad Request", err.msg);
		goto out;
	}
	const json_t *inputs = json_object_get(j, "inputs");
	in = gn_calloc(nin, sizeof(*in));
	for (size_t i = 0; i < nin; i++) {
		const ganglion_rt_tensor_info *ti = &m->info->inputs[i];
		const json_t *v = json_object_get(inputs, ti->name);
		if (!json_is_array(v)) {
			char msg[160];
			snprintf(msg, sizeof(msg), "inputs.%s must be an array of numbers", ti->name);
			ret = problem(c, 400, "Bad Request", msg);
			goto out;
		}
		float *data = gn_malloc((json_array_size(v) + 1) * sizeof(float));
		in[i].name = ti->name;
		in[i].data = data;
		for (size_t k = 0; k < json_array_size(v); k++) {
			if (!json_is_number(json_array_get(v, k))) {
				ret = problem(c, 400, "Bad Request", "inputs hold numbers only");
				goto out;
			}
			data[k] = (float)json_number_value(json_array_get(v, k));
		}
		if (shape_solve(&in[i], ti, json_array_size(v), NULL, 0, &err)) {
			ret = problem(c, 400, "Bad Request", err.msg);
			goto out;
		}
	}
	if (json_object_size(inputs) != nin) {
		ret = problem(c, 400, "Bad Request", "inputs must name each model input exactly once");
		goto out;
	}
	if (run(m, in, nin, &out, &err)) {
		ret = problem(c, err.code == GN_EINVAL ? 400 : 500, err.code == GN_EINVAL ? "Bad Request" : "Inference Failed", err.msg);
		goto out;
	}
	json_t *outs = json_object();
	for (size_t i = 0; i < m->info->n_outputs; i++) {
		json_t *arr = json_array();
		size_t n = elements(out[i].shape, out[i].ndim);
		for (size_t k = 0; k < n; k++)
			json_array_append_new(arr, json_real(out[i].data[k]));
		json_object_set_new(outs, out[i].name, arr);
	}
	outj = json_pack("{s:s,s:s,s:s,s:o}", "model", m->name, "version", m->version, "target", m->target, "outputs", outs);
	char *s = gn_json_dump(outj);
	ret = reply(c, 200, "application/json", s, strlen(s), m);
out:
	for (size_t i = 0; in && i < nin; i++)
		free((void *)in[i].data);
	free(in);
	free_outputs(m, out);
	json_decref(j);
	json_decref(outj);
	return ret;
}

static enum MHD_Result infer_raw(struct MHD_Connection *c, struct agent_model *m, const char *body, size_t len)
{
	gn_err err;
	ganglion_rt_output *out = NULL;
	if (m->info->n_inputs != 1 || m->info->n_outputs < 1)
		return problem(c, 415, "Unsupported Media Type", "raw float32 bodies need a model with one input; send JSON");
	if (len % sizeof(float))
		return problem(c, 400, "Bad Request", "a raw body is a whole number of little-endian float32 values");
	ganglion_rt_input in = {.name = m->info->inputs[0].name};
	float *data = gn_malloc(len + sizeof(float));
	memcpy(data, body, len);
	in.data = data;
	if (shape_solve(&in, &m->info->inputs[0], len / sizeof(float), NULL, 0, &err)) {
		free(data);
		return problem(c, 400, "Bad Request", err.msg);
	}
	int rc = run(m, &in, 1, &out, &err);
	free(data);
	if (rc)
		return problem(c, err.code == GN_EINVAL ? 400 : 500, "Inference Failed", err.msg);
	size_t n = elements(out[0].shape, out[0].ndim);
	char *bytes = gn_malloc(n * sizeof(float) + 1);
	memcpy(bytes, out[0].data, n * sizeof(float));
	free_outputs(m, out);
	return reply(c, 200, "application/octet-stream", bytes, n * sizeof(float), m);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				  const char *version, const char *upload, size_t *upload_size, void **ctx)
{
	struct sreq *r = *ctx;
	if (!r) {
		r = gn_calloc(1, sizeof(*r));
		gn_buf_init(&r->body);
		*ctx = r;
		return MHD_YES;
	}
	if (*upload_size) {
		if (r->too_big || r->body.len + *upload_size > (size_t)agent_->cfg.max_infer_body)
			r->too_big = true;
		else
			gn_buf_append(&r->body, upload, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	if (r->too_big)
		return problem(c, 413, "Content Too Large", "request body over max-infer-body");
	if (strcmp(url, "/healthz") == 0 && strcmp(method, "GET") == 0) {
		struct agent_model *m = models_get(agent_);
		char *s = gn_asprintf("{\"status\":\"ok\",\"serving\":%s}", m ? "true" : "false");
		models_unref(agent_, m);
		return reply(c, 200, "application/json", s, strlen(s), NULL);
	}
	if (strcmp(url, "/v1/models") == 0 && strcmp(method, "GET") == 0) {
		struct agent_model *m = models_get(agent_);
		json_t *items = json_array();
		if (m) {
			json_array_append_new(items, json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I}", "name", m->name, "version",
							       m->version, "sha256", m->sha256, "target", m->target,
							       "requested_target", agent_->cfg.runtime_target, "state",
							       "active", "requests", (json_int_t)atomic_load(&m->requests),
							       "errors", (json_int_t)atomic_load(&m->errors)));
		}
		models_unref(agent_, m);
		json_t *j = json_pack("{s:o}", "items", items);
		char *s = gn_json_dump(j);
		json_decref(j);
		return reply(c, 200, "application/json", s, strlen(s), NULL);
	}
	if (strcmp(url, "/v1/rollback") == 0) {
		gn_err err;
		if (strcmp(method, "POST") != 0)
			return problem(c, 405, "Method Not Allowed", "POST to roll back");
		/* Rollbacks and updates both swap models: one at a time. */
		if (pthread_mutex_trylock(&update_lock) != 0)
			return problem(c, 409, "Conflict", "an update is in progress; try the rollback again when it ends");
		int rc = update_rollback(agent_, &err);
		pthread_mutex_unlock(&update_lock);
		if (rc)
			return problem(c, rc == GN_ENOTFOUND ? 404 : 500, rc == GN_ENOTFOUND ? "Not Found" : "Rollback Failed", err.msg);
		struct agent_model *m = models_get(agent_);
		char *s = gn_asprintf("{\"status\":\"rolled_back\",\"model\":\"%s\",\"version\":\"%s\"}", m->name, m->version);
		enum MHD_Result ret = reply(c, 200, "application/json", s, strlen(s), m);
		models_unref(agent_, m);
		return ret;
	}
	const char *prefix = "/v1/models/", *suffix = "/infer";
	size_t ul = strlen(url);
	if (strncmp(url, prefix, strlen(prefix)) == 0 && ul > strlen(prefix) + strlen(suffix) &&
	    strcmp(url + ul - strlen(suffix), suffix) == 0) {
		if (strcmp(method, "POST") != 0)
			return problem(c, 405, "Method Not Allowed", "POST an inference request");
		char name[128];
		snprintf(name, sizeof(name), "%.*s", (int)(ul - strlen(prefix) - strlen(suffix)), url + strlen(prefix));
		struct agent_model *m = models_get(agent_);
		enum MHD_Result ret;
		atomic_fetch_add(&agent_->infer_total, 1);
		if (!m || strcmp(m->name, name) != 0) {
			ret = problem(c, m ? 404 : 503, m ? "Not Found" : "Service Unavailable",
				      m ? "this device does not run that model" : "no model is loaded yet");
		} else {
			const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
			if (ct && strncasecmp(ct, "application/octet-stream", 24) == 0)
				ret = infer_raw(c, m, r->body.data, r->body.len);
			else
				ret = infer_json(c, m, r->body.data ? r->body.data : "", r->body.len);
		}
		models_unref(agent_, m);
		return ret;
	}
	return problem(c, 404, "Not Found", "no such endpoint");
}

static void on_done(void *cls, struct MHD_Connection *c, void **ctx, enum MHD_RequestTerminationCode toe)
{
	struct sreq *r = *ctx;
	if (!r)
		return;
	gn_buf_cleanup(&r->body);
	free(r);
	*ctx = NULL;
}

int serve_start(struct agent *a, gn_err *err)
{
	struct sockaddr_un sa;
	agent_ = a;
	if (strlen(a->cfg.socket_path) >= sizeof(sa.sun_path))
		return gn_err_set(err, GN_EINVAL, "socket-path is too long for a Unix socket");
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return gn_err_set(err, GN_ERROR, "cannot create a Unix socket: %s", strerror(errno));
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", a->cfg.socket_path);
	unlink(a->cfg.socket_path); /* a stale socket from a previous run */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(a->cfg.socket_path, 0660) < 0 || listen(fd, 256) < 0) {
		int e = errno;
		close(fd);
		return gn_err_set(err, GN_ERROR, "cannot listen on %s: %s", a->cfg.socket_path, strerror(e));
	}
	daemon_ = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC, 0, NULL, NULL,
				   on_request, NULL, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_THREAD_POOL_SIZE,
				   (unsigned)a->cfg.threads, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
				   MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL, MHD_OPTION_END);
	if (!daemon_) {
		close(fd);
		return gn_err_set(err, GN_ERROR, "cannot start the inference endpoint on %s", a->cfg.socket_path);
	}
	gn_log(GN_LOG_INFO, "event=serving socket=%s", a->cfg.socket_path);
	return 0;
}

void serve_stop(void)
{
	if (daemon_) {
		MHD_stop_daemon(daemon_);
		daemon_ = NULL;
		unlink(agent_->cfg.socket_path);
	}
}
