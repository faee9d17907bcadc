/* GET /v1/artifacts/sha256/{digest}: artifacts straight from their file descriptor, with Range
 * so a device resumes a cut download where it stopped. */
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

static void http_artifacts_get(struct gd_req *r)
{
	const char *digest = gd_param(r, 0);
	unsigned char raw[GN_SHA256_LEN];
	char hex[GN_SHA256_HEX_LEN + 1], etag[80], buf[96];
	struct stat st;
	if (gn_hex_decode(raw, sizeof(raw), digest)) {
		gd_reply_problem(r, 404, "no such artifact (expected a 64-hex-digit SHA-256)");
		return;
	}
	gn_hex_encode(hex, raw, sizeof(raw));
	gn_err err;
	if (models_artifact_readable(gd_db(r), gd_actor(r), hex, &err)) {
		gd_reply_error(r, &err);
		return;
	}
	gd_db_release(r);
	char *path = artifacts_path(hex);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		gd_reply_problem(r, 404, "no such artifact");
		return;
	}
	uint64_t size = (uint64_t)st.st_size, start = 0, end = size ? size - 1 : 0;
	snprintf(etag, sizeof(etag), "\"sha256:%s\"", hex);
	gd_header(r, "ETag", etag);
	gd_header(r, "Accept-Ranges", "bytes");
	gd_header(r, "Cache-Control", "public, max-age=31536000, immutable");
	const char *inm = MHD_lookup_connection_value(gd_connection(r), MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
	if (inm && strcmp(inm, etag) == 0) {
		close(fd);
		gd_reply_raw(r, 304, NULL, "", 0);
		return;
	}
	/* A Range with If-Range naming another entity gets the whole file. */
	const char *ifr = MHD_lookup_connection_value(gd_connection(r), MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_RANGE);
	const char *range = MHD_lookup_connection_value(gd_connection(r), MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
	int rr = ifr && strcmp(ifr, etag) != 0 ? 0 : parse_range(range, size, &start, &end);
	if (rr < 0) {
		close(fd);
		snprintf(buf, sizeof(buf), "bytes */%llu", (unsigned long long)size);
		gd_header(r, "Content-Range", buf);
		gd_reply_problem(r, 416, "range not satisfiable");
		return;
	}
	if (rr == 1) {
		snprintf(buf, sizeof(buf), "bytes %llu-%llu/%llu", (unsigned long long)start, (unsigned long long)end,
			 (unsigned long long)size);
		gd_header(r, "Content-Range", buf);
		gd_reply_fd(r, 206, "application/octet-stream", fd, start, end - start + 1);
		return;
	}
	gd_reply_fd(r, 200, "application/octet-stream", fd, 0, size);
}

const struct gd_route http_artifacts_routes[] = {
	{"GET", "/v1/artifacts/sha256/{digest}", GD_SCOPE_READ | GD_SCOPE_DEVICE, http_artifacts_get, NULL},
};
const size_t http_artifacts_nroutes = GN_ARRAY_LEN(http_artifacts_routes);
