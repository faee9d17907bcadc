/* Unit tests for agents/config.c: the agent's option table, its checks, and the sample config in
 * packaging/ agreeing with the table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent.h"

static void test_defaults_and_checks(void **state)
{
	struct agent_config c;
	gn_err err;
	memset(&c, 0, sizeof(c));
	assert_int_equal(gn_conf_defaults(&agent_config_table, &c, &err), 0);
	assert_int_equal(agent_config_check(&c, &err), 0);
	assert_string_equal(c.runtime_target, "cpu");
	assert_int_equal(gn_conf_set(&agent_config_table, &c, "server-url", "ftp://x", "t", &err), 0);
	assert_int_equal(agent_config_check(&c, &err), GN_EINVAL);
	assert_int_equal(gn_conf_set(&agent_config_table, &c, "server-url", "https://x", "t", &err), 0);
	assert_int_equal(gn_conf_set(&agent_config_table, &c, "poll-min", "2h", "t", &err), 0);
	assert_int_equal(agent_config_check(&c, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "poll-min"));
	assert_int_equal(gn_conf_set(&agent_config_table, &c, "pol-max", "1h", "t", &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "did you mean 'poll-max'"));
	assert_int_equal(gn_conf_set(&agent_config_table, &c, "download-min-rate", "fast", "t", &err), GN_EINVAL);
	gn_conf_cleanup(&agent_config_table, &c);
}

/* The TLS keys: a client certificate goes with its key, and none of them applies to http://. */
static void test_tls_settings(void **state)
{
	struct agent_config c;
	gn_err err;
	memset(&c, 0, sizeof(c));
	assert_int_equal(gn_conf_defaults(&agent_config_table, &c, &err), 0);
	assert_int_equal(gn_conf_set(&agent_config_table, &c, "server-url", "https://x", "t", &err), 0);
	assert_int_equal(gn_conf_set(&agent_config_table, &c, "ca-file", "/ca.pem", "t", &err), 0);
	assert_int_equal(gn_conf_set(&agent_config_table, &c, "client-cert", "/c.pem", "t", &err), 0);
	assert_int_equal(agent_config_check(&c, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "client-key"));
	assert_int_equal(gn_conf_set(&agent_config_table, &c, "client-key", "/c.key", "t", &err), 0);
	assert_int_equal(agent_config_check(&c, &err), 0);
	assert_int_equal(gn_conf_set(&agent_config_table, &c, "server-url", "http://x", "t", &err), 0);
	assert_int_equal(agent_config_check(&c, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "plain http://"));
	gn_conf_cleanup(&agent_config_table, &c);
}

/* runtime-options: comma-separated key=value, each checked for its form (the plugin knows its keys). */
static void test_runtime_options(void **state)
{
	static const struct {
		const char *value, *refused; /* NULL: accepted */
	} cases[] = {
		{"", NULL},
		{"threads=2", NULL},
		{"threads=2,device=1,log-level=error", NULL},
		{"threads=2,", NULL},
		{"threads", "'threads' is not key=value"},
		{"threads=2,,device=1", "'' is not key=value"},
		{"=2", "'=2' is not key=value"},
		{"threads=2,device", "'device' is not key=value"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct agent_config c;
		gn_err err;
		memset(&c, 0, sizeof(c));
		assert_int_equal(gn_conf_defaults(&agent_config_table, &c, &err), 0);
		assert_int_equal(gn_conf_set(&agent_config_table, &c, "runtime-options", cases[i].value, "t", &err), 0);
		gn_err_clear(&err);
		int rc = agent_config_check(&c, &err);
		if (cases[i].refused) {
			assert_int_equal(rc, GN_EINVAL);
			assert_non_null(strstr(err.msg, cases[i].refused));
		} else {
			assert_int_equal(rc, 0);
		}
		gn_conf_cleanup(&agent_config_table, &c);
	}
}

/* A log level the agent does not know is refused with a message that names it. */
static void test_bad_log_level(void **state)
{
	struct agent_config c;
	gn_err err;
	memset(&c, 0, sizeof(c));
	assert_int_equal(gn_conf_defaults(&agent_config_table, &c, &err), 0);
	assert_int_equal(gn_conf_set(&agent_config_table, &c, "log-level", "warn", "t", &err), 0);
	assert_int_equal(agent_config_check(&c, &err), 0);
	assert_int_equal(gn_conf_set(&agent_config_table, &c, "log-level", "loud", "t", &err), 0);
	gn_err_clear(&err);
	assert_int_equal(agent_config_check(&c, &err), GN_EINVAL);
	assert_string_equal(err.msg, "log-level must be debug, info, warn or error, not 'loud'");
	gn_conf_cleanup(&agent_config_table, &c);
}

static void test_env_prefix(void **state)
{
	struct agent_config c;
	gn_err err;
	int first;
	bool help;
	memset(&c, 0, sizeof(c));
	char *argv[] = {"run"};
	char *env[] = {"GANGLION_AGENT_RUNTIME_TARGET=opencl", NULL};
	assert_int_equal(gn_conf_load_all(&first, &help, &agent_config_table, &c, 1, argv, env, &err), 0);
	assert_string_equal(c.runtime_target, "opencl");
	assert_int_equal(first, 0);
	gn_conf_cleanup(&agent_config_table, &c);
	char *bad[] = {"GANGLION_AGENT_RUNTIME_TARGT=opencl", NULL};
	assert_int_equal(gn_conf_load_all(&first, &help, &agent_config_table, &c, 1, argv, bad, &err), GN_EINVAL);
	gn_conf_cleanup(&agent_config_table, &c);
}

static void test_sample_config_matches_table(void **state)
{
	gn_err err;
	if (gn_conf_sample_check(&agent_config_table, SRCDIR "/packaging/ganglion-agent.conf", &err))
		fail_msg("%s", err.msg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_and_checks), cmocka_unit_test(test_tls_settings),
		cmocka_unit_test(test_runtime_options),     cmocka_unit_test(test_bad_log_level),
		cmocka_unit_test(test_env_prefix),          cmocka_unit_test(test_sample_config_matches_table),
	};
	return cmocka_run_group_tests_name("agent_config", tests, NULL, NULL);
}
