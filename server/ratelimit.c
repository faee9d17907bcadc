/* In-memory token buckets for the rate limits: a hash table of 65,536 slots split into 64 shards,
 * each under its own lock. A take locks the one shard its key hashes to (a lookup is a few hundred
 * nanoseconds); the minute's prune walks the shards one after the other, so no request waits for
 * more than one shard's walk, and requests for other shards do not wait at all. */
#include "ratelimit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "log.h"

#define NSLOTS 65536
#define NSHARDS 64
#define SHARD_SLOTS (NSLOTS / NSHARDS)
#define MINUTE_NS 60000000000.0

struct bucket {
	struct bucket *next;
	double tokens;    /* as of `at` */
	uint64_t at;      /* monotonic ns */
	int64_t capacity; /* per_minute at the last take: a reload changes it */
	char key[];
};

struct shard {
	pthread_mutex_t lock;
	struct bucket *slots[SHARD_SLOTS]; /* under lock */
};

#define LOCK4(n)                                                                        \
	[n].lock = PTHREAD_MUTEX_INITIALIZER, [n + 1].lock = PTHREAD_MUTEX_INITIALIZER, \
	[n + 2].lock = PTHREAD_MUTEX_INITIALIZER, [n + 3].lock = PTHREAD_MUTEX_INITIALIZER
#define LOCK16(n) LOCK4(n), LOCK4(n + 4), LOCK4(n + 8), LOCK4(n + 12)
_Static_assert(NSHARDS == 64, "shards[] initialises 64 locks");
static struct shard shards[NSHARDS] = {LOCK16(0), LOCK16(16), LOCK16(32), LOCK16(48)};
static _Atomic long nkeys;
static _Atomic bool overflow_logged;
static _Atomic uint64_t last_full_prune;

/* The shard and the slot in it that key hashes to. */
static struct bucket **slot_of(struct shard **sh, const char *key)
{
	size_t h = (size_t)(gn_fnv1a(0, key, strlen(key)) % NSLOTS);
	*sh = &shards[h % NSHARDS];
	return &(*sh)->slots[h / NSHARDS];
}

static struct bucket *find(struct bucket *b, const char *key)
{
	while (b && strcmp(b->key, key) != 0)
		b = b->next;
	return b;
}

/* Tokens in b at now (refilled, capped). Callers read the clock before they take the lock, so a
 * thread may come with a now older than the bucket's last update: no time has passed for it (the
 * unsigned difference would wrap and refill the bucket to full). */
static double level(const struct bucket *b, uint64_t now)
{
	uint64_t elapsed = now > b->at ? now - b->at : 0;
	double t = b->tokens + (double)elapsed * (double)b->capacity / MINUTE_NS;
	return t > (double)b->capacity ? (double)b->capacity : t;
}

/* Brings b up to now at per_minute: refills it, and applies a reloaded limit (a lowered one caps
 * what is left at once). Under the shard's lock. */
static void refresh(struct bucket *b, int64_t per_minute, uint64_t now)
{
	b->tokens = level(b, now);
	if (now > b->at) /* never back in time (see level) */
		b->at = now;
	if (b->capacity != per_minute) {
		b->capacity = per_minute;
		if (b->tokens > (double)per_minute)
			b->tokens = (double)per_minute;
	}
}

/* Frees the buckets of one slot that are full again (idle long enough to forget), but for key's
 * own when key is not NULL (a client that keeps coming keeps its bucket until the minute's prune,
 * rather than one allocation a request); returns key's bucket, or NULL. *freed (when given) counts
 * what was freed. Under the shard's lock. A bucket short of even a fraction of a token is kept:
 * its client is still limited. */
static struct bucket *prune_slot(struct bucket **pp, const char *key, uint64_t now, size_t *freed)
{
	struct bucket *found = NULL;
	size_t n = 0;
	while (*pp) {
		struct bucket *b = *pp;
		if (key && !found && strcmp(b->key, key) == 0) {
			found = b;
			pp = &b->next;
		} else if (level(b, now) >= (double)b->capacity) {
			*pp = b->next;
			free(b);
			n++;
		} else {
			pp = &b->next;
		}
	}
	if (n)
		atomic_fetch_sub(&nkeys, (long)n);
	if (freed)
		*freed += n;
	return found;
}

/* Seconds until a bucket at tokens (below 1) holds a whole token, rounded up, at least 1. */
static int64_t wait_for_token(double tokens, int64_t per_minute)
{
	double s = (1.0 - tokens) * 60.0 / (double)per_minute - 1e-6; /* not 1.0000001 -> 2 */
	int64_t wait = (int64_t)s + ((double)(int64_t)s < s ? 1 : 0);
	return wait < 1 ? 1 : wait;
}

