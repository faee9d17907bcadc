/* The model registry's naming rules: names, aliases, SemVer 2.0.0 versions, formats, file names. */
#include "model.h"

#include <stdio.h>
#include <string.h>

/* Digits of the zero-padded numeric identifiers in a pre-release key. */
#define KEY_DIGITS 20

static const struct gn_model_format formats[] = {
	{"onnx", "onnx"},
	{"tflite", "tflite"},
	{"tensorrt-plan", "plan"},
	{"other", "bin"},
};

/* Locale-independent character classes: the rules are ASCII whatever LC_CTYPE says. */
static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || is_digit(c);
}

static bool is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

int gn_model_name_check(const char *name, gn_err *err)
{
	size_t n = name ? strlen(name) : 0;
	bool ok = n >= 1 && n <= GN_MODEL_NAME_MAX && is_lower_alnum(name[0]) && is_lower_alnum(name[n - 1]);
	for (size_t i = 0; ok && i < n; i++)
		ok = is_lower_alnum(name[i]) || name[i] == '-';
	if (!ok)
		return gn_err_set(err, GN_EINVAL,
				  "model name '%.64s' is not a lower-case DNS label (a-z, 0-9 and '-', 1 to 63 "
				  "characters, no leading or trailing '-')",
				  name ? name : "");
	return 0;
}

int gn_model_alias_check(const char *alias, gn_err *err)
{
	size_t n = alias ? strlen(alias) : 0;
	bool ok = n >= 1 && n <= GN_MODEL_NAME_MAX && is_lower_alnum(alias[0]);
	struct gn_semver sv;
	for (size_t i = 0; ok && i < n; i++)
		ok = is_lower_alnum(alias[i]) || strchr("._-", alias[i]);
	if (!ok)
		return gn_err_set(err, GN_EINVAL,
				  "alias '%.64s' must be 1 to 63 characters of a-z, 0-9, '.', '_', '-' starting "
				  "with a letter or digit",
				  alias ? alias : "");
	if (gn_model_version_parse(&sv, alias, NULL) == 0)
		return gn_err_set(err, GN_EINVAL,
				  "alias '%s' looks like a version; aliases are names such as production", alias);
	return 0;
}

/* Parses a numeric identifier (digits, no leading zero) from p into *out; returns the end, or
 * NULL when there is none or it overflows. */
static const char *parse_num(const char *p, int64_t *out)
{
	int64_t v = 0;
	if (!is_digit(*p) || (p[0] == '0' && is_digit(p[1])))
		return NULL;
	for (; is_digit(*p); p++) {
		int d = *p - '0';
		if (v > (INT64_MAX - d) / 10)
			return NULL;
		v = v * 10 + d;
	}
	*out = v;
	return p;
}

/* Checks one identifier [p, e): [0-9A-Za-z-]+, and with numeric_rule no leading zero in an
 * all-digit one (SemVer 2.0.0 item 9, pre-release identifiers). */
static bool ident_ok(const char *p, const char *e, bool numeric_rule)
{
	bool digits = true;
	if (e == p)
		return false;
	for (const char *q = p; q < e; q++) {
		if (!is_alnum(*q) && *q != '-')
			return false;
		digits = digits && is_digit(*q);
	}
	return !(numeric_rule && digits && e - p > 1 && *p == '0');
}

/* Checks the dot-separated identifiers of [p, end); none may be empty. */
static bool idents_ok(const char *p, const char *end, bool numeric_rule)
{
	for (;;) {
		const char *dot = memchr(p, '.', (size_t)(end - p));
		const char *e = dot ? dot : end;
		if (!ident_ok(p, e, numeric_rule))
			return false;
		if (!dot)
			return true;
		p = dot + 1;
	}
}

/* Appends one identifier of n bytes to the key. Numeric identifiers come first (prefix "0") and
 * compare numerically: up to 20 digits zero-padded to 20, longer ones after those as ":" + two
 * digits of length + the digits (no leading zeros, so a longer number is a larger one). Others
 * get the prefix "1" and compare as ASCII text, as SemVer says. */
