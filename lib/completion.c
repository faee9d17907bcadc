/* Bash completion scripts from the programs' own tables: see completion.h. */
#include "completion.h"

#include <stdlib.h>
#include <string.h>

#include "man.h"

struct cmd {
	char *path, *synopsis;
};

struct opt {
	char *path, *name, *arg;
};

struct gn_completion {
	char *program;
	struct cmd *cmds;
	size_t ncmds;
	struct opt *opts;
	size_t nopts;
};

gn_completion *gn_completion_new(const char *program)
{
	gn_completion *c = gn_calloc(1, sizeof(*c));
	c->program = gn_strdup(program);
	return c;
}

void gn_completion_free(gn_completion *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->ncmds; i++) {
		free(c->cmds[i].path);
		free(c->cmds[i].synopsis);
	}
	for (size_t i = 0; i < c->nopts; i++) {
		free(c->opts[i].path);
		free(c->opts[i].name);
		free(c->opts[i].arg);
	}
	free(c->cmds);
	free(c->opts);
	free(c->program);
	free(c);
}

void gn_completion_cmd(gn_completion *c, const char *path, const char *synopsis)
{
	c->cmds = gn_realloc(c->cmds, (c->ncmds + 1) * sizeof(*c->cmds));
	c->cmds[c->ncmds].path = gn_strdup(path);
	c->cmds[c->ncmds].synopsis = synopsis ? gn_strdup(synopsis) : NULL;
	c->ncmds++;
}

void gn_completion_opt(gn_completion *c, const char *path, const char *name, const char *arg)
{
	c->opts = gn_realloc(c->opts, (c->nopts + 1) * sizeof(*c->opts));
	c->opts[c->nopts].path = gn_strdup(path);
	c->opts[c->nopts].name = gn_strdup(name);
	c->opts[c->nopts].arg = arg ? gn_strdup(arg) : NULL;
	c->nopts++;
}

void gn_completion_conf(gn_completion *c, const gn_conf_table *t)
{
	for (size_t i = 0; i < t->n; i++) {
		char *name = gn_asprintf("--%s", t->opts[i].key);
		gn_completion_opt(c, "", name, t->opts[i].type == GN_CONF_BOOL ? NULL : gn_conf_argname(&t->opts[i]));
		free(name);
	}
	gn_completion_opt(c, "", "--help", NULL);
	gn_completion_opt(c, "", "--version", NULL);
}

void gn_completion_usage(gn_completion *c, const char *usage)
{
	gn_man_cmd *cmds;
	size_t n;
	gn_man_cmds_parse(&cmds, &n, usage);
	for (size_t i = 0; i < n; i++) {
		char *words = gn_strdup(cmds[i].tag), *save = NULL, *name = NULL;
		char *w = strtok_r(words, " ", &save);
		const char *path = w;
		gn_completion_cmd(c, path, NULL);
		while ((w = strtok_r(NULL, " ", &save))) {
			w += strspn(w, "[");
			w[strcspn(w, "]")] = '\0';
			if (strncmp(w, "--", 2) == 0) {
				if (name)
					gn_completion_opt(c, path, name, NULL);
				free(name);
				name = gn_strdup(w);
			} else if (name) {
				gn_completion_opt(c, path, name, w);
				free(name);
				name = NULL;
			}
		}
		if (name)
			gn_completion_opt(c, path, name, NULL);
		free(name);
		free(words);
	}
	gn_man_cmds_free(cmds, n);
}

enum value_kind { VALUE_NONE, VALUE_FLAG, VALUE_FILE, VALUE_DIR, VALUE_CHOICE };

static enum value_kind value_kind(const char *arg)
{
	if (!arg)
		return VALUE_FLAG;
	if (strstr(arg, "DIR"))
		return VALUE_DIR;
	if (strstr(arg, "FILE") || strstr(arg, "PATH"))
		return VALUE_FILE;
	if (strchr(arg, '|') && strspn(arg, "abcdefghijklmnopqrstuvwxyz0123456789-|") == strlen(arg))
		return VALUE_CHOICE;
	return VALUE_NONE;
}

/* Writes the options of path separated by spaces. */
static void opt_words(gn_buf *b, const gn_completion *c, const char *path)
{
	for (size_t i = 0; i < c->nopts; i++)
		if (strcmp(c->opts[i].path, path) == 0)
			gn_buf_printf(b, "%s%s", b->len ? " " : "", c->opts[i].name);
}

/* Writes the case pattern "'PATH:NAME'" (or "*:NAME" for an option of every command). */
static void pattern(gn_buf *b, const struct opt *o)
{
	if (b->len)
		gn_buf_puts(b, "|");
	if (*o->path)
		gn_buf_printf(b, "'%s:%s'", o->path, o->name);
	else
		gn_buf_printf(b, "*:%s", o->name);
}

/* Writes one case arm (patterns matched against "$path:$option") for the options whose value is of
 * the given kind, those of one command before those of every command (so a command's own -o wins). */
static void value_arm(gn_buf *b, const gn_completion *c, enum value_kind kind, bool global, const char *action)
{
	gn_buf pat;
	gn_buf_init(&pat);
	for (size_t i = 0; i < c->nopts; i++)
		if (value_kind(c->opts[i].arg) == kind && (c->opts[i].path[0] == '\0') == global)
			pattern(&pat, &c->opts[i]);
	if (pat.len)
		gn_buf_printf(b, "\t%s) %s ;;\n", pat.data, action);
	gn_buf_cleanup(&pat);
}

