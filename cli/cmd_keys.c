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

static const char *const repos[] = {"image", "director"};

/* Root metadata is small; this only stops a wrong file from being read whole. */
#define METADATA_MAX ((size_t)16 * 1024 * 1024)

/* What `keys rotate` takes: the image repository's online roles, and the director's key. */
static const char *const rotate_roles[] = {"targets", "snapshot", "timestamp", "director"};

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
			err, CLI_EUSAGE, "role must be targets, snapshot, timestamp or director, not '%s'%s", role,
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
	const char *flag = strcmp(role, "director") == 0 ? " --repo director" : "";
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
	 "Replace the online key of targets, snapshot, timestamp (image repository) or director, under a new root.",
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
};

const cli_group cmd_keys_group = {"keys", "Manage the TUF signing keys (needs the admin scope).", cmds,
				  GN_ARRAY_LEN(cmds)};
