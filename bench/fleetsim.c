/* fleetsim: a fleet of simulated devices that speak gangliond's real agent protocol, many at once
 * over one libcurl multi handle (no thread per device).
 *
 * Each device has an Ed25519 key derived from --seed and its index (so a second run can reuse the
 * devices a first run enrolled: --state FILE keeps "INDEX DEVICE_ID" lines), and goes through:
 *   enroll     POST /v1/enroll with the enrollment token (skipped for devices in --state)
 *   auth       POST /v1/agent/auth/challenge, sign the nonce, POST /v1/agent/auth/token
 *   check-ins  POST /v1/agent/checkin with If-None-Match, every --interval seconds (0: back to
 *              back) for --duration seconds. When the director names a model version the device
 *              does not run, it "installs" it --install-delay seconds later and reports it active,
 *              with request/error counts and a latency histogram (lib/latency.h buckets) that grow
 *              at --rps requests a second; a version named by --bad-version reports --bad-error-rate
 *              of its requests as errors.
 *   settling   with --settle R, R more rounds after --duration, each one more check-in per device
 *              (counted with the others): the fleet ends checked in, each device answered 304 from
 *              what it was last told, even when --duration was too short for every device to get
 *              past its first check-in (bench/fleet.sh measures memory then).
 * The bytes are not downloaded: this measures the server, not the network.
 *
 * SIGINT or SIGTERM ends the run early: requests in flight finish, then the report as usual.
 * Prints, per phase, requests, rate, p50/p99/max latency and every error by kind; exits 1 when any
 * request failed. gangliond must run with rate limits that let one address enroll a fleet:
 * --rate-limit-address 0 --rate-limit-identity 0 (bench/fleet.sh does).
 *
 * Usage: fleetsim --url URL --enroll-token TOKEN|@FILE --devices N [--concurrency C]
 *                 [--duration S] [--interval S] [--state FILE] [--seed S] [--install-delay S]
 *                 [--rps R] [--bad-version V] [--bad-error-rate F] [--seen FILE] [--changes FILE]
 *                 [--settle R] [--json]
 * --seen FILE writes "DEVICE_ID MODEL/VERSION..." lines: every version the director ever named to
 * each device, so a test can check that no device outside a canary cohort was told a bad version.
 * --changes FILE appends a line for every check-in answered 200 (new director targets), as it
 * comes: "UNIX_SECONDS LATENCY_MS DEVICE_ID INM MODEL/VERSION" (INM 1 when the device sent
 * If-None-Match, i.e. its targets changed since its last check-in; MODEL/VERSION "-" when the
 * targets name none), so a benchmark can time a change reaching the fleet (bench/changes.sh).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "fileio.h"
#include "latency.h"

#define AUTH_PREFIX "ganglion-device-auth:v1:" /* what agents/client.c signs: PREFIX ID:NONCE */

enum phase { PH_ENROLL, PH_CHALLENGE, PH_TOKEN, PH_CHECKIN, PH_N };
static const char *const phase_names[PH_N] = {"enroll", "challenge", "token", "checkin"};

struct dev {
	int idx;
	char id[40];
	EVP_PKEY *key;
	char token[160];
	char etag[40];
	int64_t seq;
	enum phase next;
	double due; /* when its next request may start (monotonic seconds) */
	/* what it runs (one model) and what the director last named */
	char model[64], version[72], sha256[65];
	char want_model[64], want_version[72], want_sha256[65];
	double install_at; /* 0: nothing pending */
	double live_since; /* when the running version went live */
	uint64_t requests, errors;
	int fails;  /* failed requests in a row; a device gives up after MAX_FAILS */
	char *seen; /* with --seen: every MODEL/VERSION the director named to it, space-separated */
};

#define MAX_FAILS 5

struct xfer {
	CURL *easy;
	struct dev *d;
	enum phase ph;
	char *body;
	size_t len, cap;
	char etag[40];
	struct curl_slist *hdrs;
	double started;
};