static void value_arms(gn_buf *b, const gn_completion *c, bool global)
{
	for (size_t i = 0; i < c->nopts; i++) {
		const struct opt *o = &c->opts[i];
		if (value_kind(o->arg) != VALUE_CHOICE || (o->path[0] == '\0') != global)
			continue;
		gn_buf pat;
		gn_buf_init(&pat);
		pattern(&pat, o);
		gn_buf_printf(b, "\t%s) COMPREPLY=($(compgen -W '", pat.data);
		for (const char *p = o->arg; *p; p++)
			gn_buf_printf(b, "%c", *p == '|' ? ' ' : *p);
		gn_buf_puts(b, "' -- \"$cur\")); return ;;\n");
		gn_buf_cleanup(&pat);
	}
	value_arm(b, c, VALUE_DIR, global,
		  "compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- \"$cur\")); return");
	value_arm(b, c, VALUE_FILE, global,
		  "compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- \"$cur\")); return");
	value_arm(b, c, VALUE_NONE, global, "return");
}

char *gn_completion_bash_dup(const gn_completion *c)
{
	gn_buf b, fn;
	gn_buf_init(&b);
	gn_buf_init(&fn);
	gn_buf_puts(&fn, "_");
	for (const char *p = c->program; *p; p++)
		gn_buf_printf(&fn, "%c", *p == '-' ? '_' : *p);

	gn_buf_printf(&b,
		      "# bash completion for %s. Generated by `%s completion` from the program's own\n"
		      "# option and command tables; do not edit.\n"
		      "%s() {\n"
		      "\tlocal cur=${COMP_WORDS[COMP_CWORD]} prev= path= w i words=\n"
		      "\t[ \"$COMP_CWORD\" -gt 0 ] && prev=${COMP_WORDS[COMP_CWORD - 1]}\n",
		      c->program, c->program, fn.data);
	/* Commands are the leading words that name one; options and their values are skipped. */
	gn_buf_puts(&b, "\tlocal paths='|");
	for (size_t i = 0; i < c->ncmds; i++)
		gn_buf_printf(&b, "%s|", c->cmds[i].path);
	gn_buf_puts(&b, "'\n\tfor ((i = 1; i < COMP_CWORD; i++)); do\n\t\tw=${COMP_WORDS[i]}\n\t\tcase $path:$w in\n"
			"\t\t*:--*=*) ;;\n");
	for (int global = 0; global < 2; global++) {
		gn_buf pat;
		gn_buf_init(&pat);
		for (size_t i = 0; i < c->nopts; i++)
			if (c->opts[i].arg && (c->opts[i].path[0] == '\0') == global)
				pattern(&pat, &c->opts[i]);
		if (pat.len)
			gn_buf_printf(&b, "\t\t%s) ((i++)) ;;\n", pat.data);
		gn_buf_cleanup(&pat);
	}
	gn_buf_puts(&b, "\t\t*:-*) ;;\n"
			"\t\t*) [[ $paths == *\"|${path:+$path }$w|\"* ]] && path=${path:+$path }$w ;;\n"
			"\t\tesac\n\tdone\n");

	/* The value of the option before the cursor. */
	gn_buf_puts(&b, "\tcase $path:$prev in\n");
	value_arms(&b, c, false);
	value_arms(&b, c, true);
	gn_buf_puts(&b, "\tesac\n");

	/* Options of the command typed so far, and those of every command. */
	gn_buf_puts(&b, "\tif [[ $cur == -* ]]; then\n\t\tcase $path in\n");
	for (size_t i = 0; i < c->ncmds; i++) {
		gn_buf w;
		gn_buf_init(&w);
		opt_words(&w, c, c->cmds[i].path);
		if (w.len)
			gn_buf_printf(&b, "\t\t'%s') words='%s' ;;\n", c->cmds[i].path, w.data);
		gn_buf_cleanup(&w);
	}
	{
		gn_buf w;
		gn_buf_init(&w);
		opt_words(&w, c, "");
		gn_buf_printf(&b, "\t\tesac\n\t\twords=\"$words %s\"\n", w.data ? w.data : "");
		gn_buf_cleanup(&w);
	}

	/* Otherwise the next command word, or file names where the command takes a FILE. */
	gn_buf_puts(&b, "\telse\n\t\tcase $path in\n");
	for (size_t i = 0; i <= c->ncmds; i++) {
		const char *path = i < c->ncmds ? c->cmds[i].path : "";
		size_t pl = strlen(path);
		gn_buf w;
		gn_buf_init(&w);
		for (size_t k = 0; k < c->ncmds; k++) {
			const char *q = c->cmds[k].path;
			if (pl == 0 ? !strchr(q, ' ')
				    : strncmp(q, path, pl) == 0 && q[pl] == ' ' && !strchr(q + pl + 1, ' '))
				gn_buf_printf(&w, "%s%s", w.len ? " " : "", pl ? q + pl + 1 : q);
		}
		if (w.len)
			gn_buf_printf(&b, "\t\t'%s') words='%s' ;;\n", path, w.data);
		else if (i < c->ncmds && c->cmds[i].synopsis && strstr(c->cmds[i].synopsis, "FILE"))
			gn_buf_printf(
				&b,
				"\t\t'%s') compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- \"$cur\")); "
				"return ;;\n",
				path);
		gn_buf_cleanup(&w);
	}
	gn_buf_printf(&b,
		      "\t\tesac\n\tfi\n\tCOMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n}\n"
		      "complete -F %s %s\n",
		      fn.data, c->program);
	gn_buf_cleanup(&fn);
	return gn_buf_detach(&b);
}
