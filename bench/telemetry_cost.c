/* The agent's telemetry on the request path: what telemetry_record (agents/telemetry.c) adds to
 * one inference, beside the inference itself of a small model in the same run.
 *
 *   bench/telemetry_cost PLUGIN.so MODEL.onnx [N]
 *
 * Loads MODEL (input x [1,4], output y [1,3]: tests/models/v1.onnx) with the runtime plugin on
 * cpu, runs N inferences and times them; then times N telemetry_record calls of the same tensors
 * on a profile of the model's 4 inputs (10 bins each) and its predicted class, and N on a
 * profile of 16 numeric features (a wider input); with 1 and 4 threads. Prints ns per call and the
 * share of the inference time. Then the bytes sent upstream per device-hour for a 16-feature
 * model at 10 Hz (windows of 5, 15, 30 and 60 minutes; batch bodies as JSON, and gzipped as the
 * agent sends them, one window a batch or the hour's windows in one), against the raw stream as
 * float32. One line per figure, key=value. HTTP headers are not counted. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drift.h"
#include "gzip.h"
#include "json.h"
#include "telemetry.h"

static double now_ns(void)
{
	return (double)gn_mono_ns();
}

static struct gn_drift_profile *profile(size_t nfeat, bool with_class)
{
	json_t *feats = json_array(), *j;
	for (size_t i = 0; i < nfeat; i++) {
		json_t *edges = json_array(), *props = json_array();
		for (int k = 0; k <= 10; k++)
			json_array_append_new(edges, json_real(-2.5 + 0.5 * k));
		for (int k = 0; k < 10; k++)
			json_array_append_new(props, json_real(0.1));
		char name[16];
		snprintf(name, sizeof(name), "x%zu", i);
		json_array_append_new(feats,
				      json_pack("{s:s,s:o,s:o}", "name", name, "edges", edges, "proportions", props));
	}
	j = json_pack("{s:o}", "features", feats);
	if (with_class)
		json_object_set_new(j, "outputs",
				    json_pack("[{s:s,s:s,s:[s,s,s],s:[f,f,f,f],s:s}]", "name", "class", "kind",
					      "categorical", "vocabulary", "0", "1", "2", "proportions", 0.3, 0.3, 0.4,
					      0.0, "reduce", "argmax"));
	struct gn_drift_profile *p = NULL;
	gn_err err;
	if (gn_drift_profile_parse(&p, j, &err)) {
		fprintf(stderr, "profile: %s\n", err.msg);
		exit(1);
	}
	json_decref(j);
	return p;
}

struct job {
	struct telemetry_counter *c;
	const ganglion_rt_input *in;
	const ganglion_rt_output *out;
	long n;
};

static void *record_loop(void *arg)
{
	struct job *j = arg;
	for (long i = 0; i < j->n; i++)
		telemetry_record(j->c, false, 150, j->in, 1, j->out, 1);
	return NULL;
}

/* ns per telemetry_record with `threads` threads each making n calls (wall time / total calls
 * times threads: the cost each thread sees). */
static double time_records(struct telemetry_counter *c, const ganglion_rt_input *in, const ganglion_rt_output *out,
			   long n, int threads)
{
	pthread_t t[8];
	struct job j = {c, in, out, n};
	double t0 = now_ns();
	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, record_loop, &j);
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	return (now_ns() - t0) / (double)n;
}

