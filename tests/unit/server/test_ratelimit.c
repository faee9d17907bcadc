/* Unit tests for server/ratelimit.c: the token buckets behind the 429s. A table of (time, key,
 * limit) takes and the answer each must get. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common.h"
#include "ratelimit.h"

#define S 1000000000ull /* one second in ns */

struct take {
	uint64_t at; /* ns since the start */
	const char *key;
	int64_t per_minute;
	int64_t wait; /* 0: allowed; else the Retry-After seconds */
};

static void run(const struct take *t, size_t n)
{
	ratelimit_reset();
	for (size_t i = 0; i < n; i++) {
		int64_t got = ratelimit_take(t[i].key, t[i].per_minute, 1000 * S + t[i].at);
		if (got != t[i].wait)
			fail_msg("take %zu (key %s at %.1f s): waited %lld, expected %lld", i, t[i].key,
				 (double)t[i].at / S, (long long)got, (long long)t[i].wait);
	}
}

static void test_burst_then_rate(void **state)
{
	(void)state;
	static const struct take t[] = {
		/* 3 a minute: a burst of 3, then one every 20 s. */
		{0, "a", 3, 0},
		{0, "a", 3, 0},
		{0, "a", 3, 0},
		{0, "a", 3, 20},
		{5 * S, "a", 3, 15},
		{19 * S, "a", 3, 1},
		{20 * S, "a", 3, 0},
		{20 * S, "a", 3, 20},
		/* Keys do not share. */
		{20 * S, "b", 3, 0},
		/* An idle key refills to the burst, not beyond. */
		{600 * S, "a", 3, 0},
		{600 * S, "a", 3, 0},
		{600 * S, "a", 3, 0},
		{600 * S, "a", 3, 20},
	};
	run(t, GN_ARRAY_LEN(t));
}

static void test_no_limit_and_reloads(void **state)
{
	(void)state;
	static const struct take t[] = {
		{0, "x", 0, 0},
		{0, "x", 0, 0},
		{0, "x", -1, 0},
		/* 60 a minute: one a second. */
		{0, "y", 1, 0},
		{0, "y", 1, 60},
		/* A reload that raises the limit refills at the new rate from then on... */
		{1 * S, "y", 60, 1},
		{2 * S, "y", 60, 0},
		{2 * S, "y", 60, 1},
		/* ...and one that lowers it caps what is left. */
		{100 * S, "y", 2, 0},
		{100 * S, "y", 2, 0},
		{100 * S, "y", 2, 30},
	};
	run(t, GN_ARRAY_LEN(t));
}

/* A peek answers what a take would, and takes nothing. */
static void test_peek_takes_nothing(void **state)
{
	(void)state;
	uint64_t t0 = 1000 * S;
	ratelimit_reset();
	assert_int_equal(ratelimit_peek("p", 2, t0), 0); /* never counted */
	assert_int_equal(ratelimit_take("p", 2, t0), 0);
	assert_int_equal(ratelimit_peek("p", 2, t0), 0);
	assert_int_equal(ratelimit_peek("p", 2, t0), 0); /* still one left */
	assert_int_equal(ratelimit_take("p", 2, t0), 0);
	assert_int_equal(ratelimit_peek("p", 2, t0), 30);
	assert_int_equal(ratelimit_peek("p", 2, t0 + 29 * S), 1);
	assert_int_equal(ratelimit_peek("p", 2, t0 + 30 * S), 0); /* refilled one */
	assert_int_equal(ratelimit_peek("p", 0, t0), 0);          /* no limit */
	assert_int_equal(ratelimit_take("p", 2, t0 + 30 * S), 0);
	assert_int_equal(ratelimit_take("p", 2, t0 + 30 * S), 30);
}

/* Pruning forgets the keys whose buckets are full again, and only those: a key still short of
 * tokens keeps counting. */
static void test_prune_forgets_only_full_buckets(void **state)
{
	(void)state;
	ratelimit_reset();
	uint64_t t0 = 1000 * S;
	assert_int_equal(ratelimit_take("quiet", 60, t0), 0);        /* 59 of 60 left: one more second to full */
	assert_int_equal(ratelimit_take("busy", 1, t0), 0);          /* empty: a minute to full */
	assert_int_equal(ratelimit_prune(t0), 0);                    /* neither full yet */
	assert_int_equal(ratelimit_prune(t0 + 2 * S), 1);            /* "quiet" is full again */
	assert_int_equal(ratelimit_take("busy", 1, t0 + 2 * S), 58); /* still counted */
	assert_int_equal(ratelimit_prune(t0 + 2 * S), 0);
	assert_int_equal(ratelimit_prune(t0 + 61 * S), 1); /* "busy" full again */
	assert_int_equal(ratelimit_prune(t0 + 61 * S), 0); /* nothing left */
}

/* Request threads read the clock before they take the limiter's lock, so one may arrive with a
 * time older than the bucket's last update: that must not count as time passed (the unsigned
 * difference wrapped and refilled the bucket to full). */
static void test_a_time_from_the_past_refills_nothing(void **state)
{
	(void)state;
	uint64_t t0 = 1000 * S;
	ratelimit_reset();
	assert_int_equal(ratelimit_take("b", 2, t0), 0);
	assert_int_equal(ratelimit_take("b", 2, t0 + 10), 0);
	assert_int_equal(ratelimit_take("b", 2, t0 + 20), 30);
	assert_int_equal(ratelimit_take("b", 2, t0 + 15), 30); /* an older now: still empty */
	assert_int_equal(ratelimit_peek("b", 2, t0 + 5), 30);
	assert_int_equal(ratelimit_take("b", 2, t0 + 20 + 30 * S), 0); /* refilled from t0 + 20 */
	assert_int_equal(ratelimit_take("b", 2, t0 + 20 + 30 * S), 30);
}

struct racer {
	int64_t allowed;
};

static void *race(void *arg)
{
	struct racer *r = arg;
	for (int i = 0; i < 20000; i++)
		if (ratelimit_take("race", 10, gn_mono_ns()) == 0)
			r->allowed++;
	return NULL;
}

/* Four threads hammering one key with the real clock get what one would: the burst, plus at most
 * what refills while they run (10 a minute: nothing within the second this takes). */
static void test_threads_with_the_real_clock(void **state)
{
	(void)state;
	pthread_t t[4];
	struct racer r[4] = {{0}};
	ratelimit_reset();
	uint64_t start = gn_mono_ns();
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
	int64_t allowed = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		allowed += r[i].allowed;
	}
	double minutes = (double)(gn_mono_ns() - start) / 60e9;
	if (allowed > 10 + (int64_t)(minutes * 10) + 1)
		fail_msg("%lld allowed in %.1f s; the burst is 10", (long long)allowed, minutes * 60);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_burst_then_rate),
		cmocka_unit_test(test_no_limit_and_reloads),
		cmocka_unit_test(test_peek_takes_nothing),
		cmocka_unit_test(test_prune_forgets_only_full_buckets),
		cmocka_unit_test(test_a_time_from_the_past_refills_nothing),
		cmocka_unit_test(test_threads_with_the_real_clock),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	ratelimit_reset();
	return rc;
}
