/* The ONNX Runtime plugin (ganglion-runtime-onnxruntime.so): runs ONNX models through ONNX Runtime's C
 * API behind the C ABI of runtime.h, on the "cpu" target and, where ONNX Runtime finds their
 * libraries on the device, "cuda" and "tensorrt".
 *
 * One OrtEnv for the process, one OrtSession per model. OrtSession::Run is thread-safe, so infer()
 * holds no lock: concurrent requests on one model run in parallel, each on its caller's thread (one
 * intra-op thread per session by default; see option threads).
 *
 * Where a model really runs: ONNX Runtime places each node on the first execution provider that
 * claims it and gives the rest to the CPU, and says so only in its verbose log ("All nodes placed on
 * [CUDAExecutionProvider]" / "Node(s) placed on [...]. Number of nodes: N"). load() creates the
 * session with a verbose session logger, catches those lines through the environment's logging
 * callback (matched by a log id of its own) and derives the target from them. A provider whose
 * libraries are missing fails when it is appended; the model then loads on the CPU and the reason
 * is in target_detail. */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <onnxruntime_c_api.h>

#include "runtime.h"

#define PLUGIN_VERSION "0.1.0"
#define DETAIL_MAX 1024

static const OrtApi *ort;
static OrtEnv *env;
static OrtMemoryInfo *cpu_mem;
static int opt_threads = 1; /* intra-op threads per session; 1 = the caller's thread only */
static int opt_device;      /* CUDA device id for cuda and tensorrt */
static bool inited;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- errors ------------------------------------------------------------------------------------ */

/* Writes one line (newlines flattened) into err and returns code. */
__attribute__((format(printf, 4, 5))) static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
		for (char *p = err; *p; p++)
			if (*p == '\n' || *p == '\r')
				*p = ' ';
	}
	return code;
}

/* ONNX Runtime's message without the source location in front ("/onnxruntime_src/...cc:1988 ...
 * [ONNXRuntimeError] : 1 : FAIL : what happened"). */
static const char *status_message(OrtStatus *st)
{
	const char *msg = ort->GetErrorMessage(st), *p = strstr(msg, "[ONNXRuntimeError] : ");
	for (int i = 0; p && i < 3; i++) {
		p = strstr(p, " : ");
		p = p ? p + 3 : NULL;
	}
	return p && *p ? p : msg;
}

/* Maps an ONNX Runtime status to a plugin code: at load (model true) a bad file is EMODEL. */
static int status_code(OrtStatus *st, bool model)
{
	const char *msg = ort->GetErrorMessage(st);
	if (strstr(msg, "bad_alloc") || strstr(msg, "Failed to allocate memory"))
		return GANGLION_RT_ENOMEM;
	switch (ort->GetErrorCode(st)) {
	case ORT_INVALID_ARGUMENT: return model ? GANGLION_RT_EMODEL : GANGLION_RT_EINVAL;
	case ORT_NO_SUCHFILE: return GANGLION_RT_ENOTFOUND;
	case ORT_NO_MODEL:
	case ORT_INVALID_PROTOBUF:
	case ORT_INVALID_GRAPH:
	case ORT_MODEL_LOADED:
	case ORT_NOT_IMPLEMENTED: return model ? GANGLION_RT_EMODEL : GANGLION_RT_ERROR;
	default: return model ? GANGLION_RT_EMODEL : GANGLION_RT_ERROR;
	}
}

/* Turns st into a code and "what: ONNX Runtime's message" in err; releases st. */
static int fail_status(char *err, size_t errlen, OrtStatus *st, bool model, const char *what)
{
	int code = status_code(st, model);
	fail(err, errlen, code, "%s: %s", what, status_message(st));
	ort->ReleaseStatus(st);
	return code;
}

/* ---- placement, from ONNX Runtime's verbose log ------------------------------------------------- */

/* The node placement lines of one session being created, matched by log id. */
struct capture {
	char logid[32];
	char eps[4][40]; /* execution providers named in "placed on [EP]" lines */
	long nodes[4];
	int n;
	bool seen; /* the "Node placements" header came */
};
static pthread_mutex_t capture_lock = PTHREAD_MUTEX_INITIALIZER;
static struct capture *capturing; /* under capture_lock, set by the one load in create_lock */
static pthread_mutex_t create_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int log_level = ORT_LOGGING_LEVEL_WARNING;

static void on_log(void *param, OrtLoggingLevel sev, const char *category, const char *logid, const char *where,
		   const char *msg)
{
	if ((int)sev >= atomic_load(&log_level) && sev >= ORT_LOGGING_LEVEL_WARNING)
		fprintf(stderr, "onnxruntime: [%s] %s\n", sev >= ORT_LOGGING_LEVEL_ERROR ? "E" : "W", msg);
	if (sev > ORT_LOGGING_LEVEL_INFO || !strstr(msg, "placed on [") || !logid)
		return;
	pthread_mutex_lock(&capture_lock);
	struct capture *c = capturing;
	const char *ep = strstr(msg, "placed on [") + 11, *end = strchr(ep, ']'), *num = strstr(msg, "nodes: ");
	if (c && strcmp(logid, c->logid) == 0 && end && num && c->n < 4) {
		snprintf(c->eps[c->n], sizeof(c->eps[0]), "%.*s", (int)(end - ep), ep);
		c->nodes[c->n++] = strtol(num + 7, NULL, 10);
		c->seen = true;
	}
	pthread_mutex_unlock(&capture_lock);
}

/* The target name of an execution provider. */
static const char *ep_target(const char *ep)
{
	if (strcmp(ep, "CPUExecutionProvider") == 0)
		return "cpu";
	if (strcmp(ep, "CUDAExecutionProvider") == 0)
		return "cuda";
	if (strcmp(ep, "TensorrtExecutionProvider") == 0)
		return "tensorrt";
	return NULL;
}

/* ---- init and options --------------------------------------------------------------------------- */

static int parse_int(int *out, const char *v, int lo, int hi)
{
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (!*v || *end || errno || n < lo || n > hi)
		return -1;
	*out = (int)n;
	return 0;
}

