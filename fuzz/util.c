/* Helpers shared by the fuzz targets. */
#include "fuzz.h"

#include <string.h>

char *fuzz_read_source(const char *rel, size_t *out_len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", SRCDIR, rel);
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "fuzz: cannot open %s\n", path);
		abort();
	}
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		fprintf(stderr, "fuzz: cannot read %s\n", path);
		abort();
	}
	buf[n] = '\0';
	fclose(f);
	if (out_len)
		*out_len = (size_t)n;
	return buf;
}
