/* Unit tests for server/audit.c's table of actions: every action the server records is documented
 * in docs/API.md's audit section and in api/openapi.yaml's AuditEntry.action enum, and those
 * list no other (every `word.word` in that section of API.md counts as an action). */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "audit.h"

#define MAX_NAMES 128

static char *read_file(const char *rel)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", SRCDIR, rel);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	gn_buf b;
	gn_buf_init(&b);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		gn_buf_append(&b, chunk, n);
	fclose(f);
	return gn_buf_detach(&b);
}

/* A name as the table spells them: lower-case words joined by one dot. */
static bool action_like(const char *s, size_t n)
{
	const char *dot = memchr(s, '.', n);
	if (!dot || dot == s || dot == s + n - 1 || memchr(dot + 1, '.', (size_t)(s + n - dot - 1)))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_' || s[i] == '.'))
			return false;
	return true;
}

/* Checks that names[0..n) are exactly the table's actions (a name may repeat); where says whose
 * list. */
static void assert_same_set(char **names, size_t n, const char *where)
{
	for (size_t i = 0; i < n; i++)
		if (!audit_action_known(names[i]))
			fail_msg("%s lists '%s', which the server never records", where, names[i]);
	for (size_t a = 0; a < audit_nactions; a++) {
		bool found = false;
		for (size_t i = 0; i < n && !found; i++)
			found = strcmp(names[i], audit_actions[a]) == 0;
		if (!found)
			fail_msg("the server records '%s' but %s does not list it", audit_actions[a], where);
	}
}

static void test_api_md_lists_every_action(void **state)
{
	char *doc = read_file("docs/API.md"), *names[MAX_NAMES];
	size_t n = 0;
	char *sec = strstr(doc, "\n## Audit");
	assert_non_null(sec);
	char *end = strstr(sec + 1, "\n## ");
	if (end)
		*end = '\0';
	/* Every `x.y` in the section is an action. */
	for (char *p = strchr(sec, '`'); p; p = strchr(p, '`')) {
		char *q = strchr(p + 1, '`');
		if (!q)
			break;
		if (action_like(p + 1, (size_t)(q - p - 1))) {
			assert_true(n < MAX_NAMES);
			names[n++] = gn_strndup(p + 1, (size_t)(q - p - 1));
		}
		p = q + 1;
	}
	assert_same_set(names, n, "docs/API.md's audit section");
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(doc);
}

static void test_openapi_enum_lists_every_action(void **state)
{
	char *doc = read_file("api/openapi.yaml"), *names[MAX_NAMES];
	size_t n = 0;
	char *p = strstr(doc, "\n    AuditEntry:\n");
	assert_non_null(p);
	p = strstr(p, "\n        action:\n");
	assert_non_null(p);
	p = strstr(p, "enum:\n");
	assert_non_null(p);
	p = strchr(p, '\n') + 1;
	/* The block list under enum: "            - token.create" lines. */
	while (strncmp(p, "            - ", 14) == 0) {
		char *nl = strchr(p, '\n');
		assert_non_null(nl);
		assert_true(n < MAX_NAMES);
		names[n++] = gn_strndup(p + 14, (size_t)(nl - p - 14));
		p = nl + 1;
	}
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < i; k++)
			if (strcmp(names[k], names[i]) == 0)
				fail_msg("api/openapi.yaml's AuditEntry.action enum lists '%s' twice", names[i]);
	assert_same_set(names, n, "api/openapi.yaml's AuditEntry.action enum");
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(doc);
}

/* Every "x.y" literal on a line of a server/ source that calls audit_write or audit_change is in the table:
 * audit_write asserts it at run time, this says so at make check, for calls no test reaches. */
static void test_calls_use_known_actions(void **state)
{
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/server", SRCDIR);
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t calls = 0;
	assert_non_null(d);
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (len < 3 || strcmp(e->d_name + len - 2, ".c") != 0 || strcmp(e->d_name, "audit.c") == 0)
			continue;
		char rel[300];
		snprintf(rel, sizeof(rel), "server/%s", e->d_name);
		char *text = read_file(rel);
		for (char *line = text, *nl; line && *line; line = nl ? nl + 1 : NULL) {
			nl = strchr(line, '\n');
			if (nl)
				*nl = '\0';
			if (!strstr(line, "audit_write(") && !strstr(line, "audit_change("))
				continue;
			for (char *q = strchr(line, '"'); q; q = strchr(q, '"')) {
				char *end = strchr(q + 1, '"');
				if (!end)
					break;
				if (action_like(q + 1, (size_t)(end - q - 1))) {
					char *name = gn_strndup(q + 1, (size_t)(end - q - 1));
					if (!audit_action_known(name))
						fail_msg("%s writes audit action '%s', which audit_actions lacks", rel,
							 name);
					free(name);
					calls++;
				}
				q = end + 1;
			}
		}
		free(text);
	}
	closedir(d);
	assert_true(calls >= 10); /* the scan found the calls at all */
}

static void test_known(void **state)
{
	assert_true(audit_action_known("token.create"));
	assert_true(audit_action_known("rollout.approve"));
	assert_false(audit_action_known("token"));
	assert_false(audit_action_known("token.created"));
	assert_false(audit_action_known(""));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known),
		cmocka_unit_test(test_api_md_lists_every_action),
		cmocka_unit_test(test_openapi_enum_lists_every_action),
		cmocka_unit_test(test_calls_use_known_actions),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
