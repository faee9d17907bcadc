/* The agent's telemetry: window counters, reports, the spool and its upload. See telemetry.h. */
#include "telemetry.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto.h"
#include "fileio.h"
#include "json.h"
#include "latency.h"
#include "log.h"

/* --- counters -------------------------------------------------------------------------------- */

/* One shard of a model's counters; a thread always uses the same one. */
struct shard {
	pthread_mutex_t lock;
	uint64_t requests, errors, lat[GN_LATENCY_NBUCKETS];
	struct gn_drift_counts *in, *out, *chan; /* per input feature, output feature, image channel */
	struct gn_drift_counts intensity;
} __attribute__((aligned(64)));

struct telemetry_counter {
	char *model, *version;
	struct gn_drift_profile *p; /* NULL: no features */
	char **inputs, **outputs;
	size_t ninputs, noutputs;
	int64_t window_s;
	pthread_mutex_t roll_lock; /* one roll or checkpoint at a time */
	int64_t start;             /* of the open window (under roll_lock) */
	struct shard shards[TELEMETRY_SHARDS];
};

static size_t nchannels(const struct gn_drift_profile *p)
{
	return p && p->image ? p->image->nchannels : 0;
}

static void shard_init(struct shard *s, const struct gn_drift_profile *p)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	size_t ni = p ? p->ninputs : 0, no = p ? p->noutputs : 0, nc = nchannels(p);
	s->in = gn_calloc(ni + 1, sizeof(*s->in));
	s->out = gn_calloc(no + 1, sizeof(*s->out));
	s->chan = gn_calloc(nc + 1, sizeof(*s->chan));
	for (size_t i = 0; i < ni; i++)
		gn_drift_counts_init(&s->in[i], p->inputs[i].nbins);
	for (size_t i = 0; i < no; i++)
		gn_drift_counts_init(&s->out[i], p->outputs[i].nbins);
	for (size_t i = 0; i < nc; i++)
		gn_drift_counts_init(&s->chan[i], 0);
	gn_drift_counts_init(&s->intensity, p && p->image ? p->image->intensity.nbins : 0);
}

static void shard_cleanup(struct shard *s, const struct gn_drift_profile *p)
{
	for (size_t i = 0; p && i < p->ninputs; i++)
		gn_drift_counts_cleanup(&s->in[i]);
	for (size_t i = 0; p && i < p->noutputs; i++)
		gn_drift_counts_cleanup(&s->out[i]);
	for (size_t i = 0; i < nchannels(p); i++)
		gn_drift_counts_cleanup(&s->chan[i]);
	gn_drift_counts_cleanup(&s->intensity);
	free(s->in);
	free(s->out);
	free(s->chan);
	pthread_mutex_destroy(&s->lock);
}

/* Moves src's counts into dst (same profile) and zeroes src. */
static void shard_move(struct shard *dst, struct shard *src, const struct gn_drift_profile *p)
{
	dst->requests += src->requests;
	dst->errors += src->errors;
	for (size_t k = 0; k < GN_LATENCY_NBUCKETS; k++)
		dst->lat[k] += src->lat[k];
	src->requests = src->errors = 0;
	memset(src->lat, 0, sizeof(src->lat));
	for (size_t i = 0; p && i < p->ninputs; i++) {
		gn_drift_counts_merge(&dst->in[i], &src->in[i]);
		gn_drift_counts_reset(&src->in[i]);
	}
	for (size_t i = 0; p && i < p->noutputs; i++) {
		gn_drift_counts_merge(&dst->out[i], &src->out[i]);
		gn_drift_counts_reset(&src->out[i]);
	}
	for (size_t i = 0; i < nchannels(p); i++) {
		gn_drift_counts_merge(&dst->chan[i], &src->chan[i]);
		gn_drift_counts_reset(&src->chan[i]);
	}
	gn_drift_counts_merge(&dst->intensity, &src->intensity);
	gn_drift_counts_reset(&src->intensity);
}

