/* Unit tests for the runtime plugins (agents/runtimes/ganglion-runtime-PLUGIN.so), one binary per
 * plugin from this file (PLUGIN is "opencv" or "onnxruntime"), each loading its plugin with dlopen
 * as the agent does: ABI, inference against numpy references and against the reference tensors of
 * third-party models (libonnx-testdata), concurrent infer() on one model, the target really used
 * (opencl on PoCL, cpu when OpenCV falls back; cpu with the reason when CUDA is missing), clear
 * errors for bad files and bad calls, and (onnxruntime) the same outputs as the OpenCV plugin.
 * Finds the plugins and the generated models under $GANGLION_BUILDDIR (set by make check), else
 * the build directory it was compiled for. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dlfcn.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "runtime.h"

extern char **environ;

static const ganglion_runtime *rt;
static const ganglion_runtime *opencv; /* the OpenCV plugin beside ONNX Runtime's, when built */
static bool is_opencv;
static char builddir[1024];
static char tmpdir[1100];
static int expect_opencl; /* an OpenCL device is there: PoCL installed, or GANGLION_EXPECT_OPENCL=1 */

/* A model file's sample from its metadata JSON: input x, expected output y, tolerance. */
struct sample {
	float x[4096];
	size_t nx;
	int64_t xshape[GANGLION_RT_MAX_DIMS];
	int xdims;
	float y[64];
	size_t ny;
	double tolerance;
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void model_path(char *out, size_t n, const char *file)
{
	snprintf(out, n, "%s/tests/models/%s", builddir, file);
}

static void read_sample(struct sample *s, const char *name)
{
	char path[1200];
	json_error_t jerr;
	snprintf(path, sizeof(path), "%s/tests/models/%s.json", builddir, name);
	json_t *meta = json_load_file(path, 0, &jerr);
	assert_non_null(meta);
	json_t *sample = json_object_get(meta, "sample");
	json_t *xs = json_object_get(json_object_get(sample, "inputs"), "x");
	json_t *ys = json_object_get(json_object_get(sample, "outputs"), "y");
	json_t *shape = json_object_get(json_array_get(json_object_get(meta, "inputs"), 0), "shape");
	assert_true(json_array_size(xs) <= sizeof(s->x) / sizeof(s->x[0]));
	assert_true(json_array_size(ys) <= 64);
	memset(s, 0, sizeof(*s));
	s->nx = json_array_size(xs);
	s->ny = json_array_size(ys);
	for (size_t i = 0; i < s->nx; i++)
		s->x[i] = (float)json_number_value(json_array_get(xs, i));
	for (size_t i = 0; i < s->ny; i++)
		s->y[i] = (float)json_number_value(json_array_get(ys, i));
	s->xdims = (int)json_array_size(shape);
	for (int i = 0; i < s->xdims; i++)
		s->xshape[i] = json_integer_value(json_array_get(shape, (size_t)i));
	s->tolerance = json_number_value(json_object_get(sample, "tolerance"));
	json_decref(meta);
}

static ganglion_rt_input sample_input(const struct sample *s)
{
	ganglion_rt_input in = {.name = "x", .ndim = s->xdims, .data = s->x};
	memcpy(in.shape, s->xshape, sizeof(in.shape));
	return in;
}

/* Largest absolute difference between y and the sample's expected output. */
static double max_diff(const struct sample *s, const float *y)
{
	double d = 0;
	for (size_t i = 0; i < s->ny; i++) {
		double e = y[i] > s->y[i] ? y[i] - s->y[i] : s->y[i] - y[i];
		if (e > d)
			d = e;
	}
	return d;
}

static ganglion_rt_model *load_ok(const char *file, const char *target)
{
	char path[1200], err[512] = "";
	ganglion_rt_model *m = NULL;
	model_path(path, sizeof(path), file);
	int rc = rt->load(&m, path, target, err, sizeof(err));
	if (rc)
		fail_msg("load %s on %s: %d %s", file, target, rc, err);
	assert_non_null(m);
	return m;
}

/* Runs the sample through m; returns the max deviation from the expected output. */
static double run_sample(ganglion_rt_model *m, const struct sample *s)
{
	char err[512] = "";
	float y[64] = {0};
	ganglion_rt_input in = sample_input(s);
	ganglion_rt_output out = {.name = "y", .data = y, .capacity = 64};
	int rc = rt->infer(m, &in, 1, &out, 1, err, sizeof(err));
	if (rc)
		fail_msg("infer: %d %s", rc, err);
	assert_int_equal(out.ndim, 2);
	assert_int_equal(out.shape[0], 1);
	assert_int_equal(out.shape[1], (int64_t)s->ny);
	return max_diff(s, y);
}

static void test_abi(void **state)
{
	assert_int_equal(rt->abi_version, GANGLION_RUNTIME_ABI_VERSION);
	assert_true(rt->struct_size >= sizeof(ganglion_runtime));
	assert_string_equal(rt->name, is_opencv ? "opencv-dnn" : "onnxruntime");
	assert_non_null(strstr(rt->version, is_opencv ? "OpenCV 4." : "ONNX Runtime 1."));
	assert_string_equal(rt->formats[0], "onnx");
	assert_null(rt->formats[1]);
	assert_non_null(rt->init);
	assert_non_null(rt->capabilities);
	assert_non_null(rt->load);
	assert_non_null(rt->describe);
	assert_non_null(rt->infer);
	assert_non_null(rt->free_model);
	assert_non_null(rt->load_buffer);
	/* init is once only */
	char err[512] = "";
	assert_int_equal(rt->init(NULL, err, sizeof(err)), GANGLION_RT_EINVAL);
	assert_non_null(strstr(err, "already"));
}

static void test_capabilities(void **state)
{
	ganglion_rt_caps caps;
	char err[512] = "";
	assert_int_equal(rt->capabilities(&caps, err, sizeof(err)), 0);
	assert_true(caps.n_targets >= 1);
	assert_string_equal(caps.targets[0].name, "cpu");
	assert_true(caps.targets[0].mem_total_bytes > 0);
	assert_true(caps.targets[0].mem_available_bytes > 0);
	int opencl = 0;
	for (size_t i = 0; i < caps.n_targets; i++) {
		printf("# target %s: %s, %llu MiB\n", caps.targets[i].name, caps.targets[i].device,
		       (unsigned long long)(caps.targets[i].mem_total_bytes >> 20));
		opencl = opencl || strcmp(caps.targets[i].name, "opencl") == 0;
	}
	if (is_opencv && expect_opencl)
		assert_true(opencl);
}

static void test_cpu_matches_reference(void **state)
{
	struct sample s;
	const char *names[] = {"v1", "v2", "conv"};
	for (size_t k = 0; k < 3; k++) {
		char file[64];
		snprintf(file, sizeof(file), "%s.onnx", names[k]);
		read_sample(&s, names[k]);
		double t0 = now_ms();
		ganglion_rt_model *m = load_ok(file, "cpu");
		double t1 = now_ms();
		const ganglion_rt_model_info *info = rt->describe(m);
		assert_string_equal(info->target, "cpu");
		assert_string_equal(info->requested_target, "cpu");
		assert_string_equal(info->target_detail, "");
		assert_int_equal(info->n_inputs, 1);
		assert_string_equal(info->inputs[0].name, "x");
		assert_int_equal(info->inputs[0].dtype, GANGLION_RT_FLOAT32);
		assert_int_equal(info->inputs[0].ndim, s.xdims);
		for (int d = 0; d < s.xdims; d++)
			assert_int_equal(info->inputs[0].shape[d], s.xshape[d]);
		assert_int_equal(info->n_outputs, 1);
		assert_string_equal(info->outputs[0].name, "y");
		assert_int_equal(info->outputs[0].ndim, 2);
		assert_int_equal(info->outputs[0].shape[1], (int64_t)s.ny);
		double d = run_sample(m, &s);
		if (d > s.tolerance)
			fail_msg("%s on cpu: off by %g (tolerance %g)", names[k], d, s.tolerance);
		double t2 = now_ms();
		for (int i = 0; i < 200; i++)
			run_sample(m, &s);
		printf("# timing %s cpu: load %.1f ms (with warm-up), infer %.3f ms\n", names[k], t1 - t0,
		       (now_ms() - t2) / 200);
		rt->free_model(m);
	}
}

/* The self-test must be able to fail: bad.onnx is a valid model whose sample claims v1's output. */
static void test_bad_model_fails_self_test(void **state)
{
	struct sample s;
	read_sample(&s, "bad");
	ganglion_rt_model *m = load_ok("bad.onnx", "cpu");
	assert_true(run_sample(m, &s) > 100 * s.tolerance);
	rt->free_model(m);
}

struct worker {
	ganglion_rt_model *model;
	const struct sample *s;
	int iterations;
	int errors;
	char first_err[512];
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < w->iterations; i++) {
		float y[64];
		char err[512] = "";
		ganglion_rt_input in = sample_input(w->s);
		ganglion_rt_output out = {.name = "y", .data = y, .capacity = 64};
		int rc = w->model ? rt->infer(w->model, &in, 1, &out, 1, err, sizeof(err)) : -1;
		if (rc || max_diff(w->s, y) > w->s->tolerance) {
			if (!w->errors++)
				snprintf(w->first_err, sizeof(w->first_err), "rc %d %s diff %g", rc, err,
					 max_diff(w->s, y));
		}
	}
	return NULL;
}

