/* GitOps manifests: YAML or JSON into jansson values that keep their lines, and the table of
 * kinds with the checks that need no server. */
#include "manifest.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "model.h"
#include "selector.h"

void gn_manifest_errors_vadd(gn_manifest_errors *e, const char *file, int line, const char *fmt, va_list ap)
{
	va_list copy;
	if (e->n >= GN_MANIFEST_MAX_ERRORS) {
		e->more++;
		return;
	}
	va_copy(copy, ap);
	int len = vsnprintf(NULL, 0, fmt, copy);
	va_end(copy);
	char *msg = gn_malloc((size_t)(len > 0 ? len : 0) + 1);
	vsnprintf(msg, (size_t)(len > 0 ? len : 0) + 1, fmt, ap);
	if (e->n == e->cap) {
		e->cap = e->cap ? 2 * e->cap : 8;
		e->v = gn_realloc(e->v, e->cap * sizeof(*e->v));
	}
	e->v[e->n++] = (struct gn_manifest_error){gn_strdup(file), line, msg};
}

void gn_manifest_errors_add(gn_manifest_errors *e, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	gn_manifest_errors_vadd(e, file, line, fmt, ap);
	va_end(ap);
}

json_t *gn_manifest_errors_json(const gn_manifest_errors *e)
{
	json_t *a = json_array();
	for (size_t i = 0; i < e->n; i++)
		json_array_append_new(a, json_pack("{s:o,s:i,s:s}", "file",
						   *e->v[i].file ? json_string(e->v[i].file) : json_null(), "line",
						   e->v[i].line, "message", e->v[i].msg));
	if (e->more) {
		char msg[64];
		snprintf(msg, sizeof(msg), "and %zu more errors", e->more);
		json_array_append_new(a, json_pack("{s:n,s:i,s:s}", "file", "line", 0, "message", msg));
	}
	return a;
}

void gn_manifest_errors_cleanup(gn_manifest_errors *e)
{
	for (size_t i = 0; i < e->n; i++) {
		free(e->v[i].file);
		free(e->v[i].msg);
	}
	free(e->v);
	memset(e, 0, sizeof(*e));
}

static void lines_add(gn_manifest_lines *l, const char *path, int line)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 16;
		l->v = gn_realloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n++] = (struct gn_manifest_line){gn_strdup(path), line};
}

static void lines_cleanup(gn_manifest_lines *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].path);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

int gn_manifest_line(const gn_manifest_lines *lines, const char *path)
{
	char *p = gn_strdup(path), *cut;
	int line = 1;
	for (;;) {
		for (size_t i = 0; i < lines->n; i++)
			if (strcmp(lines->v[i].path, p) == 0) {
				line = lines->v[i].line;
				goto out;
			}
		if (!*p)
			break;
		/* Drop the last step: "[2]", ".c", or the first name. */
		size_t n = strlen(p);
		if (p[n - 1] == ']' && (cut = strrchr(p, '[')))
			*cut = '\0';
		else if ((cut = strrchr(p, '.')))
			*cut = '\0';
		else
			*p = '\0';
	}
out:
	free(p);
	return line;
}

/* --- YAML (and JSON) into jansson, keeping lines ---------------------------------------------- */

struct build {
	yaml_parser_t parser;
	const char *file;
	gn_manifest_lines *lines;
	gn_manifest_errors *errs;
	bool broken; /* a syntax error: nothing after it can be trusted */
	bool bad;    /* a value that cannot be represented: the kind checks are skipped */
};

static int mark_line(const yaml_mark_t *m)
{
	return (int)m->line + 1;
}

/* Reads the next event; on a syntax error records it and marks the build broken. */
static int next_event(struct build *b, yaml_event_t *ev)
{
	if (yaml_parser_parse(&b->parser, ev))
		return 0;
	const yaml_parser_t *p = &b->parser;
	if (p->context)
		gn_manifest_errors_add(b->errs, b->file, mark_line(&p->problem_mark),
				       "YAML syntax error: %s (%s that started at line %d)",
				       p->problem ? p->problem : "unreadable", p->context, mark_line(&p->context_mark));
	else
		gn_manifest_errors_add(b->errs, b->file, mark_line(&p->problem_mark), "YAML syntax error: %s",
				       p->problem ? p->problem : "unreadable");
	b->broken = true;
	return -1;
}

