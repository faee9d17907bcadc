/* libmicrohttpd glue: routing, request lifecycle, auth, body limits, problem+json, access log. */
#include "http.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "auth.h"
#include "crypto.h"
#include "gangliond.h"
#include "gzip.h"
#include "log.h"
#include "http_client.h"
#include "http_metrics.h"
#include "http_tls.h"
#include "ratelimit.h"

/* One request, from its first byte to its completion callback; only this file sees inside. */
#define GD_MAX_HEADERS 12

#define GD_MAX_PARAMS 4

struct gd_conn;

struct gd_req {
	struct MHD_Connection *conn;
	struct gd_conn *gc; /* the connection's deadline record (NULL if none) */
	const struct gd_route *route;
	int route_index;
	const char *method;
	char *path;
	char id[40];  /* request id */
	char ctx[48]; /* "req=<id>", the log context while it is handled */
	const char *params[GD_MAX_PARAMS];
	char *param_store;
	gn_buf body;
	uint64_t discarded;
	bool too_big;
	bool started;
	uint64_t start_ns;
	struct gd_actor actor; /* who is asking (kind NONE on public routes) */
	db_conn *db;
	const struct gd_stream *stream;
	void *stream_ctx; /* owned by the stream ops */
	bool stream_failed;
	bool handled;
	bool admitted; /* credentials checked on the first call */
	bool routine;  /* a device's routine traffic, logged at debug when it succeeds (gd_routine) */
	bool inflated; /* body was gzip and is now inflated (gd_body_gunzip) */
	/* response */
	int status;
	int resp_fd;    /* >= 0: answer with this file (owned) */
	bool resp_pipe; /* resp_fd is a pipe: read it in order, resp_len bytes */
	uint64_t resp_off;
	const char *hdr_name[GD_MAX_HEADERS];
	char *hdr_value[GD_MAX_HEADERS];
	int nhdr;
	char *resp;
	size_t resp_len;
	const char *resp_type;
	bool responded;
};

/* Each http_<resource>.c exports its routes next to its handlers; this only collects them, in
 * this order, into one table (`gangliond routes` prints it; a test compares it with
 * api/openapi.yaml; metrics count by its index). */
static const struct {
	const struct gd_route *routes;
	const size_t *n;
} tables[] = {
	{http_health_routes, &http_health_nroutes},
	{http_tokens_routes, &http_tokens_nroutes},
	{http_enroll_routes, &http_enroll_nroutes},
	{http_agent_routes, &http_agent_nroutes},
	{http_checkin_routes, &http_checkin_nroutes},
	{http_devices_routes, &http_devices_nroutes},
	{http_device_tokens_routes, &http_device_tokens_nroutes},
	{http_desired_routes, &http_desired_nroutes},
	{http_audit_routes, &http_audit_nroutes},
	{http_models_routes, &http_models_nroutes},
	{http_artifacts_routes, &http_artifacts_nroutes},
	{http_tuf_routes, &http_tuf_nroutes},
	{http_tuf_deleg_routes, &http_tuf_deleg_nroutes},
	{http_deployments_routes, &http_deployments_nroutes},
	{http_rollouts_routes, &http_rollouts_nroutes},
	{http_gitops_routes, &http_gitops_nroutes},
	{http_telemetry_routes, &http_telemetry_nroutes},
	{http_status_routes, &http_status_nroutes},
	{http_ui_routes, &http_ui_nroutes},
};

static struct gd_route routes[HTTP_METRICS_MAX_ROUTES];
/* The length of each pattern's text before its first "{": a path that does not begin with it
 * cannot match, which rules out most routes without splitting the path. */
static size_t literal_len[HTTP_METRICS_MAX_ROUTES];
static size_t nroutes;
static pthread_once_t routes_once = PTHREAD_ONCE_INIT;

static void collect_routes(void)
{
	for (size_t t = 0; t < GN_ARRAY_LEN(tables); t++) {
		for (size_t i = 0; i < *tables[t].n; i++) {
			assert(nroutes < GN_ARRAY_LEN(routes)); /* raise HTTP_METRICS_MAX_ROUTES */
			literal_len[nroutes] = strcspn(tables[t].routes[i].pattern, "{");
			routes[nroutes++] = tables[t].routes[i];
		}
	}
}

static struct MHD_Daemon *daemon_;
/* Requests begun and not yet completed, for the drain on shutdown. */
static _Atomic int inflight;

const struct gd_route *http_routes(size_t *out_n)
{
	pthread_once(&routes_once, collect_routes);
	*out_n = nroutes;
	return routes;
}

/* One table from GN_E codes to HTTP statuses. */
int gd_http_status(int code)
{
	switch (code) {
	case GN_EINVAL: return 400;
	case GN_EAUTH: return 401;
	case GN_EFORBIDDEN: return 403;
	case GN_ENOTFOUND: return 404;
	case GN_ECONFLICT: return 409;
	case GN_EGONE: return 410;
	case GN_ETOOBIG: return 413;
	case GN_EMISMATCH: return 422;
	case GN_EUNAVAIL: return 503;
	default: return 500;
	}
}

static const char *status_title(int status)
{
	switch (status) {
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 413: return "Content Too Large";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 503: return "Service Unavailable";
	default: return status >= 500 ? "Internal Server Error" : "Error";
	}
}

/* Matches path segments against a pattern; "{x}" matches one non-empty segment, which is
 * copied into r->params. */
static bool match(const char *pattern, const char *path, struct gd_req *r)
{
	const char *pp = pattern, *sp = path;
	const char *starts[GD_MAX_PARAMS];
	size_t lens[GD_MAX_PARAMS], total = 1;
	int np = 0;
	while (*pp == '/' && *sp == '/') {
		pp++;
		sp++;
		size_t plen = strcspn(pp, "/"), slen = strcspn(sp, "/");
		if (plen && pp[0] == '{') {
			if (!slen || np == GD_MAX_PARAMS)
				return false;
			starts[np] = sp;
			lens[np++] = slen;
			total += slen + 1;
		} else if (plen != slen || strncmp(pp, sp, plen) != 0) {
			return false;
		}
		pp += plen;
		sp += slen;
	}
	if (*pp || *sp)
		return false;
	free(r->param_store);
	r->param_store = NULL;
	memset(r->params, 0, sizeof(r->params)); /* an earlier match's pointed into the store freed */
	if (!np)
		return true;
	char *store = gn_malloc(total), *w = store;
	for (int i = 0; i < np; i++) {
		memcpy(w, starts[i], lens[i]);
		w[lens[i]] = '\0';
		r->params[i] = w;
		w += lens[i] + 1;
	}
	r->param_store = store;
	return true;
}