static void run_concurrently(ganglion_rt_model *m, const struct sample *s, int threads, int iterations)
{
	pthread_t tid[8];
	struct worker w[8];
	double t0 = now_ms();
	for (int i = 0; i < threads; i++) {
		w[i] = (struct worker){.model = m, .s = s, .iterations = iterations};
		assert_int_equal(pthread_create(&tid[i], NULL, worker_run, &w[i]), 0);
	}
	for (int i = 0; i < threads; i++)
		pthread_join(tid[i], NULL);
	printf("# timing %s: %d threads x %d infers in %.0f ms\n", rt->describe(m)->target, threads, iterations,
	       now_ms() - t0);
	for (int i = 0; i < threads; i++)
		if (w[i].errors)
			fail_msg("thread %d: %d errors, first: %s", i, w[i].errors, w[i].first_err);
}

static void test_concurrent_infer_cpu(void **state)
{
	struct sample s;
	read_sample(&s, "v1");
	ganglion_rt_model *m = load_ok("v1.onnx", "cpu");
	run_concurrently(m, &s, 4, 200);
	rt->free_model(m);
}

static void test_opencl_target_is_real(void **state)
{
	struct sample s;
	const char *names[] = {"conv", "v1"};
	for (size_t k = 0; k < 2; k++) {
		char file[64];
		snprintf(file, sizeof(file), "%s.onnx", names[k]);
		read_sample(&s, names[k]);
		double t0 = now_ms();
		ganglion_rt_model *m = load_ok(file, "opencl");
		double t1 = now_ms();
		const ganglion_rt_model_info *info = rt->describe(m);
		printf("# %s: requested %s, runs on %s %s\n", names[k], info->requested_target, info->target,
		       info->target_detail);
		assert_string_equal(info->requested_target, "opencl");
		if (expect_opencl) {
			/* CI has pocl-opencl-icd: the plugin must get OpenCL working there, not fall back */
			assert_string_equal(info->target, "opencl");
			assert_string_equal(info->target_detail, "");
		} else {
			assert_string_equal(info->target, "cpu");
			assert_true(info->target_detail[0] != '\0');
		}
		double d = run_sample(m, &s);
		if (d > s.tolerance)
			fail_msg("%s on %s: off by %g (tolerance %g)", names[k], info->target, d, s.tolerance);
		double t2 = now_ms();
		for (int i = 0; i < 100; i++)
			run_sample(m, &s);
		printf("# timing %s %s: load %.1f ms (with warm-up: first OpenCL inference), infer %.3f ms\n", names[k],
		       info->target, t1 - t0, (now_ms() - t2) / 100);
		if (k == 0)
			run_concurrently(m, &s, 4, 50); /* other threads: own OpenCL queues, per-thread state */
		rt->free_model(m);
	}
}

