/* ganglion keys: the TUF signing keys of the image repository and of the director. Online keys
 * are listed and rotated on the server; root fetches the root metadata an agent pins; a new root is signed offline when
 * the root keys are not on the server: export-root fetches an unsigned draft, sign-root signs it on a machine that
 * holds a root key (no server needed), import-root uploads it. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "http_client.h"
#include "json.h"
#include "tuf.h"
#include "tufdeleg.h"

static const char *const repos[] = {"image", "director"};

/* Root metadata is small; this only stops a wrong file from being read whole. */
#define METADATA_MAX ((size_t)16 * 1024 * 1024)

/* What `keys rotate` takes: the image repository's online roles, and the director's (director is
 * its targets key). */
static const char *const rotate_roles[] = {"targets",  "snapshot",          "timestamp",
					   "director", "director-snapshot", "director-timestamp"};

static const output_col list_cols[] = {
	{"REPO", "repo", NULL},     {"ROLE", "role", NULL},     {"KEYID", "keyid", NULL},
	{"ACTIVE", "active", NULL}, {"ONLINE", "online", NULL}, {"CREATED", "created_at", NULL},
};

static const output_col rotated_fields[] = {
	{"Role", "role", NULL},
	{"Key id", "keyid", NULL},
	{"Root version", "root_version", NULL},
};

static int list_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	int error = 0;
	json_t *ans = NULL, *threshold = NULL, *item;
	size_t i;

	if ((error = cli_request(&ans, ctx, "GET", "/v1/keys", NULL, err)))
		goto out;
	if (ctx->output == CLI_OUTPUT_JSON) {
		output_json(ans);
		goto out;
	}
	output_table(json_object_get(ans, "items"), list_cols, GN_ARRAY_LEN(list_cols));
	json_array_foreach(json_object_get(ans, "items"), i, item) {
		const char *repo = gn_json_str(item, "repo"), *role = gn_json_str(item, "role");
		if (repo && role && strcmp(repo, "image") == 0 && strcmp(role, "targets") == 0 &&
		    json_is_true(json_object_get(item, "online"))) {
			/* On stderr: loud, and the table on stdout stays parseable. */
			fprintf(stderr,
				"WARNING: the image targets key is held by this server (server-held mode): whoever "
				"holds its\ndatabase can release new model bytes. Take it offline and let CI sign "
				"releases:\n'ganglion keys delegate' (docs/OPERATIONS.md, \"Key ceremony\").\n");
			break;
		}
	}
	/* Each repository's root threshold is in its root rows (the first one says it). */
	for (size_t r = 0; r < GN_ARRAY_LEN(repos); r++) {
		threshold = NULL;
		json_array_foreach(json_object_get(ans, "items"), i, item) {
			const char *repo = gn_json_str(item, "repo"), *role = gn_json_str(item, "role");
			if (!threshold && role && strcmp(role, "root") == 0 &&
			    strcmp(repo ? repo : "image", repos[r]) == 0)
				threshold = json_object_get(item, "threshold");
		}
		if (json_is_integer(threshold))
			printf("%s%s root threshold: %lld\n", r ? "" : "\n", repos[r],
			       (long long)json_integer_value(threshold));
	}
out:
	json_decref(ans);
	return error;
}

