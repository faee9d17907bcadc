/* Unit tests for lib/manifest.c: YAML and JSON documents, scalar resolution, lines in errors, the
 * kinds' checks, and duplicates across files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "manifest.h"

#define DEPLOYMENT                  \
	"apiVersion: ganglion/v1\n" \
	"kind: Deployment\n"        \
	"name: cams\n"              \
	"model: det\n"              \
	"selector: site=north\n"    \
	"follow: production\n"      \
	"strategy:\n"               \
	"  stages:\n"               \
	"    - percent: 10\n"       \
	"      bake: 600\n"         \
	"    - {percent: 100}\n"    \
	"  gates: {max_error_rate: 0.05, min_requests: 0x10}\n"

/* Adds one file to a fresh set; returns the set (gn_manifest_set_cleanup it). */
static gn_manifest_set one(const char *file, const char *text)
{
	gn_manifest_set set;
	memset(&set, 0, sizeof(set));
	gn_manifest_set_add(&set, file, text, strlen(text));
	return set;
}

static void test_yaml_deployment(void **state)
{
	gn_manifest_set set = one("fleet/cams.yaml", DEPLOYMENT);
	if (set.errors.n)
		fail_msg("%s:%d: %s", set.errors.v[0].file, set.errors.v[0].line, set.errors.v[0].msg);
	assert_int_equal(set.n, 1);
	const gn_manifest_object *o = &set.v[0];
	assert_string_equal(o->kind->name, "Deployment");
	assert_string_equal(o->key, "cams");
	json_t *st = json_object_get(o->doc, "strategy");
	assert_int_equal(json_integer_value(json_object_get(json_array_get(json_object_get(st, "stages"), 0), "bake")),
			 600);
	json_t *gates = json_object_get(st, "gates");
	assert_true(json_is_real(json_object_get(gates, "max_error_rate")));
	assert_int_equal(json_integer_value(json_object_get(gates, "min_requests")), 16);
	/* Lines of keys, list items, and the nearest enclosing value for unknown paths. */
	assert_int_equal(gn_manifest_line(&o->lines, "follow"), 6);
	assert_int_equal(gn_manifest_line(&o->lines, "strategy.stages[1]"), 11);
	assert_int_equal(gn_manifest_line(&o->lines, "strategy.stages[0].bake"), 10);
	assert_int_equal(gn_manifest_line(&o->lines, "strategy.stages[0].nope"), 9);
	assert_int_equal(gn_manifest_line(&o->lines, "strategy.gates.min_requests"), 12);
	assert_int_equal(gn_manifest_line(&o->lines, "nothing.here"), 1);
	gn_manifest_set_cleanup(&set);
}

static void test_json_alias(void **state)
{
	gn_manifest_set set =
		one("a.json", "{\n\t\"apiVersion\": \"ganglion/v1\",\n\t\"kind\": \"ModelAlias\",\n"
			      "\t\"model\": \"det\", \"alias\": \"production\",\n\t\"version\": \"1.2.0\"\n}\n");
	if (set.errors.n)
		fail_msg("%d: %s", set.errors.v[0].line, set.errors.v[0].msg);
	assert_int_equal(set.n, 1);
	assert_string_equal(set.v[0].key, "det/production");
	assert_int_equal(gn_manifest_line(&set.v[0].lines, "version"), 5);
	gn_manifest_set_cleanup(&set);
}

/* Plain scalars resolve by YAML 1.2's core schema; quoted ones are always text. */
static void test_scalars(void **state)
{
	static const struct {
		const char *yaml;
		json_type type;
	} cases[] = {
		{"~", JSON_NULL},        {"null", JSON_NULL},    {"", JSON_NULL},        {"true", JSON_TRUE},
		{"False", JSON_FALSE},   {"yes", JSON_STRING},   {"on", JSON_STRING},    {"12", JSON_INTEGER},
		{"-3", JSON_INTEGER},    {"0o17", JSON_INTEGER}, {"0x1F", JSON_INTEGER}, {"1.5", JSON_REAL},
		{"1e3", JSON_REAL},      {".5", JSON_REAL},      {"1.2.0", JSON_STRING}, {"\"12\"", JSON_STRING},
		{"'true'", JSON_STRING}, {"0x", JSON_STRING},    {"1_000", JSON_STRING}, {"12abc", JSON_STRING},
	};
	for (size_t i = 0; i < GN_ARRAY_LEN(cases); i++) {
		char text[200];
		snprintf(text, sizeof(text),
			 "apiVersion: ganglion/v1\nkind: Deployment\nname: a\nmodel: m\nselector: s=1\nfollow: v1\n"
			 "strategy: {x: %s}\n",
			 cases[i].yaml);
		gn_manifest_set set = one("s.yaml", text);
		if (set.n != 1)
			fail_msg("'%s': %s", cases[i].yaml, set.errors.n ? set.errors.v[0].msg : "no object");
		json_t *v = json_object_get(json_object_get(set.v[0].doc, "strategy"), "x");
		if (json_typeof(v) != cases[i].type)
			fail_msg("'%s' resolved to type %d, not %d", cases[i].yaml, json_typeof(v), cases[i].type);
		gn_manifest_set_cleanup(&set);
	}
}

