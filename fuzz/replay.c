/* A main() for a fuzz target without libFuzzer: runs LLVMFuzzerTestOneInput once on each file
 * named on the command line, or in a directory named there (FUZZ_CORPUS by default: the target's
 * committed corpus, crash regressions included). Built with the normal compiler, so `make check`
 * replays every corpus in the plain and the sanitizer builds; scripts/fuzz.sh builds the real
 * fuzzers with clang. Exits 0 when every input ran (a bug aborts: an assertion or a sanitizer). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	if (!f || fstat(fileno(f), &st) != 0) {
		fprintf(stderr, "replay: cannot read %s\n", path);
		if (f)
			fclose(f);
		return -1;
	}
	/* An exact-size copy, so a read past the input is a sanitizer report, as under libFuzzer. */
	uint8_t *data = malloc(st.st_size ? (size_t)st.st_size : 1);
	size_t n = fread(data, 1, (size_t)st.st_size, f);
	fclose(f);
	if (n != (size_t)st.st_size) {
		fprintf(stderr, "replay: short read of %s\n", path);
		free(data);
		return -1;
	}
	LLVMFuzzerTestOneInput(data, n);
	free(data);
	return 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file in dir, in name order; *count adds them up. */
static int run_dir(const char *dir, int *count)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL;
	size_t n = 0;
	int rc = 0;
	if (!d) {
		fprintf(stderr, "replay: cannot open %s\n", dir);
		return -1;
	}
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		names = realloc(names, (n + 1) * sizeof(*names));
		names[n++] = strdup(e->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_names);
	for (size_t i = 0; i < n; i++) {
		char path[4096];
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			if (run_file(path))
				rc = -1;
			else
				(*count)++;
		}
		free(names[i]);
	}
	free(names);
	return rc;
}

int main(int argc, char **argv)
{
	static const char *const fallback[] = {FUZZ_CORPUS};
	const char *const *paths = (const char *const *)argv + 1;
	int npaths = argc - 1, count = 0, rc = 0;
	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	if (npaths == 0) {
		paths = fallback;
		npaths = 1;
	}
	for (int i = 0; i < npaths; i++) {
		struct stat st;
		if (stat(paths[i], &st) != 0) {
			fprintf(stderr, "replay: no such file or directory: %s\n", paths[i]);
			rc = 1;
		} else if (S_ISDIR(st.st_mode) ? run_dir(paths[i], &count) : (count++, run_file(paths[i]))) {
			rc = 1;
		}
	}
	if (count == 0) {
		fprintf(stderr, "replay: no input ran (an empty corpus proves nothing)\n");
		rc = 1;
	}
	printf("replay: %d input(s) of %s ran%s\n", count, npaths == 1 ? paths[0] : "the given paths",
	       rc ? ", with errors" : "");
	return rc;
}