struct stats {
	uint64_t n, ok;
	double first, last;
	uint32_t *lat_us;
	size_t nlat, caplat;
};

static struct {
	const char *url, *enroll_token, *state, *bad_version, *seen, *changes;
	int ndev, concurrency, settle;
	double duration, interval, install_delay, rps, bad_error_rate;
	uint64_t seed;
	bool json;
} opt = {.concurrency = 64, .duration = 10, .interval = 0, .install_delay = 1, .rps = 10, .bad_error_rate = 0.2};

static struct stats st[PH_N];
static FILE *changes_f; /* --changes */
/* errors by kind: "checkin: http 500", "token: Couldn't connect to server", ... */
static struct {
	char kind[96];
	uint64_t n;
} errs[64];
static int nerrs;
static uint64_t unchanged, changed, installs;
/* SIGINT/SIGTERM: finish the requests in flight, report, exit */
static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static double now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *msg)
{
	fprintf(stderr, "fleetsim: %s\n", msg);
	exit(2);
}

static void err_count(enum phase ph, const char *what)
{
	char kind[96];
	snprintf(kind, sizeof(kind), "%s: %s", phase_names[ph], what);
	for (int i = 0; i < nerrs; i++)
		if (strcmp(errs[i].kind, kind) == 0) {
			errs[i].n++;
			return;
		}
	if (nerrs < (int)(sizeof(errs) / sizeof(errs[0]))) {
		snprintf(errs[nerrs].kind, sizeof(errs[nerrs].kind), "%s", kind);
		errs[nerrs++].n = 1;
	}
}

static void lat_add(struct stats *s, double secs)
{
	if (s->nlat == s->caplat) {
		s->caplat = s->caplat ? 2 * s->caplat : 4096;
		s->lat_us = realloc(s->lat_us, s->caplat * sizeof(*s->lat_us));
		if (!s->lat_us)
			die("out of memory");
	}
	double us = secs * 1e6;
	s->lat_us[s->nlat++] = us > 4e9 ? 4000000000u : (uint32_t)us;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* --- devices: keys, the state file ------------------------------------------------------------ */

static EVP_PKEY *dev_key(uint64_t seed, int idx)
{
	unsigned char in[16], raw[SHA256_DIGEST_LENGTH];
	for (int i = 0; i < 8; i++) {
		in[i] = (unsigned char)(seed >> (8 * i));
		in[8 + i] = (unsigned char)((uint64_t)idx >> (8 * i));
	}
	SHA256(in, sizeof(in), raw);
	EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, raw, 32);
	if (!k)
		die("cannot make an Ed25519 key");
	return k;
}

static void hex(char *out, const unsigned char *in, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", in[i]);
}

static void state_load(struct dev *devs)
{
	FILE *f = opt.state ? fopen(opt.state, "re") : NULL;
	if (!f)
		return;
	int idx;
	char id[40];
	while (fscanf(f, "%d %39s", &idx, id) == 2)
		if (idx >= 0 && idx < opt.ndev)
			snprintf(devs[idx].id, sizeof(devs[idx].id), "%s", id);
	fclose(f);
}

static void state_save(const struct dev *devs)
{
	if (!opt.state)
		return;
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", opt.state);
	FILE *f = fopen(tmp, "we");
	if (!f)
		die("cannot write the state file");
	for (int i = 0; i < opt.ndev; i++)
		if (devs[i].id[0])
			fprintf(f, "%d %s\n", i, devs[i].id);
	if (fclose(f) != 0 || rename(tmp, opt.state) != 0)
		die("cannot write the state file");
}

/* --- a min-heap of devices by due time ---------------------------------------------------------- */

static struct dev **heap;
static size_t nheap;

static void heap_push(struct dev *d)
{
	size_t i = nheap++;
	while (i > 0 && heap[(i - 1) / 2]->due > d->due) {
		heap[i] = heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	heap[i] = d;
}

static struct dev *heap_pop(void)
{
	struct dev *top = heap[0], *last = heap[--nheap];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= nheap)
			break;
		if (c + 1 < nheap && heap[c + 1]->due < heap[c]->due)
			c++;
		if (heap[c]->due >= last->due)
			break;
		heap[i] = heap[c];
		i = c;
	}
	if (nheap)
		heap[i] = last;
	return top;
}

