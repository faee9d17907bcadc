/* Unit tests for agents/state.c: the agent's data directory (modes, atomic JSON state files and
 * what a missing or corrupt one reads as), the identity an enrollment leaves, the clock floor
 * that a clock set back cannot lower, and state.json's models in both formats (an older agent's
 * one-model file is migrated). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent.h"
#include "json.h"

static char dir[] = "/tmp/gn-test-state-XXXXXX";
static struct agent a;

static int setup(void **state)
{
	assert_non_null(mkdtemp(dir));
	char *d = gn_asprintf("%s/data", dir);
	a.cfg.data_dir = d;
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	free(a.cfg.data_dir);
	gn_ed25519_key_free(a.key);
	return 0;
}

static int mode_of(const char *rel)
{
	struct stat st;
	char *p = state_path(&a, rel);
	int rc = stat(p, &st);
	free(p);
	return rc ? -1 : (int)(st.st_mode & 07777);
}

static void write_file(const char *rel, const char *text)
{
	char *p = state_path(&a, rel);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	free(p);
}

static char *read_file(const char *rel)
{
	char *p = state_path(&a, rel);
	FILE *f = fopen(p, "r");
	free(p);
	if (!f)
		return NULL;
	char *buf = calloc(1, 4096);
	size_t n = fread(buf, 1, 4095, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void test_mkdirs(void **state)
{
	gn_err err;
	mode_t old = umask(0);
	assert_int_equal(state_mkdirs(&a, &err), 0);
	assert_int_equal(state_mkdirs(&a, &err), 0); /* again: fine */
	umask(old);
	const char *dirs[] = {"", "identity", "trust", "trust/image", "trust/director", "downloads", "models"};
	for (size_t i = 0; i < GN_ARRAY_LEN(dirs); i++)
		if (mode_of(dirs[i]) != 0700)
			fail_msg("%s/%s: mode %o, expected 700", a.cfg.data_dir, dirs[i], mode_of(dirs[i]));
	char *p = state_path(&a, "models/x");
	char *want = gn_asprintf("%s/models/x", a.cfg.data_dir);
	assert_string_equal(p, want);
	free(p);
	free(want);
	/* A data dir that cannot be made. */
	struct agent bad = {.cfg.data_dir = "/proc/no/such/dir"};
	assert_int_equal(state_mkdirs(&bad, &err), GN_ERROR);
	assert_non_null(strstr(err.msg, "/proc/no/such/dir"));
}

static void test_json_files(void **state)
{
	gn_err err;
	json_t *j = NULL;
	assert_int_equal(state_read_json(&j, &a, "state.json", &err), GN_ENOTFOUND);
	assert_null(j);
	assert_non_null(strstr(err.msg, "none yet"));
	json_t *st = json_pack("{s:{s:s,s:s},s:n,s:s}", "current", "version", "1.0.0", "name", "det", "previous",
			       "held", "");
	mode_t old = umask(0);
	assert_int_equal(state_write_json(&a, "state.json", st, &err), 0);
	umask(old);
	assert_int_equal(mode_of("state.json"), 0600);
	/* Compact, keys sorted: the bytes on disk are stable. */
	char *text = read_file("state.json");
	assert_string_equal(text,
			    "{\"current\":{\"name\":\"det\",\"version\":\"1.0.0\"},\"held\":\"\",\"previous\":null}");
	free(text);
	assert_int_equal(state_read_json(&j, &a, "state.json", &err), 0);
	assert_true(json_equal(j, st));
	json_decref(j);
	json_decref(st);
	/* Replaced whole: a shorter document leaves nothing of the longer one. */
	json_t *small = json_pack("{s:i}", "v", 2);
	assert_int_equal(state_write_json(&a, "state.json", small, &err), 0);
	text = read_file("state.json");
	assert_string_equal(text, "{\"v\":2}");
	free(text);
	json_decref(small);
	/* Corrupt files are errors, not "none yet": truncated, duplicate keys, not JSON. */
	const char *corrupt[] = {"{\"current\":", "{\"a\":1,\"a\":2}", "garbage", ""};
	for (size_t i = 0; i < GN_ARRAY_LEN(corrupt); i++) {
		write_file("state.json", corrupt[i]);
		j = NULL;
		if (state_read_json(&j, &a, "state.json", &err) != GN_EINVAL)
			fail_msg("%s read as something other than corrupt", corrupt[i]);
		assert_null(j);
		assert_non_null(strstr(err.msg, "state.json is corrupt"));
	}
	/* Raw bytes, for metadata kept exactly as signed. */
	assert_int_equal(state_write_bytes(&a, "trust/image/root.json", "{ \"x\" : 1 }", 11, &err), 0);
	text = read_file("trust/image/root.json");
	assert_string_equal(text, "{ \"x\" : 1 }");
	free(text);
	assert_int_equal(mode_of("trust/image/root.json"), 0600);
}

