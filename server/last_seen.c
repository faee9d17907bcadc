/* The buffered last-seen times. */
#include "last_seen.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pool.h"

#define STRIPES 64
#define BUCKETS 1024 /* per stripe */

/* One per device that checked in here (kept, so that a check-in allocates only the first time):
 * 48 bytes, from its stripe's pool. */
struct seen {
	struct seen *next;
	unsigned char id[16]; /* the device id's UUID, binary */
	int64_t at_ms, seq;
	bool dirty;
};

static struct stripe {
	pthread_mutex_t lock;
	gn_pool pool; /* the records */
	struct seen *buckets[BUCKETS];
} stripes[STRIPES];

/* One statement for the whole batch; it only ever moves either value forward (another replica
 * may have written a later one). */
static const db_stmt st_flush = {
	"last_seen_flush",
	"UPDATE devices d SET last_seen_at = greatest(d.last_seen_at, to_timestamp(v.at_ms / 1000.0)),"
	" report_seq = CASE WHEN v.seq > 0 THEN greatest(d.report_seq, v.seq) ELSE d.report_seq END"
	" FROM unnest($1::uuid[], $2::bigint[], $3::bigint[]) AS v(id, at_ms, seq) WHERE d.id = v.id",
	3};

static struct stripe *stripe_of(const unsigned char id[16], size_t *bucket)
{
	uint64_t h = gn_fnv1a(0, id, 16);
	*bucket = (size_t)(h >> 8) % BUCKETS;
	return &stripes[h % STRIPES];
}

void last_seen_init(void)
{
	for (size_t i = 0; i < STRIPES; i++) {
		pthread_mutex_init(&stripes[i].lock, NULL);
		gn_pool_init(&stripes[i].pool, sizeof(struct seen));
	}
}

static void touch_at(const unsigned char id[16], int64_t now_ms, int64_t seq)
{
	size_t b;
	struct stripe *s = stripe_of(id, &b);
	pthread_mutex_lock(&s->lock);
	struct seen *e = s->buckets[b];
	while (e && memcmp(e->id, id, 16) != 0)
		e = e->next;
	if (!e) {
		e = gn_pool_get(&s->pool);
		memcpy(e->id, id, 16);
		e->next = s->buckets[b];
		s->buckets[b] = e;
	}
	if (!e->dirty || now_ms > e->at_ms)
		e->at_ms = now_ms;
	if (!e->dirty || seq > e->seq)
		e->seq = seq;
	e->dirty = true;
	pthread_mutex_unlock(&s->lock);
}

void last_seen_touch(const char *device_id, int64_t seq)
{
	struct timespec ts;
	unsigned char id[16];
	if (gn_uuid_parse(id, device_id))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	touch_at(id, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, seq);
}

struct batch {
	gn_buf ids, ats, seqs;
	struct seen *rows; /* copies, to note again when the write fails */
	size_t n, cap;
};

static void batch_reset(struct batch *bt)
{
	bt->ids.len = bt->ats.len = bt->seqs.len = 0;
	gn_buf_puts(&bt->ids, "{");
	gn_buf_puts(&bt->ats, "{");
	gn_buf_puts(&bt->seqs, "{");
	bt->n = 0;
}

static int batch_write(struct batch *bt, db_conn *c, size_t *rows, gn_err *err)
{
	if (!bt->n)
		return 0;
	gn_buf_puts(&bt->ids, "}");
	gn_buf_puts(&bt->ats, "}");
	gn_buf_puts(&bt->seqs, "}");
	const char *p[] = {bt->ids.data, bt->ats.data, bt->seqs.data};
	int error = db_exec(NULL, c, &st_flush, p, err);
	if (error)
		for (size_t i = 0; i < bt->n; i++)
			touch_at(bt->rows[i].id, bt->rows[i].at_ms, bt->rows[i].seq);
	else
		*rows += bt->n;
	batch_reset(bt);
	return error;
}

int last_seen_flush(size_t *out_rows, db_conn *c, size_t max_rows, gn_err *err)
{
	struct batch bt = {0};
	int error = 0;
	*out_rows = 0;
	gn_buf_init(&bt.ids);
	gn_buf_init(&bt.ats);
	gn_buf_init(&bt.seqs);
	batch_reset(&bt);
	bt.cap = max_rows ? max_rows : 1;
	bt.rows = gn_calloc(bt.cap, sizeof(*bt.rows));
	for (size_t i = 0; i < STRIPES && !error; i++) {
		struct stripe *s = &stripes[i];
		pthread_mutex_lock(&s->lock);
		for (size_t b = 0; b < BUCKETS; b++) {
			for (struct seen *e = s->buckets[b]; e; e = e->next) {
				if (!e->dirty)
					continue;
				if (bt.n == bt.cap) {
					/* Written outside the lock: check-ins of this stripe go on meanwhile. */
					pthread_mutex_unlock(&s->lock);
					error = batch_write(&bt, c, out_rows, err);
					pthread_mutex_lock(&s->lock);
					if (error)
						break;
					/* The list may have changed while unlocked: this stripe again, from the top
					 * (rows taken are no longer dirty). */
					b = (size_t)-1;
					break;
				}
				char id[37];
				gn_uuid_format(id, e->id);
				gn_buf_printf(&bt.ids, "%s%s", bt.n ? "," : "", id);
				gn_buf_printf(&bt.ats, "%s%lld", bt.n ? "," : "", (long long)e->at_ms);
				gn_buf_printf(&bt.seqs, "%s%lld", bt.n ? "," : "", (long long)e->seq);
				bt.rows[bt.n++] = *e;
				e->dirty = false;
			}
			if (error)
				break;
		}
		pthread_mutex_unlock(&s->lock);
	}
	if (!error)
		error = batch_write(&bt, c, out_rows, err);
	free(bt.rows);
	gn_buf_cleanup(&bt.ids);
	gn_buf_cleanup(&bt.ats);
	gn_buf_cleanup(&bt.seqs);
	return error;
}

size_t last_seen_pending(void)
{
	size_t n = 0;
	for (size_t i = 0; i < STRIPES; i++) {
		pthread_mutex_lock(&stripes[i].lock);
		for (size_t b = 0; b < BUCKETS; b++)
			for (struct seen *e = stripes[i].buckets[b]; e; e = e->next)
				n += e->dirty;
		pthread_mutex_unlock(&stripes[i].lock);
	}
	return n;
}

void last_seen_stats(size_t *out_devices, size_t *out_bytes)
{
	*out_devices = *out_bytes = 0;
	for (size_t i = 0; i < STRIPES; i++) {
		pthread_mutex_lock(&stripes[i].lock);
		*out_devices += stripes[i].pool.in_use;
		*out_bytes += gn_pool_bytes(&stripes[i].pool);
		pthread_mutex_unlock(&stripes[i].lock);
	}
}

void last_seen_cleanup(void)
{
	for (size_t i = 0; i < STRIPES; i++) {
		pthread_mutex_lock(&stripes[i].lock);
		memset(stripes[i].buckets, 0, sizeof(stripes[i].buckets));
		gn_pool_cleanup(&stripes[i].pool);
		pthread_mutex_unlock(&stripes[i].lock);
	}
}
