/* A small HTTP client over libcurl for the CLI and the agent: one request, whole response
 * body in memory (bounded), JSON convenience, problem+json errors turned into gn_err;
 * multipart/form-data uploads that stream files from disk; downloads streamed to a callback. */
#ifndef GN_HTTP_CLIENT_H
#define GN_HTTP_CLIENT_H

#include <stdatomic.h>

#include "common.h"

typedef struct gn_http_resp {
	long status;        /* HTTP status, 0 if no response */
	gn_buf body;        /* response body */
	char *content_type; /* new, may be NULL */
	char *etag;         /* new, may be NULL */
} gn_http_resp;

typedef struct gn_http_req {
	const char *method; /* "GET", "POST", ... */
	const char *url;    /* absolute URL */
	const char *token;  /* bearer token or NULL */
	const char *body;   /* request body or NULL */
	size_t body_len;
	const char *content_type;     /* default application/json when body is set */
	const char *content_encoding; /* e.g. "gzip" when body is compressed, or NULL */
	const char *if_none_match;    /* or NULL */
	long timeout_s;               /* whole request; 0 = 30 s */
	size_t max_response;          /* 0 = 64 MiB */
	const char *ca_file;          /* CA bundle for https, or NULL for the system's */
	const char *pinned_pubkey;    /* "sha256//BASE64" or a PEM/DER file: only this server key, or NULL */
	const char *client_cert;      /* PEM certificate presented to the server (mTLS), or NULL */
	const char *client_key;       /* its PEM private key (with client_cert) */
} gn_http_req;

/* Performs req and fills out (gn_http_resp_cleanup it). Transport failures (connection refused,
 * timeout, response too large) return GN_EUNAVAIL / GN_ETOOBIG; any HTTP status returns 0. */
int gn_http_do(gn_http_resp *out, const gn_http_req *req, gn_err *err) GN_WUR;
void gn_http_resp_cleanup(gn_http_resp *resp);

/* One part of a multipart/form-data body: bytes in memory, or a file read while sending. All
 * pointers are borrowed for the duration of the call. */
typedef struct gn_http_part {
	const char *name;         /* form field name */
	const char *content_type; /* or NULL for curl's default */
	const char *data;         /* the part's bytes, or NULL to stream path instead */
	size_t data_len;
	const char *path;     /* file streamed from disk in pieces, never read whole */
	const char *filename; /* filename= of the part, or NULL (the file's base name for path) */
} gn_http_part;

/* Called while an upload runs with the bytes sent so far and the total (0 while unknown). */
typedef void (*gn_http_progress_fn)(void *ud, uint64_t sent, uint64_t total);

typedef struct gn_http_upload {
	const char *url;           /* absolute URL */
	const char *token;         /* bearer token or NULL */
	const gn_http_part *parts; /* sent in this order */
	size_t nparts;
	long connect_timeout_s;       /* 0 = 10 s */
	long low_speed_limit;         /* bytes per second; 0 = 1024 */
	long low_speed_time_s;        /* abort after this long below low_speed_limit; 0 = 60 s */
	size_t max_response;          /* 0 = 64 MiB */
	gn_http_progress_fn progress; /* or NULL */
	void *progress_ud;
	const char *ca_file;       /* as in gn_http_req */
	const char *pinned_pubkey; /* as in gn_http_req */
	const char *client_cert;   /* as in gn_http_req */
	const char *client_key;    /* as in gn_http_req */
} gn_http_upload;

/* POSTs req->parts as multipart/form-data and fills out (gn_http_resp_cleanup it). Unlike
 * gn_http_do there is no limit on the whole transfer, which may be gigabytes; it is aborted
 * (GN_EUNAVAIL) when slower than low_speed_limit for low_speed_time_s, which also bounds the wait
 * for the answer after the last byte. A file that cannot be read is GN_ERROR; other failures are
 * those of gn_http_do. An HTTP error the server answers before the body is fully sent returns 0
 * with that status. */
int gn_http_upload_multipart(gn_http_resp *out, const gn_http_upload *req, gn_err *err) GN_WUR;
/* Receives each piece of a download's body in order; returns 0 to go on, or a GN_E code with err
 * filled to stop the transfer (gn_http_download then returns that code). */
typedef int (*gn_http_sink_fn)(void *ud, const void *data, size_t len, gn_err *err);

typedef struct gn_http_download_req {
	const char *url;           /* absolute URL */
	const char *token;         /* bearer token or NULL */
	const char *ca_file;       /* as in gn_http_req */
	const char *pinned_pubkey; /* as in gn_http_req */
	const char *client_cert;   /* as in gn_http_req */
	const char *client_key;    /* as in gn_http_req */
	uint64_t offset;           /* > 0: resume, asking for the bytes from this one on (Range) */
	uint64_t length;           /* the whole file's size, for messages; 0 when unknown */
	long deadline_s;           /* the whole transfer; 0 = no limit */
	long min_rate;             /* bytes per second; 0 = no limit */
	long min_rate_time_s;      /* stop after this long below min_rate; 0 = 30 s */
	long connect_timeout_s;    /* 0 = 10 s */
	const _Atomic bool *stop;  /* set from another thread to end the transfer early; or NULL */
	gn_http_sink_fn sink;      /* takes the body; called only for 200, or 206 to a Range request */
	void *sink_ud;
} gn_http_download_req;

/* GETs req->url with the TLS set-up of gn_http_do and streams the body into req->sink, for files
 * too large to hold in memory. *out_status is the HTTP status (0 if none) whatever the result.
 * Returns 0 when a 200 (or 206) body ended normally; the sink's own error when it stopped the
 * transfer; GN_ENOTFOUND for 404; GN_EUNAVAIL for any other status, for a 200 to a Range request
 * (the whole file again: nothing is passed to the sink), for a transport failure, the deadline,
 * a rate below min_rate, or the stop flag ("download stopped at N of LENGTH bytes: why"). */
int gn_http_download(long *out_status, const gn_http_download_req *req, gn_err *err) GN_WUR;

/* Maps a non-2xx response to a GN_E code (401->GN_EAUTH, 403->GN_EFORBIDDEN, 404->GN_ENOTFOUND,
 * 409->GN_ECONFLICT, 410->GN_EGONE, 413->GN_ETOOBIG, 400/422->GN_EINVAL, 5xx->GN_EUNAVAIL) and
 * fills err with the server's problem detail. Returns 0 for 2xx/3xx. */
int gn_http_check(const gn_http_resp *resp, gn_err *err) GN_WUR;
/* URL-encodes s (new). */
char *gn_http_escape(const char *s);
/* Whether an If-None-Match value (inm, may be NULL) names etag: "*" (as the whole value), or an entity-tag of its
 * comma-separated list equal to etag by the weak comparison (RFC 9110 13.1.2: W/"x" and "x"
 * match). */
bool gn_http_etag_match(const char *inm, const char *etag);

#endif