static int parse_options(int *threads, int *device, int *level, const char *const *kvs, char *err, size_t errlen)
{
	for (size_t i = 0; kvs && kvs[i]; i++) {
		const char *kv = kvs[i], *eq = strchr(kv, '=');
		if (!eq)
			return fail(err, errlen, GANGLION_RT_EINVAL, "option '%.64s' is not key=value", kv);
		size_t klen = (size_t)(eq - kv);
		const char *v = eq + 1;
		if (klen == 7 && strncmp(kv, "threads", 7) == 0) {
			if (parse_int(threads, v, 0, 1024))
				return fail(err, errlen, GANGLION_RT_EINVAL,
					    "option threads=%.64s: need 0 (one per core) to 1024", v);
		} else if (klen == 6 && strncmp(kv, "device", 6) == 0) {
			if (parse_int(device, v, 0, 255))
				return fail(err, errlen, GANGLION_RT_EINVAL, "option device=%.64s: need 0 to 255", v);
		} else if (klen == 9 && strncmp(kv, "log-level", 9) == 0) {
			static const char *const names[] = {"info", "warning", "error", "silent"};
			static const int levels[] = {ORT_LOGGING_LEVEL_INFO, ORT_LOGGING_LEVEL_WARNING,
						     ORT_LOGGING_LEVEL_ERROR, ORT_LOGGING_LEVEL_FATAL + 1};
			size_t k = 0;
			while (k < 4 && strcmp(v, names[k]) != 0)
				k++;
			if (k == 4)
				return fail(err, errlen, GANGLION_RT_EINVAL,
					    "option log-level=%.64s: need silent, error, warning or info", v);
			*level = levels[k];
		} else {
			return fail(err, errlen, GANGLION_RT_EINVAL,
				    "unknown option '%.*s' (known: threads, device, log-level)",
				    (int)(klen > 64 ? 64 : klen), kv);
		}
	}
	return GANGLION_RT_OK;
}

/* Gets the C API of the library's version this plugin was built for, and the environment. */
static int start(char *err, size_t errlen)
{
	const OrtApiBase *base = OrtGetApiBase();
	ort = base->GetApi(ORT_API_VERSION);
	if (!ort)
		return fail(err, errlen, GANGLION_RT_ERROR,
			    "libonnxruntime %s does not offer C API version %d (this plugin's headers): install the "
			    "library it was built with",
			    base->GetVersionString(), ORT_API_VERSION);
	/* Warnings and errors go to stderr through on_log; load() makes each session's own logger
	 * verbose while it is created, for the placement lines. */
	int level = atomic_load(&log_level);
	OrtStatus *st = ort->CreateEnvWithCustomLogger(
		on_log, NULL, level > ORT_LOGGING_LEVEL_FATAL ? ORT_LOGGING_LEVEL_FATAL : (OrtLoggingLevel)level,
		"ganglion", &env);
	if (!st)
		st = ort->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &cpu_mem);
	if (st)
		return fail_status(err, errlen, st, false, "init");
	return GANGLION_RT_OK;
}

static int rt_init(const char *const *kvs, char *err, size_t errlen)
{
	int threads = 1, device = 0, level = ORT_LOGGING_LEVEL_WARNING;
	int rc = parse_options(&threads, &device, &level, kvs, err, errlen);
	if (rc)
		return rc;
	pthread_mutex_lock(&init_lock);
	if (inited) {
		pthread_mutex_unlock(&init_lock);
		return fail(err, errlen, GANGLION_RT_EINVAL, "init was already called");
	}
	opt_threads = threads;
	opt_device = device;
	atomic_store(&log_level, level);
	rc = start(err, errlen);
	inited = rc == GANGLION_RT_OK;
	pthread_mutex_unlock(&init_lock);
	return rc;
}

/* Runs the default init if the agent did not call init() (a contract breach, harmless here). */
static int ensure_init(char *err, size_t errlen)
{
	int rc = GANGLION_RT_OK;
	pthread_mutex_lock(&init_lock);
	if (!inited) {
		rc = start(err, errlen);
		inited = rc == GANGLION_RT_OK;
	}
	pthread_mutex_unlock(&init_lock);
	return rc;
}

/* ---- execution providers ------------------------------------------------------------------------ */

