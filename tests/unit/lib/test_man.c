/* Unit tests for lib/man.c, lib/completion.c and lib/version.c: roff escaping and prose, the
 * option entries written from a conf table, the usage parser, the bash completion generator, and
 * where --version is recognised on a command line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "completion.h"
#include "conf.h"
#include "man.h"
#include "version.h"

struct cfg {
	char *name;
	char *config;
	int64_t port, size, wait;
	bool verbose;
};

static const gn_conf_opt opts[] = {
	{"name", GN_CONF_STRING, offsetof(struct cfg, name), "x-1", true, 0, 0, "NAME", "the name"},
	{"config", GN_CONF_STRING, offsetof(struct cfg, config), NULL, false, 0, 0, "FILE", "config file"},
	{"port", GN_CONF_INT, offsetof(struct cfg, port), "7700", false, 1, 65535, NULL, "TCP port"},
	{"max-size", GN_CONF_SIZE, offsetof(struct cfg, size), "1M", false, 1024, 1LL << 30, NULL, "largest body"},
	{"wait", GN_CONF_DURATION, offsetof(struct cfg, wait), "30s", false, 1, 86400, NULL, "how long"},
	{"verbose", GN_CONF_BOOL, offsetof(struct cfg, verbose), "false", false, 0, 0, NULL, "say more"},
};
static const gn_conf_table table = {"testprog", "TESTPROG_", opts, GN_ARRAY_LEN(opts)};

static const char usage[] = "usage: testprog [OPTIONS] COMMAND\n"
			    "\n"
			    "Commands:\n"
			    "  enroll --token TOKEN [--name NAME] [--root FILE]\n"
			    "                 create a key and enroll,\n"
			    "                 then pin the root\n"
			    "  run            serve (the default)\n";

static char *escaped(const char *s)
{
	gn_buf b;
	gn_buf_init(&b);
	gn_man_escape(&b, s);
	return gn_buf_detach(&b);
}

static void test_escape(void **state)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{"a-b", "a\\-b"},
		{"back\\slash", "back\\eslash"},
		{".starts with a dot", "\\&.starts with a dot"},
		{"'quoted", "\\&'quoted"},
		{"mid.dle 'ok'", "mid.dle 'ok'"},
		{"run `gangliond migrate` now", "run \\fB\\%gangliond migrate\\fR now"},
		{"unclosed `bold", "unclosed \\fB\\%bold\\fR"},
		{"/var/lib/x", "/\\:var/\\:lib/\\:x"},
		{"http://h/ and /", "http://\\:h/ and /"},
		{"A:+B:-C::D: e", "A:\\:+B:\\:\\-C::\\:D: e"},
		{"line\n.next", "line\n\\&.next"},
	};
	for (size_t i = 0; i < GN_ARRAY_LEN(cases); i++) {
		char *got = escaped(cases[i].in);
		assert_string_equal(got, cases[i].want);
		free(got);
	}
}

static void test_text_paragraphs_and_examples(void **state)
{
	gn_buf b;
	gn_buf_init(&b);
	gn_man_section(&b, "DESCRIPTION");
	gn_man_text(&b, "First.\n\nSecond `code`.\n\n  ex -a\n  ex .b\n\nThird.");
	/* No .PP right after the heading; an example is verbatim, indented, unadjusted. */
	assert_string_equal(b.data, ".SH DESCRIPTION\nFirst.\n.PP\nSecond \\fB\\%code\\fR.\n.PP\n.RS 4\n.nf\nex \\-a\n"
				    "ex .b\n.fi\n.RE\n.PP\nThird.\n");
	gn_buf_cleanup(&b);
	gn_buf_init(&b);
	gn_man_item(&b, "--x", "N", "one\n\ntwo");
	assert_string_equal(b.data, ".TP\n\\fB\\-\\-x\\fR \\fIN\\fR\none\n.IP\ntwo\n");
	gn_buf_cleanup(&b);
}

static void test_header(void **state)
{
	gn_buf b;
	gn_buf_init(&b);
	gn_man_header(&b, "test-prog.conf", "5", "what it is");
	char *want = gn_asprintf(".TH TEST\\-PROG.CONF 5 \"\" \"ganglion %s\" \"Ganglion\"\n.ad l\n.SH NAME\n"
				 "test\\-prog.conf \\- what it is\n",
				 gn_version_number());
	assert_string_equal(b.data, want);
	free(want);
	gn_buf_cleanup(&b);
}

static void test_usage_commands(void **state)
{
	gn_man_cmd *cmds;
	size_t n;
	gn_man_cmds_parse(&cmds, &n, usage);
	assert_int_equal(n, 2);
	assert_string_equal(cmds[0].tag, "enroll --token TOKEN [--name NAME] [--root FILE]");
	assert_string_equal(cmds[0].text, "create a key and enroll, then pin the root");
	assert_string_equal(cmds[1].tag, "run");
	assert_string_equal(cmds[1].text, "serve (the default)");
	gn_man_cmds_free(cmds, n);

	gn_buf b;
	gn_buf_init(&b);
	gn_man_usage_commands(&b, usage);
	assert_non_null(strstr(b.data,
			       ".TP\n\\fBenroll\\fR \\fI\\-\\-token TOKEN [\\-\\-name NAME] [\\-\\-root FILE]\\fR\n"
			       "create a key and enroll, then pin the root\n"));
	assert_non_null(strstr(b.data, ".TP\n\\fBrun\\fR\nserve (the default)\n"));
	gn_buf_cleanup(&b);
	gn_buf_init(&b);
	gn_man_synopsis(&b, usage);
	assert_string_equal(b.data, ".SH SYNOPSIS\n.B testprog\n[OPTIONS] COMMAND\n");
	gn_buf_cleanup(&b);
}

