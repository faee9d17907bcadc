/* The agent's side of telemetry.c: each serving model version gets a counter on its signed
 * reference profile, a thread rolls the counters into the spool as windows end, and the main loop
 * uploads the spool after each check-in (the one thread that talks to the server).
 *
 * Reference profiles are kept under DATA_DIR/profiles/SHA256.json, fetched when a version is
 * installed and checked against the SHA-256 in the image repository's signed targets
 * (trust/image/targets.json) whenever they are read, so a restart needs no network. */
#include "agent.h"
#include "gzip.h"
#include "telemetry.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "fileio.h"
#include "json.h"
#include "log.h"

#define PROFILE_MAX ((size_t)16 << 20)

/* The reference_profile_sha256 that targets envelope env signs for model@version, into out (65
 * bytes); false when it lists no such version with one. */
static bool digest_in(char out[GN_SHA256_HEX_LEN + 1], const json_t *env, const char *model, const char *version)
{
	const char *path;
	json_t *t;
	json_object_foreach(json_object_get(json_object_get(env, "signed"), "targets"), path, t) {
		const json_t *c = json_object_get(t, "custom");
		const char *d = gn_json_str(c, "reference_profile_sha256");
		if (d && strlen(d) == GN_SHA256_HEX_LEN &&
		    strcmp(gn_json_str(c, "model") ? gn_json_str(c, "model") : "", model) == 0 &&
		    strcmp(gn_json_str(c, "version") ? gn_json_str(c, "version") : "", version) == 0) {
			memcpy(out, d, GN_SHA256_HEX_LEN + 1);
			return true;
		}
	}
	return false;
}

/* The signed reference_profile_sha256 of model@version in the trusted image targets, top-level or
 * delegated (trust/image/delegated/), into out (65 bytes); false when the version has none or is
 * not there. */
