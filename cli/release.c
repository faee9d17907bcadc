/* Releasing a model version in an image repository whose targets are offline (TUF delegations):
 * CI signs the next version of the delegated targets role that covers the version's path, with
 * Ed25519 keys it holds (--sign-key) and/or an external signer (--signer-cmd, for a KMS or HSM).
 * The server proposes the next version; before signing it, this checks (lib/tufrelease.c) that it
 * is exactly the current one plus the file just uploaded, at this push's path with the custom
 * fields built from this push's metadata, with the current version's delegations, a bounded expiry
 * and nothing else, and tries again when another release got in first. */
#include "release.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crypto.h"
#include "json.h"
#include "tuf.h"
#include "tufrelease.h"

/* Releases racing for the same role: each loser gets a new draft, this many times at most. */
#define RELEASE_TRIES 5
/* The most bytes a signer command may print. */
#define SIGNER_OUT_MAX 65536

struct cli_signers {
	gn_ed25519_key **keys;
	size_t nkeys;
	const char *cmd;
};

void cli_signers_free(struct cli_signers *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nkeys; i++)
		gn_ed25519_key_free(s->keys[i]);
	free(s->keys);
	free(s);
}

int cli_signers_load(struct cli_signers **out, const cli_args *args, gn_err *err)
{
	struct cli_signers *s = NULL;
	const char *path;
	*out = NULL;
	for (size_t i = 0; (path = cli_args_nth(args, "sign-key", i)); i++) {
		if (!s)
			s = gn_calloc(1, sizeof(*s));
		s->keys = gn_realloc(s->keys, (s->nkeys + 1) * sizeof(*s->keys));
		if (gn_ed25519_load(&s->keys[s->nkeys], path, err)) {
			cli_signers_free(s);
			return err->code = CLI_EUSAGE;
		}
		s->nkeys++;
	}
	if (cli_args_get(args, "signer-cmd")) {
		if (!s)
			s = gn_calloc(1, sizeof(*s));
		s->cmd = cli_args_get(args, "signer-cmd");
	}
	*out = s;
	return 0;
}

/* Adds the signer's public key (64 hex digits) to keys and ids, if it is the key of keyid. */
static int signer_key(json_t *keys, json_t *ids, const char *keyid, const char *public, gn_err *err)
{
	unsigned char pub[GN_ED25519_PUB_LEN];
	char id[GN_SHA256_HEX_LEN + 1];
	if (!public || strlen(public) != 2 * GN_ED25519_PUB_LEN || gn_hex_decode(pub, sizeof(pub), public))
		return gn_err_set(err, GN_ERROR,
				  "the signer command must print its Ed25519 public key with each signature "
				  "(\"public\": 64 hex digits), to check the role's current version with");
	json_t *k = gn_tuf_key_json(pub);
	int rc = gn_tuf_keyid(id, k, err);
	if (!rc && strcmp(id, keyid) != 0)
		rc = gn_err_set(err, GN_ERROR, "the signer command's public key is not that of its keyid %.64s", keyid);
	if (!rc && !json_object_get(keys, id)) {
		json_object_set(keys, id, k);
		json_array_append_new(ids, json_string(id));
	}
	json_decref(k);
	return rc;
}

/* Runs the signer command with msg on its standard input and appends the signatures it prints
 * (one {"keyid", "sig", "public"} object, or an array of them) to sigs, and their public keys to
 * keys and ids. */
static int run_signer(json_t *sigs, json_t *keys, json_t *ids, const char *cmd, const char *msg, size_t len,
		      gn_err *err)
{
	char tmpl[] = "/tmp/ganglion-release-XXXXXX";
	int fd = mkstemp(tmpl);
	FILE *in = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!in)
		return gn_err_set(err, GN_ERROR, "cannot create a temporary file for the signer");
	bool written = fwrite(msg, 1, len, in) == len;
	if (fclose(in) != 0 || !written) {
		unlink(tmpl);
		return gn_err_set(err, GN_ERROR, "cannot write the bytes to sign");
	}
	/* The command reads the canonical bytes on its standard input (a file, not a pipe: no
	 * deadlock however it reads). The name is mkstemp's: no character the shell would expand. */
	char *line = gn_asprintf("(%s) < %s", cmd, tmpl);
	FILE *p = popen(line, "r");
	free(line);
	if (!p) {
		unlink(tmpl);
		return gn_err_set(err, GN_ERROR, "cannot run the signer command");
	}
	char *buf = gn_malloc(SIGNER_OUT_MAX + 1);
	size_t n = fread(buf, 1, SIGNER_OUT_MAX + 1, p);
	int status = pclose(p);
	unlink(tmpl);
	json_t *j = n <= SIGNER_OUT_MAX ? json_loadb(buf, n, 0, NULL) : NULL;
	free(buf);
	int rc = 0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		rc = gn_err_set(err, GN_ERROR, "the signer command failed (status %d)", status);
	else if (!j || (!json_is_object(j) && !json_is_array(j)))
		rc = gn_err_set(err, GN_ERROR,
				"the signer command must print a signature {\"keyid\": ..., \"sig\": ...} or an array "
				"of them");
	if (!rc) {
		json_t *one = json_is_object(j) ? json_pack("[O]", j) : json_incref(j), *sig;
		size_t i;
		json_array_foreach(one, i, sig) {
			if (!gn_json_str(sig, "keyid") || !gn_json_str(sig, "sig")) {
				rc = gn_err_set(err, GN_ERROR,
						"the signer command printed a signature without keyid "
						"or sig");
				break;
			}
			if ((rc = signer_key(keys, ids, gn_json_str(sig, "keyid"), gn_json_str(sig, "public"), err)))
				break;
			json_array_append_new(sigs, json_pack("{s:s,s:s}", "keyid", gn_json_str(sig, "keyid"), "sig",
							      gn_json_str(sig, "sig")));
		}
		json_decref(one);
	}
	json_decref(j);
	return rc;
}