static int rotate_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	int error = 0;
	const char *role = args->pos[0];
	json_t *body = NULL, *ans = NULL;
	bool known = false;

	for (size_t i = 0; i < GN_ARRAY_LEN(rotate_roles); i++)
		known = known || strcmp(role, rotate_roles[i]) == 0;
	if (!known) {
		error = gn_err_set(
			err, CLI_EUSAGE,
			"role must be targets, snapshot, timestamp, director, director-snapshot or director-timestamp, "
			"not '%s'%s",
			role,
			strcmp(role, "root") == 0
				? " (root keys are rotated offline: keys export-root, sign-root, import-root)"
				: "");
		goto out;
	}
	body = json_pack("{s:s}", "role", role);
	if ((error = cli_request(&ans, ctx, "POST", "/v1/keys/rotate", body, err)))
		goto out;
	if (ctx->output == CLI_OUTPUT_JSON) {
		output_json(ans);
		goto out;
	}
	const char *flag = strncmp(role, "director", 8) == 0 ? " --repo director" : "";
	if (json_is_true(json_object_get(ans, "pending"))) {
		/* The root keys are offline: the new key waits for a root signed elsewhere. */
		printf("New %s key %s is pending.\n%s:\n  ganglion keys export-root%s -O draft.json\n"
		       "  ganglion keys sign-root --key ROOT.pem draft.json -O signed.json   (where the root key is)\n"
		       "  ganglion keys import-root%s signed.json\n",
		       gn_json_str(ans, "role"), gn_json_str(ans, "keyid"),
		       "The root keys are offline; to make it sign, list it in a new root", flag, flag);
		goto out;
	}
	printf("%s\n\n", *flag ? "Key rotated under a new director root; each device's targets are signed anew at its "
				 "next check-in."
			       : "Key rotated; the repository metadata is re-signed.");
	output_fields(ans, rotated_fields, GN_ARRAY_LEN(rotated_fields));
out:
	json_decref(body);
	json_decref(ans);
	return error;
}

/* Reads --repo (image when absent) into *out; CLI_EUSAGE for another name. */
static int repo_arg(const char **out, const cli_args *args, gn_err *err)
{
	const char *repo = cli_args_get(args, "repo");
	*out = repo ? repo : "image";
	for (size_t i = 0; i < GN_ARRAY_LEN(repos); i++)
		if (strcmp(*out, repos[i]) == 0)
			return 0;
	return gn_err_set(err, CLI_EUSAGE, "--repo must be image or director, not '%s'", *out);
}

static long long root_version(const json_t *env)
{
	return (long long)json_integer_value(json_object_get(json_object_get(env, "signed"), "version"));
}

static int export_root_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	int error = 0;
	const char *out_path = cli_args_get(args, "out"), *repo = NULL;
	char path[64];
	json_t *draft = NULL;

	if ((error = repo_arg(&repo, args, err)))
		goto out;
	snprintf(path, sizeof(path), "/v1/tuf/%s/root/draft", repo);
	if ((error = cli_request(&draft, ctx, "GET", path, NULL, err)))
		goto out;
	if (!json_is_object(draft) || !json_is_object(json_object_get(draft, "signed"))) {
		error = gn_err_set(err, GN_ERROR, "the server's root draft has no \"signed\" object");
		goto out;
	}
	if ((error = cli_write_json(out_path, draft, err)))
		goto out;
	if (out_path && ctx->output == CLI_OUTPUT_TABLE)
		printf("unsigned %s root version %lld written to %s\n"
		       "sign it offline: ganglion keys sign-root --key ROOT-KEY.pem %s -O %s\n",
		       repo, root_version(draft), out_path, out_path, out_path);
out:
	json_decref(draft);
	return error;
}

static int root_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	int error = 0;
	const char *out_path = cli_args_get(args, "out"), *repo = NULL;
	char path[64];
	json_t *root = NULL;
	const json_t *sig_part;

	if ((error = repo_arg(&repo, args, err)))
		goto out;
	snprintf(path, sizeof(path), "/v1/tuf/%s/root.json", repo);
	if ((error = cli_request(&root, ctx, "GET", path, NULL, err)))
		goto out;
	sig_part = json_object_get(root, "signed");
	if (!json_is_object(sig_part) || !json_is_string(json_object_get(sig_part, "_type")) ||
	    strcmp(gn_json_str(sig_part, "_type"), "root") != 0 ||
	    !json_is_array(json_object_get(root, "signatures"))) {
		error = gn_err_set(err, GN_ERROR, "GET %s: the answer is not signed root metadata", path);
		goto out;
	}
	/* The server's bytes as JSON; the agent canonicalises before it checks the signatures. */
	if ((error = cli_write_json(out_path, root, err)))
		goto out;
	if (out_path && ctx->output == CLI_OUTPUT_TABLE)
		printf("%s root version %lld written to %s; compare its root keys with 'ganglion keys list' before a "
		       "device trusts it\n",
		       repo, root_version(root), out_path);