static bool profile_digest(char out[GN_SHA256_HEX_LEN + 1], struct agent *a, const char *model, const char *version)
{
	json_t *targets = NULL;
	gn_err err;
	bool found = false;
	if (state_read_json(&targets, a, "trust/image/targets.json", &err) == 0)
		found = digest_in(out, targets, model, version);
	json_decref(targets);
	char *dir = gn_asprintf("%s/trust/image/delegated", a->cfg.data_dir);
	DIR *d = found ? NULL : opendir(dir);
	struct dirent *e;
	while (d && !found && (e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (e->d_name[0] == '.' || n < 6 || strcmp(e->d_name + n - 5, ".json") != 0)
			continue;
		char *rel = gn_asprintf("trust/image/delegated/%s", e->d_name);
		if (state_read_json(&targets, a, rel, &err) == 0)
			found = digest_in(out, targets, model, version);
		json_decref(targets);
		targets = NULL;
		free(rel);
	}
	if (d)
		closedir(d);
	free(dir);
	return found;
}

static char *profile_rel(const char *digest)
{
	return gn_asprintf("profiles/%s.json", digest);
}

void agent_telemetry_fetch_profile(struct agent *a, const char *model, const char *version)
{
	char digest[GN_SHA256_HEX_LEN + 1], path[256], *bytes = NULL, *rel;
	size_t len = 0;
	struct gn_drift_profile *p = NULL;
	gn_err err;
	if (!profile_digest(digest, a, model, version))
		return;
	rel = profile_rel(digest);
	char *full = state_path(a, rel);
	struct stat st;
	if (stat(full, &st) == 0)
		goto out; /* kept from before */
	snprintf(path, sizeof(path), "/v1/models/%s/versions/%s/reference-profile", model, version);
	if (client_get(&bytes, &len, a, path, PROFILE_MAX, &err) ||
	    telemetry_profile_parse(&p, bytes, len, digest, &err) || state_write_bytes(a, rel, bytes, len, &err))
		gn_log(GN_LOG_WARN,
		       "event=telemetry_profile_failed model=%s version=%s msg=\"%s\" note=\"its inputs are not counted "
		       "on a profile; requests, errors and latency are\"",
		       model, version, err.msg);
out:
	gn_drift_profile_free(p);
	free(bytes);
	free(full);
	free(rel);
}

/* The profile of m from the kept file, checked against its signed digest; NULL when none. */
static struct gn_drift_profile *profile_load(struct agent *a, const struct agent_model *m)
{
	char digest[GN_SHA256_HEX_LEN + 1], *rel, *full;
	struct gn_drift_profile *p = NULL;
	struct models_file f = {0};
	gn_err err;
	if (!profile_digest(digest, a, m->name, m->version))
		return NULL;
	rel = profile_rel(digest);
	full = state_path(a, rel);
	if (models_file_load(&f, full, &err) || telemetry_profile_parse(&p, (const char *)f.data, f.len, digest, &err))
		gn_log(GN_LOG_WARN, "event=telemetry_profile_missing model=%s version=%s msg=\"%s\"", m->name,
		       m->version, err.msg);
	models_file_cleanup(&f);
	free(rel);
	free(full);
	return p;
}

void agent_telemetry_attach(struct agent *a, struct agent_model *m)
{
	size_t nin = m->info ? m->info->n_inputs : 0, nout = m->info ? m->info->n_outputs : 0;
	gn_err err;
	if (!a->spool || m->telemetry)
		return;
	const char **in = gn_calloc(nin + 1, sizeof(char *)), **out = gn_calloc(nout + 1, sizeof(char *));
	for (size_t i = 0; i < nin; i++)
		in[i] = m->info->inputs[i].name;
	for (size_t i = 0; i < nout; i++)
		out[i] = m->info->outputs[i].name;
	struct telemetry_counter *c = telemetry_counter_new(m->name, m->version, profile_load(a, m), in, nin, out, nout,
							    a->cfg.telemetry_window);
	free(in);
	free(out);
	if (telemetry_spool_take_open(a->spool, c, gn_now(), &err))
		gn_log(GN_LOG_WARN, "event=telemetry_spool_failed msg=\"%s\"", err.msg);
	m->telemetry = c;
}

void agent_telemetry_detach(struct agent *a, struct agent_model *m)
{
	json_t *r = NULL;
	gn_err err;
	if (!m->telemetry)
		return;
	/* the version stops serving: what its window counted so far is its last report */
	telemetry_roll(&r, m->telemetry, gn_now(), true);
	if (r && a->spool && telemetry_spool_put(a->spool, r, &err))
		gn_log(GN_LOG_WARN, "event=telemetry_spool_failed msg=\"%s\"", err.msg);
	json_decref(r);
	telemetry_counter_free(m->telemetry);
	m->telemetry = NULL;
}

/* Rolls every counter whose window has ended into the spool. */
static void roll_all(struct agent *a)
{
	struct agent_model **ms;
	size_t n = models_serving(&ms, a);
	gn_err err;
	for (size_t i = 0; i < n; i++) {
		json_t *r = NULL;
		if (ms[i]->telemetry)
			telemetry_roll(&r, ms[i]->telemetry, gn_now(), false);
		if (r && telemetry_spool_put(a->spool, r, &err))
			gn_log(GN_LOG_WARN, "event=telemetry_spool_failed msg=\"%s\"", err.msg);
		json_decref(r);
		models_unref(a, ms[i]);
	}
	free(ms);
}

static void *roller_main(void *ud)
{
	struct agent *a = ud;
	pthread_mutex_lock(&a->telemetry_lock);
	while (!a->telemetry_stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&a->telemetry_wake, &a->telemetry_lock, &ts);
		if (a->telemetry_stop)
			break;
		pthread_mutex_unlock(&a->telemetry_lock);
		roll_all(a);
		pthread_mutex_lock(&a->telemetry_lock);
	}
	pthread_mutex_unlock(&a->telemetry_lock);
	return NULL;
}

