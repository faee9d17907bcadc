/* Unit tests for agents/telemetry.c: what a window's counters hold after inferences whose values
 * are chosen by hand, the reports they become (read back with the server's own parser), windows
 * that roll and survive a restart, and the spool: bounded, counting what it drops, emptied only
 * by the server's 200, refused batches dropped and counted, a 413 halving the batch. */
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "crypto.h"
#include "json.h"
#include "latency.h"
#include "telemetry.h"

/* x0: element 0 of x, 3 bins; x1: element 1 of x, categories 0 and 1; class: argmax of y;
 * confidence: max of y. */
static const char profile_json[] =
	"{\"features\":[{\"name\":\"x0\",\"edges\":[0,1,2,3],\"proportions\":[0.25,0.5,0.25]},"
	"{\"name\":\"x1\",\"kind\":\"categorical\",\"vocabulary\":[\"0\",\"1\"],\"proportions\":[0.5,0.5,0]}],"
	"\"outputs\":[{\"name\":\"class\",\"kind\":\"categorical\",\"vocabulary\":[\"0\",\"1\",\"2\"],"
	"\"proportions\":[0.3,0.3,0.4,0],\"reduce\":\"argmax\"},"
	"{\"name\":\"confidence\",\"edges\":[0,0.5,1],\"proportions\":[0.5,0.5],\"reduce\":\"max\"}]}";

static struct gn_drift_profile *profile(const char *text)
{
	struct gn_drift_profile *p = NULL;
	gn_err err;
	json_t *j = json_loads(text, 0, NULL);
	assert_non_null(j);
	assert_int_equal(gn_drift_profile_parse(&p, j, &err), 0);
	json_decref(j);
	return p;
}

static const char *const in_names[] = {"x"};
static const char *const out_names[] = {"y"};

static struct telemetry_counter *counter(int64_t window)
{
	return telemetry_counter_new("cam", "1.0.0", profile(profile_json), in_names, 1, out_names, 1, window);
}

/* One inference with x = (a, b) and y = (y0, y1, y2). */
static void infer(struct telemetry_counter *c, float a, float b, float y0, float y1, float y2, bool error, uint64_t us)
{
	float x[2] = {a, b}, y[3] = {y0, y1, y2};
	ganglion_rt_input in = {.name = "x", .ndim = 2, .shape = {1, 2}, .data = x};
	ganglion_rt_output out = {.name = "y", .ndim = 2, .shape = {1, 3}, .data = y, .capacity = 3};
	telemetry_record(c, error, us, &in, 1, &out, 1);
}

/* The counts of one feature of a report, read as the server reads them. */
static void counts_of(struct gn_drift_counts *out, const json_t *report, const char *list, const char *name,
		      size_t nbins, bool numeric)
{
	gn_err err;
	const json_t *j = json_object_get(json_object_get(report, list), name);
	assert_non_null(j);
	if (gn_drift_counts_parse(out, j, nbins, numeric, name, &err))
		fail_msg("%s: %s", name, err.msg);
}