/* Takes a token from b (refreshed) when it holds one: 0; else the seconds until it will. */
static int64_t take_from(struct bucket *b, int64_t per_minute, uint64_t now)
{
	refresh(b, per_minute, now);
	if (b->tokens < 1.0)
		return wait_for_token(b->tokens, per_minute);
	b->tokens -= 1.0;
	return 0;
}

size_t ratelimit_prune(uint64_t now, uint64_t *longest_hold_ns)
{
	size_t freed = 0;
	uint64_t longest = 0;
	for (size_t s = 0; s < NSHARDS; s++) {
		struct shard *sh = &shards[s];
		pthread_mutex_lock(&sh->lock);
		uint64_t t0 = longest_hold_ns ? gn_mono_ns() : 0;
		for (size_t i = 0; i < SHARD_SLOTS; i++)
			(void)prune_slot(&sh->slots[i], NULL, now, &freed);
		uint64_t held = longest_hold_ns ? gn_mono_ns() - t0 : 0;
		longest = held > longest ? held : longest;
		pthread_mutex_unlock(&sh->lock);
	}
	if (longest_hold_ns)
		*longest_hold_ns = longest;
	return freed;
}

int64_t ratelimit_take(const char *key, int64_t per_minute, uint64_t now)
{
	if (per_minute <= 0)
		return 0;
	struct shard *sh;
	struct bucket **slot = slot_of(&sh, key);
	pthread_mutex_lock(&sh->lock);
	struct bucket *b = prune_slot(slot, key, now, NULL);
	if (!b && atomic_load(&nkeys) >= RATELIMIT_MAX_KEYS) {
		/* Full: forget every idle key (at most once a second, it walks the whole table), with
		 * this shard unlocked, as the walk locks each shard in turn. */
		uint64_t last = atomic_load(&last_full_prune);
		pthread_mutex_unlock(&sh->lock);
		if (now > last + 1000000000ull && atomic_compare_exchange_strong(&last_full_prune, &last, now))
			ratelimit_prune(now, NULL);
		pthread_mutex_lock(&sh->lock);
		b = find(*slot, key); /* another thread may have counted it meanwhile */
		if (!b && atomic_load(&nkeys) >= RATELIMIT_MAX_KEYS) {
			pthread_mutex_unlock(&sh->lock);
			if (!atomic_exchange(&overflow_logged, true))
				gn_log(GN_LOG_WARN,
				       "event=rate_limit_table_full keys=%d note=\"new keys pass unlimited\"",
				       RATELIMIT_MAX_KEYS);
			return 0;
		}
	}
	if (!b) {
		size_t n = strlen(key) + 1;
		b = gn_malloc(sizeof(*b) + n);
		memcpy(b->key, key, n);
		b->tokens = (double)per_minute;
		b->at = now;
		b->capacity = per_minute;
		b->next = *slot;
		*slot = b;
		atomic_fetch_add(&nkeys, 1);
	}
	int64_t wait = take_from(b, per_minute, now);
	pthread_mutex_unlock(&sh->lock);
	return wait;
}

int64_t ratelimit_attempt(const char *key, int64_t per_minute, uint64_t now)
{
	return ratelimit_take(key, per_minute, now);
}

void ratelimit_attempt_end(const char *key, int64_t per_minute, uint64_t now, bool failed)
{
	if (failed || per_minute <= 0)
		return;
	struct shard *sh;
	struct bucket **slot = slot_of(&sh, key);
	pthread_mutex_lock(&sh->lock);
	struct bucket *b = find(*slot, key);
	if (b) {
		refresh(b, per_minute, now);
		b->tokens += 1.0;
		if (b->tokens > (double)per_minute)
			b->tokens = (double)per_minute;
	}
	pthread_mutex_unlock(&sh->lock);
}

void ratelimit_reset(void)
{
	for (size_t s = 0; s < NSHARDS; s++) {
		struct shard *sh = &shards[s];
		pthread_mutex_lock(&sh->lock);
		for (size_t i = 0; i < SHARD_SLOTS; i++) {
			while (sh->slots[i]) {
				struct bucket *b = sh->slots[i];
				sh->slots[i] = b->next;
				free(b);
			}
		}
		pthread_mutex_unlock(&sh->lock);
	}
	atomic_store(&nkeys, 0);
	atomic_store(&overflow_logged, false);
	atomic_store(&last_full_prune, 0);
}
