/* gzip bodies over zlib; see gzip.h. */
#include <limits.h>
#include <string.h>
#include <zlib.h>

#include "gzip.h"

#define GZIP_WINDOW (MAX_WBITS + 16) /* zlib's way of asking for a gzip header and trailer */
#define CHUNK 16384

int gn_gzip(gn_buf *out, const void *in, size_t len, gn_err *err)
{
	z_stream z;
	memset(&z, 0, sizeof(z));
	if (len > UINT_MAX)
		return gn_err_set(err, GN_ETOOBIG, "%zu bytes are too many to compress at once", len);
	if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, GZIP_WINDOW, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return gn_err_set(err, GN_ERROR, "zlib could not start compressing");
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)len;
	unsigned char chunk[CHUNK];
	int zr;
	do {
		z.next_out = chunk;
		z.avail_out = sizeof(chunk);
		zr = deflate(&z, Z_FINISH);
		gn_buf_append(out, chunk, sizeof(chunk) - z.avail_out);
	} while (zr == Z_OK || zr == Z_BUF_ERROR);
	deflateEnd(&z);
	if (zr != Z_STREAM_END)
		return gn_err_set(err, GN_ERROR, "zlib could not compress (%d)", zr);
	return 0;
}

int gn_gunzip(gn_buf *out, const void *in, size_t len, size_t max, gn_err *err)
{
	z_stream z;
	memset(&z, 0, sizeof(z));
	if (len > UINT_MAX)
		return gn_err_set(err, GN_ETOOBIG, "a compressed body of %zu bytes is too large", len);
	if (inflateInit2(&z, GZIP_WINDOW) != Z_OK)
		return gn_err_set(err, GN_ERROR, "zlib could not start inflating");
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)len;
	unsigned char chunk[CHUNK];
	int zr, rc = 0;
	do {
		z.next_out = chunk;
		z.avail_out = sizeof(chunk);
		zr = inflate(&z, Z_NO_FLUSH);
		size_t got = sizeof(chunk) - z.avail_out;
		if (zr == Z_OK || zr == Z_STREAM_END || (zr == Z_BUF_ERROR && got)) {
			if (got > max - out->len) {
				rc = gn_err_set(
					err, GN_ETOOBIG,
					"the gzip body inflates to more than the %zu-byte limit on request bodies",
					max);
				break;
			}
			gn_buf_append(out, chunk, got);
		}
		if (zr == Z_BUF_ERROR && !got) { /* no progress: the input ended before the stream did */
			rc = gn_err_set(err, GN_EINVAL, "the gzip body is truncated");
			break;
		}
		if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) {
			rc = gn_err_set(err, GN_EINVAL, "the body is not valid gzip (%s)",
					z.msg ? z.msg : "corrupt stream");
			break;
		}
	} while (zr != Z_STREAM_END);
	if (!rc && z.avail_in)
		rc = gn_err_set(err, GN_EINVAL, "%u bytes follow the gzip stream", z.avail_in);
	inflateEnd(&z);
	if (rc) {
		gn_buf_cleanup(out);
		gn_buf_init(out);
	}
	return rc;
}
