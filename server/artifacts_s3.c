/* The artifact store on S3-compatible object storage: requests signed with AWS SigV4 by libcurl
 * (CURLOPT_AWS_SIGV4), answers parsed with libxml2. Objects are PREFIX/sha256/ab/abcdef…; a
 * large upload streams as a multipart upload to PREFIX/tmp/upload-<random> and is copied under
 * its content address when the publish commits. */
#include "artifacts_s3.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "log.h"

/* Largest answer body read into memory (listings hold at most 1,000 keys). */
#define MAX_ANSWER (4 * 1024 * 1024)
/* Largest object CopyObject copies in one request; beyond it S3 needs UploadPartCopy. */
#define MAX_COPY (5LL * 1024 * 1024 * 1024)
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* What every request needs; copied by a stream's thread so that it outlives nothing. */
struct s3_conf {
	char *endpoint; /* scheme://host[:port] */
	char *bucket;
	char *prefix;  /* "" or "some/prefix/" */
	char *userpwd; /* ACCESS:SECRET */
	char *sigv4;   /* aws:amz:REGION:s3 */
	int64_t part_size;
	int64_t timeout_s;
};

static struct s3_conf conf;
static bool ready;
static atomic_int streams; /* stream threads running */

struct s3_upload {
	unsigned char *buf; /* the part being gathered */
	size_t buflen;
	uint64_t total;
	char *tmp_key;   /* the multipart upload's key */
	char *upload_id; /* NULL until the first part is sent */
	char **etags;    /* ETag of each part sent */
	int nparts;
	bool completed; /* the multipart upload became the temp object */
	char digest[GN_SHA256_HEX_LEN + 1];
};

/* One request and its answer. */
struct call {
	const char *method;
	const char *key;   /* object key, or NULL for the bucket */
	const char *query; /* canonical query string (sorted, encoded, "name=" for a bare name) or NULL */
	const unsigned char *body;
	size_t body_len;
	const char *body_sha; /* hex SHA-256 of the body when known (NULL: computed) */
	const char *extra;    /* one more header line, or NULL */
	int write_fd;         /* >= 0: the answer's body goes there (a download) */
	bool ranged;          /* a download of a range that does not start at 0: only 206 will do */
	/* the answer */
	long status;
	gn_buf answer;
	char etag[160];
	uint64_t length;
};

static void conf_free(struct s3_conf *c)
{
	free(c->endpoint);
	free(c->bucket);
	free(c->prefix);
	free(c->userpwd);
	free(c->sigv4);
	memset(c, 0, sizeof(*c));
}

static void conf_copy(struct s3_conf *dst, const struct s3_conf *src)
{
	*dst = *src;
	dst->endpoint = gn_strdup(src->endpoint);
	dst->bucket = gn_strdup(src->bucket);
	dst->prefix = gn_strdup(src->prefix);
	dst->userpwd = gn_strdup(src->userpwd);
	dst->sigv4 = gn_strdup(src->sigv4);
}

