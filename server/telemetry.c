/* Telemetry ingestion, partitions and the fleet's drift: see telemetry.h. */
#include "telemetry.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "canary.h"
#include "devices.h"
#include "drift.h"
#include "latency.h"
#include "log.h"
#include "model.h"
#include "selector.h"
#include "tuf.h"

const gn_json_field telemetry_batch_fields[] = {
	{"device_id", GN_JSON_STRING, false, false},
	{"windows", GN_JSON_ARRAY, true, false},
};
const size_t telemetry_batch_nfields = GN_ARRAY_LEN(telemetry_batch_fields);

static const gn_json_field window_fields[] = {
	{"model", GN_JSON_STRING, true, false},
	{"version", GN_JSON_STRING, true, false},
	{"start", GN_JSON_INTEGER, true, false},
	{"seconds", GN_JSON_INTEGER, true, false},
	{"requests", GN_JSON_INTEGER, true, false},
	{"errors", GN_JSON_INTEGER, true, false},
	{"latency_us_buckets", GN_JSON_ARRAY, true, false},
	{"features", GN_JSON_OBJECT, false, false},
	{"outputs", GN_JSON_OBJECT, false, false},
	{"image", GN_JSON_OBJECT, false, false},
	{"dropped", GN_JSON_INTEGER, false, false},
	{"resources", GN_JSON_OBJECT, false, false},
};

static const db_stmt st_version = {
	"telemetry_version",
	"SELECT mv.profile_json, EXISTS (SELECT 1 FROM director_targets t WHERE t.device_id = $1::uuid"
	"   AND jsonb_path_exists(t.body::jsonb, '$.signed.targets.*.custom ? (@.model == $m && @.version == $v)',"
	"   jsonb_build_object('m', $2::text, 'v', $3::text)))"
	" FROM model_versions mv WHERE mv.model = $2 AND mv.version = $3",
	3};
static const db_stmt st_profile = {"telemetry_profile",
				   "SELECT profile_json FROM model_versions WHERE model = $1 AND version = $2", 2};
static const db_stmt st_partition = {
	"telemetry_partition", "SELECT count(*) FILTER (WHERE gn_telemetry_partition(d)) FROM unnest($1::date[]) d", 1};
static const db_stmt st_drop = {"telemetry_drop", "SELECT gn_telemetry_drop_before($1::date)", 1};
/* The windows that are new (a window sent again hits the primary key and counts once), returned so
 * that only their features are copied in. */
static const db_stmt st_windows = {
	"telemetry_windows",
	"INSERT INTO telemetry_windows (device_id, model, version, window_start, seconds, requests, errors,"
	"   latency_us_buckets, dropped, resources)"
	" SELECT $1::uuid, t.model, t.version, to_timestamp(t.start), t.seconds, t.requests, t.errors, t.lat::bigint[],"
	"   t.dropped, t.res::jsonb"
	" FROM unnest($2::text[], $3::text[], $4::bigint[], $5::int[], $6::bigint[], $7::bigint[], $8::text[],"
	"   $9::bigint[], $10::text[]) AS t(model, version, start, seconds, requests, errors, lat, dropped, res)"
	" ON CONFLICT DO NOTHING RETURNING model, version, extract(epoch FROM window_start)::bigint",
	10};
/* The new windows' features, in COPY's binary format (db_copy). */
static const db_stmt st_features = {
	"telemetry_features",
	"COPY telemetry_features (device_id, model, version, window_start, part, idx, counts, underflow, overflow,"
	" nan, n, mean, m2, min, max) FROM STDIN (FORMAT binary)",
	0};
enum { NFEATURE_COLUMNS = 15 };

/* --- PostgreSQL array literals, built for the batch's one INSERT ------------------------------- */

struct arr {
	gn_buf b;
	size_t n;
};

static void arr_init(struct arr *a)
{
	gn_buf_init(&a->b);
	gn_buf_puts(&a->b, "{");
	a->n = 0;
}

static void arr_sep(struct arr *a)
{
	if (a->n++)
		gn_buf_puts(&a->b, ",");
}

/* A text element, double-quoted (backslash and quote escaped), or NULL. */
static void arr_text(struct arr *a, const char *s)
{
	arr_sep(a);
	if (!s) {
		gn_buf_puts(&a->b, "NULL");
		return;
	}
	gn_buf_puts(&a->b, "\"");
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			gn_buf_puts(&a->b, "\\");
		gn_buf_append(&a->b, s, 1);
	}
	gn_buf_puts(&a->b, "\"");
}

static void arr_int(struct arr *a, int64_t v)
{
	arr_sep(a);
	gn_buf_printf(&a->b, "%lld", (long long)v);
}

static char *arr_end(struct arr *a)
{
	gn_buf_puts(&a->b, "}");
	return gn_buf_detach(&a->b);
}

/* --- checking a batch --------------------------------------------------------------------------- */

/* One feature's counts in a window, as it will be stored. */
struct fcounts {
	const char *part;
	int idx;
	struct gn_drift_counts c;
};

struct window {
	const char *model, *version; /* borrowed from the body */
	int64_t start, seconds, requests, errors, dropped;
	int64_t lat[GN_LATENCY_NBUCKETS];
	char *resources; /* JSON text or NULL */
	bool expired;
	bool stored; /* new: its row went in, so its features follow */
	struct fcounts *f;
	size_t nf;
};

/* A model version the batch names, with what the database says of it. */
struct version {
	const char *model, *version;
	struct gn_drift_profile *profile; /* NULL: none */
};

struct batch {
	struct window *w;
	size_t nw;
	struct version *v;
	size_t nv;
};

static void batch_cleanup(struct batch *b)
{
	for (size_t i = 0; i < b->nw; i++) {
		for (size_t k = 0; k < b->w[i].nf; k++)
			gn_drift_counts_cleanup(&b->w[i].f[k].c);
		free(b->w[i].f);
		free(b->w[i].resources);
	}
	for (size_t i = 0; i < b->nv; i++)
		gn_drift_profile_free(b->v[i].profile);
	free(b->w);
	free(b->v);
	memset(b, 0, sizeof(*b));
}

static int nonneg(int64_t *out, const json_t *w, const char *field, size_t i, gn_err *err)
{
	const json_t *x = json_object_get(w, field);
	*out = x ? (int64_t)json_integer_value(x) : 0;
	if (*out < 0)
		return gn_err_set(err, GN_EINVAL, "windows[%zu].%s must not be negative", i, field);
	return 0;
}

static int check_latency(struct window *w, const json_t *arr, size_t i, gn_err *err)
{
	size_t k;
	json_t *x;
	int64_t sum = 0;
	if (json_array_size(arr) != GN_LATENCY_NBUCKETS)
		return gn_err_set(err, GN_EINVAL, "windows[%zu].latency_us_buckets must hold %d counts (lib/latency.h)",
				  i, GN_LATENCY_NBUCKETS);
	json_array_foreach(arr, k, x) {
		if (!json_is_integer(x) || json_integer_value(x) < 0)
			return gn_err_set(err, GN_EINVAL,
					  "windows[%zu].latency_us_buckets must hold non-negative integers", i);
		w->lat[k] = (int64_t)json_integer_value(x);
		sum += w->lat[k];
		if (sum < 0 || sum > w->requests)
			return gn_err_set(err, GN_EINVAL,
					  "windows[%zu].latency_us_buckets count more requests than 'requests'", i);
	}
	return 0;
}