static void test_identity(void **state)
{
	gn_err err;
	struct agent b = {.cfg.data_dir = a.cfg.data_dir};
	assert_int_equal(state_load_identity(&b, &err), GN_ENOTFOUND);
	assert_non_null(strstr(err.msg, "not enrolled"));
	write_file("identity/device.json", "{\"name\":\"x\"}");
	assert_int_equal(state_load_identity(&b, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "device_id"));
	write_file("identity/device.json", "{\"device_id\":\"0123456789012345678901234567890123456789\"}");
	assert_int_equal(state_load_identity(&b, &err), GN_EINVAL); /* too long for an id */
	write_file("identity/device.json", "{\"device_id\":\"5f0c6d2e-1111-4222-8333-944455556666\"}");
	assert_int_equal(state_load_identity(&b, &err), GN_ENOTFOUND); /* no key yet */
	gn_ed25519_key *k = NULL;
	assert_int_equal(gn_ed25519_generate(&k, &err), 0);
	char *kp = state_path(&a, "identity/key.pem");
	assert_int_equal(gn_ed25519_save(k, kp, &err), 0);
	free(kp);
	write_file("trust/clock", "1900000000\n");
	assert_int_equal(state_load_identity(&a, &err), 0);
	assert_string_equal(a.device_id, "5f0c6d2e-1111-4222-8333-944455556666");
	unsigned char p1[32], p2[32];
	gn_ed25519_public(p1, k);
	gn_ed25519_public(p2, a.key);
	assert_memory_equal(p1, p2, 32);
	assert_int_equal(a.clock_floor, 1900000000);
	gn_ed25519_key_free(k);
	gn_ed25519_key_free(b.key);
}

/* The clock the agent trusts never goes below the newest signed time it has seen. */
static void test_clock_floor(void **state)
{
	struct agent c = {.cfg.data_dir = a.cfg.data_dir, .clock_floor = 0};
	int64_t now = gn_now();
	assert_true(state_now(&c) >= now);
	state_clock_seen(&c, now + 86400 * 365); /* a year ahead: the system clock is behind */
	assert_int_equal(c.clock_floor, now + 86400 * 365);
	assert_int_equal(state_now(&c), now + 86400 * 365);
	char *text = read_file("trust/clock");
	assert_int_equal(strtoll(text, NULL, 10), now + 86400 * 365);
	free(text);
	state_clock_seen(&c, now); /* an older time does not lower it */
	assert_int_equal(c.clock_floor, now + 86400 * 365);
	text = read_file("trust/clock");
	assert_int_equal(strtoll(text, NULL, 10), now + 86400 * 365);
	free(text);
	assert_int_equal(mode_of("trust/clock"), 0600);
}

#define SHA1 "1111111111111111111111111111111111111111111111111111111111111111"
#define SHA2 "2222222222222222222222222222222222222222222222222222222222222222"

/* state.json as JSON text -> what state_models_parse makes of it: the models object, whether it
 * was migrated, or an error (want NULL). */