/* Runs this binary again as "--fallback-child TARGET" with one more environment variable; the
 * child loads conv.onnx on opencl and checks that the plugin reports TARGET (cpu with a reason). */
static void run_fallback_child(const char *var, const char *target)
{
	char self[1024];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	assert_true(n > 0);
	self[n] = '\0';
	size_t envc = 0;
	while (environ[envc])
		envc++;
	char **env = calloc(envc + 2, sizeof(char *));
	assert_non_null(env);
	env[0] = (char *)var;
	memcpy(env + 1, environ, envc * sizeof(char *));
	char *argv[] = {self, "--fallback-child", (char *)target, NULL};
	pid_t pid;
	assert_int_equal(posix_spawn(&pid, self, NULL, NULL, argv, env), 0);
	free(env);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("fallback child with %s failed (status %#x)", var, status);
}

static void test_opencl_fallback_reported(void **state)
{
	/* DNN's own device policy switches non-GPU devices (PoCL) to the CPU without an error */
	const char *gpu = getenv("GANGLION_OPENCL_IS_GPU");
	run_fallback_child("OPENCV_DNN_OPENCL_ALLOW_ALL_DEVICES=0", gpu && atoi(gpu) ? "opencl" : "cpu");
	/* no device matches: OpenCV disables OpenCL, layers run their CPU code */
	run_fallback_child("OPENCV_OPENCL_DEVICE=no-such-platform::", "cpu");
	/* no OpenCL runtime at all */
	run_fallback_child("OPENCV_OPENCL_RUNTIME=disabled", "cpu");
}

static int fallback_child(const char *target)
{
	struct sample s;
	char path[1200], err[512] = "";
	float y[64];
	ganglion_rt_model *m = NULL;
	read_sample(&s, "conv");
	model_path(path, sizeof(path), "conv.onnx");
	if (rt->load(&m, path, "opencl", err, sizeof(err))) {
		fprintf(stderr, "child: load failed: %s\n", err);
		return 1;
	}
	const ganglion_rt_model_info *info = rt->describe(m);
	ganglion_rt_input in = sample_input(&s);
	ganglion_rt_output out = {.name = "y", .data = y, .capacity = 64};
	int rc = rt->infer(m, &in, 1, &out, 1, err, sizeof(err));
	printf("# child: runs on %s: %s\n", info->target, info->target_detail);
	int honest =
		strcmp(info->target, "cpu") == 0 ? strlen(info->target_detail) > 10 : info->target_detail[0] == '\0';
	int ok = strcmp(info->target, target) == 0 && honest && rc == 0 && max_diff(&s, y) <= s.tolerance;
	rt->free_model(m);
	return ok ? 0 : 1;
}

static void write_file(const char *path, const void *data, size_t n)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, n, f), n);
	fclose(f);
}