static void test_counts_by_hand(void **state)
{
	(void)state;
	struct telemetry_counter *c = counter(300);
	infer(c, 0.5f, 1.0f, 0.1f, 0.7f, 0.2f, false, 150);   /* x0 bin 0, x1 "1", class 1, confidence 0.7 */
	infer(c, 1.5f, 0.0f, 0.6f, 0.3f, 0.1f, false, 900);   /* bin 1, "0", class 0, 0.6 */
	infer(c, 3.0f, 7.0f, 0.2f, 0.2f, 0.45f, false, 2500); /* bin 2 (the last edge), other, class 2, 0.45 */
	infer(c, -1.0f, NAN, 0.0f, 0.0f, 0.0f, true, 50);     /* underflow, NaN; failed: no outputs counted */
	infer(c, 9.0f, 0.0f, 0.3f, 0.3f, 0.3f, false, 20000); /* overflow, "0", class 0 (first of equals), 0.3 */
	json_t *r = NULL;
	telemetry_roll(&r, c, 0, true);
	assert_non_null(r);
	assert_string_equal(gn_json_str(r, "model"), "cam");
	assert_int_equal(json_integer_value(json_object_get(r, "seconds")), 300);
	assert_int_equal(json_integer_value(json_object_get(r, "start")) % 300, 0);
	assert_int_equal(json_integer_value(json_object_get(r, "requests")), 5);
	assert_int_equal(json_integer_value(json_object_get(r, "errors")), 1);
	const json_t *lat = json_object_get(r, "latency_us_buckets");
	/* 50, 150: <= 100 and <= 200; 900: <= 1000; 2500: <= 5000; 20000: <= 20000 */
	static const int want_lat[GN_LATENCY_NBUCKETS] = {1, 1, 0, 1, 0, 1, 0, 1};
	for (size_t k = 0; k < GN_LATENCY_NBUCKETS; k++)
		assert_int_equal(json_integer_value(json_array_get(lat, k)), want_lat[k]);

	struct gn_drift_counts k;
	counts_of(&k, r, "features", "x0", 3, true);
	assert_int_equal(k.counts[0], 1);
	assert_int_equal(k.counts[1], 1);
	assert_int_equal(k.counts[2], 1);
	assert_int_equal(k.underflow, 1);
	assert_int_equal(k.overflow, 1);
	assert_int_equal(k.n, 5);
	assert_true(fabs(k.mean - 13.0 / 5) < 1e-6); /* 0.5 + 1.5 + 3 - 1 + 9 */
	assert_true(k.min == -1.0 && k.max == 9.0);
	gn_drift_counts_cleanup(&k);
	counts_of(&k, r, "features", "x1", 3, false);
	assert_int_equal(k.counts[0], 2); /* "0" */
	assert_int_equal(k.counts[1], 1); /* "1" */
	assert_int_equal(k.counts[2], 1); /* 7: other */
	assert_int_equal(k.nan, 1);
	gn_drift_counts_cleanup(&k);
	counts_of(&k, r, "outputs", "class", 4, false);
	assert_int_equal(k.counts[0], 2);
	assert_int_equal(k.counts[1], 1);
	assert_int_equal(k.counts[2], 1);
	assert_int_equal(k.n, 4); /* the failed inference has no outputs */
	gn_drift_counts_cleanup(&k);
	counts_of(&k, r, "outputs", "confidence", 2, true);
	assert_int_equal(k.counts[0], 2); /* 0.45, 0.3 */
	assert_int_equal(k.counts[1], 2); /* 0.7, 0.6 */
	gn_drift_counts_cleanup(&k);
	json_decref(r);
	telemetry_roll(&r, c, 0, true); /* nothing since */
	assert_null(r);
	telemetry_counter_free(c);
}

struct worker {
	struct telemetry_counter *c;
	int n;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < w->n; i++)
		infer(w->c, (float)(i % 3) + 0.5f, 0, 1, 0, 0, false, 10);
	return NULL;
}

static void test_threads(void **state)
{
	(void)state;
	struct telemetry_counter *c = counter(300);
	pthread_t t[6];
	struct worker w = {c, 3000};
	for (int i = 0; i < 6; i++)
		assert_int_equal(pthread_create(&t[i], NULL, work, &w), 0);
	for (int i = 0; i < 6; i++)
		pthread_join(t[i], NULL);
	json_t *r = NULL;
	telemetry_roll(&r, c, 0, true);
	assert_int_equal(json_integer_value(json_object_get(r, "requests")), 18000);
	struct gn_drift_counts k;
	counts_of(&k, r, "features", "x0", 3, true);
	assert_int_equal(k.counts[0], 6000);
	assert_int_equal(k.counts[1], 6000);
	assert_int_equal(k.counts[2], 6000);
	assert_true(fabs(k.mean - 1.5) < 1e-9);
	gn_drift_counts_cleanup(&k);
	json_decref(r);
	telemetry_counter_free(c);
}

static void test_windows_roll(void **state)
{
	(void)state;
	struct telemetry_counter *c = counter(60);
	int64_t now = gn_now(), start = now / 60 * 60;
	json_t *r = NULL;
	telemetry_roll(&r, c, now, false); /* the counter's window is now's, even past a minute's turn */
	assert_null(r);
	infer(c, 0.5f, 0, 1, 0, 0, false, 10);
	telemetry_roll(&r, c, start + 59, false); /* still open */
	assert_null(r);
	telemetry_roll(&r, c, start + 60, false);
	assert_non_null(r);
	assert_int_equal(json_integer_value(json_object_get(r, "start")), start);
	json_decref(r);
	telemetry_roll(&r, c, start + 200, false); /* a window without requests: no report */
	assert_null(r);
	infer(c, 0.5f, 0, 1, 0, 0, false, 10);
	telemetry_roll(&r, c, start + 300, false);
	assert_int_equal(json_integer_value(json_object_get(r, "start")), start + 180);
	json_decref(r);
	telemetry_counter_free(c);
}

