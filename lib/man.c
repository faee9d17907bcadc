/* Man pages in roff (man(7)) from the programs' own tables: see man.h. */
#include "man.h"

#include <stdlib.h>
#include <string.h>

#include "version.h"

static bool at_line_start(const gn_buf *b)
{
	return b->len == 0 || b->data[b->len - 1] == '\n';
}

/* Appends s[0..n) escaped; with markup, backquotes switch bold on and off. */
static void escape_n(gn_buf *b, const char *s, size_t n, bool markup)
{
	bool bold = false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if ((c == '.' || c == '\'') && at_line_start(b))
			gn_buf_puts(b, "\\&");
		if (markup && c == '`') {
			/* Code is not hyphenated (\\%). */
			gn_buf_puts(b, bold ? "\\fR" : "\\fB\\%");
			bold = !bold;
		} else if ((c == '/' || c == ':') && i + 1 < n && s[i + 1] != '/' && s[i + 1] != ':' &&
			   s[i + 1] != ' ' && s[i + 1] != '\n') {
			/* A long path, URL or colon-separated list (a TLS priority string) may break after a
			 * slash or a colon (\\:) rather than overflow the line. */
			gn_buf_append(b, &c, 1);
			gn_buf_puts(b, "\\:");
		} else if (c == '\\') {
			gn_buf_puts(b, "\\e");
		} else if (c == '-') {
			gn_buf_puts(b, "\\-");
		} else {
			gn_buf_append(b, &c, 1);
		}
	}
	if (bold)
		gn_buf_puts(b, "\\fR");
}

void gn_man_escape(gn_buf *b, const char *s)
{
	escape_n(b, s, strlen(s), true);
}

static void upper(gn_buf *b, const char *s)
{
	for (; *s; s++) {
		char c = *s >= 'a' && *s <= 'z' ? (char)(*s - 'a' + 'A') : *s;
		if (c == '-')
			gn_buf_puts(b, "\\-");
		else
			gn_buf_append(b, &c, 1);
	}
}

void gn_man_header(gn_buf *b, const char *name, const char *section, const char *summary)
{
	/* No date: the page is the same whenever it is built (reproducible packages). */
	gn_buf_puts(b, ".TH ");
	upper(b, name);
	/* Left-adjusted: long defaults (paths) would leave justified lines with gaps. */
	gn_buf_printf(b, " %s \"\" \"ganglion %s\" \"Ganglion\"\n.ad l\n.SH NAME\n", section, gn_version_number());
	gn_man_escape(b, name);
	gn_buf_puts(b, " \\- ");
	gn_man_escape(b, summary);
	gn_buf_puts(b, "\n");
}

void gn_man_section(gn_buf *b, const char *title)
{
	gn_buf_printf(b, ".SH %s\n", title);
}

void gn_man_subsection(gn_buf *b, const char *title)
{
	gn_buf_puts(b, ".SS ");
	gn_man_escape(b, title);
	gn_buf_puts(b, "\n");
}

static bool all_lines_indented(const char *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		if (n - i < 2 || p[i] != ' ' || p[i + 1] != ' ')
			return false;
		const char *nl = memchr(p + i, '\n', n - i);
		i = nl ? (size_t)(nl - p) + 1 : n;
	}
	return true;
}

static bool after_heading(const gn_buf *b)
{
	if (b->len < 2)
		return false;
	size_t i = b->len - 1; /* the last line's newline */
	while (i > 0 && b->data[i - 1] != '\n')
		i--;
	return strncmp(b->data + i, ".SH", 3) == 0 || strncmp(b->data + i, ".SS", 3) == 0;
}

