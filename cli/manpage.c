/* ganglion(1) and the CLI's bash completion, written from the command tables and the settings
 * table that --help prints, so they cannot drift from the program. */
#include "manpage.h"

#include <stdlib.h>
#include <string.h>

#include "completion.h"
#include "man.h"

/* "-o, --output" style tags for the man page. */
static char *opt_tag(const cli_opt *o)
{
	return o->short_name ? gn_asprintf("-%c, --%s", o->short_name, o->name) : gn_asprintf("--%s", o->name);
}

static void opts_items(gn_buf *b, const cli_opt *opts, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char *tag = opt_tag(&opts[i]);
		gn_man_item(b, tag, opts[i].arg, opts[i].help);
		free(tag);
	}
}

static void commands(gn_buf *b, const cli_group *const *groups, size_t ngroups)
{
	for (size_t g = 0; g < ngroups; g++) {
		gn_man_subsection(b, groups[g]->name);
		gn_man_text(b, groups[g]->summary);
		for (size_t i = 0; i < groups[g]->n; i++) {
			const cli_cmd *c = &groups[g]->cmds[i];
			char *head = cli_group_bare(groups[g])
					     ? gn_asprintf("ganglion %s", groups[g]->name)
					     : gn_asprintf("ganglion %s %s", groups[g]->name, c->name);
			char *args = gn_asprintf("%s%s%s", c->nopts ? "[options]" : "",
						 c->nopts && *c->synopsis ? " " : "", c->synopsis);
			gn_man_item(b, head, *args ? args : NULL, c->summary);
			if (c->nopts) {
				gn_buf_puts(b, ".RS\n");
				opts_items(b, c->opts, c->nopts);
				gn_buf_puts(b, ".RE\n");
			}
			free(head);
			free(args);
		}
	}
}

/* The exit-code table, as --help prints it ("  N  meaning" lines), as tagged paragraphs. */
static void exit_codes(gn_buf *b)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return;
	cli_exit_help(f);
	fclose(f);
	for (char *line = text, *nl; line && *line; line = nl ? nl + 1 : NULL) {
		nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		line += strspn(line, " ");
		size_t code = strcspn(line, " ");
		if (!line[code])
			continue;
		line[code] = '\0';
		gn_man_item(b, line, NULL, line + code + 1 + strspn(line + code + 1, " "));
	}
	free(text);
}

static void page(gn_buf *b, const gn_conf_table *settings, const cli_opt *gopts, size_t ngopts,
		 const cli_group *const *groups, size_t ngroups)
{
	gn_man_header(b, "ganglion", "1", "command-line client of the Ganglion fleet control plane");
	gn_man_section(b, "SYNOPSIS");
	gn_buf_puts(b, ".B ganglion\n[\\fIglobal options\\fR] \\fICOMMAND SUBCOMMAND\\fR [\\fIoptions\\fR] "
		       "[\\fIarguments\\fR]\n");
	gn_man_section(b, "DESCRIPTION");
	gn_man_text(b, "`ganglion` drives `gangliond`(8) over its REST API: devices and their desired models, "
		       "enrollment and API tokens, the audit log, the model registry, and the TUF root keys. "
		       "Tables are printed for people; `-o json` prints the server's JSON for scripts.");
	gn_man_section(b, "COMMANDS");
	commands(b, groups, ngroups);
	gn_man_subsection(b, "help, man, completion");
	gn_man_item(b, "ganglion help", "[COMMAND [SUBCOMMAND]]",
		    "Print the help of the program, a command or a subcommand; with `--markdown`, the command "
		    "reference of docs/CLI.md.");
	gn_man_item(b, "ganglion man", NULL, "Print this manual page in roff (`ganglion man | man -l -`).");
	gn_man_item(b, "ganglion completion", NULL, "Print the bash completion script.");
	gn_man_section(b, "GLOBAL OPTIONS");
	gn_man_text(b, "Global options go before or after the command.");
	for (size_t i = 0; i < ngopts; i++) {
		const gn_conf_opt *o = i < settings->n ? &settings->opts[i] : NULL;
		char *tag = opt_tag(&gopts[i]);
		char *help = o && o->def ? gn_asprintf("%s (default: `%s`).", gopts[i].help, o->def)
					 : gn_asprintf("%s.", gopts[i].help);
		gn_man_item(b, tag, gopts[i].arg, help);
		free(tag);
		free(help);
	}
	gn_man_item(b, "-h, --help", NULL, "Print the help of the program, a command or a subcommand.");
	gn_man_section(b, "CONFIGURATION");
	gn_man_text(b, "Settings are taken from, first match wins: the flags; the environment; the config file "
		       "($GANGLION_CONFIG, else $XDG_CONFIG_HOME/ganglion/config, else "
		       "~/.config/ganglion/config), whose lines are `key = value` (# or ; comments; unknown keys "
		       "are errors); the defaults. A token written @FILE is read from FILE. The keys:");
	gn_man_conf_keys(b, settings);
	gn_man_section(b, "EXIT STATUS");
	exit_codes(b);
	gn_man_section(b, "FILES");
	gn_man_item(b, "~/.config/ganglion/config", NULL, "The default config file.");
	gn_man_item(b, "/var/lib/ganglion/admin.token", NULL,
		    "The admin token the packaged gangliond writes on its first start (readable by its user "
		    "only).");
	gn_man_section(b, "EXAMPLES");
	gn_man_text(b, "  export GANGLION_URL=http://127.0.0.1:7700 GANGLION_TOKEN=@/var/lib/ganglion/admin.token\n"
		       "  ganglion models push det.onnx --name det --version 1.2.0 --meta meta.json\n"
		       "  ganglion -o json enroll-tokens create --name north --label site=north --max-uses 10\n"
		       "  ganglion devices assign --selector site=north det@1.2.0\n"
		       "  ganglion devices list --selector site=north");
	gn_man_section(b, "SEE ALSO");
	gn_man_text(b, "`gangliond`(8), `ganglion-agent`(8)");
}