/* Records a value that cannot be represented; the build goes on to find more. */
static void GN_PRINTF(3, 4) error_at(struct build *b, const yaml_event_t *ev, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	gn_manifest_errors_vadd(b->errs, b->file, mark_line(&ev->start_mark), fmt, ap);
	va_end(ap);
	b->bad = true;
}

static bool one_of(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(s, *list) == 0)
			return true;
	return false;
}

static bool all_digits(const char *s, const char *set)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!strchr(set, *s))
			return false;
	return true;
}

/* Matches [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?, YAML 1.2's core float. */
static bool is_float(const char *s)
{
	size_t i = 0, digits = 0;
	if (s[i] == '-' || s[i] == '+')
		i++;
	while (s[i] >= '0' && s[i] <= '9')
		i++, digits++;
	if (s[i] == '.') {
		i++;
		while (s[i] >= '0' && s[i] <= '9')
			i++, digits++;
	}
	if (!digits)
		return false;
	if (s[i] == 'e' || s[i] == 'E') {
		i++;
		if (s[i] == '-' || s[i] == '+')
			i++;
		if (!(s[i] >= '0' && s[i] <= '9'))
			return false;
		while (s[i] >= '0' && s[i] <= '9')
			i++;
	}
	return s[i] == '\0';
}

/* A plain scalar by YAML 1.2's core schema: null, a boolean, an integer, a float, or text. */
static json_t *resolve_plain(struct build *b, const yaml_event_t *ev, const char *s)
{
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
	static const char *const trues[] = {"true", "True", "TRUE", NULL};
	static const char *const falses[] = {"false", "False", "FALSE", NULL};
	static const char *const odd[] = {".inf",  ".Inf",  ".INF", "+.inf", "+.Inf", "+.INF", "-.inf",
					  "-.Inf", "-.INF", ".nan", ".NaN",  ".NAN",  NULL};
	const char *digits = s + (*s == '-' || *s == '+');
	int base = 0;
	if (one_of(s, nulls))
		return json_null();
	if (one_of(s, trues) || one_of(s, falses))
		return json_boolean(one_of(s, trues));
	if (all_digits(digits, "0123456789"))
		base = 10;
	else if (strncmp(s, "0x", 2) == 0 && all_digits(s + 2, "0123456789abcdefABCDEF"))
		base = 16;
	else if (strncmp(s, "0o", 2) == 0 && all_digits(s + 2, "01234567"))
		base = 8;
	if (base) {
		errno = 0;
		long long v = strtoll(base == 10 ? s : s + 2, NULL, base);
		if (errno == ERANGE) {
			error_at(b, ev, "the integer %.40s is too large", s);
			return NULL;
		}
		return json_integer((json_int_t)v);
	}
	if (is_float(s)) {
		errno = 0;
		double d = strtod(s, NULL);
		if (errno == ERANGE || !isfinite(d)) {
			error_at(b, ev, "the number %.40s is out of range", s);
			return NULL;
		}
		return json_real(d);
	}
	if (one_of(s, odd)) {
		error_at(b, ev, "%s is not a finite number (quote it if it is text)", s);
		return NULL;
	}
	return json_string(s);
}

static json_t *scalar(struct build *b, const yaml_event_t *ev)
{
	const char *s = (const char *)ev->data.scalar.value;
	size_t len = ev->data.scalar.length;
	if (ev->data.scalar.tag) {
		error_at(b, ev, "YAML tags (%.60s) are not supported", (const char *)ev->data.scalar.tag);
		return NULL;
	}
	if (strlen(s) != len) {
		error_at(b, ev, "text must not contain a NUL character");
		return NULL;
	}
	if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return json_stringn(s, len);
	return resolve_plain(b, ev, s);
}

static json_t *build_node(struct build *b, yaml_event_t *ev, gn_buf *path, int depth);

/* Consumes the rest of a node whose start event was just read (to go on after an error). */
static void skip_node(struct build *b, const yaml_event_t *start)
{
	int open = start->type == YAML_SEQUENCE_START_EVENT || start->type == YAML_MAPPING_START_EVENT;
	while (open > 0) {
		yaml_event_t ev;
		if (next_event(b, &ev))
			return;
		if (ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT)
			open++;
		else if (ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT)
			open--;
		yaml_event_delete(&ev);
	}
}

/* Builds the value whose first event is ev (deleted here) at path, recording its line. */
static json_t *child(struct build *b, yaml_event_t *ev, gn_buf *path, size_t keep, int depth)
{
	lines_add(b->lines, path->data, mark_line(&ev->start_mark));
	json_t *v = build_node(b, ev, path, depth + 1);
	path->len = keep;
	path->data[keep] = '\0';
	return v;
}

