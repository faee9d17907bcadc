/* One-shot HTTP requests over libcurl for the CLI and the agent, with a bounded in-memory body;
 * multipart uploads that stream files; downloads that stream to the caller. */
#include "http_client.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "json.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0"
#endif

#define DEFAULT_TIMEOUT_S 30L
#define DEFAULT_MAX_RESPONSE ((size_t)64 * 1024 * 1024)
#define CONNECT_TIMEOUT_S 10L
#define DEFAULT_LOW_SPEED_LIMIT 1024L
#define DEFAULT_LOW_SPEED_TIME_S 60L

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* What the write and header callbacks fill in while curl runs. */
typedef struct transfer {
	gn_http_resp *resp;
	size_t max;
	bool too_big;
} transfer;

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
	transfer *t = ud;
	size_t n = size * nmemb;
	if (n > t->max - t->resp->body.len) {
		t->too_big = true;
		return 0; /* makes curl stop with CURLE_WRITE_ERROR */
	}
	gn_buf_append(&t->resp->body, p, n);
	return n;
}

/* Returns the trimmed value of header line p (len bytes) if it is `name: value` (new), else NULL. */
static char *header_value(const char *p, size_t len, const char *name)
{
	size_t nl = strlen(name);
	if (len <= nl || strncasecmp(p, name, nl) != 0 || p[nl] != ':')
		return NULL;
	const char *v = p + nl + 1, *e = p + len;
	while (v < e && isspace((unsigned char)*v))
		v++;
	while (e > v && isspace((unsigned char)e[-1]))
		e--;
	return gn_strndup(v, (size_t)(e - v));
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
	transfer *t = ud;
	size_t n = size * nmemb;
	char *v;
	/* A new status line (after a 100 Continue, say) starts a new set of headers. */
	if (n >= 5 && strncmp(p, "HTTP/", 5) == 0) {
		free(t->resp->content_type);
		free(t->resp->etag);
		t->resp->content_type = t->resp->etag = NULL;
		return n;
	}
	if ((v = header_value(p, n, "Content-Type"))) {
		free(t->resp->content_type);
		t->resp->content_type = v;
	} else if ((v = header_value(p, n, "ETag"))) {
		free(t->resp->etag);
		t->resp->etag = v;
	}
	return n;
}

static struct curl_slist *add_header(struct curl_slist *list, const char *name, const char *value)
{
	char *line = gn_asprintf("%s: %s", name, value);
	struct curl_slist *l = curl_slist_append(list, line);
	free(line);
	if (!l) /* curl's own allocation failed: treat it like ours */
		abort();
	return l;
}

/* Header values come from the caller; a CR or LF in one would let it inject more headers. */
static bool header_safe(const char *v)
{
	return !v || !strpbrk(v, "\r\n");
}

/* The TLS set-up of a request: whom to trust, and what to present. */
typedef struct tls_opts {
	const char *ca_file, *pinned_pubkey, *client_cert, *client_key;
} tls_opts;

static bool given(const char *s)
{
	return s && *s;
}

/* Creates a handle with what every request shares: URL, protocols, and the one TLS set-up. The
 * server's certificate is always verified (name included): against ca_file, or the system's CAs;
 * optionally only a pinned server key is accepted, and a client certificate is presented. */
static int handle_new(CURL **out, const char *url, const tls_opts *tls, char *errbuf, gn_err *err)
{
	CURL *h;
	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK)
		return gn_err_set(err, GN_ERROR, "cannot initialise libcurl: %s", curl_easy_strerror(global_rc));
	if (given(tls->client_cert) != given(tls->client_key))
		return gn_err_set(err, GN_EINVAL, "a client certificate needs its key, and a key its certificate");
	if (!(h = curl_easy_init()))
		return gn_err_set(err, GN_ERROR, "cannot initialise libcurl");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* threads, and no SIGALRM for DNS timeouts */
	curl_easy_setopt(h, CURLOPT_USERAGENT, "ganglion/" PACKAGE_VERSION);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	/* curl's defaults, said out loud: there is no way to turn verification off. */
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (given(tls->ca_file))
		curl_easy_setopt(h, CURLOPT_CAINFO, tls->ca_file);
	if (given(tls->pinned_pubkey))
		curl_easy_setopt(h, CURLOPT_PINNEDPUBLICKEY, tls->pinned_pubkey);
	if (given(tls->client_cert)) {
		curl_easy_setopt(h, CURLOPT_SSLCERT, tls->client_cert);
		curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
		curl_easy_setopt(h, CURLOPT_SSLKEY, tls->client_key);
		curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
	}
	*out = h;
	return 0;
}

