/* Fuzz target: label selectors (gn_selector_parse, lib/selector.c), which the server turns into
 * the parameters of its device queries and the CLI checks before sending. The input is a selector
 * as a client would send it.
 *
 * Properties: an accepted selector has 1 to GN_SELECTOR_MAX_TERMS terms, each with a key and
 * value that pass the label checks (a value only for = and !=); written back as text
 * ("k==v", "k!=v", "k", "!k") it parses to the same terms; a selector that is refused leaves
 * nothing allocated. */
#include <string.h>

#include "fuzz.h"
#include "selector.h"

static void check_terms(const gn_selector *sel)
{
	gn_err err;
	FUZZ_CHECK(sel->n >= 1 && sel->n <= GN_SELECTOR_MAX_TERMS, "%zu terms", sel->n);
	for (size_t i = 0; i < sel->n; i++) {
		const gn_selector_term *t = &sel->terms[i];
		bool valued = t->op == GN_SEL_EQ || t->op == GN_SEL_NE;
		FUZZ_CHECK(t->key && gn_label_key_check(t->key, &err) == 0, "term %zu: a bad key passed", i);
		FUZZ_CHECK(valued == (t->value != NULL), "term %zu: value and operator disagree", i);
		FUZZ_CHECK(!t->value || gn_label_value_check(t->value, &err) == 0, "term %zu: a bad value passed", i);
	}
}

/* Writes sel back as selector text (new). */
static char *unparse(const gn_selector *sel)
{
	gn_buf b;
	gn_buf_init(&b);
	for (size_t i = 0; i < sel->n; i++) {
		const gn_selector_term *t = &sel->terms[i];
		if (i)
			gn_buf_puts(&b, ",");
		switch (t->op) {
		case GN_SEL_EQ: gn_buf_printf(&b, "%s==%s", t->key, t->value); break;
		case GN_SEL_NE: gn_buf_printf(&b, "%s!=%s", t->key, t->value); break;
		case GN_SEL_HAS: gn_buf_puts(&b, t->key); break;
		case GN_SEL_NOTHAS: gn_buf_printf(&b, "!%s", t->key); break;
		}
	}
	gn_buf_puts(&b, "");
	return gn_buf_detach(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = gn_strndup((const char *)data, size);
	gn_selector sel, again;
	gn_err err;
	if (gn_selector_parse(&sel, s, &err)) {
		FUZZ_CHECK(sel.n == 0 && sel.terms == NULL, "a refused selector kept terms");
		free(s);
		return 0;
	}
	if (*s) {
		check_terms(&sel);
		char *text = unparse(&sel);
		FUZZ_CHECK(gn_selector_parse(&again, text, &err) == 0, "'%s' (from '%s') refused: %s", text, s,
			   err.msg);
		FUZZ_CHECK(again.n == sel.n, "'%s' has %zu terms, '%s' %zu", s, sel.n, text, again.n);
		for (size_t i = 0; i < sel.n; i++) {
			const gn_selector_term *a = &sel.terms[i], *b = &again.terms[i];
			FUZZ_CHECK(a->op == b->op && strcmp(a->key, b->key) == 0 &&
					   (!a->value ? !b->value : b->value && strcmp(a->value, b->value) == 0),
				   "term %zu of '%s' reads differently from '%s'", i, s, text);
		}
		gn_selector_cleanup(&again);
		free(text);
	} else {
		FUZZ_CHECK(sel.n == 0, "an empty selector has terms");
	}
	gn_selector_cleanup(&sel);
	free(s);
	return 0;
}
