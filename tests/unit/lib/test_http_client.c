/* Unit tests for lib/http_client.c against a small libmicrohttpd server in this process: what a
 * request sends and what comes back (status, body, content type, ETag), the bounds (response size,
 * timeout, refused connection), the status-to-code table with problem details, URL escaping,
 * streamed downloads (resume with Range, a server that ignores it, 404, a sink that stops, the
 * deadline) and multipart uploads streamed from a file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <microhttpd.h>

#include "http_client.h"

static struct MHD_Daemon *daemon_;
static char base[64];
/* What the server saw of the last request. */
static char seen_method[16], seen_auth[256], seen_inm[128], seen_range[64], seen_ctype[256];
static gn_buf seen_body;

static const char artifact[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

static void copy_header(char *dst, size_t n, struct MHD_Connection *c, const char *name)
{
	const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
	snprintf(dst, n, "%s", v ? v : "");
}

static enum MHD_Result answer(struct MHD_Connection *c, unsigned status, const char *ctype, const char *body,
			      size_t len, const char *etag)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (ctype)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	if (etag)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, etag);
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* A body sent slowly: 4 bytes every 300 ms. */
static ssize_t trickle(void *cls, uint64_t pos, char *buf, size_t max)
{
	if (pos >= sizeof(artifact) - 1)
		return MHD_CONTENT_READER_END_OF_STREAM;
	usleep(300 * 1000);
	size_t n = sizeof(artifact) - 1 - pos;
	n = n < 4 ? n : 4;
	n = n < max ? n : max;
	memcpy(buf, artifact + pos, n);
	return (ssize_t)n;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
			       const char *version, const char *upload_data, size_t *upload_size, void **ctx)
{
	if (!*ctx) { /* first call: headers only */
		*ctx = (void *)1;
		gn_buf_cleanup(&seen_body);
		gn_buf_init(&seen_body);
		snprintf(seen_method, sizeof(seen_method), "%s", method);
		copy_header(seen_auth, sizeof(seen_auth), c, MHD_HTTP_HEADER_AUTHORIZATION);
		copy_header(seen_inm, sizeof(seen_inm), c, MHD_HTTP_HEADER_IF_NONE_MATCH);
		copy_header(seen_range, sizeof(seen_range), c, MHD_HTTP_HEADER_RANGE);
		copy_header(seen_ctype, sizeof(seen_ctype), c, MHD_HTTP_HEADER_CONTENT_TYPE);
		return MHD_YES;
	}
	if (*upload_size) {
		gn_buf_append(&seen_body, upload_data, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	static const char problem[] =
		"{\"type\":\"about:blank\",\"title\":\"Conflict\",\"status\":409,\"detail\":\"version 1.0.0 exists\"}";
	if (strcmp(url, "/json") == 0) {
		if (strcmp(seen_inm, "\"v7\"") == 0)
			return answer(c, 304, NULL, "", 0, "\"v7\"");
		return answer(c, 200, "application/json", "{\"ok\":true}", 11, "\"v7\"");
	}
	if (strcmp(url, "/echo") == 0)
		return answer(c, 201, "application/octet-stream", seen_body.data ? seen_body.data : "", seen_body.len,
			      NULL);
	if (strcmp(url, "/conflict") == 0)
		return answer(c, 409, "application/problem+json", problem, sizeof(problem) - 1, NULL);
	if (strcmp(url, "/big") == 0) {
		static char big[100000];
		memset(big, 'x', sizeof(big));
		return answer(c, 200, "text/plain", big, sizeof(big), NULL);
	}
	if (strcmp(url, "/slow") == 0) {
		sleep(3);
		return answer(c, 200, "text/plain", "late", 4, NULL);
	}
	if (strcmp(url, "/artifact") == 0 || strcmp(url, "/norange") == 0) {
		size_t n = sizeof(artifact) - 1;
		unsigned long long from = 0;
		if (strcmp(url, "/artifact") == 0 && sscanf(seen_range, "bytes=%llu-", &from) == 1 && from < n) {
			struct MHD_Response *r = MHD_create_response_from_buffer(n - from, (void *)(artifact + from),
										 MHD_RESPMEM_PERSISTENT);
			char cr[64];
			snprintf(cr, sizeof(cr), "bytes %llu-%zu/%zu", from, n - 1, n);
			MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
			enum MHD_Result ret = MHD_queue_response(c, 206, r);
			MHD_destroy_response(r);
			return ret;
		}
		return answer(c, 200, "application/octet-stream", artifact, n, NULL);
	}
	if (strcmp(url, "/trickle") == 0) {
		struct MHD_Response *r =
			MHD_create_response_from_callback(sizeof(artifact) - 1, 64, trickle, NULL, NULL);
		enum MHD_Result ret = MHD_queue_response(c, 200, r);
		MHD_destroy_response(r);
		return ret;
	}
	static const char missing[] =
		"{\"type\":\"about:blank\",\"title\":\"Not Found\",\"status\":404,\"detail\":\"no such thing\"}";
	return answer(c, 404, "application/problem+json", missing, sizeof(missing) - 1, NULL);
}

static int setup(void **state)
{
	gn_buf_init(&seen_body);
	daemon_ = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL, NULL,
				   handler, NULL, MHD_OPTION_END);
	assert_non_null(daemon_);
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT);
	snprintf(base, sizeof(base), "http://127.0.0.1:%u", (unsigned)info->port);
	return 0;
}

