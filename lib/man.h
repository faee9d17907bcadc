/* Man pages (roff for man(7)) written from the same tables as --help, so that the two cannot
 * drift: each program's `man` command assembles its page with these, and make writes the pages
 * at build time by running those commands. Everything appends to a gn_buf. */
#ifndef GN_MAN_H
#define GN_MAN_H

#include "common.h"
#include "conf.h"

/* One command listed under "Commands:" in a program's usage text. */
typedef struct gn_man_cmd {
	char *tag;  /* "enroll --token TOKEN [--name NAME]" (new) */
	char *text; /* "create this device's key, ..." (new; "" when none) */
} gn_man_cmd;

/* Appends s escaped for roff: backslashes, hyphens (as \-, so flags copy as typed), and a dot or
 * quote at the start of a line. Text between backquotes is set in bold. */
void gn_man_escape(gn_buf *b, const char *s);
/* Appends the page header (.TH, with configure.ac's version) and the NAME section. */
void gn_man_header(gn_buf *b, const char *name, const char *section, const char *summary);
/* Appends a section (.SH) or subsection (.SS) heading. */
void gn_man_section(gn_buf *b, const char *title);
void gn_man_subsection(gn_buf *b, const char *title);
/* Appends prose: paragraphs are separated by blank lines; a paragraph whose lines all start with
 * two spaces is an example, set verbatim and indented. */
void gn_man_text(gn_buf *b, const char *text);
/* Appends a tagged paragraph: bold, then italic (either may be NULL), then the text as prose. */
void gn_man_item(gn_buf *b, const char *bold, const char *italic, const char *text);
/* Appends the SYNOPSIS section from a usage text's first line ("usage: prog [OPTIONS] ..."). */
void gn_man_synopsis(gn_buf *b, const char *usage);
/* Appends one tagged paragraph per command of a usage text's "Commands:" list. */
void gn_man_usage_commands(gn_buf *b, const char *usage);
/* Appends one tagged paragraph per option of t, as a command-line flag (with its argument, help,
 * default, type and range, environment variable, and whether SIGHUP reloads it), then --help
 * and --version. */
void gn_man_conf_flags(gn_buf *b, const gn_conf_table *t);
/* Appends one tagged paragraph per key of t as a config file line `key = VALUE` (every option
 * but "config"), with the same details and the flag instead of the key. */
void gn_man_conf_keys(gn_buf *b, const gn_conf_table *t);

/* Parses the "Commands:" list of a usage text into *out (new array of *out_n; free with
 * gn_man_cmds_free): an entry starts with two spaces, its tag runs to the first run of two
 * spaces, and deeper-indented lines continue its text. */
void gn_man_cmds_parse(gn_man_cmd **out, size_t *out_n, const char *usage);
void gn_man_cmds_free(gn_man_cmd *cmds, size_t n);

#endif
