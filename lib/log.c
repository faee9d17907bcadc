/* key=value logging with a per-thread context prefix. gn_log formats the caller's fields itself
 * and escapes every string value on the way, so nothing a client sends can forge a line or a
 * field: the format is the caller's, the values are data. */
#include "log.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "json.h"

#define LINE_MAX_LEN 2048
/* Room kept at the end of a full line for `..."` and ` truncated=true`. */
#define LINE_RESERVE 24

static enum gn_log_level min_level = GN_LOG_INFO;
static FILE *log_file;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local char log_ctx[96];

static const char *level_names[] = {"debug", "info", "warn", "error"};

/* One line being written. Appends are all or nothing: once something does not fit, the line is
 * full and the rest is dropped, so no escape sequence or character is ever cut in two. */
struct line {
	char buf[LINE_MAX_LEN + 1];
	size_t len;
	bool full;
	bool quoted; /* inside "..." (the format's own quotes, or ones added around a value) */
};

/* One conversion of the format: %[flags][width][.precision][length]conversion. */
struct spec {
	char flags[8];
	int width, precision; /* -1 when not given */
	char length[3];       /* "", "hh", "h", "l", "ll", "j", "z", "t", "L" */
	char conv;
};

void gn_log_set_level(enum gn_log_level level)
{
	min_level = level;
}

int gn_log_level_parse(enum gn_log_level *out, const char *s)
{
	for (size_t i = 0; i < GN_ARRAY_LEN(level_names); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum gn_log_level)i;
			return 0;
		}
	}
	return GN_EINVAL;
}

int gn_log_open(const char *path, gn_err *err)
{
	FILE *f = NULL;
	if (path && *path) {
		f = fopen(path, "ae");
		if (!f)
			return gn_err_set(err, GN_ERROR, "cannot open log file %s", path);
		setvbuf(f, NULL, _IOLBF, 0);
	}
	pthread_mutex_lock(&log_lock);
	if (log_file)
		fclose(log_file);
	log_file = f;
	pthread_mutex_unlock(&log_lock);
	return 0;
}

