/* GET /v1/artifacts/sha256/{digest}, and the same files at their TUF target paths
 * (/v1/tuf/image/targets/models/NAME/VERSION/HASH.FILE): artifacts from the store (straight from
 * their file descriptor, or streamed from object storage), with Range so a device resumes a cut
 * download where it stopped. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts.h"
#include "http.h"
#include "models.h"

/* Parses a single "bytes=A-B", "bytes=A-" or "bytes=-N" range against size. Returns 1 with the
 * range set, 0 to serve the whole file (no or unsupported Range), -1 when unsatisfiable. */
static int parse_range(const char *h, uint64_t size, uint64_t *start, uint64_t *end)
{
	unsigned long long a = 0, b = 0;
	char *p;
	if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
		return 0;
	h += 6;
	if (*h == '-') {
		b = strtoull(h + 1, &p, 10);
		if (*p || p == h + 1)
			return 0;
		if (b == 0 || size == 0)
			return -1;
		*start = b >= size ? 0 : size - b;
		*end = size - 1;
		return 1;
	}
	a = strtoull(h, &p, 10);
	if (p == h || *p != '-')
		return 0;
	h = p + 1;
	if (*h) {
		b = strtoull(h, &p, 10);
		if (*p || b < a)
			return 0;
	} else {
		b = size ? size - 1 : 0;
	}
	if (a >= size)
		return -1;
	*start = a;
	*end = b >= size ? size - 1 : b;
	return 1;
}

/* Answers bytes [start, start + len) of the artifact: from its file, or streamed from the object
 * store through a pipe. */
static void reply_bytes(struct gd_req *r, int status, const char *hex, struct artifact_source *src, uint64_t start,
			uint64_t len)
{
	gn_err err;
	int fd = -1;
	if (src->fd >= 0) {
		gd_reply_fd(r, status, "application/octet-stream", src->fd, start, len);
		src->fd = -1;
	} else if (len == 0) {
		gd_reply_raw(r, status, "application/octet-stream", "", 0);
	} else if (artifacts_stream(&fd, hex, start, len, &err)) {
		gd_reply_error(r, &err);
	} else {
		gd_reply_pipe(r, status, "application/octet-stream", fd, len);
	}
}

/* Answers the stored artifact hex (whose reader has been checked): whole, or the one range asked
 * for, with its digest as ETag (If-None-Match, If-Range). */
static void serve(struct gd_req *r, const char *hex)
{
	char etag[80], buf[96];
	struct artifact_source src = {.fd = -1};
	gn_err err;
	gd_db_release(r);
	if (artifacts_open(&src, hex, &err)) {
		gd_reply_error(r, &err);
		return;
	}
	uint64_t size = src.size, start = 0, end = size ? size - 1 : 0;
	snprintf(etag, sizeof(etag), "\"sha256:%s\"", hex);
	gd_header(r, "ETag", etag);
	gd_header(r, "Accept-Ranges", "bytes");
	gd_header(r, "Cache-Control", "public, max-age=31536000, immutable");
	/* A Range with If-Range naming another entity gets the whole file. */
	const char *ifr = MHD_lookup_connection_value(gd_connection(r), MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_RANGE);
	const char *range = MHD_lookup_connection_value(gd_connection(r), MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
	int rr = ifr && strcmp(ifr, etag) != 0 ? 0 : parse_range(range, size, &start, &end);
	if (gd_not_modified(r, etag)) {
		gd_reply_raw(r, 304, NULL, "", 0);
	} else if (rr < 0) {
		snprintf(buf, sizeof(buf), "bytes */%llu", (unsigned long long)size);
		gd_header(r, "Content-Range", buf);
		gd_reply_problem(r, 416, "range not satisfiable");
	} else if (rr == 1) {
		snprintf(buf, sizeof(buf), "bytes %llu-%llu/%llu", (unsigned long long)start, (unsigned long long)end,
			 (unsigned long long)size);
		gd_header(r, "Content-Range", buf);
		reply_bytes(r, 206, hex, &src, start, end - start + 1);
	} else {
		reply_bytes(r, 200, hex, &src, 0, size);
	}
	if (src.fd >= 0)
		close(src.fd);
}

static void http_artifacts_get(struct gd_req *r)
{
	unsigned char raw[GN_SHA256_LEN];
	char hex[GN_SHA256_HEX_LEN + 1];
	gn_err err;
	if (gn_hex_decode(raw, sizeof(raw), gd_param(r, 0))) {
		gd_reply_problem(r, 404, "no such artifact (expected a 64-hex-digit SHA-256)");
		return;
	}
	gn_hex_encode(hex, raw, sizeof(raw));
	if (models_artifact_readable(gd_db(r), gd_actor(r), hex, &err))
		gd_reply_error(r, &err);
	else
		serve(r, hex);
}

/* The same bytes at their TUF target path in the image repository, models/NAME/VERSION/FILE,
 * with the hash prefix on the file name that consistent snapshots give it (HASH.FILE). */
static void http_artifacts_tuf_target(struct gd_req *r)
{
	char hex[GN_SHA256_HEX_LEN + 1];
	gn_err err;
	if (models_target_digest(hex, gd_db(r), gd_actor(r), gd_param(r, 0), gd_param(r, 1), gd_param(r, 2), &err))
		gd_reply_error(r, &err);
	else
		serve(r, hex);
}

const struct gd_route http_artifacts_routes[] = {
	{"GET", "/v1/artifacts/sha256/{digest}", GD_SCOPE_READ | GD_SCOPE_DEVICE, http_artifacts_get, NULL},
	{"GET", "/v1/tuf/image/targets/models/{name}/{version}/{file}",
	 GD_SCOPE_READ | GD_SCOPE_DEVICE | GD_SCOPE_ANON_TUF, http_artifacts_tuf_target, NULL},
};
const size_t http_artifacts_nroutes = GN_ARRAY_LEN(http_artifacts_routes);