const char *gd_param(struct gd_req *r, int i)
{
	return i < GD_MAX_PARAMS ? r->params[i] : NULL;
}

const char *gd_query(struct gd_req *r, const char *key)
{
	return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

db_conn *gd_db(struct gd_req *r)
{
	if (!r->db)
		r->db = db_acquire(gd.pool);
	return r->db;
}

const struct gd_actor *gd_actor(struct gd_req *r)
{
	return &r->actor;
}

struct MHD_Connection *gd_connection(struct gd_req *r)
{
	return r->conn;
}

void *gd_stream_ctx(struct gd_req *r)
{
	return r->stream_ctx;
}

void gd_set_stream_ctx(struct gd_req *r, void *ctx)
{
	r->stream_ctx = ctx;
}

bool gd_answered(const struct gd_req *r)
{
	return r->responded;
}

void gd_routine(struct gd_req *r)
{
	r->routine = true;
}

void gd_db_release(struct gd_req *r)
{
	if (r->db) {
		db_release(gd.pool, r->db);
		r->db = NULL;
	}
}

int gd_limit_arg(int *out_limit, struct gd_req *r, int dflt)
{
	const char *l = gd_query(r, "limit");
	*out_limit = dflt;
	if (l) {
		char *end;
		long v = strtol(l, &end, 10);
		if (*end || end == l || v < 1 || v > 1000) {
			gd_reply_problem(r, 400, "limit must be an integer from 1 to 1000");
			return GN_EINVAL;
		}
		*out_limit = (int)v;
	}
	return 0;
}

int gd_page_args(int *out_limit, const char **out_cursor, struct gd_req *r)
{
	*out_cursor = gd_query(r, "cursor");
	if (*out_cursor && !**out_cursor)
		*out_cursor = NULL;
	return gd_limit_arg(out_limit, r, 100);
}

void gd_list(struct gd_req *r, const db_stmt *st, enum gd_cursor kind, const char *const *fixed, int nfixed)
{
	PGresult *res = NULL;
	gn_err err;
	int limit;
	const char *cursor, *p[16];
	char lim[16];
	assert(nfixed + 2 <= (int)GN_ARRAY_LEN(p) && st->nparams == nfixed + 2);
	if (gd_page_args(&limit, &cursor, r))
		return;
	if (cursor &&
	    ((kind == CURSOR_UUID && !gn_is_uuid(cursor)) ||
	     (kind == CURSOR_INT && (strspn(cursor, "0123456789") != strlen(cursor) || strlen(cursor) > 18)))) {
		gd_reply_problem(r, 400, "bad cursor (use next_cursor from the previous page)");
		return;
	}
	snprintf(lim, sizeof(lim), "%d", limit + 1);
	for (int i = 0; i < nfixed; i++)
		p[i] = fixed[i];
	p[nfixed] = cursor;
	p[nfixed + 1] = lim;
	if (db_exec(&res, gd_db(r), st, p, &err)) {
		gd_reply_error(r, &err);
		return;
	}
	gd_reply_page(r, res, limit);
	PQclear(res);
}

void gd_reply_page(struct gd_req *r, const PGresult *res, int limit)
{
	gn_buf b;
	int n = PQntuples(res);
	gn_buf_init(&b);
	gn_buf_puts(&b, "{\"items\":[");
	for (int i = 0; i < n && i < limit; i++) {
		if (i)
			gn_buf_puts(&b, ",");
		gn_buf_puts(&b, PQgetvalue(res, i, 0));
	}
	gn_buf_puts(&b, "],\"next_cursor\":");
	if (n > limit) {
		json_t *c = json_string(PQgetvalue(res, limit - 1, 1));
		char *cs = json_dumps(c, JSON_ENCODE_ANY);
		gn_buf_puts(&b, cs);
		free(cs);
		json_decref(c);
	} else {
		gn_buf_puts(&b, "null");
	}
	gn_buf_puts(&b, "}");
	gd_reply_raw(r, 200, "application/json", b.data, b.len);
	gn_buf_cleanup(&b);
}

void gd_reply_raw(struct gd_req *r, int status, const char *type, const char *body, size_t len)
{
	free(r->resp);
	r->resp = gn_malloc(len + 1);
	memcpy(r->resp, body, len);
	r->resp[len] = '\0';
	r->resp_len = len;
	r->resp_type = type;
	r->status = status;
	r->responded = true;
}

void gd_reply_fd(struct gd_req *r, int status, const char *type, int fd, uint64_t offset, uint64_t len)
{
	free(r->resp);
	r->resp = NULL;
	if (r->resp_fd >= 0)
		close(r->resp_fd);
	r->resp_fd = fd;
	r->resp_off = offset;
	r->resp_len = len;
	r->resp_type = type;
	r->status = status;
	r->responded = true;
}

void gd_reply_pipe(struct gd_req *r, int status, const char *type, int fd, uint64_t len)
{
	gd_reply_fd(r, status, type, fd, 0, len);
	r->resp_pipe = true;
}

/* Feeds a pipe's bytes to libmicrohttpd; the end of the pipe before the announced length (the
 * producer failed) cuts the connection, so the client sees a short body, not a wrong one. */
static ssize_t pipe_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	int fd = (int)(intptr_t)cls;
	(void)pos;
	for (;;) {
		ssize_t n = read(fd, buf, max);
		if (n > 0)
			return n;
		if (n < 0 && errno == EINTR)
			continue;
		return MHD_CONTENT_READER_END_WITH_ERROR;
	}
}

static void pipe_close(void *cls)
{
	close((int)(intptr_t)cls);
}

void gd_header(struct gd_req *r, const char *name, const char *value)
{
	if (r->nhdr == GD_MAX_HEADERS)
		return;
	r->hdr_name[r->nhdr] = name;
	r->hdr_value[r->nhdr++] = gn_strdup(value);
}