static int check_resources(struct window *w, const json_t *res, size_t i, gn_err *err)
{
	static const gn_json_field fields[] = {
		{"cpu_seconds", GN_JSON_NUMBER, false, false},
		{"rss_bytes", GN_JSON_INTEGER, false, false},
		{"accel_bytes", GN_JSON_INTEGER, false, false},
	};
	gn_err e;
	const char *k;
	json_t *v;
	if (!res)
		return 0;
	if (gn_json_check(res, fields, GN_ARRAY_LEN(fields), &e))
		return gn_err_set(err, GN_EINVAL, "windows[%zu].resources: %s", i, e.msg);
	json_object_foreach((json_t *)res, k, v)
		if (!isfinite(json_number_value(v)) || json_number_value(v) < 0)
			return gn_err_set(err, GN_EINVAL, "windows[%zu].resources.%s must be a non-negative number", i,
					  k);
	w->resources = json_dumps(res, JSON_COMPACT | JSON_SORT_KEYS);
	return 0;
}

/* The checks that need no database: fields, numbers, time. */
static int check_window(struct window *w, const json_t *j, size_t i, const struct telemetry_limits *lim, gn_err *err)
{
	gn_err e;
	struct gn_semver sv;
	int rc;
	if (!json_is_object(j))
		return gn_err_set(err, GN_EINVAL, "windows[%zu] must be an object", i);
	if (gn_json_check(j, window_fields, GN_ARRAY_LEN(window_fields), &e))
		return gn_err_set(err, GN_EINVAL, "windows[%zu]: %s", i, e.msg);
	w->model = gn_json_str(j, "model");
	w->version = gn_json_str(j, "version");
	if (gn_model_name_check(w->model, &e) || gn_model_version_parse(&sv, w->version, &e))
		return gn_err_set(err, GN_EINVAL, "windows[%zu]: %s", i, e.msg);
	if ((rc = nonneg(&w->start, j, "start", i, err)) || (rc = nonneg(&w->seconds, j, "seconds", i, err)) ||
	    (rc = nonneg(&w->requests, j, "requests", i, err)) || (rc = nonneg(&w->errors, j, "errors", i, err)) ||
	    (rc = nonneg(&w->dropped, j, "dropped", i, err)))
		return rc;
	if (w->seconds < TELEMETRY_MIN_SECONDS || w->seconds > TELEMETRY_MAX_SECONDS)
		return gn_err_set(err, GN_EINVAL, "windows[%zu].seconds must be %d to %d", i, TELEMETRY_MIN_SECONDS,
				  TELEMETRY_MAX_SECONDS);
	if (w->start % w->seconds != 0)
		return gn_err_set(err, GN_EINVAL,
				  "windows[%zu].start must be a multiple of its seconds (windows are aligned on the "
				  "epoch, so that the fleet's line up)",
				  i);
	if (w->start > lim->now + TELEMETRY_CLOCK_SKEW - w->seconds)
		return gn_err_set(err, GN_EINVAL, "windows[%zu] ends after the server's clock (start %lld + %lld s)", i,
				  (long long)w->start, (long long)w->seconds);
	if (w->errors > w->requests)
		return gn_err_set(err, GN_EINVAL, "windows[%zu].errors must not exceed requests", i);
	w->expired = w->start + w->seconds < lim->now - lim->retention_s;
	if ((rc = check_latency(w, json_object_get(j, "latency_us_buckets"), i, err)) ||
	    (rc = check_resources(w, json_object_get(j, "resources"), i, err)))
		return rc;
	return 0;
}

/* Finds or adds the batch's entry for model@version. */
static struct version *version_of(struct batch *b, const char *model, const char *version)
{
	for (size_t i = 0; i < b->nv; i++)
		if (strcmp(b->v[i].model, model) == 0 && strcmp(b->v[i].version, version) == 0)
			return &b->v[i];
	b->v = gn_realloc(b->v, (b->nv + 1) * sizeof(*b->v));
	b->v[b->nv] = (struct version){model, version, NULL};
	return &b->v[b->nv++];
}

static struct fcounts *add_counts(struct window *w, const char *part, int idx)
{
	struct fcounts *f = &w->f[w->nf++];
	f->part = part;
	f->idx = idx;
	return f;
}

/* A window's features (or outputs): an object of the profile's feature names to counts. */
static int check_features(struct window *w, const json_t *obj, const struct gn_drift_feature *fs, size_t n,
			  const char *list, const char *part, size_t i, gn_err *err)
{
	const char *k;
	json_t *v;
	char what[160];
	json_object_foreach((json_t *)obj, k, v) {
		size_t idx = 0;
		while (idx < n && strcmp(fs[idx].name, k) != 0)
			idx++;
		if (idx == n)
			return gn_err_set(
				err, GN_EINVAL,
				"windows[%zu].%s names '%.64s', which is not a feature of %s@%s's reference profile", i,
				list, k, w->model, w->version);
		snprintf(what, sizeof(what), "windows[%zu].%s.%.64s", i, list, k);
		struct fcounts *f = add_counts(w, part, (int)idx);
		int rc = gn_drift_counts_parse(&f->c, v, fs[idx].nbins, fs[idx].kind == GN_DRIFT_NUMERIC, what, err);
		if (rc) {
			w->nf--;
			return rc;
		}
	}
	return 0;
}

static int check_image(struct window *w, const json_t *img, const struct gn_drift_image *im, size_t i, gn_err *err)
{
	static const gn_json_field fields[] = {
		{"channels", GN_JSON_ARRAY, true, false},
		{"intensity", GN_JSON_OBJECT, true, false},
	};
	char what[96];
	gn_err e;
	size_t k;
	json_t *ch;
	int rc;
	if (!im)
		return gn_err_set(err, GN_EINVAL, "windows[%zu].image: %s@%s's reference profile has no image", i,
				  w->model, w->version);
	if (gn_json_check(img, fields, GN_ARRAY_LEN(fields), &e))
		return gn_err_set(err, GN_EINVAL, "windows[%zu].image: %s", i, e.msg);
	if (json_array_size(json_object_get(img, "channels")) != im->nchannels)
		return gn_err_set(err, GN_EINVAL, "windows[%zu].image.channels must hold %zu channels, as the profile",
				  i, im->nchannels);
	json_array_foreach(json_object_get(img, "channels"), k, ch) {
		snprintf(what, sizeof(what), "windows[%zu].image.channels[%zu]", i, k);
		struct fcounts *f = add_counts(w, "channel", (int)k);
		if ((rc = gn_drift_counts_parse(&f->c, ch, 0, false, what, err))) {
			w->nf--;
			return rc;
		}
	}
	snprintf(what, sizeof(what), "windows[%zu].image.intensity", i);
	struct fcounts *f = add_counts(w, "intensity", 0);
	if ((rc = gn_drift_counts_parse(&f->c, json_object_get(img, "intensity"), im->intensity.nbins, true, what,
					err))) {
		w->nf--;
		return rc;
	}
	return 0;
}