/* Appends the provider of target to so; on failure writes ONNX Runtime's reason into why. */
static int append_provider(OrtSessionOptions *so, const char *target, char *why, size_t whylen)
{
	OrtStatus *st = NULL;
	char dev[16];
	snprintf(dev, sizeof(dev), "%d", opt_device);
	const char *keys[] = {"device_id"}, *vals[] = {dev};
	if (strcmp(target, "cuda") == 0) {
		OrtCUDAProviderOptionsV2 *o = NULL;
		if (!(st = ort->CreateCUDAProviderOptions(&o)) &&
		    !(st = ort->UpdateCUDAProviderOptions(o, keys, vals, 1)))
			st = ort->SessionOptionsAppendExecutionProvider_CUDA_V2(so, o);
		if (o)
			ort->ReleaseCUDAProviderOptions(o);
	} else if (strcmp(target, "tensorrt") == 0) {
		OrtTensorRTProviderOptionsV2 *o = NULL;
		if (!(st = ort->CreateTensorRTProviderOptions(&o)) &&
		    !(st = ort->UpdateTensorRTProviderOptions(o, keys, vals, 1)))
			st = ort->SessionOptionsAppendExecutionProvider_TensorRT_V2(so, o);
		if (o)
			ort->ReleaseTensorRTProviderOptions(o);
	}
	if (!st)
		return 0;
	snprintf(why, whylen, "%s", status_message(st));
	ort->ReleaseStatus(st);
	for (char *p = why; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	return -1;
}

/* Names an NVIDIA GPU from the driver's /proc files ("" when there is none). */
static void nvidia_gpu_name(char *out, size_t n, int device)
{
	out[0] = '\0';
	DIR *d = opendir("/proc/driver/nvidia/gpus");
	struct dirent *e;
	int i = 0;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.' || i++ != device)
			continue;
		char path[300], line[256];
		snprintf(path, sizeof(path), "/proc/driver/nvidia/gpus/%s/information", e->d_name);
		FILE *f = fopen(path, "r");
		while (f && fgets(line, sizeof(line), f))
			if (strncmp(line, "Model:", 6) == 0) {
				char *v = line + 6;
				while (isspace((unsigned char)*v))
					v++;
				v[strcspn(v, "\n")] = '\0';
				snprintf(out, n, "%.127s", v);
			}
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
}

/* ---- models ------------------------------------------------------------------------------------- */

struct ganglion_rt_model {
	OrtSession *session;
	OrtRunOptions *run_options;
	size_t n_in, n_out;
	char **in_names, **out_names;
	ganglion_rt_tensor_info *in_info, *out_info;
	bool dynamic; /* some input has a dynamic dimension */
	char requested[16], target[16], detail[DETAIL_MAX];
	ganglion_rt_model_info info;
};

static void free_model(ganglion_rt_model *m)
{
	if (!m)
		return;
	if (m->session)
		ort->ReleaseSession(m->session);
	if (m->run_options)
		ort->ReleaseRunOptions(m->run_options);
	for (size_t i = 0; m->in_names && i < m->n_in; i++)
		free(m->in_names[i]);
	for (size_t i = 0; m->out_names && i < m->n_out; i++)
		free(m->out_names[i]);
	free(m->in_names);
	free(m->out_names);
	free(m->in_info);
	free(m->out_info);
	free(m);
}

static ganglion_rt_dtype dtype_of(ONNXTensorElementDataType t)
{
	switch (t) {
	case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return GANGLION_RT_FLOAT32;
	case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return GANGLION_RT_FLOAT16;
	case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: return GANGLION_RT_INT8;
	case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return GANGLION_RT_UINT8;
	case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return GANGLION_RT_INT32;
	case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return GANGLION_RT_INT64;
	default: return GANGLION_RT_DTYPE_OTHER;
	}
}

static const char *dtype_name(ganglion_rt_dtype t)
{
	switch (t) {
	case GANGLION_RT_FLOAT32: return "float32";
	case GANGLION_RT_FLOAT16: return "float16";
	case GANGLION_RT_INT8: return "int8";
	case GANGLION_RT_UINT8: return "uint8";
	case GANGLION_RT_INT32: return "int32";
	case GANGLION_RT_INT64: return "int64";
	default: return "an unsupported type";
	}
}

/* Reads one input's or output's name, element type and shape from the session. */
static OrtStatus *read_tensor(ganglion_rt_model *m, bool input, size_t i, OrtAllocator *alloc, const char *what,
			      char *err, size_t errlen, int *rc)
{
	char *name = NULL;
	OrtTypeInfo *ti = NULL;
	const OrtTensorTypeAndShapeInfo *tsi = NULL;
	ONNXTensorElementDataType et;
	size_t nd = 0;
	ganglion_rt_tensor_info *t = input ? &m->in_info[i] : &m->out_info[i];
	OrtStatus *st = input ? ort->SessionGetInputName(m->session, i, alloc, &name)
			      : ort->SessionGetOutputName(m->session, i, alloc, &name);
	if (!st) {
		(input ? m->in_names : m->out_names)[i] = strdup(name);
		t->name = (input ? m->in_names : m->out_names)[i];
		st = ort->AllocatorFree(alloc, name);
	}
	if (!st) {
		st = input ? ort->SessionGetInputTypeInfo(m->session, i, &ti)
			   : ort->SessionGetOutputTypeInfo(m->session, i, &ti);
	}
	if (!st)
		st = ort->CastTypeInfoToTensorInfo(ti, &tsi);
	if (!st && !tsi) {
		*rc = fail(err, errlen, GANGLION_RT_EUNSUPPORTED, "%s: %s '%s' is not a tensor (a sequence or map)",
			   what, input ? "input" : "output", t->name);
		goto out;
	}
	if (!st)
		st = ort->GetTensorElementType(tsi, &et);
	if (!st)
		st = ort->GetDimensionsCount(tsi, &nd);
	if (!st && nd > GANGLION_RT_MAX_DIMS) {
		*rc = fail(err, errlen, GANGLION_RT_EUNSUPPORTED, "%s: %s '%s' has %zu dimensions, at most %d", what,
			   input ? "input" : "output", t->name, nd, GANGLION_RT_MAX_DIMS);
		goto out;
	}
	if (!st)
		st = ort->GetDimensions(tsi, t->shape, nd);
	if (!st) {
		t->dtype = dtype_of(et);
		t->ndim = (int32_t)nd;
		for (size_t d = 0; d < nd; d++)
			if (t->shape[d] < 1)
				t->shape[d] = -1; /* symbolic or unknown */
	}
out:
	if (ti)
		ort->ReleaseTypeInfo(ti);
	return st;
}

/* Fills the model's interface from its session; refuses inputs this ABI cannot feed. */
static int read_interface(ganglion_rt_model *m, const char *what, char *err, size_t errlen)
{
	OrtAllocator *alloc = NULL;
	int rc = GANGLION_RT_OK;
	OrtStatus *st = ort->GetAllocatorWithDefaultOptions(&alloc);
	if (!st)
		st = ort->SessionGetInputCount(m->session, &m->n_in);
	if (!st)
		st = ort->SessionGetOutputCount(m->session, &m->n_out);
	if (st)
		return fail_status(err, errlen, st, true, what);
	if (!m->n_in || !m->n_out)
		return fail(err, errlen, GANGLION_RT_EMODEL, "%s has no graph inputs or no graph outputs", what);
	m->in_names = calloc(m->n_in, sizeof(char *));
	m->out_names = calloc(m->n_out, sizeof(char *));
	m->in_info = calloc(m->n_in, sizeof(*m->in_info));
	m->out_info = calloc(m->n_out, sizeof(*m->out_info));
	if (!m->in_names || !m->out_names || !m->in_info || !m->out_info)
		return fail(err, errlen, GANGLION_RT_ENOMEM, "%s: out of memory", what);
	for (size_t i = 0; i < m->n_in + m->n_out && !rc; i++) {
		bool input = i < m->n_in;
		st = read_tensor(m, input, input ? i : i - m->n_in, alloc, what, err, errlen, &rc);
		if (st)
			return fail_status(err, errlen, st, true, what);
	}
	if (rc)
		return rc;
	for (size_t i = 0; i < m->n_in; i++) {
		if (!m->in_names[i] || !m->in_info[i].name)
			return fail(err, errlen, GANGLION_RT_ENOMEM, "%s: out of memory", what);
		if (m->in_info[i].dtype != GANGLION_RT_FLOAT32)
			return fail(err, errlen, GANGLION_RT_EUNSUPPORTED,
				    "%s: input '%s' is %s; this runtime takes float32 inputs only", what,
				    m->in_info[i].name, dtype_name(m->in_info[i].dtype));
		for (int d = 0; d < m->in_info[i].ndim; d++)
			m->dynamic = m->dynamic || m->in_info[i].shape[d] < 0;
	}
	for (size_t i = 0; i < m->n_out; i++)
		if (!m->out_names[i])
			return fail(err, errlen, GANGLION_RT_ENOMEM, "%s: out of memory", what);
	return GANGLION_RT_OK;
}

static int infer_model(ganglion_rt_model *m, const ganglion_rt_input *inputs, size_t n_inputs,
		       ganglion_rt_output *outputs, size_t n_outputs, char *err, size_t errlen);

/* Runs the model once on zeros in its declared shapes (dynamic dimensions: 1 first, 32 others, as
 * the OpenCV plugin does). */
static int warm_up(ganglion_rt_model *m, char *err, size_t errlen)
{
	ganglion_rt_input *in = calloc(m->n_in, sizeof(*in));
	float **bufs = calloc(m->n_in, sizeof(float *));
	ganglion_rt_output out = {.name = m->out_names[0]};
	int rc = in && bufs ? GANGLION_RT_OK : GANGLION_RT_ENOMEM;
	for (size_t i = 0; i < m->n_in && !rc; i++) {
		size_t n = 1;
		in[i].name = m->in_names[i];
		in[i].ndim = m->in_info[i].ndim;
		for (int d = 0; d < in[i].ndim; d++) {
			in[i].shape[d] = m->in_info[i].shape[d] > 0 ? m->in_info[i].shape[d] : (d == 0 ? 1 : 32);
			if (__builtin_mul_overflow(n, (size_t)in[i].shape[d], &n) || n > ((size_t)1 << 31))
				rc = fail(err, errlen, GANGLION_RT_EUNSUPPORTED, "input '%s' is too large",
					  m->in_names[i]);
		}
		if (!rc && !(bufs[i] = calloc(n, sizeof(float))))
			rc = GANGLION_RT_ENOMEM;
		in[i].data = bufs[i];
	}
	/* capacity 0: the run happens, the copy-out answers ESPACE, which is fine here */
	if (!rc) {
		rc = infer_model(m, in, m->n_in, &out, 1, err, errlen);
		if (rc == GANGLION_RT_ESPACE)
			rc = GANGLION_RT_OK;
	}
	for (size_t i = 0; bufs && i < m->n_in; i++)
		free(bufs[i]);
	free(bufs);
	free(in);
	return rc;
}

/* Session options for target: one intra-op thread by default, sequential, no spinning. */
static OrtStatus *session_options(OrtSessionOptions **out, const char *logid)
{
	OrtSessionOptions *so = NULL;
	OrtStatus *st = ort->CreateSessionOptions(&so);
	if (!st)
		st = ort->SetIntraOpNumThreads(so, opt_threads);
	if (!st)
		st = ort->SetInterOpNumThreads(so, 1);
	if (!st)
		st = ort->SetSessionExecutionMode(so, ORT_SEQUENTIAL);
	if (!st)
		st = ort->AddSessionConfigEntry(so, "session.intra_op.allow_spinning", "0");
	if (!st)
		st = ort->SetSessionLogId(so, logid);
	/* Verbose while the session is created: that log says where each node went (on_log). */
	if (!st)
		st = ort->SetSessionLogSeverityLevel(so, ORT_LOGGING_LEVEL_VERBOSE);
	if (st && so)
		ort->ReleaseSessionOptions(so);
	*out = st ? NULL : so;
	return st;
}

/* Creates m's session on target: its providers first (TensorRT falls back to CUDA), the CPU for the
 * rest. Captures where the nodes went in cap; a provider that cannot be appended is left out and
 * its reason appended to why. */
static OrtStatus *create_session(ganglion_rt_model *m, const void *data, size_t len, const char *target,
				 struct capture *cap, char *why, size_t whylen)
{
	static _Atomic unsigned long loads;
	OrtSessionOptions *so = NULL;
	memset(cap, 0, sizeof(*cap));
	snprintf(cap->logid, sizeof(cap->logid), "ganglion-load-%lu", atomic_fetch_add(&loads, 1));
	OrtStatus *st = session_options(&so, cap->logid);
	if (st)
		return st;
	const char *want[2] = {strcmp(target, "tensorrt") == 0 ? "tensorrt" : NULL,
			       strcmp(target, "cpu") != 0 ? "cuda" : NULL};
	for (int i = 0; i < 2; i++) {
		size_t w = strlen(why), at = w ? w + 2 : 0;
		if (!want[i] || at + 1 >= whylen)
			continue;
		if (w)
			memcpy(why + w, "; ", 3);
		if (append_provider(so, want[i], why + at, whylen - at) == 0)
			why[w] = '\0'; /* appended: no reason to give */
	}
	/* One session created at a time: there is one capture slot (loads are rare; runs go on). */
	pthread_mutex_lock(&create_lock);
	pthread_mutex_lock(&capture_lock);
	capturing = cap;
	pthread_mutex_unlock(&capture_lock);
	st = ort->CreateSessionFromArray(env, data, len, so, &m->session);
	pthread_mutex_lock(&capture_lock);
	capturing = NULL;
	pthread_mutex_unlock(&capture_lock);
	pthread_mutex_unlock(&create_lock);
	ort->ReleaseSessionOptions(so);
	return st;
}

/* Sets m->target and m->detail from the placement seen; "" detail when all of it runs on target. */
static void judge_placement(ganglion_rt_model *m, const struct capture *cap, const char *why)
{
	long total = 0, best = -1;
	int bi = -1;
	for (int i = 0; i < cap->n; i++) {
		total += cap->nodes[i];
		/* the accelerator holding nodes wins over the CPU; among accelerators, the busier */
		const char *t = ep_target(cap->eps[i]);
		long weight = cap->nodes[i] + (t && strcmp(t, "cpu") != 0 ? 1L << 40 : 0);
		if (weight > best) {
			best = weight;
			bi = i;
		}
	}
	const char *t = bi >= 0 ? ep_target(cap->eps[bi]) : NULL;
	snprintf(m->target, sizeof(m->target), "%s", t ? t : "cpu");
	m->detail[0] = '\0';
	if (bi < 0) {
		/* no placement lines: only a CPU-only session can say where it ran */
		if (strcmp(m->requested, "cpu") != 0)
			snprintf(m->detail, sizeof(m->detail), "requested %s, running on cpu: %s", m->requested,
				 why[0] ? why : "ONNX Runtime did not report the node placement");
		return;
	}
	if (strcmp(m->target, m->requested) != 0) {
		snprintf(m->detail, sizeof(m->detail), "requested %s, running on %s: %s", m->requested, m->target,
			 why[0] ? why : "ONNX Runtime placed every node elsewhere");
		return;
	}
	if (cap->n > 1) {
		size_t w = (size_t)snprintf(m->detail, sizeof(m->detail), "%ld of %ld nodes on %s; the rest on",
					    cap->nodes[bi], total, m->target);
		for (int i = 0; i < cap->n && w < sizeof(m->detail); i++)
			if (i != bi)
				w += (size_t)snprintf(m->detail + w, sizeof(m->detail) - w, " %s (%ld)",
						      ep_target(cap->eps[i]) ? ep_target(cap->eps[i]) : cap->eps[i],
						      cap->nodes[i]);
	}
}

static int load_model(ganglion_rt_model **out, const void *data, size_t len, const char *name, const char *target,
		      char *err, size_t errlen)
{
	struct capture cap;
	char why[DETAIL_MAX / 2] = "";
	if (strcmp(target, "cpu") != 0 && strcmp(target, "cuda") != 0 && strcmp(target, "tensorrt") != 0)
		return fail(err, errlen, GANGLION_RT_EUNSUPPORTED,
			    "target '%.32s' is not supported (onnxruntime runs cpu, cuda and tensorrt)", target);
	ganglion_rt_model *m = calloc(1, sizeof(*m));
	if (!m)
		return fail(err, errlen, GANGLION_RT_ENOMEM, "%s: out of memory", name);
	snprintf(m->requested, sizeof(m->requested), "%s", target);
	OrtStatus *st = create_session(m, data, len, target, &cap, why, sizeof(why));
	if (st && strcmp(target, "cpu") != 0) {
		/* the accelerator's session failed (no device, driver, memory): try the CPU alone */
		size_t w = strlen(why);
		snprintf(why + w, sizeof(why) - w, "%s%s", w ? "; " : "", status_message(st));
		ort->ReleaseStatus(st);
		st = create_session(m, data, len, "cpu", &cap, why, sizeof(why));
	}
	int rc = st ? fail_status(err, errlen, st, true, name) : read_interface(m, name, err, errlen);
	if (!rc && !(st = ort->CreateRunOptions(&m->run_options)))
		st = ort->RunOptionsSetRunLogSeverityLevel(m->run_options, ORT_LOGGING_LEVEL_WARNING);
	if (!rc && st)
		rc = fail_status(err, errlen, st, false, name);
	if (!rc) {
		judge_placement(m, &cap, why);
		char werr[DETAIL_MAX] = "";
		rc = warm_up(m, werr, sizeof(werr));
		if (rc && m->dynamic) /* guessed shapes for dynamic inputs may not suit the model */
			rc = GANGLION_RT_OK;
		else if (rc)
			rc = fail(err, errlen, rc == GANGLION_RT_ENOMEM ? rc : GANGLION_RT_EMODEL,
				  "%s: warm-up failed: %s", name, werr);
	}
	if (rc) {
		free_model(m);
		return rc;
	}
	m->info = (ganglion_rt_model_info){
		.requested_target = m->requested,
		.target = m->target,
		.target_detail = m->detail,
		.n_inputs = m->n_in,
		.inputs = m->in_info,
		.n_outputs = m->n_out,
		.outputs = m->out_info,
	};
	*out = m;
	return GANGLION_RT_OK;
}

/* ---- inference ---------------------------------------------------------------------------------- */

static void shape_str(char *out, size_t n, int ndim, const int64_t *shape)
{
	size_t w = (size_t)snprintf(out, n, "[");
	for (int i = 0; i < ndim && i < GANGLION_RT_MAX_DIMS && w < n; i++)
		w += (size_t)snprintf(out + w, n - w, "%s%lld", i ? "," : "", (long long)shape[i]);
	if (w < n)
		snprintf(out + w, n - w, "]");
}

/* Checks a caller's input against the declared one (-1 matches any size); 0 when it fits. */
static int check_input(const ganglion_rt_tensor_info *t, const ganglion_rt_input *in, char *err, size_t errlen)
{
	char got[160], want[160];
	bool fits = in->ndim >= 1 && in->ndim <= GANGLION_RT_MAX_DIMS && in->ndim == t->ndim;
	size_t n = 1;
	for (int d = 0; fits && d < in->ndim; d++) {
		fits = in->shape[d] >= 1 && in->shape[d] <= INT_MAX && (t->shape[d] < 0 || t->shape[d] == in->shape[d]);
		fits = fits && !__builtin_mul_overflow(n, (size_t)in->shape[d], &n);
	}
	if (!fits) {
		shape_str(got, sizeof(got), in->ndim >= 0 ? in->ndim : 0, in->shape);
		shape_str(want, sizeof(want), t->ndim, t->shape);
		return fail(err, errlen, GANGLION_RT_EINVAL, "input '%s' has shape %s, the model needs %s", t->name,
			    got, want);
	}
	if (!in->data)
		return fail(err, errlen, GANGLION_RT_EINVAL, "input '%s' has no data", t->name);
	return GANGLION_RT_OK;
}

/* IEEE half to float. */
static float half_to_float(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
	if (exp == 0x1f)
		bits = sign | 0x7f800000u | (man << 13);
	else if (exp)
		bits = sign | ((exp + 112) << 23) | (man << 13);
	else if (!man)
		bits = sign;
	else { /* subnormal: normalize */
		exp = 113;
		while (!(man & 0x400)) {
			man <<= 1;
			exp--;
		}
		bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
	}
	float f;
	memcpy(&f, &bits, sizeof(f));
	return f;
}

/* Copies n elements of type et at src into dst as float32; false for a type it cannot convert. */
static bool to_float(float *dst, const void *src, size_t n, ONNXTensorElementDataType et)
{
	switch (et) {
#define CONVERT(type)                                   \
	for (size_t i = 0; i < n; i++)                  \
		dst[i] = (float)((const type *)src)[i]; \
	return true
	case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: memcpy(dst, src, n * sizeof(float)); return true;
	case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: CONVERT(double);
	case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: CONVERT(int8_t);
	case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: CONVERT(uint8_t);
	case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16: CONVERT(int16_t);
	case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16: CONVERT(uint16_t);
	case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: CONVERT(int32_t);
	case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32: CONVERT(uint32_t);
	case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: CONVERT(int64_t);
	case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64: CONVERT(uint64_t);
	case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL: CONVERT(bool);
#undef CONVERT
	case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
		for (size_t i = 0; i < n; i++)
			dst[i] = half_to_float(((const uint16_t *)src)[i]);
		return true;
	default: return false;
	}
}

/* Copies one result into the caller's output: shape always, values when they fit. */
static int copy_out(ganglion_rt_output *o, OrtValue *v, char *err, size_t errlen)
{
	OrtTensorTypeAndShapeInfo *tsi = NULL;
	ONNXTensorElementDataType et;
	size_t nd = 0, count = 0;
	void *data = NULL;
	int rc = GANGLION_RT_OK;
	OrtStatus *st = ort->GetTensorTypeAndShape(v, &tsi);
	if (!st)
		st = ort->GetTensorElementType(tsi, &et);
	if (!st)
		st = ort->GetDimensionsCount(tsi, &nd);
	if (!st && nd > GANGLION_RT_MAX_DIMS) {
		rc = fail(err, errlen, GANGLION_RT_ERROR, "output '%s' has %zu dimensions", o->name, nd);
		goto out;
	}
	if (!st)
		st = ort->GetDimensions(tsi, o->shape, nd);
	if (!st)
		st = ort->GetTensorShapeElementCount(tsi, &count);
	if (!st)
		st = ort->GetTensorMutableData(v, &data);
	if (st) {
		rc = fail_status(err, errlen, st, false, o->name);
		goto out;
	}
	o->ndim = (int32_t)nd;
	if (count > o->capacity) {
		rc = fail(err, errlen, GANGLION_RT_ESPACE, "output '%s' needs %zu floats, the buffer holds %zu",
			  o->name, count, o->capacity);
		goto out;
	}
	if (count && !o->data)
		rc = fail(err, errlen, GANGLION_RT_EINVAL, "output '%s' has no buffer", o->name);
	else if (count && !to_float(o->data, data, count, et))
		rc = fail(err, errlen, GANGLION_RT_EUNSUPPORTED,
			  "output '%s' has an element type (%d) that does not "
			  "convert to float32",
			  o->name, (int)et);
out:
	if (tsi)
		ort->ReleaseTensorTypeAndShapeInfo(tsi);
	return rc;
}

static int infer_model(ganglion_rt_model *m, const ganglion_rt_input *inputs, size_t n_inputs,
		       ganglion_rt_output *outputs, size_t n_outputs, char *err, size_t errlen)
{
	OrtValue *in_vals[64] = {NULL}, *out_vals[64] = {NULL};
	const char *out_names[64];
	size_t order[64];
	int rc = GANGLION_RT_OK;
	if (n_inputs != m->n_in)
		return fail(err, errlen, GANGLION_RT_EINVAL, "got %zu inputs, the model has %zu", n_inputs, m->n_in);
	if (n_outputs < 1 || n_outputs > m->n_out)
		return fail(err, errlen, GANGLION_RT_EINVAL, "asked for %zu outputs, the model has %zu", n_outputs,
			    m->n_out);
	if (m->n_in > 64 || n_outputs > 64)
		return fail(err, errlen, GANGLION_RT_EUNSUPPORTED, "more than 64 inputs or outputs");
	/* inputs in the model's order, checked before anything runs */
	for (size_t i = 0; i < n_inputs; i++) {
		size_t k = 0;
		while (k < m->n_in && (!inputs[i].name || strcmp(m->in_names[k], inputs[i].name) != 0))
			k++;
		if (k == m->n_in || in_vals[k]) {
			rc = fail(err, errlen, GANGLION_RT_EINVAL, "input '%.64s' is %s",
				  inputs[i].name ? inputs[i].name : "(null)",
				  k == m->n_in ? "not an input of the model" : "given twice");
			goto out;
		}
		if ((rc = check_input(&m->in_info[k], &inputs[i], err, errlen)))
			goto out;
		size_t n = 1;
		for (int d = 0; d < inputs[i].ndim; d++)
			n *= (size_t)inputs[i].shape[d];
		/* ORT reads the caller's memory in place; it never writes to an input */
		OrtStatus *st = ort->CreateTensorWithDataAsOrtValue(cpu_mem, (void *)inputs[i].data, n * sizeof(float),
								    inputs[i].shape, (size_t)inputs[i].ndim,
								    ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &in_vals[k]);
		if (st) {
			rc = fail_status(err, errlen, st, false, inputs[i].name);
			goto out;
		}
	}
	for (size_t i = 0; i < n_outputs; i++) {
		size_t k = 0;
		while (k < m->n_out && (!outputs[i].name || strcmp(m->out_names[k], outputs[i].name) != 0))
			k++;
		if (k == m->n_out) {
			rc = fail(err, errlen, GANGLION_RT_EINVAL, "output '%.64s' is not an output of the model",
				  outputs[i].name ? outputs[i].name : "(null)");
			goto out;
		}
		for (size_t j = 0; j < i; j++)
			if (order[j] == k) {
				rc = fail(err, errlen, GANGLION_RT_EINVAL, "output '%s' is asked for twice",
					  outputs[i].name);
				goto out;
			}
		order[i] = k;
		out_names[i] = m->out_names[k];
	}
	OrtStatus *st = ort->Run(m->session, m->run_options, (const char *const *)m->in_names,
				 (const OrtValue *const *)in_vals, m->n_in, out_names, n_outputs, out_vals);
	if (st) {
		rc = fail_status(err, errlen, st, false, "run");
		goto out;
	}
	for (size_t i = 0; i < n_outputs; i++) {
		int r = copy_out(&outputs[i], out_vals[i], err, errlen);
		if (r && (!rc || rc == GANGLION_RT_ESPACE))
			rc = r; /* ESPACE for one output still fills the others' shapes */
	}
out:
	for (size_t i = 0; i < 64; i++) {
		if (in_vals[i])
			ort->ReleaseValue(in_vals[i]);
		if (out_vals[i])
			ort->ReleaseValue(out_vals[i]);
	}
	return rc;
}

/* ---- the C entry points ------------------------------------------------------------------------- */

static uint64_t meminfo_available(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	unsigned long long kb = 0;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return (uint64_t)kb * 1024;
}

static void cpu_model(char *out, size_t n)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[512];
	out[0] = '\0';
	while (f && fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');
		if (strncmp(line, "model name", 10) == 0 && colon) {
			colon[strcspn(colon, "\n")] = '\0';
			snprintf(out, n, "%s", colon + (colon[1] == ' ' ? 2 : 1));
			break;
		}
	}
	if (f)
		fclose(f);
}

