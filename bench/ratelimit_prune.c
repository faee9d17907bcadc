/* How long the rate limiter's minute prune holds up requests (server/ratelimit.c). The table is
 * filled with RATELIMIT_MAX_KEYS keys that are all still limited, so a prune walks every one and
 * frees none (its worst case short of freeing), and then pruned N times. Prints the whole walk's
 * time (the reference: what one lock over the table held a request up for) and the longest time a
 * shard's lock was held during it (what a request waits for at most now), min and median over the
 * runs: the min is the figure least moved by other work on a shared machine.
 *
 *   bench/ratelimit_prune [RUNS]
 */
#include <stdio.h>
#include <stdlib.h>

#include "common.h"
#include "ratelimit.h"

#define NOW (1000ull * 1000000000ull) /* the limiter's clock stands still: nothing refills */

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int runs = argc > 1 ? atoi(argv[1]) : 20;
	if (runs < 1 || runs > 10000) {
		fprintf(stderr, "usage: %s [RUNS (1 to 10000)]\n", argv[0]);
		return 2;
	}
	char key[32];
	for (int i = 0; i < RATELIMIT_MAX_KEYS; i++) {
		snprintf(key, sizeof(key), "a|token|10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
		(void)ratelimit_take(key, 1, NOW); /* empty for a minute: every prune keeps it */
	}
	uint64_t *walk = gn_malloc((size_t)runs * sizeof(*walk)), *hold = gn_malloc((size_t)runs * sizeof(*hold));
	size_t freed = 0;
	for (int i = 0; i < runs; i++) {
		uint64_t t0 = gn_mono_ns();
		freed += ratelimit_prune(NOW, &hold[i]);
		walk[i] = gn_mono_ns() - t0;
	}
	qsort(walk, (size_t)runs, sizeof(*walk), cmp);
	qsort(hold, (size_t)runs, sizeof(*hold), cmp);
	printf("keys=%d runs=%d freed=%zu\n", RATELIMIT_MAX_KEYS, runs, freed);
	printf("whole walk (one lock's hold before):  min %.3f ms  median %.3f ms\n", (double)walk[0] / 1e6,
	       (double)walk[runs / 2] / 1e6);
	printf("longest shard lock held (now):        min %.3f ms  median %.3f ms\n", (double)hold[0] / 1e6,
	       (double)hold[runs / 2] / 1e6);
	ratelimit_reset();
	free(walk);
	free(hold);
	return 0;
}
