/* Token buckets in memory, one per key (a client address or an identity, within a class of
 * requests): what the per-address and per-identity rate limits (429 + Retry-After) count. Each
 * replica counts its own requests, so behind a load balancer the fleet-wide allowance is the
 * per-replica limit times the replicas. Callers make the keys canonical (one client, one device,
 * one token: one key). No database, no HTTP. */
#ifndef GD_RATELIMIT_H
#define GD_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* About the most keys kept at once (threads adding keys at the same moment may pass it by a few);
 * past it, keys not already counted are let through (and the overflow is logged) rather than grow
 * memory without bound. */
#define RATELIMIT_MAX_KEYS 200000

/* Takes one request from key's bucket, which holds per_minute requests and refills per_minute a
 * minute (a burst of per_minute, then a steady rate). Returns 0 when the request may go ahead,
 * else the whole seconds (at least 1) until one may. Deciding and taking are one step under the
 * bucket's lock, so threads taking at once get no more than one thread would. per_minute <= 0
 * means no limit. now_ns is a monotonic time. Thread-safe. */
int64_t ratelimit_take(const char *key, int64_t per_minute, uint64_t now_ns);

/* An allowance of failures (failed authentications), where whether an attempt fails is known only
 * after it has been let in. ratelimit_attempt lets it in (0) or not (the seconds until it may), as
 * ratelimit_take does, taking a token in the same locked step: parallel attempts cannot all pass on
 * the last token (letting in on a peek and counting the failure afterwards let each of N threads
 * through on it). ratelimit_attempt_end gives the token back unless the attempt failed; never
 * past per_minute, and a key forgotten meanwhile was full already. Thread-safe. */
int64_t ratelimit_attempt(const char *key, int64_t per_minute, uint64_t now_ns);
void ratelimit_attempt_end(const char *key, int64_t per_minute, uint64_t now_ns, bool failed);

/* Forgets every key whose bucket is full again at now_ns (counts nothing any more), and returns how
 * many it forgot. A take forgets such keys only in its own hash slot, so the keys of devices that
 * authenticated once and went quiet would otherwise stay until the table fills; the background
 * thread calls this once a minute. It holds one shard's lock at a time (1/64 of the table), so a
 * request waits for at most one shard's walk, not the table's; when longest_hold_ns is not NULL,
 * the longest of those holds is written there. Thread-safe. */
size_t ratelimit_prune(uint64_t now_ns, uint64_t *longest_hold_ns);
/* Forgets every key (at exit, and between unit tests). */
void ratelimit_reset(void);

#endif
