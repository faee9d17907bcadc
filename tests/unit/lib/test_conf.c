/* Unit tests for lib/conf.c: the table-driven config parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf.h"

struct cfg {
	char *config;
	char *name;
	int64_t port;
	bool verbose;
	int64_t size;
	int64_t timeout;
};

static const gn_conf_opt opts[] = {
	{"config", GN_CONF_STRING, offsetof(struct cfg, config), NULL, false, 0, 0, "FILE", "config file"},
	{"name", GN_CONF_STRING, offsetof(struct cfg, name), "ganglion", true, 0, 0, NULL, "a name"},
	{"port", GN_CONF_INT, offsetof(struct cfg, port), "7700", false, 1, 65535, NULL, "a port"},
	{"verbose", GN_CONF_BOOL, offsetof(struct cfg, verbose), "false", true, 0, 0, NULL, "chatty"},
	{"max-size", GN_CONF_SIZE, offsetof(struct cfg, size), "1M", false, 0, 0, NULL, "a size"},
	{"timeout", GN_CONF_DURATION, offsetof(struct cfg, timeout), "30s", false, 0, 0, NULL, "a duration"},
};
static const gn_conf_table table = {"testprog", "TESTPROG_", opts, GN_ARRAY_LEN(opts)};

static char *write_tmp(const char *text)
{
	char *path = strdup("/tmp/gn-test-conf-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static void test_defaults(void **state)
{
	struct cfg c = {0};
	gn_err err;
	assert_int_equal(gn_conf_defaults(&table, &c, &err), 0);
	assert_string_equal(c.name, "ganglion");
	assert_int_equal(c.port, 7700);
	assert_false(c.verbose);
	assert_int_equal(c.size, 1024 * 1024);
	assert_int_equal(c.timeout, 30);
	assert_null(c.config);
	gn_conf_cleanup(&table, &c);
}

/* A table of values and whether each parses, with the expected result. */
static void test_values(void **state)
{
	static const struct {
		const char *key, *value;
		int rc;
		int64_t want;
	} cases[] = {
		{"port", "80", 0, 80},
		{"port", "0", GN_EINVAL, 0},
		{"port", "65536", GN_EINVAL, 0},
		{"port", "8o", GN_EINVAL, 0},
		{"port", "", GN_EINVAL, 0},
		{"port", " 80", GN_EINVAL, 0},
		{"max-size", "512K", 0, 524288},
		{"max-size", "2MiB", 0, 2097152},
		{"max-size", "1G", 0, 1073741824},
		{"max-size", "1X", GN_EINVAL, 0},
		{"timeout", "5m", 0, 300},
		{"timeout", "2h", 0, 7200},
		{"timeout", "7d", 0, 604800},
		{"timeout", "10", 0, 10},
		{"timeout", "10 s", GN_EINVAL, 0},
		{"max-size", "99999999999999999999", GN_EINVAL, 0},
	};
	for (size_t i = 0; i < GN_ARRAY_LEN(cases); i++) {
		struct cfg c = {0};
		gn_err err;
		assert_int_equal(gn_conf_defaults(&table, &c, &err), 0);
		int rc = gn_conf_set(&table, &c, cases[i].key, cases[i].value, "test", &err);
		if (rc != cases[i].rc)
			fail_msg("%s=%s: rc %d, want %d", cases[i].key, cases[i].value, rc, cases[i].rc);
		if (rc == 0) {
			int64_t got = strcmp(cases[i].key, "port") == 0      ? c.port
				      : strcmp(cases[i].key, "timeout") == 0 ? c.timeout
									     : c.size;
			assert_int_equal(got, cases[i].want);
		} else {
			assert_non_null(strstr(err.msg, cases[i].key));
		}
		gn_conf_cleanup(&table, &c);
	}
}

static void test_bool(void **state)
{
	struct cfg c = {0};
	gn_err err;
	assert_int_equal(gn_conf_defaults(&table, &c, &err), 0);
	assert_int_equal(gn_conf_set(&table, &c, "verbose", "yes", "t", &err), 0);
	assert_true(c.verbose);
	assert_int_equal(gn_conf_set(&table, &c, "verbose", "off", "t", &err), 0);
	assert_false(c.verbose);
	assert_int_equal(gn_conf_set(&table, &c, "verbose", "maybe", "t", &err), GN_EINVAL);
	gn_conf_cleanup(&table, &c);
}

static void test_typo_suggests(void **state)
{
	struct cfg c = {0};
	gn_err err;
	assert_int_equal(gn_conf_defaults(&table, &c, &err), 0);
	assert_int_equal(gn_conf_set(&table, &c, "prot", "80", "f:1", &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "unknown key 'prot'"));
	assert_non_null(strstr(err.msg, "did you mean 'port'"));
	assert_int_equal(gn_conf_set(&table, &c, "completely-else", "80", "f:1", &err), GN_EINVAL);
	assert_null(strstr(err.msg, "did you mean"));
	gn_conf_cleanup(&table, &c);
}

static void test_file(void **state)
{
	struct cfg c = {0};
	gn_err err;
	char *p = write_tmp("# comment\n; also comment\n[testprog]\n\nname = \"hello world\"\nport=9000\n");
	assert_int_equal(gn_conf_defaults(&table, &c, &err), 0);
	assert_int_equal(gn_conf_load_file(&table, &c, p, &err), 0);
	assert_string_equal(c.name, "hello world");
	assert_int_equal(c.port, 9000);
	unlink(p);
	free(p);

	p = write_tmp("port = 9000\nnmae = x\n");
	assert_int_equal(gn_conf_load_file(&table, &c, p, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, ":2: unknown key 'nmae'"));
	unlink(p);
	free(p);

	p = write_tmp("[other]\nport = 1\n");
	assert_int_equal(gn_conf_load_file(&table, &c, p, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "unknown section"));
	unlink(p);
	free(p);

	p = write_tmp("port\n");
	assert_int_equal(gn_conf_load_file(&table, &c, p, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "expected 'key = value'"));
	unlink(p);
	free(p);

	assert_int_equal(gn_conf_load_file(&table, &c, "/nonexistent/x.conf", &err), GN_ENOTFOUND);
	gn_conf_cleanup(&table, &c);
}

