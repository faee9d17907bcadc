/* The CLI's man page and bash completion, written from its command and settings tables (see
 * lib/man.h and lib/completion.h). */
#ifndef GN_CLI_MANPAGE_H
#define GN_CLI_MANPAGE_H

#include "cli.h"
#include "conf.h"

/* Writes, for what "man", ganglion(1) in roff, for "completion" the bash completion script, or for
 * "markdown" the reference part of docs/CLI.md (settings, commands, exit codes) to f, from the settings table, the
 * global options (gopts: the settings then --version) and the command groups; returns 0. */
int manpage_print(FILE *f, const char *what, const gn_conf_table *settings, const cli_opt *gopts, size_t ngopts,
		  const cli_group *const *groups, size_t ngroups);

#endif