/* The checks against the version's profile. */
static int check_counts(struct window *w, const json_t *j, const struct gn_drift_profile *p, size_t i, gn_err *err)
{
	const json_t *in = json_object_get(j, "features"), *out = json_object_get(j, "outputs"),
		     *img = json_object_get(j, "image");
	size_t cap = json_object_size(in) + json_object_size(out) +
		     (img ? json_array_size(json_object_get(img, "channels")) + 1 : 0);
	int rc;
	if (!p && (json_object_size(in) || json_object_size(out) || img))
		return gn_err_set(err, GN_EINVAL,
				  "windows[%zu] has feature counts, but %s@%s has no reference profile to count on", i,
				  w->model, w->version);
	if (!p)
		return 0;
	w->f = gn_calloc(cap + 1, sizeof(*w->f));
	if (in && (rc = check_features(w, in, p->inputs, p->ninputs, "features", "input", i, err)))
		return rc;
	if (out && (rc = check_features(w, out, p->outputs, p->noutputs, "outputs", "output", i, err)))
		return rc;
	if (img && (rc = check_image(w, img, p->image, i, err)))
		return rc;
	return 0;
}

/* Loads each version the batch names: its profile, and whether the device may report on it. */
static int load_versions(struct batch *b, db_conn *c, const char *device_id, gn_err *err)
{
	for (size_t i = 0; i < b->nv; i++) {
		struct version *v = &b->v[i];
		PGresult *res = NULL;
		const char *p[] = {device_id, v->model, v->version};
		int rc = db_exec(&res, c, &st_version, p, err);
		if (rc)
			return rc;
		if (PQntuples(res) == 0 || strcmp(PQgetvalue(res, 0, 1), "t") != 0) {
			PQclear(res);
			return gn_err_set(err, GN_EFORBIDDEN,
					  "this device does not run %s@%s (its director targets never named it)",
					  v->model, v->version);
		}
		json_t *j = PQgetisnull(res, 0, 0) ? NULL : json_loads(PQgetvalue(res, 0, 0), 0, NULL);
		PQclear(res);
		if (j && !json_is_null(j) && (rc = gn_drift_profile_parse(&v->profile, j, err))) {
			json_decref(j);
			gn_log(GN_LOG_ERROR, "event=bad_stored_profile model=%s version=%s msg=\"%s\"", v->model,
			       v->version, err->msg);
			return gn_err_set(err, GN_ERROR, "the stored reference profile of %s@%s does not read",
					  v->model, v->version);
		}
		json_decref(j);
	}
	return 0;
}

static int check_batch(struct batch *b, db_conn *c, const char *device_id, const json_t *body,
		       const struct telemetry_limits *lim, gn_err *err)
{
	const json_t *windows = json_object_get(body, "windows");
	const char *claimed = gn_json_str(body, "device_id");
	size_t i;
	json_t *j;
	int rc;
	if (claimed && strcmp(claimed, device_id) != 0)
		return gn_err_set(err, GN_EFORBIDDEN,
				  "a device reports for itself only: device_id is not this device's");
	if ((int64_t)json_array_size(windows) > lim->max_windows)
		return gn_err_set(err, GN_ETOOBIG, "%zu windows in one batch; at most %lld (telemetry-max-windows)",
				  json_array_size(windows), (long long)lim->max_windows);
	b->w = gn_calloc(json_array_size(windows) + 1, sizeof(*b->w));
	json_array_foreach(windows, i, j) {
		b->nw = i + 1;
		if ((rc = check_window(&b->w[i], j, i, lim, err)))
			return rc;
		for (size_t k = 0; k < i; k++)
			if (strcmp(b->w[k].model, b->w[i].model) == 0 &&
			    strcmp(b->w[k].version, b->w[i].version) == 0 && b->w[k].start == b->w[i].start)
				return gn_err_set(err, GN_EINVAL,
						  "windows[%zu] repeats windows[%zu] (model, version, start)", i, k);
		version_of(b, b->w[i].model, b->w[i].version);
	}
	if ((rc = load_versions(b, c, device_id, err)))
		return rc;
	json_array_foreach(windows, i, j) {
		struct version *v = version_of(b, b->w[i].model, b->w[i].version);
		if ((rc = check_counts(&b->w[i], j, v->profile, i, err)))
			return rc;
	}
	return 0;
}

/* --- storing a batch ------------------------------------------------------------------------------ */

static char *latency_text(const int64_t *lat)
{
	gn_buf b;
	gn_buf_init(&b);
	gn_buf_puts(&b, "{");
	for (size_t k = 0; k < GN_LATENCY_NBUCKETS; k++)
		gn_buf_printf(&b, "%s%lld", k ? "," : "", (long long)lat[k]);
	gn_buf_puts(&b, "}");
	return gn_buf_detach(&b);
}

enum { NW = 9 };

static void add_window(struct arr *a, const struct window *w)
{
	char *lat = latency_text(w->lat);
	arr_text(&a[0], w->model);
	arr_text(&a[1], w->version);
	arr_int(&a[2], w->start);
	arr_int(&a[3], w->seconds);
	arr_int(&a[4], w->requests);
	arr_int(&a[5], w->errors);
	arr_text(&a[6], lat);
	arr_int(&a[7], w->dropped);
	arr_text(&a[8], w->resources);
	free(lat);
}

/* One row of telemetry_features, the columns of st_features. NaN moments (none without values)
 * are stored as NULL. */
static void add_feature(db_copy *cp, const uint8_t dev[16], const struct window *w, const struct fcounts *f)
{
	bool have = f->c.n > 0;
	const double moments[] = {f->c.mean, f->c.m2, f->c.min, f->c.max};
	db_copy_row(cp, NFEATURE_COLUMNS);
	db_copy_uuid(cp, dev);
	db_copy_text(cp, w->model);
	db_copy_text(cp, w->version);
	db_copy_timestamptz(cp, w->start);
	db_copy_text(cp, f->part);
	db_copy_int4(cp, f->idx);
	/* the counts came from JSON integers checked non-negative, so they fit a bigint */
	db_copy_int8_array(cp, (const int64_t *)f->c.counts, f->c.nbins);
	db_copy_int8(cp, (int64_t)f->c.underflow);
	db_copy_int8(cp, (int64_t)f->c.overflow);
	db_copy_int8(cp, (int64_t)f->c.nan);
	db_copy_int8(cp, (int64_t)f->c.n);
	for (size_t k = 0; k < GN_ARRAY_LEN(moments); k++)
		if (have && isfinite(moments[k]))
			db_copy_float8(cp, moments[k]);
		else
			db_copy_null(cp);
}

/* The UTC day of t, YYYY-MM-DD. */
static void day_text(char out[16], int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(out, 16, "%Y-%m-%d", &tm);
}

/* The UTC days of the windows to store, as a date[] literal. */
static char *days_text(const struct batch *b)
{
	struct arr a;
	int64_t seen[64];
	size_t nseen = 0;
	arr_init(&a);
	for (size_t i = 0; i < b->nw; i++) {
		int64_t day = b->w[i].start / 86400;
		bool dup = b->w[i].expired;
		for (size_t k = 0; k < nseen && !dup; k++)
			dup = seen[k] == day;
		if (dup)
			continue;
		if (nseen < GN_ARRAY_LEN(seen))
			seen[nseen++] = day;
		char s[16];
		day_text(s, day * 86400);
		arr_text(&a, s);
	}
	return arr_end(&a);
}