static json_t *mapping(struct build *b, gn_buf *path, int depth)
{
	json_t *obj = json_object();
	size_t keep = path->len;
	while (!b->broken) {
		yaml_event_t k, v;
		if (next_event(b, &k))
			break;
		if (k.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&k);
			return obj;
		}
		if (k.type != YAML_SCALAR_EVENT || strlen((const char *)k.data.scalar.value) != k.data.scalar.length) {
			error_at(b, &k, "a key must be plain text");
			skip_node(b, &k);
			yaml_event_delete(&k);
			if (!next_event(b, &v)) {
				skip_node(b, &v);
				yaml_event_delete(&v);
			}
			continue;
		}
		const char *key = (const char *)k.data.scalar.value;
		gn_buf_printf(path, "%s%s", keep ? "." : "", key);
		if (json_object_get(obj, key)) {
			int first = gn_manifest_line(b->lines, path->data);
			gn_manifest_errors_add(b->errs, b->file, mark_line(&k.start_mark),
					       "duplicate key '%.100s' (first at line %d)", key, first);
			b->bad = true;
		}
		lines_add(b->lines, path->data, mark_line(&k.start_mark));
		if (next_event(b, &v)) {
			yaml_event_delete(&k);
			break;
		}
		json_t *val = build_node(b, &v, path, depth + 1);
		path->len = keep;
		path->data[keep] = '\0';
		if (val && !json_object_get(obj, key))
			json_object_set_new(obj, key, val);
		else
			json_decref(val);
		yaml_event_delete(&k);
	}
	json_decref(obj);
	return NULL;
}

static json_t *sequence(struct build *b, gn_buf *path, int depth)
{
	json_t *arr = json_array();
	size_t keep = path->len;
	for (size_t i = 0; !b->broken; i++) {
		yaml_event_t ev;
		if (next_event(b, &ev))
			break;
		if (ev.type == YAML_SEQUENCE_END_EVENT) {
			yaml_event_delete(&ev);
			return arr;
		}
		gn_buf_printf(path, "[%zu]", i);
		json_t *v = child(b, &ev, path, keep, depth);
		json_array_append_new(arr, v ? v : json_null());
	}
	json_decref(arr);
	return NULL;
}

static json_t *build_node(struct build *b, yaml_event_t *ev, gn_buf *path, int depth)
{
	json_t *v = NULL;
	if (depth > GN_MANIFEST_MAX_DEPTH) {
		gn_manifest_errors_add(b->errs, b->file, mark_line(&ev->start_mark), "nested deeper than %d levels",
				       GN_MANIFEST_MAX_DEPTH);
		b->broken = true;
		yaml_event_delete(ev);
		return NULL;
	}
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		if (ev->data.scalar.anchor)
			error_at(b, ev, "YAML anchors and aliases are not supported (&%.60s)",
				 (const char *)ev->data.scalar.anchor);
		else
			v = scalar(b, ev);
		break;
	case YAML_ALIAS_EVENT:
		error_at(b, ev, "YAML anchors and aliases are not supported (*%.60s)",
			 (const char *)ev->data.alias.anchor);
		break;
	case YAML_SEQUENCE_START_EVENT:
		if (ev->data.sequence_start.anchor || ev->data.sequence_start.tag) {
			error_at(b, ev, "YAML anchors, aliases and tags are not supported");
			skip_node(b, ev);
		} else
			v = sequence(b, path, depth);
		break;
	case YAML_MAPPING_START_EVENT:
		if (ev->data.mapping_start.anchor || ev->data.mapping_start.tag) {
			error_at(b, ev, "YAML anchors, aliases and tags are not supported");
			skip_node(b, ev);
		} else
			v = mapping(b, path, depth);
		break;
	default:
		error_at(b, ev, "unexpected YAML structure");
		b->broken = true;
		break;
	}
	yaml_event_delete(ev);
	return v;
}

/* Expects an event of type t (anything else is a syntax error the parser would not report). */
static int expect(struct build *b, yaml_event_type_t t, yaml_event_t *ev)
{
	if (next_event(b, ev))
		return -1;
	if (ev->type == t)
		return 0;
	yaml_event_delete(ev);
	return -1;
}

