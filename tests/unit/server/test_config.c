/* Unit tests for server/config.c: gangliond's option table, listen addresses, and the sample
 * config in packaging/ agreeing with the table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "config.h"

static void test_defaults_documented(void **state)
{
	struct gd_config c;
	gn_err err;
	memset(&c, 0, sizeof(c));
	assert_int_equal(gn_conf_defaults(&config_table, &c, &err), 0);
	assert_string_equal(c.listen, "127.0.0.1:7700");
	assert_string_equal(c.database_url, "");
	assert_int_equal(c.max_body, 1024 * 1024);
	assert_true(c.threads >= 2);
	gn_conf_cleanup(&config_table, &c);
}

static void test_typos_and_bad_values(void **state)
{
	struct gd_config c;
	gn_err err;
	int first;
	bool help;
	memset(&c, 0, sizeof(c));
	char *typo[] = {"--listne", "127.0.0.1:1"};
	char *env[] = {NULL};
	assert_int_equal(gn_conf_load_all(&first, &help, &config_table, &c, 2, typo, env, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "did you mean 'listen'"));
	gn_conf_cleanup(&config_table, &c);

	char *onethread[] = {"--threads", "1"};
	assert_int_equal(gn_conf_load_all(&first, &help, &config_table, &c, 2, onethread, env, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "threads"));
	gn_conf_cleanup(&config_table, &c);

	char *badsize[] = {"--max-body=lots"};
	assert_int_equal(gn_conf_load_all(&first, &help, &config_table, &c, 1, badsize, env, &err), GN_EINVAL);
	gn_conf_cleanup(&config_table, &c);

	char *envtypo[] = {"GANGLIOND_DATABASE_URI=x", NULL};
	assert_int_equal(gn_conf_load_all(&first, &help, &config_table, &c, 0, badsize, envtypo, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "GANGLIOND_DATABASE_URI"));
	gn_conf_cleanup(&config_table, &c);

	char *envok[] = {"GANGLIOND_DATABASE_URL=host=/tmp", "GANGLIOND_MAX_BODY=2M", NULL};
	assert_int_equal(gn_conf_load_all(&first, &help, &config_table, &c, 0, badsize, envok, &err), 0);
	assert_string_equal(c.database_url, "host=/tmp");
	assert_int_equal(c.max_body, 2 * 1024 * 1024);
	gn_conf_cleanup(&config_table, &c);
}

static void test_listen(void **state)
{
	struct sockaddr_storage ss;
	gn_err err;
	assert_int_equal(config_parse_listen(&ss, "127.0.0.1:7700", &err), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 7700);
	assert_int_equal(config_parse_listen(&ss, "[::1]:80", &err), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(config_parse_listen(&ss, "0.0.0.0:0", &err), 0);
	static const char *bad[] = {"7700",    ":7700",  "127.0.0.1:", "127.0.0.1:70000", "host.example:80",
				    "[::1:80", "1.2.3:4"};
	for (size_t i = 0; i < GN_ARRAY_LEN(bad); i++)
		if (config_parse_listen(&ss, bad[i], &err) != GN_EINVAL)
			fail_msg("'%s' should be refused", bad[i]);
}

/* packaging/gangliond.conf is what `gangliond sample-config` prints: the table is its source. */
static void test_sample_config_matches_table(void **state)
{
	gn_err err;
	if (gn_conf_sample_check(&config_table, SRCDIR "/packaging/gangliond.conf", &err))
		fail_msg("%s", err.msg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_documented),
		cmocka_unit_test(test_typos_and_bad_values),
		cmocka_unit_test(test_listen),
		cmocka_unit_test(test_sample_config_matches_table),
	};
	return cmocka_run_group_tests_name("server_config", tests, NULL, NULL);
}