/* Marks the windows st_windows returned (model, version, start) as stored; returns how many it
 * found (all of them, unless this code and the table disagree). */
static int mark_stored(struct batch *b, const PGresult *res)
{
	int found = 0;
	for (int r = 0; r < PQntuples(res); r++) {
		const char *model = PQgetvalue(res, r, 0), *version = PQgetvalue(res, r, 1);
		int64_t start = strtoll(PQgetvalue(res, r, 2), NULL, 10);
		for (size_t i = 0; i < b->nw; i++) {
			struct window *w = &b->w[i];
			if (w->start == start && !w->expired && strcmp(w->model, model) == 0 &&
			    strcmp(w->version, version) == 0) {
				w->stored = true;
				found++;
				break;
			}
		}
	}
	return found;
}

/* Makes the partitions of the windows' days, inserts the windows that are new, then COPYs the
 * features of those only. In the caller's transaction: a failure at any step leaves nothing. */
static int store(int64_t *out_windows, db_conn *c, const char *device_id, struct batch *b, gn_err *err)
{
	struct arr wa[NW];
	char *wt[NW], *days = days_text(b);
	const char *p[1 + NW];
	uint8_t dev[16];
	PGresult *res = NULL;
	db_copy cp;
	int rc;
	db_copy_init(&cp);
	for (int k = 0; k < NW; k++)
		arr_init(&wa[k]);
	for (size_t i = 0; i < b->nw; i++)
		if (!b->w[i].expired)
			add_window(wa, &b->w[i]);
	p[0] = device_id;
	for (int k = 0; k < NW; k++)
		p[1 + k] = wt[k] = arr_end(&wa[k]);
	const char *pd[] = {days};
	if (gn_uuid_parse(dev, device_id)) {
		rc = gn_err_set(err, GN_ERROR, "internal error: device id '%.40s' is not a UUID", device_id);
		goto out;
	}
	if ((rc = db_exec(NULL, c, &st_partition, pd, err)) || (rc = db_exec(&res, c, &st_windows, p, err)))
		goto out;
	*out_windows = PQntuples(res);
	if (mark_stored(b, res) != PQntuples(res)) {
		gn_log(GN_LOG_ERROR, "event=bug msg=\"a stored window is not one of the batch's\"");
		rc = gn_err_set(err, GN_ERROR, "internal error: a stored window is not one of the batch's");
		goto out;
	}
	for (size_t i = 0; i < b->nw; i++)
		for (size_t k = 0; b->w[i].stored && k < b->w[i].nf; k++)
			add_feature(&cp, dev, &b->w[i], &b->w[i].f[k]);
	if (cp.rows && (rc = db_copy_send(NULL, c, &st_features, &cp, err)))
		goto out;
out:
	PQclear(res);
	db_copy_cleanup(&cp);
	for (int k = 0; k < NW; k++)
		free(wt[k]);
	free(days);
	return rc;
}

int telemetry_ingest(json_t **out, db_conn *c, const char *device_id, const json_t *body,
		     const struct telemetry_limits *lim, gn_err *err)
{
	struct batch b = {0};
	int64_t stored = 0, expired = 0, fresh = 0;
	int rc;
	*out = NULL;
	if ((rc = check_batch(&b, c, device_id, body, lim, err)))
		goto out;
	for (size_t i = 0; i < b.nw; i++)
		expired += b.w[i].expired;
	if (expired < (int64_t)b.nw &&
	    ((rc = db_tx_begin(c, err)) || (rc = store(&stored, c, device_id, &b, err)) || (rc = db_tx_commit(c, err))))
		goto out;
	fresh = (int64_t)b.nw - expired;
	*out = json_pack("{s:I,s:I,s:I}", "accepted", (json_int_t)stored, "duplicates", (json_int_t)(fresh - stored),
			 "expired", (json_int_t)expired);
	gn_log(GN_LOG_DEBUG, "event=telemetry device=%s windows=%zu stored=%lld expired=%lld", device_id, b.nw,
	       (long long)stored, (long long)expired);
out:
	if (rc)
		db_tx_rollback(c);
	batch_cleanup(&b);
	return rc;
}

/* --- partitions ----------------------------------------------------------------------------------- */

int telemetry_partitions(int *out_created, int *out_dropped, db_conn *c, int64_t now, int64_t retention_s, gn_err *err)
{
	struct arr a;
	char day[16], *days;
	PGresult *res = NULL;
	int rc;
	*out_created = *out_dropped = 0;
	arr_init(&a);
	for (int d = -1; d <= TELEMETRY_DAYS_AHEAD; d++) {
		day_text(day, now + (int64_t)d * 86400);
		arr_text(&a, day);
	}
	days = arr_end(&a);
	const char *p[] = {days};
	if ((rc = db_exec(&res, c, &st_partition, p, err)))
		goto out;
	*out_created = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	res = NULL;
	/* a day goes once all of it is older than the retention: keep the day holding now - retention */
	day_text(day, now - retention_s);
	const char *pd[] = {day};
	if ((rc = db_exec(&res, c, &st_drop, pd, err)))
		goto out;
	*out_dropped = atoi(PQgetvalue(res, 0, 0));
	if (*out_created || *out_dropped)
		gn_log(GN_LOG_INFO, "event=telemetry_partitions created=%d dropped=%d before=%s", *out_created,
		       *out_dropped, day);
out:
	PQclear(res);
	free(days);
	return rc;
}

/* --- the fleet's drift ---------------------------------------------------------------------------- */

void telemetry_feature_label(char *out, size_t n, const char *part, const char *name)
{
	if (strcmp(part, "intensity") == 0)
		snprintf(out, n, "image:intensity");
	else
		snprintf(out, n, "%s:%s", part, name);
}

int telemetry_profile_load(struct gn_drift_profile **out, db_conn *c, const char *model, const char *version,
			   gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {model, version};
	int rc = db_exec(&res, c, &st_profile, p, err);
	*out = NULL;
	if (rc)
		return rc;
	if (PQntuples(res) == 0)
		rc = gn_err_set(err, GN_ENOTFOUND, "no version %s of model %s", version, model);
	else if (!PQgetisnull(res, 0, 0)) {
		json_t *j = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
		if (j && !json_is_null(j) && gn_drift_profile_parse(out, j, err))
			rc = gn_err_set(err, GN_ERROR, "the stored reference profile of %s@%s does not read", model,
					version);
		json_decref(j);
	}
	PQclear(res);
	return rc;
}

const struct gn_drift_feature *telemetry_feature_of(const struct gn_drift_profile *p, const char *part, int idx)
{
	if (idx < 0)
		return NULL;
	if (strcmp(part, "input") == 0)
		return (size_t)idx < p->ninputs ? &p->inputs[idx] : NULL;
	if (strcmp(part, "output") == 0)
		return (size_t)idx < p->noutputs ? &p->outputs[idx] : NULL;
	if (strcmp(part, "intensity") == 0)
		return p->image && idx == 0 ? &p->image->intensity : NULL;
	return NULL;
}