static void expect_load_error(const char *path, const char *target, int code, const char *needle)
{
	char err[512] = "";
	ganglion_rt_model *m = (ganglion_rt_model *)&err; /* must be reset to NULL */
	int rc = rt->load(&m, path, target, err, sizeof(err));
	printf("# load %s: %d %s\n", strrchr(path, '/') ? strrchr(path, '/') + 1 : path, rc, err);
	assert_int_equal(rc, code);
	assert_null(m);
	assert_non_null(strstr(err, needle));
	assert_null(strchr(err, '\n'));
}

static void test_bad_files_rejected(void **state)
{
	char path[1200], v1[1200];
	model_path(v1, sizeof(v1), "v1.onnx");

	snprintf(path, sizeof(path), "%s/missing.onnx", tmpdir);
	expect_load_error(path, "cpu", GANGLION_RT_ENOTFOUND, "missing.onnx");

	snprintf(path, sizeof(path), "%s/empty.onnx", tmpdir);
	write_file(path, "", 0);
	expect_load_error(path, "cpu", GANGLION_RT_EMODEL, is_opencv ? "not an ONNX model" : "empty.onnx");

	snprintf(path, sizeof(path), "%s/text.onnx", tmpdir);
	const char *text = "this is not a model\n";
	write_file(path, text, strlen(text));
	expect_load_error(path, "cpu", GANGLION_RT_EMODEL, "text.onnx");

	/* a truncated copy of v1: every prefix must fail cleanly, none may crash */
	FILE *f = fopen(v1, "rb");
	assert_non_null(f);
	unsigned char buf[4096];
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	assert_true(n > 100);
	snprintf(path, sizeof(path), "%s/truncated.onnx", tmpdir);
	for (size_t cut = 1; cut < n; cut += 7) {
		char err[512] = "";
		ganglion_rt_model *m = NULL;
		write_file(path, buf, cut);
		int rc = rt->load(&m, path, "cpu", err, sizeof(err));
		if (rc == 0) /* a prefix may still be a complete, smaller protobuf; it must then work */
			rt->free_model(m);
		else
			assert_true(rc == GANGLION_RT_EMODEL || rc == GANGLION_RT_EUNSUPPORTED);
	}
	write_file(path, buf, n / 2);
	expect_load_error(path, is_opencv ? "opencl" : "cpu", GANGLION_RT_EMODEL, "truncated.onnx");

	/* random bytes */
	srand(42);
	for (size_t i = 0; i < n; i++)
		buf[i] = (unsigned char)rand();
	snprintf(path, sizeof(path), "%s/random.onnx", tmpdir);
	write_file(path, buf, n);
	expect_load_error(path, "cpu", GANGLION_RT_EMODEL, "random.onnx");

	/* a directory */
	expect_load_error(tmpdir, "cpu", GANGLION_RT_EINVAL, "not a regular file");

	/* a target this plugin does not know at all */
	expect_load_error(v1, is_opencv ? "cuda" : "opencl", GANGLION_RT_EUNSUPPORTED, is_opencv ? "cuda" : "opencl");
}

static void test_bad_calls_rejected(void **state)
{
	struct sample s;
	char err[512];
	float y[64];
	read_sample(&s, "v1");
	ganglion_rt_model *m = load_ok("v1.onnx", "cpu");
	ganglion_rt_input in = sample_input(&s);
	ganglion_rt_output out = {.name = "y", .data = y, .capacity = 64};

	ganglion_rt_input wrong = in;
	wrong.name = "z";
	assert_int_equal(rt->infer(m, &wrong, 1, &out, 1, err, sizeof(err)), GANGLION_RT_EINVAL);
	assert_non_null(strstr(err, "'z'"));

	wrong = in;
	wrong.shape[1] = 5;
	assert_int_equal(rt->infer(m, &wrong, 1, &out, 1, err, sizeof(err)), GANGLION_RT_EINVAL);
	assert_non_null(strstr(err, "[1,5]"));
	assert_non_null(strstr(err, "[1,4]"));

	ganglion_rt_output wrong_out = out;
	wrong_out.name = "nope";
	assert_int_equal(rt->infer(m, &in, 1, &wrong_out, 1, err, sizeof(err)), GANGLION_RT_EINVAL);

	ganglion_rt_output small = {.name = "y", .data = y, .capacity = 2};
	assert_int_equal(rt->infer(m, &in, 1, &small, 1, err, sizeof(err)), GANGLION_RT_ESPACE);
	assert_int_equal(small.ndim, 2);
	assert_int_equal(small.shape[1], 3);

	/* no error buffer is fine too */
	assert_int_equal(rt->infer(m, &wrong, 1, &out, 1, NULL, 0), GANGLION_RT_EINVAL);
	assert_int_equal(rt->infer(m, NULL, 0, &out, 1, err, sizeof(err)), GANGLION_RT_EINVAL);

	/* a failed call leaves the model usable */
	assert_true(run_sample(m, &s) <= s.tolerance);
	rt->free_model(m);
	rt->free_model(NULL);
}

