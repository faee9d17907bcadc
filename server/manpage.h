/* gangliond's man pages, written from its option table and usage text (see lib/man.h). */
#ifndef GD_MANPAGE_H
#define GD_MANPAGE_H

#include <stdio.h>

/* Writes, for what "man", gangliond(8) (usage is the --help usage text) or, for "man-config",
 * gangliond.conf(5) to f in roff; returns 0 (the exit status). */
int manpage_print(FILE *f, const char *usage, const char *what);

#endif