static char **names_dup(const char *const *names, size_t n)
{
	char **out = gn_calloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		out[i] = gn_strdup(names[i]);
	return out;
}

static void names_free(char **names, size_t n)
{
	for (size_t i = 0; names && i < n; i++)
		free(names[i]);
	free(names);
}

struct telemetry_counter *telemetry_counter_new(const char *model, const char *version,
						struct gn_drift_profile *profile, const char *const *inputs,
						size_t ninputs, const char *const *outputs, size_t noutputs,
						int64_t window_s)
{
	struct telemetry_counter *c = gn_calloc(1, sizeof(*c));
	c->model = gn_strdup(model);
	c->version = gn_strdup(version);
	c->p = profile;
	c->inputs = names_dup(inputs, ninputs);
	c->ninputs = ninputs;
	c->outputs = names_dup(outputs, noutputs);
	c->noutputs = noutputs;
	c->window_s = window_s > 0 ? window_s : 300;
	pthread_mutex_init(&c->roll_lock, NULL);
	c->start = gn_now() / c->window_s * c->window_s;
	for (size_t i = 0; i < TELEMETRY_SHARDS; i++)
		shard_init(&c->shards[i], profile);
	return c;
}

void telemetry_counter_free(struct telemetry_counter *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < TELEMETRY_SHARDS; i++)
		shard_cleanup(&c->shards[i], c->p);
	pthread_mutex_destroy(&c->roll_lock);
	gn_drift_profile_free(c->p);
	names_free(c->inputs, c->ninputs);
	names_free(c->outputs, c->noutputs);
	free(c->model);
	free(c->version);
	free(c);
}

const char *telemetry_counter_model(const struct telemetry_counter *c)
{
	return c->model;
}

const char *telemetry_counter_version(const struct telemetry_counter *c)
{
	return c->version;
}

/* The shard of the calling thread: threads take them in turn, once. */
static struct shard *my_shard(struct telemetry_counter *c)
{
	static atomic_uint next;
	static _Thread_local int mine = -1;
	if (mine < 0)
		mine = (int)(atomic_fetch_add(&next, 1) % TELEMETRY_SHARDS);
	return &c->shards[mine];
}

static size_t elements(int32_t ndim, const int64_t *shape)
{
	size_t n = 1;
	for (int32_t i = 0; i < ndim; i++)
		n *= shape[i] > 0 ? (size_t)shape[i] : 0;
	return n;
}

/* The values of the tensor a feature reads: its own, or the model's first (names[0]). */
static const float *find_input(size_t *out_n, const ganglion_rt_input *in, size_t nin, const char *tensor,
			       char *const *names, size_t nnames, const ganglion_rt_input **out_t)
{
	const char *want = tensor ? tensor : nnames ? names[0] : NULL;
	for (size_t i = 0; i < nin; i++)
		if (!want || strcmp(in[i].name, want) == 0) {
			*out_n = elements(in[i].ndim, in[i].shape);
			if (out_t)
				*out_t = &in[i];
			return in[i].data;
		}
	return NULL;
}

static const float *find_output(size_t *out_n, const ganglion_rt_output *out, size_t nout, const char *tensor,
				char *const *names, size_t nnames)
{
	const char *want = tensor ? tensor : nnames ? names[0] : NULL;
	for (size_t i = 0; out && i < nout; i++)
		if (!want || strcmp(out[i].name, want) == 0) {
			*out_n = elements(out[i].ndim, out[i].shape);
			return out[i].data;
		}
	return NULL;
}

/* Counts the value feature f reads from values (n of them). */
static void count_feature(struct gn_drift_counts *k, const struct gn_drift_feature *f, const float *v, size_t n)
{
	if (!v || n == 0)
		return;
	if (f->reduce != GN_DRIFT_ELEMENT) {
		size_t best = 0;
		for (size_t i = 1; i < n; i++)
			if (v[i] > v[best] || isnan(v[best]))
				best = i;
		if (f->reduce == GN_DRIFT_MAX)
			gn_drift_counts_add(k, f, (double)v[best]);
		else
			gn_drift_counts_add_category(
				k, isnan(v[best]) ? GN_DRIFT_NAN : gn_drift_category_num(f, (double)best),
				(double)best);
		return;
	}
	if ((size_t)f->index >= n)
		return;
	double x = (double)v[f->index];
	if (f->kind == GN_DRIFT_NUMERIC)
		gn_drift_counts_add(k, f, x);
	else
		gn_drift_counts_add_category(k, gn_drift_category_num(f, x), x);
}