/* Reads a time: RFC 3339 (through the audit log's parser) or a duration back from now. */
static int time_arg(int64_t *out, const char *s, const char *name, int64_t now, gn_err *err)
{
	char *end;
	struct audit_filter f;
	gn_err e;
	if (isdigit((unsigned char)s[0])) {
		long long v = strtoll(s, &end, 10);
		static const struct {
			char unit;
			int64_t s;
		} units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}, {'w', 604800}};
		for (size_t i = 0; i < GN_ARRAY_LEN(units) && *end && end[1] == '\0'; i++)
			if (*end == units[i].unit && v <= 3650LL * 86400 / units[i].s) {
				*out = now - (int64_t)v * units[i].s;
				return 0;
			}
	}
	if (audit_filter_parse(&f, NULL, NULL, NULL, s, NULL, &e) == 0) {
		*out = (int64_t)floor(strtod(f.since, NULL));
		return 0;
	}
	return gn_err_set(err, GN_EINVAL,
			  "query parameter '%s' must be an RFC 3339 time (2026-01-02T15:04:05Z) or a duration back "
			  "from now (90m, 1h, 7d), not '%.64s'",
			  name, s);
}

int telemetry_query_parse(struct telemetry_query *out, const char *since, const char *until, const char *selector,
			  const char *by, int64_t now, gn_err *err)
{
	char *sp[5] = {0};
	int rc;
	memset(out, 0, sizeof(*out));
	out->since = now - 3600;
	out->until = now + 1;
	if ((since && (rc = time_arg(&out->since, since, "since", now, err))) ||
	    (until && (rc = time_arg(&out->until, until, "until", now, err))))
		return rc;
	if (out->since >= out->until)
		return gn_err_set(err, GN_EINVAL, "query parameter 'since' must be before 'until'");
	if (selector && (rc = devices_selector_params(sp, selector, err)))
		return rc;
	for (int i = 0; i < 5; i++)
		free(sp[i]);
	if (by && gn_label_key_check(by, err))
		return gn_err_set(err, GN_EINVAL, "query parameter 'by' must be a label key: %s", err->msg);
	out->selector = selector;
	out->by = by;
	return 0;
}

/* Groups: ($1..$5 selector, $6 model, $7 version, $8 since, $9 until, $10 label or NULL). */
#define DRIFT_FROM(t)                                                                         \
	" FROM " t " JOIN devices d ON d.id = x.device_id WHERE" DEVICES_SELECTOR_WHERE       \
	" AND x.model = $6 AND x.version = $7 AND x.window_start >= to_timestamp($8::bigint)" \
	" AND x.window_start < to_timestamp($9::bigint)"
static const db_stmt st_drift_windows = {
	"telemetry_drift_windows",
	"SELECT CASE WHEN $10::text IS NULL THEN NULL ELSE d.labels->>$10 END AS grp, count(DISTINCT x.device_id),"
	" count(*), sum(x.requests), sum(x.errors), sum(x.dropped), gn_array_sum(x.latency_us_buckets)::text" DRIFT_FROM(
		"telemetry_windows x") " GROUP BY 1 ORDER BY 1 NULLS FIRST",
	10};
/* Counts summed; mean and m2 merged (Chan et al.): m2 = sum(m2_i + n_i (mean_i - mean)^2). */
static const db_stmt st_drift_features = {
	"telemetry_drift_features",
	"SELECT grp, part, idx, gn_array_sum(counts)::text, sum(underflow), sum(overflow), sum(nan), sum(n),"
	" sum(n * mean) / nullif(sum(n), 0), sum(coalesce(m2, 0) + n * (coalesce(mean, 0) - gmean) ^ 2), min(min),"
	" max(max) FROM (SELECT y.*, sum(y.n * y.mean) OVER w / nullif(sum(y.n) OVER w, 0) AS gmean FROM"
	" (SELECT CASE WHEN $10::text IS NULL THEN NULL ELSE d.labels->>$10 END AS grp, x.*" DRIFT_FROM(
		"telemetry_features x") ") y WINDOW w AS (PARTITION BY y.grp, y.part, y.idx)) z"
					" GROUP BY 1, 2, 3 ORDER BY 1 NULLS FIRST, 2, 3",
	10};

/* Reads a bigint[] as text ("{1,2,3}") into counts of nbins; false when the length differs. */
static bool counts_from_text(struct gn_drift_counts *c, const char *s)
{
	size_t k = 0;
	if (!s || *s++ != '{')
		return false;
	while (*s && *s != '}') {
		char *end;
		unsigned long long v = strtoull(s, &end, 10);
		if (end == s || k >= c->nbins)
			return false;
		c->counts[k++] = v;
		s = *end == ',' ? end + 1 : end;
	}
	return k == c->nbins;
}

static json_t *real_json(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

static json_t *shares_json(const double *v, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_real(v[i]));
	return a;
}

/* One feature row of st_drift_features (from column 3) as JSON. */
static json_t *feature_json(const PGresult *res, int r, const struct gn_drift_feature *f, const char *part)
{
	struct gn_drift_counts c;
	struct gn_drift_measure m;
	char label[96];
	gn_drift_counts_init(&c, f->nbins);
	bool ok = counts_from_text(&c, PQgetvalue(res, r, 3));
	c.underflow = strtoull(PQgetvalue(res, r, 4), NULL, 10);
	c.overflow = strtoull(PQgetvalue(res, r, 5), NULL, 10);
	c.nan = strtoull(PQgetvalue(res, r, 6), NULL, 10);
	c.n = strtoull(PQgetvalue(res, r, 7), NULL, 10);
	c.mean = PQgetisnull(res, r, 8) ? NAN : strtod(PQgetvalue(res, r, 8), NULL);
	c.m2 = strtod(PQgetvalue(res, r, 9), NULL);
	c.min = PQgetisnull(res, r, 10) ? NAN : strtod(PQgetvalue(res, r, 10), NULL);
	c.max = PQgetisnull(res, r, 11) ? NAN : strtod(PQgetvalue(res, r, 11), NULL);
	if (ok)
		gn_drift_compare(&m, f, &c);
	else
		m = (struct gn_drift_measure){c.n, NAN, NAN, NAN};
	telemetry_feature_label(label, sizeof(label), part, f->name);
	json_t *counts = gn_drift_counts_json(&c);
	json_t *j = json_pack("{s:s,s:s,s:s,s:o,s:o,s:o,s:o}", "feature", label, "name", f->name, "kind",
			      f->kind == GN_DRIFT_NUMERIC ? "numeric" : "categorical", "psi", real_json(m.psi), "js",
			      real_json(m.js), "linf", real_json(m.linf), "reference", shares_json(f->ref, f->nbins));
	json_object_update(j, counts);
	json_decref(counts);
	if (f->kind == GN_DRIFT_NUMERIC)
		json_object_set_new(j, "edges", shares_json(f->edges, f->nbins + 1));
	else {
		json_t *v = json_array();
		for (size_t i = 0; i + 1 < f->nbins; i++)
			json_array_append_new(v, json_string(f->vocab[i]));
		json_object_set_new(j, "vocabulary", v);
	}
	gn_drift_counts_cleanup(&c);
	return j;
}