int agent_telemetry_start(struct agent *a, gn_err *err)
{
	char *dir = state_path(a, "telemetry"), *profiles = state_path(a, "profiles");
	int rc = 0;
	if (mkdir(profiles, 0700) != 0 && errno != EEXIST)
		rc = gn_err_set(err, GN_ERROR, "cannot create %s: %s", profiles, strerror(errno));
	if (!rc)
		rc = telemetry_spool_open(&a->spool, dir, (size_t)a->cfg.telemetry_spool_max, err);
	free(dir);
	free(profiles);
	if (rc)
		return rc;
	pthread_mutex_init(&a->telemetry_lock, NULL);
	pthread_cond_init(&a->telemetry_wake, NULL);
	a->telemetry_stop = false;
	if (pthread_create(&a->telemetry_thread, NULL, roller_main, a) != 0) {
		telemetry_spool_free(a->spool);
		a->spool = NULL;
		return gn_err_set(err, GN_ERROR, "cannot start the telemetry thread");
	}
	return 0;
}

void agent_telemetry_stop(struct agent *a)
{
	struct agent_model **ms;
	gn_err err;
	if (!a->spool)
		return;
	pthread_mutex_lock(&a->telemetry_lock);
	a->telemetry_stop = true;
	pthread_cond_signal(&a->telemetry_wake);
	pthread_mutex_unlock(&a->telemetry_lock);
	pthread_join(a->telemetry_thread, NULL);
	/* the open windows are kept for the next start (the requests have stopped) */
	size_t n = models_serving(&ms, a);
	for (size_t i = 0; i < n; i++) {
		if (ms[i]->telemetry && telemetry_spool_keep_open(a->spool, ms[i]->telemetry, &err))
			gn_log(GN_LOG_WARN, "event=telemetry_spool_failed msg=\"%s\"", err.msg);
		telemetry_counter_free(ms[i]->telemetry);
		ms[i]->telemetry = NULL;
		models_unref(a, ms[i]);
	}
	free(ms);
	pthread_cond_destroy(&a->telemetry_wake);
	pthread_mutex_destroy(&a->telemetry_lock);
	telemetry_spool_free(a->spool);
	a->spool = NULL;
}

/* Sends a batch gzipped (a tenth of the bytes or less: repeated keys and small counts); a server
 * older than that answers 415, and for the next hour this agent sends its batches plain. */
static int send_batch(void *ctx, const char *body, size_t len, int *out_status, gn_err *err)
{
	struct agent *a = ctx;
	if (telemetry_gzip_next(&a->telemetry_plain_since, gn_mono_ns())) {
		gn_buf z;
		gn_buf_init(&z);
		int rc = gn_gzip(&z, body, len, err);
		if (!rc)
			rc = client_post_encoded(out_status, a, "/v1/agent/telemetry", z.data, z.len, "gzip", err);
		gn_buf_cleanup(&z);
		if (rc || *out_status != 415)
			return rc;
		gn_log(GN_LOG_INFO, "event=telemetry_gzip_refused note=\"the server takes no gzip bodies; sending "
				    "telemetry uncompressed for an hour\"");
		a->telemetry_plain_since = gn_mono_ns();
	}
	return client_post_encoded(out_status, a, "/v1/agent/telemetry", body, len, NULL, err);
}

void agent_telemetry_upload(struct agent *a)
{
	gn_err err;
	size_t sent = 0;
	/* batch after batch while the server takes them; what is left waits for the next check-in */
	for (int i = 0; a->spool && i < 20 && !atomic_load(&a->stopping); i++) {
		if (telemetry_spool_upload(&sent, a->spool, (size_t)a->cfg.telemetry_batch, send_batch, a, &err)) {
			gn_log(GN_LOG_WARN, "event=telemetry_upload_failed waiting=%zu msg=\"%s\"",
			       telemetry_spool_count(a->spool), err.msg);
			return;
		}
		if (!sent)
			return;
		gn_log(GN_LOG_DEBUG, "event=telemetry_uploaded windows=%zu", sent);
	}
}