/* Checks that the role's current metadata in the draft (what the next version keeps) carries a
 * valid signature by one of the keys signing here (keys and ids: every --sign-key's and the
 * signer command's): a server cannot slip targets into it unseen. */
static int current_ours(const json_t *keys, const json_t *ids, const json_t *draft, gn_err *err)
{
	const json_t *cur = json_object_get(draft, "current");
	size_t valid = 0;
	int rc = 0;
	if (!json_is_object(cur)) /* a first release: gn_tufr_draft_check let it through only then */
		return 0;
	if (!(rc = gn_tuf_count_valid(&valid, cur, keys, ids, err)) && valid == 0)
		rc = gn_err_set(err, GN_ERROR,
				"the current version of role %s on the server carries no valid signature by the keys "
				"signing here: not signed (was it changed on the server?)",
				gn_json_str(draft, "role"));
	return rc;
}

/* Returns the envelope of the draft's signed part signed by every signer (new), and sets keys and
 * ids to the signers' public keys. Nothing is sent yet: the caller checks the draft's current
 * version with those keys first. */
static int sign_draft(json_t **out, json_t *keys, json_t *ids, const struct cli_signers *s, const json_t *sp,
		      gn_err *err)
{
	char *canon = NULL;
	size_t n = 0;
	json_t *env = NULL;
	int rc = gn_tuf_sign(&env, sp, s->keys, s->nkeys, err);
	for (size_t i = 0; !rc && i < s->nkeys; i++) {
		unsigned char pub[GN_ED25519_PUB_LEN];
		char id[GN_SHA256_HEX_LEN + 1];
		gn_ed25519_public(pub, s->keys[i]);
		json_t *k = gn_tuf_key_json(pub);
		if (!(rc = gn_tuf_keyid(id, k, err)) && !json_object_get(keys, id)) {
			json_object_set(keys, id, k);
			json_array_append_new(ids, json_string(id));
		}
		json_decref(k);
	}
	if (!rc && s->cmd && !(rc = gn_json_canonical(&canon, &n, sp, err)))
		rc = run_signer(json_object_get(env, "signatures"), keys, ids, s->cmd, canon, n, err);
	free(canon);
	if (rc) {
		json_decref(env);
		return rc;
	}
	*out = env;
	return 0;
}

int cli_release_sign(json_t **out, const cli_ctx *ctx, const struct cli_signers *s, const char *model,
		     const json_t *meta, const char *sha256, uint64_t len, bool first_release, gn_err *err)
{
	json_t *custom = NULL, *body = NULL;
	char *file = NULL, *want_path = NULL;
	int rc = gn_tufr_expected_custom(&custom, &file, model, meta, err);
	if (rc)
		return rc;
	const char *version = gn_json_str(custom, "version");
	want_path = gn_asprintf("models/%s/%s/%s", model, version, file);
	struct gn_tufr_expect want = {
		.path = want_path, .sha256 = sha256, .length = len, .custom = custom, .first_release = first_release};
	body = json_pack("{s:s,s:s}", "model", model, "version", version);
	rc = GN_ECONFLICT;
	for (int attempt = 0; attempt < RELEASE_TRIES && rc == GN_ECONFLICT; attempt++) {
		json_t *draft = NULL, *env = NULL, *ans = NULL, *keys = json_object(), *ids = json_array();
		char *path = NULL;
		want.now = gn_now();
		if (!(rc = cli_request(&draft, ctx, "POST", "/v1/tuf/image/release-draft", body, err)) &&
		    !(rc = gn_tufr_draft_check(draft, &want, err)) &&
		    !(rc = sign_draft(&env, keys, ids, s, json_object_get(draft, "signed"), err)) &&
		    !(rc = current_ours(keys, ids, draft, err))) {
			char *esc = gn_http_escape(gn_json_str(draft, "role"));
			path = gn_asprintf("/v1/tuf/image/roles/%s", esc);
			free(esc);
			rc = cli_request(&ans, ctx, "POST", path, env, err);
		}
		if (!rc)
			*out = json_incref(ans);
		free(path);
		json_decref(draft);
		json_decref(env);
		json_decref(ans);
		json_decref(keys);
		json_decref(ids);
	}
	json_decref(body);
	json_decref(custom);
	free(file);
	free(want_path);
	return rc;
}
