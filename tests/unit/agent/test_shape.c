/* Unit tests for agents/shape.c: an input's shape from a request's value count, or from the
 * shape it gives, against the model's declared shape. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent.h"

#define NO_SHAPE -1

struct shape_case {
	const char *what;
	int model_ndim;
	int64_t model[GANGLION_RT_MAX_DIMS];
	size_t count;
	int given_ndim; /* NO_SHAPE: the request gives none */
	int64_t given[GANGLION_RT_MAX_DIMS];
	int rc;
	int64_t want[GANGLION_RT_MAX_DIMS]; /* the solved shape, when rc is 0 */
	const char *msg;                    /* a part of the message, when rc is not 0 */
};

/* One case a line: a table reads better than clang-format's one field a line. */
/* clang-format off */
static const struct shape_case cases[] = {
	/* all dimensions fixed: the count must match */
	{"fixed", 2, {1, 4}, 4, NO_SHAPE, {0}, 0, {1, 4}, NULL},
	{"fixed, too few", 2, {1, 4}, 2, NO_SHAPE, {0}, GN_EINVAL, {0}, "takes 4 values (shape [1,4]), got 2"},
	{"fixed, too many", 2, {1, 4}, 8, NO_SHAPE, {0}, GN_EINVAL, {0}, "takes 4 values"},
	{"fixed 4-d", 4, {1, 3, 32, 32}, 3072, NO_SHAPE, {0}, 0, {1, 3, 32, 32}, NULL},
	/* one dynamic dimension (-1 or 0): solved from the count */
	{"dynamic batch", 2, {-1, 4}, 12, NO_SHAPE, {0}, 0, {3, 4}, NULL},
	{"dynamic batch of one", 2, {-1, 4}, 4, NO_SHAPE, {0}, 0, {1, 4}, NULL},
	{"dynamic written as 0", 2, {0, 4}, 8, NO_SHAPE, {0}, 0, {2, 4}, NULL},
	{"dynamic in the middle", 3, {2, -1, 3}, 30, NO_SHAPE, {0}, 0, {2, 5, 3}, NULL},
	{"dynamic, not a multiple", 2, {-1, 4}, 6, NO_SHAPE, {0}, GN_EINVAL, {0}, "takes a multiple of 4 values (shape [-1,4]), got 6"},
	{"dynamic, no values", 2, {-1, 4}, 0, NO_SHAPE, {0}, GN_EINVAL, {0}, "multiple of 4"},
	{"only dimension dynamic", 1, {-1}, 7, NO_SHAPE, {0}, 0, {7}, NULL},
	/* two or more dynamic dimensions: a count cannot say which is which */
	{"three dynamic", 4, {-1, 3, -1, -1}, 3 * 64, NO_SHAPE, {0}, GN_EINVAL, {0}, "has 3 dynamic dimensions (shape [-1,3,-1,-1])"},
	{"two dynamic, one written as 0", 2, {0, -1}, 4, NO_SHAPE, {0}, GN_EINVAL, {0}, "give its shape"},
	/* the request gives the shape */
	{"given, three dynamic", 4, {-1, 3, -1, -1}, 2 * 3 * 4 * 8, 4, {2, 3, 4, 8}, 0, {2, 3, 4, 8}, NULL},
	{"given, fixed", 2, {1, 4}, 4, 2, {1, 4}, 0, {1, 4}, NULL},
	{"given, one dynamic", 2, {-1, 4}, 8, 2, {2, 4}, 0, {2, 4}, NULL},
	{"given, fixed dimension differs", 4, {-1, 3, -1, -1}, 4 * 64, 4, {1, 4, 8, 8}, GN_EINVAL, {0}, "given shape [1,4,8,8], the model needs [-1,3,-1,-1]"},
	{"given, rank differs", 4, {-1, 3, -1, -1}, 3 * 64, 3, {3, 8, 8}, GN_EINVAL, {0}, "the model needs"},
	{"given, count differs", 4, {-1, 3, -1, -1}, 100, 4, {1, 3, 8, 8}, GN_EINVAL, {0}, "of shape [1,3,8,8] holds 192 values, got 100"},
	{"given, zero dimension", 2, {-1, 4}, 0, 2, {0, 4}, GN_EINVAL, {0}, "the model needs"},
	{"given, no dimensions", 2, {-1, 4}, 4, 0, {0}, GN_EINVAL, {0}, "1 to 8 dimensions"},
};
/* clang-format on */

static void test_shape_table(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct shape_case *c = &cases[i];
		ganglion_rt_tensor_info ti = {.name = "x", .dtype = GANGLION_RT_FLOAT32, .ndim = c->model_ndim};
		ganglion_rt_input in;
		gn_err err;
		memcpy(ti.shape, c->model, sizeof(ti.shape));
		memset(&in, 0x5a, sizeof(in));
		gn_err_clear(&err);
		int rc = shape_solve(&in, &ti, c->count, c->given_ndim == NO_SHAPE ? NULL : c->given, c->given_ndim,
				     &err);
		if (rc != c->rc || (rc && !strstr(err.msg, c->msg)))
			print_message("case %zu (%s): got %d \"%s\"\n", i, c->what, rc, err.msg);
		assert_int_equal(rc, c->rc);
		if (rc) {
			assert_int_equal(err.code, rc);
			assert_non_null(strstr(err.msg, "input 'x'"));
			assert_non_null(strstr(err.msg, c->msg));
			continue;
		}
		int ndim = c->given_ndim == NO_SHAPE ? c->model_ndim : c->given_ndim;
		assert_int_equal(in.ndim, ndim);
		assert_memory_equal(in.shape, c->want, (size_t)ndim * sizeof(int64_t));
	}
}

/* A model input with two dynamic dimensions explains itself: which input, and how to fix it. */
static void test_two_dynamic_message(void **state)
{
	ganglion_rt_tensor_info ti = {.name = "image", .ndim = 4, .shape = {-1, 3, -1, -1}};
	ganglion_rt_input in;
	gn_err err;
	assert_int_equal(shape_solve(&in, &ti, 3 * 64, NULL, 0, &err), GN_EINVAL);
	assert_string_equal(err.msg,
			    "input 'image' has 3 dynamic dimensions (shape [-1,3,-1,-1]): a count of values "
			    "cannot shape it; give its shape (\"shapes\": {\"image\": [...]} in a JSON request)");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shape_table),
		cmocka_unit_test(test_two_dynamic_message),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
