/* Label selectors ("site=north,type=camera", "site!=south", "gpu", "!gpu") and the rules for
 * label keys and values, shared by the server (filtering) and the CLI (early checks). */
#ifndef GN_SELECTOR_H
#define GN_SELECTOR_H

#include "common.h"

#define GN_LABEL_KEY_MAX 63
#define GN_LABEL_VALUE_MAX 253
#define GN_SELECTOR_MAX_TERMS 32

enum gn_selector_op { GN_SEL_EQ, GN_SEL_NE, GN_SEL_HAS, GN_SEL_NOTHAS };

typedef struct gn_selector_term {
	enum gn_selector_op op;
	char *key;
	char *value; /* NULL for HAS / NOTHAS */
} gn_selector_term;

typedef struct gn_selector {
	gn_selector_term *terms;
	size_t n;
} gn_selector;

/* Parses s into out (cleaned with gn_selector_cleanup); an empty string selects everything. */
int gn_selector_parse(gn_selector *out, const char *s, gn_err *err) GN_WUR;
void gn_selector_cleanup(gn_selector *sel);
/* Checks a label key: 1..63 bytes, printable, none of space = ! , ; GN_EINVAL otherwise. */
int gn_label_key_check(const char *key, gn_err *err) GN_WUR;
/* Checks a key that is to be set as a label (on a device, or by an enrollment token): the rules of
 * gn_label_key_check, and not starting with "facts.": selectors read what devices report under
 * that prefix. */
int gn_label_key_settable(const char *key, gn_err *err) GN_WUR;
/* Checks a label value: 0..253 bytes, no control characters. */
int gn_label_value_check(const char *value, gn_err *err) GN_WUR;

#endif