/* Splits url into endpoint, bucket and prefix (new strings into c); GN_EINVAL. */
static int parse_url(struct s3_conf *c, const char *url, gn_err *err)
{
	const char *p;
	if (strncmp(url, "http://", 7) == 0)
		p = url + 7;
	else if (strncmp(url, "https://", 8) == 0)
		p = url + 8;
	else
		return gn_err_set(err, GN_EINVAL, "artifact-s3-url '%s' must start with https:// or http://", url);
	const char *slash = strchr(p, '/');
	if (slash == p || !slash || !slash[1])
		return gn_err_set(
			err, GN_EINVAL,
			"artifact-s3-url '%s' must name a host and a bucket: https://HOST[:PORT]/BUCKET[/PREFIX]", url);
	if (strcspn(p, "?#@") < strlen(p))
		return gn_err_set(err, GN_EINVAL,
				  "artifact-s3-url '%s': no user, query or fragment (credentials have their own keys)",
				  url);
	const char *b = slash + 1, *bend = strchr(b, '/');
	size_t blen = bend ? (size_t)(bend - b) : strlen(b);
	const char *pre = bend ? bend + 1 : "";
	/* Bucket names: 3-63 of a-z 0-9 . - (S3's rule); prefixes: plain characters only, so keys
	 * need no encoding and sign the same everywhere. */
	if (blen < 3 || blen > 63 || strspn(b, "abcdefghijklmnopqrstuvwxyz0123456789.-") < blen)
		return gn_err_set(err, GN_EINVAL, "artifact-s3-url '%s': '%.*s' is not a valid bucket name", url,
				  (int)blen, b);
	if (strspn(pre, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-/") < strlen(pre) ||
	    strstr(pre, "//") || strstr(pre, ".."))
		return gn_err_set(
			err, GN_EINVAL,
			"artifact-s3-url '%s': the prefix may hold only letters, digits, '.', '_', '-' and '/'", url);
	if (c) {
		c->endpoint = gn_asprintf("%.*s", (int)(slash - url), url);
		c->bucket = gn_asprintf("%.*s", (int)blen, b);
		size_t plen = strlen(pre);
		c->prefix = plen && pre[plen - 1] != '/' ? gn_asprintf("%s/", pre) : gn_strdup(pre);
	}
	return 0;
}

int artifacts_s3_url_check(const char *url, gn_err *err)
{
	return parse_url(NULL, url, err);
}

static char *content_key(const char *digest)
{
	return gn_asprintf("%ssha256/%.2s/%s", conf.prefix, digest, digest);
}

static size_t on_answer(char *data, size_t size, size_t n, void *arg)
{
	struct call *c = arg;
	size_t len = size * n;
	if (c->write_fd >= 0 && (c->status == 206 || (c->status == 200 && !c->ranged))) {
		for (size_t off = 0; off < len;) {
			ssize_t w = write(c->write_fd, data + off, len - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				return 0; /* the reader went away: stop */
			off += (size_t)w;
		}
		return len;
	}
	if (c->write_fd >= 0 && c->status / 100 == 2)
		return 0; /* a store that ignored the Range: these are not the bytes asked for */
	if (c->answer.len + len > MAX_ANSWER)
		return 0;
	gn_buf_append(&c->answer, data, len);
	return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
	struct call *c = arg;
	size_t len = size * n;
	if (len > 9 && strncmp(data, "HTTP/", 5) == 0) {
		/* A new answer (after a 100 Continue): only the last one counts. */
		c->status = strtol(strchr(data, ' ') ? strchr(data, ' ') + 1 : data, NULL, 10);
		c->etag[0] = '\0';
	} else if (len > 5 && strncasecmp(data, "ETag:", 5) == 0) {
		const char *v = data + 5;
		while (*v == ' ')
			v++;
		size_t vl = strcspn(v, "\r\n");
		if (vl < sizeof(c->etag))
			snprintf(c->etag, sizeof(c->etag), "%.*s", (int)vl, v);
	} else if (len > 15 && strncasecmp(data, "Content-Length:", 15) == 0) {
		c->length = strtoull(data + 15, NULL, 10);
	}
	return len;
}

/* Returns the text of the first element called name under node (borrowed from the document),
 * or NULL. */
static const char *xml_text(xmlNode *node, const char *name)
{
	for (xmlNode *n = node ? node->children : NULL; n; n = n->next)
		if (n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0)
			return n->children && n->children->content ? (const char *)n->children->content : "";
	return NULL;
}

static xmlDoc *xml_parse(const gn_buf *b)
{
	if (!b->len)
		return NULL;
	return xmlReadMemory(b->data, (int)b->len, NULL, NULL, XML_PARSE_NONET | XML_PARSE_NOBLANKS);
}

/* Fills err from a failed call: GN_EUNAVAIL for a store that does not answer or answers 5xx,
 * GN_ENOTFOUND for 404, GN_ERROR (with S3's error code) for the rest. */
static int call_error(const struct call *c, CURLcode cc, const char *errbuf, gn_err *err)
{
	const char *what = c->key ? c->key : conf.bucket;
	if (cc != CURLE_OK && c->status / 100 != 2)
		return gn_err_set(err, GN_EUNAVAIL, "the artifact store did not answer %s %s: %s", c->method, what,
				  errbuf[0] ? errbuf : curl_easy_strerror(cc));
	if (c->status == 404)
		return gn_err_set(err, GN_ENOTFOUND, "no such object in the artifact store: %s", what);
	char code[64] = "";
	xmlDoc *doc = xml_parse(&c->answer);
	const char *t = doc ? xml_text(xmlDocGetRootElement(doc), "Code") : NULL;
	if (t)
		snprintf(code, sizeof(code), "%s", t);
	xmlFreeDoc(doc);
	gn_log(GN_LOG_WARN, "event=artifact_store_refused method=%s key=%s status=%ld code=%s", c->method, what,
	       c->status, code[0] ? code : "-");
	return gn_err_set(err, c->status >= 500 ? GN_EUNAVAIL : GN_ERROR,
			  "the artifact store answered %s %s with %ld %s", c->method, what, c->status,
			  code[0] ? code : "");
}

/* Runs one signed request with the settings in cf; 0 for a 2xx answer. */
static int perform_with(const struct s3_conf *cf, struct call *c, gn_err *err)
{
	char errbuf[CURL_ERROR_SIZE] = "", sha[GN_SHA256_HEX_LEN + 1], *url;
	struct curl_slist *h = NULL;
	CURL *curl = curl_easy_init();
	if (!curl)
		abort();
	url = gn_asprintf("%s/%s%s%s%s%s", cf->endpoint, cf->bucket, c->key ? "/" : "", c->key ? c->key : "",
			  c->query ? "?" : "", c->query ? c->query : "");
	if (!c->body_sha) {
		if (c->body_len)
			gn_sha256_hex(sha, c->body, c->body_len);
		else
			snprintf(sha, sizeof(sha), "%s", EMPTY_SHA256);
	}
	/* S3 checks the body against this hash: a part damaged on the way is refused. */
	char *hs = gn_asprintf("x-amz-content-sha256: %s", c->body_sha ? c->body_sha : sha);
	h = curl_slist_append(h, hs);
	free(hs);
	if (c->extra)
		h = curl_slist_append(h, c->extra);
	/* No "Expect:" line to turn off 100-continue: libcurl 7.88 would sign the header it then
	 * leaves out, and every such request would fail its signature check. */
	gn_buf_init(&c->answer);
	c->status = 0;
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(curl, CURLOPT_AWS_SIGV4, cf->sigv4);
	curl_easy_setopt(curl, CURLOPT_USERPWD, cf->userpwd);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_answer);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, c);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, (long)(cf->timeout_s < 10 ? cf->timeout_s : 10));
	/* No fixed deadline (a large part or download takes what it takes), but no stall either. */
	curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, (long)cf->timeout_s);
	if (strcmp(c->method, "HEAD") == 0) {
		curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
	} else if (strcmp(c->method, "GET") != 0) {
		curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, c->method);
		if (strcmp(c->method, "DELETE") != 0) {
			/* The body from memory: libcurl signs exactly these bytes. */
			curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_len);
			curl_easy_setopt(curl, CURLOPT_POSTFIELDS, c->body_len ? (const char *)c->body : "");
		}
	}
	CURLcode cc = curl_easy_perform(curl);
	int rc = 0;
	if (cc != CURLE_OK || c->status / 100 != 2)
		rc = call_error(c, cc, errbuf, err);
	curl_easy_cleanup(curl);
	curl_slist_free_all(h);
	free(url);
	return rc;
}

