/* The in-memory check-in answers, kept honest by the director NOTIFY channel (notify.c). */
#include "checkin_cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pool.h"

#define STRIPES 64
#define BUCKETS 1024 /* per stripe: 65,536 in all, as for last-seen times (last_seen.c) */

/* One per device answered from here: 56 bytes, from its stripe's pool (bench/README.md has what
 * a device costs in all). */
struct entry {
	struct entry *next;
	unsigned char id[16]; /* the device id's UUID, binary */
	int64_t fresh_until;
	uint64_t body_hash;
	int64_t seq; /* the highest report sequence number seen here (0: none) */
	int version;
	bool in_stage; /* answered as a device in a rollout's running stage (its poll interval) */
};

static struct stripe {
	pthread_mutex_t lock;
	gn_pool pool; /* the entries */
	struct entry *buckets[BUCKETS];
} stripes[STRIPES];

static _Atomic bool running; /* only while the NOTIFY listener listens */
/* Bumped by every invalidation: an answer read before a bump is not cached after it. */
static _Atomic uint64_t epoch_;

uint64_t checkin_cache_epoch(void)
{
	return atomic_load(&epoch_);
}

static struct stripe *stripe_of(const unsigned char id[16], size_t *bucket)
{
	uint64_t h = gn_fnv1a(0, id, 16);
	*bucket = (size_t)(h >> 8) % BUCKETS;
	return &stripes[h % STRIPES];
}

static struct entry **find(struct stripe *s, size_t bucket, const unsigned char id[16])
{
	struct entry **e = &s->buckets[bucket];
	while (*e && memcmp((*e)->id, id, 16) != 0)
		e = &(*e)->next;
	return e;
}

bool checkin_cache_fresh(const char *device_id, int version, int64_t poll, const int64_t intervals[2],
			 uint64_t body_hash, int64_t seq, int64_t now, bool *out_write, bool *out_changed)
{
	size_t b;
	bool fresh = false;
	unsigned char id[16];
	if (gn_uuid_parse(id, device_id))
		return false; /* never cached (checkin_cache_put) */
	struct stripe *s = stripe_of(id, &b);
	pthread_mutex_lock(&s->lock);
	struct entry *e = *find(s, b, id);
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
	unsigned char id[16];
	if (!atomic_load(&running) || gn_uuid_parse(id, device_id))
		return;
	struct stripe *s = stripe_of(id, &b);
	pthread_mutex_lock(&s->lock);
	/* Checked under the lock that forget() takes after bumping the epoch. */
	if (atomic_load(&epoch_) != epoch) {
		pthread_mutex_unlock(&s->lock);
		return;
	}
	struct entry **slot = find(s, b, id), *e = *slot;
	if (!e) {
		e = gn_pool_get(&s->pool);
		memcpy(e->id, id, 16);
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

/* Forgets the device of binary id. */
static void forget(const unsigned char id[16])
{
	size_t b;
	struct stripe *s = stripe_of(id, &b);
	atomic_fetch_add(&epoch_, 1);
	pthread_mutex_lock(&s->lock);
	struct entry **slot = find(s, b, id), *e = *slot;
	if (e) {
		*slot = e->next;
		gn_pool_put(&s->pool, e);
	}
	pthread_mutex_unlock(&s->lock);
}

static void clear_all(void)
{
	atomic_fetch_add(&epoch_, 1);
	for (int i = 0; i < STRIPES; i++) {
		pthread_mutex_lock(&stripes[i].lock);
		memset(stripes[i].buckets, 0, sizeof(stripes[i].buckets));
		gn_pool_cleanup(&stripes[i].pool);
		pthread_mutex_unlock(&stripes[i].lock);
	}
}

/* Forgets the device of text id; forgets everything for a text that is no device id. */
void checkin_cache_forget(const char *device_id)
{
	unsigned char id[16];
	if (gn_uuid_parse(id, device_id)) {
		/* Not an id: forget everything rather than keep an answer that may be stale. */
		gn_log(GN_LOG_WARN, "event=checkin_cache_bad_notify len=%zu", strlen(device_id));
		clear_all();
		return;
	}
	forget(id);
}

void checkin_cache_on_notify(const char *payload)
{
	/* One device id, or several separated by spaces (a statement that changed many devices). */
	char id[37];
	for (const char *p = payload; *p;) {
		size_t n = strcspn(p, " ");
		if (n > 0 && n < sizeof(id)) {
			memcpy(id, p, n);
			id[n] = '\0';
			checkin_cache_forget(id);
		} else if (n > 0) {
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
	for (int i = 0; i < STRIPES; i++) {
		pthread_mutex_init(&stripes[i].lock, NULL);
		gn_pool_init(&stripes[i].pool, sizeof(struct entry));
	}
}

void checkin_cache_stats(size_t *out_entries, size_t *out_bytes)
{
	*out_entries = *out_bytes = 0;
	for (int i = 0; i < STRIPES; i++) {
		pthread_mutex_lock(&stripes[i].lock);
		*out_entries += stripes[i].pool.in_use;
		*out_bytes += gn_pool_bytes(&stripes[i].pool);
		pthread_mutex_unlock(&stripes[i].lock);
	}
}

void checkin_cache_cleanup(void)
{
	atomic_store(&running, false);
	clear_all();
}