static void test_env_and_args_precedence(void **state)
{
	struct cfg c = {0};
	gn_err err;
	int first;
	bool help;
	char *p = write_tmp("port = 1000\nname = fromfile\nverbose = true\n");
	char *cfgarg = NULL;
	assert_true(asprintf(&cfgarg, "--config=%s", p) > 0);
	char *argv[] = {cfgarg, "--port", "3000", "serve", "extra"};
	char *envp[] = {"TESTPROG_PORT=2000", "TESTPROG_NAME=fromenv", "OTHER=1", NULL};
	assert_int_equal(gn_conf_load_all(&first, &help, &table, &c, 5, argv, envp, &err), 0);
	assert_int_equal(c.port, 3000);         /* flag beats env beats file */
	assert_string_equal(c.name, "fromenv"); /* env beats file */
	assert_true(c.verbose);                 /* file beats default */
	assert_int_equal(first, 3);
	assert_false(help);
	gn_conf_cleanup(&table, &c);

	char *badenv[] = {"TESTPROG_PROT=1", NULL};
	assert_int_equal(gn_conf_load_all(&first, &help, &table, &c, 0, argv, badenv, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "TESTPROG_PROT"));
	gn_conf_cleanup(&table, &c);

	char *badarg[] = {"--verbos"};
	assert_int_equal(gn_conf_load_all(&first, &help, &table, &c, 1, badarg, envp, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "did you mean 'verbose'"));
	gn_conf_cleanup(&table, &c);

	char *novalue[] = {"--port"};
	assert_int_equal(gn_conf_load_all(&first, &help, &table, &c, 1, novalue, envp, &err), GN_EINVAL);
	gn_conf_cleanup(&table, &c);
	unlink(p);
	free(p);
	free(cfgarg);
}

/* The config file named in envp is read; one named only in the process environment is not. */
static void test_config_path_from_envp_only(void **state)
{
	struct cfg c = {0};
	gn_err err;
	int first;
	bool help;
	char *p = write_tmp("port = 1000\n");
	char *var = NULL;
	char *argv[] = {"serve"};
	char *none[] = {NULL};
	assert_true(asprintf(&var, "TESTPROG_CONFIG=%s", p) > 0);
	char *envp[] = {var, NULL};

	assert_int_equal(unsetenv("TESTPROG_CONFIG"), 0);
	assert_int_equal(gn_conf_load_all(&first, &help, &table, &c, 1, argv, envp, &err), 0);
	assert_int_equal(c.port, 1000);
	assert_string_equal(c.config, p);
	gn_conf_cleanup(&table, &c);

	assert_int_equal(setenv("TESTPROG_CONFIG", "/nonexistent/x.conf", 1), 0);
	assert_int_equal(gn_conf_load_all(&first, &help, &table, &c, 1, argv, none, &err), 0);
	assert_int_equal(c.port, 7700);
	gn_conf_cleanup(&table, &c);
	assert_int_equal(gn_conf_load_all(&first, &help, &table, &c, 1, argv, envp, &err), 0);
	assert_int_equal(c.port, 1000);
	assert_int_equal(unsetenv("TESTPROG_CONFIG"), 0);
	gn_conf_cleanup(&table, &c);
	unlink(p);
	free(p);
	free(var);
}

static void test_help_and_sample(void **state)
{
	char *h = gn_conf_help_dup(&table, "usage: testprog");
	assert_non_null(strstr(h, "--port N"));
	assert_non_null(strstr(h, "[default: 7700]"));
	assert_non_null(strstr(h, "TESTPROG_"));
	free(h);
	char *s = gn_conf_sample_dup(&table);
	assert_non_null(strstr(s, "#port = 7700\n"));
	assert_null(strstr(s, "#config ="));
	free(s);
}

static void test_reload_copies_only_reloadable(void **state)
{
	struct cfg a = {0}, b = {0};
	gn_err err;
	assert_int_equal(gn_conf_defaults(&table, &a, &err), 0);
	assert_int_equal(gn_conf_defaults(&table, &b, &err), 0);
	assert_int_equal(gn_conf_set(&table, &b, "name", "new", "t", &err), 0);
	assert_int_equal(gn_conf_set(&table, &b, "port", "1", "t", &err), 0);
	assert_int_equal(gn_conf_set(&table, &b, "verbose", "true", "t", &err), 0);
	gn_conf_copy_reloadable(&table, &a, &b);
	assert_string_equal(a.name, "new");
	assert_true(a.verbose);
	assert_int_equal(a.port, 7700);
	gn_conf_cleanup(&table, &a);
	gn_conf_cleanup(&table, &b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_bool),
		cmocka_unit_test(test_typo_suggests),
		cmocka_unit_test(test_file),
		cmocka_unit_test(test_env_and_args_precedence),
		cmocka_unit_test(test_config_path_from_envp_only),
		cmocka_unit_test(test_help_and_sample),
		cmocka_unit_test(test_reload_copies_only_reloadable),
	};
	return cmocka_run_group_tests_name("conf", tests, NULL, NULL);
}