int main(int argc, char **argv)
{
	char ebuf[1024] = "";
	if (argc < 3) {
		fprintf(stderr, "usage: %s PLUGIN.so MODEL.onnx [N]\n", argv[0]);
		return 2;
	}
	long n = argc > 3 ? atol(argv[3]) : 200000;
	void *dl = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	ganglion_runtime_entry_fn entry = dl ? (ganglion_runtime_entry_fn)dlsym(dl, GANGLION_RUNTIME_ENTRY) : NULL;
	const ganglion_runtime *rt = entry ? entry() : NULL;
	const char *opts[] = {"opencl=off", NULL};
	ganglion_rt_model *m = NULL;
	if (!rt || rt->init(strcmp(rt->name, "opencv-dnn") == 0 ? opts : opts + 1, ebuf, sizeof(ebuf)) ||
	    rt->load(&m, argv[2], "cpu", ebuf, sizeof(ebuf))) {
		fprintf(stderr, "cannot load %s with %s: %s %s\n", argv[2], argv[1], dl ? "" : dlerror(), ebuf);
		return 1;
	}
	float x[16] = {0.5f, -1.25f, 2.0f, 0.75f}, y[3];
	ganglion_rt_input in = {.name = "x", .ndim = 2, .shape = {1, 4}, .data = x};
	ganglion_rt_output out = {.name = "y", .data = y, .capacity = 3};
	long ninfer = n / 10 > 1000 ? n / 10 : 1000;
	for (int i = 0; i < 100; i++) /* warm-up */
		rt->infer(m, &in, 1, &out, 1, ebuf, sizeof(ebuf));
	double t0 = now_ns();
	for (long i = 0; i < ninfer; i++) {
		x[0] = (float)(i % 7) * 0.3f;
		rt->infer(m, &in, 1, &out, 1, ebuf, sizeof(ebuf));
	}
	double infer_ns = (now_ns() - t0) / (double)ninfer;
	printf("runtime=%s model=%s inference_ns=%.0f\n", rt->name, argv[2], infer_ns);

	const char *ins[] = {"x"}, *outs[] = {"y"};
	struct telemetry_counter *c4 = telemetry_counter_new("m", "1.0.0", profile(4, true), ins, 1, outs, 1, 300);
	ganglion_rt_input in16 = {.name = "x", .ndim = 2, .shape = {1, 16}, .data = x};
	struct telemetry_counter *c16 = telemetry_counter_new("m", "1.0.0", profile(16, false), ins, 1, outs, 1, 300);
	struct telemetry_counter *c0 = telemetry_counter_new("m", "1.0.0", NULL, ins, 1, outs, 1, 300);
	struct {
		const char *what;
		struct telemetry_counter *c;
		const ganglion_rt_input *in;
	} cases[] = {{"no_profile", c0, &in}, {"features=4+class", c4, &in}, {"features=16", c16, &in16}};
	for (size_t k = 0; k < GN_ARRAY_LEN(cases); k++)
		for (int threads = 1; threads <= 4; threads += 3) {
			double ns = time_records(cases[k].c, cases[k].in, &out, n, threads);
			printf("profile=%s threads=%d record_ns=%.0f share_of_inference=%.2f%%\n", cases[k].what,
			       threads, ns, 100.0 * ns / infer_ns);
		}
	telemetry_counter_free(c0);
	telemetry_counter_free(c4);
	telemetry_counter_free(c16);

	/* Upstream bytes: 16 features at 10 Hz, values spread over the bins and beyond, for an hour:
	 * each window's report alone, in a batch body as the agent sends it ({"windows": [...]})
	 * gzipped one window a batch (an agent uploading after every window) and all of the hour's
	 * windows in one gzipped batch (a spool holding them). */
	gn_err err;
	unsigned seed = 7;
	double raw = 16.0 * 4 * 10 * 3600;
	static const int windows[] = {300, 900, 1800, 3600};
	for (size_t w = 0; w < GN_ARRAY_LEN(windows); w++) {
		int window = windows[w], per_hour = 3600 / window;
		struct telemetry_counter *c =
			telemetry_counter_new("det", "1.2.0", profile(16, false), ins, 1, outs, 1, window);
		json_t *hour = json_array();
		size_t plain = 0, gz_one = 0;
		for (int k = 0; k < per_hour; k++) {
			for (long i = 0; i < 10L * window; i++) {
				for (int f = 0; f < 16; f++)
					x[f] = (float)((rand_r(&seed) % 6000) - 3000) / 1000.0f;
				telemetry_record(c, i % 97 == 0, 100 + (uint64_t)(rand_r(&seed) % 5000), &in16, 1, &out,
						 1);
			}
			json_t *r = NULL;
			telemetry_roll(&r, c, (int64_t)window * (k + 1), true);
			json_t *one = json_pack("{s:[O]}", "windows", r);
			char *s = telemetry_json_text(one);
			gn_buf z;
			gn_buf_init(&z);
			if (gn_gzip(&z, s, strlen(s), &err)) {
				fprintf(stderr, "%s\n", err.msg);
				return 1;
			}
			plain += strlen(s);
			gz_one += z.len;
			gn_buf_cleanup(&z);
			free(s);
			json_decref(one);
			json_array_append_new(hour, r);
		}
		json_t *batch = json_pack("{s:o}", "windows", hour);
		char *s = telemetry_json_text(batch);
		gn_buf z;
		gn_buf_init(&z);
		if (gn_gzip(&z, s, strlen(s), &err)) {
			fprintf(stderr, "%s\n", err.msg);
			return 1;
		}
		printf("upstream window_s=%d windows_per_hour=%d plain_bytes_per_hour=%zu plain_ratio=%.0fx "
		       "gzip_each_window_bytes_per_hour=%zu gzip_each_ratio=%.0fx gzip_hour_batch_bytes=%zu "
		       "gzip_hour_batch_ratio=%.0fx raw_float32_per_hour=%.0f\n",
		       window, per_hour, plain, raw / (double)plain, gz_one, raw / (double)gz_one, z.len,
		       raw / (double)z.len, raw);
		gn_buf_cleanup(&z);
		free(s);
		json_decref(batch);
		telemetry_counter_free(c);
	}
	rt->free_model(m);
	return 0;
}
