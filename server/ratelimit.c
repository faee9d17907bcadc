/* In-memory token buckets for the rate limits, in a hash table under one lock (the limited
 * routes are few and cheap to count; a lookup is a few hundred nanoseconds). */
#include "ratelimit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "log.h"

#define NSLOTS 65536
#define MINUTE_NS 60000000000.0

struct bucket {
	struct bucket *next;
	double tokens;    /* as of `at` */
	uint64_t at;      /* monotonic ns */
	int64_t capacity; /* per_minute at the last take: a reload changes it */
	char key[];
};

static struct bucket *slots[NSLOTS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic long nkeys;
static _Atomic bool overflow_logged;
static uint64_t last_full_prune; /* under lock */

/* Tokens in b at now (refilled, capped). Callers read the clock before they take the lock, so a
 * thread may come with a now older than the bucket's last update: no time has passed for it (the
 * unsigned difference would wrap and refill the bucket to full). */
static double level(const struct bucket *b, uint64_t now)
{
	uint64_t elapsed = now > b->at ? now - b->at : 0;
	double t = b->tokens + (double)elapsed * (double)b->capacity / MINUTE_NS;
	return t > (double)b->capacity ? (double)b->capacity : t;
}

/* Frees the buckets of one slot that are full again (idle long enough to forget). Under lock. */
static void prune(size_t slot, uint64_t now)
{
	struct bucket **pp = &slots[slot];
	while (*pp) {
		struct bucket *b = *pp;
		if (level(b, now) >= (double)b->capacity) {
			*pp = b->next;
			free(b);
			atomic_fetch_sub(&nkeys, 1);
		} else {
			pp = &b->next;
		}
	}
}

/* Seconds until a bucket at tokens (below 1) holds a whole token, rounded up, at least 1. */
static int64_t wait_for_token(double tokens, int64_t per_minute)
{
	double s = (1.0 - tokens) * 60.0 / (double)per_minute - 1e-6; /* not 1.0000001 -> 2 */
	int64_t wait = (int64_t)s + ((double)(int64_t)s < s ? 1 : 0);
	return wait < 1 ? 1 : wait;
}

int64_t ratelimit_peek(const char *key, int64_t per_minute, uint64_t now)
{
	if (per_minute <= 0)
		return 0;
	size_t slot = (size_t)(gn_fnv1a(0, key, strlen(key)) % NSLOTS);
	int64_t wait = 0;
	pthread_mutex_lock(&lock);
	struct bucket *b = slots[slot];
	while (b && strcmp(b->key, key) != 0)
		b = b->next;
	if (b) {
		/* A lowered limit counts at once, as ratelimit_take would apply it. */
		double t = level(b, now);
		if (t > (double)per_minute)
			t = (double)per_minute;
		if (t < 1.0)
			wait = wait_for_token(t, per_minute);
	}
	pthread_mutex_unlock(&lock);
	return wait;
}

int64_t ratelimit_take(const char *key, int64_t per_minute, uint64_t now)
{
	if (per_minute <= 0)
		return 0;
	size_t slot = (size_t)(gn_fnv1a(0, key, strlen(key)) % NSLOTS);
	int64_t wait = 0;
	pthread_mutex_lock(&lock);
	prune(slot, now);
	struct bucket *b = slots[slot];
	while (b && strcmp(b->key, key) != 0)
		b = b->next;
	if (!b && atomic_load(&nkeys) >= RATELIMIT_MAX_KEYS && now > last_full_prune + 1000000000ull) {
		/* Full: forget every idle key (at most once a second, it walks the whole table). */
		last_full_prune = now;
		for (size_t i = 0; i < NSLOTS; i++)
			prune(i, now);
	}
	if (!b) {
		if (atomic_load(&nkeys) >= RATELIMIT_MAX_KEYS) {
			pthread_mutex_unlock(&lock);
			if (!atomic_exchange(&overflow_logged, true))
				gn_log(GN_LOG_WARN,
				       "event=rate_limit_table_full keys=%d note=\"new keys pass unlimited\"",
				       RATELIMIT_MAX_KEYS);
			return 0;
		}
		size_t n = strlen(key) + 1;
		b = gn_malloc(sizeof(*b) + n);
		memcpy(b->key, key, n);
		b->tokens = (double)per_minute;
		b->at = now;
		b->capacity = per_minute;
		b->next = slots[slot];
		slots[slot] = b;
		atomic_fetch_add(&nkeys, 1);
	}
	b->tokens = level(b, now);
	if (now > b->at) /* never back in time (see level) */
		b->at = now;
	if (b->capacity != per_minute) {
		b->capacity = per_minute;
		if (b->tokens > (double)per_minute)
			b->tokens = (double)per_minute;
	}
	if (b->tokens >= 1.0) {
		b->tokens -= 1.0;
	} else {
		wait = wait_for_token(b->tokens, per_minute);
	}
	pthread_mutex_unlock(&lock);
	return wait;
}

size_t ratelimit_prune(uint64_t now)
{
	long before;
	pthread_mutex_lock(&lock);
	before = atomic_load(&nkeys);
	for (size_t i = 0; i < NSLOTS; i++)
		prune(i, now);
	size_t freed = (size_t)(before - atomic_load(&nkeys));
	pthread_mutex_unlock(&lock);
	return freed;
}

void ratelimit_reset(void)
{
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < NSLOTS; i++) {
		while (slots[i]) {
			struct bucket *b = slots[i];
			slots[i] = b->next;
			free(b);
		}
	}
	atomic_store(&nkeys, 0);
	pthread_mutex_unlock(&lock);
	atomic_store(&overflow_logged, false);
}
