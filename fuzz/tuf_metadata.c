/* Fuzz target: TUF metadata as the agent receives it (lib/tufclient.c, lib/tuf.c), checked under
 * a fixed trusted root (tests/fixtures/tuf, made by python-securesystemslib). The input is one
 * metadata file; it is parsed, then run through every check the agent makes on metadata: each
 * role's signatures and thresholds under root 1 (and under a director root whose targets key is
 * the fixtures' k5), rollback against the trusted fixture, the root chain (as the next root, and as
 * the trusted root that root 2 must follow), expiry, the timestamp/snapshot/targets listings,
 * director-versus-image agreement and target hashes; the checks that follow the signature check
 * also run on the unverified input, as they would on metadata signed by a stolen key.
 *
 * Properties: whatever the input, nothing is accepted that the fixtures' keys did not sign. No
 * private key is at hand, so metadata that passes a signature check must be, value for value,
 * what python-securesystemslib signed (else two documents share a canonical form: a forgery),
 * and bytes that match a listed SHA-256 must be the listed file. */
#include <string.h>

#include "fuzz.h"
#include "json.h"
#include "tuf.h"
#include "tufclient.h"

/* 2027-01-15: every fixture is valid then (targets expire in 2030, roots in 2035). */
#define NOW 1800000000LL
#define MAX_TARGETS 64

static json_t *root1, *root2, *director_root, *timestamp, *snapshot, *targets, *director;
static char *snapshot_bytes, *targets_bytes;
static size_t snapshot_len, targets_len;
static const char model[] = "model bytes made by make_fixtures.py";

static json_t *load(const char *name, char **out_bytes, size_t *out_len)
{
	char rel[256];
	size_t len;
	json_t *env = NULL;
	gn_err err;
	snprintf(rel, sizeof(rel), "tests/fixtures/tuf/%s", name);
	char *bytes = fuzz_read_source(rel, &len);
	FUZZ_CHECK(gn_tufc_parse(&env, bytes, len, &err) == 0, "%s: %s", name, err.msg);
	if (out_bytes) {
		*out_bytes = bytes;
		*out_len = len;
	} else {
		free(bytes);
	}
	return env;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	root1 = load("1.root.json", NULL, NULL);
	root2 = load("2.root.json", NULL, NULL);
	timestamp = load("timestamp.json", NULL, NULL);
	snapshot = load("snapshot.json", &snapshot_bytes, &snapshot_len);
	targets = load("targets.json", &targets_bytes, &targets_len);
	director = load("director-targets.json", NULL, NULL);
	/* The director's own root: root 1 with k5 (which signed director-targets.json) as targets key. */
	char *kbytes = fuzz_read_source("tests/fixtures/tuf/keys.json", NULL);
	json_t *keys = json_loads(kbytes, 0, NULL);
	free(kbytes);
	const json_t *k5 = json_object_get(keys, "k5");
	const char *k5id = json_string_value(json_object_get(k5, "keyid"));
	director_root = json_deep_copy(root1);
	json_t *signed_part = json_object_get(director_root, "signed");
	json_object_set(json_object_get(signed_part, "keys"), k5id, json_object_get(k5, "key"));
	json_object_set_new(json_object_get(json_object_get(signed_part, "roles"), "targets"), "keyids",
			    json_pack("[s]", k5id));
	json_decref(keys);
	return 0;
}

/* The signed part of an envelope. */
static const json_t *sig(const json_t *env)
{
	return json_object_get(env, "signed");
}

/* env passed a signature check of role under root: it must be what the fixture's key signed. */
static void must_be(const json_t *env, const json_t *fixture, const char *what)
{
	FUZZ_CHECK(json_equal((json_t *)sig(env), (json_t *)sig(fixture)),
		   "%s accepted with a signed part the fixture's key never signed", what);
}