/* Which accelerator providers load here: probed once (loading a provider's libraries is slow). */
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static bool have_cuda, have_tensorrt;

static void probe(void)
{
	char why[256];
	OrtSessionOptions *so = NULL;
	if (!ort->CreateSessionOptions(&so)) {
		have_cuda = append_provider(so, "cuda", why, sizeof(why)) == 0;
		ort->ReleaseSessionOptions(so);
	}
	so = NULL;
	if (!ort->CreateSessionOptions(&so)) {
		have_tensorrt = append_provider(so, "tensorrt", why, sizeof(why)) == 0;
		ort->ReleaseSessionOptions(so);
	}
}

static int rt_capabilities(ganglion_rt_caps *out, char *err, size_t errlen)
{
	if (!out)
		return fail(err, errlen, GANGLION_RT_EINVAL, "capabilities: out is NULL");
	int rc = ensure_init(err, errlen);
	if (rc)
		return rc;
	memset(out, 0, sizeof(*out));
	ganglion_rt_target_caps *c = &out->targets[out->n_targets++];
	char model[96];
	snprintf(c->name, sizeof(c->name), "cpu");
	cpu_model(model, sizeof(model));
	snprintf(c->device, sizeof(c->device), "%s%s%ld threads", model, model[0] ? ", " : "",
		 sysconf(_SC_NPROCESSORS_ONLN));
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
	c->mem_total_bytes = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
	c->mem_available_bytes = meminfo_available();
	pthread_once(&probe_once, probe);
	char gpu[128];
	nvidia_gpu_name(gpu, sizeof(gpu), opt_device);
	for (int k = 0; k < 2; k++) {
		if (!(k == 0 ? have_cuda : have_tensorrt))
			continue;
		c = &out->targets[out->n_targets++];
		snprintf(c->name, sizeof(c->name), "%s", k == 0 ? "cuda" : "tensorrt");
		snprintf(c->device, sizeof(c->device), "%s", gpu);
	}
	return GANGLION_RT_OK;
}

