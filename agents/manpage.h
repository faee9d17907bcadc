/* ganglion-agent's man pages and bash completion, written from its option table and usage text
 * (see lib/man.h and lib/completion.h). */
#ifndef GA_MANPAGE_H
#define GA_MANPAGE_H

#include <stdio.h>

/* Writes, for what "man", ganglion-agent(8) (usage is the --help usage text), for "man-config"
 * ganglion-agent.conf(5), both in roff, or for "completion" the bash completion script to f;
 * returns 0 (the exit status). */
int manpage_print(FILE *f, const char *usage, const char *what);

#endif