static int perform(struct call *c, gn_err *err)
{
	return perform_with(&conf, c, err);
}

static void call_cleanup(struct call *c)
{
	gn_buf_cleanup(&c->answer);
}

/* Runs a request whose answer is not needed. */
static int simple(const char *method, const char *key, const char *query, gn_err *err)
{
	struct call c = {.method = method, .key = key, .query = query, .write_fd = -1};
	int rc = perform(&c, err);
	call_cleanup(&c);
	return rc;
}

int artifacts_s3_init(const struct artifacts_settings *s, gn_err *err)
{
	int rc;
	conf_free(&conf);
	if ((rc = parse_url(&conf, s->s3_url, err)))
		return rc;
	conf.userpwd = gn_asprintf("%s:%s", s->s3_access_key, s->s3_secret_key);
	conf.sigv4 = gn_asprintf("aws:amz:%s:s3", s->s3_region);
	conf.part_size = s->s3_part_size;
	conf.timeout_s = s->s3_timeout_s;
	/* Before any thread: neither library initialises itself thread-safely on first use. */
	curl_global_init(CURL_GLOBAL_DEFAULT);
	xmlInitParser();
	ready = true;
	/* Ask now: wrong credentials or a missing bucket should stop the start, not the first upload
	 * (a listing, which the sweep needs too, and whose refusal says why in its body). */
	if ((rc = simple("GET", NULL, "list-type=2&max-keys=1", err)))
		return gn_err_set(err, rc == GN_ENOTFOUND ? GN_EINVAL : rc, "artifact store %s/%s: %s", conf.endpoint,
				  conf.bucket,
				  rc == GN_ENOTFOUND ? "no such bucket (create it first)"
						     : "the bucket does not answer to these credentials (see the log)");
	gn_log(GN_LOG_INFO, "event=artifact_store kind=s3 endpoint=%s bucket=%s prefix=%s", conf.endpoint, conf.bucket,
	       conf.prefix);
	return 0;
}

