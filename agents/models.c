/* The runtime plugin and the models it runs: loading (from bytes read once and hashed, never from a
 * path the runtime would open again), self-test, one slot per model name with a reference-counted
 * hot swap, and the health counters of each version that serves. */
#include <dlfcn.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "telemetry.h"
#include "json.h"
#include "log.h"

/* The table size a plugin must report to have field f (fields are appended within ABI version 1). */
#define RT_HAS_SIZE(f) (offsetof(ganglion_runtime, f) + sizeof(((ganglion_runtime *)0)->f))

/* Opens the plugin and checks its table; sets a->dl and a->rt only when all of it worked. */
static int open_runtime(struct agent *a, bool *out_opened, gn_err *err)
{
	char ebuf[GN_ERR_MSG_MAX] = "";
	void *dl = dlopen(a->cfg.runtime_plugin, RTLD_NOW | RTLD_LOCAL);
	if (!dl)
		return gn_err_set(err, GN_ENOTFOUND, "cannot load runtime plugin %s: %s", a->cfg.runtime_plugin,
				  dlerror());
	*out_opened = true;
	ganglion_runtime_entry_fn entry = (ganglion_runtime_entry_fn)dlsym(dl, GANGLION_RUNTIME_ENTRY);
	if (!entry)
		return gn_err_set(err, GN_EINVAL, "%s exports no %s", a->cfg.runtime_plugin, GANGLION_RUNTIME_ENTRY);
	const ganglion_runtime *rt = entry();
	if (!rt || rt->abi_version != GANGLION_RUNTIME_ABI_VERSION)
		return gn_err_set(err, GN_EINVAL, "%s speaks runtime ABI %u, this agent speaks %d",
				  a->cfg.runtime_plugin, rt ? rt->abi_version : 0, GANGLION_RUNTIME_ABI_VERSION);
	/* The agent needs every field up to load_buffer (it never lets a runtime open a model file). */
	if (rt->struct_size < RT_HAS_SIZE(load_buffer) || !rt->load_buffer)
		return gn_err_set(
			err, GN_EINVAL,
			"%s was built against an older runtime.h (its table of %u bytes lacks load_buffer, this "
			"agent needs %zu): rebuild it",
			a->cfg.runtime_plugin, rt->struct_size, RT_HAS_SIZE(load_buffer));
	/* runtime-options, split at commas; a CPU-only agent never lets OpenCV touch OpenCL unless
	 * told to (opencl=...): no ICD loading, some 70 MB less memory. */
	char *opts = gn_strdup(a->cfg.runtime_options), *save = NULL;
	const char *argv[66] = {NULL};
	size_t n = 0;
	bool opencl_given = false;
	for (char *kv = strtok_r(opts, ",", &save); kv && n < 64; kv = strtok_r(NULL, ",", &save)) {
		opencl_given = opencl_given || strncmp(kv, "opencl=", 7) == 0;
		argv[n++] = kv;
	}
	if (strcmp(rt->name, "opencv-dnn") == 0 && strcmp(a->cfg.runtime_target, "cpu") == 0 && !opencl_given)
		argv[n++] = "opencl=off";
	int rc = rt->init(argv, ebuf, sizeof(ebuf));
	free(opts);
	if (rc != GANGLION_RT_OK)
		return gn_err_set(err, GN_EINVAL, "runtime %s refused to start (runtime-options '%s'): %s", rt->name,
				  a->cfg.runtime_options, ebuf);
	gn_log(GN_LOG_INFO, "event=runtime_loaded name=%s version=\"%s\"", rt->name, rt->version);
	a->dl = dl;
	a->rt = rt;
	return 0;
}

int models_open_runtime(struct agent *a, gn_err *err)
{
	/* A plugin's init() runs once per process: after a failure past dlopen the same failure is
	 * reported again (a fixed plugin needs a restart). One agent per process. */
	static gn_err failed;
	bool opened = false;
	if (a->rt)
		return 0;
	if (failed.code)
		return gn_err_set(err, failed.code, "%s", failed.msg);
	int rc = open_runtime(a, &opened, err);
	if (rc && opened)
		gn_err_set(&failed, rc, "%s", err->msg);
	return rc;
}

