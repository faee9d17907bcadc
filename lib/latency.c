/* Latency histograms on fixed buckets: see latency.h. */
#include <math.h>

#include "latency.h"

const uint64_t gn_latency_bounds_us[GN_LATENCY_NBOUNDS] = {
	100,   200,    500,    1000,   2000,    5000,    10000,   20000,
	50000, 100000, 200000, 500000, 1000000, 2000000, 5000000, 10000000,
};

size_t gn_latency_bucket(uint64_t us)
{
	size_t lo = 0, hi = GN_LATENCY_NBOUNDS;
	/* the first bound >= us; GN_LATENCY_NBOUNDS when none is */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (gn_latency_bounds_us[mid] < us)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

uint64_t gn_latency_quantile_us(const uint64_t *counts, size_t n, double q)
{
	if (!counts || n != GN_LATENCY_NBUCKETS || !(q > 0.0 && q <= 1.0))
		return 0;
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++) {
		if (counts[i] > UINT64_MAX - total)
			return 0;
		total += counts[i];
	}
	if (total == 0)
		return 0;
	double rank = ceil(q * (double)total);
	uint64_t want = rank < 1.0 ? 1 : (rank >= (double)total ? total : (uint64_t)rank);
	uint64_t seen = 0;
	for (size_t i = 0; i < GN_LATENCY_NBOUNDS; i++) {
		seen += counts[i];
		if (seen >= want)
			return gn_latency_bounds_us[i];
	}
	return GN_LATENCY_OVERFLOW_US;
}