void artifacts_s3_cleanup(void)
{
	/* Streams end once their readers are closed, which stopping the HTTP server does. */
	for (int i = 0; i < 100 && atomic_load(&streams) > 0; i++)
		usleep(50000);
	if (ready) {
		xmlCleanupParser();
		curl_global_cleanup();
	}
	ready = false;
	conf_free(&conf);
}

/* Parses an S3 time (2024-01-31T12:00:00.000Z) as epoch seconds; -1 if it is not one. */
static int64_t parse_time(const char *s)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *end = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
	if (!end)
		return -1;
	return (int64_t)timegm(&tm);
}

/* Appends "&name=value" (value URI-encoded as SigV4 wants) to q. */
static void query_add(gn_buf *q, const char *name, const char *value)
{
	char *v = curl_easy_escape(NULL, value, 0);
	gn_buf_printf(q, "%s%s=%s", q->len ? "&" : "", name, v ? v : "");
	curl_free(v);
}

/* Lists the keys under prefix (ListObjectsV2, every page) last modified before `before`, and
 * calls fn on each. */
static int list_keys(const char *prefix, int64_t before, void (*fn)(const char *key, void *arg), void *arg, gn_err *err)
{
	char *token = NULL;
	int rc = 0;
	do {
		gn_buf q;
		gn_buf_init(&q);
		/* Sorted by name, as SigV4's canonical query string must be. */
		if (token)
			query_add(&q, "continuation-token", token);
		query_add(&q, "list-type", "2");
		query_add(&q, "prefix", prefix);
		struct call c = {.method = "GET", .query = q.data, .write_fd = -1};
		rc = perform(&c, err);
		gn_buf_cleanup(&q);
		free(token);
		token = NULL;
		xmlDoc *doc = rc ? NULL : xml_parse(&c.answer);
		xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
		if (!rc && !root)
			rc = gn_err_set(err, GN_ERROR, "the artifact store's listing is not XML");
		for (xmlNode *n = root ? root->children : NULL; n; n = n->next) {
			if (n->type != XML_ELEMENT_NODE || strcmp((const char *)n->name, "Contents") != 0)
				continue;
			const char *key = xml_text(n, "Key");
			int64_t t = parse_time(xml_text(n, "LastModified"));
			if (key && t >= 0 && t < before)
				fn(key, arg);
		}
		const char *trunc = root ? xml_text(root, "IsTruncated") : NULL;
		const char *next = root ? xml_text(root, "NextContinuationToken") : NULL;
		if (!rc && trunc && strcmp(trunc, "true") == 0 && next && *next)
			token = gn_strdup(next);
		xmlFreeDoc(doc);
		call_cleanup(&c);
	} while (!rc && token);
	free(token);
	return rc;
}

struct digest_list {
	char **items;
	size_t n;
	size_t skip; /* length of PREFIX "sha256/" */
};

static void add_digest(const char *key, void *arg)
{
	struct digest_list *l = arg;
	const char *rest = key + l->skip; /* "ab/abcdef…" */
	if (strlen(rest) != 3 + GN_SHA256_HEX_LEN || rest[2] != '/' || !artifacts_is_digest(rest + 3) ||
	    strncmp(rest, rest + 3, 2) != 0)
		return;
	l->items = gn_realloc(l->items, (l->n + 1) * sizeof(*l->items));
	l->items[l->n++] = gn_strdup(rest + 3);
}

