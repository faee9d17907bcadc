/* Unit tests for lib/onnx.c: the default-domain opset of hand-built ModelProto bytes (the expected
 * values are what the bytes were built to say), every truncation of a model, malformed fields, and
 * random and mutated bytes (under ASan in CI, each test buffer is a heap block of its exact size, so
 * a read past the end is caught). tests/integration/test_onnx_opset.py compares real models with
 * the onnx Python package. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "onnx.h"

struct bytes {
	uint8_t b[8192];
	size_t n;
};

static void put(struct bytes *m, const void *p, size_t n)
{
	assert_true(m->n + n <= sizeof(m->b));
	memcpy(m->b + m->n, p, n);
	m->n += n;
}

static void put_varint(struct bytes *m, uint64_t v)
{
	do {
		uint8_t c = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v)
			c |= 0x80;
		put(m, &c, 1);
	} while (v);
}

/* A length-delimited field. */
static void put_bytes(struct bytes *m, unsigned field, const void *p, size_t n)
{
	put_varint(m, (uint64_t)field << 3 | 2);
	put_varint(m, n);
	put(m, p, n);
}

/* An opset_import entry; domain NULL leaves the field out. */
static void put_opset(struct bytes *m, const char *domain, uint64_t version)
{
	struct bytes e = {.n = 0};
	if (domain)
		put_bytes(&e, 1, domain, strlen(domain));
	put_varint(&e, 2 << 3 | 0);
	put_varint(&e, version);
	put_bytes(m, 8, e.b, e.n);
}

/* Runs the parser on a heap copy of exactly n bytes. */
static int opset_of(const void *p, size_t n, int64_t *out, gn_err *err)
{
	void *copy = malloc(n ? n : 1);
	memcpy(copy, p, n);
	int rc = gn_onnx_opset_buf(out, copy, n, err);
	free(copy);
	return rc;
}

/* Runs the walk on the n bytes fed in pieces of 1 to 7 bytes (the sizes drawn from *x). */
static int opset_streamed(const uint8_t *p, size_t n, uint64_t *x, int64_t *out, gn_err *err)
{
	gn_onnx_stream *s = gn_onnx_stream_new();
	for (size_t k = 0; k < n;) {
		*x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
		size_t piece = 1 + (size_t)(*x % 7);
		piece = piece < n - k ? piece : n - k;
		void *copy = malloc(piece); /* exactly the piece, for ASan */
		memcpy(copy, p + k, piece);
		gn_onnx_stream_feed(s, copy, piece);
		free(copy);
		k += piece;
	}
	int rc = gn_onnx_stream_finish(s, out, err);
	gn_onnx_stream_free(s);
	return rc;
}

/* Runs gn_onnx_opset_fd on a temporary file of the n bytes. */
static int opset_file(const void *p, size_t n, int64_t *out, gn_err *err)
{
	char path[] = "/tmp/gn-test-onnx-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, p, n), (ssize_t)n);
	int rc = gn_onnx_opset_fd(out, fd, err);
	close(fd);
	return rc;
}

/* ir_version 8, a producer name, a graph whose payload holds bytes that would read as an
 * opset_import entry of version 99 if the walk looked inside it, then opset_import entries for
 * ai.onnx.ml (3) and the default domain (17). boundaries[] gets the offset after each top-level
 * field; *opset_at the offset where the default-domain entry ends. */
static void typical(struct bytes *m, size_t *boundaries, size_t *nb, size_t *opset_at)
{
	static const uint8_t graph[] = {0x42, 0x02, 0x10, 0x63, 0x0a, 0x01, 'x', 0x3a, 0x00};
	m->n = 0;
	*nb = 0;
	put_varint(m, 1 << 3 | 0);
	put_varint(m, 8);
	boundaries[(*nb)++] = m->n;
	put_bytes(m, 2, "pytorch", 7);
	boundaries[(*nb)++] = m->n;
	put_bytes(m, 7, graph, sizeof(graph));
	boundaries[(*nb)++] = m->n;
	put_opset(m, "ai.onnx.ml", 3);
	boundaries[(*nb)++] = m->n;
	put_opset(m, "", 17);
	boundaries[(*nb)++] = m->n;
	*opset_at = m->n;
	put_varint(m, 14 << 3 | 2); /* metadata_props, empty */
	put_varint(m, 0);
	boundaries[(*nb)++] = m->n;
}

