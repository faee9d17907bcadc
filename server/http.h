/* The REST API's HTTP layer: libmicrohttpd on an epoll thread pool, the route table, the
 * per-request context, authentication, problem+json errors and request logging. */
#ifndef GD_HTTP_H
#define GD_HTTP_H

#include <jansson.h>
#include <microhttpd.h>
#include <sys/socket.h>

#include "actor.h"
#include "common.h"
#include "config.h"
#include "db.h"
#include "json.h"

struct gd_req;
typedef void (*gd_handler)(struct gd_req *r);

/* Routes whose bodies are streamed rather than buffered (uploads). The caller is authenticated
 * before the first byte is accepted. begin/data answer (gd_reply_*) and return non-zero to refuse;
 * the rest of the body is then discarded. abort releases what begin took if the request did not
 * reach its handler (client gone, error). */
struct gd_stream {
	int (*begin)(struct gd_req *r);
	int (*data)(struct gd_req *r, const char *buf, size_t len);
	void (*abort)(struct gd_req *r);
};

struct gd_route {
	const char *method;
	const char *pattern; /* "/v1/devices/{id}" */
	unsigned scope;      /* GD_SCOPE_PUBLIC, or the scopes any one of which opens it */
	gd_handler handler;  /* runs once the whole body is in */
	const struct gd_stream *stream;
};

/* Starts the HTTP daemon on fd, a socket bound to addr and not yet listening (taken over, also on
 * failure); GN_ERROR naming the configured address if it cannot listen. */
int http_start(int fd, const struct sockaddr *addr, gn_err *err) GN_WUR;
/* Stops accepting connections, waits up to grace_s for in-flight requests, then stops. */
void http_stop(int64_t grace_s);
/* Returns the route table (borrowed) and its length, for `gangliond routes`. */
const struct gd_route *http_routes(size_t *out_n);

/* Who is asking (borrowed; kind GD_ACTOR_NONE on public routes). */
const struct gd_actor *gd_actor(struct gd_req *r);
/* The libmicrohttpd connection (for headers and the post processor). Borrowed. */
struct MHD_Connection *gd_connection(struct gd_req *r);
/* A streamed route's own state (owned by its stream ops). */
void *gd_stream_ctx(struct gd_req *r);
void gd_set_stream_ctx(struct gd_req *r, void *ctx);
/* True once an answer has been set. */
bool gd_answered(const struct gd_req *r);
/* Marks a request as a device's routine traffic (a check-in that changed nothing, a token
 * renewal): its request line is logged at debug unless it fails, so that the log at info shows
 * changes and failures. */
void gd_routine(struct gd_req *r);
/* Returns the request's pooled connection early (e.g. before a long upload); gd_db takes a new
 * one if needed later. */
void gd_db_release(struct gd_req *r);

/* Returns path parameter i ("{id}" etc.) of the matched route. Borrowed. */
const char *gd_param(struct gd_req *r, int i);
/* Returns query argument key, or NULL. Borrowed. */
const char *gd_query(struct gd_req *r, const char *key);
/* Returns a pooled database connection for this request, released when the request ends. */
db_conn *gd_db(struct gd_req *r);
/* Returns the request's body as received (borrowed, NUL-terminated; "" when there is none), for
 * bodies that must be seen byte for byte (a webhook's signature covers them). */
const char *gd_body(struct gd_req *r, size_t *out_len);
/* Parses the body as a JSON object checked against fields; on failure answers 400 and returns
 * non-zero, so the handler just returns. *out is a new reference. */
int gd_body_json(json_t **out, struct gd_req *r, const gn_json_field *fields, size_t n) GN_WUR;
/* The same for a route whose body may be left out: none at all reads as {}. */
int gd_body_json_opt(json_t **out, struct gd_req *r, const gn_json_field *fields, size_t n) GN_WUR;
/* For routes that take compressed bodies: with Content-Encoding: gzip, inflates the body in place
 * (gd_body and gd_body_json then see the JSON), at most max-body bytes of it. Answers 413 when it
 * would inflate beyond that, 400 when it is not valid gzip, 415 for another encoding, and returns
 * non-zero. Without Content-Encoding nothing changes; gd_body_json refuses encoded bodies (415) on
 * routes that did not call this. */
int gd_body_gunzip(struct gd_req *r) GN_WUR;

/* Answers with a JSON value (reference stolen). */
void gd_reply_json(struct gd_req *r, int status, json_t *body);
/* Answers with pre-serialised bytes (copied). */
void gd_reply_raw(struct gd_req *r, int status, const char *type, const char *body, size_t len);
/* Answers with len bytes of fd from offset (fd is owned by the request from now on). */
void gd_reply_fd(struct gd_req *r, int status, const char *type, int fd, uint64_t offset, uint64_t len);
/* Answers with the next len bytes read from a pipe (fd owned by the request from now on); a pipe
 * that ends early cuts the connection. */
void gd_reply_pipe(struct gd_req *r, int status, const char *type, int fd, uint64_t len);
/* Adds a response header (value copied); name must be a string literal. */
void gd_header(struct gd_req *r, const char *name, const char *value);
/* Whether the request's If-None-Match names etag (gn_http_etag_match): the client's copy is
 * current, the answer a 304. */