/* --- requests ------------------------------------------------------------------------------------ */

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
	struct xfer *x = ud;
	size_t len = sz * n;
	if (x->len + len + 1 > x->cap) {
		x->cap = (x->len + len + 1) * 2;
		x->body = realloc(x->body, x->cap);
		if (!x->body)
			die("out of memory");
	}
	memcpy(x->body + x->len, p, len);
	x->len += len;
	x->body[x->len] = '\0';
	return len;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
	struct xfer *x = ud;
	size_t len = sz * n;
	if (len > 6 && strncasecmp(p, "ETag:", 5) == 0) {
		const char *v = p + 5;
		while (*v == ' ')
			v++;
		size_t vl = len - (size_t)(v - p);
		while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
			vl--;
		if (vl < sizeof(x->etag)) {
			memcpy(x->etag, v, vl);
			x->etag[vl] = '\0';
		}
	}
	return len;
}

static json_t *model_report(struct dev *d, double now)
{
	/* Health since the version went live, at --rps requests a second, latencies spread over a few
	 * buckets around 5 ms. */
	double live = now - d->live_since;
	uint64_t req = (uint64_t)(live * opt.rps);
	bool bad = opt.bad_version && strcmp(d->version, opt.bad_version) == 0;
	d->requests = req;
	d->errors = bad ? (uint64_t)((double)req * opt.bad_error_rate) : 0;
	json_t *b = json_array();
	for (size_t i = 0; i < GN_LATENCY_NBUCKETS; i++) {
		uint64_t c = 0;
		if (i == gn_latency_bucket(2000))
			c = req / 4;
		else if (i == gn_latency_bucket(5000))
			c = req - req / 4 - req / 20;
		else if (i == gn_latency_bucket(20000))
			c = req / 20;
		json_array_append_new(b, json_integer((json_int_t)c));
	}
	return json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:o}", "name", d->model, "version", d->version, "sha256",
			 d->sha256, "target", "cpu", "state", "active", "requests", (json_int_t)d->requests, "errors",
			 (json_int_t)d->errors, "latency_us_buckets", b);
}

static char *body_for(struct dev *d, enum phase ph, double now)
{
	json_t *j = NULL;
	char pubhex[65], sighex[129], name[32];
	switch (ph) {
	case PH_ENROLL: {
		unsigned char pub[32];
		size_t n = sizeof(pub);
		EVP_PKEY_get_raw_public_key(d->key, pub, &n);
		hex(pubhex, pub, 32);
		snprintf(name, sizeof(name), "sim-%07d", d->idx);
		j = json_pack("{s:s,s:s,s:s,s:{s:s}}", "token", opt.enroll_token, "public_key", pubhex, "name", name,
			      "facts", "agent_version", "fleetsim");
		break;
	}
	case PH_CHALLENGE: j = json_pack("{s:s}", "device_id", d->id); break;
	case PH_TOKEN: {
		/* the nonce came in the challenge's answer, kept in token[] meanwhile */
		char msg[256];
		unsigned char sig[64];
		size_t siglen = sizeof(sig);
		snprintf(msg, sizeof(msg), AUTH_PREFIX "%s:%s", d->id, d->token);
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		if (!ctx || EVP_DigestSignInit(ctx, NULL, NULL, NULL, d->key) != 1 ||
		    EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)msg, strlen(msg)) != 1)
			die("cannot sign");
		EVP_MD_CTX_free(ctx);
		hex(sighex, sig, 64);
		j = json_pack("{s:s,s:s,s:s}", "device_id", d->id, "nonce", d->token, "signature", sighex);
		break;
	}
	case PH_CHECKIN: {
		json_t *models = json_array(), *op = json_null();
		if (d->install_at > 0 && now >= d->install_at) {
			snprintf(d->model, sizeof(d->model), "%s", d->want_model);
			snprintf(d->version, sizeof(d->version), "%s", d->want_version);
			snprintf(d->sha256, sizeof(d->sha256), "%s", d->want_sha256);
			d->install_at = 0;
			d->live_since = now;
			installs++;
		}
		if (d->version[0]) {
			json_array_append_new(models, model_report(d, now));
			op = json_pack("{s:s,s:s,s:s,s:s}", "state", "active", "model", d->model, "version", d->version,
				       "at", "2026-01-01T00:00:00Z");
		}
		j = json_pack("{s:s,s:o,s:{s:s},s:o,s:I}", "agent_version", "fleetsim", "models", models, "facts",
			      "agent_version", "fleetsim", "last_operation", op, "seq", (json_int_t)++d->seq);
		break;
	}
	default: break;
	}
	char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	return s;
}

