/* Fuzz target: canonical JSON (gn_json_canonical, what TUF signatures cover), bounded parsing
 * (gn_json_parse) and the UTF-8 helpers that clean client text (lib/json.c). The input is JSON
 * text, or any bytes for the UTF-8 helpers.
 *
 * Properties: canonical form is a function of the value (the same value, however it was written
 * or copied, gives the same bytes; different values give different bytes); it parses back to the
 * same value where it is valid JSON; keys come out sorted bytewise; a value with a real number has
 * none. gn_json_parse refuses nesting past its limit and otherwise agrees with jansson;
 * gn_utf8_clean_dup always returns valid UTF-8 without control characters, unchanged when there
 * was nothing to clean; problem+json bodies parse for any title and detail. */
#include <string.h>

#include "fuzz.h"
#include "json.h"

#define DEPTH 16

/* Canonical bytes of j (new), or NULL when j holds a real number. */
static char *canonical(const json_t *j, size_t *out_len)
{
	char *c = NULL;
	gn_err err;
	if (gn_json_canonical(&c, out_len, j, &err))
		return NULL;
	return c;
}

/* Whether j holds a real number anywhere. */
static bool has_real(const json_t *j)
{
	const char *k;
	json_t *v;
	size_t i;
	if (json_is_real(j))
		return true;
	json_object_foreach((json_t *)j, k, v)
		if (has_real(v))
			return true;
	json_array_foreach(j, i, v)
		if (has_real(v))
			return true;
	return false;
}

/* Checks that the keys of every object in canonical text c come out in bytewise order: re-parsed
 * with jansson's order kept, each object's keys are sorted. */
static void check_sorted(const json_t *j)
{
	const char *k, *prev = NULL;
	json_t *v;
	size_t i;
	json_object_foreach((json_t *)j, k, v) {
		FUZZ_CHECK(!prev || strcmp(prev, k) < 0, "keys '%s' and '%s' out of order", prev, k);
		prev = k;
		check_sorted(v);
	}
	json_array_foreach(j, i, v)
		check_sorted(v);
}

static void check_canonical(const json_t *j)
{
	size_t n, n2;
	char *c = canonical(j, &n);
	FUZZ_CHECK(!c == has_real(j), "canonical form %s a real number", c ? "accepted" : "refused without");
	if (!c)
		return;
	/* The same value written another way, or copied, has the same canonical bytes. */
	char *dumped = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_ENSURE_ASCII);
	json_t *again = json_loads(dumped, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	FUZZ_CHECK(again && json_equal((json_t *)j, again), "jansson's own round trip");
	char *c2 = canonical(again, &n2);
	FUZZ_CHECK(c2 && n == n2 && memcmp(c, c2, n) == 0, "two canonical forms of one value:\n%s\n%s", c, c2);
	free(c2);
	json_t *copy = json_deep_copy(j);
	c2 = canonical(copy, &n2);
	FUZZ_CHECK(c2 && n == n2 && memcmp(c, c2, n) == 0, "a copy has another canonical form");
	free(c2);
	/* Canonical text escapes only '"' and '\\': control characters stand raw in its strings
	 * (nowhere else). Written as \u00XX, it is JSON that reads back as the same value (so no two
	 * values share a form), in sorted order, and is its own canonical form. */
	gn_buf text;
	gn_buf_init(&text);
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)c[i] < 0x20)
			gn_buf_printf(&text, "\\u%04x", (unsigned char)c[i]);
		else
			gn_buf_append(&text, c + i, 1);
	}
	json_t *back = json_loadb(text.data, text.len, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_PRESERVE_ORDER, NULL);
	FUZZ_CHECK(back && json_equal((json_t *)j, back), "canonical text does not read back as the value:\n%s", c);
	check_sorted(back);
	c2 = canonical(back, &n2);
	FUZZ_CHECK(c2 && n == n2 && memcmp(c, c2, n) == 0, "canonical form is not a fixed point");
	free(c2);
	json_decref(back);
	gn_buf_cleanup(&text);
	json_decref(copy);
	json_decref(again);
	free(dumped);
	free(c);
}

static void check_parse(const uint8_t *data, size_t size)
{
	json_t *j = NULL, *plain = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
	gn_err err;
	if (gn_json_parse(&j, (const char *)data, size, DEPTH, &err) == 0) {
		FUZZ_CHECK(plain && json_equal(j, plain), "gn_json_parse and jansson disagree");
		json_decref(j);
	}
	json_decref(plain);
}

static void check_utf8(const uint8_t *data, size_t size)
{
	char *s = gn_strndup((const char *)data, size);
	char *clean = gn_utf8_clean_dup(s);
	size_t n = strlen(clean);
	FUZZ_CHECK(gn_utf8_valid(clean, n), "gn_utf8_clean_dup returned invalid UTF-8");
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK((unsigned char)clean[i] >= 0x20 && clean[i] != 0x7f, "a control character left in");
	bool controls = false;
	for (size_t i = 0; s[i] && !controls; i++)
		controls = (unsigned char)s[i] < 0x20 || s[i] == 0x7f;
	if (gn_utf8_valid(s, strlen(s)) && !controls)
		FUZZ_CHECK(strcmp(s, clean) == 0, "clean text was changed");
	char *p = gn_problem_dup(400, s, s);
	json_t *j = json_loads(p, 0, NULL);
	FUZZ_CHECK(j && json_integer_value(json_object_get(j, "status")) == 400, "problem body does not parse: %s", p);
	char desc[256];
	gn_problem_describe(desc, sizeof(desc), (const char *)data, size);
	gn_problem_describe(desc, sizeof(desc), p, strlen(p));
	json_decref(j);
	free(p);
	free(clean);
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *j =
		json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
	if (j) {
		check_canonical(j);
		json_decref(j);
	}
	check_parse(data, size);
	check_utf8(data, size);
	return 0;
}