int artifacts_s3_list(char ***out, size_t *out_n, int64_t before, gn_err *err)
{
	char *prefix = gn_asprintf("%ssha256/", conf.prefix);
	struct digest_list l = {.skip = strlen(prefix)};
	int rc = list_keys(prefix, before, add_digest, &l, err);
	free(prefix);
	if (rc) {
		for (size_t i = 0; i < l.n; i++)
			free(l.items[i]);
		free(l.items);
		return rc;
	}
	*out = l.items;
	*out_n = l.n;
	return 0;
}

static void remove_tmp(const char *key, void *arg)
{
	gn_err err;
	(void)arg;
	if (strncmp(key + strlen(conf.prefix) + 4, "upload-", 7) != 0)
		return;
	if (simple("DELETE", key, NULL, &err) == 0)
		gn_log(GN_LOG_INFO, "event=artifact_tmp_removed key=%s", key);
}

/* Aborts the multipart uploads under PREFIX/tmp/ initiated before `before` (the first 1,000;
 * the next sweep takes the rest). */
static int abort_stale_uploads(int64_t before, gn_err *err)
{
	gn_buf q;
	char *prefix = gn_asprintf("%stmp/", conf.prefix);
	gn_buf_init(&q);
	query_add(&q, "prefix", prefix);
	/* A bare sub-resource is signed as "uploads=": libcurl 7.88 signs a bare "uploads" without the
	 * '=', which S3 refuses, so the URL carries the '=' too. */
	query_add(&q, "uploads", "");
	struct call c = {.method = "GET", .query = q.data, .write_fd = -1};
	int rc = perform(&c, err);
	xmlDoc *doc = rc ? NULL : xml_parse(&c.answer);
	xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
	for (xmlNode *n = root ? root->children : NULL; n; n = n->next) {
		if (n->type != XML_ELEMENT_NODE || strcmp((const char *)n->name, "Upload") != 0)
			continue;
		const char *key = xml_text(n, "Key"), *id = xml_text(n, "UploadId");
		int64_t t = parse_time(xml_text(n, "Initiated"));
		if (!key || !id || t < 0 || t >= before || strncmp(key, prefix, strlen(prefix)) != 0)
			continue;
		gn_buf aq;
		gn_err e2;
		gn_buf_init(&aq);
		query_add(&aq, "uploadId", id);
		if (simple("DELETE", key, aq.data, &e2) == 0)
			gn_log(GN_LOG_INFO, "event=artifact_upload_aborted key=%s", key);
		gn_buf_cleanup(&aq);
	}
	xmlFreeDoc(doc);
	call_cleanup(&c);
	gn_buf_cleanup(&q);
	free(prefix);
	return rc;
}

int artifacts_s3_sweep_temp(int64_t before, gn_err *err)
{
	char *prefix = gn_asprintf("%stmp/", conf.prefix);
	int rc = list_keys(prefix, before, remove_tmp, NULL, err);
	free(prefix);
	return rc ? rc : abort_stale_uploads(before, err);
}

int artifacts_s3_remove(const char *digest, gn_err *err)
{
	char *key = content_key(digest);
	int rc = simple("DELETE", key, NULL, err);
	free(key);
	return rc == GN_ENOTFOUND ? 0 : rc;
}

int artifacts_s3_size(uint64_t *out, const char *digest, gn_err *err)
{
	char *key = content_key(digest);
	struct call c = {.method = "HEAD", .key = key, .write_fd = -1};
	int rc = perform(&c, err);
	if (rc == GN_ENOTFOUND)
		gn_err_set(err, GN_ENOTFOUND, "no such artifact");
	*out = c.length;
	call_cleanup(&c);
	free(key);
	return rc;
}

/* A download on its own thread, writing into a pipe. */
struct stream {
	struct s3_conf conf;
	char *key;
	char range[64];
	bool ranged;
	int fd; /* the pipe's write end */
};

static void *stream_main(void *arg)
{
	struct stream *s = arg;
	char *range = gn_asprintf("Range: %s", s->range);
	struct call c = {.method = "GET", .key = s->key, .extra = range, .write_fd = s->fd, .ranged = s->ranged};
	gn_err err;
	if (perform_with(&s->conf, &c, &err))
		gn_log(GN_LOG_WARN, "event=artifact_stream_failed key=%s msg=\"%s\"", s->key, err.msg);
	call_cleanup(&c);
	close(s->fd); /* the reader sees the end, short if the fetch failed */
	free(range);
	free(s->key);
	conf_free(&s->conf);
	free(s);
	atomic_fetch_sub(&streams, 1);
	return NULL;
}