out:
	json_decref(root);
	return error;
}

/* Loads a root metadata file and checks its shape: {"signed": {"_type": "root", ...},
 * "signatures": [...]}; signatures may be missing (an empty array is put there). */
static int load_root(json_t **out, const char *path, gn_err *err)
{
	int error = 0;
	json_t *env = NULL, *sigs;
	const json_t *sig_part;

	if ((error = cli_read_json_file(&env, path, METADATA_MAX, err)))
		goto out;
	sig_part = json_object_get(env, "signed");
	if (!json_is_object(env) || !json_is_object(sig_part)) {
		error = gn_err_set(err, CLI_EUSAGE, "%s is not TUF metadata: no \"signed\" object", path);
		goto out;
	}
	if (!json_is_string(json_object_get(sig_part, "_type")) ||
	    strcmp(gn_json_str(sig_part, "_type"), "root") != 0) {
		error = gn_err_set(err, CLI_EUSAGE, "%s is not root metadata (\"_type\" is not \"root\")", path);
		goto out;
	}
	if (!json_is_integer(json_object_get(sig_part, "version"))) {
		error = gn_err_set(err, CLI_EUSAGE, "%s: \"signed\" has no integer \"version\"", path);
		goto out;
	}
	sigs = json_object_get(env, "signatures");
	if (!sigs) {
		json_object_set_new(env, "signatures", json_array());
	} else if (!json_is_array(sigs)) {
		error = gn_err_set(err, CLI_EUSAGE, "%s: \"signatures\" must be an array", path);
		goto out;
	}
	*out = env;
	env = NULL;
out:
	json_decref(env);
	return error;
}

/* Returns whether the JSON array arr holds the string s. */
static bool array_has(const json_t *arr, const char *s)
{
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v) {
		if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
			return true;
	}
	return false;
}

/* Writes to f how far env is from the threshold of the root keys it names itself. */
static void report_threshold(FILE *f, const json_t *env, const char *keyid)
{
	const json_t *sig_part = json_object_get(env, "signed");
	const json_t *root_role = json_object_get(json_object_get(sig_part, "roles"), "root");
	const json_t *keyids = json_object_get(root_role, "keyids");
	const json_t *threshold = json_object_get(root_role, "threshold");
	size_t valid = 0;
	gn_err ignored = {0};

	if (!json_is_array(keyids) || !json_is_integer(threshold))
		return;
	if (!array_has(keyids, keyid))
		fprintf(f,
			"note: key %s is not a root key of this version; its signature counts only "
			"towards the current root's threshold\n",
			keyid);
	if (gn_tuf_count_valid(&valid, env, json_object_get(sig_part, "keys"), keyids, &ignored) == 0)
		fprintf(f,
			"valid signatures by this version's root keys: %zu of the %lld needed (a new root "
			"needs a threshold of the current root's keys too)\n",
			valid, (long long)json_integer_value(threshold));
}