void gd_reply_json(struct gd_req *r, int status, json_t *body)
{
	free(r->resp);
	r->resp = body ? gn_json_dump(body) : gn_strdup("");
	r->resp_len = strlen(r->resp);
	r->resp_type = "application/json";
	r->status = status;
	r->responded = true;
	json_decref(body);
}

void gd_reply_problem(struct gd_req *r, int status, const char *detail)
{
	free(r->resp);
	r->resp = gn_problem_dup(status, status_title(status), detail);
	r->resp_len = strlen(r->resp);
	r->resp_type = "application/problem+json";
	r->status = status;
	r->responded = true;
}

void gd_reply_text(struct gd_req *r, int rc, int status, char *json, const gn_err *err)
{
	if (rc)
		gd_reply_error(r, err);
	else
		gd_reply_raw(r, status, "application/json", json, strlen(json));
	free(json);
}

void gd_reply_error(struct gd_req *r, const gn_err *err)
{
	int status = gd_http_status(err->code);
	/* Internal details stay in the log; the client gets the request id to quote. */
	if (status == 500) {
		gn_log(GN_LOG_ERROR, "event=internal_error msg=\"%s\"", err->msg);
		gd_reply_problem(r, 500, "internal error; the server log has the details under this request id");
		return;
	}
	if (status == 503)
		gd_header(r, "Retry-After", "5");
	gd_reply_problem(r, status, err->msg);
}

const char *gd_body(struct gd_req *r, size_t *out_len)
{
	*out_len = r->body.len;
	return r->body.data ? r->body.data : "";
}

/* The request's Content-Encoding, NULL when none (or "identity"). */
static const char *content_encoding(struct gd_req *r)
{
	const char *ce = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_ENCODING);
	return ce && *ce && strcasecmp(ce, "identity") != 0 ? ce : NULL;
}

int gd_body_gunzip(struct gd_req *r)
{
	const char *ce = content_encoding(r);
	if (!ce || r->inflated)
		return 0;
	if (strcasecmp(ce, "gzip") != 0) {
		gd_reply_problem(r, 415, "the only Content-Encoding accepted here is gzip");
		return GN_EINVAL;
	}
	gn_err err;
	gn_buf out;
	gn_buf_init(&out);
	size_t max = (size_t)config_get()->max_body;
	int rc = gn_gunzip(&out, r->body.data ? r->body.data : "", r->body.len, max, &err);
	if (rc) {
		gd_reply_problem(r, rc == GN_ETOOBIG ? 413 : 400, err.msg);
		return rc;
	}
	gn_buf_cleanup(&r->body);
	r->body = out;
	r->inflated = true;
	return 0;
}

int gd_body_json(json_t **out, struct gd_req *r, const gn_json_field *fields, size_t n)
{
	gn_err err;
	json_t *j = NULL;
	const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	if (ct && strncasecmp(ct, "application/json", 16) != 0) {
		gd_reply_problem(r, 415, "request bodies must be application/json");
		return GN_EINVAL;
	}
	if (!r->inflated && content_encoding(r)) {
		gd_reply_problem(r, 415, "this route takes request bodies without Content-Encoding");
		return GN_EINVAL;
	}
	if (gn_json_parse(&j, r->body.data ? r->body.data : "", r->body.len, (int)config_get()->max_json_depth, &err) ||
	    gn_json_check(j, fields, n, &err)) {
		json_decref(j);
		gd_reply_problem(r, 400, err.msg);
		return GN_EINVAL;
	}
	*out = j;
	return 0;
}

int gd_body_json_opt(json_t **out, struct gd_req *r, const gn_json_field *fields, size_t n)
{
	size_t len = 0;
	gd_body(r, &len);
	if (len == 0) {
		*out = json_object();
		return 0;
	}
	return gd_body_json(out, r, fields, n);
}

/* Writes the client's address as a rate-limit key, one form per client: IPv4 as it is (also when a
 * dual-stack socket saw it as ::ffff:a.b.c.d), IPv6 by its /64 (one host commonly holds a whole
 * /64), both as inet_ntop writes them. */
static void client_key(char *out, size_t n, struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;
	char host[INET6_ADDRSTRLEN] = "-";
	if (sa && sa->sa_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, host, sizeof(host));
	} else if (sa && sa->sa_family == AF_INET6) {
		struct in6_addr a = ((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(&a)) {
			inet_ntop(AF_INET, a.s6_addr + 12, host, sizeof(host));
		} else {
			memset(a.s6_addr + 8, 0, 8);
			inet_ntop(AF_INET6, &a, host, sizeof(host));
		}
	}
	snprintf(out, n, "%s", host);
}

int gd_rate_limit(struct gd_req *r, const char *what, const char *identity)
{
	const struct gd_config *cfg = config_get();
	char key[192], addr[INET6_ADDRSTRLEN], detail[192], after[24];
	uint64_t now = gn_mono_ns();
	const char *by = "this address";
	client_key(addr, sizeof(addr), r->conn);
	snprintf(key, sizeof(key), "a|%s|%s", what, addr);
	int64_t wait = ratelimit_take(key, cfg->rate_limit_address, now);
	if (!wait && identity && *identity) {
		by = "this identity";
		snprintf(key, sizeof(key), "i|%s|%.128s", what, identity);
		wait = ratelimit_take(key, cfg->rate_limit_identity, now);
	}
	if (!wait)
		return 0;
	snprintf(after, sizeof(after), "%lld", (long long)wait);
	snprintf(detail, sizeof(detail), "too many %s requests from %s; retry in %lld s", what, by, (long long)wait);
	gd_header(r, "Retry-After", after);
	gd_reply_problem(r, 429, detail);
	return -1;
}

int gd_rate_limit_device(struct gd_req *r, const char *what, const char *device_id)
{
	unsigned char uuid[16];
	char id[37];
	if (!device_id || gn_uuid_parse(uuid, device_id))
		return gd_rate_limit(r, what, NULL);
	gn_uuid_format(id, uuid);
	return gd_rate_limit(r, what, id);
}

/* Writes the client address's key of failed authentications (rate-limit-auth-failures). */
static void auth_failures_key(char *out, size_t n, struct gd_req *r)
{
	char addr[INET6_ADDRSTRLEN];
	client_key(addr, sizeof(addr), r->conn);
	snprintf(out, n, "f|auth|%s", addr);
}

