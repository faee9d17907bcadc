/* NumPy .npy tensor files (format versions 1.0, 2.0 and 3.0), read strictly: a release's sample
 * input and expected output travel as .npy files beside the model. Only what a sample needs is
 * accepted: a little-endian (or one-byte) integer, float or bool array in C order; anything else
 * (big-endian, Fortran order, structured or object arrays, a header longer than GN_NPY_HEADER_MAX,
 * trailing bytes) is refused with a message that says why. */
#ifndef GN_NPY_H
#define GN_NPY_H

#include "common.h"

#define GN_NPY_MAX_DIMS 32      /* numpy 1.x's own limit */
#define GN_NPY_HEADER_MAX 65536 /* bytes from the start of the file to the end of the header */
#define GN_NPY_MAGIC_LEN 6      /* "\x93NUMPY" */

enum gn_npy_kind { GN_NPY_BOOL, GN_NPY_INT, GN_NPY_UINT, GN_NPY_FLOAT };

/* A parsed header; data is borrowed from the buffer given to gn_npy_parse (NULL after
 * gn_npy_header_parse). */
typedef struct gn_npy {
	char descr[8]; /* as written: "<f4", "|u1", ... */
	enum gn_npy_kind kind;
	size_t itemsize; /* 1, 2, 4 or 8 bytes */
	int ndim;        /* 0 for a scalar */
	uint64_t shape[GN_NPY_MAX_DIMS];
	uint64_t count;    /* elements: the product of shape (1 for a scalar) */
	size_t header_len; /* bytes before the data */
	uint64_t data_len; /* count * itemsize */
	const unsigned char *data;
} gn_npy;

/* Parses the header at the start of buf (len bytes, which may be only the file's beginning: at
 * least the header). Fills out (data NULL); the whole file must be out->header_len +
 * out->data_len bytes long. GN_EINVAL with a message for anything not accepted; GN_ETOOBIG when
 * the data would be larger than max_data bytes. */
int gn_npy_header_parse(gn_npy *out, const void *buf, size_t len, uint64_t max_data, gn_err *err) GN_WUR;
/* Parses a whole .npy file held in buf (len bytes): the header, and exactly data_len bytes of data
 * after it. out->data points into buf. Errors as gn_npy_header_parse. */
int gn_npy_parse(gn_npy *out, const void *buf, size_t len, uint64_t max_data, gn_err *err) GN_WUR;
/* Returns element i (i < n->count) of a parsed file as a double (an int64 beyond 2^53 rounds). */
double gn_npy_get(const gn_npy *n, uint64_t i);
/* Returns the shape as text, e.g. "(1, 3, 224, 224)", into buf (size bytes); returns buf. */
char *gn_npy_shape_str(const gn_npy *n, char *buf, size_t size);

/* Finds the member called name (e.g. "x.npy", as numpy.savez names array x) in the .npz file (a
 * ZIP archive) held in zip (len bytes); *out points into zip, *out_len is its length. Only what
 * numpy.savez writes is read: stored (uncompressed), unencrypted members of an archive under 4 GiB,
 * their CRC-32 checked. GN_ENOTFOUND when there is no such member; GN_EINVAL, saying why, for a
 * compressed member (numpy.savez_compressed) or a damaged or unsupported archive. */
int gn_npz_member(const unsigned char **out, size_t *out_len, const void *zip, size_t len, const char *name,
		  gn_err *err) GN_WUR;

#endif