/* What to do about a TLS failure, appended to curl's own message ("" for other failures). */
static const char *tls_hint(CURLcode rc)
{
	switch (rc) {
	case CURLE_PEER_FAILED_VERIFICATION:
		return " (the server's TLS certificate is not trusted: set ca-file to the CA that signed it, or "
		       "check that the URL's host name is in the certificate)";
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH: return " (the server's TLS key is not the one pinned-pubkey names)";
	case CURLE_SSL_CACERT_BADFILE: return " (ca-file cannot be read, or holds no PEM certificate)";
	case CURLE_SSL_CERTPROBLEM: return " (the client certificate or its key cannot be used)";
	case CURLE_SSL_CONNECT_ERROR:
		return " (TLS handshake failed: is the server speaking HTTPS, and does it want a client "
		       "certificate?)";
	default: return "";
	}
}

#define TLS_OPTS(req) ((tls_opts){(req)->ca_file, (req)->pinned_pubkey, (req)->client_cert, (req)->client_key})

/* Makes h gather the answer into t: a bounded body, Content-Type and ETag. */
static void handle_buffer(CURL *h, transfer *t)
{
	curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)t->max);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, t);
}

/* Adds Authorization with a bearer token (none without one). */
static struct curl_slist *auth_header(struct curl_slist *list, const char *token)
{
	if (token) {
		char *auth = gn_asprintf("Bearer %s", token);
		list = add_header(list, "Authorization", auth);
		free(auth);
	}
	return list;
}

/* Returns the headers every API request sends: Accept, and Authorization with a token. */
static struct curl_slist *base_headers(const char *token)
{
	return auth_header(add_header(NULL, "Accept", "application/json, application/problem+json"), token);
}

/* Turns a failed transfer into an error; timeout_msg says what a timeout means. */
static int transfer_error(CURLcode rc, const transfer *t, const char *method, const char *url, const char *errbuf,
			  const char *timeout_msg, gn_err *err)
{
	if (t->too_big || rc == CURLE_FILESIZE_EXCEEDED)
		return gn_err_set(err, GN_ETOOBIG, "%s %s: response larger than %zu bytes", method, url, t->max);
	if (rc == CURLE_OPERATION_TIMEDOUT)
		return gn_err_set(err, GN_EUNAVAIL, "%s %s: %s", method, url, timeout_msg);
	if (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL)
		return gn_err_set(err, GN_EINVAL, "bad URL %s: %s", url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
	return gn_err_set(err, GN_EUNAVAIL, "cannot reach %s: %s%s", url, errbuf[0] ? errbuf : curl_easy_strerror(rc),
			  tls_hint(rc));
}

int gn_http_do(gn_http_resp *out, const gn_http_req *req, gn_err *err)
{
	int error = 0;
	CURL *h = NULL;
	struct curl_slist *headers = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	char timeout_msg[64];
	long timeout = req->timeout_s > 0 ? req->timeout_s : DEFAULT_TIMEOUT_S;
	transfer t = {.resp = out, .max = req->max_response ? req->max_response : DEFAULT_MAX_RESPONSE};
	CURLcode rc;

	memset(out, 0, sizeof(*out));
	gn_buf_init(&out->body);
	if (!header_safe(req->token) || !header_safe(req->content_type) || !header_safe(req->if_none_match) ||
	    !header_safe(req->content_encoding)) {
		error = gn_err_set(err, GN_EINVAL, "a request header contains a line break");
		goto out;
	}
	if ((error = handle_new(&h, req->url, &TLS_OPTS(req), errbuf, err)))
		goto out;
	handle_buffer(h, &t);

	headers = base_headers(req->token);
	/* No "Expect: 100-continue" round trip for larger bodies. */
	headers = add_header(headers, "Expect", "");
	if (req->body)
		headers =
			add_header(headers, "Content-Type", req->content_type ? req->content_type : "application/json");
	if (req->body && req->content_encoding)
		headers = add_header(headers, "Content-Encoding", req->content_encoding);
	if (req->if_none_match)
		headers = add_header(headers, "If-None-Match", req->if_none_match);

	curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, timeout < CONNECT_TIMEOUT_S ? timeout : CONNECT_TIMEOUT_S);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
	if (req->body) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
		if (strcmp(req->method, "POST") != 0)
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
	} else if (strcmp(req->method, "GET") == 0) {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	} else if (strcmp(req->method, "HEAD") == 0) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (strcmp(req->method, "POST") == 0) {
		/* An empty POST still says Content-Length: 0. */
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
	} else {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
	}

	rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
	if (rc != CURLE_OK) {
		snprintf(timeout_msg, sizeof(timeout_msg), "no answer within %ld s", timeout);
		error = transfer_error(rc, &t, req->method, req->url, errbuf, timeout_msg, err);
	}