static int teardown(void **state)
{
	MHD_stop_daemon(daemon_);
	gn_buf_cleanup(&seen_body);
	return 0;
}

static char *url(const char *path)
{
	static char buf[256];
	snprintf(buf, sizeof(buf), "%s%s", base, path);
	return buf;
}

static void test_request_and_response(void **state)
{
	gn_err err;
	gn_http_resp resp;
	gn_http_req req = {.method = "GET", .url = url("/json"), .token = "gna_secret"};
	assert_int_equal(gn_http_do(&resp, &req, &err), 0);
	assert_int_equal(resp.status, 200);
	assert_int_equal(resp.body.len, 11);
	assert_memory_equal(resp.body.data, "{\"ok\":true}", 11);
	assert_string_equal(resp.content_type, "application/json");
	assert_string_equal(resp.etag, "\"v7\"");
	assert_string_equal(seen_method, "GET");
	assert_string_equal(seen_auth, "Bearer gna_secret");
	assert_int_equal(gn_http_check(&resp, &err), 0);
	gn_http_resp_cleanup(&resp);
	/* If-None-Match goes out as given; a 304 is a status like any other. */
	req.if_none_match = "\"v7\"";
	req.token = NULL;
	assert_int_equal(gn_http_do(&resp, &req, &err), 0);
	assert_int_equal(resp.status, 304);
	assert_string_equal(seen_auth, "");
	assert_int_equal(gn_http_check(&resp, &err), 0);
	gn_http_resp_cleanup(&resp);
	/* A body goes out with its content type (JSON unless told). */
	const char body[] = "{\"a\":[1,2,3]}";
	gn_http_req post = {.method = "POST", .url = url("/echo"), .body = body, .body_len = sizeof(body) - 1};
	assert_int_equal(gn_http_do(&resp, &post, &err), 0);
	assert_int_equal(resp.status, 201);
	assert_string_equal(seen_method, "POST");
	assert_string_equal(seen_ctype, "application/json");
	assert_int_equal(resp.body.len, sizeof(body) - 1);
	assert_memory_equal(resp.body.data, body, sizeof(body) - 1);
	gn_http_resp_cleanup(&resp);
	post.method = "PATCH";
	post.content_type = "text/plain";
	assert_int_equal(gn_http_do(&resp, &post, &err), 0);
	assert_string_equal(seen_method, "PATCH");
	assert_string_equal(seen_ctype, "text/plain");
	gn_http_resp_cleanup(&resp);
}

static void test_bounds(void **state)
{
	gn_err err;
	gn_http_resp resp;
	gn_http_req big = {.method = "GET", .url = url("/big"), .max_response = 1000};
	assert_int_equal(gn_http_do(&resp, &big, &err), GN_ETOOBIG);
	gn_http_resp_cleanup(&resp);
	big.max_response = 0; /* 64 MiB */
	assert_int_equal(gn_http_do(&resp, &big, &err), 0);
	assert_int_equal(resp.body.len, 100000);
	gn_http_resp_cleanup(&resp);
	gn_http_req slow = {.method = "GET", .url = url("/slow"), .timeout_s = 1};
	assert_int_equal(gn_http_do(&resp, &slow, &err), GN_EUNAVAIL);
	gn_http_resp_cleanup(&resp);
	/* Nothing listens on port 1. */
	gn_http_req refused = {.method = "GET", .url = "http://127.0.0.1:1/x"};
	assert_int_equal(gn_http_do(&resp, &refused, &err), GN_EUNAVAIL);
	assert_int_equal(resp.status, 0);
	gn_http_resp_cleanup(&resp);
	/* A client certificate without its key (or the reverse) is refused before any connection. */
	gn_http_req half = {.method = "GET", .url = url("/big"), .client_cert = "/nonexistent.pem"};
	assert_int_equal(gn_http_do(&resp, &half, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "client certificate needs its key"));
	gn_http_resp_cleanup(&resp);
	half.client_cert = NULL;
	half.client_key = "/nonexistent.key";
	assert_int_equal(gn_http_do(&resp, &half, &err), GN_EINVAL);
	gn_http_resp_cleanup(&resp);
}