int models_check_runtime(const struct agent *a, gn_err *err)
{
	if (access(a->cfg.runtime_plugin, R_OK) != 0)
		return gn_err_set(err, GN_ENOTFOUND, "cannot load runtime plugin %s: %s", a->cfg.runtime_plugin,
				  strerror(errno));
	return 0;
}

json_t *models_runtime_facts(struct agent *a)
{
	ganglion_rt_caps caps;
	char ebuf[256];
	if (!a->rt) /* not loaded yet: no model has needed it */
		return json_pack("{s:s,s:b,s:s}", "plugin", a->cfg.runtime_plugin, "loaded", 0, "configured_target",
				 a->cfg.runtime_target);
	json_t *targets = json_array();
	if (a->rt->capabilities(&caps, ebuf, sizeof(ebuf)) == GANGLION_RT_OK) {
		for (size_t i = 0; i < caps.n_targets && i < GANGLION_RT_MAX_TARGETS; i++)
			json_array_append_new(targets, json_pack("{s:s,s:s,s:I}", "name", caps.targets[i].name,
								 "device", caps.targets[i].device, "mem_total_bytes",
								 (json_int_t)caps.targets[i].mem_total_bytes));
	}
	json_t *f = json_pack("{s:s,s:s,s:o,s:s}", "name", a->rt->name, "version", a->rt->version, "targets", targets,
			      "configured_target", a->cfg.runtime_target);
	/* Revision 3: the highest ONNX opset the runtime runs, when it says (requirements.opset). */
	int opset = a->rt->struct_size >= RT_HAS_SIZE(onnx_opset) && a->rt->onnx_opset ? a->rt->onnx_opset() : 0;
	if (opset > 0)
		json_object_set_new(f, "onnx_opset", json_integer(opset));
	return f;
}

int models_file_load(struct models_file *out, const char *path, gn_err *err)
{
	struct stat st;
	size_t have = 0;
	int error = 0, fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	out->data = NULL;
	out->len = 0;
	if (fd < 0)
		return gn_err_set(err, errno == ENOENT ? GN_ENOTFOUND : GN_ERROR, "cannot open %s: %s", path,
				  strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size >= SIZE_MAX) {
		error = gn_err_set(err, GN_EINVAL, "%s is not a regular file", path);
		goto out;
	}
	/* Not gn_malloc: a model too big for this device's memory is an error to report, not an abort. */
	out->data = malloc((size_t)st.st_size + 1);
	if (!out->data) {
		error = gn_err_set(err, GN_ERROR, "no memory to read %s (%lld bytes)", path, (long long)st.st_size);
		goto out;
	}
	while (have < (size_t)st.st_size) {
		ssize_t r = read(fd, out->data + have, (size_t)st.st_size - have);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			error = gn_err_set(err, GN_ERROR, "cannot read %s: %s", path,
					   r ? strerror(errno) : "it shrank");
			goto out;
		}
		have += (size_t)r;
	}
	out->len = have;
out:
	close(fd);
	if (error)
		models_file_cleanup(out);
	return error;
}

void models_file_cleanup(struct models_file *f)
{
	free(f->data);
	f->data = NULL;
	f->len = 0;
}