/* The swap pattern: v2 loads beside v1 while v1 serves, then v1 goes. */
static void test_two_versions_side_by_side(void **state)
{
	struct sample s1, s2;
	read_sample(&s1, "v1");
	read_sample(&s2, "v2");
	ganglion_rt_model *m1 = load_ok("v1.onnx", "cpu");
	ganglion_rt_model *m2 = load_ok("v2.onnx", "cpu");
	assert_true(run_sample(m1, &s1) <= s1.tolerance);
	assert_true(run_sample(m2, &s2) <= s2.tolerance);
	assert_true(run_sample(m2, &s1) > 100 * s1.tolerance);
	rt->free_model(m1);
	assert_true(run_sample(m2, &s2) <= s2.tolerance);
	rt->free_model(m2);
}

/* ---- third-party models: tests/models/thirdparty/CASE.{onnx,json} from libonnx-testdata ---- */

#define TP_MAX 4
/* A model's sample from its metadata JSON, any names and counts (the reference input and output). */
struct tsample {
	size_t nin, nout;
	const char *in_names[TP_MAX], *out_names[TP_MAX];
	float *in[TP_MAX], *want[TP_MAX], *got[TP_MAX];
	size_t want_n[TP_MAX];
	int64_t in_shape[TP_MAX][GANGLION_RT_MAX_DIMS];
	int in_ndim[TP_MAX];
	double tolerance;
	json_t *meta;
};

static void tsample_load(struct tsample *s, const char *dir, const char *name)
{
	char path[1300];
	json_error_t jerr;
	const char *k;
	json_t *v;
	memset(s, 0, sizeof(*s));
	snprintf(path, sizeof(path), "%s/tests/models/%s%s.json", builddir, dir, name);
	s->meta = json_load_file(path, 0, &jerr);
	if (!s->meta)
		fail_msg("%s: %s", path, jerr.text);
	json_t *sample = json_object_get(s->meta, "sample");
	json_object_foreach(json_object_get(sample, "inputs"), k, v) {
		assert_true(s->nin < TP_MAX);
		size_t i = s->nin++;
		s->in_names[i] = k;
		s->in[i] = calloc(json_array_size(v) + 1, sizeof(float));
		for (size_t j = 0; j < json_array_size(v); j++)
			s->in[i][j] = (float)json_number_value(json_array_get(v, j));
		json_t *spec;
		size_t si;
		json_array_foreach(json_object_get(s->meta, "inputs"), si, spec) {
			if (strcmp(json_string_value(json_object_get(spec, "name")), k) != 0)
				continue;
			json_t *shape = json_object_get(spec, "shape");
			s->in_ndim[i] = (int)json_array_size(shape);
			for (int d = 0; d < s->in_ndim[i]; d++)
				s->in_shape[i][d] = json_integer_value(json_array_get(shape, (size_t)d));
		}
		assert_true(s->in_ndim[i] > 0);
	}
	json_object_foreach(json_object_get(sample, "outputs"), k, v) {
		assert_true(s->nout < TP_MAX);
		size_t i = s->nout++;
		s->out_names[i] = k;
		s->want_n[i] = json_array_size(v);
		s->want[i] = calloc(s->want_n[i] + 1, sizeof(float));
		s->got[i] = calloc(s->want_n[i] + 1, sizeof(float));
		for (size_t j = 0; j < s->want_n[i]; j++)
			s->want[i][j] = (float)json_number_value(json_array_get(v, j));
	}
	s->tolerance = json_number_value(json_object_get(sample, "tolerance"));
}

static void tsample_free(struct tsample *s)
{
	for (size_t i = 0; i < TP_MAX; i++) {
		free(s->in[i]);
		free(s->want[i]);
		free(s->got[i]);
	}
	json_decref(s->meta);
}

/* Runs s through m on runtime r (results in s->got); returns infer()'s code. */
static int tsample_run(const ganglion_runtime *r, ganglion_rt_model *m, struct tsample *s, char *err, size_t errlen)
{
	ganglion_rt_input in[TP_MAX];
	ganglion_rt_output out[TP_MAX];
	memset(in, 0, sizeof(in));
	memset(out, 0, sizeof(out));
	for (size_t i = 0; i < s->nin; i++) {
		in[i].name = s->in_names[i];
		in[i].ndim = s->in_ndim[i];
		in[i].data = s->in[i];
		memcpy(in[i].shape, s->in_shape[i], sizeof(in[i].shape));
	}
	for (size_t i = 0; i < s->nout; i++) {
		out[i].name = s->out_names[i];
		out[i].data = s->got[i];
		out[i].capacity = s->want_n[i];
	}
	int rc = r->infer(m, in, s->nin, out, s->nout, err, errlen);
	for (size_t i = 0; !rc && i < s->nout; i++) {
		int64_t n = 1;
		for (int d = 0; d < out[i].ndim; d++)
			n *= out[i].shape[d];
		if ((size_t)n != s->want_n[i])
			return snprintf(err, errlen, "output %s has %lld values, the reference %zu", s->out_names[i],
					(long long)n, s->want_n[i]),
			       -100;
	}
	return rc;
}

