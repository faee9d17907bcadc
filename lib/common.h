/* Shared basics for libganglion: error codes, the error-detail struct, allocation wrappers.
 * The library never prints or exits; fallible functions return 0 or a negative GN_E code and
 * fill a gn_err once, where the failure happens. */
#ifndef GN_COMMON_H
#define GN_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define GN_WUR __attribute__((warn_unused_result))
#define GN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define GN_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Expected failures; anything else is -1 (GN_ERROR). */
enum {
	GN_OK = 0,
	GN_ERROR = -1,
	GN_EINVAL = -2,     /* malformed or invalid input */
	GN_ENOTFOUND = -3,  /* no such object */
	GN_ECONFLICT = -4,  /* exists already / state conflict */
	GN_EAUTH = -5,      /* missing or bad credentials */
	GN_EFORBIDDEN = -6, /* credentials lack the scope */
	GN_ETOOBIG = -7,    /* over a configured limit */
	GN_EUNAVAIL = -8,   /* dependency (database, server) unreachable */
	GN_EGONE = -9,      /* used up, expired or revoked */
	GN_EMISMATCH = -10, /* well-formed, but contradicted by the data it describes */
};

/* The longest message a gn_err holds (bytes, with the NUL). Long enough for a runtime's own
 * diagnosis (a model loader's message can name a long node path twice), bounded so a device's
 * event stays small. */
#define GN_ERR_MSG_MAX 8192

/* Details of one failure: a code and a human-readable message. */
typedef struct gn_err {
	int code;
	char msg[GN_ERR_MSG_MAX];
} gn_err;

/* Fills err (if not NULL) with code and a formatted message; returns code for `return gn_err_set(...)`. */
int gn_err_set(gn_err *err, int code, const char *fmt, ...) GN_PRINTF(3, 4);
/* Clears err. */
void gn_err_clear(gn_err *err);
/* Returns a short name for a GN_E code ("invalid", "not found", ...). */
const char *gn_err_name(int code);

/* Allocation wrappers: abort on out-of-memory, so callers never test for NULL. */
void *gn_malloc(size_t n);
void *gn_calloc(size_t n, size_t size);
void *gn_realloc(void *p, size_t n);
char *gn_strdup(const char *s);
char *gn_strndup(const char *s, size_t n);
/* Returns a new string formatted like printf. */
char *gn_asprintf(const char *fmt, ...) GN_PRINTF(1, 2);

/* A growable byte buffer; always NUL-terminated after its len bytes. */
typedef struct gn_buf {
	char *data;
	size_t len;
	size_t cap;
} gn_buf;

void gn_buf_init(gn_buf *b);
void gn_buf_cleanup(gn_buf *b);
void gn_buf_append(gn_buf *b, const void *p, size_t n);
void gn_buf_puts(gn_buf *b, const char *s);
void gn_buf_printf(gn_buf *b, const char *fmt, ...) GN_PRINTF(2, 3);
/* Returns the 64-bit FNV-1a hash of len bytes, continuing from seed (0: start a new hash); for hash
 * tables and to notice a changed text, never for security. */
uint64_t gn_fnv1a(uint64_t seed, const void *p, size_t len);
/* Appends s as a Prometheus text-format label value: backslash, double quote and newline escaped. */
void gn_prom_label(gn_buf *b, const char *s);
/* Detaches and returns the buffer's data (new; caller frees); b is left empty. */
char *gn_buf_detach(gn_buf *b);

/* Checks that s is a canonical UUID (8-4-4-4-12 hex digits), so it can go to a uuid column. */
bool gn_is_uuid(const char *s);
/* Writes the 16 bytes of UUID s (as gn_is_uuid accepts it, either case) to out; GN_EINVAL when s
 * is not one. For keys kept per device: 16 bytes instead of 37. */
int gn_uuid_parse(unsigned char out[16], const char *s) GN_WUR;
/* Writes uuid as its canonical text (lowercase hex digits and dashes, NUL-terminated) to out. */
void gn_uuid_format(char out[37], const unsigned char uuid[16]);

/* Returns the Levenshtein distance between a and b (SIZE_MAX when either is longer than 63 bytes). */
size_t gn_edit_distance(const char *a, const char *b);
/* Returns the candidate nearest to word, for a "did you mean" (borrowed from cands): within an edit
 * distance of max_dist and less than word's length; the first of equals; NULL when none is near or
 * word is itself a candidate. */
const char *gn_nearest(const char *word, const char *const *cands, size_t n, size_t max_dist);

/* Returns the current wall-clock time in seconds / monotonic time in nanoseconds. */
int64_t gn_now(void);
uint64_t gn_mono_ns(void);

#endif
