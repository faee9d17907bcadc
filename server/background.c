/* The per-replica background thread. */
#include "background.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#include "device_tokens.h"
#include "last_seen.h"
#include "log.h"
#include "ratelimit.h"

#define FLUSH_EVERY_MS 1000
#define FLUSH_MAX_ROWS 20000 /* per statement */
#define PRUNE_EVERY_NS 60000000000ull

static pthread_t thread;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake;
static bool stopping;
static _Atomic bool started;
static db_pool *pool_;

static void flush(db_conn *c)
{
	gn_err err;
	size_t rows = 0;
	uint64_t t0 = gn_mono_ns();
	if (last_seen_flush(&rows, c, FLUSH_MAX_ROWS, &err))
		gn_log(GN_LOG_WARN, "event=last_seen_flush_failed msg=\"%s\" note=\"kept for the next try\"", err.msg);
	else if (rows)
		gn_log(GN_LOG_DEBUG, "event=last_seen_flushed rows=%zu dur_ms=%.1f", rows,
		       (double)(gn_mono_ns() - t0) / 1e6);
}

static void work(void)
{
	gn_err err;
	static uint64_t pruned_at;
	uint64_t now = gn_mono_ns();
	if (now - pruned_at >= PRUNE_EVERY_NS) {
		uint64_t hold = 0;
		size_t n = ratelimit_prune(now, &hold);
		pruned_at = now;
		if (n)
			gn_log(GN_LOG_DEBUG, "event=rate_limit_pruned keys=%zu dur_ms=%.1f longest_lock_ms=%.2f", n,
			       (double)(gn_mono_ns() - now) / 1e6, (double)hold / 1e6);
	}
	if (!device_tokens_reload_wanted() && !last_seen_pending())
		return;
	db_conn *c = db_acquire(pool_);
	if (device_tokens_reload(c, &err))
		gn_log(GN_LOG_WARN,
		       "event=device_tokens_reload_failed msg=\"%s\" note=\"the database decides meanwhile\"", err.msg);
	flush(c);
	db_release(pool_, c);
}

static void *background_main(void *unused)
{
	(void)unused;
	pthread_mutex_lock(&lock);
	while (!stopping) {
		pthread_mutex_unlock(&lock);
		work();
		pthread_mutex_lock(&lock);
		if (stopping)
			break;
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += FLUSH_EVERY_MS / 1000;
		pthread_cond_timedwait(&wake, &lock, &ts);
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

int background_start(db_pool *pool, gn_err *err)
{
	pthread_condattr_t attr;
	pool_ = pool;
	stopping = false;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&wake, &attr);
	pthread_condattr_destroy(&attr);
	if (pthread_create(&thread, NULL, background_main, NULL) != 0) {
		pthread_cond_destroy(&wake);
		return gn_err_set(err, GN_ERROR, "cannot start the background thread");
	}
	started = true;
	return 0;
}

void background_wake(void)
{
	if (!started)
		return;
	pthread_mutex_lock(&lock);
	pthread_cond_signal(&wake);
	pthread_mutex_unlock(&lock);
}

void background_stop(void)
{
	if (!started)
		return;
	pthread_mutex_lock(&lock);
	stopping = true;
	pthread_cond_signal(&wake);
	pthread_mutex_unlock(&lock);
	pthread_join(thread, NULL);
	pthread_cond_destroy(&wake);
	started = false;
	/* The last write, after the HTTP server has stopped: nothing is noted after it. */
	db_conn *c = db_acquire(pool_);
	flush(c);
	db_release(pool_, c);
}