static void test_checkpoint_restore(void **state)
{
	(void)state;
	gn_err err;
	struct telemetry_counter *a = counter(300), *b = counter(300), *other;
	int64_t now = gn_now();
	json_t *r = NULL;
	telemetry_roll(&r, a, now, false); /* both counters in now's window */
	telemetry_roll(&r, b, now, false);
	infer(a, 0.5f, 1, 0, 1, 0, false, 10);
	infer(a, 1.5f, 1, 0, 1, 0, true, 10);
	json_t *cp = telemetry_checkpoint(a), *closed = NULL;
	/* the counts stay in a as well */
	telemetry_roll(&r, a, 0, true);
	assert_int_equal(json_integer_value(json_object_get(r, "requests")), 2);
	json_decref(r);
	/* the same window: merged into b's */
	infer(b, 2.5f, 0, 0, 1, 0, false, 10);
	assert_int_equal(telemetry_restore(&closed, b, cp, now, &err), 0);
	assert_null(closed);
	telemetry_roll(&r, b, 0, true);
	assert_int_equal(json_integer_value(json_object_get(r, "requests")), 3);
	assert_int_equal(json_integer_value(json_object_get(r, "errors")), 1);
	struct gn_drift_counts k;
	counts_of(&k, r, "features", "x0", 3, true);
	assert_int_equal(k.counts[0] + 10 * k.counts[1] + 100 * k.counts[2], 111);
	gn_drift_counts_cleanup(&k);
	json_decref(r);
	/* a window that has ended since: a report of its own */
	assert_int_equal(telemetry_restore(&closed, b, cp, now + 3600, &err), 0);
	assert_non_null(closed);
	assert_int_equal(json_integer_value(json_object_get(closed, "requests")), 2);
	json_decref(closed);
	/* another version's counts are not taken */
	other = telemetry_counter_new("cam", "2.0.0", profile(profile_json), in_names, 1, out_names, 1, 300);
	assert_int_equal(telemetry_restore(&closed, other, cp, now, &err), GN_EINVAL);
	json_decref(cp);
	telemetry_counter_free(a);
	telemetry_counter_free(b);
	telemetry_counter_free(other);
}

static void test_image(void **state)
{
	(void)state;
	struct gn_drift_profile *p = profile(
		"{\"features\":[],\"image\":{\"layout\":\"nchw\",\"channels\":[{\"mean\":0.2,\"variance\":0},"
		"{\"mean\":0.8,\"variance\":0}],\"intensity\":{\"edges\":[0,0.5,1],\"proportions\":[0.5,0.5]}}}");
	struct telemetry_counter *c = telemetry_counter_new("img", "1.0.0", p, in_names, 1, out_names, 1, 300);
	float px[2 * 64 * 64];
	for (size_t i = 0; i < 64 * 64; i++) {
		px[i] = 0.25f;           /* channel 0 */
		px[64 * 64 + i] = 0.75f; /* channel 1 */
	}
	ganglion_rt_input in = {.name = "x", .ndim = 4, .shape = {1, 2, 64, 64}, .data = px};
	telemetry_record(c, false, 10, &in, 1, NULL, 0);
	json_t *r = NULL;
	telemetry_roll(&r, c, 0, true);
	const json_t *img = json_object_get(r, "image");
	gn_err err;
	struct gn_drift_counts k;
	for (int ch = 0; ch < 2; ch++) {
		if (gn_drift_counts_parse(&k, json_array_get(json_object_get(img, "channels"), ch), 0, false, "ch",
					  &err))
			fail_msg("%s", err.msg);
		assert_int_equal(k.n, TELEMETRY_IMAGE_SAMPLES); /* 4096 pixels, every fourth sampled */
		assert_true(fabs(k.mean - (ch ? 0.75 : 0.25)) < 1e-9);
		gn_drift_counts_cleanup(&k);
	}
	assert_int_equal(gn_drift_counts_parse(&k, json_object_get(img, "intensity"), 2, true, "i", &err), 0);
	assert_int_equal(k.counts[0], TELEMETRY_IMAGE_SAMPLES);
	assert_int_equal(k.counts[1], TELEMETRY_IMAGE_SAMPLES);
	gn_drift_counts_cleanup(&k);
	json_decref(r);
	telemetry_counter_free(c);
}

