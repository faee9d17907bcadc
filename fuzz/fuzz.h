/* What every fuzz target (fuzz/fuzz_*.c) shares: the libFuzzer entry points, and a check that
 * stops the run when a property of the code under test does not hold. Each target's comment says
 * what it feeds and which properties it checks beyond "no crash, no leak, no undefined behaviour". */
#ifndef GN_FUZZ_H
#define GN_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional: runs once before the first input. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* Aborts with a message when cond is false: a finding, as a crash is (libFuzzer saves the input). */
#define FUZZ_CHECK(cond, ...)                                                                       \
	do {                                                                                        \
		if (!(cond)) {                                                                      \
			fprintf(stderr, "%s:%d: property failed: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                                               \
			fputc('\n', stderr);                                                        \
			abort();                                                                    \
		}                                                                                   \
	} while (0)

/* Runs a call whose result does not matter here (GCC will not let (void) drop a GN_WUR result). */
#define FUZZ_IGNORE(call)   \
	do {                \
		if (call) { \
		}           \
	} while (0)

/* Returns the file at SRCDIR/rel whole, NUL-terminated (new; *out_len bytes), or aborts: the
 * targets' fixed inputs (a trusted root, ...) are committed files. */
char *fuzz_read_source(const char *rel, size_t *out_len);

#endif