static int sign_root_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	int error = 0;
	const char *key_path = cli_args_get(args, "key"), *out_path = cli_args_get(args, "out");
	const char *draft_path = args->pos[0];
	gn_ed25519_key *key = NULL;
	json_t *env = NULL, *key_json = NULL, *sigs = NULL, *old, *s;
	char *canon = NULL, keyid[GN_SHA256_HEX_LEN + 1], sighex[2 * GN_ED25519_SIG_LEN + 1];
	unsigned char pub[GN_ED25519_PUB_LEN], sig[GN_ED25519_SIG_LEN];
	size_t canon_len = 0, i;

	if (!key_path) {
		error = gn_err_set(err, CLI_EUSAGE, "--key is required");
		goto out;
	}
	/* Wrong or missing local files are usage errors, not a 404 from a server. */
	if ((error = gn_ed25519_load(&key, key_path, err))) {
		err->code = error = CLI_EUSAGE;
		goto out;
	}
	if ((error = load_root(&env, draft_path, err)))
		goto out;
	if ((error = gn_json_canonical(&canon, &canon_len, json_object_get(env, "signed"), err))) {
		char why[sizeof(err->msg)];
		snprintf(why, sizeof(why), "%s", err->msg);
		error = gn_err_set(err, CLI_EUSAGE, "%s: cannot sign \"signed\": %s", draft_path, why);
		goto out;
	}
	gn_ed25519_public(pub, key);
	key_json = gn_tuf_key_json(pub);
	if ((error = gn_tuf_keyid(keyid, key_json, err)) || (error = gn_ed25519_sign(sig, key, canon, canon_len, err)))
		goto out;
	gn_hex_encode(sighex, sig, sizeof(sig));

	/* Keep the other signatures; signing again with the same key replaces its signature. */
	sigs = json_array();
	json_array_foreach(json_object_get(env, "signatures"), i, old) {
		s = json_object_get(old, "keyid");
		if (!json_is_string(s) || strcmp(json_string_value(s), keyid) != 0)
			json_array_append(sigs, old);
	}
	json_array_append_new(sigs, json_pack("{s:s,s:s}", "keyid", keyid, "sig", sighex));
	json_object_set(env, "signatures", sigs);

	if ((error = cli_write_json(out_path, env, err)))
		goto out;
	if (out_path && ctx->output == CLI_OUTPUT_TABLE) {
		printf("root version %lld signed with key %s; written to %s\n", root_version(env), keyid, out_path);
		report_threshold(stdout, env, keyid);
	} else {
		/* stdout holds the document; the summary goes beside it. */
		report_threshold(stderr, env, keyid);
	}
out:
	gn_ed25519_key_free(key);
	json_decref(env);
	json_decref(key_json);
	json_decref(sigs);
	free(canon);
	return error;
}

static int import_root_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	int error = 0;
	json_t *env = NULL, *ans = NULL;
	const char *repo = NULL;
	char path[64];

	if ((error = repo_arg(&repo, args, err)) || (error = load_root(&env, args->pos[0], err)))
		goto out;
	if (json_array_size(json_object_get(env, "signatures")) == 0) {
		error = gn_err_set(err, CLI_EUSAGE, "%s has no signatures; sign it first with keys sign-root",
				   args->pos[0]);
		goto out;
	}
	snprintf(path, sizeof(path), "/v1/tuf/%s/root", repo);
	if ((error = cli_request(&ans, ctx, "POST", path, env, err)))
		goto out;
	if (ctx->output == CLI_OUTPUT_JSON) {
		if (ans)
			output_json(ans);
		goto out;
	}
	printf("%s root version %lld imported\n", repo, root_version(env));
out:
	json_decref(env);
	json_decref(ans);
	return error;
}

/* --- delegate: the top-level targets offline, delegating model paths to CI's keys ------------- */

/* Reads the public half of a CI key from path: an Ed25519 private key (PEM), or a file holding the
 * 64 hex digits of the public key (what CI hands over). */
static int load_public(unsigned char out[GN_ED25519_PUB_LEN], const char *path, gn_err *err)
{
	gn_ed25519_key *key = NULL;
	char buf[256];
	gn_err why;
	if (gn_ed25519_load(&key, path, &why) == 0) {
		gn_ed25519_public(out, key);
		gn_ed25519_key_free(key);
		return 0;
	}
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
	if (f)
		fclose(f);
	buf[n] = '\0';
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	if (n != 2 * GN_ED25519_PUB_LEN || gn_hex_decode(out, GN_ED25519_PUB_LEN, buf))
		return gn_err_set(err, CLI_EUSAGE,
				  "%s is neither an Ed25519 private key (PEM) nor 64 hex digits of a public key", path);
	return 0;
}