/* Authentication failures per client address (rate-limit-auth-failures): once an address has
 * used up its allowance, every request of it that needs a token gets 429 before its credentials
 * are looked at, so that guessing tokens costs the guesser time, not the database. Whether an
 * attempt fails is known only after the look, so letting it in takes a token in the same locked
 * step (parallel requests cannot all pass on the last one), and anything but a failure gives it
 * back (ratelimit_attempt_end). Non-zero when answered. */
static int auth_attempt_begin(struct gd_req *r, const char *key)
{
	char detail[160], after[24];
	int64_t wait = ratelimit_attempt(key, config_get()->rate_limit_auth_failures, gn_mono_ns());
	if (!wait)
		return 0;
	snprintf(after, sizeof(after), "%lld", (long long)wait);
	snprintf(detail, sizeof(detail), "too many failed authentications from this address; retry in %lld s",
		 (long long)wait);
	gd_header(r, "Retry-After", after);
	gd_reply_problem(r, 429, detail);
	return -1;
}

static void new_request_id(struct gd_req *r)
{
	const char *given = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Request-Id");
	if (given && strlen(given) >= 8 && strlen(given) < sizeof(r->id)) {
		bool ok = true;
		for (const char *p = given; *p && ok; p++)
			ok = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			     *p == '-' || *p == '_' || *p == '.';
		if (ok) {
			/* Keep a load balancer's id so one id follows the request end to end. */
			snprintf(r->id, sizeof(r->id), "%s", given);
			return;
		}
	}
	/* Eight random bytes, drawn from a per-thread stock filled 64 ids at a time: one call to
	 * OpenSSL's generator per request was a tenth of a check-in's CPU time. */
	static _Thread_local unsigned char stock[8 * 64];
	static _Thread_local size_t left;
	gn_err err;
	if (!left) {
		if (gn_random_bytes(stock, sizeof(stock), &err))
			memset(stock, 0, sizeof(stock));
		left = sizeof(stock);
	}
	left -= 8;
	gn_hex_encode(r->id, stock + left, 8);
}

/* A GET answered 200 with a JSON body it built in memory gets an ETag, a hash of the body; the same
 * ETag in If-None-Match makes it a 304 without the body. The server still builds the answer, but
 * a client that polls (the web dashboard) neither receives nor re-renders one that did not change.
 * Routes that set their own ETag (artifacts, check-ins, the dashboard's files) keep it. */
bool gd_not_modified(struct gd_req *r, const char *etag)
{
	return gn_http_etag_match(MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH),
				  etag);
}

static void json_etag(struct gd_req *r)
{
	if (r->status != 200 || r->resp_fd >= 0 || !r->resp || !r->resp_type ||
	    strcmp(r->resp_type, "application/json") != 0 ||
	    (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0))
		return;
	for (int i = 0; i < r->nhdr; i++) {
		if (strcmp(r->hdr_name[i], "ETag") == 0)
			return;
	}
	char hex[GN_SHA256_HEX_LEN + 1], etag[48];
	gn_sha256_hex(hex, r->resp, r->resp_len);
	snprintf(etag, sizeof(etag), "W/\"%.32s\"", hex);
	gd_header(r, "ETag", etag);
	if (gd_not_modified(r, etag)) {
		free(r->resp);
		r->resp = NULL;
		r->resp_len = 0;
		r->resp_type = NULL;
		r->status = 304;
	}
}

/* Decodes %XX in the path and query arguments as libmicrohttpd does, except in a string that holds
 * %00: decoded, it would end the C string early (/ui/index.html%00.js would be /ui/index.html). Such
 * a string is left as sent, so it names no route, file or value that it would be cut to. */
static size_t unescape(void *cls, struct MHD_Connection *conn, char *s)
{
	(void)cls;
	(void)conn;
	for (const char *p = s; (p = strchr(p, '%')) != NULL; p++) {
		if (p[1] == '0' && p[2] == '0')
			return strlen(s);
	}
	return MHD_http_unescape(s);
}

/* The Date header's value for now (RFC 9110's IMF-fixdate), made once a second per thread:
 * libmicrohttpd's own calls gmtime_r on every answer, which takes glibc's one time-zone lock. */
static const char *http_date(void)
{
	static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	static _Thread_local char text[32];
	static _Thread_local time_t made = -1;
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	if (ts.tv_sec != made && gmtime_r(&ts.tv_sec, &tm)) {
		snprintf(text, sizeof(text), "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
			 months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
		made = ts.tv_sec;
	}
	return text;
}

static enum MHD_Result queue(struct gd_req *r)
{
	struct MHD_Response *resp;
	json_etag(r);
	if (r->resp_fd >= 0 && r->resp_pipe) {
		resp = MHD_create_response_from_callback(r->resp_len, 64 * 1024, pipe_reader,
							 (void *)(intptr_t)r->resp_fd, pipe_close);
		if (!resp)
			close(r->resp_fd);
		r->resp_fd = -1;
	} else if (r->resp_fd >= 0) {
		/* Served from the file descriptor (sendfile where possible), never copied through memory. */
		resp = MHD_create_response_from_fd_at_offset64(r->resp_len, r->resp_fd, r->resp_off);
		if (!resp)
			close(r->resp_fd);
		r->resp_fd = -1;
	} else {
		resp = MHD_create_response_from_buffer(r->resp_len, r->resp ? r->resp : (char *)"",
						       r->resp ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
		if (!resp)
			free(r->resp);
		r->resp = NULL; /* owned by the response now */
	}
	if (!resp)
		return MHD_NO;
	for (int i = 0; i < r->nhdr; i++)
		MHD_add_response_header(resp, r->hdr_name[i], r->hdr_value[i]);
	if (r->resp_type)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->resp_type);
	MHD_add_response_header(resp, "X-Request-Id", r->id);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_DATE, http_date());
	if (r->status == 401)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
	if (r->status == 405 && r->route_index == -2) {
		gn_buf allow;
		gn_buf_init(&allow);
		for (size_t i = 0; i < nroutes; i++) {
			if (match(routes[i].pattern, r->path, r))
				gn_buf_printf(&allow, "%s%s", allow.len ? ", " : "", routes[i].method);
		}
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow.data ? allow.data : "");
		gn_buf_cleanup(&allow);
	}
	enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)r->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

