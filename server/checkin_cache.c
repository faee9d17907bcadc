/* The in-memory check-in answers, kept honest by the director NOTIFY channel (notify.c). */
#include "checkin_cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define STRIPES 64
#define BUCKETS 4096 /* per stripe */

struct entry {
	struct entry *next;
	char id[40];
	int version;
	bool in_stage; /* answered as a device in a rollout's running stage (its poll interval) */
	int64_t fresh_until;
	uint64_t body_hash;
	int64_t seq; /* the highest report sequence number seen here (0: none) */
};

static struct stripe {
	pthread_mutex_t lock;
	struct entry *buckets[BUCKETS];
} stripes[STRIPES];

static _Atomic bool running; /* only while the NOTIFY listener listens */
/* Bumped by every invalidation: an answer read before a bump is not cached after it. */
static _Atomic uint64_t epoch_;

uint64_t checkin_cache_epoch(void)
{
	return atomic_load(&epoch_);
}

static struct stripe *stripe_of(const char *id, size_t *bucket)
{
	uint64_t h = gn_fnv1a(0, id, strlen(id));
	*bucket = (size_t)(h >> 8) % BUCKETS;
	return &stripes[h % STRIPES];
}

static struct entry **find(struct stripe *s, size_t bucket, const char *id)
{
	struct entry **e = &s->buckets[bucket];
	while (*e && strcmp((*e)->id, id) != 0)
		e = &(*e)->next;
	return e;
}

bool checkin_cache_fresh(const char *device_id, int version, int64_t poll, const int64_t intervals[2],
			 uint64_t body_hash, int64_t seq, int64_t now, bool *out_write, bool *out_changed)
{
	size_t b;
	bool fresh = false;
	struct stripe *s = stripe_of(device_id, &b);
	pthread_mutex_lock(&s->lock);
	struct entry *e = *find(s, b, device_id);
	/* An older sequence number than seen here is a replay: the database says what becomes of it. */
	if (atomic_load(&running) && e && e->version == version && intervals[e->in_stage] == poll &&
	    now < e->fresh_until && (seq <= 0 || seq >= e->seq)) {
		fresh = true;
		if (seq > e->seq)
			e->seq = seq;
		*out_changed = e->body_hash != body_hash;
		/* The last-seen time of an unchanged report goes to last_seen.c, in batches. */
		*out_write = *out_changed;
		if (*out_write)
			e->body_hash = body_hash;
	}
	pthread_mutex_unlock(&s->lock);
	return fresh;
}

void checkin_cache_put(const char *device_id, int version, bool in_stage, int64_t fresh_until, uint64_t body_hash,
		       int64_t seq, int64_t now, uint64_t epoch)
{
	size_t b;
	struct stripe *s = stripe_of(device_id, &b);
	if (!atomic_load(&running))
		return;
	pthread_mutex_lock(&s->lock);
	/* Checked under the lock that forget() takes after bumping the epoch. */
	if (atomic_load(&epoch_) != epoch) {
		pthread_mutex_unlock(&s->lock);
		return;
	}
	struct entry **slot = find(s, b, device_id), *e = *slot;
	if (!e) {
		e = gn_calloc(1, sizeof(*e));
		snprintf(e->id, sizeof(e->id), "%s", device_id);
		*slot = e;
	}
	e->version = version;
	e->in_stage = in_stage;
	e->fresh_until = fresh_until;
	e->body_hash = body_hash;
	if (seq > e->seq)
		e->seq = seq;
	pthread_mutex_unlock(&s->lock);
}

void checkin_cache_forget(const char *device_id)
{
	size_t b;
	struct stripe *s = stripe_of(device_id, &b);
	atomic_fetch_add(&epoch_, 1);
	pthread_mutex_lock(&s->lock);
	struct entry **slot = find(s, b, device_id), *e = *slot;
	if (e) {
		*slot = e->next;
		free(e);
	}
	pthread_mutex_unlock(&s->lock);
}

static void clear_all(void)
{
	atomic_fetch_add(&epoch_, 1);
	for (int i = 0; i < STRIPES; i++) {
		pthread_mutex_lock(&stripes[i].lock);
		for (int b = 0; b < BUCKETS; b++) {
			struct entry *e = stripes[i].buckets[b];
			while (e) {
				struct entry *n = e->next;
				free(e);
				e = n;
			}
			stripes[i].buckets[b] = NULL;
		}
		pthread_mutex_unlock(&stripes[i].lock);
	}
}

void checkin_cache_on_notify(const char *payload)
{
	/* One device id, or several separated by spaces (a statement that changed many devices). */
	char id[40];
	for (const char *p = payload; *p;) {
		size_t n = strcspn(p, " ");
		if (n > 0 && n < sizeof(id)) {
			memcpy(id, p, n);
			id[n] = '\0';
			checkin_cache_forget(id);
		} else if (n > 0) {
			/* Not an id: forget everything rather than keep an answer that may be stale. */
			gn_log(GN_LOG_WARN, "event=checkin_cache_bad_notify len=%zu", n);
			clear_all();
		}
		p += n;
		p += strspn(p, " ");
	}
}

void checkin_cache_on_listening(bool up)
{
	if (up) {
		atomic_store(&running, true);
		return;
	}
	/* Off first, then empty: nothing cached while no one listens. */
	atomic_store(&running, false);
	clear_all();
}

void checkin_cache_init(void)
{
	for (int i = 0; i < STRIPES; i++)
		pthread_mutex_init(&stripes[i].lock, NULL);
}

void checkin_cache_cleanup(void)
{
	atomic_store(&running, false);
	clear_all();
}