bool gd_not_modified(struct gd_req *r, const char *etag);
/* Answers a domain call's outcome: on rc == 0 status with json (JSON text, taken and freed), else
 * the error in err (json is then NULL or freed all the same). */
void gd_reply_text(struct gd_req *r, int rc, int status, char *json, const gn_err *err);
/* Answers with a problem+json body. */
void gd_reply_problem(struct gd_req *r, int status, const char *detail);
/* Answers for a failure: the status comes from err->code through the one GN_E -> HTTP table. */
void gd_reply_error(struct gd_req *r, const gn_err *err);
/* Counts this request against the rate limits of class `what` ("challenge", "token", "enroll",
 * "upload"): per client address (rate-limit-address) and, when identity is not NULL, per identity
 * (rate-limit-identity), which must have one spelling per identity, or each spelling gets an
 * allowance of its own: a hash of an enrollment token, an API token id as the database writes it;
 * device ids as a client sent them go through gd_rate_limit_device. Over either, answers 429
 * problem+json with Retry-After and returns non-zero. In memory, per replica. */
int gd_rate_limit(struct gd_req *r, const char *what, const char *identity) GN_WUR;
/* gd_rate_limit with a device id as the identity, counted by the device's UUID whatever the case of
 * its hex digits (which all name the one device), so that varying them gives no fresh allowance.
 * An id that is not a UUID names no device (the handler refuses it): only its address counts it. */
int gd_rate_limit_device(struct gd_req *r, const char *what, const char *device_id) GN_WUR;
/* Maps a GN_E code to its HTTP status. */
int gd_http_status(int code);

/* Parses the limit query arg (1..1000, default dflt); answers 400 and returns non-zero on a bad
 * one. The one parser of limit, so that every route refuses it alike. */
int gd_limit_arg(int *out_limit, struct gd_req *r, int dflt) GN_WUR;
/* Parses limit (gd_limit_arg, default 100) and cursor query args; answers 400 and returns non-zero
 * on a bad limit. */
int gd_page_args(int *out_limit, const char **out_cursor, struct gd_req *r) GN_WUR;
/* Answers a page of a list: res holds up to limit+1 rows of (JSON text, cursor); the extra row
 * only tells that there is a next page. */
void gd_reply_page(struct gd_req *r, const PGresult *res, int limit);
enum gd_cursor { CURSOR_UUID, CURSOR_INT, CURSOR_TEXT };

/* Answers a paged list: runs st with parameters fixed[0..nfixed), then the cursor (query arg
 * "cursor", checked to be of `kind`; NULL for the first page), then the row limit. The statement
 * returns (JSON text, cursor) rows. Answers 400 for a bad limit or cursor. */
void gd_list(struct gd_req *r, const db_stmt *st, enum gd_cursor kind, const char *const *fixed, int nfixed);

/* Runs audit_change (one change and its audit row, own transaction) as r's actor on r's
 * connection; on failure it answers (404 `missing` when no row matched) and returns non-zero. */
int gd_audit_change(PGresult **out, struct gd_req *r, const db_stmt *st, const char *const *params, const char *missing,
		    const char *action, const char *object_type, const char *object_id, json_t *detail) GN_WUR;

/* The route tables, one per http_<resource>.c, next to its handlers; http.c collects them. */
#define GD_ROUTE_TABLE(name)                                 \
	extern const struct gd_route http_##name##_routes[]; \
	extern const size_t http_##name##_nroutes
GD_ROUTE_TABLE(health);
GD_ROUTE_TABLE(tokens);
GD_ROUTE_TABLE(enroll);
GD_ROUTE_TABLE(agent);
GD_ROUTE_TABLE(checkin);
GD_ROUTE_TABLE(devices);
GD_ROUTE_TABLE(device_tokens);
GD_ROUTE_TABLE(desired);
GD_ROUTE_TABLE(audit);
GD_ROUTE_TABLE(models);
GD_ROUTE_TABLE(artifacts);
GD_ROUTE_TABLE(tuf);
GD_ROUTE_TABLE(tuf_deleg);
GD_ROUTE_TABLE(deployments);
GD_ROUTE_TABLE(rollouts);
GD_ROUTE_TABLE(gitops);
GD_ROUTE_TABLE(telemetry);
GD_ROUTE_TABLE(status);
GD_ROUTE_TABLE(ui);

/* Frees /metrics' cached alerts (at exit). */
void http_health_cleanup(void);

/* The request-body field tables that live beside their handlers (a domain module's own are in its
 * header): shared with fuzz/json_body.c, which fuzzes every route's body with its table. */
#define GD_BODY_FIELDS(name)                               \
	extern const gn_json_field http_##name##_fields[]; \
	extern const size_t http_##name##_nfields
GD_BODY_FIELDS(agent_challenge);
GD_BODY_FIELDS(agent_token);
GD_BODY_FIELDS(checkin);
GD_BODY_FIELDS(desired);
GD_BODY_FIELDS(desired_bulk);
GD_BODY_FIELDS(devices_patch);
GD_BODY_FIELDS(models_alias);
GD_BODY_FIELDS(models_yank);
GD_BODY_FIELDS(tuf_root);
GD_BODY_FIELDS(tuf_rotate);
GD_BODY_FIELDS(tuf_draft);
GD_BODY_FIELDS(gitops_sync);
GD_BODY_FIELDS(gitops_plan);
GD_BODY_FIELDS(device_tokens_rotate);

#endif
