/* Label selector parsing and label validation. */
#include "selector.h"

#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int gn_label_key_check(const char *key, gn_err *err)
{
	size_t n = strlen(key);
	if (!gn_utf8_valid(key, n))
		return gn_err_set(err, GN_EINVAL, "label key is not valid UTF-8");
	if (n == 0 || n > GN_LABEL_KEY_MAX)
		return gn_err_set(err, GN_EINVAL, "label key must be 1 to %d bytes", GN_LABEL_KEY_MAX);
	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		if (*p <= ' ' || *p == 0x7f || strchr("=!,", *p))
			return gn_err_set(err, GN_EINVAL,
					  "label key '%.63s' contains a space, a control character or one of = ! ,",
					  key);
	return 0;
}

int gn_label_key_settable(const char *key, gn_err *err)
{
	int error = gn_label_key_check(key, err);
	if (!error && strncmp(key, "facts.", 6) == 0)
		return gn_err_set(
			err, GN_EINVAL,
			"label key '%.63s' starts with 'facts.', which selectors keep for what devices report", key);
	return error;
}

int gn_label_value_check(const char *value, gn_err *err)
{
	if (!gn_utf8_valid(value, strlen(value)))
		return gn_err_set(err, GN_EINVAL, "label value is not valid UTF-8");
	if (strlen(value) > GN_LABEL_VALUE_MAX)
		return gn_err_set(err, GN_EINVAL, "label value must be at most %d bytes", GN_LABEL_VALUE_MAX);
	for (const unsigned char *p = (const unsigned char *)value; *p; p++)
		if (*p < ' ' || *p == 0x7f)
			return gn_err_set(err, GN_EINVAL, "label value contains a control character");
	return 0;
}

void gn_selector_cleanup(gn_selector *sel)
{
	for (size_t i = 0; i < sel->n; i++) {
		free(sel->terms[i].key);
		free(sel->terms[i].value);
	}
	free(sel->terms);
	sel->terms = NULL;
	sel->n = 0;
}

static int parse_term(gn_selector_term *t, const char *s, size_t len, gn_err *err)
{
	char *term = gn_strndup(s, len);
	int error = 0;
	char *ne = strstr(term, "!="), *eq = strchr(term, '=');

	t->key = t->value = NULL;
	if (ne) {
		t->op = GN_SEL_NE;
		*ne = '\0';
		t->key = gn_strdup(term);
		t->value = gn_strdup(ne + 2);
	} else if (eq) {
		t->op = GN_SEL_EQ;
		*eq = '\0';
		t->key = gn_strdup(term);
		/* Accept == as a synonym of =, as kubectl does. */
		t->value = gn_strdup(eq[1] == '=' ? eq + 2 : eq + 1);
	} else if (term[0] == '!') {
		t->op = GN_SEL_NOTHAS;
		t->key = gn_strdup(term + 1);
	} else {
		t->op = GN_SEL_HAS;
		t->key = gn_strdup(term);
	}
	if ((error = gn_label_key_check(t->key, err)))
		goto out;
	if (t->value && (error = gn_label_value_check(t->value, err)))
		goto out;
out:
	if (error) {
		char why[sizeof(err->msg)];
		snprintf(why, sizeof(why), "%s", err ? err->msg : "");
		gn_err_set(err, GN_EINVAL, "bad selector term '%.100s': %s", term, why);
		free(t->key);
		free(t->value);
		t->key = t->value = NULL;
	}
	free(term);
	return error;
}

int gn_selector_parse(gn_selector *out, const char *s, gn_err *err)
{
	out->terms = NULL;
	out->n = 0;
	if (!s || !*s)
		return 0;
	const char *p = s;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (len == 0) {
			gn_selector_cleanup(out);
			return gn_err_set(err, GN_EINVAL, "bad selector '%.100s': empty term", s);
		}
		if (out->n == GN_SELECTOR_MAX_TERMS) {
			gn_selector_cleanup(out);
			return gn_err_set(err, GN_EINVAL, "a selector has at most %d terms", GN_SELECTOR_MAX_TERMS);
		}
		out->terms = gn_realloc(out->terms, (out->n + 1) * sizeof(*out->terms));
		int rc = parse_term(&out->terms[out->n], p, len, err);
		if (rc) {
			gn_selector_cleanup(out);
			return rc;
		}
		out->n++;
		if (!comma)
			return 0;
		p = comma + 1;
	}
}