/* Largest difference between s->got and a (s->want when a is NULL). */
static double tsample_diff(const struct tsample *s, float *const *a)
{
	double d = 0;
	for (size_t i = 0; i < s->nout; i++)
		for (size_t j = 0; j < s->want_n[i]; j++) {
			double e = fabs((double)s->got[i][j] - (a ? a[i] : s->want[i])[j]);
			if (!(e <= d)) /* NaN counts as the largest */
				d = isnan(e) ? INFINITY : e;
		}
	return d;
}

/* What each plugin must do with a third-party case: run it and match the reference, or refuse it
 * with a code. Cases not listed must run and match on both. */
struct tp_expect {
	const char *name;
	int opencv, onnxruntime; /* 0: runs and matches; else the load error code */
};
static const struct tp_expect tp_expected[] = {
	/* OpenCV 4.6's importer wants Gemm's B as a constant ("Blob b not found in const blobs") */
	{"test_gemm_default_no_bias", GANGLION_RT_EMODEL, 0},
	/* int64 indices: ABI v1 feeds float32 only */
	{"test_Embedding", GANGLION_RT_EUNSUPPORTED, GANGLION_RT_EUNSUPPORTED},
	/* Opset 6 and older: ONNX Runtime 1.29 has dropped these kernels ("Could not find an
	 * implementation for BatchNormalization(6)"); OpenCV still runs them */
	{"test_BatchNorm2d_eval", 0, GANGLION_RT_EMODEL},
	{"test_AvgPool2d", 0, GANGLION_RT_EMODEL},
	{"test_Linear", 0, GANGLION_RT_EMODEL},
	{"test_PReLU_2d", 0, GANGLION_RT_EMODEL},
	{"test_GLU", 0, GANGLION_RT_EMODEL},
};

static int tp_expectation(const char *name)
{
	for (size_t i = 0; i < sizeof(tp_expected) / sizeof(tp_expected[0]); i++)
		if (strcmp(tp_expected[i].name, name) == 0)
			return is_opencv ? tp_expected[i].opencv : tp_expected[i].onnxruntime;
	return 0;
}

static json_t *tp_cases(void)
{
	char path[1200];
	json_error_t jerr;
	snprintf(path, sizeof(path), "%s/tests/models/thirdparty.json", builddir);
	json_t *list = json_load_file(path, 0, &jerr);
	if (!list)
		fail_msg("%s: %s (make_models.py writes it from libonnx-testdata)", path, jerr.text);
	assert_true(json_array_size(list) >= 20);
	return list;
}

static void test_third_party_models_match_their_references(void **state)
{
	json_t *list = tp_cases(), *v;
	size_t i;
	int ran = 0, refused = 0, failed = 0;
	json_array_foreach(list, i, v) {
		const char *name = json_string_value(v);
		char path[1300], err[1024] = "";
		struct tsample s;
		ganglion_rt_model *m = NULL;
		int want = tp_expectation(name);
		snprintf(path, sizeof(path), "%s/tests/models/thirdparty/%s.onnx", builddir, name);
		int rc = rt->load(&m, path, "cpu", err, sizeof(err));
		if (want) {
			if (rc != want)
				fail_msg("%s: load answered %d (%s), expected the refusal %d", name, rc, err, want);
			assert_null(m);
			assert_non_null(strstr(err, name)); /* the message names the model */
			printf("# %s: refused as expected: %s\n", name, err);
			refused++;
			continue;
		}
		if (rc) {
			print_error("%s: load: %d %s\n", name, rc, err);
			failed++;
			continue;
		}
		tsample_load(&s, "thirdparty/", name);
		double d = (rc = tsample_run(rt, m, &s, err, sizeof(err))) ? INFINITY : tsample_diff(&s, NULL);
		if (d > s.tolerance) {
			print_error("%s: infer %d %s: off the reference by %g (tolerance %g)\n", name, rc, err, d,
				    s.tolerance);
			failed++;
		}
		tsample_free(&s);
		rt->free_model(m);
		ran++;
	}
	printf("# %d third-party models match their references, %d refused as expected\n", ran, refused);
	json_decref(list);
	assert_int_equal(failed, 0);
}

/* ONNX Runtime's outputs equal the OpenCV plugin's, on the project's models and on every
 * third-party model that both run. */
