/* The shape of a model input from the values a request gives: the one rule for the inference
 * endpoint and the self-test. A request body says how many values it holds, which fixes at most
 * one dynamic dimension; more need the shape itself. */
#include <stdio.h>
#include <string.h>

#include "agent.h"

/* A dimension the model leaves open (runtime.h says -1; 0 is how some exporters write it). */
static bool dynamic(int64_t dim)
{
	return dim <= 0;
}

/* Writes shape as "[1,-1,4]" into out. */
static void shape_str(char *out, size_t n, const int64_t *shape, int ndim)
{
	size_t w = (size_t)snprintf(out, n, "[");
	for (int d = 0; d < ndim && w < n; d++)
		w += (size_t)snprintf(out + w, n - w, "%s%lld", d ? "," : "",
				      (long long)(dynamic(shape[d]) ? -1 : shape[d]));
	if (w < n)
		snprintf(out + w, n - w, "]");
}

/* Multiplies the fixed dimensions of shape into *out; false on overflow. */
static bool fixed_product(size_t *out, const int64_t *shape, int ndim)
{
	size_t n = 1;
	for (int d = 0; d < ndim; d++)
		if (!dynamic(shape[d]) && __builtin_mul_overflow(n, (size_t)shape[d], &n))
			return false;
	*out = n;
	return true;
}

/* Checks a shape the request gives against the model's and the value count. */
static int check_given(ganglion_rt_input *in, const ganglion_rt_tensor_info *ti, size_t count, const int64_t *given,
		       int ndim, gn_err *err)
{
	char want[160], got[160];
	size_t n;
	shape_str(want, sizeof(want), ti->shape, ti->ndim);
	if (ndim < 1 || ndim > GANGLION_RT_MAX_DIMS)
		return gn_err_set(err, GN_EINVAL, "the shape of input '%s' needs 1 to %d dimensions", ti->name,
				  GANGLION_RT_MAX_DIMS);
	shape_str(got, sizeof(got), given, ndim);
	bool fits = ti->ndim < 0 || ndim == ti->ndim;
	for (int d = 0; d < ndim; d++)
		fits = fits && given[d] >= 1 && (ti->ndim < 0 || dynamic(ti->shape[d]) || given[d] == ti->shape[d]);
	if (!fits)
		return gn_err_set(err, GN_EINVAL, "input '%s' given shape %s, the model needs %s", ti->name, got, want);
	if (!fixed_product(&n, given, ndim))
		return gn_err_set(err, GN_EINVAL, "input '%s' given shape %s, too large to use", ti->name, got);
	if (n != count)
		return gn_err_set(err, GN_EINVAL, "input '%s' of shape %s holds %zu values, got %zu", ti->name, got, n,
				  count);
	in->ndim = ndim;
	memcpy(in->shape, given, (size_t)ndim * sizeof(*given));
	return 0;
}

int shape_solve(ganglion_rt_input *in, const ganglion_rt_tensor_info *ti, size_t count, const int64_t *given,
		int given_ndim, gn_err *err)
{
	char want[160];
	size_t known;
	int dyn = -1, ndyn = 0;
	if (given)
		return check_given(in, ti, count, given, given_ndim, err);
	shape_str(want, sizeof(want), ti->shape, ti->ndim);
	if (ti->ndim < 0 || ti->ndim > GANGLION_RT_MAX_DIMS)
		return gn_err_set(err, GN_EINVAL,
				  "input '%s' declares no shape; give its shape (\"shapes\" in a JSON request)",
				  ti->name);
	for (int d = 0; d < ti->ndim; d++) {
		if (dynamic(ti->shape[d])) {
			dyn = d;
			ndyn++;
		}
	}
	if (ndyn > 1)
		return gn_err_set(err, GN_EINVAL,
				  "input '%s' has %d dynamic dimensions (shape %s): a count of values cannot shape it; "
				  "give its shape (\"shapes\": {\"%s\": [...]} in a JSON request)",
				  ti->name, ndyn, want, ti->name);
	if (!fixed_product(&known, ti->shape, ti->ndim))
		return gn_err_set(err, GN_EINVAL, "input '%s' has a shape too large to use (%s)", ti->name, want);
	if (ndyn == 0 && count != known)
		return gn_err_set(err, GN_EINVAL, "input '%s' takes %zu values (shape %s), got %zu", ti->name, known,
				  want, count);
	if (ndyn == 1 && (count == 0 || count % known != 0))
		return gn_err_set(err, GN_EINVAL, "input '%s' takes a multiple of %zu values (shape %s), got %zu",
				  ti->name, known, want, count);
	in->ndim = ti->ndim;
	memcpy(in->shape, ti->shape, (size_t)ti->ndim * sizeof(*ti->shape));
	if (ndyn == 1)
		in->shape[dyn] = (int64_t)(count / known);
	return 0;
}