/* Each bad file: no object, and an error on the expected line whose message contains a phrase. */
static void test_refusals(void **state)
{
	static const struct {
		const char *file, *text;
		int line;
		const char *phrase;
	} cases[] = {
		{"a.yaml", "apiVersion: ganglion/v1\nkind: Deployment\nname: [unclosed\n", 4,
		 "flow sequence that started at line 3"},
		{"a.yaml", "apiVersion: ganglion/v1\nkind: Deployment\n  name: x\n", 3, "YAML syntax error"},
		{"a.yaml", "apiVersion: ganglion/v1\nkind: Gadget\n", 2, "unknown kind 'Gadget'"},
		{"a.yaml", "apiVersion: v2\nkind: ModelAlias\nmodel: m\nalias: a\nversion: 1.0.0\n", 1,
		 "apiVersion must be ganglion/v1"},
		{"a.yaml", "kind: ModelAlias\nmodel: m\nalias: a\nversion: 1.0.0\n", 1, "apiVersion is required"},
		{"a.yaml",
		 "apiVersion: ganglion/v1\nkind: ModelAlias\nmodel: m\nalias: a\nversion: 1.0.0\ncolour: red\n", 6,
		 "unknown field 'colour'"},
		{"a.yaml", "apiVersion: ganglion/v1\nkind: ModelAlias\nmodel: m\nalias: a\nversion: 1.2\n", 5,
		 "version must be text, not a number (quote it"},
		{"a.yaml", "apiVersion: ganglion/v1\nkind: ModelAlias\nmodel: m\nalias: a\n", 1,
		 "needs a field 'version'"},
		{"a.yaml", "apiVersion: ganglion/v1\nkind: ModelAlias\nmodel: Big\nalias: a\nversion: 1.0.0\n", 3,
		 "model:"},
		{"a.yaml", "apiVersion: ganglion/v1\nkind: ModelAlias\nmodel: m\nalias: a\nversion: one\n", 5,
		 "version:"},
		{"a.yaml", "apiVersion: ganglion/v1\nkind: ModelAlias\nmodel: m\nmodel: n\nalias: a\nversion: 1.0.0\n",
		 4, "duplicate key 'model' (first at line 3)"},
		{"a.yaml", "apiVersion: ganglion/v1\nkind: ModelAlias\nmodel: &m m\nalias: *m\nversion: 1.0.0\n", 3,
		 "anchors and aliases are not supported"},
		{"a.yaml", "apiVersion: ganglion/v1\nkind: ModelAlias\nmodel: !!str m\nalias: a\nversion: 1.0.0\n", 3,
		 "tags"},
		{"a.yaml",
		 "apiVersion: ganglion/v1\nkind: ModelAlias\nmodel: m\nalias: a\nversion: 1.0.0\n---\nkind: x\n", 6,
		 "one object per file"},
		{"a.yaml", "- just\n- a list\n", 1, "must be a mapping"},
		{"a.yaml", "# only a comment\n", 0, "no document"},
		{"a.yaml",
		 "apiVersion: ganglion/v1\nkind: Deployment\nname: Cams\nmodel: m\nselector: ''\nfollow: x y\n", 3,
		 "name: 'Cams'"},
		{"a.yaml", "apiVersion: ganglion/v1\nkind: Deployment\nname: c\nmodel: m\nselector: ''\nfollow: p\n", 5,
		 "selector: empty"},
		{"a.yaml",
		 "apiVersion: ganglion/v1\nkind: Deployment\nname: c\nmodel: m\nselector: a=b\nfollow: 'x y'\n", 6,
		 "neither a version"},
		{"a.yaml",
		 "apiVersion: ganglion/v1\nkind: Deployment\nname: c\nmodel: m\nselector: a=b\nfollow: p\n"
		 "strategy: [1]\n",
		 7, "strategy must be an object, not a list"},
		{"a.yaml",
		 "apiVersion: ganglion/v1\nkind: Deployment\nname: c\nmodel: m\nselector: a=b\nfollow: p\n"
		 "strategy: {x: .inf}\n",
		 7, "not a finite number"},
		{"a.yaml", "apiVersion: ganglion/v1\nkind: ModelAlias\nmodel: m\nalias: a\nversion: \"1.0.0\\0\"\n", 5,
		 "NUL"},
		{"a.json", "{\"apiVersion\": \"ganglion/v1\",\n \"kind\": \"ModelAlias\",\n \"kind\": \"ModelAlias\"}",
		 3, "JSON syntax error"},
		{"a.json", "apiVersion: ganglion/v1\nkind: ModelAlias\nmodel: m\nalias: a\nversion: 1.0.0\n", 1,
		 "JSON syntax error"},
	};
	for (size_t i = 0; i < GN_ARRAY_LEN(cases); i++) {
		gn_manifest_set set = one(cases[i].file, cases[i].text);
		if (set.n != 0)
			fail_msg("case %zu was accepted", i);
		bool found = false;
		for (size_t k = 0; k < set.errors.n; k++)
			if (set.errors.v[k].line == cases[i].line && strstr(set.errors.v[k].msg, cases[i].phrase) &&
			    strcmp(set.errors.v[k].file, cases[i].file) == 0)
				found = true;
		if (!found)
			fail_msg("case %zu: no error on line %d with '%s'; first: %d: %s", i, cases[i].line,
				 cases[i].phrase, set.errors.n ? set.errors.v[0].line : -1,
				 set.errors.n ? set.errors.v[0].msg : "(none)");
		gn_manifest_set_cleanup(&set);
	}
}