static void test_same_outputs_as_opencv(void **state)
{
	if (!opencv)
		skip();
	json_t *list = tp_cases(), *v;
	const char *ours[] = {"v1", "v2", "bad", "wide", "conv"};
	size_t i, n = sizeof(ours) / sizeof(ours[0]);
	int compared = 0;
	for (size_t k = 0; k < n; k++)
		json_array_insert_new(list, k, json_string(ours[k]));
	json_array_foreach(list, i, v) {
		const char *name = json_string_value(v);
		const char *dir = i < n ? "" : "thirdparty/";
		char path[1300], err[1024] = "";
		ganglion_rt_model *mo = NULL, *mc = NULL;
		struct tsample a, b;
		snprintf(path, sizeof(path), "%s/tests/models/%s%s.onnx", builddir, dir, name);
		int rco = rt->load(&mo, path, "cpu", err, sizeof(err));
		int rcc = opencv->load(&mc, path, "cpu", err, sizeof(err));
		if (rco || rcc) {
			rt->free_model(mo);
			opencv->free_model(mc);
			continue;
		}
		tsample_load(&a, dir, name);
		tsample_load(&b, dir, name);
		assert_int_equal(tsample_run(rt, mo, &a, err, sizeof(err)), 0);
		assert_int_equal(tsample_run(opencv, mc, &b, err, sizeof(err)), 0);
		double d = tsample_diff(&a, b.got);
		if (d > a.tolerance)
			fail_msg("%s: ONNX Runtime and OpenCV differ by %g (tolerance %g)", name, d, a.tolerance);
		tsample_free(&a);
		tsample_free(&b);
		rt->free_model(mo);
		opencv->free_model(mc);
		compared++;
	}
	printf("# %d models give the same outputs on ONNX Runtime and OpenCV\n", compared);
	assert_true(compared >= 20);
	json_decref(list);
}

/* A model OpenCV 4.6 refuses that ONNX Runtime runs: Gemm with B an input, and a dynamic batch. */
static void test_runs_what_opencv_cannot(void **state)
{
	struct tsample s;
	char path[1300], err[1024] = "";
	ganglion_rt_model *m = NULL;
	snprintf(path, sizeof(path), "%s/tests/models/thirdparty/test_gemm_default_no_bias.onnx", builddir);
	if (opencv) {
		assert_int_equal(opencv->load(&m, path, "cpu", err, sizeof(err)), GANGLION_RT_EMODEL);
		printf("# OpenCV: %s\n", err);
	}
	assert_int_equal(rt->load(&m, path, "cpu", err, sizeof(err)), 0);
	const ganglion_rt_model_info *info = rt->describe(m);
	assert_int_equal(info->n_inputs, 2);
	tsample_load(&s, "thirdparty/", "test_gemm_default_no_bias");
	assert_int_equal(tsample_run(rt, m, &s, err, sizeof(err)), 0);
	assert_true(tsample_diff(&s, NULL) <= s.tolerance);
	tsample_free(&s);
	rt->free_model(m);
}

/* Without CUDA's libraries (none here unless GANGLION_EXPECT_CUDA=1) a cuda or tensorrt load
 * runs on the CPU and says why; with them, the model runs where it was asked to. */
static void test_accelerator_target_is_real(void **state)
{
	const char *e = getenv("GANGLION_EXPECT_CUDA");
	int expect_cuda = e && atoi(e);
	ganglion_rt_caps caps;
	char err[512];
	assert_int_equal(rt->capabilities(&caps, err, sizeof(err)), 0);
	int listed = 0;
	for (size_t i = 0; i < caps.n_targets; i++)
		listed += strcmp(caps.targets[i].name, "cuda") == 0;
	assert_int_equal(listed, expect_cuda ? 1 : 0);
	const char *targets[] = {"cuda", "tensorrt"};
	for (size_t k = 0; k < 2; k++) {
		struct sample s;
		read_sample(&s, "conv");
		ganglion_rt_model *m = load_ok("conv.onnx", targets[k]);
		const ganglion_rt_model_info *info = rt->describe(m);
		printf("# %s: requested %s, runs on %s: %s\n", "conv", info->requested_target, info->target,
		       info->target_detail);
		assert_string_equal(info->requested_target, targets[k]);
		if (expect_cuda) {
			assert_string_not_equal(info->target, "cpu");
		} else {
			assert_string_equal(info->target, "cpu");
			assert_non_null(strstr(info->target_detail, targets[k]));
			assert_true(strlen(info->target_detail) > 20);
		}
		double d = run_sample(m, &s);
		if (d > s.tolerance)
			fail_msg("conv on %s: off by %g", info->target, d);
		rt->free_model(m);
	}
}

/* The interface ONNX Runtime reports for a model with a dynamic batch, and runs at two sizes. */
static void test_dynamic_dimensions(void **state)
{
	char path[1300], err[512] = "";
	ganglion_rt_model *m = NULL;
	snprintf(path, sizeof(path), "%s/tests/models/dyn.onnx", builddir);
	assert_int_equal(rt->load(&m, path, "cpu", err, sizeof(err)), 0);
	const ganglion_rt_model_info *info = rt->describe(m);
	assert_int_equal(info->inputs[0].ndim, 2);
	assert_int_equal(info->inputs[0].shape[0], -1);
	assert_int_equal(info->inputs[0].shape[1], 4);
	for (int64_t batch = 1; batch <= 3; batch += 2) {
		float x[12], y[16];
		for (int i = 0; i < 12; i++)
			x[i] = (float)i;
		ganglion_rt_input in = {.name = "x", .ndim = 2, .shape = {batch, 4}, .data = x};
		ganglion_rt_output out = {.name = "y", .data = y, .capacity = 16};
		if (rt->infer(m, &in, 1, &out, 1, err, sizeof(err)))
			fail_msg("batch %lld: %s", (long long)batch, err);
		assert_int_equal(out.ndim, 2);
		assert_int_equal(out.shape[0], batch);
		assert_int_equal(out.shape[1], 1);
		for (int64_t b = 0; b < batch; b++) /* y = sum of the row */
			assert_float_equal(y[b], (float)(16 * b + 6), 1e-4);
	}
	rt->free_model(m);
}