static void test_conf_flags_and_keys(void **state)
{
	gn_buf b;
	gn_buf_init(&b);
	gn_man_conf_flags(&b, &table);
	const char *want[] = {
		".TP\n\\fB\\-\\-name\\fR \\fINAME\\fR\nthe name. Default: \\fB\\%x\\-1\\fR. Environment: "
		"\\fB\\%TESTPROG_NAME\\fR. Reloads on SIGHUP.\n",
		".TP\n\\fB\\-\\-config\\fR \\fIFILE\\fR\nconfig file. Environment: \\fB\\%TESTPROG_CONFIG\\fR.\n",
		"\\fB\\-\\-port\\fR \\fIN\\fR\nTCP port. Default: \\fB\\%7700\\fR. An integer from 1 to 65535.",
		"\\fB\\-\\-max\\-size\\fR \\fISIZE\\fR\nlargest body. Default: \\fB\\%1M\\fR. A size in bytes, or with K, M or "
		"G (binary units), from 1K to 1G. Environment: \\fB\\%TESTPROG_MAX_SIZE\\fR.\n",
		"A duration in seconds, or with s, m, h or d, from 1s to 1d.",
		"\\fB\\-\\-verbose\\fR \\fIBOOL\\fR\nsay more. Default: \\fB\\%false\\fR. true or false",
		".TP\n\\fB\\-\\-help\\fR\n",
		".TP\n\\fB\\-\\-version\\fR\n",
	};
	for (size_t i = 0; i < GN_ARRAY_LEN(want); i++)
		if (!strstr(b.data, want[i]))
			fail_msg("missing:\n%s\nin:\n%s", want[i], b.data);
	gn_buf_cleanup(&b);

	gn_buf_init(&b);
	gn_man_conf_keys(&b, &table);
	assert_non_null(strstr(b.data,
			       ".TP\n\\fBport =\\fR \\fIN\\fR\nTCP port. Default: \\fB\\%7700\\fR. An integer from 1 "
			       "to 65535. Flag: \\fB\\%\\-\\-port\\fR. Environment: \\fB\\%TESTPROG_PORT\\fR.\n"));
	assert_null(strstr(b.data, "config ="));
	assert_null(strstr(b.data, "\\-\\-help"));
	gn_buf_cleanup(&b);
}

static void test_version_wanted(void **state)
{
	static const struct {
		const char *argv[4];
		bool want;
	} cases[] = {
		{{"--version"}, true},
		{{"--port", "7", "--version"}, true},
		{{"--port=7", "--version"}, true},
		{{"--verbose", "--version"}, true}, /* a bool flag takes no separate value */
		{{"--name", "--version"}, false},   /* the name's value */
		{{"run", "--version"}, false},      /* after the command: the command's */
		{{"--", "--version"}, false},
		{{"--unknown", "--version"}, true}, /* the loader reports the unknown flag otherwise */
		{{"--port", "7"}, false},
	};
	for (size_t i = 0; i < GN_ARRAY_LEN(cases); i++) {
		int argc = 0;
		while (argc < 4 && cases[i].argv[argc])
			argc++;
		if (gn_version_wanted(&table, argc, (char **)cases[i].argv) != cases[i].want)
			fail_msg("case %zu: gn_version_wanted should be %d", i, cases[i].want);
	}
	const char *v = gn_version();
	assert_non_null(strstr(v, gn_version_number()));
	assert_non_null(strstr(v, " (commit "));
}

static void test_completion(void **state)
{
	gn_completion *c = gn_completion_new("test-prog");
	gn_completion_usage(c, usage);
	gn_completion_cmd(c, "models", NULL);
	gn_completion_cmd(c, "models push", "FILE");
	gn_completion_opt(c, "models push", "-o", "FILE");
	gn_completion_opt(c, "", "-o", "table|json");
	gn_completion_conf(c, &table);
	char *s = gn_completion_bash_dup(c);
	const char *want[] = {
		"_test_prog() {\n",
		"local paths='|enroll|run|models|models push|'\n",
		/* options that take a value are skipped with it, a command's own before the global ones */
		"\t\t'enroll:--token'|'enroll:--name'|'enroll:--root'|'models push:-o') ((i++)) ;;\n"
		"\t\t*:-o|*:--name|*:--config|*:--port|*:--max-size|*:--wait) ((i++)) ;;\n",
		"\t'enroll:--root'|'models push:-o') compopt -o filenames",
		"\t*:-o) COMPREPLY=($(compgen -W 'table json' -- \"$cur\")); return ;;\n",
		"\t\t'enroll') words='--token --name --root' ;;\n",
		"--wait --verbose --help --version\"\n",
		"\t\t'models') words='push' ;;\n",
		"\t\t'models push') compopt -o filenames",
		"\t\t'') words='enroll run models' ;;\n",
		"complete -F _test_prog test-prog\n",
	};
	for (size_t i = 0; i < GN_ARRAY_LEN(want); i++)
		if (!strstr(s, want[i]))
			fail_msg("missing:\n%s\nin:\n%s", want[i], s);
	/* bash takes the first arm that matches: the command's own -o (a file) before the global one. */
	assert_true(strstr(s, "'models push:-o') compopt") < strstr(s, "*:-o) COMPREPLY"));
	free(s);
	gn_completion_free(c);
	gn_completion_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_text_paragraphs_and_examples),
		cmocka_unit_test(test_header),
		cmocka_unit_test(test_usage_commands),
		cmocka_unit_test(test_conf_flags_and_keys),
		cmocka_unit_test(test_version_wanted),
		cmocka_unit_test(test_completion),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