/* An image input: per channel, at most TELEMETRY_IMAGE_SAMPLES evenly spaced pixels. */
static void count_image(struct shard *s, const struct gn_drift_image *im, const ganglion_rt_input *t)
{
	if (!t || t->ndim != 4)
		return;
	size_t nc = im->nchannels, c_dim = im->layout == GN_DRIFT_NCHW ? 1 : 3;
	if ((size_t)t->shape[c_dim] != nc)
		return;
	size_t pixels = elements(t->ndim, t->shape) / nc;
	size_t step = pixels > TELEMETRY_IMAGE_SAMPLES ? pixels / TELEMETRY_IMAGE_SAMPLES : 1;
	size_t plane = im->layout == GN_DRIFT_NCHW ? (size_t)(t->shape[2] * t->shape[3]) : 0;
	for (size_t px = 0; px < pixels; px += step)
		for (size_t ch = 0; ch < nc; ch++) {
			size_t at = im->layout == GN_DRIFT_NCHW ? (px / plane) * plane * nc + ch * plane + px % plane
								: px * nc + ch;
			double x = (double)t->data[at];
			gn_drift_counts_add_value(&s->chan[ch], x);
			gn_drift_counts_add(&s->intensity, &im->intensity, x);
		}
}

/* The input features; they mostly read the same tensor, looked up again only when the name changes. */
static void count_inputs(struct shard *s, const struct telemetry_counter *c, const ganglion_rt_input *in, size_t nin)
{
	const struct gn_drift_profile *p = c->p;
	const char *last = "";
	const float *v = NULL;
	size_t n = 0;
	for (size_t i = 0; i < p->ninputs; i++) {
		const char *want = p->inputs[i].tensor;
		if (!(want == last || (want && last && strcmp(want, last) == 0))) {
			v = find_input(&n, in, nin, want, c->inputs, c->ninputs, NULL);
			last = want;
		}
		count_feature(&s->in[i], &p->inputs[i], v, n);
	}
}

void telemetry_record(struct telemetry_counter *c, bool error, uint64_t latency_us, const ganglion_rt_input *in,
		      size_t nin, const ganglion_rt_output *out, size_t nout)
{
	struct shard *s = my_shard(c);
	const struct gn_drift_profile *p = c->p;
	size_t bucket = gn_latency_bucket(latency_us);
	pthread_mutex_lock(&s->lock);
	s->requests++;
	s->errors += error;
	s->lat[bucket]++;
	if (p)
		count_inputs(s, c, in, nin);
	for (size_t i = 0; p && !error && i < p->noutputs; i++) {
		size_t n = 0;
		const float *v = find_output(&n, out, nout, p->outputs[i].tensor, c->outputs, c->noutputs);
		count_feature(&s->out[i], &p->outputs[i], v, n);
	}
	if (p && p->image) {
		const ganglion_rt_input *t = NULL;
		size_t n;
		find_input(&n, in, nin, p->image->tensor, c->inputs, c->ninputs, &t);
		count_image(s, p->image, t);
	}
	pthread_mutex_unlock(&s->lock);
}

/* --- reports ------------------------------------------------------------------------------------ */

char *telemetry_json_text(const json_t *j)
{
	return json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(TELEMETRY_REAL_DIGITS));
}

/* A feature's counts as sent: underflow, overflow and NaN left out when zero (they read as 0). */
static json_t *counts_json(const struct gn_drift_counts *k)
{
	json_t *j = gn_drift_counts_json(k);
	static const char *const zero_ok[] = {"underflow", "overflow", "nan"};
	for (size_t i = 0; i < GN_ARRAY_LEN(zero_ok); i++)
		if (json_integer_value(json_object_get(j, zero_ok[i])) == 0)
			json_object_del(j, zero_ok[i]);
	return j;
}

