/* Latency histograms on fixed buckets, shared by the agent (which counts) and gangliond (which
 * judges rollout gates), so both sides agree on what a bucket means.
 *
 * Bucket i (0 <= i < GN_LATENCY_NBOUNDS) counts latencies at most gn_latency_bounds_us[i] and
 * above the previous bound; the last bucket (index GN_LATENCY_NBOUNDS) counts everything above
 * the last bound. The bounds follow a 1-2-5 progression from 100 us to 10 s. On the wire the
 * histogram is a JSON array of GN_LATENCY_NBUCKETS counts, "latency_us_buckets". */
#ifndef GN_LATENCY_H
#define GN_LATENCY_H

#include <stddef.h>
#include <stdint.h>

#define GN_LATENCY_NBOUNDS 16
#define GN_LATENCY_NBUCKETS (GN_LATENCY_NBOUNDS + 1)
/* What a quantile that falls in the overflow bucket is reported as: above every bound. */
#define GN_LATENCY_OVERFLOW_US (UINT64_C(10000000) + 1)

extern const uint64_t gn_latency_bounds_us[GN_LATENCY_NBOUNDS];

/* The bucket a latency of us microseconds falls in. */
size_t gn_latency_bucket(uint64_t us);

/* The q-quantile (0 < q <= 1) of a histogram of n counts (n == GN_LATENCY_NBUCKETS): the upper
 * bound of the bucket where the cumulative count first reaches ceil(q * total) -- an upper
 * estimate, never an underestimate. GN_LATENCY_OVERFLOW_US when that is the overflow bucket, 0
 * for an empty histogram or a bad n or q. */
uint64_t gn_latency_quantile_us(const uint64_t *counts, size_t n, double q);

#endif