/* ---- the highest opset ------------------------------------------------------------------------- */

/* ONNX Runtime's compatibility table (onnxruntime.ai/docs/reference/compatibility.html) lists the
 * opset each release implements, but the copy we could read stops at 1.20 (opset 21), and the
 * figure belongs to the library actually loaded, not to the one we built against. So the library is
 * asked: by default ONNX Runtime refuses a model stamped with an opset newer than the last ONNX
 * release it knows ("ONNX Runtime only *guarantees* support for models stamped with official
 * released onnx opset versions"; session.allow_released_opsets_only, set here explicitly), so the
 * highest opset at which a one-node Identity model still loads is its figure. Found by bisection
 * between 7 (the oldest every release runs) and 127, once per process: about seven tiny sessions,
 * a few milliseconds each. */
static const unsigned char identity_model[] = {
	0x08, 0x08,                                                       /* ir_version 8 */
	0x3a, 0x37,                                                       /* graph, 55 bytes: */
	0x0a, 0x10, 0x0a, 0x01, 'x',  0x12, 0x01, 'y',  0x22, 0x08,       /*   node: x -> */
	'I',  'd',  'e',  'n',  't',  'i',  't',  'y',                    /*   Identity -> y */
	0x12, 0x01, 'g',                                                  /*   name g */
	0x5a, 0x0f, 0x0a, 0x01, 'x',  0x12, 0x0a, 0x0a, 0x08, 0x08, 0x01, /*   input x: float */
	0x12, 0x04, 0x0a, 0x02, 0x08, 0x01,                               /*   of shape [1] */
	0x62, 0x0f, 0x0a, 0x01, 'y',  0x12, 0x0a, 0x0a, 0x08, 0x08, 0x01, /*   output y: float */
	0x12, 0x04, 0x0a, 0x02, 0x08, 0x01,                               /*   of shape [1] */
	0x42, 0x04, 0x0a, 0x00, 0x10, 0x00 /* opset_import {domain "", version (set below)} */
};

