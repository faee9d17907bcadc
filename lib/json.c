/* Bounded JSON parsing, strict field checks and problem+json bodies. */
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Finds the deepest nesting of [ and { outside strings, without building anything. */
static int max_nesting(const char *buf, size_t len)
{
	int depth = 0, max = 0;
	bool in_str = false, esc = false;
	for (size_t i = 0; i < len; i++) {
		char c = buf[i];
		if (in_str) {
			if (esc)
				esc = false;
			else if (c == '\\')
				esc = true;
			else if (c == '"')
				in_str = false;
			continue;
		}
		if (c == '"')
			in_str = true;
		else if (c == '[' || c == '{') {
			if (++depth > max)
				max = depth;
		} else if (c == ']' || c == '}')
			depth--;
	}
	return max;
}

int gn_json_parse(json_t **out, const char *buf, size_t len, int max_depth, gn_err *err)
{
	json_error_t jerr;
	if (len == 0)
		return gn_err_set(err, GN_EINVAL, "the request body is empty; a JSON object is expected");
	if (max_nesting(buf, len) > max_depth)
		return gn_err_set(err, GN_EINVAL, "JSON nested deeper than %d levels", max_depth);
	json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j)
		return gn_err_set(err, GN_EINVAL, "malformed JSON at line %d column %d: %s", jerr.line, jerr.column,
				  jerr.text);
	*out = j;
	return 0;
}

static int cmp_keys(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void canon_string(gn_buf *b, const char *s, size_t n)
{
	gn_buf_append(b, "\"", 1);
	size_t start = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '"' || s[i] == '\\') {
			gn_buf_append(b, s + start, i - start);
			gn_buf_append(b, "\\", 1);
			start = i;
		}
	}
	gn_buf_append(b, s + start, n - start);
	gn_buf_append(b, "\"", 1);
}

static int canon(gn_buf *b, const json_t *j, gn_err *err)
{
	switch (json_typeof(j)) {
	case JSON_OBJECT: {
		size_t n = json_object_size(j), i = 0;
		const char **keys = gn_malloc(n * sizeof(*keys));
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)j, k, v)
			keys[i++] = k;
		qsort(keys, n, sizeof(*keys), cmp_keys);
		gn_buf_append(b, "{", 1);
		for (i = 0; i < n; i++) {
			if (i)
				gn_buf_append(b, ",", 1);
			canon_string(b, keys[i], strlen(keys[i]));
			gn_buf_append(b, ":", 1);
			int rc = canon(b, json_object_get(j, keys[i]), err);
			if (rc) {
				free(keys);
				return rc;
			}
		}
		free(keys);
		gn_buf_append(b, "}", 1);
		return 0;
	}
	case JSON_ARRAY: {
		gn_buf_append(b, "[", 1);
		for (size_t i = 0; i < json_array_size(j); i++) {
			if (i)
				gn_buf_append(b, ",", 1);
			int rc = canon(b, json_array_get(j, i), err);
			if (rc)
				return rc;
		}
		gn_buf_append(b, "]", 1);
		return 0;
	}
	case JSON_STRING: canon_string(b, json_string_value(j), json_string_length(j)); return 0;
	case JSON_INTEGER: gn_buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(j)); return 0;
	case JSON_TRUE: gn_buf_puts(b, "true"); return 0;
	case JSON_FALSE: gn_buf_puts(b, "false"); return 0;
	case JSON_NULL: gn_buf_puts(b, "null"); return 0;
	case JSON_REAL:
		return gn_err_set(err, GN_EINVAL, "canonical JSON has no real numbers (found %g)", json_real_value(j));
	}
	return gn_err_set(err, GN_EINVAL, "unknown JSON type");
}

int gn_json_canonical(char **out, size_t *out_len, const json_t *j, gn_err *err)
{
	gn_buf b;
	gn_buf_init(&b);
	int rc = canon(&b, j, err);
	if (rc) {
		gn_buf_cleanup(&b);
		return rc;
	}
	*out_len = b.len;
	*out = gn_buf_detach(&b);
	return 0;
}

static const char *kind_name(enum gn_json_kind k)
{
	switch (k) {
	case GN_JSON_STRING: return "a string";
	case GN_JSON_INTEGER: return "an integer";
	case GN_JSON_BOOL: return "a boolean";
	case GN_JSON_OBJECT: return "an object";
	case GN_JSON_ARRAY: return "an array";
	case GN_JSON_STRING_MAP: return "an object of strings";
	case GN_JSON_NUMBER: return "a number";
	}
	return "?";
}