/* Parses one YAML document (one object per file) into a value, recording lines and errors. */
static json_t *parse_yaml(struct build *b, const char *buf, size_t len)
{
	yaml_event_t ev;
	json_t *root = NULL;
	gn_buf path;
	gn_buf_init(&path);
	gn_buf_puts(&path, "");
	yaml_parser_set_input_string(&b->parser, (const unsigned char *)buf, len);
	if (expect(b, YAML_STREAM_START_EVENT, &ev))
		goto out;
	yaml_event_delete(&ev);
	if (next_event(b, &ev))
		goto out;
	if (ev.type != YAML_DOCUMENT_START_EVENT) {
		gn_manifest_errors_add(b->errs, b->file, 0, "the file holds no document");
		yaml_event_delete(&ev);
		goto out;
	}
	yaml_event_delete(&ev);
	if (next_event(b, &ev))
		goto out;
	lines_add(b->lines, "", mark_line(&ev.start_mark));
	root = build_node(b, &ev, &path, 0);
	if (b->broken || expect(b, YAML_DOCUMENT_END_EVENT, &ev))
		goto out;
	yaml_event_delete(&ev);
	if (next_event(b, &ev))
		goto out;
	if (ev.type == YAML_DOCUMENT_START_EVENT) {
		gn_manifest_errors_add(b->errs, b->file, mark_line(&ev.start_mark),
				       "a second document: one object per file");
		b->broken = true;
	}
	yaml_event_delete(&ev);
out:
	gn_buf_cleanup(&path);
	if (b->broken || b->bad) {
		json_decref(root);
		return NULL;
	}
	return root;
}

/* --- kinds ---------------------------------------------------------------------------------- */

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "a list";
	case JSON_STRING: return "text";
	case JSON_INTEGER:
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	default: return "null";
	}
}

static const char *kind_text(enum gn_json_kind k)
{
	switch (k) {
	case GN_JSON_STRING: return "text";
	case GN_JSON_INTEGER: return "an integer";
	case GN_JSON_BOOL: return "a boolean (true or false)";
	case GN_JSON_OBJECT: return "an object";
	case GN_JSON_ARRAY: return "a list";
	case GN_JSON_NUMBER: return "a number";
	case GN_JSON_STRING_MAP: return "an object of text values";
	}
	return "?";
}

/* Reports a failed lib check (its message in e) at the line of field. */
static void field_error(gn_manifest_errors *errs, const char *file, const gn_manifest_lines *lines, const char *field,
			const gn_err *e)
{
	gn_manifest_errors_add(errs, file, gn_manifest_line(lines, field), "%s: %s", field, e->msg);
}

static const gn_json_field deployment_fields[] = {
	{"name", GN_JSON_STRING, true, false},     {"model", GN_JSON_STRING, true, false},
	{"selector", GN_JSON_STRING, true, false}, {"follow", GN_JSON_STRING, true, false},
	{"strategy", GN_JSON_OBJECT, false, true},
};

static void deployment_check(char **out_key, const json_t *obj, const char *file, const gn_manifest_lines *lines,
			     gn_manifest_errors *errs)
{
	const char *name = gn_json_str(obj, "name"), *model = gn_json_str(obj, "model");
	const char *selector = gn_json_str(obj, "selector"), *follow = gn_json_str(obj, "follow");
	gn_selector sel;
	struct gn_semver sv;
	gn_err e;
	if (gn_model_name_check(name, &e))
		gn_manifest_errors_add(
			errs, file, gn_manifest_line(lines, "name"),
			"name: '%.100s' must be 1 to 63 lower-case letters, digits and '-', starting and "
			"ending with a letter or digit",
			name);
	if (gn_model_name_check(model, &e))
		field_error(errs, file, lines, "model", &e);
	if (!*selector)
		gn_manifest_errors_add(errs, file, gn_manifest_line(lines, "selector"),
				       "selector: empty; name the devices (e.g. site=north)");
	else if (gn_selector_parse(&sel, selector, &e))
		field_error(errs, file, lines, "selector", &e);
	else
		gn_selector_cleanup(&sel);
	if (gn_model_version_parse(&sv, follow, &e) && gn_model_alias_check(follow, &e))
		gn_manifest_errors_add(errs, file, gn_manifest_line(lines, "follow"),
				       "follow: '%.100s' is neither a version (1.2.0) nor an alias (production)",
				       follow);
	*out_key = gn_strdup(name);
}

static const gn_json_field model_alias_fields[] = {
	{"model", GN_JSON_STRING, true, false},
	{"alias", GN_JSON_STRING, true, false},
	{"version", GN_JSON_STRING, true, false},
};