static void check_signatures(const json_t *env)
{
	static const char *const roles[] = {"root", "timestamp", "snapshot", "targets"};
	const json_t *fixtures[] = {root1, timestamp, snapshot, targets};
	gn_err err;
	for (size_t i = 0; i < GN_ARRAY_LEN(roles); i++) {
		/* Root 1's root keys signed root 1 and root 2 (the rotation needs both). */
		const json_t *fixture =
			i == 0 && json_equal((json_t *)sig(env), (json_t *)sig(root2)) ? root2 : fixtures[i];
		if (gn_tufc_check_role(root1, roles[i], env, NULL, NOW, &err) == 0)
			must_be(env, fixture, roles[i]);
		if (gn_tufc_check_role(root1, roles[i], env, fixtures[i], NOW, &err) == 0)
			must_be(env, fixture, roles[i]);
	}
	if (gn_tufc_check_role(director_root, "targets", env, director, NOW, &err) == 0)
		must_be(env, director, "director targets");
	/* As the root that follows root 1: only root 2 is signed by its keys. */
	if (gn_tufc_root_update(root1, env, &err) == 0)
		must_be(env, root2, "root 2");
	/* As the trusted root (its keys, roles and thresholds fuzzed) that root 2 must follow. */
	FUZZ_IGNORE(gn_tufc_root_update(env, root2, &err));
}

/* The checks that come after the signatures, on metadata nobody vouched for. */
static void check_listings(const json_t *env, const uint8_t *data, size_t size)
{
	gn_err err;
	FUZZ_IGNORE(gn_tufc_check_fresh(env, NOW, &err));
	/* env as a timestamp listing the fixture snapshot, and as a snapshot listing the targets. */
	FUZZ_IGNORE(gn_tufc_snapshot_matches(env, snapshot, snapshot_bytes, snapshot_len, &err));
	FUZZ_IGNORE(gn_tufc_meta_matches(env, "targets.json", targets, targets_bytes, targets_len, &err));
	FUZZ_IGNORE(gn_tufc_targets_matches(env, targets, &err));
	size_t cap = 1000;
	FUZZ_CHECK(gn_tufc_fetch_limit(env, "snapshot.json", cap) <= cap, "a fetch limit above its cap");
	/* The input as the snapshot the fixture timestamp lists (length and SHA-256). */
	if (gn_tufc_snapshot_matches(timestamp, env, (const char *)data, size, &err) == 0)
		FUZZ_CHECK(size == snapshot_len && memcmp(data, snapshot_bytes, size) == 0,
			   "bytes other than the listed snapshot match the timestamp's length and SHA-256");
}

static void check_targets(const json_t *env, const uint8_t *data, size_t size)
{
	const char *path;
	json_t *entry;
	gn_err err;
	size_t n = 0;
	const json_t *dentry = gn_tufc_target(director, "models/det/1.0.0/model.onnx");
	json_object_foreach(json_object_get(sig(env), "targets"), path, entry) {
		if (n++ == MAX_TARGETS)
			break;
		FUZZ_CHECK(gn_tufc_target(env, path) == entry, "target lookup by its own path");
		FUZZ_IGNORE(gn_tufc_director_target_ok(targets, path, entry, &err));
		FUZZ_IGNORE(gn_tufc_director_target_ok(env, path, entry, &err));
		FUZZ_IGNORE(gn_tufc_director_target_ok(env, path, dentry, &err));
		FUZZ_IGNORE(gn_tufc_target_bytes_ok(entry, path, model, strlen(model), &err));
		FUZZ_IGNORE(gn_tufc_target_bytes_ok(entry, path, data, size, &err));
	}
}

/* Key ids in a "keys" object: an accepted key is the SHA-256 of its own canonical form. */
static void check_keys(const json_t *env)
{
	const json_t *keys = json_object_get(sig(env), "keys");
	const char *id;
	json_t *key;
	size_t n = 0;
	json_object_foreach((json_t *)keys, id, key) {
		unsigned char pub[GN_ED25519_PUB_LEN];
		char again[GN_SHA256_HEX_LEN + 1];
		gn_err err;
		if (n++ == MAX_TARGETS)
			break;
		if (gn_tuf_key_public(pub, keys, id, &err) == 0)
			FUZZ_CHECK(gn_tuf_keyid(again, key, &err) == 0 && strcmp(again, id) == 0,
				   "key %s accepted under another id", id);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *env = NULL;
	gn_err err;
	if (gn_tufc_parse(&env, (const char *)data, size, &err))
		return 0;
	FUZZ_CHECK(json_is_object(sig(env)) && json_is_array(json_object_get(env, "signatures")) &&
			   json_is_string(json_object_get(sig(env), "_type")) &&
			   json_integer_value(json_object_get(sig(env), "version")) >= 1,
		   "gn_tufc_parse accepted metadata without its shape");
	check_signatures(env);
	check_listings(env, data, size);
	check_targets(env, data, size);
	check_keys(env);
	json_decref(env);
	return 0;
}
