/* Unit tests for lib/fileio.c: atomic writes and commits of streamed files. */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fileio.h"

/* A fresh directory per test, removed with its files afterwards. */
static int setup(void **state)
{
	char *dir = strdup("/tmp/gn-test-fileio-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	*state = dir;
	return 0;
}

static int teardown(void **state)
{
	char *dir = *state;
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			char *p = gn_asprintf("%s/%s", dir, e->d_name);
			unlink(p);
			free(p);
		}
	}
	if (d)
		closedir(d);
	rmdir(dir);
	free(dir);
	return 0;
}

/* Returns the number of entries in dir other than . and .. (so leftovers show). */
static int count_entries(const char *dir)
{
	int n = 0;
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	if (d)
		closedir(d);
	return n;
}

/* Reads the whole file at path (new, *out_len bytes). */
static char *slurp(const char *path, size_t *out_len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	gn_buf b;
	gn_buf_init(&b);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		gn_buf_append(&b, chunk, n);
	fclose(f);
	*out_len = b.len;
	return gn_buf_detach(&b);
}

static mode_t mode_of(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 07777;
}

/* The mode asked for is the mode given, whatever the umask. */
static void test_write_mode(void **state)
{
	static const int modes[] = {0600, 0640, 0644, 0400};
	gn_err err;
	char *path = gn_asprintf("%s/f", (char *)*state);
	mode_t old = umask(077);
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		assert_int_equal(gn_file_write_atomic(path, "x", 1, modes[i], &err), 0);
		assert_int_equal(mode_of(path), modes[i]);
	}
	umask(old);
	free(path);
}

/* A large body arrives whole, replaces the old content, and leaves no temp file. */
static void test_write_content(void **state)
{
	gn_err err;
	const char *dir = *state;
	char *path = gn_asprintf("%s/data", dir);
	size_t len = 3 * 1024 * 1024 + 7, got_len;
	char *data = malloc(len);
	for (size_t i = 0; i < len; i++)
		data[i] = (char)(i * 131 + 7);
	assert_int_equal(gn_file_write_atomic(path, "old content, longer than the new", 32, 0600, &err), 0);
	assert_int_equal(gn_file_write_atomic(path, data, len, 0600, &err), 0);
	char *got = slurp(path, &got_len);
	assert_int_equal(got_len, len);
	assert_memory_equal(got, data, len);
	assert_int_equal(count_entries(dir), 1);
	/* An empty file is a file too. */
	assert_int_equal(gn_file_write_atomic(path, "", 0, 0600, &err), 0);
	free(got);
	got = slurp(path, &got_len);
	assert_int_equal(got_len, 0);
	assert_int_equal(count_entries(dir), 1);
	free(got);
	free(data);
	free(path);
}

/* No directory: an error that names the path, nothing created anywhere. */
static void test_write_missing_dir(void **state)
{
	gn_err err;
	const char *dir = *state;
	char *path = gn_asprintf("%s/missing/f", dir);
	gn_err_clear(&err);
	assert_int_equal(gn_file_write_atomic(path, "a", 1, 0600, &err), GN_ERROR);
	assert_int_equal(err.code, GN_ERROR);
	assert_non_null(strstr(err.msg, "missing/f"));
	assert_int_equal(count_entries(dir), 0);
	free(path);
}