int gd_audit_change(PGresult **out, struct gd_req *r, const db_stmt *st, const char *const *params, const char *missing,
		    const char *action, const char *object_type, const char *object_id, json_t *detail)
{
	gn_err err;
	if (audit_change(out, gd_db(r), &r->actor, st, params, missing, action, object_type, object_id, detail, &err)) {
		gd_reply_error(r, &err);
		return -1;
	}
	return 0;
}

/* Finds the route for method and path; -1 no such path (404), -2 path exists but not the method (405). */
static int find_route(struct gd_req *r)
{
	bool path_seen = false;
	for (size_t i = 0; i < nroutes; i++) {
		if (strncmp(routes[i].pattern, r->path, literal_len[i]) != 0 || !match(routes[i].pattern, r->path, r))
			continue;
		path_seen = true;
		if (strcmp(routes[i].method, r->method) == 0 ||
		    (strcmp(r->method, "HEAD") == 0 && strcmp(routes[i].method, "GET") == 0))
			return (int)i;
	}
	return path_seen ? -2 : -1;
}

/* Routes the request and checks its credentials; non-zero when it has been answered already. */
static int admit(struct gd_req *r)
{
	gn_err err;
	if (r->route_index == -1) {
		gd_reply_problem(r, 404, "no such endpoint");
		return -1;
	}
	if (r->route_index == -2) {
		gd_reply_problem(r, 405, "method not allowed on this endpoint");
		return -1;
	}
	const struct gd_route *rt = r->route;
	if (rt->scope != GD_SCOPE_PUBLIC) {
		const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
		/* The image repository for a mirror or CDN: no token, no actor (a token sent is checked). */
		if (!h && (rt->scope & GD_SCOPE_ANON_TUF) && config_get()->tuf_anonymous_read)
			return 0;
		bool done = false;
		/* A signed device token needs no database (the check-in's common path). It is checked
		 * before the failures of its address are: a good one passes even from an address that
		 * others have used up (devices behind a NAT or a balancer with a token guesser), as it
		 * costs the database nothing. */
		char key[8 + INET6_ADDRSTRLEN];
		int rc = auth_authenticate_memory(&r->actor, &done, h, &err);
		if (!done) {
			auth_failures_key(key, sizeof(key), r);
			if (auth_attempt_begin(r, key))
				return -1;
			rc = auth_authenticate(&r->actor, gd_db(r), h, &err);
			ratelimit_attempt_end(key, config_get()->rate_limit_auth_failures, gn_mono_ns(),
					      rc == GN_EAUTH);
		} else if (rc == GN_EAUTH) { /* a forged signed token: counted, though not refused */
			auth_failures_key(key, sizeof(key), r);
			(void)ratelimit_take(key, config_get()->rate_limit_auth_failures, gn_mono_ns());
		}
		if (rc || auth_allows(&r->actor, rt->scope, &err)) {
			gd_reply_error(r, &err);
			return -1;
		}
		if (r->actor.kind == GD_ACTOR_DEVICE) {
			char ctx[128];
			snprintf(ctx, sizeof(ctx), "req=%s device=%s", r->id, r->actor.id);
			gn_log_set_context(ctx);
		}
	}
	return 0;
}

static void dispatch(struct gd_req *r)
{
	if (!r->admitted && admit(r))
		return;
	r->handled = true;
	r->route->handler(r);
	if (!r->responded)
		gd_reply_problem(r, 500, "handler gave no answer");
}

static void release_db(struct gd_req *r)
{
	if (r->db) {
		db_release(gd.pool, r->db);
		r->db = NULL;
	}
}

/* --- request deadlines ----------------------------------------------------------------------
 * libmicrohttpd 0.9.75 only has an idle timeout: a client that sends a header line every few
 * seconds is never cut, and a few thousand such connections fill the connection limit. So every
 * connection is tracked from its first byte: its headers must all arrive within
 * request-header-timeout (from the connection, or from the previous answer on a kept-alive one),
 * and its body within request-body-timeout plus one second per min-body-rate bytes received. A
 * thread cuts late ones (shutdown(2): libmicrohttpd then sees the peer gone and closes it). And
 * when the connections near connection-limit, each new one cuts the connection that has been
 * waiting longest for its headers, so that trickling clients cannot keep newcomers out. */

enum conn_phase { PHASE_HEADERS, PHASE_BODY, PHASE_HANDLING };

/* The lists are kept in stripes, each with its own lock, and a connection's stripe is chosen by
 * the libmicrohttpd thread that accepted it (which serves it for its whole life): the phase
 * changes of every request (four per request) then take a lock that no other worker shares, so a
 * worker never waits for, or is descheduled holding, a lock another worker needs. The deadline
 * thread and evictions visit every stripe. */
#define CONN_STRIPES 16

struct conn_stripe;

struct gd_conn {
	struct gd_conn *prev, *next; /* in the list of its phase (headers: oldest first) */
	struct conn_stripe *stripe;  /* fixed when the connection starts */
	int fd;
	enum conn_phase phase;
	uint64_t since_ns; /* start of the phase */
	uint64_t body_bytes;
	bool listed, cut;
	bool client_verified; /* its client certificate verified (tls-client-ca-file) */
};

static struct conn_stripe {
	pthread_mutex_t lock;
	struct gd_conn *hdr_head, *hdr_tail, *body_head;
} conn_stripes[CONN_STRIPES];
static _Atomic unsigned next_stripe;
static _Atomic int nlive; /* open connections not yet cut */
/* Cut since the last log line. */
static _Atomic uint64_t cut_headers, cut_body, cut_evicted;

static pthread_mutex_t reaper_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reaper_wake;
static pthread_t reaper;
static bool reaper_running, reaper_stop;

/* The stripe of connections this thread accepts. */
static struct conn_stripe *thread_stripe(void)
{
	static _Thread_local struct conn_stripe *mine;
	if (!mine)
		mine = &conn_stripes[atomic_fetch_add(&next_stripe, 1) % CONN_STRIPES];
	return mine;
}

