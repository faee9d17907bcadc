/* Unit tests for lib/latency.c: bucket edges are inclusive upper bounds, and a quantile is the
 * upper bound of the bucket holding the ceil(q * n)-th sample. Expected values worked by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "latency.h"

static void test_buckets(void **state)
{
	(void)state;
	assert_int_equal(gn_latency_bucket(0), 0);
	assert_int_equal(gn_latency_bucket(100), 0); /* a bound belongs to its own bucket */
	assert_int_equal(gn_latency_bucket(101), 1);
	assert_int_equal(gn_latency_bucket(1000), 3);
	assert_int_equal(gn_latency_bucket(1001), 4);
	assert_int_equal(gn_latency_bucket(10000000), 15);
	assert_int_equal(gn_latency_bucket(10000001), 16); /* overflow */
	assert_int_equal(gn_latency_bucket(UINT64_MAX), 16);
}

static void test_quantiles(void **state)
{
	(void)state;
	uint64_t c[GN_LATENCY_NBUCKETS];
	memset(c, 0, sizeof c);
	assert_int_equal(gn_latency_quantile_us(c, GN_LATENCY_NBUCKETS, 0.95), 0); /* empty */
	/* 90 samples at <= 1 ms, 9 at <= 20 ms, 1 at <= 500 ms: 100 samples */
	c[3] = 90;
	c[7] = 9;
	c[11] = 1;
	assert_int_equal(gn_latency_quantile_us(c, GN_LATENCY_NBUCKETS, 0.5), 1000);
	assert_int_equal(gn_latency_quantile_us(c, GN_LATENCY_NBUCKETS, 0.90), 1000);  /* 90th sample */
	assert_int_equal(gn_latency_quantile_us(c, GN_LATENCY_NBUCKETS, 0.91), 20000); /* 91st */
	assert_int_equal(gn_latency_quantile_us(c, GN_LATENCY_NBUCKETS, 0.99), 20000); /* 99th */
	assert_int_equal(gn_latency_quantile_us(c, GN_LATENCY_NBUCKETS, 1.0), 500000); /* the slowest */
	c[16] = 100; /* now half the samples are above 10 s */
	assert_int_equal(gn_latency_quantile_us(c, GN_LATENCY_NBUCKETS, 0.95), GN_LATENCY_OVERFLOW_US);
	/* bad arguments */
	assert_int_equal(gn_latency_quantile_us(c, GN_LATENCY_NBUCKETS - 1, 0.5), 0);
	assert_int_equal(gn_latency_quantile_us(c, GN_LATENCY_NBUCKETS, 0.0), 0);
	assert_int_equal(gn_latency_quantile_us(c, GN_LATENCY_NBUCKETS, 1.5), 0);
	assert_int_equal(gn_latency_quantile_us(NULL, GN_LATENCY_NBUCKETS, 0.5), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buckets),
		cmocka_unit_test(test_quantiles),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
