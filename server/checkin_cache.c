/* The in-memory check-in answers and the LISTEN thread that keeps them honest. */
#include "checkin_cache.h"

#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define STRIPES 64
#define BUCKETS 4096 /* per stripe */
/* A report unchanged this long is written again anyway: it carries the last-seen time. */
#define LAST_SEEN_WRITE_S 30

struct entry {
	struct entry *next;
	char id[40];
	int version;
	int64_t fresh_until;
	uint64_t body_hash;
	int64_t written_at;
};

static struct stripe {
	pthread_mutex_t lock;
	struct entry *buckets[BUCKETS];
} stripes[STRIPES];

static pthread_t listener;
static _Atomic bool stopping, running;
/* Bumped by every invalidation: an answer read before a bump is not cached after it. */
static _Atomic uint64_t epoch_;

uint64_t checkin_cache_epoch(void)
{
	return atomic_load(&epoch_);
}
static char *listen_conninfo;

uint64_t checkin_cache_hash(uint64_t seed, const void *p, size_t len)
{
	const unsigned char *b = p;
	uint64_t h = seed ? seed : 1469598103934665603ull;
	for (size_t i = 0; i < len; i++) {
		h ^= b[i];
		h *= 1099511628211ull;
	}
	return h;
}

static struct stripe *stripe_of(const char *id, size_t *bucket)
{
	uint64_t h = checkin_cache_hash(0, id, strlen(id));
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

bool checkin_cache_fresh(const char *device_id, int version, uint64_t body_hash, int64_t now, bool *out_write)
{
	size_t b;
	bool fresh = false;
	struct stripe *s = stripe_of(device_id, &b);
	pthread_mutex_lock(&s->lock);
	struct entry *e = *find(s, b, device_id);
	if (atomic_load(&running) && e && e->version == version && now < e->fresh_until) {
		fresh = true;
		*out_write = e->body_hash != body_hash || now - e->written_at >= LAST_SEEN_WRITE_S;
		if (*out_write) {
			e->body_hash = body_hash;
			e->written_at = now;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return fresh;
}

void checkin_cache_put(const char *device_id, int version, int64_t fresh_until, uint64_t body_hash, int64_t now,
		       uint64_t epoch)
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
	e->fresh_until = fresh_until;
	e->body_hash = body_hash;
	e->written_at = now;
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

/* LISTENs for director changes. While it is not listening (connection lost), the cache is off:
 * answers come from the database, so a missed notification cannot leave a stale 304. */
static void *listen_main(void *unused)
{
	while (!atomic_load(&stopping)) {
		PGconn *c = PQconnectdb(listen_conninfo);
		PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, "LISTEN gn_director") : NULL;
		if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
			PQclear(r);
			PQfinish(c);
			gn_log(GN_LOG_WARN, "event=checkin_cache_listen_failed note=\"check-ins read the database until it works\"");
			for (int i = 0; i < 20 && !atomic_load(&stopping); i++)
				usleep(100000);
			continue;
		}
		PQclear(r);
		atomic_store(&running, true);
		while (!atomic_load(&stopping)) {
			struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
			if (poll(&pfd, 1, 200) < 0)
				continue;
			if (!PQconsumeInput(c))
				break;
			PGnotify *n;
			while ((n = PQnotifies(c))) {
				checkin_cache_forget(n->extra);
				PQfreemem(n);
			}
		}
		/* Off first, then empty: nothing cached while no one listens. */
		atomic_store(&running, false);
		clear_all();
		PQfinish(c);
		if (!atomic_load(&stopping))
			gn_log(GN_LOG_WARN, "event=checkin_cache_listen_lost");
	}
	return NULL;
}

int checkin_cache_start(const char *conninfo, gn_err *err)
{
	for (int i = 0; i < STRIPES; i++)
		pthread_mutex_init(&stripes[i].lock, NULL);
	listen_conninfo = gn_strdup(conninfo);
	atomic_store(&stopping, false);
	if (pthread_create(&listener, NULL, listen_main, NULL) != 0) {
		free(listen_conninfo);
		listen_conninfo = NULL;
		return gn_err_set(err, GN_ERROR, "cannot start the check-in cache listener");
	}
	return 0;
}

void checkin_cache_stop(void)
{
	if (!listen_conninfo)
		return;
	atomic_store(&stopping, true);
	pthread_join(listener, NULL);
	clear_all();
	free(listen_conninfo);
	listen_conninfo = NULL;
}
