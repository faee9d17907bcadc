/* Unit tests for lib/tufdeleg.c: delegated role names and shapes, path matching as the TUF
 * specification describes it, and the delegation walk (pre-order depth-first, terminating
 * delegations, thresholds per role, the snapshot's versions, rollback, the visit bound), over
 * metadata built and signed here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crypto.h"
#include "json.h"
#include "tuf.h"
#include "tufclient.h"
#include "tufdeleg.h"

#define NOW 1800000000LL
#define NKEYS 5
#define PATH "models/resnet/1.0.0/model.onnx"

static gn_ed25519_key *keys[NKEYS];
static char ids[NKEYS][65];

static int setup(void **state)
{
	gn_err err;
	(void)state;
	for (int i = 0; i < NKEYS; i++) {
		unsigned char pub[32];
		assert_int_equal(gn_ed25519_generate(&keys[i], &err), 0);
		gn_ed25519_public(pub, keys[i]);
		json_t *k = gn_tuf_key_json(pub);
		assert_int_equal(gn_tuf_keyid(ids[i], k, &err), 0);
		json_decref(k);
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (int i = 0; i < NKEYS; i++)
		gn_ed25519_key_free(keys[i]);
	return 0;
}

/* A targets signed part at version, listing `path` (when set) with a length that tells entries
 * apart. */
static json_t *targets_part(int version, const char *path, int length)
{
	char exp[21];
	gn_tuf_time(exp, NOW + 3600);
	json_t *t = json_object();
	if (path)
		json_object_set_new(t, path,
				    json_pack("{s:i,s:{s:s}}", "length", length, "hashes", "sha256",
					      "0000000000000000000000000000000000000000000000000000000000000000"));
	return json_pack("{s:s,s:s,s:i,s:s,s:o}", "_type", "targets", "spec_version", "1.0.0", "version", version,
			 "expires", exp, "targets", t);
}

/* Adds to targets part sp a delegation to role name: keys k[0..nk) with threshold t, the paths
 * (comma-separated patterns), terminating or not. */
static void delegate(json_t *sp, const char *name, const int *k, int nk, int t, const char *paths, bool terminating)
{
	json_t *d = json_object_get(sp, "delegations");
	if (!d) {
		d = json_pack("{s:{},s:[]}", "keys", "roles");
		json_object_set_new(sp, "delegations", d);
	}
	json_t *keyids = json_array(), *pats = json_array();
	for (int i = 0; i < nk; i++) {
		unsigned char pub[32];
		gn_ed25519_public(pub, keys[k[i]]);
		json_object_set_new(json_object_get(d, "keys"), ids[k[i]], gn_tuf_key_json(pub));
		json_array_append_new(keyids, json_string(ids[k[i]]));
	}
	char *copy = gn_strdup(paths), *save = NULL;
	for (char *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save))
		json_array_append_new(pats, json_string(p));
	free(copy);
	json_array_append_new(json_object_get(d, "roles"),
			      json_pack("{s:s,s:o,s:i,s:o,s:b}", "name", name, "keyids", keyids, "threshold", t,
					"paths", pats, "terminating", terminating));
}

static json_t *sign(json_t *sp, const int *by, int n)
{
	gn_ed25519_key *ks[NKEYS];
	json_t *env = NULL;
	gn_err err;
	for (int i = 0; i < n; i++)
		ks[i] = keys[by[i]];
	assert_int_equal(gn_tuf_sign(&env, sp, ks, (size_t)n, &err), 0);
	json_decref(sp);
	return env;
}

/* A repository in memory: the files a client may fetch ("VERSION.ROLE" -> bytes), the snapshot
 * that lists them, the trusted copies, and how many fetches were made. */
struct repo {
	json_t *files, *meta, *trusted;
	int fetches;
	char fetched[256];
};

static void repo_init(struct repo *r)
{
	memset(r, 0, sizeof(*r));
	r->files = json_object();
	r->meta = json_object();
	r->trusted = json_object();
}

static void repo_cleanup(struct repo *r)
{
	json_decref(r->files);
	json_decref(r->meta);
	json_decref(r->trusted);
}