/* Adds key (taken) to the "keys" object keys under its key id, appending the id to ids. */
static int add_key(json_t *keys, json_t *ids, json_t *key, gn_err *err)
{
	char id[GN_SHA256_HEX_LEN + 1];
	int rc = gn_tuf_keyid(id, key, err);
	if (!rc) {
		json_object_set(keys, id, key);
		json_array_append_new(ids, json_string(id));
	}
	json_decref(key);
	return rc;
}

/* Makes the image root list targets_key as its targets role's only key, unless it does already:
 * the server's draft of the next root, with that change, signed by the --root-key keys. */
static int root_lists_key(const cli_ctx *ctx, const cli_args *args, const char *targets_id, json_t *targets_key,
			  gn_err *err)
{
	json_t *root = NULL, *draft = NULL, *env = NULL, *ans = NULL, *ids = json_array();
	gn_ed25519_key **keys = NULL;
	size_t nkeys = 0;
	const char *path;
	int error = cli_request(&root, ctx, "GET", "/v1/tuf/image/root.json", NULL, err);
	json_t *now = json_object_get(json_object_get(json_object_get(root, "signed"), "roles"), "targets");
	json_array_append_new(ids, json_string(targets_id));
	if (error || json_equal(json_object_get(now, "keyids"), ids))
		goto out;
	for (size_t i = 0; (path = cli_args_nth(args, "root-key", i)); i++) {
		keys = gn_realloc(keys, (nkeys + 1) * sizeof(*keys));
		if ((error = gn_ed25519_load(&keys[nkeys], path, err))) {
			err->code = error = CLI_EUSAGE;
			goto out;
		}
		nkeys++;
	}
	if (!nkeys) {
		error = gn_err_set(
			err, CLI_EUSAGE,
			"the image root does not list this targets key yet: give --root-key for a threshold of "
			"its root keys");
		goto out;
	}
	if ((error = cli_request(&draft, ctx, "GET", "/v1/tuf/image/root/draft", NULL, err)))
		goto out;
	json_t *sp = json_object_get(draft, "signed");
	json_object_set(json_object_get(sp, "keys"), targets_id, targets_key);
	json_object_set_new(json_object_get(sp, "roles"), "targets",
			    json_pack("{s:O,s:i}", "keyids", ids, "threshold", 1));
	/* Drop the keys no role lists any more (the server's targets key). */
	const char *kid, *rname;
	json_t *k, *r, *tmp;
	json_object_foreach_safe(json_object_get(sp, "keys"), tmp, kid, k) {
		bool used = false;
		json_object_foreach(json_object_get(sp, "roles"), rname, r) {
			size_t i;
			json_t *v;
			json_array_foreach(json_object_get(r, "keyids"), i, v)
				used = used || strcmp(json_string_value(v), kid) == 0;
		}
		if (!used)
			json_object_del(json_object_get(sp, "keys"), kid);
	}
	if (!(error = gn_tuf_sign(&env, sp, keys, nkeys, err)))
		error = cli_request(&ans, ctx, "POST", "/v1/tuf/image/root?offline_targets=true", env, err);
	if (!error && ctx->output == CLI_OUTPUT_TABLE)
		printf("image root version %lld lists the offline targets key %s\n",
		       (long long)json_integer_value(json_object_get(sp, "version")), targets_id);
out:
	for (size_t i = 0; i < nkeys; i++)
		gn_ed25519_key_free(keys[i]);
	free(keys);
	json_decref(root);
	json_decref(draft);
	json_decref(env);
	json_decref(ans);
	json_decref(ids);
	return error;
}

/* The top-level targets that delegate the --path patterns to the CI keys (new signed part): one
 * version after current, listing what current lists. */