/* A document with several problems reports each of them. */
static void test_every_error(void **state)
{
	gn_manifest_set set =
		one("x.yaml", "apiVersion: ganglion/v1\nkind: Deployment\nname: X\nmodel: m\nselector: 3\n"
			      "follow: p\nextra: 1\n");
	assert_int_equal(set.n, 0);
	assert_int_equal(set.errors.n, 2); /* selector's type and the unknown field (the name waits for them) */
	assert_int_equal(set.errors.v[0].line + set.errors.v[1].line, 5 + 7);
	gn_manifest_set_cleanup(&set);
}

static void test_duplicates_across_files(void **state)
{
	const char *a = "apiVersion: ganglion/v1\nkind: ModelAlias\nmodel: m\nalias: a\nversion: 1.0.0\n";
	gn_manifest_set set;
	memset(&set, 0, sizeof(set));
	gn_manifest_set_add(&set, "one.yaml", a, strlen(a));
	gn_manifest_set_add(&set, "two.yml", a, strlen(a));
	gn_manifest_set_finish(&set);
	assert_int_equal(set.n, 2);
	assert_int_equal(set.errors.n, 1);
	assert_string_equal(set.errors.v[0].file, "two.yml");
	assert_non_null(strstr(set.errors.v[0].msg, "declared again (first in one.yaml"));
	assert_non_null(gn_manifest_set_find(&set, "ModelAlias", "m/a"));
	assert_null(gn_manifest_set_find(&set, "Deployment", "m/a"));
	json_t *j = gn_manifest_errors_json(&set.errors);
	assert_int_equal(json_array_size(j), 1);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(j, 0), "line")), 1);
	json_decref(j);
	gn_manifest_set_cleanup(&set);
}

static void test_limits(void **state)
{
	char deep[200] = "apiVersion: ganglion/v1\nkind: Deployment\nstrategy: ";
	for (int i = 0; i < 40; i++)
		strcat(deep, "[");
	gn_manifest_set set = one("d.yaml", deep);
	assert_int_equal(set.n, 0);
	assert_true(set.errors.n >= 1);
	gn_manifest_set_cleanup(&set);
	assert_true(gn_manifest_is_document("a/b.yaml"));
	assert_true(gn_manifest_is_document("b.yml"));
	assert_true(gn_manifest_is_document("b.json"));
	assert_false(gn_manifest_is_document("README.md"));
	assert_false(gn_manifest_is_document(".yaml"));
	gn_manifest_errors e;
	memset(&e, 0, sizeof(e));
	for (int i = 0; i < GN_MANIFEST_MAX_ERRORS + 5; i++)
		gn_manifest_errors_add(&e, "f", i, "error %d", i);
	assert_int_equal(e.n, GN_MANIFEST_MAX_ERRORS);
	json_t *j = gn_manifest_errors_json(&e);
	assert_string_equal(json_string_value(json_object_get(json_array_get(j, GN_MANIFEST_MAX_ERRORS), "message")),
			    "and 5 more errors");
	json_decref(j);
	gn_manifest_errors_cleanup(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_yaml_deployment), cmocka_unit_test(test_json_alias),
		cmocka_unit_test(test_scalars),         cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_every_error),     cmocka_unit_test(test_duplicates_across_files),
		cmocka_unit_test(test_limits),
	};
	return cmocka_run_group_tests_name("manifest", tests, NULL, NULL);
}