static void model_alias_check(char **out_key, const json_t *obj, const char *file, const gn_manifest_lines *lines,
			      gn_manifest_errors *errs)
{
	const char *model = gn_json_str(obj, "model"), *alias = gn_json_str(obj, "alias");
	struct gn_semver sv;
	gn_err e;
	if (gn_model_name_check(model, &e))
		field_error(errs, file, lines, "model", &e);
	if (gn_model_alias_check(alias, &e))
		field_error(errs, file, lines, "alias", &e);
	if (gn_model_version_parse(&sv, gn_json_str(obj, "version"), &e))
		field_error(errs, file, lines, "version", &e);
	*out_key = gn_asprintf("%s/%s", model, alias);
}

/* The kinds. AlertRule (telemetry alerts) is planned: a kind is a row here and its handling in
 * gangliond's sync (server/gitops.c). */
static const struct gn_manifest_kind kinds[] = {
	{"Deployment", deployment_fields, GN_ARRAY_LEN(deployment_fields), deployment_check},
	{"ModelAlias", model_alias_fields, GN_ARRAY_LEN(model_alias_fields), model_alias_check},
};

const struct gn_manifest_kind *gn_manifest_kind_lookup(const char *name)
{
	for (size_t i = 0; name && i < GN_ARRAY_LEN(kinds); i++)
		if (strcmp(kinds[i].name, name) == 0)
			return &kinds[i];
	return NULL;
}

/* Checks apiVersion, kind and the fields of a parsed document; returns its kind or NULL. */
static const struct gn_manifest_kind *check_fields(const json_t *doc, const char *file, const gn_manifest_lines *lines,
						   gn_manifest_errors *errs)
{
	size_t before = errs->n + errs->more;
	const json_t *api = json_object_get(doc, "apiVersion");
	const char *kname = gn_json_str(doc, "kind"), *key;
	const struct gn_manifest_kind *k = gn_manifest_kind_lookup(kname);
	json_t *v;
	if (!api)
		gn_manifest_errors_add(errs, file, gn_manifest_line(lines, ""), "apiVersion is required (%s)",
				       GN_MANIFEST_API_VERSION);
	else if (!json_is_string(api) || strcmp(json_string_value(api), GN_MANIFEST_API_VERSION) != 0)
		gn_manifest_errors_add(errs, file, gn_manifest_line(lines, "apiVersion"),
				       "apiVersion must be %s, not '%.60s'", GN_MANIFEST_API_VERSION,
				       json_is_string(api) ? json_string_value(api) : type_name(api));
	if (!k) {
		char known[128] = "";
		for (size_t i = 0; i < GN_ARRAY_LEN(kinds); i++)
			snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s", i ? ", " : "",
				 kinds[i].name);
		if (json_object_get(doc, "kind"))
			gn_manifest_errors_add(errs, file, gn_manifest_line(lines, "kind"),
					       "unknown kind '%.60s' (known: %s)", kname ? kname : "(not text)", known);
		else
			gn_manifest_errors_add(errs, file, gn_manifest_line(lines, ""), "kind is required (%s)", known);
		return NULL;
	}
	json_object_foreach((json_t *)doc, key, v) {
		const gn_json_field *f = NULL;
		if (strcmp(key, "apiVersion") == 0 || strcmp(key, "kind") == 0)
			continue;
		for (size_t i = 0; i < k->nfields && !f; i++)
			if (strcmp(k->fields[i].name, key) == 0)
				f = &k->fields[i];
		if (!f)
			gn_manifest_errors_add(errs, file, gn_manifest_line(lines, key),
					       "unknown field '%.100s' in a %s", key, k->name);
		else if (!(json_is_null(v) && f->nullable) && !gn_json_kind_ok(v, f->kind))
			gn_manifest_errors_add(errs, file, gn_manifest_line(lines, key), "%s must be %s, not %s%s", key,
					       kind_text(f->kind), type_name(v),
					       f->kind == GN_JSON_STRING && (json_is_number(v) || json_is_boolean(v))
						       ? " (quote it to make it text)"
						       : "");
	}
	for (size_t i = 0; i < k->nfields; i++)
		if (k->fields[i].required && !json_object_get(doc, k->fields[i].name))
			gn_manifest_errors_add(errs, file, gn_manifest_line(lines, ""), "a %s needs a field '%s'",
					       k->name, k->fields[i].name);
	return errs->n + errs->more == before ? k : NULL;
}