static json_t *features_json(const struct gn_drift_feature *fs, const struct gn_drift_counts *k, size_t n)
{
	json_t *o = json_object();
	for (size_t i = 0; i < n; i++)
		json_object_set_new(o, fs[i].name, counts_json(&k[i]));
	return o;
}

/* The report of window start from the counts in sum. */
static json_t *report_json(const struct telemetry_counter *c, const struct shard *sum, int64_t start)
{
	json_t *lat = json_array();
	for (size_t k = 0; k < GN_LATENCY_NBUCKETS; k++)
		json_array_append_new(lat, json_integer((json_int_t)sum->lat[k]));
	json_t *r = json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:o}", "model", c->model, "version", c->version, "start",
			      (json_int_t)start, "seconds", (json_int_t)c->window_s, "requests",
			      (json_int_t)sum->requests, "errors", (json_int_t)sum->errors, "latency_us_buckets", lat);
	const struct gn_drift_profile *p = c->p;
	if (p && p->ninputs)
		json_object_set_new(r, "features", features_json(p->inputs, sum->in, p->ninputs));
	if (p && p->noutputs)
		json_object_set_new(r, "outputs", features_json(p->outputs, sum->out, p->noutputs));
	if (p && p->image) {
		json_t *ch = json_array();
		for (size_t i = 0; i < p->image->nchannels; i++)
			json_array_append_new(ch, counts_json(&sum->chan[i]));
		json_object_set_new(r, "image",
				    json_pack("{s:o,s:o}", "channels", ch, "intensity", counts_json(&sum->intensity)));
	}
	return r;
}

/* Takes every shard's counts into a new sum (shard_cleanup it). */
static void collect(struct shard *sum, struct telemetry_counter *c)
{
	shard_init(sum, c->p);
	for (size_t i = 0; i < TELEMETRY_SHARDS; i++) {
		pthread_mutex_lock(&c->shards[i].lock);
		shard_move(sum, &c->shards[i], c->p);
		pthread_mutex_unlock(&c->shards[i].lock);
	}
}

const struct gn_drift_profile *telemetry_counter_profile(const struct telemetry_counter *c)
{
	return c->p;
}

void telemetry_drift(struct telemetry_counter *c, int64_t *out_start, struct gn_drift_measure **out_in,
		     struct gn_drift_measure **out_out)
{
	const struct gn_drift_profile *p = c->p;
	struct shard sum;
	*out_in = *out_out = NULL;
	shard_init(&sum, p);
	pthread_mutex_lock(&c->roll_lock);
	*out_start = c->start;
	for (size_t s = 0; p && s < TELEMETRY_SHARDS; s++) {
		pthread_mutex_lock(&c->shards[s].lock);
		for (size_t i = 0; i < p->ninputs; i++)
			gn_drift_counts_merge(&sum.in[i], &c->shards[s].in[i]);
		for (size_t i = 0; i < p->noutputs; i++)
			gn_drift_counts_merge(&sum.out[i], &c->shards[s].out[i]);
		pthread_mutex_unlock(&c->shards[s].lock);
	}
	pthread_mutex_unlock(&c->roll_lock);
	if (p) {
		*out_in = gn_calloc(p->ninputs + 1, sizeof(**out_in));
		*out_out = gn_calloc(p->noutputs + 1, sizeof(**out_out));
		for (size_t i = 0; i < p->ninputs; i++)
			gn_drift_compare(&(*out_in)[i], &p->inputs[i], &sum.in[i]);
		for (size_t i = 0; i < p->noutputs; i++)
			gn_drift_compare(&(*out_out)[i], &p->outputs[i], &sum.out[i]);
	}
	shard_cleanup(&sum, p);
}

