/* Unit tests for server/ratelimit.c: the token buckets behind the 429s. A table of (time, key,
 * limit) takes and the answer each must get. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

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

/* An attempt takes a token like a take; one that did not fail gives it back, which never fills a
 * bucket past its limit, and creates nothing for a key never counted (or forgotten). */
static void test_attempts_give_back_unless_failed(void **state)
{
	(void)state;
	uint64_t t0 = 1000 * S;
	ratelimit_reset();
	ratelimit_attempt_end("g", 2, t0, false);
	assert_int_equal(ratelimit_prune(t0, NULL), 0); /* nothing was created to forget */
	assert_int_equal(ratelimit_attempt("g", 2, t0), 0);
	ratelimit_attempt_end("g", 2, t0, true); /* failed: kept */
	assert_int_equal(ratelimit_attempt("g", 2, t0), 0);
	assert_int_equal(ratelimit_attempt("g", 2, t0), 30); /* refused: nothing to end */
	ratelimit_attempt_end("g", 2, t0, false);            /* the second did not fail: given back */
	assert_int_equal(ratelimit_attempt("g", 2, t0), 0);
	assert_int_equal(ratelimit_attempt("g", 2, t0), 30);
	ratelimit_attempt_end("g", 2, t0 + 45 * S, false); /* 1.5 refilled, + 1, capped at 2 */
	ratelimit_attempt_end("g", 2, t0 + 45 * S, false);
	assert_int_equal(ratelimit_take("g", 2, t0 + 45 * S), 0);
	assert_int_equal(ratelimit_take("g", 2, t0 + 45 * S), 0);
	assert_int_equal(ratelimit_take("g", 2, t0 + 45 * S), 30);
	ratelimit_attempt_end("g", 0, t0 + 45 * S, false); /* no limit: nothing to give back */
	assert_int_equal(ratelimit_take("g", 2, t0 + 45 * S), 30);
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
	assert_int_equal(ratelimit_prune(t0, NULL), 0);              /* neither full yet */
	assert_int_equal(ratelimit_prune(t0 + 2 * S, NULL), 1);      /* "quiet" is full again */
	assert_int_equal(ratelimit_take("busy", 1, t0 + 2 * S), 58); /* still counted */
	assert_int_equal(ratelimit_prune(t0 + 2 * S, NULL), 0);
	assert_int_equal(ratelimit_prune(t0 + 61 * S, NULL), 1); /* "busy" full again */
	assert_int_equal(ratelimit_prune(t0 + 61 * S, NULL), 0); /* nothing left */
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
	ratelimit_attempt_end("b", 2, t0 + 5, false);          /* one back, as of t0 + 20 */
	assert_int_equal(ratelimit_take("b", 2, t0 + 5), 0);
	assert_int_equal(ratelimit_take("b", 2, t0 + 5), 30);
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

/* Many keys across the table's shards: a prune forgets the full ones and keeps every one still
 * short of a token, whichever shard it is in. */
static void test_prune_across_shards(void **state)
{
	(void)state;
	uint64_t t0 = 1000 * S;
	char key[32];
	ratelimit_reset();
	for (int i = 0; i < 2000; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		/* Even keys: 60 a minute, one taken (full again a second later). Odd: 1 a minute, empty. */
		assert_int_equal(ratelimit_take(key, i % 2 ? 1 : 60, t0), 0);
	}
	uint64_t hold = 0, walk = gn_mono_ns();
	assert_int_equal(ratelimit_prune(t0 + 2 * S, &hold), 1000);
	walk = gn_mono_ns() - walk;
	assert_true(hold > 0 && hold < walk); /* one shard's walk, shorter than the whole */
	for (int i = 1; i < 2000; i += 2) {
		snprintf(key, sizeof(key), "k%d", i);
		assert_int_equal(ratelimit_take(key, 1, t0 + 2 * S), 58);
	}
	assert_int_equal(ratelimit_prune(t0 + 2 * S, NULL), 0);
}

/* Threads that each let an attempt in, check its credentials (here: wait 300 us, then fail) and
 * count the failure the way admit() in server/http.c does, all at the same instant (no refill). */
#define ATTEMPT_THREADS 8
#define ALLOWANCE 10
static _Atomic int granted;

static void *attempt_and_fail(void *arg)
{
	(void)arg;
	for (int i = 0; i < 40; i++) {
		if (ratelimit_attempt("guesser", ALLOWANCE, 1000 * S) != 0)
			continue;
		atomic_fetch_add(&granted, 1);
		usleep(300); /* the credentials check: a database round trip */
		ratelimit_attempt_end("guesser", ALLOWANCE, 1000 * S, true);
	}
	return NULL;
}

/* Parallel requests from one address get no more guesses than the allowance: letting an attempt in
 * and counting it are one step. (Peeking, then counting the failure after the check, let every
 * thread through on the last tokens: 8 threads got 16 or 17 of an allowance of 10.) */
static void test_parallel_attempts_get_the_allowance_only(void **state)
{
	(void)state;
	pthread_t t[ATTEMPT_THREADS];
	ratelimit_reset();
	atomic_store(&granted, 0);
	for (int i = 0; i < ATTEMPT_THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, attempt_and_fail, NULL), 0);
	for (int i = 0; i < ATTEMPT_THREADS; i++)
		pthread_join(t[i], NULL);
	if (atomic_load(&granted) != ALLOWANCE)
		fail_msg("%d attempts let in; the allowance is %d", atomic_load(&granted), ALLOWANCE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_burst_then_rate),
		cmocka_unit_test(test_no_limit_and_reloads),
		cmocka_unit_test(test_attempts_give_back_unless_failed),
		cmocka_unit_test(test_prune_forgets_only_full_buckets),
		cmocka_unit_test(test_a_time_from_the_past_refills_nothing),
		cmocka_unit_test(test_threads_with_the_real_clock),
		cmocka_unit_test(test_prune_across_shards),
		cmocka_unit_test(test_parallel_attempts_get_the_allowance_only),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	ratelimit_reset();
	return rc;
}