out:
	if (error)
		gn_http_resp_cleanup(out);
	curl_slist_free_all(headers);
	if (h)
		curl_easy_cleanup(h);
	return error;
}

/* Adapts curl's progress callback to gn_http_progress_fn. */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	const gn_http_upload *req = ud;
	req->progress(req->progress_ud, ulnow > 0 ? (uint64_t)ulnow : 0, ultotal > 0 ? (uint64_t)ultotal : 0);
	return 0;
}

int gn_http_upload_multipart(gn_http_resp *out, const gn_http_upload *req, gn_err *err)
{
	int error = 0;
	CURL *h = NULL;
	curl_mime *mime = NULL;
	struct curl_slist *headers = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	char timeout_msg[96];
	long low_limit = req->low_speed_limit > 0 ? req->low_speed_limit : DEFAULT_LOW_SPEED_LIMIT;
	long low_time = req->low_speed_time_s > 0 ? req->low_speed_time_s : DEFAULT_LOW_SPEED_TIME_S;
	transfer t = {.resp = out, .max = req->max_response ? req->max_response : DEFAULT_MAX_RESPONSE};
	CURLcode rc;

	memset(out, 0, sizeof(*out));
	gn_buf_init(&out->body);
	if (!header_safe(req->token)) {
		error = gn_err_set(err, GN_EINVAL, "a request header contains a line break");
		goto out;
	}
	for (size_t i = 0; i < req->nparts; i++) {
		const gn_http_part *p = &req->parts[i];
		if (!header_safe(p->name) || !header_safe(p->content_type) || !header_safe(p->filename)) {
			error = gn_err_set(err, GN_EINVAL, "a multipart header contains a line break");
			goto out;
		}
	}
	if ((error = handle_new(&h, req->url, &TLS_OPTS(req), errbuf, err)))
		goto out;
	handle_buffer(h, &t);

	mime = curl_mime_init(h);
	for (size_t i = 0; i < req->nparts; i++) {
		const gn_http_part *p = &req->parts[i];
		curl_mimepart *part = curl_mime_addpart(mime);
		if (!part)
			abort();
		curl_mime_name(part, p->name);
		if (p->data) {
			curl_mime_data(part, p->data, p->data_len);
		} else if ((rc = curl_mime_filedata(part, p->path)) != CURLE_OK) {
			error = gn_err_set(err, GN_ERROR, "cannot read %s: %s", p->path, curl_easy_strerror(rc));
			goto out;
		}
		if (p->content_type)
			curl_mime_type(part, p->content_type);
		if (p->filename)
			curl_mime_filename(part, p->filename);
	}

	/* Unlike gn_http_do, keep curl's "Expect: 100-continue" on a large body: a server that
	 * refuses the request (bad token, existing version) says so before the body is sent. */
	headers = base_headers(req->token);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(h, CURLOPT_MIMEPOST, mime);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT,
			 req->connect_timeout_s > 0 ? req->connect_timeout_s : CONNECT_TIMEOUT_S);
	/* No CURLOPT_TIMEOUT: a large file on a slow link may take hours; a stalled one may not. */
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, low_limit);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, low_time);
	if (req->progress) {
		curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
		curl_easy_setopt(h, CURLOPT_XFERINFODATA, (void *)req);
		curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	}

	rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
	if (rc == CURLE_OK)
		goto out;
	/* A server that refuses the upload part-way (413 over the size limit) may close the
	 * connection while curl is still sending; its answer is the better error. */
	if ((rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR) && out->status >= 400 && !t.too_big)
		goto out;
	if (rc == CURLE_READ_ERROR) {
		error = gn_err_set(err, GN_ERROR, "POST %s: cannot read the file to upload: %s", req->url,
				   errbuf[0] ? errbuf : curl_easy_strerror(rc));
		goto out;
	}
	snprintf(timeout_msg, sizeof(timeout_msg), "transfer slower than %ld bytes/s for %ld s", low_limit, low_time);
	error = transfer_error(rc, &t, "POST", req->url, errbuf, timeout_msg, err);
