/* What each device was last told at check-in, kept in memory so that "nothing changed" (304)
 * needs no database read. Every replica drops a device's entry when PostgreSQL notifies a change
 * to its director state (migrations/0004_director_notify.sql), whichever replica made it. */
#ifndef GD_CHECKIN_CACHE_H
#define GD_CHECKIN_CACHE_H

#include "common.h"

/* Sets up the (empty, off) cache; it serves nothing until checkin_cache_on_listening(true). */
void checkin_cache_init(void);
/* Frees the entries. */
void checkin_cache_cleanup(void);
/* The callbacks of the "gn_director" channel (notify.h): the director state of the devices in the
 * payload (one id, or ids separated by spaces) changed; the listener started or stopped listening (while it is stopped
 * the cache is off and empty, so a missed notification cannot leave a stale 304). */
void checkin_cache_on_notify(const char *payload);
void checkin_cache_on_listening(bool up);
/* True when the device was answered director version `version` with check-in interval `poll`,
 * that answer is still fresh at now and its interval still the one to give (intervals[0] for a
 * device outside a rollout's running stage, intervals[1] inside: the running configuration's),
 * and seq (its report's sequence number; 0 for none) is not below the highest seen here;
 * *out_write tells whether its report (body_hash) needs a write, *out_changed whether the report
 * differs from the one seen last (the two agree; last-seen times are last_seen.c's). */
bool checkin_cache_fresh(const char *device_id, int version, int64_t poll, const int64_t intervals[2],
			 uint64_t body_hash, int64_t seq, int64_t now, bool *out_write, bool *out_changed);
/* Returns the invalidation epoch; read it before the database read whose answer is cached. */
uint64_t checkin_cache_epoch(void);
/* Records an answer: version, whether the device was in a rollout's running stage (its interval),
 * fresh until (re-sign time), the report (and its sequence number, 0 for none) written at now.
 * Ignored if anything was invalidated since `epoch` (the answer may predate the change). */
void checkin_cache_put(const char *device_id, int version, bool in_stage, int64_t fresh_until, uint64_t body_hash,
		       int64_t seq, int64_t now, uint64_t epoch);
/* Forgets a device (its director state changed); everything, when device_id is no UUID. */
void checkin_cache_forget(const char *device_id);
/* How many devices the cache holds answers for, and the bytes its entries take (for /metrics). */
void checkin_cache_stats(size_t *out_entries, size_t *out_bytes);

#endif
