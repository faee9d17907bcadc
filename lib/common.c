/* Error details, allocation wrappers that abort on OOM, a growable buffer, clocks. */
#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int gn_err_set(gn_err *err, int code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		err->code = code;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return code;
}

void gn_err_clear(gn_err *err)
{
	if (err) {
		err->code = 0;
		err->msg[0] = '\0';
	}
}

const char *gn_err_name(int code)
{
	switch (code) {
	case GN_OK: return "ok";
	case GN_EINVAL: return "invalid";
	case GN_ENOTFOUND: return "not found";
	case GN_ECONFLICT: return "conflict";
	case GN_EAUTH: return "unauthorized";
	case GN_EFORBIDDEN: return "forbidden";
	case GN_ETOOBIG: return "too large";
	case GN_EUNAVAIL: return "unavailable";
	case GN_EGONE: return "gone";
	case GN_EMISMATCH: return "mismatch";
	default: return "error";
	}
}

static void oom(void)
{
	/* The one place the library may end the process: there is nothing sane to return. */
	fputs("ganglion: out of memory\n", stderr);
	abort();
}

void *gn_malloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom();
	return p;
}

void *gn_calloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom();
	return p;
}

void *gn_realloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom();
	return q;
}

char *gn_strdup(const char *s)
{
	return gn_strndup(s, strlen(s));
}

char *gn_strndup(const char *s, size_t n)
{
	char *p = gn_malloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *gn_asprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		oom();
	char *p = gn_malloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}

void gn_buf_init(gn_buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void gn_buf_cleanup(gn_buf *b)
{
	free(b->data);
	gn_buf_init(b);
}

static void buf_reserve(gn_buf *b, size_t extra)
{
	if (b->len + extra + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra + 1)
		cap *= 2;
	b->data = gn_realloc(b->data, cap);
	b->cap = cap;
}

void gn_buf_append(gn_buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void gn_buf_puts(gn_buf *b, const char *s)
{
	gn_buf_append(b, s, strlen(s));
}

void gn_buf_printf(gn_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		oom();
	buf_reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

char *gn_buf_detach(gn_buf *b)
{
	char *p = b->data ? b->data : gn_strdup("");
	gn_buf_init(b);
	return p;
}

int64_t gn_now(void)
{
	return (int64_t)time(NULL);
}

uint64_t gn_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

bool gn_is_uuid(const char *s)
{
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		char c = s[i];
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
			return false;
	}
	return true;
}

static int hex_value(char c)
{
	return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

int gn_uuid_parse(unsigned char out[16], const char *s)
{
	if (!gn_is_uuid(s))
		return GN_EINVAL;
	for (int i = 0, j = 0; i < 16; i++, j += 2) {
		if (s[j] == '-')
			j++;
		out[i] = (unsigned char)(hex_value(s[j]) << 4 | hex_value(s[j + 1]));
	}
	return 0;
}

void gn_uuid_format(char out[37], const unsigned char uuid[16])
{
	static const char hex[] = "0123456789abcdef";
	char *p = out;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[uuid[i] >> 4];
		*p++ = hex[uuid[i] & 15];
	}
	*p = '\0';
}

size_t gn_edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t d[64][64];
	if (la > 63 || lb > 63)
		return SIZE_MAX;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			size_t sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
			size_t del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
			d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
		}
	}
	return d[la][lb];
}

const char *gn_nearest(const char *word, const char *const *cands, size_t n, size_t max_dist)
{
	const char *best = NULL;
	size_t bestd = max_dist + 1, len = strlen(word);
	for (size_t i = 0; i < n; i++) {
		size_t d = gn_edit_distance(word, cands[i]);
		if (d == 0)
			return NULL;
		/* A distance as long as the word would suggest anything for "x". */
		if (d < bestd && d < len) {
			bestd = d;
			best = cands[i];
		}
	}
	return best;
}

void gn_prom_label(gn_buf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"') {
			char esc[2] = {'\\', *s};
			gn_buf_append(b, esc, 2);
		} else if (*s == '\n') {
			gn_buf_puts(b, "\\n");
		} else {
			gn_buf_append(b, s, 1);
		}
	}
}

uint64_t gn_fnv1a(uint64_t seed, const void *p, size_t len)
{
	const unsigned char *b = p;
	uint64_t h = seed ? seed : 1469598103934665603ull;
	for (size_t i = 0; i < len; i++) {
		h ^= b[i];
		h *= 1099511628211ull;
	}
	return h;
}