static int delegating_targets(json_t **out, const cli_args *args, const json_t *current, int64_t lifetime, gn_err *err)
{
	json_t *keys = json_object(), *ids = json_array(), *paths = json_array();
	const char *v;
	int64_t threshold = 1;
	int error = 0;
	char exp[21];
	const char *role = cli_args_get(args, "role") ? cli_args_get(args, "role") : "ci";
	if (cli_args_get(args, "threshold") &&
	    (error = cli_parse_int(&threshold, cli_args_get(args, "threshold"), "--threshold", 1, 100, err)))
		goto out;
	for (size_t i = 0; !error && (v = cli_args_nth(args, "ci-key", i)); i++) {
		unsigned char pub[GN_ED25519_PUB_LEN];
		if (!(error = load_public(pub, v, err)))
			error = add_key(keys, ids, gn_tuf_key_json(pub), err);
	}
	for (size_t i = 0; !error && (v = cli_args_nth(args, "path", i)); i++)
		json_array_append_new(paths, json_string(v));
	if (!error && json_array_size(paths) == 0)
		json_array_append_new(paths, json_string("models/*/*/*"));
	if (!error && (json_array_size(ids) == 0 || (size_t)threshold > json_array_size(ids)))
		error = gn_err_set(err, CLI_EUSAGE, "give at least --threshold (%lld) --ci-key files",
				   (long long)threshold);
	if (error)
		goto out;
	gn_tuf_time(exp, gn_now() + lifetime);
	const json_t *cs = json_object_get(current, "signed");
	json_t *targets = json_is_object(json_object_get(cs, "targets")) ? json_incref(json_object_get(cs, "targets"))
									 : json_object();
	json_t *sp =
		json_pack("{s:s,s:s,s:I,s:s,s:o,s:{s:O,s:[{s:s,s:O,s:I,s:O,s:b}]}}", "_type", "targets", "spec_version",
			  "1.0.0", "version", json_integer_value(json_object_get(cs, "version")) + 1, "expires", exp,
			  "targets", targets, "delegations", "keys", keys, "roles", "name", role, "keyids", ids,
			  "threshold", (json_int_t)threshold, "paths", paths, "terminating", 1);
	if (gn_tufd_delegations_check(sp, err)) {
		json_decref(sp);
		error = err->code = CLI_EUSAGE;
		goto out;
	}
	*out = sp;
out:
	json_decref(keys);
	json_decref(ids);
	json_decref(paths);
	return error;
}

static int delegate_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	const char *tk_path = cli_args_get(args, "targets-key");
	gn_ed25519_key *tk = NULL;
	json_t *tkey = NULL, *current = NULL, *sp = NULL, *env = NULL, *ans = NULL;
	unsigned char pub[GN_ED25519_PUB_LEN];
	char tid[GN_SHA256_HEX_LEN + 1];
	int64_t lifetime = 365 * 86400;
	int error = 0;
	if (!tk_path) {
		error = gn_err_set(err, CLI_EUSAGE, "--targets-key is required");
		goto out;
	}
	if (cli_args_get(args, "expires") &&
	    (error = cli_parse_duration(&lifetime, cli_args_get(args, "expires"), "--expires", err)))
		goto out;
	if ((error = gn_ed25519_load(&tk, tk_path, err))) {
		err->code = error = CLI_EUSAGE;
		goto out;
	}
	gn_ed25519_public(pub, tk);
	tkey = gn_tuf_key_json(pub);
	/* Every local argument is checked before the root changes: no half-done ceremony for a typo. */
	if ((error = gn_tuf_keyid(tid, tkey, err)) || (error = delegating_targets(&sp, args, NULL, lifetime, err)))
		goto out;
	json_decref(sp);
	sp = NULL;
	if ((error = root_lists_key(ctx, args, tid, tkey, err)) ||
	    (error = cli_request(&current, ctx, "GET", "/v1/tuf/image/targets.json", NULL, err)) ||
	    (error = delegating_targets(&sp, args, current, lifetime, err)) ||
	    (error = gn_tuf_sign(&env, sp, &tk, 1, err)) ||
	    (error = cli_request(&ans, ctx, "POST", "/v1/tuf/image/targets", env, err)))
		goto out;
	const json_t *role = json_array_get(json_object_get(json_object_get(sp, "delegations"), "roles"), 0);
	if (ctx->output == CLI_OUTPUT_JSON)
		output_json(ans);
	else
		printf("image targets version %lld signed offline: role %s signs %s with %lld of %zu CI key(s)\n",
		       (long long)json_integer_value(json_object_get(ans, "version")), gn_json_str(role, "name"),
		       json_string_value(json_array_get(json_object_get(role, "paths"), 0)),
		       (long long)json_integer_value(json_object_get(role, "threshold")),
		       json_array_size(json_object_get(role, "keyids")));