/* The table in http_client.h, and the server's problem detail carried into the message. */
static void test_status_codes(void **state)
{
	static const struct {
		long status;
		int code;
	} table[] = {{200, 0},
		     {204, 0},
		     {304, 0},
		     {400, GN_EINVAL},
		     {401, GN_EAUTH},
		     {403, GN_EFORBIDDEN},
		     {404, GN_ENOTFOUND},
		     {409, GN_ECONFLICT},
		     {410, GN_EGONE},
		     {413, GN_ETOOBIG},
		     {422, GN_EINVAL},
		     {500, GN_EUNAVAIL},
		     {502, GN_EUNAVAIL},
		     {503, GN_EUNAVAIL},
		     {0, GN_EUNAVAIL}};
	for (size_t i = 0; i < GN_ARRAY_LEN(table); i++) {
		gn_err err;
		gn_http_resp resp = {.status = table[i].status};
		gn_buf_init(&resp.body);
		int rc = gn_http_check(&resp, &err);
		if (rc != table[i].code)
			fail_msg("HTTP %ld: code %d, expected %d", table[i].status, rc, table[i].code);
		if (rc && table[i].status)
			assert_non_null(strstr(err.msg, "HTTP"));
	}
	gn_err err;
	gn_http_resp resp;
	gn_http_req req = {.method = "GET", .url = url("/conflict")};
	assert_int_equal(gn_http_do(&resp, &req, &err), 0);
	assert_int_equal(gn_http_check(&resp, &err), GN_ECONFLICT);
	assert_non_null(strstr(err.msg, "version 1.0.0 exists"));
	assert_non_null(strstr(err.msg, "409"));
	gn_http_resp_cleanup(&resp);
}

static void test_escape(void **state)
{
	static const char *cases[][2] = {
		{"abcXYZ019-._~", "abcXYZ019-._~"},
		{"site=north,type!=cam", "site%3Dnorth%2Ctype%21%3Dcam"},
		{"a b/c?d&e#f%", "a%20b%2Fc%3Fd%26e%23f%25"},
		{"Z\xc3\xbcrich", "Z%C3%BCrich"},
		{"", ""},
	};
	for (size_t i = 0; i < GN_ARRAY_LEN(cases); i++) {
		char *e = gn_http_escape(cases[i][0]);
		assert_string_equal(e, cases[i][1]);
		free(e);
	}
}

static void test_etag_match(void **state)
{
	static const struct {
		const char *inm, *etag;
		bool match;
	} cases[] = {
		{"\"a1\"", "\"a1\"", true},
		{"W/\"a1\"", "\"a1\"", true}, /* weak comparison, both ways */
		{"\"a1\"", "W/\"a1\"", true},
		{"W/\"a1\"", "W/\"a1\"", true},
		{"*", "\"a1\"", true},
		{" * ", "\"a1\"", true},
		{"*x", "\"a1\"", false}, /* "*" only as the whole field */
		{"*, \"b\"", "\"a1\"", false},
		{"\"x\", \"a1\"", "\"a1\"", true},
		{"\"x\",W/\"a1\" ,\"y\"", "\"a1\"", true},
		{"\"a,1\"", "\"a,1\"", true}, /* a comma inside the quotes */
		{"\"a,1\"", "\"a\"", false},
		{"\"a1\"", "\"a\"", false},
		{"\"a\"", "\"a1\"", false},
		{"\"xa1\"", "\"a1\"", false},
		{"\"a1", "\"a1\"", false},
		{"a1", "\"a1\"", false},
		{"", "\"a1\"", false},
		{" , ", "\"a1\"", false},
		{NULL, "\"a1\"", false},
	};
	for (size_t i = 0; i < GN_ARRAY_LEN(cases); i++) {
		if (gn_http_etag_match(cases[i].inm, cases[i].etag) != cases[i].match)
			fail_msg("case %zu: If-None-Match %s, ETag %s: expected %d", i,
				 cases[i].inm ? cases[i].inm : "(none)", cases[i].etag, cases[i].match);
	}
}

struct sink_state {
	gn_buf got;
	size_t stop_after; /* 0: never */
};

static int sink(void *ud, const void *data, size_t len, gn_err *err)
{
	struct sink_state *s = ud;
	gn_buf_append(&s->got, data, len);
	if (s->stop_after && s->got.len >= s->stop_after)
		return gn_err_set(err, GN_EAUTH, "the sink has seen enough");
	return 0;
}