static const struct {
	const char *in;
	const char *want;
	bool migrated;
} models_cases[] = {
	/* An older agent's: its one model becomes the entry of its name, previous and held kept. */
	{"{\"current\":{\"name\":\"det\",\"version\":\"2.0.0\",\"sha256\":\"" SHA2 "\",\"path\":\"p\"},"
	 "\"previous\":{\"name\":\"det\",\"version\":\"1.0.0\",\"sha256\":\"" SHA1 "\"},\"held\":\"" SHA2 " t\"}",
	 "{\"det\":{\"current\":{\"name\":\"det\",\"version\":\"2.0.0\",\"sha256\":\"" SHA2 "\",\"path\":\"p\"},"
	 "\"previous\":{\"name\":\"det\",\"version\":\"1.0.0\",\"sha256\":\"" SHA1 "\"},\"held\":\"" SHA2 " t\"}}",
	 true},
	/* ... with no held and no previous (the first install). */
	{"{\"current\":{\"name\":\"det\",\"version\":\"1.0.0\",\"sha256\":\"" SHA1 "\"},\"previous\":null}",
	 "{\"det\":{\"current\":{\"name\":\"det\",\"version\":\"1.0.0\",\"sha256\":\"" SHA1 "\"},"
	 "\"previous\":null,\"held\":\"\"}}",
	 true},
	/* A previous version of another model (the one-model agent switched models) is dropped. */
	{"{\"current\":{\"name\":\"cls\",\"version\":\"1.0.0\",\"sha256\":\"" SHA1 "\"},"
	 "\"previous\":{\"name\":\"det\",\"version\":\"1.0.0\",\"sha256\":\"" SHA2 "\"}}",
	 "{\"cls\":{\"current\":{\"name\":\"cls\",\"version\":\"1.0.0\",\"sha256\":\"" SHA1 "\"},"
	 "\"previous\":null,\"held\":\"\"}}",
	 true},
	/* Nothing installed yet: no model. */
	{"{\"current\":null,\"previous\":null,\"held\":\"\"}", "{}", true},
	{"{}", "{}", true},
	/* The current format reads as it is. */
	{"{\"format\":2,\"models\":{\"det\":{\"current\":{\"name\":\"det\",\"version\":\"1.0.0\",\"sha256\":\"" SHA1
	 "\"},\"previous\":null,\"held\":\"\"},\"cls\":{\"current\":null,\"previous\":null,\"held\":\"x\"}}}",
	 "{\"det\":{\"current\":{\"name\":\"det\",\"version\":\"1.0.0\",\"sha256\":\"" SHA1 "\"},"
	 "\"previous\":null,\"held\":\"\"},\"cls\":{\"current\":null,\"previous\":null,\"held\":\"x\"}}",
	 false},
	/* Refused: malformed records, a digest that is not hex, an entry naming another model. */
	{"[]", NULL, false},
	{"{\"current\":{\"name\":\"det\",\"version\":\"1.0.0\"}}", NULL, false},
	{"{\"current\":{\"name\":\"det\",\"version\":\"1.0.0\",\"sha256\":\"../../etc/passwd\"}}", NULL, false},
	{"{\"current\":{\"name\":\"det\",\"version\":\"1.0.0\",\"sha256\":\"" SHA1 "\"},\"held\":7}", NULL, false},
	{"{\"models\":{\"det\":{\"current\":{\"name\":\"cls\",\"version\":\"1.0.0\",\"sha256\":\"" SHA1 "\"}}}}", NULL,
	 false},
	{"{\"models\":{\"det\":[]}}", NULL, false},
};

static void test_models_parse(void **state)
{
	(void)state;
	for (size_t i = 0; i < GN_ARRAY_LEN(models_cases); i++) {
		json_t *in = json_loads(models_cases[i].in, 0, NULL), *out = NULL;
		bool migrated = !models_cases[i].migrated;
		gn_err err;
		assert_non_null(in);
		int rc = state_models_parse(&out, &migrated, in, &err);
		if (!models_cases[i].want) {
			if (rc != GN_EINVAL || out)
				fail_msg("case %zu: %s was not refused", i, models_cases[i].in);
			json_decref(in);
			continue;
		}
		json_t *want = json_loads(models_cases[i].want, 0, NULL);
		assert_non_null(want);
		if (rc || !json_equal(json_object_get(out, "models"), want) ||
		    json_integer_value(json_object_get(out, "format")) != 2 || migrated != models_cases[i].migrated) {
			char *got = out ? json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
			fail_msg("case %zu: rc %d, migrated %d, got %s", i, rc, migrated, got ? got : err.msg);
		}
		json_decref(want);
		json_decref(out);
		json_decref(in);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mkdirs),       cmocka_unit_test(test_json_files),
		cmocka_unit_test(test_identity),     cmocka_unit_test(test_clock_floor),
		cmocka_unit_test(test_models_parse),
	};
	return cmocka_run_group_tests_name("agent_state", tests, setup, teardown);
}