out:
	gn_ed25519_key_free(tk);
	json_decref(tkey);
	json_decref(current);
	json_decref(sp);
	json_decref(env);
	json_decref(ans);
	return error;
}

static const cli_opt delegate_opts[] = {
	{"targets-key", 0, "KEY.pem", "the offline top-level targets key (Ed25519, PEM) that signs here (required)"},
	{"ci-key", 0, "FILE", "a CI key: its private key (PEM) or its 64-hex public key; repeat (required)"},
	{"threshold", 0, "N", "CI signatures a release needs (default 1)"},
	{"role", 0, "NAME", "the delegated role's name (default ci)"},
	{"path", 0, "PATTERN", "target paths delegated, '*' not crossing '/' (default models/*/*/*); repeat"},
	{"root-key", 0, "KEY.pem", "a root key, to sign the root that lists the targets key when it does not yet"},
	{"expires", 0, "DURATION", "lifetime of the top-level targets (default 365d)"},
};

/* -O writes a file, as curl's and wget's do; -o stays the output format, as everywhere else. */
static const cli_opt export_opts[] = {
	{"out", 'O', "FILE", "write the draft to FILE instead of stdout"},
	{"repo", 0, "REPO", "image (the default) or director: whose root"},
};

static const cli_opt root_opts[] = {
	{"out", 'O', "FILE", "write it to FILE (atomically) instead of stdout"},
	{"repo", 0, "REPO", "image (the default) or director: whose root"},
};

static const cli_opt import_opts[] = {
	{"repo", 0, "REPO", "image (the default) or director: whose root"},
};

static const cli_opt sign_opts[] = {
	{"key", 0, "KEY.pem", "Ed25519 private key (PEM) of a root key holder (required)"},
	{"out", 'O', "OUT", "write the signed root to OUT (may be DRAFT itself) instead of stdout"},
};

static const cli_cmd cmds[] = {
	{"list", "", "List the signing keys of the image repository and the director by role.", NULL, 0, 0, 0,
	 list_run},
	{"rotate", "ROLE",
	 "Replace the online key of targets, snapshot, timestamp (image repository) or director, director-snapshot, "
	 "director-timestamp (the director's targets, snapshot, timestamp), under a new root.",
	 NULL, 0, 1, 1, rotate_run},
	{"root", "",
	 "Fetch the repository's current root metadata, as an agent pins it at enrollment (ganglion-agent enroll "
	 "--trusted-root / --trusted-director-root).",
	 root_opts, GN_ARRAY_LEN(root_opts), 0, 0, root_run},
	{"export-root", "", "Fetch the unsigned draft of the next root version, to sign offline.", export_opts,
	 GN_ARRAY_LEN(export_opts), 0, 0, export_root_run},
	{"sign-root", "DRAFT.json",
	 "Sign a root draft with a root key, offline; an earlier signature by the same key is replaced.", sign_opts,
	 GN_ARRAY_LEN(sign_opts), 1, 1, sign_root_run},
	{"import-root", "SIGNED.json", "Upload a signed root: it becomes the new root version.", import_opts,
	 GN_ARRAY_LEN(import_opts), 1, 1, import_root_run},
	{"delegate", "",
	 "Take the image repository's top-level targets offline: sign, with the offline targets key, targets "
	 "that delegate model paths to CI's keys (and first a root listing that key, with --root-key). From "
	 "then on CI signs each release (models push --sign-key) and the server signs only snapshot and "
	 "timestamp.",
	 delegate_opts, GN_ARRAY_LEN(delegate_opts), 0, 0, delegate_run},
};

const cli_group cmd_keys_group = {"keys", "Manage the TUF signing keys (needs the admin scope).", cmds,
				  GN_ARRAY_LEN(cmds)};