/* Publishes env (taken) as role's metadata, listed in the snapshot at its version. */
static void publish(struct repo *r, const char *role, json_t *env)
{
	char name[96], file[80];
	char *bytes = json_dumps(env, JSON_COMPACT | JSON_SORT_KEYS);
	json_int_t v = json_integer_value(json_object_get(json_object_get(env, "signed"), "version"));
	snprintf(name, sizeof(name), "%lld.%s", (long long)v, role);
	snprintf(file, sizeof(file), "%s.json", role);
	json_object_set_new(r->files, name, json_string(bytes));
	json_object_set_new(r->meta, file, json_pack("{s:I,s:i}", "version", v, "length", (int)strlen(bytes)));
	free(bytes);
	json_decref(env);
}

static json_t *snapshot(const struct repo *r)
{
	return json_pack("{s:{s:s,s:i,s:O}}", "signed", "_type", "snapshot", "version", 1, "meta", r->meta);
}

static int fetch(void *ctx, char **out, size_t *out_len, const char *role, long long version, size_t max, gn_err *err)
{
	struct repo *r = ctx;
	char name[96];
	snprintf(name, sizeof(name), "%lld.%s", version, role);
	r->fetches++;
	strncat(r->fetched, role, sizeof(r->fetched) - strlen(r->fetched) - 2);
	strcat(r->fetched, " ");
	const char *bytes = json_string_value(json_object_get(r->files, name));
	if (!bytes)
		return gn_err_set(err, GN_ENOTFOUND, "no %s", name);
	if (strlen(bytes) > max)
		return gn_err_set(err, GN_ETOOBIG, "%s is over %zu bytes", name, max);
	*out = gn_strdup(bytes);
	*out_len = strlen(bytes);
	return 0;
}

static int trusted(void *ctx, json_t **out, const char *role, gn_err *err)
{
	struct repo *r = ctx;
	json_t *t = json_object_get(r->trusted, role);
	if (!t)
		return gn_err_set(err, GN_ENOTFOUND, "no trusted %s", role);
	*out = json_incref(t);
	return 0;
}

/* Looks up PATH with top-level targets top (taken) over repository r; *out_length: the length of
 * the entry found (-1 for none). Returns the walk's answer. */
static int lookup(int *out_length, struct repo *r, json_t *top, const char *path, gn_err *err)
{
	json_t *sn = snapshot(r);
	struct gn_tufd_walk w = {
		.targets = top, .snapshot = sn, .now = NOW, .fetch = fetch, .trusted = trusted, .ctx = r};
	const json_t *entry = NULL;
	int rc = gn_tufd_find_target(&entry, &w, path, err);
	*out_length = entry ? (int)json_integer_value(json_object_get(entry, "length")) : -1;
	assert_true(rc == 0 || entry == NULL);
	gn_tufd_walk_cleanup(&w);
	json_decref(sn);
	json_decref(top);
	return rc;
}

static void test_role_names(void **state)
{
	gn_err err;
	static const char *const good[] = {"ci", "models-resnet", "bin_00", "a.b", "A9"};
	static const char *const bad[] = {"",        ".hidden",  "a/b",       "..",  "root",
					  "targets", "snapshot", "timestamp", "a b", "x%2fy"};
	(void)state;
	for (size_t i = 0; i < GN_ARRAY_LEN(good); i++)
		assert_int_equal(gn_tufd_role_name_check(good[i], &err), 0);
	for (size_t i = 0; i < GN_ARRAY_LEN(bad); i++)
		assert_int_equal(gn_tufd_role_name_check(bad[i], &err), GN_EINVAL);
	char longname[GN_TUF_ROLE_NAME_MAX + 2];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(gn_tufd_role_name_check(longname, &err), GN_EINVAL);
	longname[GN_TUF_ROLE_NAME_MAX] = '\0';
	assert_int_equal(gn_tufd_role_name_check(longname, &err), 0);
}

