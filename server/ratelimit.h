/* Token buckets in memory, one per key (a client address or an identity, within a class of
 * requests): what the per-address and per-identity rate limits (429 + Retry-After) count. Each
 * replica counts its own requests, so behind a load balancer the fleet-wide allowance is the
 * per-replica limit times the replicas. No database, no HTTP. */
#ifndef GD_RATELIMIT_H
#define GD_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

/* Most keys kept at once; past it, keys not already counted are let through (and the overflow is
 * logged) rather than grow memory without bound. */
#define RATELIMIT_MAX_KEYS 200000

/* Takes one request from key's bucket, which holds per_minute requests and refills per_minute a
 * minute (a burst of per_minute, then a steady rate). Returns 0 when the request may go ahead,
 * else the whole seconds (at least 1) until one may. per_minute <= 0 means no limit. now_ns is a
 * monotonic time. Thread-safe. */
int64_t ratelimit_take(const char *key, int64_t per_minute, uint64_t now_ns);
/* Returns the whole seconds (at least 1) until key's bucket holds a request again, or 0 when it
 * holds one (or was never counted): ratelimit_take's answer, without taking. Thread-safe. */
int64_t ratelimit_peek(const char *key, int64_t per_minute, uint64_t now_ns);
/* Forgets every key whose bucket is full again at now_ns (counts nothing any more), and returns how
 * many it forgot. A take forgets such keys only in its own hash slot, so the keys of devices that
 * authenticated once and went quiet would otherwise stay until the table fills; the background
 * thread calls this once a minute. Thread-safe. */
size_t ratelimit_prune(uint64_t now_ns);
/* Forgets every key (at exit, and between unit tests). */
void ratelimit_reset(void);

#endif
