/* A small HTTP client over libcurl for the CLI and the agent: one request, whole response
 * body in memory (bounded), JSON convenience, problem+json errors turned into gn_err. */
#ifndef GN_HTTP_CLIENT_H
#define GN_HTTP_CLIENT_H

#include "common.h"

typedef struct gn_http_resp {
	long status;       /* HTTP status, 0 if no response */
	gn_buf body;       /* response body */
	char *content_type; /* new, may be NULL */
	char *etag;         /* new, may be NULL */
} gn_http_resp;

typedef struct gn_http_req {
	const char *method;       /* "GET", "POST", ... */
	const char *url;          /* absolute URL */
	const char *token;        /* bearer token or NULL */
	const char *body;         /* request body or NULL */
	size_t body_len;
	const char *content_type; /* default application/json when body is set */
	const char *if_none_match; /* or NULL */
	long timeout_s;           /* whole request; 0 = 30 s */
	size_t max_response;      /* 0 = 64 MiB */
} gn_http_req;

/* Performs req and fills out (gn_http_resp_cleanup it). Transport failures (connection refused,
 * timeout, response too large) return GN_EUNAVAIL / GN_ETOOBIG; any HTTP status returns 0. */
int gn_http_do(gn_http_resp *out, const gn_http_req *req, gn_err *err) GN_WUR;
void gn_http_resp_cleanup(gn_http_resp *resp);
/* Maps a non-2xx response to a GN_E code (401->GN_EAUTH, 403->GN_EFORBIDDEN, 404->GN_ENOTFOUND,
 * 409->GN_ECONFLICT, 410->GN_EGONE, 413->GN_ETOOBIG, 400/422->GN_EINVAL, 5xx->GN_EUNAVAIL) and
 * fills err with the server's problem detail. Returns 0 for 2xx/3xx. */
int gn_http_check(const gn_http_resp *resp, gn_err *err) GN_WUR;
/* URL-encodes s (new). */
char *gn_http_escape(const char *s);

#endif