/* The specification's own examples, and its rule that a wildcard never matches '/'. */
static void test_path_patterns(void **state)
{
	static const struct {
		const char *pattern, *path;
		bool match;
	} cases[] = {
		{"targets/*.tgz", "targets/foo.tgz", true},
		{"targets/*.tgz", "targets/foo.txt", false},
		{"foo-version-?.tgz", "foo-version-2.tgz", true},
		{"foo-version-?.tgz", "foo-version-a.tgz", true},
		{"foo-version-?.tgz", "foo-version-alpha.tgz", false},
		{"*.tgz", "targets/foo.tgz", false},
		{"*", "models/a", false},
		{"models/*", "models/a/b", false},
		{"models/*/*/*", PATH, true},
		{"models/resnet/*/*", PATH, true},
		{"models/other/*/*", PATH, false},
		{"models/*/*/*", "models/resnet/1.0.0", false},
		{"models/re?net/*/model.onnx", PATH, true},
		{"models/[rs]esnet/*/*", PATH, true},
		{PATH, PATH, true},
	};
	(void)state;
	for (size_t i = 0; i < GN_ARRAY_LEN(cases); i++) {
		json_t *role = json_pack("{s:[s]}", "paths", cases[i].pattern);
		if (gn_tufd_role_matches(role, cases[i].path) != cases[i].match)
			fail_msg("pattern %s on %s: expected %d", cases[i].pattern, cases[i].path, cases[i].match);
		json_decref(role);
	}
}

static void test_path_hash_prefixes(void **state)
{
	char sum[65];
	(void)state;
	gn_sha256_hex(sum, PATH, strlen(PATH));
	char p1[2] = {sum[0], 0}, p3[4] = {sum[0], sum[1], sum[2], 0}, other[2] = {sum[0] == '0' ? '1' : '0', 0};
	json_t *a = json_pack("{s:[s,s]}", "path_hash_prefixes", other, p1);
	json_t *b = json_pack("{s:[s]}", "path_hash_prefixes", p3);
	json_t *c = json_pack("{s:[s]}", "path_hash_prefixes", other);
	assert_true(gn_tufd_role_matches(a, PATH));
	assert_true(gn_tufd_role_matches(b, PATH));
	assert_false(gn_tufd_role_matches(c, PATH));
	json_decref(a);
	json_decref(b);
	json_decref(c);
}

/* Every malformed delegation is refused with a reason. */
static void test_delegations_refused(void **state)
{
	gn_err err;
	int k01[] = {0, 1};
	(void)state;
	static const char *const why[] = {"threshold 3",   "threshold 0", "listed twice", "exactly one",
					  "not a boolean", "not defined", "name",         "lower-case hex"};
	for (size_t i = 0; i < GN_ARRAY_LEN(why); i++) {
		json_t *sp = targets_part(1, NULL, 0);
		delegate(sp, "ci", k01, 2, 2, "models/*", false);
		json_t *role = json_array_get(json_object_get(json_object_get(sp, "delegations"), "roles"), 0);
		switch (i) {
		case 0: json_object_set_new(role, "threshold", json_integer(3)); break;
		case 1: json_object_set_new(role, "threshold", json_integer(0)); break;
		case 2: delegate(sp, "ci", k01, 2, 1, "x/*", false); break;
		case 3: json_object_set_new(role, "path_hash_prefixes", json_pack("[s]", "ab")); break;
		case 4: json_object_set_new(role, "terminating", json_string("yes")); break;
		case 5: json_array_append_new(json_object_get(role, "keyids"), json_string(ids[4])); break;
		case 6: json_object_set_new(role, "name", json_string("../root")); break;
		case 7:
			json_object_del(role, "paths");
			json_object_set_new(role, "path_hash_prefixes", json_pack("[s]", "AB"));
			break;
		}
		assert_int_equal(gn_tufd_delegations_check(sp, &err), GN_EINVAL);
		if (!strstr(err.msg, why[i]))
			fail_msg("case %zu: '%s' does not say '%s'", i, err.msg, why[i]);
		json_decref(sp);
	}
	json_t *sp = targets_part(1, NULL, 0);
	assert_int_equal(gn_tufd_delegations_check(sp, &err), 0);
	delegate(sp, "ci", k01, 2, 2, "models/*", true);
	assert_int_equal(gn_tufd_delegations_check(sp, &err), 0);
	json_decref(sp);
}

/* A threshold of 2 of 3 CI keys: two signatures are trusted, one is not (even a valid one), and
 * one signature counted twice is still one. */
