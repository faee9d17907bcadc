/* The periodic-job scheduler (a table, one thread, advisory locks). */
#include "jobs.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "alerts.h"
#include "device_auth.h"
#include "device_tokens.h"
#include "gitops.h"
#include "log.h"
#include "rollouts.h"
#include "telemetry.h"
#include "tuf_image.h"
#include "tuf_keys.h"

static int64_t every_housekeeping(const struct gd_config *cfg)
{
	return cfg->housekeeping_interval;
}

static int job_auth_gc(db_conn *c, const struct gd_config *cfg, gn_err *err)
{
	int error;
	(void)cfg;
	if ((error = device_auth_gc(c, err)))
		return error;
	return device_tokens_gc(c, err);
}

/* Roots first, then the image repository's targets, snapshot and timestamp. */
static int job_tuf_refresh(db_conn *c, const struct gd_config *cfg, gn_err *err)
{
	struct tuf_settings ts;
	int error;
	tuf_sign_settings(&ts, cfg);
	if ((error = tuf_keys_refresh(c, &ts, err)))
		return error;
	return tuf_image_refresh(c, &ts, err);
}

static int64_t every_rollout_interval(const struct gd_config *cfg)
{
	return cfg->rollout_interval;
}

static int job_rollouts(db_conn *c, const struct gd_config *cfg, gn_err *err)
{
	(void)cfg;
	return rollouts_tick(c, err);
}

static int64_t every_gitops_interval(const struct gd_config *cfg)
{
	return cfg->gitops_interval;
}

/* Telemetry partitions for the days ahead; the days past the retention dropped. */
static int job_telemetry_partitions(db_conn *c, const struct gd_config *cfg, gn_err *err)
{
	int created, dropped;
	return telemetry_partitions(&created, &dropped, c, gn_now(), cfg->telemetry_retention, err);
}

static int64_t every_alert_interval(const struct gd_config *cfg)
{
	return cfg->alert_interval;
}

static int job_alerts(db_conn *c, const struct gd_config *cfg, gn_err *err)
{
	(void)cfg;
	return alerts_tick(c, gn_now(), err);
}

/* Often enough that a webhook's first retries (1 s, 2 s apart) are not much later than due. */
static int64_t every_webhook_interval(const struct gd_config *cfg)
{
	(void)cfg;
	return 2;
}

static int job_alert_webhooks(db_conn *c, const struct gd_config *cfg, gn_err *err)
{
	(void)cfg;
	return alerts_webhooks_tick(c, err);
}

/* Add a job here: its lock key is DB_LOCK_JOBS + its index, so append, never reorder. */
static const struct job jobs[] = {
	{"auth_gc", every_housekeeping, job_auth_gc},         /* expired device nonces, sessions and token keys */
	{"tuf_refresh", every_housekeeping, job_tuf_refresh}, /* TUF metadata near its expiry */
	{"rollouts", every_rollout_interval, job_rollouts},   /* the rollout controller (rollouts.c) */
	{"gitops", every_gitops_interval, gitops_poll},       /* GitOps sync (gitops.c) */
	{"telemetry_partitions", every_housekeeping, job_telemetry_partitions}, /* telemetry.c */
	{"alerts", every_alert_interval, job_alerts},                           /* drift alert rules (alerts.c) */
	{"alert_webhooks", every_webhook_interval, job_alert_webhooks},         /* their webhooks (alerts.c) */
};

static pthread_t thread;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static bool stopping, started;
static int64_t due[GN_ARRAY_LEN(jobs)]; /* monotonic seconds; 0 = now */
static db_pool *pool_;

const struct job *jobs_table(size_t *out_n)
{
	*out_n = GN_ARRAY_LEN(jobs);
	return jobs;
}

static int64_t mono_s(void)
{
	return (int64_t)(gn_mono_ns() / 1000000000ull);
}

/* Runs job i under its advisory lock; skipped when another replica holds it. */
static void run_one(size_t i)
{
	gn_err err;
	bool got = false;
	const struct gd_config *cfg = config_get();
	db_conn *c = db_acquire(pool_);
	int64_t key = DB_LOCK_JOBS + (int64_t)i;
	int rc = db_try_lock_session(&got, c, key, &err);
	if (!rc && got) {
		uint64_t t0 = gn_mono_ns();
		rc = jobs[i].fn(c, cfg, &err);
		db_unlock_session(c, key);
		gn_log(GN_LOG_DEBUG, "event=job_done job=%s dur_ms=%.1f", jobs[i].name,
		       (double)(gn_mono_ns() - t0) / 1e6);
	}
	db_release(pool_, c);
	if (rc)
		gn_log(GN_LOG_WARN, "event=job_failed job=%s msg=\"%s\"", jobs[i].name, err.msg);
}

/* Returns the index of a due job (marking its next run), or -1 and the seconds until one is. */
static int next_due(int64_t *out_wait)
{
	int64_t now = mono_s(), soonest = INT64_MAX;
	for (size_t i = 0; i < GN_ARRAY_LEN(jobs); i++) {
		if (due[i] <= now) {
			due[i] = now + jobs[i].interval(config_get());
			return (int)i;
		}
		if (due[i] < soonest)
			soonest = due[i];
	}
	*out_wait = soonest - now;
	return -1;
}

static void *scheduler_main(void *unused)
{
	(void)unused;
	pthread_mutex_lock(&lock);
	while (!stopping) {
		int64_t wait = 0;
		int i = next_due(&wait);
		if (i >= 0) {
			pthread_mutex_unlock(&lock);
			run_one((size_t)i);
			pthread_mutex_lock(&lock);
			continue;
		}
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += (time_t)wait;
		pthread_cond_timedwait(&wake, &lock, &ts);
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

int jobs_start(db_pool *pool, gn_err *err)
{
	pthread_condattr_t attr;
	pool_ = pool;
	stopping = false;
	/* The first runs happen one interval after start-up, as start-up did the work itself. */
	for (size_t i = 0; i < GN_ARRAY_LEN(jobs); i++)
		due[i] = mono_s() + jobs[i].interval(config_get());
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_destroy(&wake);
	pthread_cond_init(&wake, &attr);
	pthread_condattr_destroy(&attr);
	if (pthread_create(&thread, NULL, scheduler_main, NULL) != 0)
		return gn_err_set(err, GN_ERROR, "cannot start the job scheduler thread");
	started = true;
	return 0;
}

void jobs_stop(void)
{
	if (!started)
		return;
	pthread_mutex_lock(&lock);
	stopping = true;
	pthread_cond_signal(&wake);
	pthread_mutex_unlock(&lock);
	pthread_join(thread, NULL);
	started = false;
}

bool jobs_wake(const char *name)
{
	for (size_t i = 0; i < GN_ARRAY_LEN(jobs); i++) {
		if (strcmp(jobs[i].name, name) != 0)
			continue;
		pthread_mutex_lock(&lock);
		due[i] = 0;
		pthread_cond_signal(&wake);
		pthread_mutex_unlock(&lock);
		return true;
	}
	return false;
}

void jobs_on_notify(const char *payload)
{
	if (!jobs_wake(payload))
		gn_log(GN_LOG_WARN, "event=job_wake_unknown job=%s", payload);
}