static void completion(gn_buf *b, const cli_opt *gopts, size_t ngopts, const cli_group *const *groups, size_t ngroups)
{
	gn_completion *c = gn_completion_new("ganglion");
	for (size_t g = 0; g < ngroups; g++) {
		if (!cli_group_bare(groups[g]))
			gn_completion_cmd(c, groups[g]->name, NULL);
		for (size_t i = 0; i < groups[g]->n; i++) {
			const cli_cmd *cmd = &groups[g]->cmds[i];
			char *path = cli_group_bare(groups[g]) ? gn_strdup(groups[g]->name)
							       : gn_asprintf("%s %s", groups[g]->name, cmd->name);
			gn_completion_cmd(c, path, cmd->synopsis);
			for (size_t k = 0; k < cmd->nopts; k++) {
				char *name = gn_asprintf("--%s", cmd->opts[k].name);
				gn_completion_opt(c, path, name, cmd->opts[k].arg);
				free(name);
				if (cmd->opts[k].short_name) {
					char s[3] = {'-', cmd->opts[k].short_name, 0};
					gn_completion_opt(c, path, s, cmd->opts[k].arg);
				}
			}
			gn_completion_opt(c, path, "--help", NULL);
			free(path);
		}
	}
	gn_completion_cmd(c, "help", NULL);
	gn_completion_opt(c, "help", "--markdown", NULL);
	gn_completion_cmd(c, "man", NULL);
	gn_completion_cmd(c, "completion", NULL);
	for (size_t i = 0; i < ngopts; i++) {
		char *name = gn_asprintf("--%s", gopts[i].name);
		gn_completion_opt(c, "", name, gopts[i].arg);
		free(name);
		if (gopts[i].short_name) {
			char s[3] = {'-', gopts[i].short_name, 0};
			gn_completion_opt(c, "", s, gopts[i].arg);
		}
	}
	gn_completion_opt(c, "", "--help", NULL);
	char *s = gn_completion_bash_dup(c);
	gn_buf_puts(b, s);
	free(s);
	gn_completion_free(c);
}

/* Appends s with the characters Markdown would take for markup in running text escaped. */
static void md_text(gn_buf *b, const char *s)
{
	for (; *s; s++) {
		if (strchr("\\`*<>[]|", *s))
			gn_buf_puts(b, "\\");
		gn_buf_append(b, s, 1);
	}
}

/* Appends s for a code span in a table cell: a | would end the cell even there. */
static void md_cell_code(gn_buf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '|')
			gn_buf_puts(b, "\\");
		gn_buf_append(b, s, 1);
	}
}