out:
	if (error)
		gn_http_resp_cleanup(out);
	curl_slist_free_all(headers);
	if (h)
		curl_easy_cleanup(h);
	curl_mime_free(mime); /* only once no handle uses it */
	return error;
}

void gn_http_resp_cleanup(gn_http_resp *resp)
{
	if (!resp)
		return;
	gn_buf_cleanup(&resp->body);
	free(resp->content_type);
	free(resp->etag);
	resp->content_type = resp->etag = NULL;
	resp->status = 0;
}

/* The one table from HTTP status to GN_E code on the client side. */
static int status_code(long status)
{
	switch (status) {
	case 400:
	case 422: return GN_EINVAL;
	case 401: return GN_EAUTH;
	case 403: return GN_EFORBIDDEN;
	case 404: return GN_ENOTFOUND;
	case 409: return GN_ECONFLICT;
	case 410: return GN_EGONE;
	case 413: return GN_ETOOBIG;
	default: return status >= 500 ? GN_EUNAVAIL : GN_ERROR;
	}
}

int gn_http_check(const gn_http_resp *resp, gn_err *err)
{
	char desc[400];
	if (resp->status >= 200 && resp->status < 400)
		return 0;
	if (resp->status == 0)
		return gn_err_set(err, GN_EUNAVAIL, "no HTTP response");
	gn_problem_describe(desc, sizeof(desc), resp->body.data, resp->body.len);
	if (!desc[0])
		return gn_err_set(err, status_code(resp->status), "server answered HTTP %ld", resp->status);
	return gn_err_set(err, status_code(resp->status), "%s (HTTP %ld)", desc, resp->status);
}

char *gn_http_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	gn_buf b;
	gn_buf_init(&b);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		/* RFC 3986 unreserved characters; isalnum() would depend on the locale. */
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    strchr("-._~", *p)) {
			gn_buf_append(&b, p, 1);
		} else {
			char enc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
			gn_buf_append(&b, enc, 3);
		}
	}
	return gn_buf_detach(&b);
}

/* The opaque part of the entity-tag at *p (W/ dropped, quotes kept) and its length; *p moves past
 * it. Something not quoted runs to the next comma. */
static const char *etag_opaque(const char **p, size_t *len)
{
	const char *t = *p, *end;
	if (strncmp(t, "W/", 2) == 0)
		t += 2;
	end = *t == '"' ? strchr(t + 1, '"') : NULL;
	end = end ? end + 1 : t + strcspn(t, ",");
	*len = (size_t)(end - t);
	*p = end;
	return t;
}

bool gn_http_etag_match(const char *inm, const char *etag)
{
	size_t wn, n;
	const char *want = etag_opaque(&etag, &wn);
	while (inm && *(inm += strspn(inm, " \t,"))) {
		if (*inm == '*') /* "*" matches only as the whole field */
			return inm[1 + strspn(inm + 1, " \t")] == '\0';
		const char *t = etag_opaque(&inm, &n);
		if (n == wn && memcmp(t, want, n) == 0)
			return true;
		inm += strcspn(inm, ",");
	}
	return false;
}

/* What the download callbacks share while curl runs. */
typedef struct download {
	const gn_http_download_req *req;
	long status;        /* of the last status line */
	uint64_t got;       /* body bytes the sink took */
	int sink_rc;        /* the sink's error, when it stopped the transfer */
	bool range_ignored; /* 200 with the whole file to a Range request */
	gn_buf error_body;  /* the start of a non-2xx body, for its problem detail */
	gn_err *err;
} download;

#define DOWNLOAD_ERROR_BODY_MAX 4096
#define DOWNLOAD_LOW_SPEED_TIME_S 30L

static size_t on_download_header(char *p, size_t size, size_t nmemb, void *ud)
{
	download *d = ud;
	size_t n = size * nmemb;
	if (n > 9 && strncmp(p, "HTTP/", 5) == 0) {
		const char *sp = memchr(p, ' ', n);
		if (sp)
			d->status = strtol(sp + 1, NULL, 10);
	}
	return n;
}