/* Unlinks gc from the list of its phase. Under its stripe's lock. */
static void conn_unlist(struct gd_conn *gc)
{
	if (!gc->listed)
		return;
	struct conn_stripe *st = gc->stripe;
	struct gd_conn **head = gc->phase == PHASE_HEADERS ? &st->hdr_head : &st->body_head;
	if (gc->prev)
		gc->prev->next = gc->next;
	else
		*head = gc->next;
	if (gc->next)
		gc->next->prev = gc->prev;
	else if (gc->phase == PHASE_HEADERS)
		st->hdr_tail = gc->prev;
	gc->prev = gc->next = NULL;
	gc->listed = false;
}

/* Moves gc into phase (the headers list is kept oldest first by appending). Under its stripe's
 * lock. */
static void conn_enter(struct gd_conn *gc, enum conn_phase phase, uint64_t now)
{
	struct conn_stripe *st = gc->stripe;
	conn_unlist(gc);
	gc->phase = phase;
	gc->since_ns = now;
	gc->body_bytes = 0;
	if (gc->cut || phase == PHASE_HANDLING)
		return;
	if (phase == PHASE_HEADERS) {
		gc->prev = st->hdr_tail;
		if (st->hdr_tail)
			st->hdr_tail->next = gc;
		else
			st->hdr_head = gc;
		st->hdr_tail = gc;
	} else {
		gc->next = st->body_head;
		if (st->body_head)
			st->body_head->prev = gc;
		st->body_head = gc;
	}
	gc->listed = true;
}

/* Cuts gc's connection. Under its stripe's lock (the fd stays open until libmicrohttpd reports
 * the connection closed, which takes the lock). */
static void conn_cut(struct gd_conn *gc)
{
	conn_unlist(gc);
	gc->cut = true;
	atomic_fetch_sub(&nlive, 1);
	shutdown(gc->fd, SHUT_RDWR);
}

static void change_phase(struct gd_req *r, enum conn_phase phase)
{
	if (!r->gc)
		return;
	pthread_mutex_lock(&r->gc->stripe->lock);
	conn_enter(r->gc, phase, gn_mono_ns());
	pthread_mutex_unlock(&r->gc->stripe->lock);
}

static void count_body(struct gd_req *r, size_t n)
{
	if (!r->gc)
		return;
	pthread_mutex_lock(&r->gc->stripe->lock);
	r->gc->body_bytes += n;
	pthread_mutex_unlock(&r->gc->stripe->lock);
}

/* Connections past this many get the oldest connection still waiting for its headers cut. */
static int evict_above(void)
{
	int64_t limit = config_get()->connection_limit;
	return (int)(limit - (limit / 8 > 1 ? limit / 8 : 1));
}

/* While more than evict_above() connections are open, cuts the one waiting longest for its
 * headers (the oldest head of the stripes' headers lists), other than the newcomer gc. Takes one
 * stripe lock at a time. */
static void evict_oldest(const struct gd_conn *gc)
{
	int above = evict_above();
	while (atomic_load(&nlive) > above) {
		struct conn_stripe *oldest = NULL;
		uint64_t since = 0;
		for (int i = 0; i < CONN_STRIPES; i++) {
			struct conn_stripe *st = &conn_stripes[i];
			pthread_mutex_lock(&st->lock);
			const struct gd_conn *h = st->hdr_head;
			if (h && h != gc && (!oldest || h->since_ns < since)) {
				oldest = st;
				since = h->since_ns;
			}
			pthread_mutex_unlock(&st->lock);
		}
		if (!oldest)
			return;
		pthread_mutex_lock(&oldest->lock);
		/* Whatever heads that list now (another thread may have moved the one seen) is its oldest. */
		if (oldest->hdr_head && oldest->hdr_head != gc) {
			conn_cut(oldest->hdr_head);
			atomic_fetch_add(&cut_evicted, 1);
		}
		pthread_mutex_unlock(&oldest->lock);
	}
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			  enum MHD_ConnectionNotificationCode code)
{
	(void)cls;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		struct gd_conn *gc = gn_calloc(1, sizeof(*gc));
		gc->fd = ci ? ci->connect_fd : -1;
		gc->stripe = thread_stripe();
		*socket_context = gc;
		pthread_mutex_lock(&gc->stripe->lock);
		atomic_fetch_add(&nlive, 1);
		conn_enter(gc, PHASE_HEADERS, gn_mono_ns());
		pthread_mutex_unlock(&gc->stripe->lock);
		evict_oldest(gc);
		return;
	}
	struct gd_conn *gc = *socket_context;
	if (!gc)
		return;
	pthread_mutex_lock(&gc->stripe->lock);
	conn_unlist(gc);
	if (!gc->cut)
		atomic_fetch_sub(&nlive, 1);
	pthread_mutex_unlock(&gc->stripe->lock);
	free(gc);
	*socket_context = NULL;
}

/* How long gc has been in its phase at now; 0 when it entered it after now. */
static uint64_t phase_age(const struct gd_conn *gc, uint64_t now)
{
	return now > gc->since_ns ? now - gc->since_ns : 0;
}

/* Cuts the connections of one stripe that are past their deadline. The clock is read under the
 * stripe's lock, and an age never wraps: a worker that moved a connection into a new phase just
 * before (with a later clock than one read outside the lock) had made it look 2^64 ns old, and a
 * healthy kept-alive connection was cut as it sent its next request. */
static void reap_stripe(struct conn_stripe *st, const struct gd_config *cfg)
{
	uint64_t hdr_ns = (uint64_t)cfg->request_header_timeout * 1000000000ull;
	pthread_mutex_lock(&st->lock);
	uint64_t now = gn_mono_ns();
	while (st->hdr_head && phase_age(st->hdr_head, now) > hdr_ns) {
		conn_cut(st->hdr_head);
		atomic_fetch_add(&cut_headers, 1);
	}
	for (struct gd_conn *gc = st->body_head, *next; gc; gc = next) {
		next = gc->next;
		double allowed =
			(double)cfg->request_body_timeout + (double)gc->body_bytes / (double)cfg->min_body_rate;
		if ((double)phase_age(gc, now) / 1e9 > allowed) {
			conn_cut(gc);
			atomic_fetch_add(&cut_body, 1);
		}
	}
	pthread_mutex_unlock(&st->lock);
}