static void test_profile_bytes(void **state)
{
	(void)state;
	char hex[GN_SHA256_HEX_LEN + 1];
	struct gn_drift_profile *p = NULL;
	gn_err err;
	gn_sha256_hex(hex, profile_json, strlen(profile_json));
	assert_int_equal(telemetry_profile_parse(&p, profile_json, strlen(profile_json), hex, &err), 0);
	assert_int_equal(p->ninputs, 2);
	gn_drift_profile_free(p);
	assert_int_equal(telemetry_profile_parse(&p, profile_json, strlen(profile_json) - 1, hex, &err), GN_EINVAL);
	assert_null(p);
	gn_sha256_hex(hex, "{}", 2);
	assert_int_equal(telemetry_profile_parse(&p, "{}", 2, hex, &err), GN_EINVAL); /* no features */
}

/* --- the spool --------------------------------------------------------------------------------- */

static char spool_dir[64];

static int make_dir(void **state)
{
	(void)state;
	snprintf(spool_dir, sizeof(spool_dir), "/tmp/gn-test-spool-XXXXXX");
	return mkdtemp(spool_dir) ? 0 : -1;
}

static int remove_dir(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", spool_dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* A stand-in server: answers status, keeps the last body. */
struct fake {
	int status;
	int calls;
	json_t *last;
};

static int fake_send(void *ctx, const char *body, size_t len, int *out_status, gn_err *err)
{
	struct fake *f = ctx;
	f->calls++;
	json_decref(f->last);
	assert_int_equal(gn_json_parse(&f->last, body, len, 16, err), 0);
	if (f->status < 0)
		return gn_err_set(err, GN_EUNAVAIL, "connection refused");
	*out_status = f->status;
	return 0;
}

static json_t *report(int64_t start, const char *version)
{
	return json_pack("{s:s,s:s,s:I,s:i,s:i,s:i,s:[]}", "model", "cam", "version", version, "start",
			 (json_int_t)start, "seconds", 300, "requests", 1, "errors", 0, "latency_us_buckets");
}

static void put(struct telemetry_spool *s, int64_t start)
{
	gn_err err;
	json_t *r = report(start, "1.0.0");
	assert_int_equal(telemetry_spool_put(s, r, &err), 0);
	json_decref(r);
}

static void test_spool(void **state)
{
	(void)state;
	struct telemetry_spool *s = NULL;
	struct fake f = {0};
	gn_err err;
	size_t sent;
	assert_int_equal(telemetry_spool_open(&s, spool_dir, 3, &err), 0);
	put(s, 900);
	put(s, 300);
	put(s, 600);
	assert_int_equal(telemetry_spool_count(s), 3);
	/* no answer, then a 503: everything stays */
	f.status = -1;
	assert_int_equal(telemetry_spool_upload(&sent, s, 10, fake_send, &f, &err), GN_EUNAVAIL);
	f.status = 503;
	assert_int_equal(telemetry_spool_upload(&sent, s, 10, fake_send, &f, &err), GN_EUNAVAIL);
	assert_int_equal(sent, 0);
	assert_int_equal(telemetry_spool_count(s), 3);
	/* full: a fourth drops the oldest, counted, and counted across a restart */
	put(s, 1200);
	assert_int_equal(telemetry_spool_count(s), 3);
	assert_int_equal(telemetry_spool_dropped(s), 1);
	telemetry_spool_free(s);
	assert_int_equal(telemetry_spool_open(&s, spool_dir, 3, &err), 0);
	assert_int_equal(telemetry_spool_dropped(s), 1);
	/* a 200: two oldest go, the first carrying the dropped count */
	f.status = 200;
	assert_int_equal(telemetry_spool_upload(&sent, s, 2, fake_send, &f, &err), 0);
	assert_int_equal(sent, 2);
	const json_t *w = json_object_get(f.last, "windows");
	assert_int_equal(json_array_size(w), 2);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(w, 0), "start")), 600);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(w, 0), "dropped")), 1);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(w, 1), "start")), 900);
	assert_null(json_object_get(json_array_get(w, 1), "dropped"));
	assert_int_equal(telemetry_spool_dropped(s), 0);
	assert_int_equal(telemetry_spool_count(s), 1);
	/* a refusal of the batch: its windows are dropped and counted */
	f.status = 400;
	assert_int_equal(telemetry_spool_upload(&sent, s, 10, fake_send, &f, &err), 0);
	assert_int_equal(sent, 1);
	assert_int_equal(telemetry_spool_count(s), 0);
	assert_int_equal(telemetry_spool_dropped(s), 1);
	/* nothing to send: no request */
	int calls = f.calls;
	assert_int_equal(telemetry_spool_upload(&sent, s, 10, fake_send, &f, &err), 0);
	assert_int_equal(f.calls, calls);
	/* a 413 of several halves the next batch; of one, drops it */
	put(s, 1500);
	put(s, 1800);
	f.status = 413;
	assert_int_equal(telemetry_spool_upload(&sent, s, 10, fake_send, &f, &err), GN_EUNAVAIL);
	assert_int_equal(telemetry_spool_count(s), 2);
	f.status = 200;
	assert_int_equal(telemetry_spool_upload(&sent, s, 10, fake_send, &f, &err), 0);
	assert_int_equal(json_array_size(json_object_get(f.last, "windows")), 1);
	assert_int_equal(telemetry_spool_upload(&sent, s, 10, fake_send, &f, &err), 0);
	assert_int_equal(json_array_size(json_object_get(f.last, "windows")), 2 - 1);
	assert_int_equal(telemetry_spool_count(s), 0);
	json_decref(f.last);
	telemetry_spool_free(s);
}