/* A target that cannot be replaced (a directory): the old one stays, no temp file is left. */
static void test_write_rename_fails(void **state)
{
	gn_err err;
	const char *dir = *state;
	char *path = gn_asprintf("%s/sub", dir), *inner = gn_asprintf("%s/sub/keep", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(gn_file_write_atomic(inner, "k", 1, 0600, &err), 0);
	assert_int_equal(gn_file_write_atomic(path, "a", 1, 0600, &err), GN_ERROR);
	assert_non_null(strstr(err.msg, "rename"));
	assert_int_equal(count_entries(dir), 1);
	assert_int_equal(unlink(inner), 0);
	assert_int_equal(rmdir(path), 0);
	free(path);
	free(inner);
}

/* A streamed file: written by the caller, committed under its final name with its mode. */
static void test_commit(void **state)
{
	gn_err err;
	const char *dir = *state;
	char *tmp = gn_asprintf("%s/part", dir), *final = gn_asprintf("%s/final", dir);
	size_t len;
	int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "streamed", 8), 8);
	assert_int_equal(gn_file_commit(fd, tmp, final, 0400, &err), 0);
	close(fd);
	assert_int_equal(access(tmp, F_OK), -1);
	assert_int_equal(mode_of(final), 0400);
	char *got = slurp(final, &len);
	assert_int_equal(len, 8);
	assert_memory_equal(got, "streamed", 8);
	free(got);
	/* fd -1 and mode -1: the caller synced it; the mode stays. */
	fd = open(tmp, O_RDWR | O_CREAT | O_EXCL, 0640);
	assert_true(fd >= 0);
	close(fd);
	chmod(tmp, 0640);
	assert_int_equal(chmod(final, 0600), 0);
	assert_int_equal(gn_file_commit(-1, tmp, final, -1, &err), 0);
	assert_int_equal(mode_of(final), 0640);
	assert_int_equal(count_entries(dir), 1);
	free(tmp);
	free(final);
}

/* A commit that cannot rename leaves the temp file to its owner and says why. */
static void test_commit_fails(void **state)
{
	gn_err err;
	const char *dir = *state;
	char *tmp = gn_asprintf("%s/part", dir), *final = gn_asprintf("%s/missing/final", dir);
	int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(gn_file_commit(fd, tmp, final, 0400, &err), GN_ERROR);
	assert_non_null(strstr(err.msg, "missing/final"));
	close(fd);
	assert_int_equal(access(tmp, F_OK), 0);
	free(tmp);
	free(final);
}

/* Secrets read from files: trimmed, one word, bounded; each refusal names the file. */
static void test_secret_file(void **state)
{
	static const struct {
		const char *content; /* NULL: no such file */
		const char *want;    /* the secret, or a piece of the refusal */
		int code;
	} cases[] = {
		{"gna_abc\n", "gna_abc", 0},
		{"  \tgna_abc \r\n\n", "gna_abc", 0},
		{"gna_abc", "gna_abc", 0},
		{"0123456789abcdef", "0123456789abcdef", 0}, /* exactly the limit */
		{"0123456789abcdefX", "larger than 16 bytes", GN_EINVAL},
		{"", "is empty", GN_EINVAL},
		{" \n\t ", "is empty", GN_EINVAL},
		{"gna_a gna_b", "more than one word", GN_EINVAL},
		{"gna_a\ngna_b\n", "more than one word", GN_EINVAL},
		{"gna_\001x", "more than one word", GN_EINVAL},
		{NULL, "cannot open", GN_EINVAL},
	};
	const char *dir = *state;
	for (size_t i = 0; i < GN_ARRAY_LEN(cases); i++) {
		char *path = gn_asprintf("%s/secret%zu", dir, i), *got = NULL;
		gn_err err = {.msg = ""};
		if (cases[i].content) {
			FILE *f = fopen(path, "w");
			assert_non_null(f);
			fputs(cases[i].content, f);
			fclose(f);
		}
		int rc = gn_secret_file_read(&got, path, 16, &err);
		if (rc != cases[i].code)
			fail_msg("case %zu: got %d (%s), expected %d", i, rc, err.msg, cases[i].code);
		if (rc == 0) {
			assert_string_equal(got, cases[i].want);
		} else {
			assert_null(got);
			if (!strstr(err.msg, cases[i].want) || !strstr(err.msg, path))
				fail_msg("case %zu: message '%s' lacks '%s' or the path", i, err.msg, cases[i].want);
		}
		free(got);
		free(path);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_write_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_content, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_missing_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_rename_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secret_file, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