static void test_declared(void **state)
{
	struct bytes m;
	size_t b[16], nb, at;
	int64_t v = -1;
	gn_err err;
	(void)state;
	typical(&m, b, &nb, &at);
	assert_int_equal(opset_of(m.b, m.n, &v, &err), 0);
	assert_int_equal(v, 17);

	/* "ai.onnx" is the default domain too; an entry without a domain field is ""; the largest wins */
	m.n = 0;
	put_opset(&m, "ai.onnx", 21);
	assert_int_equal(opset_of(m.b, m.n, &v, &err), 0);
	assert_int_equal(v, 21);
	m.n = 0;
	put_opset(&m, NULL, 11);
	put_opset(&m, "", 13);
	put_opset(&m, "com.microsoft", 40);
	put_opset(&m, "ai.onnx.x", 50); /* not the default domain: a prefix is not enough */
	assert_int_equal(opset_of(m.b, m.n, &v, &err), 0);
	assert_int_equal(v, 13);
	/* fixed-width fields (wire types 1 and 5) are skipped by their size */
	m.n = 0;
	put_varint(&m, 3 << 3 | 1);
	put(&m, "\x08\x10\x42\x01\x02\x03\x04\x05", 8);
	put_varint(&m, 4 << 3 | 5);
	put(&m, "\x42\x02\x10\x05", 4);
	put_opset(&m, "", 9);
	assert_int_equal(opset_of(m.b, m.n, &v, &err), 0);
	assert_int_equal(v, 9);
}

static void test_not_declared(void **state)
{
	struct bytes m = {.n = 0};
	int64_t v = -1;
	gn_err err;
	(void)state;
	put_varint(&m, 1 << 3 | 0);
	put_varint(&m, 2); /* IR version 2: no opset_import yet */
	put_bytes(&m, 7, "\x0a\x00", 2);
	assert_int_equal(opset_of(m.b, m.n, &v, &err), GN_ENOTFOUND);
	assert_non_null(strstr(err.msg, "declares no opset for the default ONNX domain"));
	put_opset(&m, "ai.onnx.ml", 3);
	assert_int_equal(opset_of(m.b, m.n, &v, &err), GN_ENOTFOUND);
	assert_int_equal(v, 0);
}

/* Every prefix of the typical model: one that ends inside a field is refused; one that ends on a
 * field boundary is a shorter, well-formed message (found or not, by whether the entry is in it). */
static void test_truncated(void **state)
{
	struct bytes m;
	size_t b[16], nb, at;
	(void)state;
	typical(&m, b, &nb, &at);
	for (size_t k = 0; k < m.n; k++) {
		int64_t v = -1;
		gn_err err = {0};
		bool boundary = false;
		for (size_t i = 0; i < nb; i++)
			boundary |= b[i] == k;
		int rc = opset_of(m.b, k, &v, &err);
		int want = !boundary ? GN_EINVAL : k >= at ? 0 : k == 0 ? GN_EINVAL : GN_ENOTFOUND;
		if (rc != want || (want == 0 && v != 17))
			fail_msg("prefix of %zu bytes: rc %d (opset %lld, '%s'), expected %d", k, rc, (long long)v,
				 err.msg, want);
		if (rc == GN_EINVAL && k > 0 && !strstr(err.msg, "not an ONNX model"))
			fail_msg("prefix of %zu bytes: message '%s'", k, err.msg);
	}
}