void telemetry_roll(json_t **out, struct telemetry_counter *c, int64_t now, bool force)
{
	struct shard sum;
	*out = NULL;
	pthread_mutex_lock(&c->roll_lock);
	int64_t current = now / c->window_s * c->window_s;
	if (!force && c->start >= current) {
		pthread_mutex_unlock(&c->roll_lock);
		return;
	}
	collect(&sum, c);
	if (sum.requests)
		*out = report_json(c, &sum, c->start);
	c->start = current;
	pthread_mutex_unlock(&c->roll_lock);
	shard_cleanup(&sum, c->p);
}

json_t *telemetry_checkpoint(struct telemetry_counter *c)
{
	struct shard sum;
	pthread_mutex_lock(&c->roll_lock);
	collect(&sum, c);
	json_t *r = report_json(c, &sum, c->start);
	/* the counts stay where they were: put them back */
	pthread_mutex_lock(&c->shards[0].lock);
	shard_move(&c->shards[0], &sum, c->p);
	pthread_mutex_unlock(&c->shards[0].lock);
	pthread_mutex_unlock(&c->roll_lock);
	shard_cleanup(&sum, c->p);
	return json_pack("{s:I,s:o}", "start", (json_int_t)json_integer_value(json_object_get(r, "start")), "report",
			 r);
}

/* Reads a report's counts of one list (features or outputs) into k. */
static int parse_list(struct gn_drift_counts *k, const json_t *obj, const struct gn_drift_feature *fs, size_t n,
		      gn_err *err)
{
	for (size_t i = 0; i < n; i++) {
		struct gn_drift_counts x;
		const json_t *j = json_object_get(obj, fs[i].name);
		int rc;
		if (!j)
			continue;
		if ((rc = gn_drift_counts_parse(&x, j, fs[i].nbins, fs[i].kind == GN_DRIFT_NUMERIC, fs[i].name, err)))
			return rc;
		gn_drift_counts_merge(&k[i], &x);
		gn_drift_counts_cleanup(&x);
	}
	return 0;
}

static int parse_image(struct shard *s, const json_t *img, const struct gn_drift_image *im, gn_err *err)
{
	struct gn_drift_counts x;
	int rc;
	if (!img || !im)
		return 0;
	for (size_t i = 0; i < im->nchannels; i++) {
		const json_t *j = json_array_get(json_object_get(img, "channels"), i);
		if (!j)
			continue;
		if ((rc = gn_drift_counts_parse(&x, j, 0, false, "channel", err)))
			return rc;
		gn_drift_counts_merge(&s->chan[i], &x);
		gn_drift_counts_cleanup(&x);
	}
	if ((rc = gn_drift_counts_parse(&x, json_object_get(img, "intensity"), im->intensity.nbins, true, "intensity",
					err)))
		return rc;
	gn_drift_counts_merge(&s->intensity, &x);
	gn_drift_counts_cleanup(&x);
	return 0;
}

/* Reads a report's counts into s (initialised for c's profile). */
static int report_parse(struct shard *s, const struct telemetry_counter *c, const json_t *r, gn_err *err)
{
	const json_t *lat = json_object_get(r, "latency_us_buckets");
	int rc;
	if (strcmp(gn_json_str(r, "model") ? gn_json_str(r, "model") : "", c->model) != 0 ||
	    strcmp(gn_json_str(r, "version") ? gn_json_str(r, "version") : "", c->version) != 0 ||
	    json_integer_value(json_object_get(r, "seconds")) != c->window_s ||
	    json_array_size(lat) != GN_LATENCY_NBUCKETS)
		return gn_err_set(err, GN_EINVAL, "the kept counts are of another model version or window length");
	s->requests = (uint64_t)json_integer_value(json_object_get(r, "requests"));
	s->errors = (uint64_t)json_integer_value(json_object_get(r, "errors"));
	for (size_t k = 0; k < GN_LATENCY_NBUCKETS; k++)
		s->lat[k] = (uint64_t)json_integer_value(json_array_get(lat, k));
	const struct gn_drift_profile *p = c->p;
	if (p && ((rc = parse_list(s->in, json_object_get(r, "features"), p->inputs, p->ninputs, err)) ||
		  (rc = parse_list(s->out, json_object_get(r, "outputs"), p->outputs, p->noutputs, err)) ||
		  (rc = parse_image(s, json_object_get(r, "image"), p->image, err))))
		return rc;
	return 0;
}