int models_load(struct agent_model **out, struct agent *a, const struct models_file *bytes, const char *name,
		const char *version, const char *sha256, gn_err *err)
{
	char ebuf[GN_ERR_MSG_MAX] = "", sum[GN_SHA256_HEX_LEN + 1], label[80];
	ganglion_rt_model *rm = NULL;
	/* The runtime gets exactly these bytes: hashed here, in memory, nothing to replace on disk. */
	gn_sha256_hex(sum, bytes->data, bytes->len);
	if (strcmp(sum, sha256) != 0)
		return gn_err_set(err, GN_EAUTH, "the model file of %s %s no longer matches its verified SHA-256", name,
				  version);
	snprintf(label, sizeof(label), "models/%.64s", sha256);
	int rc = models_open_runtime(a, err);
	if (rc)
		return rc;
	rc = a->rt->load_buffer(&rm, bytes->data, bytes->len, label, a->cfg.runtime_target, ebuf, sizeof(ebuf));
	if (rc != GANGLION_RT_OK)
		return gn_err_set(err, GN_EINVAL, "runtime could not load %s %s: %s", name, version, ebuf);
	struct agent_model *m = gn_calloc(1, sizeof(*m));
	atomic_init(&m->refs, 1);
	m->rt_model = rm;
	m->info = a->rt->describe(rm);
	snprintf(m->name, sizeof(m->name), "%s", name);
	snprintf(m->version, sizeof(m->version), "%s", version);
	snprintf(m->sha256, sizeof(m->sha256), "%s", sha256);
	snprintf(m->target, sizeof(m->target), "%s", m->info && m->info->target ? m->info->target : "unknown");
	snprintf(m->self_test, sizeof(m->self_test), "none");
	if (strcmp(m->target, a->cfg.runtime_target) != 0 || *models_target_detail(m))
		gn_log(GN_LOG_WARN, "event=target_fallback model=%s version=%s requested=%s actual=%s why=\"%s\"", name,
		       version, a->cfg.runtime_target, m->target, models_target_detail(m));
	*out = m;
	return 0;
}

const char *models_target_detail(const struct agent_model *m)
{
	return m->info && m->info->target_detail ? m->info->target_detail : "";
}

static const ganglion_rt_tensor_info *find_info(const ganglion_rt_tensor_info *t, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(t[i].name, name) == 0)
			return &t[i];
	return NULL;
}

void models_sample_cleanup(struct models_sample *s)
{
	for (size_t i = 0; i < s->nin; i++) {
		free(s->in[i].name);
		free(s->in[i].data);
	}
	for (size_t i = 0; i < s->nout; i++) {
		free(s->out[i].name);
		free(s->out[i].data);
	}
	free(s->in);
	free(s->out);
	memset(s, 0, sizeof(*s));
}

int models_self_test(struct agent *a, struct agent_model *m, const struct models_sample *s, gn_err *err)
{
	size_t nin = s->nin, nout = s->nout;
	ganglion_rt_input *in = gn_calloc(nin ? nin : 1, sizeof(*in));
	ganglion_rt_output *out = gn_calloc(nout ? nout : 1, sizeof(*out));
	int rc = 0;
	if (!nin || !nout) {
		rc = gn_err_set(err, GN_EINVAL, "the sample has no inputs or no outputs");
		goto done;
	}
	for (size_t i = 0; i < nin; i++) {
		const char *k = s->in[i].name;
		const ganglion_rt_tensor_info *ti = find_info(m->info->inputs, m->info->n_inputs, k);
		if (!ti) {
			rc = gn_err_set(err, GN_EINVAL, "the sample names input '%s', the model has no such input", k);
			goto done;
		}
		float *data = gn_malloc((s->in[i].n + 1) * sizeof(float));
		for (size_t j = 0; j < s->in[i].n; j++)
			data[j] = (float)s->in[i].data[j];
		in[i].name = k;
		in[i].data = data;
		if ((rc = shape_solve(&in[i], ti, s->in[i].n, NULL, 0, err)))
			goto done;
	}
	for (size_t i = 0; i < nout; i++) {
		out[i].name = s->out[i].name;
		out[i].capacity = s->out[i].n;
		out[i].data = gn_calloc(s->out[i].n + 1, sizeof(float));
	}
	/* Twice: the first run warms up (compiles OpenCL kernels, allocates), the second is judged. */
	for (int run = 0; run < 2 && !rc; run++)
		rc = models_infer(a, m, in, nin, out, nout, err);
	if (rc)
		goto done;
	for (size_t i = 0; i < nout; i++) {
		const char *k = s->out[i].name;
		size_t n = 1;
		for (int d = 0; d < out[i].ndim; d++)
			n *= (size_t)out[i].shape[d];
		if (n != s->out[i].n) {
			rc = gn_err_set(err, GN_EINVAL, "output %s has %zu values, the sample expects %zu", k, n,
					s->out[i].n);
			goto done;
		}
		for (size_t j = 0; j < n; j++) {
			double want = s->out[i].data[j], got = out[i].data[j];
			if (!(fabs(got - want) <= s->tolerance)) {
				rc = gn_err_set(
					err, GN_EINVAL,
					"self-test failed: output %s[%zu] is %g, the release expects %g (tolerance %g)",
					k, j, got, want, s->tolerance);
				goto done;
			}
		}
	}
done:
	for (size_t j = 0; j < nin; j++)
		free((void *)in[j].data);
	for (size_t j = 0; j < nout; j++)
		free(out[j].data);
	free(in);
	free(out);
	/* The counters are for served traffic, not the self-test. */
	atomic_store(&m->requests, 0);
	atomic_store(&m->errors, 0);
	atomic_store(&m->latency_us_sum, 0);
	atomic_store(&m->latency_us_max, 0);
	for (size_t b = 0; b < GN_LATENCY_NBUCKETS; b++)
		atomic_store(&m->latency_buckets[b], 0);
	if (!rc)
		snprintf(m->self_test, sizeof(m->self_test), "passed");
	return rc;
}