/* --- sets ----------------------------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n > m && strcmp(s + n - m, suffix) == 0;
}

bool gn_manifest_is_document(const char *path)
{
	return ends_with(path, ".yaml") || ends_with(path, ".yml") || ends_with(path, ".json");
}

/* *.json files must be JSON, not merely YAML (which JSON is nearly a subset of). */
static int strict_json(const char *file, const char *buf, size_t len, gn_manifest_errors *errs)
{
	json_error_t je;
	json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	if (j) {
		json_decref(j);
		return 0;
	}
	gn_manifest_errors_add(errs, file, je.line > 0 ? je.line : 0, "JSON syntax error: %s", je.text);
	return -1;
}

void gn_manifest_set_add(gn_manifest_set *set, const char *file, const char *buf, size_t len)
{
	struct build b = {.file = file, .errs = &set->errors};
	gn_manifest_object o = {.file = gn_strdup(file)};
	char *key = NULL;
	b.lines = &o.lines;
	if (len > GN_MANIFEST_MAX_FILE) {
		gn_manifest_errors_add(&set->errors, file, 0, "larger than %d bytes", GN_MANIFEST_MAX_FILE);
		goto fail;
	}
	if (ends_with(file, ".json") && strict_json(file, buf, len, &set->errors))
		goto fail;
	if (!yaml_parser_initialize(&b.parser))
		abort(); /* out of memory */
	o.doc = parse_yaml(&b, buf, len);
	yaml_parser_delete(&b.parser);
	if (!o.doc)
		goto fail;
	if (!json_is_object(o.doc)) {
		gn_manifest_errors_add(
			&set->errors, file, gn_manifest_line(&o.lines, ""),
			"a document must be a mapping with apiVersion, kind and the object's fields, not %s",
			type_name(o.doc));
		goto fail;
	}
	size_t before = set->errors.n + set->errors.more;
	if (!(o.kind = check_fields(o.doc, file, &o.lines, &set->errors)))
		goto fail;
	o.kind->check(&key, o.doc, file, &o.lines, &set->errors);
	if (set->errors.n + set->errors.more != before)
		goto fail;
	o.key = key;
	if (set->n == set->cap) {
		set->cap = set->cap ? 2 * set->cap : 16;
		set->v = gn_realloc(set->v, set->cap * sizeof(*set->v));
	}
	set->v[set->n++] = o;
	return;
fail:
	free(key);
	json_decref(o.doc);
	lines_cleanup(&o.lines);
	free(o.file);
}

static int by_kind_key(const void *a, const void *b)
{
	const gn_manifest_object *x = *(const gn_manifest_object *const *)a, *y = *(const gn_manifest_object *const *)b;
	int c = strcmp(x->kind->name, y->kind->name);
	if (!c)
		c = strcmp(x->key, y->key);
	return c ? c : strcmp(x->file, y->file);
}

void gn_manifest_set_finish(gn_manifest_set *set)
{
	const gn_manifest_object **idx = gn_calloc(set->n ? set->n : 1, sizeof(*idx));
	for (size_t i = 0; i < set->n; i++)
		idx[i] = &set->v[i];
	qsort(idx, set->n, sizeof(*idx), by_kind_key);
	for (size_t i = 1; i < set->n; i++) {
		const gn_manifest_object *a = idx[i - 1], *b = idx[i];
		if (a->kind == b->kind && strcmp(a->key, b->key) == 0)
			gn_manifest_errors_add(&set->errors, b->file, gn_manifest_line(&b->lines, ""),
					       "%s '%s' is declared again (first in %s, line %d)", b->kind->name,
					       b->key, a->file, gn_manifest_line(&a->lines, ""));
	}
	free(idx);
}

const gn_manifest_object *gn_manifest_set_find(const gn_manifest_set *set, const char *kind, const char *key)
{
	for (size_t i = 0; i < set->n; i++)
		if (strcmp(set->v[i].kind->name, kind) == 0 && strcmp(set->v[i].key, key) == 0)
			return &set->v[i];
	return NULL;
}

void gn_manifest_set_cleanup(gn_manifest_set *set)
{
	for (size_t i = 0; i < set->n; i++) {
		free(set->v[i].key);
		free(set->v[i].file);
		json_decref(set->v[i].doc);
		lines_cleanup(&set->v[i].lines);
	}
	free(set->v);
	gn_manifest_errors_cleanup(&set->errors);
	memset(set, 0, sizeof(*set));
}