/* Reads a bigint[] text of latency buckets. */
static json_t *latency_json(const char *s)
{
	uint64_t lat[GN_LATENCY_NBUCKETS] = {0};
	size_t k = 0;
	if (s && *s == '{')
		for (s++; *s && *s != '}' && k < GN_LATENCY_NBUCKETS; k++) {
			char *end;
			lat[k] = strtoull(s, &end, 10);
			s = *end == ',' ? end + 1 : end;
		}
	return json_pack("{s:I,s:I,s:I}", "p50", (json_int_t)gn_latency_quantile_us(lat, GN_LATENCY_NBUCKETS, 0.5),
			 "p95", (json_int_t)gn_latency_quantile_us(lat, GN_LATENCY_NBUCKETS, 0.95), "p99",
			 (json_int_t)gn_latency_quantile_us(lat, GN_LATENCY_NBUCKETS, 0.99));
}

static bool same_group(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static json_t *groups_json(const PGresult *wres, const PGresult *fres, const struct gn_drift_profile *p)
{
	json_t *groups = json_array();
	int fr = 0, nf = PQntuples(fres);
	for (int r = 0; r < PQntuples(wres); r++) {
		const char *grp = db_val(wres, r, 0);
		json_t *feats = json_array();
		/* st_drift_features orders its groups as st_drift_windows does */
		for (; fr < nf && same_group(db_val(fres, fr, 0), grp); fr++) {
			const struct gn_drift_feature *f =
				telemetry_feature_of(p, PQgetvalue(fres, fr, 1), atoi(PQgetvalue(fres, fr, 2)));
			if (f)
				json_array_append_new(feats, feature_json(fres, fr, f, PQgetvalue(fres, fr, 1)));
		}
		json_array_append_new(groups,
				      json_pack("{s:s?,s:I,s:I,s:I,s:I,s:I,s:o,s:o}", "group", grp, "devices",
						(json_int_t)strtoll(PQgetvalue(wres, r, 1), NULL, 10), "windows",
						(json_int_t)strtoll(PQgetvalue(wres, r, 2), NULL, 10), "requests",
						(json_int_t)strtoll(PQgetvalue(wres, r, 3), NULL, 10), "errors",
						(json_int_t)strtoll(PQgetvalue(wres, r, 4), NULL, 10), "dropped",
						(json_int_t)strtoll(PQgetvalue(wres, r, 5), NULL, 10), "latency_us",
						latency_json(PQgetvalue(wres, r, 6)), "features", feats));
	}
	return groups;
}

int telemetry_drift_json(json_t **out, db_conn *c, const char *model, const char *version,
			 const struct telemetry_query *q, gn_err *err)
{
	struct gn_drift_profile *p = NULL;
	PGresult *wres = NULL, *fres = NULL;
	char *sp[5] = {0}, since[24], until[24], tsince[21], tuntil[21];
	int rc;
	*out = NULL;
	if ((rc = telemetry_profile_load(&p, c, model, version, err)))
		goto out;
	if (!p) {
		rc = gn_err_set(err, GN_ECONFLICT, "%s@%s was published without a reference profile: no drift to tell",
				model, version);
		goto out;
	}
	if ((rc = devices_selector_params(sp, q->selector ? q->selector : "", err)))
		goto out;
	snprintf(since, sizeof(since), "%lld", (long long)q->since);
	snprintf(until, sizeof(until), "%lld", (long long)q->until);
	const char *params[] = {sp[0], sp[1], sp[2], sp[3], sp[4], model, version, since, until, q->by};
	if ((rc = db_exec(&wres, c, &st_drift_windows, params, err)) ||
	    (rc = db_exec(&fres, c, &st_drift_features, params, err)))
		goto out;
	gn_tuf_time(tsince, q->since);
	gn_tuf_time(tuntil, q->until);
	json_t *j =
		json_pack("{s:s,s:s,s:s,s:s,s:s?,s:s?,s:o}", "model", model, "version", version, "since", tsince,
			  "until", tuntil, "selector", q->selector, "by", q->by, "groups", groups_json(wres, fres, p));
	*out = j;
out:
	for (int i = 0; i < 5; i++)
		free(sp[i]);
	PQclear(wres);
	PQclear(fres);
	gn_drift_profile_free(p);
	return rc;
}

int telemetry_drift(char **out, db_conn *c, const char *model, const char *version, const struct telemetry_query *q,
		    gn_err *err)
{
	json_t *j = NULL;
	int rc = telemetry_drift_json(&j, c, model, version, q, err);
	*out = rc ? NULL : gn_json_dump(j);
	json_decref(j);
	return rc;
}

/* --- canary against control ----------------------------------------------------------------------- */

/* Each window of both versions with requests: ($1..$5 selector, $6 model, $7 canary, $8 control, $9
 * since, $10 until) -> (version, requests, errors, latency buckets). */
static const db_stmt st_canary_windows = {
	"telemetry_canary_windows",
	"SELECT x.version, x.requests, x.errors, x.latency_us_buckets::text FROM telemetry_windows x"
	" JOIN devices d ON d.id = x.device_id WHERE" DEVICES_SELECTOR_WHERE
	" AND x.model = $6 AND x.version IN ($7, $8) AND x.requests > 0"
	" AND x.window_start >= to_timestamp($9::bigint) AND x.window_start < to_timestamp($10::bigint)",
	10};
/* Their output features, a window's together: (version, device, start, idx, counts, underflow,
 * overflow, n). */
static const db_stmt st_canary_outputs = {
	"telemetry_canary_outputs",
	"SELECT x.version, x.device_id, extract(epoch FROM x.window_start)::bigint, x.idx, x.counts::text, x.underflow,"
	" x.overflow, x.n FROM telemetry_features x JOIN devices d ON d.id = x.device_id WHERE" DEVICES_SELECTOR_WHERE
	" AND x.model = $6 AND x.version IN ($7, $8) AND x.part = 'output' AND x.n > 0"
	" AND x.window_start >= to_timestamp($9::bigint) AND x.window_start < to_timestamp($10::bigint)"
	" ORDER BY 1, 2, 3, 4",
	10};

/* Observations of one metric, per side (0 canary, 1 control). */
struct sides {
	double *v[2];
	size_t n[2], cap[2];
};

static void sides_add(struct sides *s, int side, double x)
{
	if (s->n[side] == s->cap[side]) {
		s->cap[side] = s->cap[side] ? 2 * s->cap[side] : 64;
		s->v[side] = gn_realloc(s->v[side], s->cap[side] * sizeof(double));
	}
	s->v[side][s->n[side]++] = x;
}

static void sides_free(struct sides *s)
{
	free(s->v[0]);
	free(s->v[1]);
}

/* Error rate and p95 latency of every window. */
static void window_metrics(struct sides *errs, struct sides *lat, const PGresult *res, const char *canary)
{
	for (int r = 0; r < PQntuples(res); r++) {
		int side = strcmp(PQgetvalue(res, r, 0), canary) == 0 ? 0 : 1;
		double req = strtod(PQgetvalue(res, r, 1), NULL), e = strtod(PQgetvalue(res, r, 2), NULL);
		uint64_t b[GN_LATENCY_NBUCKETS] = {0};
		const char *s = PQgetvalue(res, r, 3);
		size_t k = 0;
		if (*s == '{')
			for (s++; *s && *s != '}' && k < GN_LATENCY_NBUCKETS; k++) {
				char *end;
				b[k] = strtoull(s, &end, 10);
				s = *end == ',' ? end + 1 : end;
			}
		sides_add(errs, side, e / req);
		uint64_t q = gn_latency_quantile_us(b, GN_LATENCY_NBUCKETS, 0.95);
		if (q)
			sides_add(lat, side, (double)q);
	}
}

/* The mean PSI of each window's outputs against its own version's profile. */
static void drift_metric(struct sides *drift, const PGresult *res, const char *canary,
			 const struct gn_drift_profile *const prof[2])
{
	double sum = 0;
	int count = 0;
	for (int r = 0; r < PQntuples(res); r++) {
		int side = strcmp(PQgetvalue(res, r, 0), canary) == 0 ? 0 : 1;
		const struct gn_drift_feature *f =
			prof[side] ? telemetry_feature_of(prof[side], "output", atoi(PQgetvalue(res, r, 3))) : NULL;
		if (f) {
			struct gn_drift_counts k;
			struct gn_drift_measure m;
			gn_drift_counts_init(&k, f->nbins);
			if (counts_from_text(&k, PQgetvalue(res, r, 4))) {
				k.underflow = strtoull(PQgetvalue(res, r, 5), NULL, 10);
				k.overflow = strtoull(PQgetvalue(res, r, 6), NULL, 10);
				k.n = strtoull(PQgetvalue(res, r, 7), NULL, 10);
				gn_drift_compare(&m, f, &k);
				if (isfinite(m.psi)) {
					sum += m.psi;
					count++;
				}
			}
			gn_drift_counts_cleanup(&k);
		}
		bool last = r + 1 == PQntuples(res);
		for (int col = 0; !last && col < 3; col++)
			last = strcmp(PQgetvalue(res, r, col), PQgetvalue(res, r + 1, col)) != 0;
		if (last && count) { /* the window's last output feature */
			sides_add(drift, side, sum / count);
			sum = 0;
			count = 0;
		} else if (last) {
			sum = 0;
		}
	}
}

static json_t *result_json(const struct gn_canary_metric *m, const struct gn_canary_result *r)
{
	return json_pack("{s:s,s:f,s:s,s:I,s:I,s:o,s:o,s:o,s:o,s:o,s:f}", "name", m->name, "weight", m->weight,
			 "verdict", gn_canary_verdict_name(r->verdict), "n_canary", (json_int_t)r->n_canary,
			 "n_control", (json_int_t)r->n_control, "u", real_json(r->u), "p", real_json(r->p),
			 "median_canary", real_json(r->median_canary), "median_control", real_json(r->median_control),
			 "effect", real_json(r->effect), "tolerance", m->tolerance);
}

int telemetry_canary_json(json_t **out, enum gn_canary_verdict *out_verdict, double *out_score, db_conn *c,
			  const char *model, const char *canary, const char *control, const struct telemetry_query *q,
			  double pass_score, double marginal_score, gn_err *err)
{
	static const struct gn_canary_metric metrics[] = {
		{"error_rate", 2, true, TELEMETRY_CANARY_ERROR_TOLERANCE, 0.001},
		{"p95_latency_us", 1, true, TELEMETRY_CANARY_LATENCY_TOLERANCE, 0},
		{"output_drift", 1, true, TELEMETRY_CANARY_DRIFT_TOLERANCE, 0.02},
	};
	struct gn_drift_profile *prof[2] = {NULL, NULL};
	struct sides obs[3];
	struct gn_canary_result res[3];
	PGresult *wres = NULL, *ores = NULL;
	char *sp[5] = {0}, since[24], until[24], tsince[21], tuntil[21];
	int rc;
	*out = NULL;
	memset(obs, 0, sizeof(obs));
	if (strcmp(canary, control) == 0)
		return gn_err_set(err, GN_EINVAL, "canary and control are the same version");
	if ((rc = telemetry_profile_load(&prof[0], c, model, canary, err)) ||
	    (rc = telemetry_profile_load(&prof[1], c, model, control, err)) ||
	    (rc = devices_selector_params(sp, q->selector ? q->selector : "", err)))
		goto out;
	snprintf(since, sizeof(since), "%lld", (long long)q->since);
	snprintf(until, sizeof(until), "%lld", (long long)q->until);
	const char *p[] = {sp[0], sp[1], sp[2], sp[3], sp[4], model, canary, control, since, until};
	if ((rc = db_exec(&wres, c, &st_canary_windows, p, err)) ||
	    (rc = db_exec(&ores, c, &st_canary_outputs, p, err)))
		goto out;
	window_metrics(&obs[0], &obs[1], wres, canary);
	const struct gn_drift_profile *const pp[2] = {prof[0], prof[1]};
	drift_metric(&obs[2], ores, canary, pp);
	/* output drift is judged when both versions profile their outputs */
	size_t n = prof[0] && prof[0]->noutputs && prof[1] && prof[1]->noutputs ? 3 : 2;
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++) {
		gn_canary_judge_metric(&res[i], &metrics[i], obs[i].v[0], obs[i].n[0], obs[i].v[1], obs[i].n[1],
				       TELEMETRY_CANARY_MIN_OBSERVATIONS, TELEMETRY_CANARY_ALPHA);
		json_array_append_new(list, result_json(&metrics[i], &res[i]));
	}
	double score;
	enum gn_canary_verdict v = gn_canary_overall(&score, metrics, res, n, pass_score, marginal_score);
	if (out_verdict)
		*out_verdict = v;
	if (out_score)
		*out_score = score;
	gn_tuf_time(tsince, q->since);
	gn_tuf_time(tuntil, q->until);
	json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s?,s:s,s:o,s:f,s:o}", "model", model, "canary", canary, "control",
			      control, "since", tsince, "until", tuntil, "selector", q->selector, "verdict",
			      gn_canary_verdict_name(v), "score", real_json(score), "confidence",
			      1 - TELEMETRY_CANARY_ALPHA, "metrics", list);
	json_object_set_new(j, "pass_score", json_real(pass_score));
	json_object_set_new(j, "marginal_score", json_real(marginal_score));
	*out = j;
