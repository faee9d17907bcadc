/* Unit tests for lib/log.c: lines go to a file; every string value is escaped by gn_log itself,
 * so a value cannot add a line or a field, and ordinary values come out as they always did. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "json.h"
#include "log.h"

static char path[] = "/tmp/gn-test-log-XXXXXX";
static long offset; /* bytes of the file already read */
static char got[8192];
const char *no_string; /* NULL, where the compiler cannot see it */

static int setup(void **state)
{
	gn_err err;
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(gn_log_open(path, &err), 0);
	gn_log_set_level(GN_LOG_INFO);
	return 0;
}

static int teardown(void **state)
{
	gn_err err;
	assert_int_equal(gn_log_open(NULL, &err), 0);
	unlink(path);
	return 0;
}

/* Reads what was logged since the last call: it must be exactly one line. Returns its fields,
 * after the timestamp and level (borrowed). */
static const char *one_line(void)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	assert_int_equal(fseek(f, offset, SEEK_SET), 0);
	size_t n = fread(got, 1, sizeof(got) - 1, f);
	fclose(f);
	got[n] = '\0';
	offset += (long)n;
	assert_true(n > 0);
	if (got[n - 1] != '\n' || memchr(got, '\n', n - 1))
		fail_msg("not one line: %s", got);
	got[n - 1] = '\0';
	assert_true(strncmp(got, "ts=", 3) == 0);
	const char *level = strstr(got, " level=");
	assert_non_null(level);
	return strchr(level + 1, ' ') + 1;
}

static void test_ordinary_values_unchanged(void **state)
{
	gn_log(GN_LOG_INFO, "event=model_published model=%s version=%s length=%llu", "detector", "1.2.0-rc.1",
	       12345ULL);
	assert_string_equal(one_line(), "event=model_published model=detector version=1.2.0-rc.1 length=12345");
	gn_log(GN_LOG_INFO, "event=x msg=\"%s\" note=\"kept %s\"", "cannot open /tmp/a: No such file",
	       "the running configuration");
	assert_string_equal(one_line(),
			    "event=x msg=\"cannot open /tmp/a: No such file\" note=\"kept the running configuration\"");
	gn_log(GN_LOG_INFO, "event=request path=%s status=%d dur_ms=%.3f actor=%s%s%s", "/v1/models?a=b&c=d", 201, 1.5,
	       "token:", "3f2a", "");
	assert_string_equal(one_line(),
			    "event=request path=/v1/models?a=b&c=d status=201 dur_ms=1.500 actor=token:3f2a");
	gn_log(GN_LOG_INFO, "why=\"did you mean 'max-body'\" name=%s city=%s", "caf\xc3\xa9",
	       "\xe6\x9d\xb1\xe4\xba\xac");
	assert_string_equal(one_line(),
			    "why=\"did you mean 'max-body'\" name=caf\xc3\xa9 city=\xe6\x9d\xb1\xe4\xba\xac");
	gn_log(GN_LOG_DEBUG, "event=below_the_level");
	gn_log(GN_LOG_WARN, "event=w");
	assert_string_equal(one_line(), "event=w"); /* one line: the debug one was not written */
	assert_non_null(strstr(got, " level=warn event=w"));
}

static void test_quote_in_a_value(void **state)
{
	gn_log(GN_LOG_INFO, "event=x msg=\"%s\" n=1", "a\" forged=\"1");
	assert_string_equal(one_line(), "event=x msg=\"a\\\" forged=\\\"1\" n=1");
	gn_log(GN_LOG_INFO, "event=x model=%s n=1", "m\"x");
	assert_string_equal(one_line(), "event=x model=\"m\\\"x\" n=1");
}

static void test_newline_cannot_forge_a_line(void **state)
{
	gn_log(GN_LOG_INFO, "event=x msg=\"%s\"", "oops\nts=2030-01-01T00:00:00Z level=error event=forged");
	assert_string_equal(one_line(), "event=x msg=\"oops\\nts=2030-01-01T00:00:00Z level=error event=forged\"");
	gn_log(GN_LOG_INFO, "event=request path=%s status=%d", "/healthz\r\nevent=forged", 404);
	assert_string_equal(one_line(), "event=request path=\"/healthz\\r\\nevent=forged\" status=404");
}