static bool loads_at_opset(int opset)
{
	unsigned char model[sizeof(identity_model)];
	OrtSessionOptions *so = NULL;
	OrtSession *session = NULL;
	memcpy(model, identity_model, sizeof(model));
	model[sizeof(model) - 1] = (unsigned char)opset; /* a one-byte varint: opset < 128 */
	OrtStatus *st = ort->CreateSessionOptions(&so);
	if (!st)
		st = ort->SetIntraOpNumThreads(so, 1);
	if (!st)
		st = ort->SetInterOpNumThreads(so, 1);
	if (!st)
		st = ort->AddSessionConfigEntry(so, "session.allow_released_opsets_only", "1");
	if (!st)
		st = ort->SetSessionLogSeverityLevel(so, ORT_LOGGING_LEVEL_FATAL);
	if (!st)
		st = ort->CreateSessionFromArray(env, model, sizeof(model), so, &session);
	bool ok = !st;
	if (st)
		ort->ReleaseStatus(st);
	if (session)
		ort->ReleaseSession(session);
	if (so)
		ort->ReleaseSessionOptions(so);
	return ok;
}

static pthread_once_t opset_once = PTHREAD_ONCE_INIT;
static int max_opset;

static void find_opset(void)
{
	int lo = 7, hi = 127; /* lo loads (checked first); hi + 1 is known not to */
	if (!loads_at_opset(lo))
		return; /* the probe itself does not work here: say nothing */
	while (lo < hi) {
		int mid = lo + (hi - lo + 1) / 2;
		if (loads_at_opset(mid))
			lo = mid;
		else
			hi = mid - 1;
	}
	max_opset = lo < 127 ? lo : 0; /* everything loading means the check is off: no figure */
}