int models_infer(struct agent *a, struct agent_model *m, const ganglion_rt_input *in, size_t nin,
		 ganglion_rt_output *out, size_t nout, gn_err *err)
{
	char ebuf[1024] = "";
	uint64_t t0 = gn_mono_ns();
	int rc = a->rt->infer(m->rt_model, in, nin, out, nout, ebuf, sizeof(ebuf));
	uint64_t us = (gn_mono_ns() - t0) / 1000;
	/* Counters only: no ordering with anything else is needed, so the cheapest atomics. */
	atomic_fetch_add_explicit(&m->requests, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->latency_us_sum, us, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->latency_buckets[gn_latency_bucket(us)], 1, memory_order_relaxed);
	uint64_t prev = atomic_load_explicit(&m->latency_us_max, memory_order_relaxed);
	while (us > prev && !atomic_compare_exchange_weak_explicit(&m->latency_us_max, &prev, us, memory_order_relaxed,
								   memory_order_relaxed))
		;
	if (m->telemetry)
		telemetry_record(m->telemetry, rc != GANGLION_RT_OK, us, in, nin, out, nout);
	if (rc != GANGLION_RT_OK) {
		atomic_fetch_add_explicit(&m->errors, 1, memory_order_relaxed);
		return gn_err_set(err, rc == GANGLION_RT_EINVAL || rc == GANGLION_RT_ESPACE ? GN_EINVAL : GN_ERROR,
				  "inference failed: %s", ebuf);
	}
	return 0;
}

/* The slot of name, or NULL; under a->lock. */
static struct agent_slot *find_slot(struct agent *a, const char *name)
{
	for (size_t i = 0; i < a->nslots; i++)
		if (strcmp(a->slots[i]->name, name) == 0)
			return a->slots[i];
	return NULL;
}

struct agent_model *models_get(struct agent *a, const char *name)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += MODELS_PAUSE_WAIT_S;
	pthread_mutex_lock(&a->lock);
	struct agent_slot *s = find_slot(a, name);
	/* The slot is found again after each wait (it may be gone); after the deadline, what serves
	 * now is the answer (nothing, while the pause lasts). */
	while (s && s->paused) {
		int w = pthread_cond_timedwait(&a->resumed, &a->lock, &until);
		s = find_slot(a, name);
		if (w != 0)
			break;
	}
	struct agent_model *m = s ? s->current : NULL;
	if (m)
		atomic_fetch_add(&m->refs, 1);
	pthread_mutex_unlock(&a->lock);
	return m;
}

