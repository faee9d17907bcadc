/* Unit tests for the OpenCV DNN runtime plugin (agents/runtimes/ganglion-runtime-opencv.so),
 * loaded with dlopen as the agent does: ABI, inference against numpy references, concurrent
 * infer() on one model, the target really used (opencl on PoCL, cpu when OpenCV falls back),
 * and clear errors for bad files and bad calls. Finds the plugin and the generated models under
 * $GANGLION_BUILDDIR (set by make check), else the build directory it was compiled for. */
#include <setjmp.h>
#include <stdarg.h>
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
	assert_string_equal(rt->name, "opencv-dnn");
	assert_non_null(strstr(rt->version, "OpenCV 4."));
	assert_string_equal(rt->formats[0], "onnx");
	assert_null(rt->formats[1]);
	assert_non_null(rt->init);
	assert_non_null(rt->capabilities);
	assert_non_null(rt->load);
	assert_non_null(rt->describe);
	assert_non_null(rt->infer);
	assert_non_null(rt->free_model);
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
	if (expect_opencl)
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
	expect_load_error(path, "cpu", GANGLION_RT_EMODEL, "not an ONNX model");

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
	expect_load_error(path, "opencl", GANGLION_RT_EMODEL, "truncated.onnx");

	/* random bytes */
	srand(42);
	for (size_t i = 0; i < n; i++)
		buf[i] = (unsigned char)rand();
	snprintf(path, sizeof(path), "%s/random.onnx", tmpdir);
	write_file(path, buf, n);
	expect_load_error(path, "cpu", GANGLION_RT_EMODEL, "random.onnx");

	/* a directory */
	expect_load_error(tmpdir, "cpu", GANGLION_RT_EINVAL, "not a regular file");

	expect_load_error(v1, "cuda", GANGLION_RT_EUNSUPPORTED, "cuda");
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

static int open_plugin(const char *so)
{
	void *h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		fprintf(stderr, "dlopen %s: %s\n", so, dlerror());
		return -1;
	}
	ganglion_runtime_entry_fn entry = (ganglion_runtime_entry_fn)dlsym(h, GANGLION_RUNTIME_ENTRY);
	if (!entry) {
		fprintf(stderr, "%s: no %s\n", so, GANGLION_RUNTIME_ENTRY);
		return -1;
	}
	rt = entry();
	char err[512] = "";
	/* a bad option is refused without using up init */
	const char *bad[] = {"threads=lots", NULL}, *unknown[] = {"thread=1", NULL};
	if (rt->init(bad, err, sizeof(err)) != GANGLION_RT_EINVAL || !strstr(err, "threads=lots") ||
	    rt->init(unknown, err, sizeof(err)) != GANGLION_RT_EINVAL || !strstr(err, "unknown option 'thread'")) {
		fprintf(stderr, "init accepted a bad option (%s)\n", err);
		return -1;
	}
	const char *opts[] = {"threads=1", "opencl=on", NULL};
	if (rt->init(opts, err, sizeof(err))) {
		fprintf(stderr, "init: %s\n", err);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *b = getenv("GANGLION_BUILDDIR");
	snprintf(builddir, sizeof(builddir), "%s", b && *b ? b : BUILDDIR);
	char so[1200], v1[1200];
	struct stat st;
	snprintf(so, sizeof(so), "%s/agents/runtimes/ganglion-runtime-opencv.so", builddir);
	model_path(v1, sizeof(v1), "v1.json");
	if (stat(v1, &st) != 0) {
		printf("SKIP: %s missing (the models need /usr/bin/python3 with python3-onnx and "
		       "python3-numpy)\n",
		       v1);
		return 77;
	}
	const char *e = getenv("GANGLION_EXPECT_OPENCL");
	expect_opencl = e && *e ? atoi(e) != 0 : access("/etc/OpenCL/vendors/pocl.icd", R_OK) == 0;
	if (open_plugin(so))
		return 1;
	if (argc == 3 && strcmp(argv[1], "--fallback-child") == 0)
		return fallback_child(argv[2]);

	snprintf(tmpdir, sizeof(tmpdir), "%s/tests/unit/agent/tmp-runtime-XXXXXX", builddir);
	if (!mkdtemp(tmpdir)) {
		perror(tmpdir);
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_abi),
		cmocka_unit_test(test_capabilities),
		cmocka_unit_test(test_cpu_matches_reference),
		cmocka_unit_test(test_bad_model_fails_self_test),
		cmocka_unit_test(test_concurrent_infer_cpu),
		cmocka_unit_test(test_opencl_target_is_real),
		cmocka_unit_test(test_opencl_fallback_reported),
		cmocka_unit_test(test_bad_files_rejected),
		cmocka_unit_test(test_bad_calls_rejected),
		cmocka_unit_test(test_two_versions_side_by_side),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	char cmd[1300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	return failed;
}