/* Cuts every connection past its deadline; logs what it cut at most once a second. */
static void *reaper_main(void *unused)
{
	(void)unused;
	uint64_t last_log = 0;
	pthread_mutex_lock(&reaper_lock);
	while (!reaper_stop) {
		pthread_mutex_unlock(&reaper_lock);
		const struct gd_config *cfg = config_get();
		uint64_t now = gn_mono_ns();
		for (int i = 0; i < CONN_STRIPES; i++)
			reap_stripe(&conn_stripes[i], cfg);
		if ((atomic_load(&cut_headers) || atomic_load(&cut_body) || atomic_load(&cut_evicted)) &&
		    now - last_log >= 1000000000ull) {
			uint64_t h = atomic_exchange(&cut_headers, 0), b = atomic_exchange(&cut_body, 0),
				 e = atomic_exchange(&cut_evicted, 0);
			gn_log(GN_LOG_WARN,
			       "event=connections_cut header_timeout=%llu body_timeout=%llu evicted=%llu open=%d",
			       (unsigned long long)h, (unsigned long long)b, (unsigned long long)e,
			       atomic_load(&nlive));
			last_log = now;
		}
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += 200000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_mutex_lock(&reaper_lock);
		if (!reaper_stop)
			pthread_cond_timedwait(&reaper_wake, &reaper_lock, &ts);
	}
	pthread_mutex_unlock(&reaper_lock);
	return NULL;
}

static void init_stripes(void)
{
	for (int i = 0; i < CONN_STRIPES; i++)
		pthread_mutex_init(&conn_stripes[i].lock, NULL);
}

static int reaper_start(gn_err *err)
{
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&reaper_wake, &attr);
	pthread_condattr_destroy(&attr);
	reaper_stop = false;
	if (pthread_create(&reaper, NULL, reaper_main, NULL) != 0)
		return gn_err_set(err, GN_ERROR, "cannot start the request-deadline thread");
	reaper_running = true;
	return 0;
}

static void reaper_end(void)
{
	if (!reaper_running)
		return;
	pthread_mutex_lock(&reaper_lock);
	reaper_stop = true;
	pthread_cond_signal(&reaper_wake);
	pthread_mutex_unlock(&reaper_lock);
	pthread_join(reaper, NULL);
	pthread_cond_destroy(&reaper_wake);
	reaper_running = false;
}

/* With tls-client-ca-file, requests are answered only over a connection whose client presented a
 * certificate that verifies against it (checked once per connection): an extra requirement on top
 * of the token, not an identity. Non-zero when the request has been refused (403). */