static void test_open_window_across_restart(void **state)
{
	(void)state;
	struct telemetry_spool *s = NULL;
	gn_err err;
	int64_t now = gn_now();
	assert_int_equal(telemetry_spool_open(&s, spool_dir, 100, &err), 0);
	size_t before = telemetry_spool_count(s);
	struct telemetry_counter *a = counter(300), *b = counter(300), *c = counter(300);
	json_t *r = NULL;
	telemetry_roll(&r, a, now, false); /* every counter in now's window */
	telemetry_roll(&r, b, now, false);
	telemetry_roll(&r, c, now, false);
	infer(a, 0.5f, 0, 1, 0, 0, false, 10);
	assert_int_equal(telemetry_spool_keep_open(s, a, &err), 0);
	telemetry_counter_free(a);
	/* started again in the same window: the counts come back */
	assert_int_equal(telemetry_spool_take_open(s, b, now, &err), 0);
	telemetry_roll(&r, b, 0, true);
	assert_int_equal(json_integer_value(json_object_get(r, "requests")), 1);
	json_decref(r);
	/* taken once only */
	assert_int_equal(telemetry_spool_take_open(s, c, now, &err), 0);
	telemetry_roll(&r, c, 0, true);
	assert_null(r);
	/* kept, and started again after its window ended: spooled as a report */
	infer(c, 0.5f, 0, 1, 0, 0, false, 10);
	assert_int_equal(telemetry_spool_keep_open(s, c, &err), 0);
	assert_int_equal(telemetry_spool_take_open(s, b, now + 3600, &err), 0);
	assert_int_equal(telemetry_spool_count(s), before + 1);
	telemetry_counter_free(b);
	telemetry_counter_free(c);
	telemetry_spool_free(s);
}

/* After a 415 to gzip: plain for an hour, then gzip again. */
static void test_gzip_fallback(void **state)
{
	(void)state;
	uint64_t since = 0, t = 5000000000ull;
	assert_true(telemetry_gzip_next(&since, t));
	since = t; /* a 415 at t */
	assert_false(telemetry_gzip_next(&since, t));
	assert_false(telemetry_gzip_next(&since, t + TELEMETRY_GZIP_RETRY_NS - 1));
	assert_int_equal(since, t);
	assert_true(telemetry_gzip_next(&since, t + TELEMETRY_GZIP_RETRY_NS));
	assert_int_equal(since, 0);
	assert_true(telemetry_gzip_next(&since, t + 2 * TELEMETRY_GZIP_RETRY_NS));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counts_by_hand),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_windows_roll),
		cmocka_unit_test(test_gzip_fallback),
		cmocka_unit_test(test_checkpoint_restore),
		cmocka_unit_test(test_image),
		cmocka_unit_test(test_profile_bytes),
		cmocka_unit_test_setup_teardown(test_spool, make_dir, remove_dir),
		cmocka_unit_test_setup_teardown(test_open_window_across_restart, make_dir, remove_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
