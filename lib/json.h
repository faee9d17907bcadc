/* JSON helpers over jansson: bounded parsing and strict checking of request objects
 * (unknown fields, wrong types, missing fields are errors), and problem+json bodies. */
#ifndef GN_JSON_H
#define GN_JSON_H

#include <jansson.h>

#include "common.h"

enum gn_json_kind {
	GN_JSON_STRING = 1,
	GN_JSON_INTEGER,
	GN_JSON_BOOL,
	GN_JSON_OBJECT,
	GN_JSON_ARRAY,
	GN_JSON_STRING_MAP, /* object whose values are all strings (labels) */
	GN_JSON_NUMBER,     /* integer or real */
};

typedef struct gn_json_field {
	const char *name;
	enum gn_json_kind kind;
	bool required;
	bool nullable;
} gn_json_field;

/* Parses len bytes into *out (new reference) refusing duplicate keys and nesting deeper than
 * max_depth; GN_EINVAL with a message naming the line and column otherwise. */
int gn_json_parse(json_t **out, const char *buf, size_t len, int max_depth, gn_err *err) GN_WUR;
/* Whether v has the JSON type that kind k names (a string map: an object whose values are all strings). */
bool gn_json_kind_ok(const json_t *v, enum gn_json_kind k);
/* Checks that obj is an object with only the listed fields, each of its kind; GN_EINVAL otherwise. */
int gn_json_check(const json_t *obj, const gn_json_field *fields, size_t n, gn_err *err) GN_WUR;
/* Returns the string member key of obj, or NULL if absent or null. Borrowed. */
const char *gn_json_str(const json_t *obj, const char *key);
/* Returns obj serialised compactly (new). */
char *gn_json_dump(const json_t *obj);

/* Writes the OLPC canonical JSON form of j (as TUF uses it: keys sorted bytewise, no whitespace,
 * only '"' and '\\' escaped in strings, integers only) into *out (new, NUL-terminated; *out_len
 * bytes). GN_EINVAL for a real number anywhere in j. */
int gn_json_canonical(char **out, size_t *out_len, const json_t *j, gn_err *err) GN_WUR;

/* Returns a copy of s (new) that is valid UTF-8 without control characters: invalid bytes and
 * controls become '?'. For text from untrusted input going into JSON or logs. */
char *gn_utf8_clean_dup(const char *s);
/* Checks that s is valid UTF-8. */
bool gn_utf8_valid(const char *s, size_t len);

/* Returns an application/problem+json body (new): {"type","title","status","detail"}. */
char *gn_problem_dup(int status, const char *title, const char *detail);
/* Reads a problem+json body; writes "title: detail" (or the raw body, cut) into out. */
void gn_problem_describe(char *out, size_t outlen, const char *body, size_t len);

#endif
