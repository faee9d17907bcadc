/* Fuzz target: NumPy .npy files (gn_npy_parse, lib/npy.c), which the server reads from a
 * publish's sample parts and the agent from the sample files it downloads, and .npz archives
 * (gn_npz_member), which the CLI reads. The input is a file, read as both.
 *
 * Properties: an accepted file has 0 to GN_NPY_MAX_DIMS dimensions whose product is count, one of
 * the accepted item sizes, a header no longer than GN_NPY_HEADER_MAX, and exactly header_len +
 * data_len bytes; every element reads; the header parsed from the file's first header_len bytes
 * alone agrees; the shape prints within its buffer. A member found in an .npz lies inside the
 * input. */
#include <string.h>

#include "fuzz.h"
#include "npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	gn_npy n, h;
	gn_err err;
	char shape[64];
	const unsigned char *m;
	size_t mlen;
	if (gn_npz_member(&m, &mlen, data, size, "x.npy", &err) == 0)
		FUZZ_CHECK(m >= data && mlen <= size && (size_t)(m - data) <= size - mlen, "member outside the input");
	if (gn_npy_parse(&n, data, size, 1 << 20, &err))
		return 0;
	uint64_t count = 1;
	for (int i = 0; i < n.ndim; i++)
		count *= n.shape[i];
	FUZZ_CHECK(n.ndim >= 0 && n.ndim <= GN_NPY_MAX_DIMS, "%d dimensions", n.ndim);
	FUZZ_CHECK(count == n.count, "count %llu, shape product %llu", (unsigned long long)n.count,
		   (unsigned long long)count);
	FUZZ_CHECK(n.itemsize == 1 || n.itemsize == 2 || n.itemsize == 4 || n.itemsize == 8, "itemsize %zu",
		   n.itemsize);
	FUZZ_CHECK(n.header_len <= GN_NPY_HEADER_MAX, "header of %zu bytes", n.header_len);
	FUZZ_CHECK(n.header_len + n.data_len == size, "%zu + %llu != %zu", n.header_len, (unsigned long long)n.data_len,
		   size);
	double sum = 0;
	for (uint64_t i = 0; i < n.count; i++)
		sum += gn_npy_get(&n, i);
	(void)sum;
	FUZZ_CHECK(gn_npy_header_parse(&h, data, n.header_len, 1 << 20, &err) == 0, "header alone: %s", err.msg);
	FUZZ_CHECK(h.count == n.count && h.header_len == n.header_len && strcmp(h.descr, n.descr) == 0,
		   "header alone disagrees");
	gn_npy_shape_str(&n, shape, sizeof(shape));
	FUZZ_CHECK(strlen(shape) < sizeof(shape), "shape text");
	return 0;
}