static void test_threshold_two(void **state)
{
	gn_err err;
	struct repo r;
	int len, ci[] = {1, 2, 3}, two[] = {1, 3}, one[] = {2}, same[] = {2, 2}, top[] = {0};
	(void)state;
	json_t *tsp = targets_part(1, NULL, 0);
	delegate(tsp, "ci", ci, 3, 2, "models/*/*/*", false);
	json_t *tenv = sign(tsp, top, 1);

	repo_init(&r);
	publish(&r, "ci", sign(targets_part(1, PATH, 11), two, 2));
	assert_int_equal(lookup(&len, &r, json_incref(tenv), PATH, &err), 0);
	assert_int_equal(len, 11);
	repo_cleanup(&r);

	repo_init(&r);
	publish(&r, "ci", sign(targets_part(1, PATH, 11), one, 1));
	assert_int_equal(lookup(&len, &r, json_incref(tenv), PATH, &err), GN_EAUTH);
	assert_non_null(strstr(err.msg, "threshold is 2"));
	assert_int_equal(len, -1);
	repo_cleanup(&r);

	repo_init(&r);
	publish(&r, "ci", sign(targets_part(1, PATH, 11), same, 2));
	assert_int_equal(lookup(&len, &r, json_incref(tenv), PATH, &err), GN_EAUTH);
	repo_cleanup(&r);

	/* Signed by the top-level targets key (the server's, say) and one CI key: still one. */
	int mixed[] = {0, 1};
	repo_init(&r);
	publish(&r, "ci", sign(targets_part(1, PATH, 11), mixed, 2));
	assert_int_equal(lookup(&len, &r, json_incref(tenv), PATH, &err), GN_EAUTH);
	repo_cleanup(&r);
	json_decref(tenv);
}

/* Top-level targets delegate models/ * to A (terminating when asked) and then to B. Only B lists
 * the target. */
static void test_terminating(void **state)
{
	gn_err err;
	struct repo r;
	int len, top[] = {0}, ka[] = {1}, kb[] = {2};
	(void)state;
	for (int term = 0; term < 2; term++) {
		json_t *tsp = targets_part(1, NULL, 0);
		delegate(tsp, "a", ka, 1, 1, "models/*/*/*", term);
		delegate(tsp, "b", kb, 1, 1, "models/*/*/*", false);
		repo_init(&r);
		publish(&r, "a", sign(targets_part(1, "models/other/1/x", 5), ka, 1));
		publish(&r, "b", sign(targets_part(1, PATH, 22), kb, 1));
		int rc = lookup(&len, &r, sign(tsp, top, 1), PATH, &err);
		if (term) {
			assert_int_equal(rc, GN_ENOTFOUND);
			assert_string_equal(r.fetched, "a ");
		} else {
			assert_int_equal(rc, 0);
			assert_int_equal(len, 22);
			assert_string_equal(r.fetched, "a b ");
		}
		repo_cleanup(&r);
	}
}

/* A terminating delegation below the top level also drops the roles its ancestors left waiting. */
static void test_terminating_deep(void **state)
{
	gn_err err;
	struct repo r;
	int len, top[] = {0}, ka[] = {1}, kb[] = {2}, kc[] = {3};
	(void)state;
	json_t *tsp = targets_part(1, NULL, 0);
	delegate(tsp, "a", ka, 1, 1, "models/*/*/*", false);
	delegate(tsp, "b", kb, 1, 1, "models/*/*/*", false);
	json_t *asp = targets_part(1, NULL, 0);
	delegate(asp, "c", kc, 1, 1, "models/resnet/*/*", true);
	repo_init(&r);
	publish(&r, "a", sign(asp, ka, 1));
	publish(&r, "b", sign(targets_part(1, PATH, 22), kb, 1));
	publish(&r, "c", sign(targets_part(1, NULL, 0), kc, 1));
	assert_int_equal(lookup(&len, &r, sign(tsp, top, 1), PATH, &err), GN_ENOTFOUND);
	assert_string_equal(r.fetched, "a c ");
	repo_cleanup(&r);
}

/* Pre-order depth-first: a's child is asked before b, and the first answer wins; a role whose
 * paths do not match is never fetched. */