static int rt_onnx_opset(void)
{
	char err[256];
	if (ensure_init(err, sizeof(err)))
		return 0;
	pthread_once(&opset_once, find_opset);
	return max_opset;
}

static int read_file(void **out, size_t *len, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	*out = NULL;
	if (!f)
		return fail(err, errlen, errno == ENOENT ? GANGLION_RT_ENOTFOUND : GANGLION_RT_ERROR, "%s: %s", path,
			    strerror(errno));
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
		fclose(f);
		return fail(err, errlen, GANGLION_RT_EINVAL, "%s: not a regular file", path);
	}
	char *buf = malloc((size_t)st.st_size + 1);
	size_t n = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
	int bad = !buf || ferror(f) || n != (size_t)st.st_size;
	fclose(f);
	if (bad) {
		free(buf);
		return fail(err, errlen, buf ? GANGLION_RT_ERROR : GANGLION_RT_ENOMEM, "%s: cannot read it", path);
	}
	*out = buf;
	*len = n;
	return GANGLION_RT_OK;
}

static int rt_load(ganglion_rt_model **out, const char *path, const char *target, char *err, size_t errlen)
{
	void *buf = NULL;
	size_t len = 0;
	if (!out)
		return fail(err, errlen, GANGLION_RT_EINVAL, "load: out is NULL");
	*out = NULL;
	if (!path || !target)
		return fail(err, errlen, GANGLION_RT_EINVAL, "load: path and target are required");
	int rc = ensure_init(err, errlen);
	if (!rc)
		rc = read_file(&buf, &len, path, err, errlen);
	if (!rc)
		rc = load_model(out, buf, len, path, target, err, errlen);
	free(buf);
	return rc;
}

