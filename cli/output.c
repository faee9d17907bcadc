/* Printing server answers for people (aligned tables, field lists) and for scripts (pretty JSON). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#include "json.h"

#define COLUMN_GAP 3

void output_json(const json_t *v)
{
	if (json_dumpf(v, stdout, JSON_INDENT(2)) == 0)
		fputc('\n', stdout);
}

/* Appends s, replacing control characters so a hostile name cannot drive the terminal. */
static void put_clean(gn_buf *b, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char c = (*p < ' ' || *p == 0x7f) ? '?' : (char)*p;
		gn_buf_append(b, &c, 1);
	}
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool all_scalar(const json_t *v)
{
	size_t i;
	const char *k;
	json_t *m;
	if (json_is_array(v)) {
		json_array_foreach(v, i, m) {
			if (json_is_object(m) || json_is_array(m))
				return false;
		}
		return true;
	}
	json_object_foreach((json_t *)v, k, m) {
		(void)k;
		if (json_is_object(m) || json_is_array(m))
			return false;
	}
	return true;
}

static void put_value(gn_buf *b, const json_t *v);

/* Writes a flat object as k=v,k=v in key order, so the same labels always print the same. */
static void put_map(gn_buf *b, const json_t *obj)
{
	size_t n = json_object_size(obj), i = 0;
	const char **keys = gn_calloc(n, sizeof(*keys));
	const char *k;
	json_t *m;
	json_object_foreach((json_t *)obj, k, m) {
		(void)m;
		keys[i++] = k;
	}
	qsort(keys, n, sizeof(*keys), cmp_str);
	for (i = 0; i < n; i++) {
		if (i)
			gn_buf_puts(b, ",");
		put_clean(b, keys[i]);
		gn_buf_puts(b, "=");
		m = json_object_get(obj, keys[i]);
		if (!json_is_null(m))
			put_value(b, m);
	}
	free(keys);
}

static void put_value(gn_buf *b, const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_STRING: put_clean(b, json_string_value(v)); break;
	case JSON_INTEGER: gn_buf_printf(b, "%lld", (long long)json_integer_value(v)); break;
	case JSON_REAL: gn_buf_printf(b, "%g", json_real_value(v)); break;
	case JSON_TRUE: gn_buf_puts(b, "true"); break;
	case JSON_FALSE: gn_buf_puts(b, "false"); break;
	case JSON_NULL: gn_buf_puts(b, "-"); break;
	case JSON_OBJECT:
	case JSON_ARRAY:
		if (!all_scalar(v)) {
			char *s = gn_json_dump(v);
			put_clean(b, s);
			free(s);
		} else if (json_is_object(v)) {
			put_map(b, v);
		} else {
			size_t i;
			json_t *m;
			json_array_foreach(v, i, m) {
				if (i)
					gn_buf_puts(b, ",");
				put_value(b, m);
			}
		}
		break;
	}
}

char *output_value_dup(const json_t *v)
{
	gn_buf b;
	if (!v || json_is_null(v) || (json_is_object(v) && json_object_size(v) == 0) ||
	    (json_is_array(v) && json_array_size(v) == 0))
		return gn_strdup("-");
	gn_buf_init(&b);
	put_value(&b, v);
	return gn_buf_detach(&b);
}

static char *cell_dup(const json_t *row, const output_col *col)
{
	return col->format ? col->format(row) : output_value_dup(json_object_get(row, col->key));
}

/* Counts terminal columns roughly: one per UTF-8 character, not per byte. */
static size_t width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

static void put_padded(const char *s, size_t w)
{
	fputs(s, stdout);
	for (size_t k = width(s); k < w; k++)
		fputc(' ', stdout);
}

void output_table(const json_t *rows, const output_col *cols, size_t n)
{
	size_t nrows = json_array_size(rows);
	char **cells = gn_calloc(nrows * n, sizeof(*cells));
	size_t *w = gn_calloc(n, sizeof(*w));

	for (size_t c = 0; c < n; c++)
		w[c] = width(cols[c].header);
	for (size_t r = 0; r < nrows; r++) {
		for (size_t c = 0; c < n; c++) {
			char *s = cell_dup(json_array_get(rows, r), &cols[c]);
			if (width(s) > w[c])
				w[c] = width(s);
			cells[r * n + c] = s;
		}
	}
	/* The last column is not padded, so lines carry no trailing blanks. */
	for (size_t c = 0; c < n; c++)
		put_padded(cols[c].header, c + 1 < n ? w[c] + COLUMN_GAP : 0);
	fputc('\n', stdout);
	for (size_t r = 0; r < nrows; r++) {
		for (size_t c = 0; c < n; c++)
			put_padded(cells[r * n + c], c + 1 < n ? w[c] + COLUMN_GAP : 0);
		fputc('\n', stdout);
	}
	for (size_t k = 0; k < nrows * n; k++)
		free(cells[k]);
	free(cells);
	free(w);
}

void output_fields(const json_t *obj, const output_col *cols, size_t n)
{
	size_t w = 0;
	for (size_t c = 0; c < n; c++)
		if (width(cols[c].header) + 1 > w)
			w = width(cols[c].header) + 1;
	for (size_t c = 0; c < n; c++) {
		char *s = cell_dup(obj, &cols[c]);
		char *head = gn_asprintf("%s:", cols[c].header);
		put_padded(head, w + 2);
		fputs(s, stdout);
		fputc('\n', stdout);
		free(head);
		free(s);
	}
}

void output_secret(const char *what, const char *secret, const char *hint)
{
	gn_buf b;
	gn_buf_init(&b);
	put_clean(&b, secret ? secret : "");
	char *s = gn_buf_detach(&b);
	printf("\n    %s\n\nThis %s is shown only once: store it now, it cannot be shown again.\n", s, what);
	if (hint)
		printf("%s\n", hint);
	free(s);
}