static void test_download(void **state)
{
	gn_err err;
	long status = -1;
	size_t n = sizeof(artifact) - 1;
	struct sink_state s = {0};
	gn_buf_init(&s.got);
	gn_http_download_req req = {.url = url("/artifact"), .token = "gnd_t", .sink = sink, .sink_ud = &s};
	assert_int_equal(gn_http_download(&status, &req, &err), 0);
	assert_int_equal(status, 200);
	assert_int_equal(s.got.len, n);
	assert_memory_equal(s.got.data, artifact, n);
	assert_string_equal(seen_auth, "Bearer gnd_t");
	assert_string_equal(seen_range, "");
	/* Resumed from byte 20: a Range request, and only the rest reaches the sink. */
	s.got.len = 0;
	req.offset = 20;
	req.length = n;
	assert_int_equal(gn_http_download(&status, &req, &err), 0);
	assert_int_equal(status, 206);
	assert_string_equal(seen_range, "bytes=20-");
	assert_int_equal(s.got.len, n - 20);
	assert_memory_equal(s.got.data, artifact + 20, n - 20);
	/* A server that ignores the Range and sends the whole file: refused, nothing to the sink. */
	s.got.len = 0;
	req.url = url("/norange");
	assert_int_equal(gn_http_download(&status, &req, &err), GN_EUNAVAIL);
	assert_int_equal(status, 200);
	assert_int_equal(s.got.len, 0);
	/* 404. */
	req.url = url("/missing");
	req.offset = 0;
	assert_int_equal(gn_http_download(&status, &req, &err), GN_ENOTFOUND);
	assert_int_equal(status, 404);
	assert_int_equal(s.got.len, 0);
	/* The sink stops it: its own code and message come back. */
	req.url = url("/artifact");
	s.stop_after = 10;
	assert_int_equal(gn_http_download(&status, &req, &err), GN_EAUTH);
	assert_non_null(strstr(err.msg, "the sink has seen enough"));
	/* The deadline: a body that takes 5 s, a deadline of 1 s. */
	s.got.len = 0;
	s.stop_after = 0;
	req.url = url("/trickle");
	req.deadline_s = 1;
	assert_int_equal(gn_http_download(&status, &req, &err), GN_EUNAVAIL);
	assert_non_null(strstr(err.msg, "download stopped at"));
	assert_true(s.got.len < n);
	/* The stop flag, set before it starts. */
	_Atomic bool stop = true;
	req.deadline_s = 0;
	req.stop = &stop;
	s.got.len = 0;
	assert_int_equal(gn_http_download(&status, &req, &err), GN_EUNAVAIL);
	assert_true(s.got.len < n);
	gn_buf_cleanup(&s.got);
}

static void test_upload_multipart(void **state)
{
	gn_err err;
	char path[] = "/tmp/gn-test-upload-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	/* 3 MiB and a bit: streamed from the file in pieces. */
	size_t size = (3u << 20) + 7;
	char *data = malloc(size);
	for (size_t i = 0; i < size; i++)
		data[i] = (char)('a' + i % 26);
	assert_int_equal(write(fd, data, size), (ssize_t)size);
	close(fd);
	const char meta[] = "{\"version\":\"1.0.0\"}";
	gn_http_part parts[] = {
		{.name = "metadata", .content_type = "application/json", .data = meta, .data_len = sizeof(meta) - 1},
		{.name = "artifact", .content_type = "application/octet-stream", .path = path, .filename = "m.onnx"},
	};
	gn_http_upload up = {.url = url("/echo"), .token = "gna_ci", .parts = parts, .nparts = 2};
	gn_http_resp resp;
	assert_int_equal(gn_http_upload_multipart(&resp, &up, &err), 0);
	assert_int_equal(resp.status, 201);
	assert_string_equal(seen_method, "POST");
	assert_string_equal(seen_auth, "Bearer gna_ci");
	assert_non_null(strstr(seen_ctype, "multipart/form-data; boundary="));
	/* The body the server saw: the metadata part first, then the file byte for byte. */
	const char *b = resp.body.data;
	size_t blen = resp.body.len;
	assert_true(blen > size);
	const char *m = memmem(b, blen, "name=\"metadata\"", 15);
	const char *a = memmem(b, blen, "name=\"artifact\"; filename=\"m.onnx\"", 34);
	assert_non_null(m);
	assert_non_null(a);
	assert_true(m < a);
	assert_non_null(memmem(m, (size_t)(a - m), meta, sizeof(meta) - 1));
	const char *start = memmem(a, blen - (size_t)(a - b), "\r\n\r\n", 4);
	assert_non_null(start);
	start += 4;
	assert_true((size_t)(b + blen - start) >= size);
	assert_memory_equal(start, data, size);
	gn_http_resp_cleanup(&resp);
	/* A file that cannot be read. */
	unlink(path);
	assert_int_equal(gn_http_upload_multipart(&resp, &up, &err), GN_ERROR);
	gn_http_resp_cleanup(&resp);
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_and_response), cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_status_codes),         cmocka_unit_test(test_escape),
		cmocka_unit_test(test_etag_match),           cmocka_unit_test(test_download),
		cmocka_unit_test(test_upload_multipart),
	};
	return cmocka_run_group_tests_name("http_client", tests, setup, teardown);
}
