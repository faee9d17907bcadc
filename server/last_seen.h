/* Last-seen times (and the report sequence numbers that came with unchanged reports) kept in
 * memory and written in batches, one statement per batch: a check-in answered from memory writes
 * nothing itself. The background thread (background.c) flushes once a second and on a clean stop.
 * Domain layer. */
#ifndef GD_LAST_SEEN_H
#define GD_LAST_SEEN_H

#include "db.h"

/* Sets up the (empty) buffer; once, before the first touch. */
void last_seen_init(void);
/* Notes that device_id (a UUID) checked in now with report sequence number seq (0 for none).
 * Only ever raises either. */
void last_seen_touch(const char *device_id, int64_t seq);
/* Writes what was noted (at most max_rows per statement, every row in all); *out_rows says how
 * many. On failure what was taken is kept for the next flush. */
int last_seen_flush(size_t *out_rows, db_conn *c, size_t max_rows, gn_err *err) GN_WUR;
/* How many devices wait to be written. */
size_t last_seen_pending(void);
/* How many devices are noted (written or not), and the bytes their records take (for /metrics). */
void last_seen_stats(size_t *out_devices, size_t *out_bytes);
/* Drops what was noted (at exit, after the last flush). */
void last_seen_cleanup(void);

#endif
