/* Bash completion scripts written from the same tables as --help (see man.h for the pages):
 * a program's `completion` command describes its commands and options to a gn_completion and
 * prints the script, which make writes at build time. */
#ifndef GN_COMPLETION_H
#define GN_COMPLETION_H

#include "conf.h"

typedef struct gn_completion gn_completion;

/* Returns an empty description of program (new; gn_completion_free it). */
gn_completion *gn_completion_new(const char *program);
void gn_completion_free(gn_completion *c);
/* Adds a command: its words after the program name ("devices list"), and the synopsis of its
 * positional arguments (completed as file names when it names a FILE; NULL when none). */
void gn_completion_cmd(gn_completion *c, const char *path, const char *synopsis);
/* Adds an option of the command path ("" for options every command accepts): name is "--url"
 * or "-o"; arg the name of its value ("FILE", "table|json"), NULL for a flag. Values named
 * FILE, PATH or DIR complete as file names, lowercase choices a|b as those words. */
void gn_completion_opt(gn_completion *c, const char *path, const char *name, const char *arg);
/* Adds every option of t as an option of every command, then --help and --version. */
void gn_completion_conf(gn_completion *c, const gn_conf_table *t);
/* Adds the commands of a usage text's "Commands:" list (see gn_man_cmds_parse), each with the
 * --options its entry shows ("enroll --token TOKEN [--name NAME]"). */
void gn_completion_usage(gn_completion *c, const char *usage);
/* Returns the bash script (new): `complete -F` for the program. */
char *gn_completion_bash_dup(const gn_completion *c);

#endif