int telemetry_restore(json_t **out_closed, struct telemetry_counter *c, const json_t *checkpoint, int64_t now,
		      gn_err *err)
{
	struct shard s;
	const json_t *r = json_object_get(checkpoint, "report");
	int64_t start = (int64_t)json_integer_value(json_object_get(checkpoint, "start"));
	int rc;
	*out_closed = NULL;
	shard_init(&s, c->p);
	if ((rc = report_parse(&s, c, r, err)))
		goto out;
	if (start < now / c->window_s * c->window_s) { /* its window has ended: a report of its own */
		if (s.requests)
			*out_closed = json_deep_copy(r);
		goto out;
	}
	pthread_mutex_lock(&c->roll_lock);
	pthread_mutex_lock(&c->shards[0].lock);
	shard_move(&c->shards[0], &s, c->p);
	pthread_mutex_unlock(&c->shards[0].lock);
	c->start = start;
	pthread_mutex_unlock(&c->roll_lock);
out:
	shard_cleanup(&s, c->p);
	return rc;
}

int telemetry_profile_parse(struct gn_drift_profile **out, const char *bytes, size_t len, const char *sha256_hex,
			    gn_err *err)
{
	char hex[GN_SHA256_HEX_LEN + 1];
	json_t *j = NULL;
	gn_err e;
	int rc;
	*out = NULL;
	gn_sha256_hex(hex, bytes, len);
	if (!sha256_hex || strcmp(hex, sha256_hex) != 0)
		return gn_err_set(err, GN_EINVAL,
				  "the reference profile's bytes are not those its signed target names");
	if (gn_json_parse(&j, bytes, len, 64, &e))
		return gn_err_set(err, GN_EINVAL, "the reference profile does not parse: %s", e.msg);
	rc = gn_drift_profile_parse(out, j, err);
	json_decref(j);
	return rc;
}

/* --- the spool ---------------------------------------------------------------------------------- */

struct telemetry_spool {
	char *dir;
	size_t max;
	pthread_mutex_t lock;
	uint64_t dropped; /* not yet reported */
	size_t batch_cap; /* halved on a 413 */
};

static int mkdir_p(const char *path, gn_err *err)
{
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		return gn_err_set(err, GN_ERROR, "cannot create %s: %s", path, strerror(errno));
	return 0;
}

static int dropped_save(struct telemetry_spool *s, gn_err *err)
{
	char *path = gn_asprintf("%s/dropped", s->dir), num[24];
	int n = snprintf(num, sizeof(num), "%llu\n", (unsigned long long)s->dropped);
	int rc = gn_file_write_atomic(path, num, (size_t)n, 0600, err);
	free(path);
	return rc;
}

int telemetry_spool_open(struct telemetry_spool **out, const char *dir, size_t max_windows, gn_err *err)
{
	struct telemetry_spool *s = gn_calloc(1, sizeof(*s));
	char *open_dir = gn_asprintf("%s/open", dir), *path = gn_asprintf("%s/dropped", dir);
	int rc;
	*out = NULL;
	s->dir = gn_strdup(dir);
	s->max = max_windows ? max_windows : 1;
	s->batch_cap = SIZE_MAX;
	pthread_mutex_init(&s->lock, NULL);
	if ((rc = mkdir_p(dir, err)) || (rc = mkdir_p(open_dir, err)))
		goto out;
	FILE *f = fopen(path, "re");
	if (f) {
		unsigned long long v = 0;
		if (fscanf(f, "%llu", &v) == 1)
			s->dropped = v;
		fclose(f);
	}
	*out = s;
	s = NULL;
out:
	telemetry_spool_free(s);
	free(open_dir);
	free(path);
	return rc;
}