static void test_preorder(void **state)
{
	gn_err err;
	struct repo r;
	int len, top[] = {0}, ka[] = {1}, kb[] = {2}, kc[] = {3}, kd[] = {4};
	(void)state;
	json_t *tsp = targets_part(1, NULL, 0);
	delegate(tsp, "other", kd, 1, 1, "datasets/*", false);
	delegate(tsp, "a", ka, 1, 1, "models/*/*/*", false);
	delegate(tsp, "b", kb, 1, 1, "models/*/*/*", false);
	json_t *asp = targets_part(1, NULL, 0);
	delegate(asp, "c", kc, 1, 1, "models/*/*/*", false);
	repo_init(&r);
	publish(&r, "a", sign(asp, ka, 1));
	publish(&r, "b", sign(targets_part(1, PATH, 22), kb, 1));
	publish(&r, "c", sign(targets_part(1, PATH, 33), kc, 1));
	publish(&r, "other", sign(targets_part(1, PATH, 44), kd, 1));
	assert_int_equal(lookup(&len, &r, sign(tsp, top, 1), PATH, &err), 0);
	assert_int_equal(len, 33);
	assert_string_equal(r.fetched, "a c ");
	repo_cleanup(&r);

	/* A target the top-level role lists itself needs no delegation at all. */
	repo_init(&r);
	json_t *t2 = targets_part(1, PATH, 7);
	delegate(t2, "a", ka, 1, 1, "models/*/*/*", false);
	assert_int_equal(lookup(&len, &r, sign(t2, top, 1), PATH, &err), 0);
	assert_int_equal(len, 7);
	assert_int_equal(r.fetches, 0);
	repo_cleanup(&r);
}

/* A delegated role must be the version the snapshot lists, with its length; listed at all; not
 * older than the trusted copy; not expired. */
static void test_snapshot_and_rollback(void **state)
{
	gn_err err;
	struct repo r;
	int len, top[] = {0}, ka[] = {1};
	(void)state;
	json_t *tsp = targets_part(1, NULL, 0);
	delegate(tsp, "a", ka, 1, 1, "models/*/*/*", false);
	json_t *tenv = sign(tsp, top, 1);

	/* The snapshot lists version 2, the file at 2.a.json says 1. */
	repo_init(&r);
	publish(&r, "a", sign(targets_part(1, PATH, 5), ka, 1));
	json_object_set(r.files, "2.a", json_object_get(r.files, "1.a"));
	json_object_set_new(json_object_get(r.meta, "a.json"), "version", json_integer(2));
	assert_int_equal(lookup(&len, &r, json_incref(tenv), PATH, &err), GN_EAUTH);
	repo_cleanup(&r);

	/* Another length than the snapshot lists: longer is refused as it is read, shorter once read. */
	repo_init(&r);
	publish(&r, "a", sign(targets_part(1, PATH, 5), ka, 1));
	json_t *listed = json_object_get(r.meta, "a.json");
	json_int_t real = json_integer_value(json_object_get(listed, "length"));
	json_object_set_new(listed, "length", json_integer(real - 1));
	assert_int_equal(lookup(&len, &r, json_incref(tenv), PATH, &err), GN_ETOOBIG);
	json_object_set_new(listed, "length", json_integer(real + 1));
	assert_int_equal(lookup(&len, &r, json_incref(tenv), PATH, &err), GN_EAUTH);
	assert_non_null(strstr(err.msg, "bytes"));
	repo_cleanup(&r);

	/* Not in the snapshot. */
	repo_init(&r);
	publish(&r, "a", sign(targets_part(1, PATH, 5), ka, 1));
	json_object_del(r.meta, "a.json");
	assert_int_equal(lookup(&len, &r, json_incref(tenv), PATH, &err), GN_EAUTH);
	assert_int_equal(r.fetches, 0);
	repo_cleanup(&r);

	/* Older than the trusted copy, or the same version with other content. */
	repo_init(&r);
	publish(&r, "a", sign(targets_part(1, PATH, 5), ka, 1));
	json_object_set_new(r.trusted, "a", sign(targets_part(2, PATH, 5), ka, 1));
	assert_int_equal(lookup(&len, &r, json_incref(tenv), PATH, &err), GN_EAUTH);
	assert_non_null(strstr(err.msg, "rollback"));
	json_object_set_new(r.trusted, "a", sign(targets_part(1, PATH, 6), ka, 1));
	assert_int_equal(lookup(&len, &r, json_incref(tenv), PATH, &err), GN_EAUTH);
	json_object_set_new(r.trusted, "a", sign(targets_part(1, PATH, 5), ka, 1));
	assert_int_equal(lookup(&len, &r, json_incref(tenv), PATH, &err), 0);
	repo_cleanup(&r);

	/* Expired. */
	repo_init(&r);
	json_t *old = targets_part(1, PATH, 5);
	char exp[21];
	gn_tuf_time(exp, NOW - 1);
	json_object_set_new(old, "expires", json_string(exp));
	publish(&r, "a", sign(old, ka, 1));
	assert_int_equal(lookup(&len, &r, json_incref(tenv), PATH, &err), GN_EAUTH);
	assert_non_null(strstr(err.msg, "expired"));
	repo_cleanup(&r);

	/* Metadata of another type at that name. */
	repo_init(&r);
	json_t *notargets = targets_part(1, PATH, 5);
	json_object_set_new(notargets, "_type", json_string("snapshot"));
	publish(&r, "a", sign(notargets, ka, 1));
	assert_int_equal(lookup(&len, &r, json_incref(tenv), PATH, &err), GN_EINVAL);
	repo_cleanup(&r);
	json_decref(tenv);
}

