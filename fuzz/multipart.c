/* Fuzz target: the multipart/form-data parser of model uploads. gangliond streams
 * POST /v1/models/{name}/versions through libmicrohttpd's post processor (server/http_models.c,
 * on_part); this target runs the same parser as the server configures it (a 256 KiB buffer), in a
 * libmicrohttpd daemon in this process, on a request whose Content-Type is the input's first line
 * and whose body is the rest.
 *
 * Properties, the ones on_part relies on: a part's chunks come in order,
 * offset 0 first and each next one where the last ended (on_part takes offset 0 for the start of
 * another part: "more than one 'artifact' part"); the parts never hold more bytes than the body
 * sent; every delivered byte is readable. A part without Content-Disposition comes with no name
 * (key NULL): on_part refuses it (this target found gangliond crashing on one). */
#include <microhttpd.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"
#include "fuzz.h"

struct upload {
	struct MHD_PostProcessor *pp;
	char key[256]; /* the part being received */
	uint64_t part_bytes;
	uint64_t total;
	uint64_t body_size; /* its Content-Length */
	unsigned sum;       /* reads every delivered byte */
};

static struct MHD_Daemon *daemon_;

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
			       const char *content_type, const char *transfer_encoding, const char *data, uint64_t off,
			       size_t size)
{
	struct upload *u = cls;
	if (!key)
		key = "";
	FUZZ_CHECK(size == 0 || data != NULL, "%zu bytes at NULL", size);
	if (off == 0) {
		snprintf(u->key, sizeof(u->key), "%s", key);
		u->part_bytes = 0;
	}
	FUZZ_CHECK(off == u->part_bytes, "part '%s' continues at offset %llu after %llu bytes", key,
		   (unsigned long long)off, (unsigned long long)u->part_bytes);
	FUZZ_CHECK(strncmp(u->key, key, sizeof(u->key) - 1) == 0, "part '%s' continues as '%s'", u->key, key);
	for (size_t i = 0; i < size; i++)
		u->sum += (unsigned char)data[i];
	for (const char *s = filename; s && *s; s++)
		u->sum += (unsigned char)*s;
	for (const char *s = content_type; s && *s; s++)
		u->sum += (unsigned char)*s;
	u->part_bytes += size;
	u->total += size;
	/* (Per request: a request cut short is flushed in on_done, maybe while the next one runs.) */
	FUZZ_CHECK(u->total <= u->body_size, "the parts hold %llu bytes of a %llu-byte body",
		   (unsigned long long)u->total, (unsigned long long)u->body_size);
	return MHD_YES;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status)
{
	static char ok[] = "ok";
	struct MHD_Response *resp = MHD_create_response_from_buffer(2, ok, MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				  const char *version, const char *upload, size_t *upload_size, void **ctx)
{
	struct upload *u = *ctx;
	if (!u) {
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		u = gn_calloc(1, sizeof(*u));
		u->body_size = cl ? strtoull(cl, NULL, 10) : 0;
		u->pp = MHD_create_post_processor(c, 256 * 1024, on_part, u);
		*ctx = u;
		return MHD_YES;
	}
	if (*upload_size) {
		if (u->pp)
			(void)MHD_post_process(u->pp, upload, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	bool ok = u->pp && MHD_destroy_post_processor(u->pp) == MHD_YES;
	u->pp = NULL;
	return reply(c, ok ? 200 : 400);
}

static void on_done(void *cls, struct MHD_Connection *c, void **ctx, enum MHD_RequestTerminationCode toe)
{
	struct upload *u = *ctx;
	if (!u)
		return;
	if (u->pp)
		MHD_destroy_post_processor(u->pp);
	free(u);
	*ctx = NULL;
}

static void stop(void)
{
	MHD_stop_daemon(daemon_);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	daemon_ = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_NO_LISTEN_SOCKET, 0, NULL,
				   NULL, on_request, NULL, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)8192,
				   MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_NOTIFY_COMPLETED, on_done,
				   NULL, MHD_OPTION_END);
	FUZZ_CHECK(daemon_ != NULL, "cannot start libmicrohttpd");
	atexit(stop);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	if (!nl)
		return 0;
	size_t ctlen = (size_t)(nl - data);
	if (ctlen && data[ctlen - 1] == '\r')
		ctlen--;
	if (memchr(data, '\r', ctlen) || memchr(data, '\0', ctlen))
		return 0;
	const char *body = (const char *)nl + 1;
	size_t body_size = size - (size_t)(nl + 1 - data);
	gn_buf req;
	gn_buf_init(&req);
	gn_buf_printf(&req,
		      "POST /v1/models/m/versions HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n"
		      "Content-Type: %.*s\r\nContent-Length: %zu\r\n\r\n",
		      (int)ctlen, (const char *)data, body_size);
	gn_buf_append(&req, body, body_size);

	int sv[2];
	struct sockaddr_in peer = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
	FUZZ_CHECK(MHD_add_connection(daemon_, sv[1], (const struct sockaddr *)&peer, sizeof(peer)) == MHD_YES,
		   "MHD_add_connection");
	for (size_t off = 0; off < req.len;) {
		ssize_t w = send(sv[0], req.data + off, req.len - off, MSG_NOSIGNAL);
		if (w <= 0)
			break; /* refused early: the daemon closed its end */
		off += (size_t)w;
	}
	shutdown(sv[0], SHUT_WR);
	char buf[4096];
	while (read(sv[0], buf, sizeof(buf)) > 0)
		;
	close(sv[0]);
	gn_buf_cleanup(&req);
	return 0;
}