static void start(CURLM *multi, struct xfer *x, struct dev *d, double now)
{
	static const char *const paths[PH_N] = {"/v1/enroll", "/v1/agent/auth/challenge", "/v1/agent/auth/token",
						"/v1/agent/checkin"};
	char url[1024], auth[200], inm[80];
	x->d = d;
	x->ph = d->next;
	x->len = 0;
	x->etag[0] = '\0';
	x->started = now;
	curl_slist_free_all(x->hdrs);
	x->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
	if (x->ph == PH_CHECKIN) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", d->token);
		x->hdrs = curl_slist_append(x->hdrs, auth);
		if (d->etag[0]) {
			snprintf(inm, sizeof(inm), "If-None-Match: %s", d->etag);
			x->hdrs = curl_slist_append(x->hdrs, inm);
		}
	}
	snprintf(url, sizeof(url), "%s%s", opt.url, paths[x->ph]);
	char *body = body_for(d, x->ph, now);
	curl_easy_setopt(x->easy, CURLOPT_URL, url);
	curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->hdrs);
	curl_easy_setopt(x->easy, CURLOPT_COPYPOSTFIELDS, body);
	free(body);
	if (st[x->ph].n == 0)
		st[x->ph].first = now;
	curl_multi_add_handle(multi, x->easy);
}

static void seen_add(struct dev *d, const char *model, const char *version)
{
	char pair[140];
	snprintf(pair, sizeof(pair), " %s/%s ", model, version);
	if (d->seen && strstr(d->seen, pair))
		return;
	size_t have = d->seen ? strlen(d->seen) : 0;
	char *n = realloc(d->seen, have + strlen(pair) + 1);
	if (!n)
		die("out of memory");
	/* kept as " a/1  b/2 " so that strstr finds whole pairs */
	strcpy(n + have, pair);
	d->seen = n;
}

static void seen_save(const struct dev *devs)
{
	FILE *f = fopen(opt.seen, "we");
	if (!f)
		die("cannot write the --seen file");
	for (int i = 0; i < opt.ndev; i++) {
		if (!devs[i].id[0])
			continue;
		fprintf(f, "%s", devs[i].id);
		for (const char *p = devs[i].seen ? devs[i].seen : ""; *p;) {
			size_t n = strcspn(p, " ");
			if (n)
				fprintf(f, " %.*s", (int)n, p);
			p += n + (p[n] == ' ');
		}
		fputc('\n', f);
	}
	if (fclose(f) != 0)
		die("cannot write the --seen file");
}

/* The director named these targets: the device installs the first model it does not run. */
static void targets_seen(struct dev *d, json_t *ans, double now)
{
	json_t *targets =
		json_object_get(json_object_get(json_object_get(ans, "director_targets"), "signed"), "targets");
	const char *path;
	json_t *t;
	json_object_foreach(targets, path, t) {
		char model[64], version[72];
		const char *sha = json_string_value(json_object_get(json_object_get(t, "hashes"), "sha256"));
		if (!sha || sscanf(path, "models/%63[^/]/%71[^/]/", model, version) != 2)
			continue;
		if (opt.seen)
			seen_add(d, model, version);
		if (strcmp(sha, d->sha256) == 0 && strcmp(version, d->version) == 0)
			return;
		if (strcmp(version, d->want_version) == 0 && strcmp(model, d->want_model) == 0 && d->install_at > 0)
			return;
		snprintf(d->want_model, sizeof(d->want_model), "%s", model);
		snprintf(d->want_version, sizeof(d->want_version), "%s", version);
		snprintf(d->want_sha256, sizeof(d->want_sha256), "%.64s", sha);
		d->install_at = now + opt.install_delay;
		return;
	}
}