void telemetry_spool_free(struct telemetry_spool *s)
{
	if (!s)
		return;
	pthread_mutex_destroy(&s->lock);
	free(s->dir);
	free(s);
}

static bool is_report(const char *name)
{
	size_t n = strlen(name);
	return n > 18 && name[0] >= '0' && name[0] <= '9' && strcmp(name + n - 5, ".json") == 0 &&
	       strchr(name, '@') != NULL;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The report files, oldest first (new array of new names). */
static char **list_reports(size_t *out_n, const char *dir)
{
	DIR *d = opendir(dir);
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (!is_report(e->d_name))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = gn_realloc(names, cap * sizeof(char *));
		}
		names[n++] = gn_strdup(e->d_name);
	}
	if (d)
		closedir(d);
	if (n)
		qsort(names, n, sizeof(char *), cmp_name);
	*out_n = n;
	return names;
}

static void names_release(char **names, size_t n)
{
	names_free(names, n);
}

/* Removes the oldest reports until fewer than max are left; counts them (caller holds lock). */
static int make_room(struct telemetry_spool *s, gn_err *err)
{
	size_t n;
	char **names = list_reports(&n, s->dir);
	uint64_t removed = 0;
	for (size_t i = 0; n - i >= s->max && i < n; i++) {
		char *path = gn_asprintf("%s/%s", s->dir, names[i]);
		if (unlink(path) == 0)
			removed++;
		free(path);
	}
	names_release(names, n);
	if (!removed)
		return 0;
	s->dropped += removed;
	gn_log(GN_LOG_WARN,
	       "event=telemetry_spool_full dropped=%llu msg=\"the spool holds %zu windows at most: the "
	       "oldest were dropped (they are counted and reported)\"",
	       (unsigned long long)removed, s->max);
	return dropped_save(s, err);
}

int telemetry_spool_put(struct telemetry_spool *s, const json_t *report, gn_err *err)
{
	char *text = telemetry_json_text(report);
	char *path = gn_asprintf("%s/%012lld-%s@%s.json", s->dir,
				 (long long)json_integer_value(json_object_get(report, "start")),
				 gn_json_str(report, "model"), gn_json_str(report, "version"));
	pthread_mutex_lock(&s->lock);
	int rc = make_room(s, err);
	if (!rc)
		rc = gn_file_write_atomic(path, text, strlen(text), 0600, err);
	pthread_mutex_unlock(&s->lock);
	free(text);
	free(path);
	return rc;
}

size_t telemetry_spool_count(struct telemetry_spool *s)
{
	size_t n;
	pthread_mutex_lock(&s->lock);
	char **names = list_reports(&n, s->dir);
	names_release(names, n);
	pthread_mutex_unlock(&s->lock);
	return n;
}

uint64_t telemetry_spool_dropped(struct telemetry_spool *s)
{
	pthread_mutex_lock(&s->lock);
	uint64_t d = s->dropped;
	pthread_mutex_unlock(&s->lock);
	return d;
}

static char *open_path(const struct telemetry_spool *s, const struct telemetry_counter *c)
{
	return gn_asprintf("%s/open/%s@%s.json", s->dir, c->model, c->version);
}

int telemetry_spool_keep_open(struct telemetry_spool *s, struct telemetry_counter *c, gn_err *err)
{
	json_t *cp = telemetry_checkpoint(c);
	char *text = json_dumps(cp, JSON_COMPACT), *path = open_path(s, c);
	int rc = gn_file_write_atomic(path, text, strlen(text), 0600, err);
	free(text);
	free(path);
	json_decref(cp);
	return rc;
}

int telemetry_spool_take_open(struct telemetry_spool *s, struct telemetry_counter *c, int64_t now, gn_err *err)
{
	char *path = open_path(s, c);
	json_error_t je;
	json_t *cp = json_load_file(path, 0, &je), *closed = NULL;
	int rc = 0;
	if (cp && (rc = telemetry_restore(&closed, c, cp, now, err)))
		gn_log(GN_LOG_WARN, "event=telemetry_open_dropped file=%s msg=\"%s\"", path, err->msg);
	if (closed)
		rc = telemetry_spool_put(s, closed, err);
	if (cp && !rc)
		unlink(path);
	json_decref(cp);
	json_decref(closed);
	free(path);
	return rc;
}