out:
	for (int i = 0; i < 3; i++)
		sides_free(&obs[i]);
	for (int i = 0; i < 5; i++)
		free(sp[i]);
	PQclear(wres);
	PQclear(ores);
	gn_drift_profile_free(prof[0]);
	gn_drift_profile_free(prof[1]);
	return rc;
}

int telemetry_canary(char **out, db_conn *c, const char *model, const char *canary, const char *control,
		     const struct telemetry_query *q, gn_err *err)
{
	json_t *j = NULL;
	int rc = telemetry_canary_json(&j, NULL, NULL, c, model, canary, control, q, TELEMETRY_CANARY_PASS_SCORE,
				       TELEMETRY_CANARY_MARGINAL_SCORE, err);
	*out = rc ? NULL : gn_json_dump(j);
	json_decref(j);
	return rc;
}

/* --- one device's last windows ----------------------------------------------------------------- */

static const db_stmt st_device_exists = {"telemetry_device_exists", "SELECT 1 FROM devices WHERE id = $1::uuid", 1};
/* The device's windows since $2, newest first, at most $3: (model, version, start, seconds,
 * requests, errors, latency buckets, dropped, resources). */
#define DEVICE_WINDOWS                                                                                         \
	"SELECT model, version, extract(epoch FROM window_start)::bigint AS start, seconds, requests, errors," \
	" latency_us_buckets::text, dropped, resources::text, window_start FROM telemetry_windows"             \
	" WHERE device_id = $1::uuid AND window_start >= to_timestamp($2::bigint)"                             \
	" ORDER BY window_start DESC, model, version LIMIT $3::int"
