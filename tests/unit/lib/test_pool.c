/* Unit tests for lib/pool.c: records are distinct, zeroed and aligned, come back after being given
 * back, and the pool counts what it holds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "pool.h"

#define N 1000 /* records of 40 bytes: more than fit in one 4 KiB block */

static void test_records(void **state)
{
	(void)state;
	static unsigned char *recs[N];
	gn_pool p;
	gn_pool_init(&p, 37); /* rounded up to 40 */
	assert_int_equal(gn_pool_bytes(&p), 0);
	for (int i = 0; i < N; i++) {
		recs[i] = gn_pool_get(&p);
		assert_int_equal((uintptr_t)recs[i] % 8, 0);
		for (int j = 0; j < 40; j++)
			assert_int_equal(recs[i][j], 0);
		memset(recs[i], 0xa5, 40); /* would overwrite a neighbour if records overlapped */
		recs[i][0] = (unsigned char)i;
	}
	for (int i = 0; i < N; i++)
		assert_int_equal(recs[i][0], (unsigned char)i);
	assert_int_equal(p.in_use, N);
	/* 40 000 bytes of records in blocks of 4 080 (a link and 101 records each): 10 blocks. */
	assert_int_equal(gn_pool_bytes(&p), 10 * 4080);

	/* Given back, a record serves the next get, zeroed again; no new block is taken. */
	gn_pool_put(&p, recs[7]);
	gn_pool_put(&p, NULL);
	assert_int_equal(p.in_use, N - 1);
	unsigned char *again = gn_pool_get(&p);
	assert_ptr_equal(again, recs[7]);
	for (int j = 0; j < 40; j++)
		assert_int_equal(again[j], 0);
	assert_int_equal(gn_pool_bytes(&p), 10 * 4080);

	gn_pool_cleanup(&p);
	assert_int_equal(p.in_use, 0);
	assert_int_equal(gn_pool_bytes(&p), 0);
	/* Usable again after cleanup. */
	unsigned char *r = gn_pool_get(&p);
	r[39] = 1;
	assert_int_equal(p.in_use, 1);
	gn_pool_cleanup(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_records),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