static int check_client_cert(struct gd_req *r)
{
	gn_err err;
	if (!http_tls_client_required() || (r->gc && r->gc->client_verified))
		return 0;
	if (http_tls_client_check(r->conn, &err)) {
		gn_log(GN_LOG_INFO, "event=client_certificate_refused msg=\"%s\"", err.msg);
		gd_reply_problem(r, 403, err.msg);
		return -1;
	}
	if (r->gc) /* only this connection's requests touch it, one at a time */
		r->gc->client_verified = true;
	return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size,
				  void **req_cls)
{
	struct gd_req *r = *req_cls;
	int64_t max_body = config_get()->max_body;
	if (!r) {
		r = gn_calloc(1, sizeof(*r));
		*req_cls = r;
		atomic_fetch_add(&inflight, 1);
		r->conn = conn;
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
		r->gc = ci ? ci->socket_context : NULL;
		change_phase(r, PHASE_BODY); /* the headers are in */
		r->method = method;
		r->path = gn_strdup(url);
		r->start_ns = gn_mono_ns();
		r->route_index = -1;
		gn_buf_init(&r->body);
		new_request_id(r);
		size_t idlen = strlen(r->id);
		memcpy(r->actor.request_id, r->id, idlen + 1);
		memcpy(r->ctx, "req=", 4);
		memcpy(r->ctx + 4, r->id, idlen + 1);
		r->route_index = find_route(r);
		r->route = r->route_index >= 0 ? &routes[r->route_index] : NULL;
		r->resp_fd = -1;
		r->resp_pipe = false;
		/* Credentials (and for uploads, the request itself) before a byte of the body: nobody
		 * unauthenticated gets to fill buffers or disks. */
		gn_log_set_context(r->ctx);
		if (check_client_cert(r) == 0 && r->route && r->route->scope != GD_SCOPE_PUBLIC && admit(r) == 0)
			r->admitted = true;
		if (!r->responded && r->route && r->route->stream) {
			r->stream = r->route->stream;
			if (r->stream->begin(r))
				r->stream_failed = true;
		}
		release_db(r);
		const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (!r->responded && !r->stream && cl && strtoll(cl, NULL, 10) > max_body) {
			char detail[128];
			snprintf(detail, sizeof(detail), "request body larger than the %lld-byte limit",
				 (long long)max_body);
			gd_reply_problem(r, 413, detail);
		}
		gn_log_set_context(NULL);
		if (r->responded) {
			r->started = true;
			return queue(r);
		}
		return MHD_YES;
	}
	if (*upload_data_size)
		count_body(r, *upload_data_size);
	if (r->started) {
		/* A response went out early (413); drop whatever body still arrives. */
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (*upload_data_size && r->stream) {
		if (!r->stream_failed && r->stream->data(r, upload_data, *upload_data_size))
			r->stream_failed = true;
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (*upload_data_size) {
		if (r->too_big || r->body.len + *upload_data_size > (size_t)max_body) {
			/* Chunked bodies have no Content-Length: notice the overflow as it streams, drop the rest,
			 * and give up on the connection if a client keeps sending far beyond the limit. */
			r->too_big = true;
			gn_buf_cleanup(&r->body);
			r->discarded += *upload_data_size;
			*upload_data_size = 0;
			return r->discarded > (uint64_t)max_body * 16 ? MHD_NO : MHD_YES;
		}
		gn_buf_append(&r->body, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	/* The body is complete: answer now (on the second call, so keep-alive stays on). */
	change_phase(r, PHASE_HANDLING);
	gn_log_set_context(r->ctx);
	r->started = true;
	if (r->too_big) {
		char detail[128];
		snprintf(detail, sizeof(detail), "request body larger than the %lld-byte limit", (long long)max_body);
		gd_reply_problem(r, 413, detail);
	} else if (!r->stream_failed) {
		dispatch(r);
	}
	if (!r->responded)
		gd_reply_problem(r, 500, "request refused without an answer");
	release_db(r);
	enum MHD_Result ret = queue(r);
	gn_log_set_context(NULL);
	return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls, enum MHD_RequestTerminationCode toe)
{
	struct gd_req *r = *req_cls;
	if (!r)
		return;
	uint64_t dur = gn_mono_ns() - r->start_ns;
	int status = r->status ? r->status : 499; /* client went away before an answer */
	http_metrics_observe(r->route_index, status, dur);
	/* A device's routine answers (most of the traffic) are logged at debug: the line is only built
	 * when it is to be written. */
	enum gn_log_level lvl = status >= 500 ? GN_LOG_WARN : r->routine && status < 400 ? GN_LOG_DEBUG : GN_LOG_INFO;
	bool logged = gn_log_enabled(lvl), abort_stream = r->stream && !r->handled;
	if (logged || abort_stream)
		gn_log_set_context(r->ctx);
	if (logged) {
		/* The path is the client's: no line breaks or control bytes into the log. */
		char *path = gn_utf8_clean_dup(r->path);
		for (char *q = path; *q; q++)
			if (*q == ' ' || *q == '"')
				*q = '?';
		char who[96];
		if (r->actor.kind == GD_ACTOR_NONE)
			snprintf(who, sizeof(who), "-");
		else
			actor_label(who, sizeof(who), &r->actor);
		if (r->actor.kind == GD_ACTOR_TOKEN) /* the token's id, not its name: names need not be unique */
			snprintf(who, sizeof(who), "token:%s", r->actor.id);
		const char *pattern = r->route ? r->route->pattern : "-";
		if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
			gn_log(lvl, "event=request method=%s path=%s route=%s status=%d dur_ms=%.3f actor=%s",
			       r->method, path, pattern, status, (double)dur / 1e6, who);
		else
			gn_log(lvl,
			       "event=request method=%s path=%s route=%s status=%d dur_ms=%.3f actor=%s aborted=true",
			       r->method, path, pattern, status, (double)dur / 1e6, who);
		free(path);
	}
	if (abort_stream)
		r->stream->abort(r);
	if (logged || abort_stream)
		gn_log_set_context(NULL);
	if (r->db)
		db_release(gd.pool, r->db);
	if (r->resp_fd >= 0)
		close(r->resp_fd);
	for (int i = 0; i < r->nhdr; i++)
		free(r->hdr_value[i]);
	/* A kept-alive connection now waits for the next request's headers. */
	change_phase(r, PHASE_HEADERS);
	gn_buf_cleanup(&r->body);
	free(r->resp);
	free(r->param_store);
	free(r->path);
	free(r);
	*req_cls = NULL;
	atomic_fetch_sub(&inflight, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	size_t n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	gn_log(GN_LOG_WARN, "event=mhd msg=\"%s\"", msg);
}

int http_start(int fd, const struct sockaddr *addr, gn_err *err)
{
	static pthread_once_t stripes_once = PTHREAD_ONCE_INIT;
	pthread_once(&routes_once, collect_routes);
	pthread_once(&stripes_once, init_stripes);
	/* Bound at start-up, before the database; accepting only now, so that a client is refused
	 * (not kept waiting) while gangliond prepares. */
	if (listen(fd, 1024) < 0) {
		gn_err_set(err, GN_ERROR, "cannot listen on %s: %s", config_get()->listen, strerror(errno));
		close(fd);
		return GN_ERROR;
	}
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_USE_TURBO |
			 MHD_USE_ERROR_LOG |
			 MHD_USE_SUPPRESS_DATE_NO_CLOCK; /* queue() adds its own Date, made once a second */
	if (addr->sa_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	struct MHD_OptionItem tls[4];
	if (http_tls_enabled()) {
		/* libmicrohttpd 0.9.75's epoll loop spins on a connection whose TLS handshake waits for the
		 * client (GnuTLS reads the socket itself, so the loop never sees the EAGAIN that would take
		 * it off the ready list): one silent TCP connection kept a core busy. poll(2) waits. */
		flags = (flags & ~(unsigned)(MHD_USE_EPOLL | MHD_USE_TURBO)) | MHD_USE_POLL | MHD_USE_TLS;
		http_tls_mhd_options(tls);
	}
	daemon_ = MHD_start_daemon(
		flags, 0, NULL, NULL, on_request, NULL, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
		MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)config_get()->threads,
		/* Small per connection (8 KiB default): enough for API headers; bodies are copied out as they
		 * stream. libmicrohttpd clears the pool on every keep-alive request (PITFALLS.md). */
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)config_get()->connection_memory,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)config_get()->connection_timeout,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)config_get()->per_ip_connection_limit,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)config_get()->connection_limit, MHD_OPTION_UNESCAPE_CALLBACK,
		unescape, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_NOTIFY_CONNECTION,
		on_connection, NULL,
		/* HTTPS: the certificate callback, cipher policy and client CA (server/http_tls.c) */
		http_tls_enabled() ? MHD_OPTION_ARRAY : MHD_OPTION_END, tls, MHD_OPTION_END);
	if (!daemon_) /* libmicrohttpd has logged why (event=mhd) */
		return gn_err_set(err, GN_ERROR, "cannot serve on %s", config_get()->listen);
	return reaper_start(err);
}

void http_stop(int64_t grace_s)
{
	if (!daemon_)
		return;
	/* Stop accepting, let in-flight requests finish, then close what is left (idle keep-alives). */
	MHD_socket s = MHD_quiesce_daemon(daemon_);
	if (s != MHD_INVALID_SOCKET)
		close(s);
	uint64_t deadline = gn_mono_ns() + (uint64_t)grace_s * 1000000000ull;
	while (atomic_load(&inflight) > 0 && gn_mono_ns() < deadline)
		usleep(10000);
	if (atomic_load(&inflight) > 0)
		gn_log(GN_LOG_WARN, "event=shutdown_grace_expired inflight=%d", atomic_load(&inflight));
	reaper_end();
	MHD_stop_daemon(daemon_);
	daemon_ = NULL;
}