static const db_stmt st_device_windows = {"telemetry_device_windows", DEVICE_WINDOWS, 3};
/* Their features, laid out as feature_json reads them (from column 3), with the window's model,
 * version and start in columns 12 to 14: in the windows' order, so that one pass reads both. */
static const db_stmt st_device_features = {
	"telemetry_device_features",
	"WITH w AS (" DEVICE_WINDOWS ")"
	" SELECT NULL, f.part, f.idx, f.counts::text, f.underflow, f.overflow, f.nan, f.n, f.mean, f.m2, f.min, f.max,"
	"  f.model, f.version, w.start FROM telemetry_features f JOIN w ON w.model = f.model AND w.version = f.version"
	"  AND w.window_start = f.window_start"
	" WHERE f.device_id = $1::uuid AND f.window_start >= to_timestamp($2::bigint) AND f.part <> 'channel'"
	" ORDER BY w.window_start DESC, w.model, w.version, f.part, f.idx",
	3};

/* The reference profiles of the model versions a device's windows name, each loaded once. */
struct device_profiles {
	json_t *index; /* "model@version" -> its index in prof */
	struct gn_drift_profile **prof;
	size_t n;
};

/* Borrows the profile of model@version (NULL when it has none or it does not load), loading it on
 * first use. */
static const struct gn_drift_profile *device_profile(struct device_profiles *dp, db_conn *c, const char *model,
						     const char *version)
{
	char *key = gn_asprintf("%s@%s", model, version);
	json_t *i = json_object_get(dp->index, key);
	if (!i) {
		gn_err e;
		dp->prof = gn_realloc(dp->prof, (dp->n + 1) * sizeof(*dp->prof));
		if (telemetry_profile_load(&dp->prof[dp->n], c, model, version, &e))
			dp->prof[dp->n] = NULL;
		i = json_integer((json_int_t)dp->n++);
		json_object_set_new(dp->index, key, i);
	}
	free(key);
	return dp->prof[json_integer_value(i)];
}

static void device_profiles_cleanup(struct device_profiles *dp)
{
	for (size_t i = 0; i < dp->n; i++)
		gn_drift_profile_free(dp->prof[i]);
	free(dp->prof);
	json_decref(dp->index);
}

/* Whether feature row f belongs to window row r (same model, version and start). */
static bool device_feature_of(const PGresult *fres, int f, const PGresult *wres, int r)
{
	return f < PQntuples(fres) && strcmp(PQgetvalue(fres, f, 12), PQgetvalue(wres, r, 0)) == 0 &&
	       strcmp(PQgetvalue(fres, f, 13), PQgetvalue(wres, r, 1)) == 0 &&
	       strcmp(PQgetvalue(fres, f, 14), PQgetvalue(wres, r, 2)) == 0;
}

int telemetry_device(char **out, db_conn *c, const char *device_id, int64_t since, int limit, gn_err *err)
{
	PGresult *res = NULL, *wres = NULL, *fres = NULL;
	char tsince[21], s_since[24], s_limit[16];
	struct device_profiles dp = {json_object(), NULL, 0};
	int rc;
	*out = NULL;
	if (!gn_is_uuid(device_id)) {
		rc = gn_err_set(err, GN_ENOTFOUND, "no such device '%.40s'", device_id);
		goto out;
	}
	snprintf(s_since, sizeof(s_since), "%lld", (long long)since);
	snprintf(s_limit, sizeof(s_limit), "%d", limit);
	const char *p[] = {device_id, s_since, s_limit};
	if ((rc = db_exec(&res, c, &st_device_exists, p, err)))
		goto out;
	if (PQntuples(res) == 0) {
		rc = gn_err_set(err, GN_ENOTFOUND, "no such device '%s'", device_id);
		goto out;
	}
	/* Both statements read one snapshot: a batch committed between them would otherwise give the
	 * features a window the windows lack, and the one-pass merge below would stop there. */
	if ((rc = db_tx_begin(c, err)))
		goto out;
	if ((rc = db_exec_sql(c, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", err)) ||
	    (rc = db_exec(&wres, c, &st_device_windows, p, err)) ||
	    (rc = db_exec(&fres, c, &st_device_features, p, err))) {
		db_tx_rollback(c);
		goto out;
	}
	db_tx_rollback(c); /* read only: nothing to commit */
	json_t *windows = json_array();
	int f = 0; /* the features come in the windows' order: one pass over both */
	for (int r = 0; r < PQntuples(wres); r++) {
		const char *model = PQgetvalue(wres, r, 0), *version = PQgetvalue(wres, r, 1);
		char start[21];
		int64_t t = strtoll(PQgetvalue(wres, r, 2), NULL, 10);
		long long req = strtoll(PQgetvalue(wres, r, 4), NULL, 10),
			  errs = strtoll(PQgetvalue(wres, r, 5), NULL, 10);
		gn_tuf_time(start, t);
		const struct gn_drift_profile *prof = device_profile(&dp, c, model, version);
		json_t *feats = json_array();
		for (; device_feature_of(fres, f, wres, r); f++) {
			const struct gn_drift_feature *df =
				prof ? telemetry_feature_of(prof, PQgetvalue(fres, f, 1), atoi(PQgetvalue(fres, f, 2)))
				     : NULL;
			if (df)
				json_array_append_new(feats, feature_json(fres, f, df, PQgetvalue(fres, f, 1)));
		}
		json_t *res_j = PQgetisnull(wres, r, 8) ? json_null() : json_loads(PQgetvalue(wres, r, 8), 0, NULL);
		json_t *w = json_pack("{s:s,s:s,s:s,s:i,s:I,s:I,s:o,s:o,s:I,s:o,s:o}", "model", model, "version",
				      version, "start", start, "seconds", atoi(PQgetvalue(wres, r, 3)), "requests",
				      (json_int_t)req, "errors", (json_int_t)errs, "error_rate",
				      req ? json_real((double)errs / (double)req) : json_null(), "latency_us",
				      latency_json(PQgetvalue(wres, r, 6)), "dropped",
				      (json_int_t)strtoll(PQgetvalue(wres, r, 7), NULL, 10), "resources",
				      res_j ? res_j : json_null(), "features", feats);
		json_array_append_new(windows, w);
	}
	gn_tuf_time(tsince, since);
	json_t *j = json_pack("{s:s,s:s,s:o}", "device", device_id, "since", tsince, "windows", windows);
	*out = gn_json_dump(j);
	json_decref(j);
out:
	device_profiles_cleanup(&dp);
	PQclear(res);
	PQclear(wres);
	PQclear(fres);
	return rc;
}