/* Prose, paragraph by paragraph; in_item keeps later paragraphs inside a tagged paragraph. */
static void text(gn_buf *b, const char *s, bool in_item)
{
	bool first = true;
	while (*s) {
		const char *end = strstr(s, "\n\n");
		size_t n = end ? (size_t)(end - s) : strlen(s);
		while (n > 0 && s[n - 1] == '\n')
			n--;
		/* The first paragraph of an item follows its tag; .PP right after a heading is redundant. */
		if (!first || (!in_item && !after_heading(b)))
			gn_buf_puts(b, in_item ? ".IP\n" : ".PP\n");
		if (all_lines_indented(s, n)) {
			gn_buf_puts(b, ".RS 4\n.nf\n");
			for (size_t i = 0; i < n;) {
				const char *nl = memchr(s + i, '\n', n - i);
				size_t e = nl ? (size_t)(nl - s) : n;
				escape_n(b, s + i + 2, e - i - 2, false);
				gn_buf_puts(b, "\n");
				i = e + 1;
			}
			gn_buf_puts(b, ".fi\n.RE\n");
		} else {
			escape_n(b, s, n, true);
			gn_buf_puts(b, "\n");
		}
		first = false;
		s += n;
		while (*s == '\n')
			s++;
	}
}

void gn_man_text(gn_buf *b, const char *s)
{
	text(b, s, false);
}

void gn_man_item(gn_buf *b, const char *bold, const char *italic, const char *s)
{
	gn_buf_puts(b, ".TP\n");
	if (bold) {
		gn_buf_puts(b, "\\fB");
		escape_n(b, bold, strlen(bold), false);
		gn_buf_puts(b, "\\fR");
	}
	if (italic) {
		gn_buf_puts(b, bold ? " \\fI" : "\\fI");
		escape_n(b, italic, strlen(italic), false);
		gn_buf_puts(b, "\\fR");
	}
	gn_buf_puts(b, "\n");
	text(b, s, true);
}

void gn_man_synopsis(gn_buf *b, const char *usage)
{
	const char *s = strncmp(usage, "usage: ", 7) == 0 ? usage + 7 : usage;
	size_t n = strcspn(s, "\n"), prog = strcspn(s, " \n");
	gn_man_section(b, "SYNOPSIS");
	gn_buf_puts(b, ".B ");
	escape_n(b, s, prog, false);
	gn_buf_puts(b, "\n");
	if (prog < n) {
		escape_n(b, s + prog + 1, n - prog - 1, false);
		gn_buf_puts(b, "\n");
	}
}

void gn_man_cmds_parse(gn_man_cmd **out, size_t *out_n, const char *usage)
{
	gn_man_cmd *cmds = NULL;
	size_t n = 0;
	const char *p = strstr(usage, "Commands:\n");
	p = p ? p + strlen("Commands:\n") : NULL;
	while (p && *p == ' ') {
		size_t len = strcspn(p, "\n");
		if (len > 2 && p[2] != ' ') {
			const char *gap = strstr(p + 2, "  ");
			size_t tag = gap && gap < p + len ? (size_t)(gap - p) - 2 : len - 2;
			cmds = gn_realloc(cmds, (n + 1) * sizeof(*cmds));
			cmds[n].tag = gn_strndup(p + 2, tag);
			const char *t = p + 2 + tag;
			while (t < p + len && *t == ' ')
				t++;
			cmds[n].text = gn_strndup(t, (size_t)(p + len - t));
			n++;
		} else if (n > 0) {
			const char *t = p;
			while (t < p + len && *t == ' ')
				t++;
			char *joined = gn_asprintf("%s%s%.*s", cmds[n - 1].text, *cmds[n - 1].text ? " " : "",
						   (int)(p + len - t), t);
			free(cmds[n - 1].text);
			cmds[n - 1].text = joined;
		}
		p += len;
		if (*p == '\n')
			p++;
	}
	*out = cmds;
	*out_n = n;
}

void gn_man_cmds_free(gn_man_cmd *cmds, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(cmds[i].tag);
		free(cmds[i].text);
	}
	free(cmds);
}

void gn_man_usage_commands(gn_buf *b, const char *usage)
{
	gn_man_cmd *cmds;
	size_t n;
	gn_man_cmds_parse(&cmds, &n, usage);
	for (size_t i = 0; i < n; i++) {
		/* "enroll --token TOKEN": the command in bold, its arguments in italic. */
		size_t w = strcspn(cmds[i].tag, " ");
		char *name = gn_strndup(cmds[i].tag, w);
		gn_man_item(b, name, cmds[i].tag[w] ? cmds[i].tag + w + 1 : NULL, cmds[i].text);
		free(name);
	}
	gn_man_cmds_free(cmds, n);
}