static void test_malformed(void **state)
{
	static const struct {
		const char *what;
		const char *bytes;
		size_t n;
		const char *msg;
	} cases[] = {
		{"varint of 11 bytes", "\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12, "cut off or too long"},
		{"varint over 64 bits", "\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 11, "cut off or too long"},
		{"length past the end", "\x3a\x05\x00\x00", 4, "past the end"},
		{"huge length", "\x3a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11, "past the end"},
		{"group wire type", "\x0b\x00", 2, "wire type 3"},
		{"wire type 7", "\x0f\x00", 2, "wire type 7"},
		{"field number 0", "\x02\x00", 2, "field number 0"},
		{"fixed64 cut", "\x09\x00\x00\x00", 4, "past the end"},
		{"opset 0", "\x42\x04\x0a\x00\x10\x00", 6, "opset 0"},
		{"opset 1001", "\x42\x05\x0a\x00\x10\xe9\x07", 7, "opset 1001"},
		{"negative opset", "\x42\x0d\x0a\x00\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 15, "opset -1"},
		{"domain past the entry", "\x42\x04\x0a\x05\x10\x0b", 6, "past the end"},
		{"version cut in the entry", "\x42\x03\x0a\x00\x10\x0b", 6, "cut off"},
		{"bad tag in the entry", "\x42\x02\x00\x00", 4, "field number 0"},
	};
	(void)state;
	for (size_t i = 0; i < GN_ARRAY_LEN(cases); i++) {
		int64_t v = -1;
		gn_err err = {0};
		int rc = opset_of(cases[i].bytes, cases[i].n, &v, &err);
		if (rc != GN_EINVAL || !strstr(err.msg, cases[i].msg))
			fail_msg("%s: rc %d '%s', expected GN_EINVAL '%s'", cases[i].what, rc, err.msg, cases[i].msg);
	}
	/* an entry longer than the bound is refused unread */
	struct bytes m = {.n = 0};
	static char big[GN_ONNX_OPSET_ENTRY_MAX + 1];
	put_bytes(&m, 8, big, sizeof(big));
	int64_t v;
	gn_err err;
	assert_int_equal(opset_of(m.b, m.n, &v, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "opset_import entry of 4097 bytes"));
	assert_int_equal(gn_onnx_opset_buf(&v, NULL, 0, &err), GN_EINVAL);
}

/* Random bytes and random mutations of the typical model: any answer but a crash, a read out of
 * bounds (ASan) or an opset outside the accepted range. */
static void test_fuzz(void **state)
{
	struct bytes m;
	size_t b[16], nb, at;
	uint8_t buf[512];
	uint64_t x = 0x9e3779b97f4a7c15ull;
	int seen[3] = {0};
	(void)state;
	typical(&m, b, &nb, &at);
	for (int i = 0; i < 40000; i++) {
		size_t n;
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		if (i % 2) {
			n = (size_t)(x % sizeof(buf));
			for (size_t k = 0; k < n; k++) {
				x ^= x << 13, x ^= x >> 7, x ^= x << 17;
				buf[k] = (uint8_t)x;
			}
		} else {
			n = m.n;
			memcpy(buf, m.b, n);
			for (int f = 0; f < 1 + (int)(x % 3); f++) {
				x ^= x << 13, x ^= x >> 7, x ^= x << 17;
				buf[x % n] = (uint8_t)(x >> 32);
			}
		}
		int64_t v = -1;
		gn_err err;
		int rc = opset_of(buf, n, &v, &err);
		/* fed in pieces, and read from a file (which skips), the answer is the same */
		int64_t vs = -1;
		gn_err es;
		int rcs = i % 50 ? opset_streamed(buf, n, &x, &vs, &es) : opset_file(buf, n, &vs, &es);
		if (rcs != rc || vs != v || (rc && strcmp(es.msg, err.msg) != 0))
			fail_msg("case %d: whole %d %lld '%s', %s %d %lld '%s'", i, rc, (long long)v, rc ? err.msg : "",
				 i % 50 ? "streamed" : "file", rcs, (long long)vs, rcs ? es.msg : "");
		if (rc == 0 && (v < 1 || v > GN_ONNX_OPSET_MAX))
			fail_msg("case %d: opset %lld", i, (long long)v);
		if (rc != 0 && rc != GN_EINVAL && rc != GN_ENOTFOUND)
			fail_msg("case %d: rc %d", i, rc);
		seen[rc == 0 ? 0 : rc == GN_EINVAL ? 1 : 2]++;
	}
	/* the mutations kept some models readable and broke others */
	assert_true(seen[0] > 100 && seen[1] > 100);
}

static void test_fd(void **state)
{
	struct bytes m;
	size_t b[16], nb, at;
	char path[] = "/tmp/gn-test-onnx-XXXXXX";
	int64_t v = -1;
	gn_err err;
	(void)state;
	typical(&m, b, &nb, &at);
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, m.b, m.n), (ssize_t)m.n);
	assert_int_equal(gn_onnx_opset_fd(&v, fd, &err), 0);
	assert_int_equal(v, 17);
	assert_int_equal(ftruncate(fd, (off_t)(at - 1)), 0);
	assert_int_equal(gn_onnx_opset_fd(&v, fd, &err), GN_EINVAL);
	close(fd);
}

/* A graph of 3 MB before opset_import: fed in pieces of 64 KiB and read from a file (which
 * skips the graph), opset 17; cut inside the graph, both name the field and the missing bytes. */
static void test_large_graph(void **state)
{
	size_t big = 3 << 20, n = 0;
	uint8_t *m = calloc(1, big + 64);
	int64_t v = -1;
	gn_err err;
	(void)state;
	m[n++] = 1 << 3 | 0, m[n++] = 8; /* ir_version 8 */
	m[n++] = 7 << 3 | 2;             /* graph, a length of big as a varint */
	for (size_t l = big; l; l >>= 7)
		m[n++] = (uint8_t)((l & 0x7f) | (l >> 7 ? 0x80 : 0));
	size_t graph_at = n;
	n += big; /* zeros: would be field number 0 if read */
	const uint8_t entry[] = {8 << 3 | 2, 2, 2 << 3 | 0, 17};
	memcpy(m + n, entry, sizeof(entry));
	n += sizeof(entry);
	gn_onnx_stream *s = gn_onnx_stream_new();
	for (size_t k = 0; k < n; k += 65536)
		gn_onnx_stream_feed(s, m + k, n - k < 65536 ? n - k : 65536);
	assert_int_equal(gn_onnx_stream_finish(s, &v, &err), 0);
	assert_int_equal(v, 17);
	gn_onnx_stream_free(s);
	assert_int_equal(opset_file(m, n, &v, &err), 0);
	assert_int_equal(v, 17);
	assert_int_equal(opset_file(m, graph_at + 1000, &v, &err), GN_EINVAL);
	char want[160];
	snprintf(want, sizeof(want), "not an ONNX model: a field at byte %zu runs %zu bytes past the end", graph_at,
		 big - 1000);
	assert_string_equal(err.msg, want);
	s = gn_onnx_stream_new();
	gn_onnx_stream_feed(s, m, graph_at + 1000);
	assert_int_equal(gn_onnx_stream_finish(s, &v, &err), GN_EINVAL);
	assert_string_equal(err.msg, want);
	gn_onnx_stream_free(s);
	free(m);
}

/* A model whose last field is one the walk skips, longer than a read (a metadata entry of 2000
 * bytes after opset_import, as exporters write it): the file, skipping it unread, ends on its
 * last byte like the stream does, opset 17; one byte short, both say the field runs past the end. */
static void test_ends_in_a_long_skipped_field(void **state)
{
	static uint8_t value[2000];
	struct bytes m = {.n = 0};
	int64_t v = -1;
	gn_err err;
	(void)state;
	memset(value, 'x', sizeof(value));
	put_varint(&m, 1 << 3 | 0);
	put_varint(&m, 8);
	put_opset(&m, "", 17);
	put_bytes(&m, 14, value, sizeof(value));
	assert_int_equal(opset_file(m.b, m.n, &v, &err), 0);
	assert_int_equal(v, 17);
	uint64_t x = 7;
	v = -1;
	assert_int_equal(opset_streamed(m.b, m.n, &x, &v, &err), 0);
	assert_int_equal(v, 17);
	assert_int_equal(opset_file(m.b, m.n - 1, &v, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "runs 1 bytes past the end"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_declared),    cmocka_unit_test(test_not_declared),
		cmocka_unit_test(test_truncated),   cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_fuzz),        cmocka_unit_test(test_fd),
		cmocka_unit_test(test_large_graph), cmocka_unit_test(test_ends_in_a_long_skipped_field),
	};
	return cmocka_run_group_tests_name("onnx", tests, NULL, NULL);
}