/* --changes: one line per check-in answered 200 (see the comment at the top). */
static void changes_log(const struct dev *d, const struct xfer *x, json_t *ans, double now)
{
	json_t *targets =
		json_object_get(json_object_get(json_object_get(ans, "director_targets"), "signed"), "targets");
	const char *path, *named = "-";
	json_t *t;
	char mv[140];
	json_object_foreach(targets, path, t) {
		char model[64], version[72];
		if (sscanf(path, "models/%63[^/]/%71[^/]/", model, version) == 2) {
			snprintf(mv, sizeof(mv), "%s/%s", model, version);
			named = mv;
			break;
		}
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	fprintf(changes_f, "%.6f %.3f %s %d %s\n", (double)ts.tv_sec + ts.tv_nsec / 1e9, (now - x->started) * 1000,
		d->id, d->etag[0] != '\0', named);
}

/* A request finished: counts it and moves the device on. Returns false when the device is done. */
static bool finish(struct xfer *x, CURLcode rc, double now, double end)
{
	struct dev *d = x->d;
	long status = 0;
	char what[64];
	struct stats *s = &st[x->ph];
	s->n++;
	s->last = now;
	lat_add(s, now - x->started);
	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	json_t *ans = NULL;
	if (rc != CURLE_OK) {
		err_count(x->ph, curl_easy_strerror(rc));
		goto retry;
	}
	if (x->ph == PH_CHECKIN && status == 304) {
		unchanged++;
		goto next_checkin;
	}
	if (status != 200 && status != 201) {
		snprintf(what, sizeof(what), "http %ld", status);
		err_count(x->ph, what);
		if (x->ph == PH_CHECKIN && status == 401) { /* token expired: authenticate again */
			d->next = PH_CHALLENGE;
			d->due = now;
			return now < end;
		}
		if (x->ph == PH_TOKEN && status == 401 && ++d->fails < MAX_FAILS) {
			/* The nonce expired or was used: a new challenge (the same nonce never works again). */
			d->next = PH_CHALLENGE;
			d->due = now;
			return true;
		}
		goto retry;
	}
	ans = json_loads(x->body ? x->body : "", 0, NULL);
	if (!ans) {
		err_count(x->ph, "answer is not JSON");
		goto retry;
	}
	s->ok++;
	d->fails = 0;
	switch (x->ph) {
	case PH_ENROLL: {
		const char *id = json_string_value(json_object_get(ans, "device_id"));
		snprintf(d->id, sizeof(d->id), "%s", id ? id : "");
		d->next = PH_CHALLENGE;
		break;
	}
	case PH_CHALLENGE: {
		const char *nonce = json_string_value(json_object_get(ans, "nonce"));
		snprintf(d->token, sizeof(d->token), "%s", nonce ? nonce : "");
		d->next = PH_TOKEN;
		break;
	}
	case PH_TOKEN: {
		const char *tok = json_string_value(json_object_get(ans, "token"));
		snprintf(d->token, sizeof(d->token), "%s", tok ? tok : "");
		d->next = PH_CHECKIN;
		break;
	}
	case PH_CHECKIN:
		changed++;
		if (changes_f)
			changes_log(d, x, ans, now);
		snprintf(d->etag, sizeof(d->etag), "%s", x->etag);
		targets_seen(d, ans, now);
		goto next_checkin;
	default: break;
	}
	json_decref(ans);
	/* A nonce is answered first, before any other device's next step: it expires (challenge-ttl),
	 * and with a large fleet every device's challenge would otherwise come before any token. */
	d->due = x->ph == PH_CHALLENGE ? 0 : now;
	return true;
next_checkin:
	json_decref(ans);
	d->due = now + opt.interval * (opt.interval > 0 ? 0.9 + 0.2 * drand48() : 0);
	if (d->install_at > 0 && d->install_at < d->due)
		d->due = d->install_at;
	return d->due < end;
retry:
	json_decref(ans);
	d->due = now + 1.0; /* a failed request is tried again a second later, a few times */
	if (++d->fails >= MAX_FAILS)
		return false;
	return x->ph == PH_CHECKIN ? d->due < end : true;
}

/* Runs until every device in the heap is done: through enrolment and authentication, then
 * check-ins until `end`. */
static void run(CURLM *multi, struct xfer *xs, int nx, double end)
{
	struct xfer **idle = calloc((size_t)nx, sizeof(*idle));
	int nidle = 0, active = 0;
	if (!idle)
		die("out of memory");
	for (int i = 0; i < nx; i++)
		idle[nidle++] = &xs[i];
	while (nheap > 0 || active > 0) {
		double now = now_mono();
		if (stopping)
			nheap = 0; /* start nothing more */
		while (nidle > 0 && nheap > 0 && heap[0]->due <= now) {
			struct dev *d = heap_pop();
			if (end < 0 && d->next == PH_CHECKIN)
				continue; /* authenticated: the first run ends here */
			start(multi, idle[--nidle], d, now);
			active++;
		}
		int running;
		curl_multi_perform(multi, &running);
		CURLMsg *m;
		int left;
		while ((m = curl_multi_info_read(multi, &left))) {
			if (m->msg != CURLMSG_DONE)
				continue;
			struct xfer *x;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
			CURLcode rc = m->data.result;
			curl_multi_remove_handle(multi, m->easy_handle);
			double t = now_mono();
			if (finish(x, rc, t, end))
				heap_push(x->d);
			idle[nidle++] = x;
			active--;
		}
		int wait_ms = 100;
		if (nheap > 0 && nidle > 0) {
			double dt = heap[0]->due - now_mono();
			wait_ms = dt <= 0 ? 0 : (int)(dt * 1000) + 1;
			if (wait_ms > 100)
				wait_ms = 100;
		}
		if (active > 0 || wait_ms > 0)
			curl_multi_poll(multi, NULL, 0, wait_ms, NULL);
	}
	free(idle);
}

static void report(void)
{
	uint64_t nerr = 0;
	for (int i = 0; i < nerrs; i++)
		nerr += errs[i].n;
	if (opt.json)
		printf("{");
	for (int p = 0; p < PH_N; p++) {
		struct stats *s = &st[p];
		if (!s->n)
			continue;
		qsort(s->lat_us, s->nlat, sizeof(*s->lat_us), cmp_u32);
		double span = s->last - s->first;
		double rate = span > 0 ? (double)s->n / span : 0;
		double p50 = s->lat_us[s->nlat / 2] / 1000.0,
		       p99 = s->lat_us[(size_t)((double)s->nlat * 0.99)] / 1000.0;
		double mx = s->lat_us[s->nlat - 1] / 1000.0;
		if (opt.json)
			printf("\"%s\":{\"requests\":%" PRIu64 ",\"ok\":%" PRIu64
			       ",\"rate\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f},",
			       phase_names[p], s->n, s->ok, rate, p50, p99, mx);
		else
			printf("%-9s %9" PRIu64 " requests %9.1f/s  p50 %8.3f ms  p99 %8.3f ms  max %8.3f ms\n",
			       phase_names[p], s->n, rate, p50, p99, mx);
	}
	if (opt.json) {
		printf("\"checkins_unchanged\":%" PRIu64 ",\"checkins_changed\":%" PRIu64 ",\"installs\":%" PRIu64
		       ",\"errors\":{",
		       unchanged, changed, installs);
		for (int i = 0; i < nerrs; i++)
			printf("%s\"%s\":%" PRIu64, i ? "," : "", errs[i].kind, errs[i].n);
		printf("}}\n");
	} else {
		printf("check-ins: %" PRIu64 " unchanged (304), %" PRIu64 " with new targets; %" PRIu64
		       " simulated installs\n",
		       unchanged, changed, installs);
		printf("errors: %" PRIu64 "%s\n", nerr, nerr ? " by kind:" : "");
		for (int i = 0; i < nerrs; i++)
			printf("  %8" PRIu64 "  %s\n", errs[i].n, errs[i].kind);
	}
}

static double num(const char *s, const char *name, double lo, double hi)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || *end || end == s || !(v >= lo && v <= hi)) {
		fprintf(stderr, "fleetsim: %s must be a number from %g to %g, not '%s'\n", name, lo, hi, s);
		exit(2);
	}
	return v;
}

