/* What bench/rss_floor.c and bench/rss_layers.c read of their own memory. Header-only on purpose:
 * both programs measure what the libraries they link cost, so they link nothing of Ganglion's. */
#ifndef GANGLION_BENCH_PROC_MEM_H
#define GANGLION_BENCH_PROC_MEM_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The value of field key in the text b ("Pss:   123 kB"), or -1. */
static inline long proc_field(const char *b, const char *key)
{
	const char *p = strstr(b, key);
	return p ? strtol(p + strlen(key), NULL, 10) : -1L;
}

/* Reads at most len - 1 bytes of path into b, NUL-terminated (empty when it cannot be read). */
static inline void proc_slurp(const char *path, char *b, size_t len)
{
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(b, 1, len - 1, f) : 0;
	if (f)
		fclose(f);
	b[n] = '\0';
}

#endif