/* Roles that delegate to each other end; a chain longer than the bound finds nothing. */
static void test_cycle_and_bound(void **state)
{
	gn_err err;
	struct repo r;
	int len, top[] = {0}, k[] = {1};
	(void)state;
	json_t *tsp = targets_part(1, NULL, 0);
	delegate(tsp, "a", k, 1, 1, "models/*/*/*", false);
	json_t *asp = targets_part(1, NULL, 0), *bsp = targets_part(1, NULL, 0);
	delegate(asp, "b", k, 1, 1, "models/*/*/*", false);
	delegate(bsp, "a", k, 1, 1, "models/*/*/*", false);
	repo_init(&r);
	publish(&r, "a", sign(asp, k, 1));
	publish(&r, "b", sign(bsp, k, 1));
	assert_int_equal(lookup(&len, &r, sign(tsp, top, 1), PATH, &err), GN_ENOTFOUND);
	assert_int_equal(r.fetches, 2);
	repo_cleanup(&r);

	/* r1 -> r2 -> ... -> r40, the last one listing the target. */
	repo_init(&r);
	tsp = targets_part(1, NULL, 0);
	delegate(tsp, "r1", k, 1, 1, "models/*/*/*", false);
	for (int i = 1; i <= 40; i++) {
		char name[16], next[16];
		snprintf(name, sizeof(name), "r%d", i);
		snprintf(next, sizeof(next), "r%d", i + 1);
		json_t *sp = targets_part(1, i == 40 ? PATH : NULL, 40);
		if (i < 40)
			delegate(sp, next, k, 1, 1, "models/*/*/*", false);
		publish(&r, name, sign(sp, k, 1));
	}
	assert_int_equal(lookup(&len, &r, sign(tsp, top, 1), PATH, &err), GN_ENOTFOUND);
	assert_int_equal(r.fetches, GN_TUF_MAX_DELEGATIONS - 1);
	assert_non_null(strstr(err.msg, "32"));
	repo_cleanup(&r);
}

/* A delegated role whose own delegations are malformed is refused, not half used. */
static void test_bad_child_delegations(void **state)
{
	gn_err err;
	struct repo r;
	int len, top[] = {0}, k[] = {1};
	(void)state;
	json_t *tsp = targets_part(1, NULL, 0);
	delegate(tsp, "a", k, 1, 1, "models/*/*/*", false);
	json_t *asp = targets_part(1, NULL, 0);
	delegate(asp, "b", k, 1, 5, "models/*/*/*", false);
	repo_init(&r);
	publish(&r, "a", sign(asp, k, 1));
	assert_int_equal(lookup(&len, &r, sign(tsp, top, 1), PATH, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "threshold"));
	repo_cleanup(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_role_names),
		cmocka_unit_test(test_path_patterns),
		cmocka_unit_test(test_path_hash_prefixes),
		cmocka_unit_test(test_delegations_refused),
		cmocka_unit_test(test_threshold_two),
		cmocka_unit_test(test_terminating),
		cmocka_unit_test(test_terminating_deep),
		cmocka_unit_test(test_preorder),
		cmocka_unit_test(test_snapshot_and_rollback),
		cmocka_unit_test(test_cycle_and_bound),
		cmocka_unit_test(test_bad_child_delegations),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