static void put(struct line *l, const char *s, size_t n)
{
	if (l->full || l->len + n > LINE_MAX_LEN - LINE_RESERVE) {
		l->full = true;
		return;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

/* Returns the length of the valid UTF-8 character of two to four bytes at s, or 0. */
static size_t utf8_len(const char *s, size_t n)
{
	unsigned char c = (unsigned char)*s;
	size_t k = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
	return k && k <= n && gn_utf8_valid(s, k) ? k : 0;
}

/* Whether byte c, outside a valid multi-byte character, must be escaped inside quotes. */
static bool needs_escape(unsigned char c)
{
	return c < 0x20 || c >= 0x7F || c == '"' || c == '\\';
}

/* Appends byte c escaped for a quoted value: \" \\ \n \r \t, \xNN for other control bytes,
 * DEL and bytes that are not part of valid UTF-8. */
static void put_escaped_byte(struct line *l, unsigned char c)
{
	char e[5];
	switch (c) {
	case '"': put(l, "\\\"", 2); break;
	case '\\': put(l, "\\\\", 2); break;
	case '\n': put(l, "\\n", 2); break;
	case '\r': put(l, "\\r", 2); break;
	case '\t': put(l, "\\t", 2); break;
	default:
		if (needs_escape(c)) {
			snprintf(e, sizeof(e), "\\x%02x", c);
			put(l, e, 4);
		} else {
			put(l, (const char *)&c, 1);
		}
	}
}

/* Appends s[0..n) character by character (so a cut falls between two), escaped or not. */
static void put_chars(struct line *l, const char *s, size_t n, bool escape)
{
	for (size_t i = 0; i < n && !l->full;) {
		size_t k = utf8_len(s + i, n - i);
		if (k)
			put(l, s + i, k);
		else if (escape)
			put_escaped_byte(l, (unsigned char)s[i]);
		else
			put(l, s + i, 1);
		i += k ? k : 1;
	}
}

/* Whether a value outside the format's quotes must be quoted to stay one field: it holds a
 * space, a quote, or a byte that is escaped. */
static bool needs_quotes(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t k = utf8_len(s + i, n - i);
		if (!k && (s[i] == ' ' || (needs_escape((unsigned char)s[i]) && s[i] != '\\')))
			return true;
		i += k ? k : 1;
	}
	return false;
}

/* Appends a string value: escaped inside the format's quotes; outside them as it is when it is
 * one plain word, else in quotes and escaped. */
static void put_value(struct line *l, const char *s, size_t n)
{
	if (l->quoted) {
		put_chars(l, s, n, true);
	} else if (!needs_quotes(s, n)) {
		put_chars(l, s, n, false);
	} else {
		put(l, "\"", 1);
		l->quoted = !l->full;
		put_chars(l, s, n, true);
		put(l, "\"", 1);
		l->quoted = l->full && l->quoted;
	}
}

static void put_padding(struct line *l, int width, size_t n)
{
	for (size_t i = n; width > 0 && i < (size_t)width; i++)
		put(l, " ", 1);
}

/* Appends a %s or %c value of n bytes, padded to the spec's width (counted in bytes of the value). */
static void put_string(struct line *l, const struct spec *sp, const char *s, size_t n)
{
	bool left = strchr(sp->flags, '-') != NULL;
	if (!left)
		put_padding(l, sp->width, n);
	put_value(l, s, n);
	if (left)
		put_padding(l, sp->width, n);
}

/* Reads a width or precision at *p: digits, or '*' taking an int from ap; -1 when absent. */
static int parse_count(const char **p, va_list *ap)
{
	int v = -1;
	if (**p == '*') {
		(*p)++;
		return va_arg(*ap, int);
	}
	for (; **p >= '0' && **p <= '9'; (*p)++)
		v = (v < 0 ? 0 : v) * 10 + (**p - '0');
	return v;
}

/* Parses the conversion after the '%' at *fmt into sp, taking '*' width and precision from ap;
 * advances *fmt past it. Returns false for a conversion gn_log does not know. */
static bool parse_spec(struct spec *sp, const char **fmt, va_list *ap)
{
	const char *p = *fmt;
	size_t nf = 0, nl = 0;
	*sp = (struct spec){.precision = -1};
	while (*p && strchr("-+ #0", *p) && nf + 2 < sizeof(sp->flags))
		sp->flags[nf++] = *p++;
	sp->width = parse_count(&p, ap);
	if (sp->width < -1) { /* a negative '*' width: left-justified */
		sp->flags[nf++] = '-';
		sp->width = -sp->width;
	}
	if (*p == '.') {
		p++;
		sp->precision = parse_count(&p, ap);
		if (sp->precision == -1 && p[-1] == '.')
			sp->precision = 0;
	}
	while (*p && strchr("hljztL", *p) && nl + 1 < sizeof(sp->length))
		sp->length[nl++] = *p++;
	sp->conv = *p;
	*fmt = *p ? p + 1 : p;
	return *p && strchr("diouxXeEfFgGaAcspn%", *p);
}

/* Formats an integer conversion with the spec rebuilt in f, taking the argument as the type its
 * length modifier names. */
#define FMT(type) snprintf(out, n, f, sp->width, sp->precision, va_arg(*ap, type))
static int format_integer(char *out, size_t n, const char *f, const struct spec *sp, va_list *ap)
{
	bool sgn = sp->conv == 'd' || sp->conv == 'i';
	switch (sp->length[0]) {
	case 'l':
		if (sp->length[1] == 'l')
			return sgn ? FMT(long long) : FMT(unsigned long long);
		return sgn ? FMT(long) : FMT(unsigned long);
	case 'j': return sgn ? FMT(intmax_t) : FMT(uintmax_t);
	case 'z': return sgn ? FMT(ssize_t) : FMT(size_t);
	case 't': return FMT(ptrdiff_t);
	default: return sgn ? FMT(int) : FMT(unsigned);
	}
}

/* Formats a number or pointer conversion (numbers need no escaping). */
static void put_number(struct line *l, const struct spec *sp, va_list *ap)
{
	char f[32], out[512];
	size_t n = sizeof(out);
	int len;
	snprintf(f, sizeof(f), "%%%s*.*%s%c", sp->flags, sp->length, sp->conv);
	if (sp->conv == 'p')
		len = snprintf(out, n, "%p", va_arg(*ap, void *));
	else if (strchr("eEfFgGaA", sp->conv) && sp->length[0] == 'L')
		len = FMT(long double);
	else if (strchr("eEfFgGaA", sp->conv))
		len = FMT(double);
	else
		len = format_integer(out, n, f, sp, ap);
	if (len > 0)
		put(l, out, (size_t)len < n ? (size_t)len : n - 1);
}
#undef FMT

static void put_conversion(struct line *l, const struct spec *sp, va_list *ap)
{
	const char *s;
	char c;
	switch (sp->conv) {
	case '%': put(l, "%", 1); break;
	case 'n': (void)va_arg(*ap, void *); break; /* never writes through a pointer */
	case 's':
		s = va_arg(*ap, const char *);
		if (!s)
			s = "(null)";
		put_string(l, sp, s, sp->precision >= 0 ? strnlen(s, (size_t)sp->precision) : strlen(s));
		break;
	case 'c':
		c = (char)va_arg(*ap, int);
		put_string(l, sp, &c, 1);
		break;
	default: put_number(l, sp, ap); break;
	}
}

/* Appends the caller's fields: literal text as it is (tracking its quotes), each conversion
 * formatted, string values escaped. */
static void put_fields(struct line *l, const char *fmt, va_list *ap)
{
	while (*fmt && !l->full) {
		struct spec sp;
		const char *start = fmt;
		if (*fmt != '%') {
			put(l, fmt, 1);
			l->quoted ^= !l->full && *fmt == '"';
			fmt++;
			continue;
		}
		fmt++;
		if (parse_spec(&sp, &fmt, ap))
			put_conversion(l, &sp, ap);
		else
			put(l, start, (size_t)(fmt - start));
	}
}

/* Ends a line that did not fit: marks the cut, closes an open quote, says so in a field. */
static void finish(struct line *l)
{
	if (l->full) {
		memcpy(l->buf + l->len, "...", 3);
		l->len += 3;
		if (l->quoted)
			l->buf[l->len++] = '"';
		memcpy(l->buf + l->len, " truncated=true", 15);
		l->len += 15;
	}
	l->buf[l->len] = '\0';
}

void gn_log_set_context(const char *kv)
{
	/* Written straight into the thread's buffer: this runs several times per request. */
	size_t len = 0, n = kv ? strlen(kv) : 0, plain = 0;
	while (plain < n && kv[plain] >= 0x20 && kv[plain] < 0x7F)
		plain++;
	if (plain == n && n + 4 < sizeof(log_ctx)) { /* the common case: printable ASCII that fits */
		memcpy(log_ctx, kv ? kv : "", n + 1);
		return;
	}
	/* The caller writes the fields; control bytes and broken UTF-8 in them still get escaped. */
	for (size_t i = 0, k; i < n && len + 4 < sizeof(log_ctx); i += k ? k : 1) {
		k = utf8_len(kv + i, n - i);
		unsigned char c = (unsigned char)kv[i];
		if (k) {
			memcpy(log_ctx + len, kv + i, k);
			len += k;
		} else if (c == '"' || c == '\\' || !needs_escape(c)) {
			log_ctx[len++] = (char)c;
		} else {
			static const char hex[] = "0123456789abcdef";
			const char *e = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
			if (e) {
				memcpy(log_ctx + len, e, 2);
				len += 2;
			} else {
				log_ctx[len++] = '\\';
				log_ctx[len++] = 'x';
				log_ctx[len++] = hex[c >> 4];
				log_ctx[len++] = hex[c & 15];
			}
		}
	}
	log_ctx[len] = '\0';
}

bool gn_log_enabled(enum gn_log_level level)
{
	return level >= min_level;
}

static void put_prefix(struct line *l, enum gn_log_level level)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(l->buf, sizeof(l->buf), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s%s%s ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			 ts.tv_nsec / 1000000, level_names[level], log_ctx[0] ? " " : "", log_ctx);
	l->len = n > 0 && (size_t)n < sizeof(l->buf) ? (size_t)n : 0;
}

void gn_log(enum gn_log_level level, const char *fmt, ...)
{
	if (level < min_level)
		return;
	struct line l = {.len = 0};
	va_list ap;
	put_prefix(&l, level);
	va_start(ap, fmt);
	put_fields(&l, fmt, &ap);
	va_end(ap);
	finish(&l);
	pthread_mutex_lock(&log_lock);
	FILE *f = log_file ? log_file : stderr;
	fprintf(f, "%s\n", l.buf);
	pthread_mutex_unlock(&log_lock);
}