/* Passes a 200/206 body to the sink; keeps the start of any other body for the error. */
static size_t on_download_body(char *p, size_t size, size_t nmemb, void *ud)
{
	download *d = ud;
	size_t n = size * nmemb;
	if (d->status != 200 && d->status != 206) {
		size_t room = DOWNLOAD_ERROR_BODY_MAX - d->error_body.len;
		gn_buf_append(&d->error_body, p, n < room ? n : room);
		return n;
	}
	if (d->req->offset > 0 && d->status == 200) {
		d->range_ignored = true; /* the whole file again: appending it would corrupt the part */
		return 0;
	}
	if ((d->sink_rc = d->req->sink(d->req->sink_ud, p, n, d->err)))
		return 0;
	d->got += n;
	return n;
}

/* Ends the transfer early once the caller's stop flag is set. */
static int on_download_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	const download *d = ud;
	return d->req->stop && atomic_load(d->req->stop) ? 1 : 0;
}

/* Turns the end of a download that did not deliver a 2xx body into an error (0 if it did). */
static int download_result(const download *d, CURLcode rc, const char *errbuf, gn_err *err)
{
	const gn_http_download_req *req = d->req;
	char at[64], desc[400];
	if (d->sink_rc)
		return d->sink_rc; /* the sink has said why */
	if (d->range_ignored)
		return gn_err_set(err, GN_EUNAVAIL,
				  "the server did not resume the download at byte %llu (HTTP 200 "
				  "to a Range request)",
				  (unsigned long long)req->offset);
	if (req->length)
		snprintf(at, sizeof(at), "%llu of %llu bytes", (unsigned long long)(req->offset + d->got),
			 (unsigned long long)req->length);
	else
		snprintf(at, sizeof(at), "%llu bytes", (unsigned long long)(req->offset + d->got));
	if (rc == CURLE_ABORTED_BY_CALLBACK)
		return gn_err_set(err, GN_EUNAVAIL, "download paused at %s: asked to stop", at);
	if (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL)
		return gn_err_set(err, GN_EINVAL, "bad URL %s: %s", req->url,
				  errbuf[0] ? errbuf : curl_easy_strerror(rc));
	if (rc != CURLE_OK)
		return gn_err_set(err, GN_EUNAVAIL, "download stopped at %s: %s%s", at,
				  errbuf[0] ? errbuf : curl_easy_strerror(rc), tls_hint(rc));
	if (d->status == 200 || d->status == 206)
		return 0;
	gn_problem_describe(desc, sizeof(desc), d->error_body.data, d->error_body.len);
	return gn_err_set(err, d->status == 404 ? GN_ENOTFOUND : GN_EUNAVAIL, "download answered HTTP %ld%s%s",
			  d->status, desc[0] ? ": " : "", desc);
}

int gn_http_download(long *out_status, const gn_http_download_req *req, gn_err *err)
{
	int error = 0;
	CURL *h = NULL;
	struct curl_slist *headers = NULL;
	char errbuf[CURL_ERROR_SIZE] = "", range[32];
	download d = {.req = req, .err = err};

	*out_status = 0;
	gn_buf_init(&d.error_body);
	if (!header_safe(req->token)) {
		error = gn_err_set(err, GN_EINVAL, "a request header contains a line break");
		goto out;
	}
	if ((error = handle_new(&h, req->url, &TLS_OPTS(req), errbuf, err)))
		goto out;
	headers = auth_header(NULL, req->token);
	curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_download_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &d);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_download_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &d);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_download_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, &d);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT,
			 req->connect_timeout_s > 0 ? req->connect_timeout_s : CONNECT_TIMEOUT_S);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, req->deadline_s > 0 ? req->deadline_s : 0L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, req->min_rate > 0 ? req->min_rate : 0L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME,
			 req->min_rate_time_s > 0 ? req->min_rate_time_s : DOWNLOAD_LOW_SPEED_TIME_S);
	if (req->offset > 0) {
		snprintf(range, sizeof(range), "%llu-", (unsigned long long)req->offset);
		curl_easy_setopt(h, CURLOPT_RANGE, range);
	}
	CURLcode rc = curl_easy_perform(h);
	*out_status = d.status;
	error = download_result(&d, rc, errbuf, err);
out:
	gn_buf_cleanup(&d.error_body);
	curl_slist_free_all(headers);
	if (h)
		curl_easy_cleanup(h);
	return error;
}