static void key_append(gn_buf *b, const char *p, size_t n)
{
	bool digits = true;
	for (size_t i = 0; i < n; i++)
		digits = digits && is_digit(p[i]);
	if (!digits)
		gn_buf_printf(b, "1%.*s", (int)n, p);
	else if (n <= KEY_DIGITS)
		gn_buf_printf(b, "0%.*s%.*s", KEY_DIGITS - (int)n, "00000000000000000000", (int)n, p);
	else
		gn_buf_printf(b, "0:%02zu%.*s", n, (int)n, p);
}

/* Builds the key of a pre-release: identifiers joined by \x01, which sorts below every byte of
 * an identifier, so a shorter list of equal identifiers sorts first (SemVer 2.0.0 item 11.4.4). */
static void prerelease_key(char *out, size_t outlen, const char *pre)
{
	gn_buf b;
	gn_buf_init(&b);
	for (const char *p = pre; *p;) {
		size_t n = strcspn(p, ".");
		if (b.len)
			gn_buf_append(&b, "\x01", 1);
		key_append(&b, p, n);
		p += n + (p[n] == '.');
	}
	snprintf(out, outlen, "%s", b.data ? b.data : "");
	gn_buf_cleanup(&b);
}

/* Parses -PRERELEASE (up to '+' or the end) at p into out; returns the end, or NULL. */
static const char *parse_prerelease(struct gn_semver *out, const char *p)
{
	const char *end = p + strcspn(p, "+");
	if (!idents_ok(p, end, true))
		return NULL;
	snprintf(out->prerelease, sizeof(out->prerelease), "%.*s", (int)(end - p), p);
	prerelease_key(out->prerelease_key, sizeof(out->prerelease_key), out->prerelease);
	return end;
}

int gn_model_version_parse(struct gn_semver *out, const char *v, gn_err *err)
{
	const char *p = v;
	memset(out, 0, sizeof(*out));
	if (!v || strlen(v) > GN_MODEL_VERSION_MAX)
		goto bad;
	if (!(p = parse_num(p, &out->major)) || *p++ != '.' || !(p = parse_num(p, &out->minor)) || *p++ != '.' ||
	    !(p = parse_num(p, &out->patch)))
		goto bad;
	if (*p == '-' && !(p = parse_prerelease(out, p + 1)))
		goto bad;
	if (*p == '+' && !idents_ok(p + 1, p + strlen(p), false))
		goto bad;
	if (*p && *p != '+')
		goto bad;
	return 0;
bad:
	memset(out, 0, sizeof(*out));
	return gn_err_set(err, GN_EINVAL,
			  "version '%.70s' is not a semantic version (MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD])",
			  v ? v : "");
}

static int cmp_i64(int64_t a, int64_t b)
{
	return (a > b) - (a < b);
}

int gn_model_version_cmp(const struct gn_semver *a, const struct gn_semver *b)
{
	int c;
	if ((c = cmp_i64(a->major, b->major)) || (c = cmp_i64(a->minor, b->minor)) || (c = cmp_i64(a->patch, b->patch)))
		return c;
	/* A release has higher precedence than any of its pre-releases. */
	if (!a->prerelease[0] || !b->prerelease[0])
		return (a->prerelease[0] == '\0') - (b->prerelease[0] == '\0');
	c = strcmp(a->prerelease_key, b->prerelease_key);
	return (c > 0) - (c < 0);
}

int gn_model_format_lookup(const struct gn_model_format **out, const char *name, gn_err *err)
{
	for (size_t i = 0; name && i < GN_ARRAY_LEN(formats); i++) {
		if (strcmp(name, formats[i].name) == 0) {
			*out = &formats[i];
			return 0;
		}
	}
	return gn_err_set(err, GN_EINVAL, "format must be one of onnx, tflite, tensorrt-plan, other, not '%.32s'",
			  name ? name : "");
}

int gn_model_filename_check(const char *filename, gn_err *err)
{
	size_t n = filename ? strlen(filename) : 0;
	bool ok = n >= 1 && n <= GN_MODEL_FILENAME_MAX && filename[0] != '.';
	for (size_t i = 0; ok && i < n; i++)
		ok = is_alnum(filename[i]) || strchr("._-", filename[i]);
	if (!ok)
		return gn_err_set(err, GN_EINVAL,
				  "filename '%.128s' must be 1 to 128 characters of A-Z a-z 0-9 . _ - (not "
				  "starting with '.')",
				  filename ? filename : "");
	return 0;
}