/* Writes v (bytes or seconds) with the largest unit that divides it. */
static void with_unit(gn_buf *b, int64_t v, bool size)
{
	static const struct {
		int64_t mult;
		const char *suffix;
	} sizes[] = {{1LL << 40, "T"}, {1LL << 30, "G"}, {1LL << 20, "M"}, {1LL << 10, "K"}, {1, ""}},
	  durations[] = {{86400, "d"}, {3600, "h"}, {60, "m"}, {1, "s"}};
	for (size_t i = 0; i < (size ? GN_ARRAY_LEN(sizes) : GN_ARRAY_LEN(durations)); i++) {
		int64_t m = size ? sizes[i].mult : durations[i].mult;
		if (v != 0 && v % m == 0) {
			gn_buf_printf(b, "%lld%s", (long long)(v / m), size ? sizes[i].suffix : durations[i].suffix);
			return;
		}
	}
	gn_buf_printf(b, "%lld%s", (long long)v, size ? "" : "s");
}

/* The details every option shares, as prose with `bold` markup. */
static void option_text(gn_buf *t, const gn_conf_table *tab, const gn_conf_opt *o, bool as_file)
{
	size_t hl = strlen(o->help);
	gn_buf_printf(t, "%s%s", o->help, hl && o->help[hl - 1] != '.' ? "." : "");
	if (o->def && *o->def)
		gn_buf_printf(t, " Default: `%s`.", o->def);
	else if (o->def)
		gn_buf_puts(t, " Default: empty.");
	switch (o->type) {
	case GN_CONF_INT:
		if (o->min || o->max)
			gn_buf_printf(t, " An integer from %lld to %lld.", (long long)o->min, (long long)o->max);
		break;
	case GN_CONF_BOOL: gn_buf_puts(t, " true or false (also yes/no, on/off, 1/0)."); break;
	case GN_CONF_SIZE:
	case GN_CONF_DURATION: {
		bool size = o->type == GN_CONF_SIZE;
		gn_buf_puts(t, size ? " A size in bytes, or with K, M or G (binary units)"
				    : " A duration in seconds, or with s, m, h or d");
		if (o->min || o->max) {
			gn_buf_puts(t, ", from ");
			with_unit(t, o->min, size);
			gn_buf_puts(t, " to ");
			with_unit(t, o->max, size);
		}
		gn_buf_puts(t, ".");
		break;
	}
	case GN_CONF_STRING: break;
	}
	if (as_file) {
		gn_buf_printf(t, " Flag: `--%s`.", o->key);
	}
	gn_buf_printf(t, " Environment: `%s", tab->env_prefix);
	for (const char *k = o->key; *k; k++)
		gn_buf_printf(t, "%c", *k == '-' ? '_' : (*k >= 'a' && *k <= 'z' ? *k - 'a' + 'A' : *k));
	gn_buf_puts(t, "`.");
	if (o->reload)
		gn_buf_puts(t, " Reloads on SIGHUP.");
}

void gn_man_conf_flags(gn_buf *b, const gn_conf_table *t)
{
	for (size_t i = 0; i < t->n; i++) {
		const gn_conf_opt *o = &t->opts[i];
		gn_buf txt;
		gn_buf_init(&txt);
		option_text(&txt, t, o, false);
		char *flag = gn_asprintf("--%s", o->key);
		gn_man_item(b, flag, gn_conf_argname(o), txt.data);
		free(flag);
		gn_buf_cleanup(&txt);
	}
	gn_man_item(b, "--help", NULL, "Print the options with their defaults and exit.");
	gn_man_item(b, "--version", NULL, "Print the version and the git commit it was built from, and exit.");
}

void gn_man_conf_keys(gn_buf *b, const gn_conf_table *t)
{
	for (size_t i = 0; i < t->n; i++) {
		const gn_conf_opt *o = &t->opts[i];
		if (strcmp(o->key, "config") == 0)
			continue;
		gn_buf txt;
		gn_buf_init(&txt);
		option_text(&txt, t, o, true);
		char *key = gn_asprintf("%s =", o->key);
		gn_man_item(b, key, gn_conf_argname(o), txt.data);
		free(key);
		gn_buf_cleanup(&txt);
	}
}