int artifacts_s3_stream(int *out_fd, const char *digest, uint64_t off, uint64_t len, gn_err *err)
{
	int p[2];
	pthread_t t;
	pthread_attr_t attr;
	if (len == 0)
		return gn_err_set(err, GN_ERROR, "internal error: an empty range to stream");
	if (pipe2(p, O_CLOEXEC) < 0)
		return gn_err_set(err, GN_ERROR, "cannot create a pipe: %s", strerror(errno));
	struct stream *s = gn_calloc(1, sizeof(*s));
	conf_copy(&s->conf, &conf);
	s->key = content_key(digest);
	s->fd = p[1];
	s->ranged = off > 0;
	snprintf(s->range, sizeof(s->range), "bytes=%llu-%llu", (unsigned long long)off,
		 (unsigned long long)(off + len - 1));
	atomic_fetch_add(&streams, 1);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int rc = pthread_create(&t, &attr, stream_main, s);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		atomic_fetch_sub(&streams, 1);
		close(p[0]);
		close(p[1]);
		free(s->key);
		conf_free(&s->conf);
		free(s);
		return gn_err_set(err, GN_ERROR, "cannot start a download thread");
	}
	*out_fd = p[0];
	return 0;
}

int artifacts_s3_begin(s3_upload **out, gn_err *err)
{
	unsigned char raw[12];
	char hex[25];
	if (gn_random_bytes(raw, sizeof(raw), err))
		return GN_ERROR;
	gn_hex_encode(hex, raw, sizeof(raw));
	s3_upload *up = gn_calloc(1, sizeof(*up));
	up->buf = gn_malloc((size_t)conf.part_size);
	up->tmp_key = gn_asprintf("%stmp/upload-%s", conf.prefix, hex);
	*out = up;
	return 0;
}

/* Starts the multipart upload (at the first full part). */
static int initiate(s3_upload *up, gn_err *err)
{
	struct call c = {.method = "POST", .key = up->tmp_key, .query = "uploads=", .write_fd = -1};
	int rc = perform(&c, err);
	xmlDoc *doc = rc ? NULL : xml_parse(&c.answer);
	const char *id = doc ? xml_text(xmlDocGetRootElement(doc), "UploadId") : NULL;
	if (!rc && (!id || !*id))
		rc = gn_err_set(err, GN_ERROR, "the artifact store started a multipart upload without an UploadId");
	if (!rc)
		up->upload_id = gn_strdup(id);
	xmlFreeDoc(doc);
	call_cleanup(&c);
	return rc;
}

/* Sends what is gathered as the next part. */
static int send_part(s3_upload *up, gn_err *err)
{
	int rc;
	if (!up->upload_id && (rc = initiate(up, err)))
		return rc;
	gn_buf q;
	char num[16];
	snprintf(num, sizeof(num), "%d", up->nparts + 1);
	gn_buf_init(&q);
	query_add(&q, "partNumber", num);
	query_add(&q, "uploadId", up->upload_id);
	struct call c = {.method = "PUT",
			 .key = up->tmp_key,
			 .query = q.data,
			 .body = up->buf,
			 .body_len = up->buflen,
			 .write_fd = -1};
	rc = perform(&c, err);
	if (!rc && !c.etag[0])
		rc = gn_err_set(err, GN_ERROR, "the artifact store took part %s without an ETag", num);
	if (!rc) {
		up->etags = gn_realloc(up->etags, (size_t)(up->nparts + 1) * sizeof(*up->etags));
		up->etags[up->nparts++] = gn_strdup(c.etag);
		up->buflen = 0;
	}
	call_cleanup(&c);
	gn_buf_cleanup(&q);
	return rc;
}

int artifacts_s3_write(s3_upload *up, const void *buf, size_t len, gn_err *err)
{
	const unsigned char *p = buf;
	size_t part = (size_t)conf.part_size;
	up->total += len;
	while (len) {
		size_t take = part - up->buflen < len ? part - up->buflen : len;
		memcpy(up->buf + up->buflen, p, take);
		up->buflen += take;
		p += take;
		len -= take;
		/* A full part is sent once more bytes come: the last part may then be the small one. */
		if (up->buflen == part && len) {
			int rc = send_part(up, err);
			if (rc)
				return rc;
		}
	}
	return 0;
}