static char *read_secret(const char *v)
{
	char *out = NULL;
	gn_err err;
	if (v[0] != '@')
		return strdup(v);
	if (gn_secret_file_read(&out, v + 1, 4096, &err)) {
		fprintf(stderr, "fleetsim: --enroll-token: %s\n", err.msg);
		exit(2);
	}
	return out;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"url", 1, NULL, 'u'},         {"enroll-token", 1, NULL, 't'}, {"devices", 1, NULL, 'n'},
		{"concurrency", 1, NULL, 'c'}, {"duration", 1, NULL, 'd'},     {"interval", 1, NULL, 'i'},
		{"state", 1, NULL, 's'},       {"seed", 1, NULL, 'S'},         {"install-delay", 1, NULL, 'D'},
		{"rps", 1, NULL, 'r'},         {"bad-version", 1, NULL, 'b'},  {"bad-error-rate", 1, NULL, 'e'},
		{"seen", 1, NULL, 'w'},        {"json", 0, NULL, 'j'},         {"changes", 1, NULL, 'C'},
		{"settle", 1, NULL, 'R'},      {"help", 0, NULL, 'h'},         {NULL, 0, NULL, 0},
	};
	char *tok = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'u': opt.url = optarg; break;
		case 't': tok = read_secret(optarg); break;
		case 'n': opt.ndev = (int)num(optarg, "--devices", 1, 10000000); break;
		case 'c': opt.concurrency = (int)num(optarg, "--concurrency", 1, 10000); break;
		case 'd': opt.duration = num(optarg, "--duration", 0, 86400); break;
		case 'i': opt.interval = num(optarg, "--interval", 0, 86400); break;
		case 's': opt.state = optarg; break;
		case 'S': opt.seed = (uint64_t)num(optarg, "--seed", 0, 1e15); break;
		case 'D': opt.install_delay = num(optarg, "--install-delay", 0, 86400); break;
		case 'r': opt.rps = num(optarg, "--rps", 0, 1e6); break;
		case 'b': opt.bad_version = optarg; break;
		case 'e': opt.bad_error_rate = num(optarg, "--bad-error-rate", 0, 1); break;
		case 'w': opt.seen = optarg; break;
		case 'j': opt.json = true; break;
		case 'C': opt.changes = optarg; break;
		case 'R': opt.settle = (int)num(optarg, "--settle", 0, 10); break;
		case 'h':
			puts("usage: fleetsim --url URL --enroll-token TOKEN|@FILE --devices N [--concurrency C] "
			     "[--duration S] [--interval S] [--state FILE] [--seed S] [--install-delay S] [--rps R] "
			     "[--bad-version V] [--bad-error-rate F] [--seen FILE] [--changes FILE] [--settle R] [--json]\n(see the comment at the top of "
			     "bench/fleetsim.c)");
			return 0;
		default: return 2;
		}
	}
	if (!opt.url || !opt.ndev || optind != argc)
		die("--url and --devices are required (--help)");
	opt.enroll_token = tok ? tok : "";
	srand48((long)time(NULL));
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		die("cannot initialise libcurl");
	struct dev *devs = calloc((size_t)opt.ndev, sizeof(*devs));
	heap = calloc((size_t)opt.ndev, sizeof(*heap));
	if (!devs || !heap)
		die("out of memory");
	state_load(devs);
	if (opt.changes) {
		if (!(changes_f = fopen(opt.changes, "ae")))
			die("cannot open the --changes file");
		setvbuf(changes_f, NULL, _IOLBF, 0); /* read while the run goes on */
	}
	/* Sequence numbers only go up, across runs too: start above any earlier run's. */
	int64_t seq0 = (int64_t)time(NULL) * 1000;
	for (int i = 0; i < opt.ndev; i++) {
		struct dev *d = &devs[i];
		d->idx = i;
		d->key = dev_key(opt.seed, i);
		d->seq = seq0;
		if (!d->id[0] && !tok)
			die("devices not in --state need --enroll-token");
		d->next = d->id[0] ? PH_CHALLENGE : PH_ENROLL;
	}
	CURLM *multi = curl_multi_init();
	curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)opt.concurrency);
	struct xfer *xs = calloc((size_t)opt.concurrency, sizeof(*xs));
	if (!multi || !xs)
		die("out of memory");
	for (int i = 0; i < opt.concurrency; i++) {
		CURL *e = xs[i].easy = curl_easy_init();
		if (!e)
			die("cannot make a curl handle");
		curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)&xs[i]);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(e, CURLOPT_WRITEDATA, &xs[i]);
		curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
		curl_easy_setopt(e, CURLOPT_HEADERDATA, &xs[i]);
		curl_easy_setopt(e, CURLOPT_TIMEOUT, 60L);
		curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	}
	/* Enrolment and authentication first (not counted against --duration), then check-ins. */
	double t0 = now_mono();
	for (int i = 0; i < opt.ndev; i++) {
		devs[i].due = t0;
		heap_push(&devs[i]);
	}
	run(multi, xs, opt.concurrency, -1); /* end < 0: stop each device once it holds a token */
	state_save(devs);
	int ready = 0;
	double t1 = now_mono();
	for (int i = 0; i < opt.ndev; i++)
		if (devs[i].next == PH_CHECKIN) {
			devs[i].due = t1 + (opt.interval > 0 ? opt.interval * drand48() : 0);
			heap_push(&devs[i]);
			ready++;
		}
	fprintf(stderr, "fleetsim: %d of %d devices authenticated in %.1f s; checking in for %.0f s\n", ready, opt.ndev,
		t1 - t0, opt.duration);
	run(multi, xs, opt.concurrency, t1 + opt.duration);
	for (int r = 0; r < opt.settle; r++) {
		double t = now_mono();
		int n = 0;
		for (int i = 0; i < opt.ndev; i++)
			if (devs[i].next == PH_CHECKIN && devs[i].fails < MAX_FAILS) {
				devs[i].due = t;
				heap_push(&devs[i]);
				n++;
			}
		run(multi, xs, opt.concurrency, t); /* an end already past: one check-in each */
		fprintf(stderr, "fleetsim: settling round %d: %d devices checked in once more in %.1f s\n", r + 1, n,
			now_mono() - t);
	}
	report();
	if (opt.seen)
		seen_save(devs);
	if (changes_f && fclose(changes_f) != 0)
		die("cannot write the --changes file");
	uint64_t nerr = 0;
	for (int i = 0; i < nerrs; i++)
		nerr += errs[i].n;
	for (int i = 0; i < opt.concurrency; i++) {
		curl_slist_free_all(xs[i].hdrs);
		free(xs[i].body);
		curl_easy_cleanup(xs[i].easy);
	}
	for (int i = 0; i < opt.ndev; i++) {
		EVP_PKEY_free(devs[i].key);
		free(devs[i].seen);
	}
	for (int p = 0; p < PH_N; p++)
		free(st[p].lat_us);
	free(xs);
	free(devs);
	free(heap);
	free(tok);
	curl_multi_cleanup(multi);
	curl_global_cleanup();
	return nerr ? 1 : 0;
}