bool gn_json_kind_ok(const json_t *v, enum gn_json_kind k)
{
	switch (k) {
	case GN_JSON_STRING: return json_is_string(v);
	case GN_JSON_INTEGER: return json_is_integer(v);
	case GN_JSON_BOOL: return json_is_boolean(v);
	case GN_JSON_OBJECT: return json_is_object(v);
	case GN_JSON_ARRAY: return json_is_array(v);
	case GN_JSON_NUMBER: return json_is_number(v);
	case GN_JSON_STRING_MAP: {
		const char *key;
		json_t *val;
		if (!json_is_object(v))
			return false;
		json_object_foreach((json_t *)v, key, val) {
			(void)key;
			if (!json_is_string(val))
				return false;
		}
		return true;
	}
	}
	return false;
}

int gn_json_check(const json_t *obj, const gn_json_field *fields, size_t n, gn_err *err)
{
	const char *key;
	json_t *val;
	if (!json_is_object(obj))
		return gn_err_set(err, GN_EINVAL, "a JSON object is expected");
	json_object_foreach((json_t *)obj, key, val) {
		const gn_json_field *f = NULL;
		for (size_t i = 0; i < n && !f; i++)
			if (strcmp(fields[i].name, key) == 0)
				f = &fields[i];
		if (!f)
			return gn_err_set(err, GN_EINVAL, "unknown field '%.100s'", key);
		if (json_is_null(val) && f->nullable)
			continue;
		if (!gn_json_kind_ok(val, f->kind))
			return gn_err_set(err, GN_EINVAL, "field '%s' must be %s", key, kind_name(f->kind));
	}
	for (size_t i = 0; i < n; i++)
		if (fields[i].required && !json_object_get(obj, fields[i].name))
			return gn_err_set(err, GN_EINVAL, "field '%s' is required", fields[i].name);
	return 0;
}

const char *gn_json_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

char *gn_json_dump(const json_t *obj)
{
	char *s = json_dumps(obj, JSON_COMPACT);
	if (!s) /* only on allocation failure */
		abort();
	return s;
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
	size_t len;
	unsigned min;
	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xE0) == 0xC0)
		len = 2, min = 0x80;
	else if ((p[0] & 0xF0) == 0xE0)
		len = 3, min = 0x800;
	else if ((p[0] & 0xF8) == 0xF0)
		len = 4, min = 0x10000;
	else
		return 0;
	if (len > n)
		return 0;
	unsigned cp = p[0] & (0x7F >> len);
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3F);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return len;
}

bool gn_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < len) {
		size_t n = utf8_seq(p + i, len - i);
		if (!n || (n == 1 && p[i] == 0))
			return false;
		i += n;
	}
	return true;
}

char *gn_utf8_clean_dup(const char *s)
{
	size_t len = strlen(s), i = 0, o = 0;
	const unsigned char *p = (const unsigned char *)s;
	char *out = gn_malloc(len + 1);
	while (i < len) {
		size_t n = utf8_seq(p + i, len - i);
		if (n == 0 || (n == 1 && (p[i] < 0x20 || p[i] == 0x7F))) {
			out[o++] = '?';
			i++;
			continue;
		}
		memcpy(out + o, p + i, n);
		o += n;
		i += n;
	}
	out[o] = '\0';
	return out;
}

char *gn_problem_dup(int status, const char *title, const char *detail)
{
	/* Details quote client input, cut at byte counts: never let a split character abort us. */
	char *t = gn_utf8_clean_dup(title), *d = gn_utf8_clean_dup(detail ? detail : title);
	json_t *j = json_pack("{s:s, s:s, s:i, s:s}", "type", "about:blank", "title", t, "status", status, "detail", d);
	char *s = gn_json_dump(j);
	json_decref(j);
	free(t);
	free(d);
	return s;
}

void gn_problem_describe(char *out, size_t outlen, const char *body, size_t len)
{
	json_t *j = len ? json_loadb(body, len, 0, NULL) : NULL;
	const char *title = gn_json_str(j, "title"), *detail = gn_json_str(j, "detail");
	if (title && detail && strcmp(title, detail) != 0)
		snprintf(out, outlen, "%s: %s", title, detail);
	else if (detail || title)
		snprintf(out, outlen, "%s", detail ? detail : title);
	else
		snprintf(out, outlen, "%.*s", (int)(len > 200 ? 200 : len), body ? body : "");
	json_decref(j);
}