struct agent_slot *models_slot(struct agent *a, const char *name, bool create)
{
	pthread_mutex_lock(&a->lock);
	struct agent_slot *s = find_slot(a, name);
	if (!s && create) {
		s = gn_calloc(1, sizeof(*s));
		snprintf(s->name, sizeof(s->name), "%s", name);
		a->slots = gn_realloc(a->slots, (a->nslots + 1) * sizeof(*a->slots));
		a->slots[a->nslots++] = s;
	}
	pthread_mutex_unlock(&a->lock);
	return s;
}

/* Frees a slot already out of the array, and its model's reference. */
static void slot_free(struct agent *a, struct agent_slot *s)
{
	models_unref(a, s->current);
	json_decref(s->last_op);
	json_decref(s->previous);
	free(s);
}

void models_slot_remove(struct agent *a, struct agent_slot *s)
{
	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < a->nslots; i++) {
		if (a->slots[i] != s)
			continue;
		memmove(&a->slots[i], &a->slots[i + 1], (a->nslots - i - 1) * sizeof(*a->slots));
		a->nslots--;
		break;
	}
	pthread_mutex_unlock(&a->lock);
	slot_free(a, s);
}

void models_release_all(struct agent *a)
{
	pthread_mutex_lock(&a->lock);
	struct agent_slot **slots = a->slots;
	size_t n = a->nslots;
	a->slots = NULL;
	a->nslots = 0;
	pthread_mutex_unlock(&a->lock);
	for (size_t i = 0; i < n; i++)
		slot_free(a, slots[i]);
	free(slots);
}

size_t models_serving(struct agent_model ***out, struct agent *a)
{
	pthread_mutex_lock(&a->lock);
	struct agent_model **ms = gn_calloc(a->nslots + 1, sizeof(*ms));
	size_t n = 0;
	for (size_t i = 0; i < a->nslots; i++)
		if (a->slots[i]->current) {
			ms[n] = a->slots[i]->current;
			atomic_fetch_add(&ms[n++]->refs, 1);
		}
	pthread_mutex_unlock(&a->lock);
	*out = ms;
	return n;
}

void models_unref(struct agent *a, struct agent_model *m)
{
	if (!m || atomic_fetch_sub(&m->refs, 1) != 1)
		return;
	/* The last reference: no request uses the model any more. */
	gn_log(GN_LOG_INFO, "event=model_freed model=%s version=%s", m->name, m->version);
	agent_telemetry_detach(a, m);
	a->rt->free_model(m->rt_model);
	free(m);
}

void models_pause(struct agent *a, struct agent_slot *s)
{
	pthread_mutex_lock(&a->lock);
	s->paused = true;
	struct agent_model *old = s->current;
	s->current = NULL;
	pthread_mutex_unlock(&a->lock);
	if (!old)
		return;
	/* Requests in flight hold references and finish on it; the last one out would free it, but
	 * the new version must not load before its memory is back. */
	while (atomic_load(&old->refs) > 1)
		usleep(1000);
	gn_log(GN_LOG_INFO, "event=model_unloaded model=%s version=%s reason=pause_swap", old->name, old->version);
	models_unref(a, old);
}

void models_resume(struct agent *a, struct agent_slot *s)
{
	pthread_mutex_lock(&a->lock);
	s->paused = false;
	pthread_cond_broadcast(&a->resumed);
	pthread_mutex_unlock(&a->lock);
}

void models_swap(struct agent *a, struct agent_slot *s, struct agent_model *m)
{
	if (m)
		m->since = gn_now();
	if (m)
		agent_telemetry_attach(a, m);
	pthread_mutex_lock(&a->lock);
	struct agent_model *old = s->current;
	s->current = m;
	pthread_mutex_unlock(&a->lock);
	if (m)
		gn_log(GN_LOG_INFO, "event=model_swapped model=%s version=%s target=%s previous=%s", m->name,
		       m->version, m->target, old ? old->version : "-");
	else if (old)
		gn_log(GN_LOG_INFO, "event=model_unloaded model=%s version=%s", old->name, old->version);
	models_unref(a, old);
}