/* Reads the oldest reports (up to max) into a batch body; *out_names are their files (new). */
static json_t *batch_read(char ***out_names, size_t *out_n, struct telemetry_spool *s, size_t max)
{
	size_t n, taken = 0;
	char **names = list_reports(&n, s->dir), **mine = gn_calloc(n + 1, sizeof(char *));
	json_t *windows = json_array();
	for (size_t i = 0; i < n; i++) {
		char *path = gn_asprintf("%s/%s", s->dir, names[i]);
		json_error_t je;
		json_t *r = taken < max ? json_load_file(path, 0, &je) : NULL;
		if (taken < max && !r) { /* a file no one can read: out of the way, counted */
			gn_log(GN_LOG_WARN, "event=telemetry_spool_unreadable file=%s msg=\"%s\"", path, je.text);
			unlink(path);
			s->dropped++;
		} else if (r) {
			json_array_append_new(windows, r);
			mine[taken++] = gn_strdup(names[i]);
		}
		free(path);
	}
	names_release(names, n);
	*out_names = mine;
	*out_n = taken;
	return windows;
}

/* Removes the files of a batch the server took or refused for good. */
static void batch_remove(struct telemetry_spool *s, char **names, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char *path = gn_asprintf("%s/%s", s->dir, names[i]);
		unlink(path);
		free(path);
	}
}

int telemetry_spool_upload(size_t *out_sent, struct telemetry_spool *s, size_t max_batch, telemetry_send_fn send,
			   void *ctx, gn_err *err)
{
	char **names = NULL;
	size_t n = 0;
	int status = 0, rc = 0;
	*out_sent = 0;
	pthread_mutex_lock(&s->lock);
	size_t cap = max_batch < s->batch_cap ? max_batch : s->batch_cap;
	json_t *windows = batch_read(&names, &n, s, cap ? cap : 1);
	uint64_t dropped = s->dropped;
	pthread_mutex_unlock(&s->lock);
	if (n == 0)
		goto out;
	if (dropped)
		json_object_set_new(json_array_get(windows, 0), "dropped", json_integer((json_int_t)dropped));
	json_t *body = json_pack("{s:O}", "windows", windows);
	char *text = telemetry_json_text(body);
	json_decref(body);
	rc = send(ctx, text, strlen(text), &status, err);
	free(text);
	if (rc)
		goto out;
	pthread_mutex_lock(&s->lock);
	if (status == 200) {
		batch_remove(s, names, n);
		s->dropped -= dropped < s->dropped ? dropped : s->dropped;
		s->batch_cap = SIZE_MAX;
		*out_sent = n;
	} else if (status == 413 && n > 1) {
		s->batch_cap = n / 2;
		rc = gn_err_set(err, GN_EUNAVAIL, "the server took no batch of %zu windows (413): next with %zu", n,
				n / 2);
	} else if (status == 400 || status == 403 || status == 409 || status == 413 || status == 422) {
		batch_remove(s, names, n);
		s->dropped += n;
		*out_sent = n;
		gn_log(GN_LOG_WARN,
		       "event=telemetry_refused status=%d windows=%zu msg=\"the server refused the batch; its "
		       "windows are dropped and counted\"",
		       status, n);
	} else {
		rc = gn_err_set(err, GN_EUNAVAIL, "the server answered %d to telemetry; kept for later", status);
	}
	if (*out_sent && !rc)
		rc = dropped_save(s, err);
	pthread_mutex_unlock(&s->lock);
out:
	json_decref(windows);
	names_release(names, n);
	return rc;
}

bool telemetry_gzip_next(uint64_t *plain_since, uint64_t now)
{
	if (*plain_since && now - *plain_since >= TELEMETRY_GZIP_RETRY_NS)
		*plain_since = 0;
	return *plain_since == 0;
}