static const ganglion_runtime *open_runtime(const char *so, const char *const *opts)
{
	void *h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		fprintf(stderr, "dlopen %s: %s\n", so, dlerror());
		return NULL;
	}
	ganglion_runtime_entry_fn entry = (ganglion_runtime_entry_fn)dlsym(h, GANGLION_RUNTIME_ENTRY);
	if (!entry) {
		fprintf(stderr, "%s: no %s\n", so, GANGLION_RUNTIME_ENTRY);
		return NULL;
	}
	const ganglion_runtime *r = entry();
	char err[512] = "";
	/* a bad option is refused without using up init */
	const char *bad[] = {"threads=lots", NULL}, *unknown[] = {"thread=1", NULL};
	if (r->init(bad, err, sizeof(err)) != GANGLION_RT_EINVAL || !strstr(err, "threads=lots") ||
	    r->init(unknown, err, sizeof(err)) != GANGLION_RT_EINVAL || !strstr(err, "unknown option 'thread'")) {
		fprintf(stderr, "init accepted a bad option (%s)\n", err);
		return NULL;
	}
	if (r->init(opts, err, sizeof(err))) {
		fprintf(stderr, "init: %s\n", err);
		return NULL;
	}
	return r;
}

int main(int argc, char **argv)
{
	const char *b = getenv("GANGLION_BUILDDIR");
	snprintf(builddir, sizeof(builddir), "%s", b && *b ? b : BUILDDIR);
	is_opencv = strcmp(PLUGIN, "opencv") == 0;
	char so[1200], v1[1200];
	struct stat st;
	snprintf(so, sizeof(so), "%s/agents/runtimes/ganglion-runtime-%s.so", builddir, PLUGIN);
	model_path(v1, sizeof(v1), "v1.json");
	if (stat(v1, &st) != 0) {
		printf("SKIP: %s missing (the models need /usr/bin/python3 with python3-onnx and "
		       "python3-numpy)\n",
		       v1);
		return 77;
	}
	const char *e = getenv("GANGLION_EXPECT_OPENCL");
	expect_opencl = e && *e ? atoi(e) != 0 : access("/etc/OpenCL/vendors/pocl.icd", R_OK) == 0;
	/* ONNX Runtime warns about every opset-6 test model: errors only */
	const char *opencv_opts[] = {"threads=1", "opencl=on", NULL},
		   *ort_opts[] = {"threads=1", "log-level=error", NULL};
	if (!(rt = open_runtime(so, is_opencv ? opencv_opts : ort_opts)))
		return 1;
	if (argc == 3 && strcmp(argv[1], "--fallback-child") == 0)
		return fallback_child(argv[2]);
	/* The OpenCV plugin beside ONNX Runtime's, to compare their outputs (cpu only: no OpenCL). */
	char other[1200];
	const char *cpu_only[] = {"threads=1", "opencl=off", NULL};
	snprintf(other, sizeof(other), "%s/agents/runtimes/ganglion-runtime-opencv.so", builddir);
	if (!is_opencv && access(other, R_OK) == 0 && !(opencv = open_runtime(other, cpu_only)))
		return 1;

	snprintf(tmpdir, sizeof(tmpdir), "%s/tests/unit/agent/tmp-runtime-%s-XXXXXX", builddir, PLUGIN);
	if (!mkdtemp(tmpdir)) {
		perror(tmpdir);
		return 1;
	}
	const struct CMUnitTest common[] = {
		cmocka_unit_test(test_abi),
		cmocka_unit_test(test_capabilities),
		cmocka_unit_test(test_cpu_matches_reference),
		cmocka_unit_test(test_bad_model_fails_self_test),
		cmocka_unit_test(test_concurrent_infer_cpu),
		cmocka_unit_test(test_bad_files_rejected),
		cmocka_unit_test(test_bad_calls_rejected),
		cmocka_unit_test(test_two_versions_side_by_side),
		cmocka_unit_test(test_third_party_models_match_their_references),
	};
	const struct CMUnitTest opencv_only[] = {
		cmocka_unit_test(test_opencl_target_is_real),
		cmocka_unit_test(test_opencl_fallback_reported),
	};
	const struct CMUnitTest ort_only[] = {
		cmocka_unit_test(test_same_outputs_as_opencv),
		cmocka_unit_test(test_runs_what_opencv_cannot),
		cmocka_unit_test(test_accelerator_target_is_real),
		cmocka_unit_test(test_dynamic_dimensions),
	};
	int failed = cmocka_run_group_tests_name("common", common, NULL, NULL);
	if (is_opencv)
		failed += cmocka_run_group_tests_name("opencv", opencv_only, NULL, NULL);
	else
		failed += cmocka_run_group_tests_name("onnxruntime", ort_only, NULL, NULL);
	char cmd[1300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	return failed;
}