static void test_space_cannot_forge_a_field(void **state)
{
	gn_log(GN_LOG_INFO, "event=x model=%s", "m level=error");
	assert_string_equal(one_line(), "event=x model=\"m level=error\"");
	gn_log(GN_LOG_INFO, "event=x model=%s", "");
	assert_string_equal(one_line(), "event=x model=");
}

static void test_control_bytes_and_bad_utf8(void **state)
{
	gn_log(GN_LOG_INFO, "msg=\"%s\"",
	       "a\x01"
	       "b\x1b[31mred\x7f\tc\\d");
	assert_string_equal(one_line(), "msg=\"a\\x01b\\x1b[31mred\\x7f\\tc\\\\d\"");
	/* A lone continuation byte, a truncated sequence, an overlong '/', a surrogate. */
	gn_log(GN_LOG_INFO, "msg=\"%s\"", "\x80x\xc3(\xc0\xaf\xed\xa0\x80\xc3\xa9");
	const char *f = one_line();
	assert_string_equal(f, "msg=\"\\x80x\\xc3(\\xc0\\xaf\\xed\\xa0\\x80\xc3\xa9\"");
	assert_true(gn_utf8_valid(got, strlen(got)));
	gn_log(GN_LOG_INFO, "file=%s", "\xff");
	assert_string_equal(one_line(), "file=\"\\xff\"");
	/* Outside quotes a backslash alone needs no quoting: a plain word stays as it is. */
	gn_log(GN_LOG_INFO, "file=%s", "C:\\x");
	assert_string_equal(one_line(), "file=C:\\x");
}

static void test_long_values_are_cut_safely(void **state)
{
	char *v = malloc(5001);
	memset(v, 'a', 5000);
	v[5000] = '\0';
	gn_log(GN_LOG_INFO, "event=x msg=\"%s\" after=1", v);
	const char *f = one_line();
	assert_true(strlen(got) <= 2048);
	assert_true(strncmp(f, "event=x msg=\"aaaa", 17) == 0);
	assert_non_null(strstr(f, "aaa...\" truncated=true"));
	assert_null(strstr(f, "after=1"));

	/* Escapes are never cut in two. */
	memset(v, '"', 5000);
	gn_log(GN_LOG_INFO, "msg=\"%s\"", v);
	f = one_line() + strlen("msg=\"");
	size_t n = strlen(f) - strlen("...\" truncated=true");
	assert_string_equal(f + n, "...\" truncated=true");
	assert_true(n > 1000 && n % 2 == 0);
	for (size_t i = 0; i < n; i += 2)
		assert_true(f[i] == '\\' && f[i + 1] == '"');

	/* Nor are characters, outside quotes either. */
	for (int i = 0; i < 2500; i++)
		memcpy(v + 2 * i, "\xc3\xa9", 2);
	gn_log(GN_LOG_INFO, "name=%s", v);
	f = one_line();
	assert_true(strlen(got) <= 2048);
	assert_true(gn_utf8_valid(got, strlen(got)));
	assert_true(strncmp(f, "name=\xc3\xa9", 7) == 0);
	assert_non_null(strstr(f, "\xc3\xa9... truncated=true"));
	free(v);
}

static void test_conversions(void **state)
{
	const char buf[] = {'a', 'b', 'c', 'd'}; /* not NUL-terminated: precision bounds the read */
	gn_log(GN_LOG_INFO, "a=%.2s b=%.*s c=%s d=%5d e=%-3s| f=%zu g=%ld h=%x i=%c j=%% k=%lld l=%g", "xyz", 3, buf,
	       no_string, 42, "z", (size_t)7, -8L, 255u, 'q', -9LL, 0.25);
	assert_string_equal(one_line(), "a=xy b=abc c=(null) d=   42 e=z  | f=7 g=-8 h=ff i=q j=% k=-9 l=0.25");
	gn_log(GN_LOG_INFO, "c=%c", '\n');
	assert_string_equal(one_line(), "c=\"\\n\"");
}