int artifacts_s3_finish(s3_upload *up, const char *digest, gn_err *err)
{
	int rc;
	snprintf(up->digest, sizeof(up->digest), "%s", digest);
	if (!up->upload_id)
		return 0; /* one part at most: PUT under its content address at commit */
	if (up->total > (uint64_t)MAX_COPY)
		return gn_err_set(err, GN_ETOOBIG, "the s3 artifact store takes artifacts up to 5 GiB");
	if (up->buflen && (rc = send_part(up, err)))
		return rc;
	gn_buf body, q;
	gn_buf_init(&body);
	gn_buf_init(&q);
	gn_buf_puts(&body, "<CompleteMultipartUpload>");
	for (int i = 0; i < up->nparts; i++)
		gn_buf_printf(&body, "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>", i + 1, up->etags[i]);
	gn_buf_puts(&body, "</CompleteMultipartUpload>");
	query_add(&q, "uploadId", up->upload_id);
	struct call c = {.method = "POST",
			 .key = up->tmp_key,
			 .query = q.data,
			 .body = (const unsigned char *)body.data,
			 .body_len = body.len,
			 .write_fd = -1};
	rc = perform(&c, err);
	/* S3 may answer 200 and report an error in the body. */
	if (!rc && c.answer.len && memmem(c.answer.data, c.answer.len, "<Error>", 7))
		rc = gn_err_set(err, GN_EUNAVAIL, "the artifact store failed to assemble the upload's parts");
	if (!rc)
		up->completed = true;
	call_cleanup(&c);
	gn_buf_cleanup(&body);
	gn_buf_cleanup(&q);
	return rc;
}

static void upload_free(s3_upload *up)
{
	for (int i = 0; i < up->nparts; i++)
		free(up->etags[i]);
	free(up->etags);
	free(up->buf);
	free(up->tmp_key);
	free(up->upload_id);
	free(up);
}

/* Deletes the temp object, or aborts the multipart upload (a failure is logged: the sweep
 * removes what is left once it is old). */
static void drop_temp(s3_upload *up)
{
	gn_err err;
	int rc = 0;
	if (up->completed) {
		rc = simple("DELETE", up->tmp_key, NULL, &err);
	} else if (up->upload_id) {
		gn_buf q;
		gn_buf_init(&q);
		query_add(&q, "uploadId", up->upload_id);
		rc = simple("DELETE", up->tmp_key, q.data, &err);
		gn_buf_cleanup(&q);
	}
	if (rc && rc != GN_ENOTFOUND)
		gn_log(GN_LOG_WARN, "event=artifact_tmp_left key=%s msg=\"%s\"", up->tmp_key, err.msg);
}

int artifacts_s3_commit(s3_upload *up, gn_err *err)
{
	char *key = content_key(up->digest), *src = NULL;
	uint64_t have = 0;
	int rc = artifacts_s3_size(&have, up->digest, err);
	if (rc == 0 && have == up->total) {
		/* Same bytes already stored (same digest): keep one copy. */
	} else if (rc && rc != GN_ENOTFOUND) {
		goto out;
	} else if (!up->upload_id) {
		/* The store checks the bytes against their SHA-256, which is also the key. */
		struct call c = {.method = "PUT",
				 .key = key,
				 .body = up->buf,
				 .body_len = up->buflen,
				 .body_sha = up->digest,
				 .write_fd = -1};
		rc = perform(&c, err);
		call_cleanup(&c);
	} else {
		src = gn_asprintf("x-amz-copy-source: /%s/%s", conf.bucket, up->tmp_key);
		struct call c = {.method = "PUT", .key = key, .extra = src, .write_fd = -1};
		rc = perform(&c, err);
		if (!rc && c.answer.len && memmem(c.answer.data, c.answer.len, "<Error>", 7))
			rc = gn_err_set(err, GN_EUNAVAIL, "the artifact store failed to copy the upload into place");
		call_cleanup(&c);
	}
out:
	drop_temp(up);
	upload_free(up);
	free(key);
	free(src);
	return rc;
}

void artifacts_s3_abort(s3_upload *up)
{
	if (!up)
		return;
	drop_temp(up);
	upload_free(up);
}