static int rt_load_buffer(ganglion_rt_model **out, const void *data, size_t len, const char *name, const char *target,
			  char *err, size_t errlen)
{
	if (!out)
		return fail(err, errlen, GANGLION_RT_EINVAL, "load_buffer: out is NULL");
	*out = NULL;
	if (!data || !target)
		return fail(err, errlen, GANGLION_RT_EINVAL, "load_buffer: data and target are required");
	int rc = ensure_init(err, errlen);
	return rc ? rc : load_model(out, data, len, name ? name : "model", target, err, errlen);
}

static const ganglion_rt_model_info *rt_describe(const ganglion_rt_model *model)
{
	return model ? &model->info : NULL;
}

static int rt_infer(ganglion_rt_model *model, const ganglion_rt_input *inputs, size_t n_inputs,
		    ganglion_rt_output *outputs, size_t n_outputs, char *err, size_t errlen)
{
	if (!model || (n_inputs && !inputs) || (n_outputs && !outputs) || !n_inputs)
		return fail(err, errlen, GANGLION_RT_EINVAL, "infer: model, inputs and outputs are required");
	return infer_model(model, inputs, n_inputs, outputs, n_outputs, err, errlen);
}

static void rt_free_model(ganglion_rt_model *model)
{
	free_model(model);
}

static const char *const formats[] = {"onnx", NULL};
static char version[64];
static ganglion_runtime table = {
	.abi_version = GANGLION_RUNTIME_ABI_VERSION,
	.struct_size = sizeof(ganglion_runtime),
	.name = "onnxruntime",
	.version = version,
	.formats = formats,
	.init = rt_init,
	.capabilities = rt_capabilities,
	.load = rt_load,
	.describe = rt_describe,
	.infer = rt_infer,
	.free_model = rt_free_model,
	.load_buffer = rt_load_buffer,
	.onnx_opset = rt_onnx_opset,
};
static pthread_once_t version_once = PTHREAD_ONCE_INIT;

/* The version of the library really loaded, not of the headers. */
static void set_version(void)
{
	snprintf(version, sizeof(version), PLUGIN_VERSION " (ONNX Runtime %s)", OrtGetApiBase()->GetVersionString());
}

/* The plugin's one exported symbol. */
GANGLION_RT_EXPORT const ganglion_runtime *ganglion_runtime_v1(void);
GANGLION_RT_EXPORT const ganglion_runtime *ganglion_runtime_v1(void)
{
	pthread_once(&version_once, set_version);
	return &table;
}