static void test_context(void **state)
{
	gn_log_set_context("req=3f2a");
	gn_log(GN_LOG_INFO, "event=x");
	assert_string_equal(one_line(), "req=3f2a event=x");
	gn_log_set_context("dev=a\nb");
	gn_log(GN_LOG_INFO, "event=x");
	assert_string_equal(one_line(), "dev=a\\nb event=x");
	/* Quotes and backslashes as they are; other control bytes escaped; UTF-8 kept. */
	gn_log_set_context("a=\"q\\\x01 b=\xc3\xa9");
	gn_log(GN_LOG_INFO, "event=x");
	assert_string_equal(one_line(), "a=\"q\\\\x01 b=\xc3\xa9 event=x");
	/* At most 92 bytes of context, whether plain or escaped. */
	char long_ctx[101], want[120];
	memset(long_ctx, 'a', 100);
	long_ctx[100] = '\0';
	gn_log_set_context(long_ctx);
	gn_log(GN_LOG_INFO, "event=x");
	snprintf(want, sizeof(want), "%.92s event=x", long_ctx);
	assert_string_equal(one_line(), want);
	long_ctx[50] = '\n';
	gn_log_set_context(long_ctx);
	gn_log(GN_LOG_INFO, "event=x");
	snprintf(want, sizeof(want), "%.50s\\n%.40s event=x", long_ctx, long_ctx + 51);
	assert_string_equal(one_line(), want);
	gn_log_set_context(NULL);
	gn_log(GN_LOG_INFO, "event=x");
	assert_string_equal(one_line(), "event=x");
}

/* gn_log_enabled answers as gn_log decides: nothing below the level set. */
static void test_enabled(void **state)
{
	gn_log_set_level(GN_LOG_WARN);
	assert_false(gn_log_enabled(GN_LOG_DEBUG));
	assert_false(gn_log_enabled(GN_LOG_INFO));
	assert_true(gn_log_enabled(GN_LOG_WARN));
	assert_true(gn_log_enabled(GN_LOG_ERROR));
	gn_log(GN_LOG_INFO, "event=hidden");
	gn_log(GN_LOG_WARN, "event=shown");
	assert_string_equal(one_line(), "event=shown");
	gn_log_set_level(GN_LOG_INFO);
	assert_true(gn_log_enabled(GN_LOG_INFO));
	assert_false(gn_log_enabled(GN_LOG_DEBUG));
}

/* The level names the configuration accepts (--log-level), and a log file that cannot be opened. */
static void test_level_names_and_open_errors(void **state)
{
	static const struct {
		const char *name;
		enum gn_log_level level;
	} ok[] = {{"debug", GN_LOG_DEBUG}, {"info", GN_LOG_INFO}, {"warn", GN_LOG_WARN}, {"error", GN_LOG_ERROR}};
	for (size_t i = 0; i < GN_ARRAY_LEN(ok); i++) {
		enum gn_log_level l = GN_LOG_ERROR + 1;
		assert_int_equal(gn_log_level_parse(&l, ok[i].name), 0);
		assert_int_equal(l, ok[i].level);
	}
	const char *bad[] = {"", "INFO", "warning", "verbose", "info "};
	for (size_t i = 0; i < GN_ARRAY_LEN(bad); i++) {
		enum gn_log_level l = GN_LOG_INFO;
		assert_int_equal(gn_log_level_parse(&l, bad[i]), GN_EINVAL);
	}
	gn_err err;
	assert_int_not_equal(gn_log_open("/nonexistent-dir/gangliond.log", &err), 0);
	assert_non_null(strstr(err.msg, "/nonexistent-dir/gangliond.log"));
	/* The file opened before is still the one written to. */
	gn_log(GN_LOG_WARN, "event=still_here");
	assert_string_equal(one_line(), "event=still_here");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ordinary_values_unchanged),
		cmocka_unit_test(test_quote_in_a_value),
		cmocka_unit_test(test_newline_cannot_forge_a_line),
		cmocka_unit_test(test_space_cannot_forge_a_field),
		cmocka_unit_test(test_control_bytes_and_bad_utf8),
		cmocka_unit_test(test_long_values_are_cut_safely),
		cmocka_unit_test(test_conversions),
		cmocka_unit_test(test_context),
		cmocka_unit_test(test_enabled),
		cmocka_unit_test(test_level_names_and_open_errors),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