static void md_settings(gn_buf *b, const gn_conf_table *settings, const cli_opt *gopts)
{
	gn_buf_puts(
		b,
		"### Global options and settings\n\n| flag | environment | config key | default | what |\n|---|---|---|---|---|\n");
	for (size_t i = 0; i < settings->n; i++) {
		const gn_conf_opt *o = &settings->opts[i];
		bool file = strcmp(o->key, "config") != 0;
		gn_buf_puts(b, "| ");
		if (gopts[i].short_name)
			gn_buf_printf(b, "`-%c`, ", gopts[i].short_name);
		gn_buf_printf(b, "`--%s ", o->key);
		md_cell_code(b, o->argname);
		gn_buf_puts(b, "` | ");
		gn_buf_printf(b, "`%s", settings->env_prefix);
		for (const char *k = o->key; *k; k++)
			gn_buf_printf(b, "%c", *k == '-' ? '_' : (*k >= 'a' && *k <= 'z' ? *k - 'a' + 'A' : *k));
		gn_buf_printf(b, "` | %s%s%s | ", file ? "`" : "", file ? o->key : "-", file ? "`" : "");
		if (o->def)
			gn_buf_printf(b, "`%s`", o->def);
		else
			gn_buf_puts(b, "none");
		gn_buf_puts(b, " | ");
		md_text(b, o->help);
		gn_buf_puts(b, " |\n");
	}
	gn_buf_puts(b, "| `-V`, `--version` | | | | print the version and exit |\n\n");
}

static void md_commands(gn_buf *b, const cli_group *const *groups, size_t ngroups)
{
	for (size_t g = 0; g < ngroups; g++) {
		gn_buf_printf(b, "### %s\n\n", groups[g]->name);
		if (!cli_group_bare(groups[g])) {
			md_text(b, groups[g]->summary);
			gn_buf_puts(b, "\n\n");
		}
		for (size_t i = 0; i < groups[g]->n; i++) {
			const cli_cmd *c = &groups[g]->cmds[i];
			gn_buf_printf(b, "#### `ganglion %s%s%s%s%s%s`\n\n", groups[g]->name,
				      cli_group_bare(groups[g]) ? "" : " ", cli_group_bare(groups[g]) ? "" : c->name,
				      c->nopts ? " [options]" : "", *c->synopsis ? " " : "", c->synopsis);
			md_text(b, c->summary);
			gn_buf_puts(b, "\n\n");
			for (size_t k = 0; k < c->nopts; k++) {
				const cli_opt *o = &c->opts[k];
				gn_buf_puts(b, "- `");
				if (o->short_name)
					gn_buf_printf(b, "-%c`, `", o->short_name);
				gn_buf_printf(b, "--%s%s%s`: ", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
				md_text(b, o->help);
				gn_buf_puts(b, "\n");
			}
			if (c->nopts)
				gn_buf_puts(b, "\n");
		}
	}
}

/* The exit-code table, as --help prints it ("  N  meaning" lines), as a Markdown table. */
static void md_exit_codes(gn_buf *b)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		abort();
	cli_exit_help(f);
	fclose(f);
	gn_buf_puts(b, "### Exit codes\n\n| exit | meaning |\n|---|---|\n");
	for (char *line = text, *nl; line && *line; line = nl ? nl + 1 : NULL) {
		nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		line += strspn(line, " ");
		size_t code = strcspn(line, " ");
		if (!line[code])
			continue;
		line[code] = '\0';
		gn_buf_printf(b, "| %s | ", line);
		md_text(b, line + code + 1 + strspn(line + code + 1, " "));
		gn_buf_puts(b, " |\n");
	}
	free(text);
}

/* The reference part of docs/CLI.md: the settings, every command with its options, and the exit
 * codes, all from the tables the program runs on. */
static void markdown(gn_buf *b, const gn_conf_table *settings, const cli_opt *gopts, const cli_group *const *groups,
		     size_t ngroups)
{
	md_settings(b, settings, gopts);
	md_commands(b, groups, ngroups);
	md_exit_codes(b);
}

int manpage_print(FILE *f, const char *what, const gn_conf_table *settings, const cli_opt *gopts, size_t ngopts,
		  const cli_group *const *groups, size_t ngroups)
{
	gn_buf b;
	gn_buf_init(&b);
	if (strcmp(what, "completion") == 0)
		completion(&b, gopts, ngopts, groups, ngroups);
	else if (strcmp(what, "markdown") == 0)
		markdown(&b, settings, gopts, groups, ngroups);
	else
		page(&b, settings, gopts, ngopts, groups, ngroups);
	fputs(b.data, f);
	gn_buf_cleanup(&b);
	return 0;
}
