/* ganglion tokens: create, list and revoke API tokens for people and automation; list and rotate
 * the keys that sign device tokens. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#include "http_client.h"

static const output_col list_cols[] = {
	{"ID", "id", NULL},
	{"NAME", "name", NULL},
	{"SCOPES", "scopes", NULL},
	{"CREATED", "created_at", NULL},
	{"EXPIRES", "expires_at", NULL},
	{"LAST USED", "last_used_at", NULL},
	{"REVOKED", "revoked_at", NULL},
};

static const output_col created_fields[] = {
	{"ID", "id", NULL},
	{"Name", "name", NULL},
	{"Scopes", "scopes", NULL},
	{"Expires", "expires_at", NULL},
};

/* Adds the scopes of one --scope value, which may hold several separated by commas. */
static int add_scopes(json_t *scopes, const char *value, gn_err *err)
{
	const char *p = value;
	for (;;) {
		size_t len = strcspn(p, ",");
		if (len == 0)
			return gn_err_set(err, CLI_EUSAGE, "--scope '%s' has an empty scope", value);
		json_array_append_new(scopes, json_stringn(p, len));
		if (!p[len])
			return 0;
		p += len + 1;
	}
}

static int create_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	int error = 0;
	json_t *scopes = json_array(), *body = NULL, *tok = NULL;
	const char *name = cli_args_get(args, "name"), *expires = cli_args_get(args, "expires-in"), *scope;
	int64_t secs;

	if (!name) {
		error = gn_err_set(err, CLI_EUSAGE, "--name is required");
		goto out;
	}
	for (size_t i = 0; (scope = cli_args_nth(args, "scope", i)); i++)
		if ((error = add_scopes(scopes, scope, err)))
			goto out;
	if (json_array_size(scopes) == 0) {
		error = gn_err_set(err, CLI_EUSAGE, "at least one --scope is required (admin, operator, ci, read)");
		goto out;
	}
	body = json_pack("{s:s, s:O}", "name", name, "scopes", scopes);
	if (expires) {
		if ((error = cli_parse_duration(&secs, expires, "--expires-in", err)))
			goto out;
		json_object_set_new(body, "expires_in", json_integer(secs));
	}
	if ((error = cli_request(&tok, ctx, "POST", "/v1/tokens", body, err)))
		goto out;
	if (ctx->output == CLI_OUTPUT_JSON) {
		output_json(tok);
		goto out;
	}
	printf("API token created.\n\n");
	output_fields(tok, created_fields, GN_ARRAY_LEN(created_fields));
	output_secret("API token", json_string_value(json_object_get(tok, "token")),
		      "Use it with --token, GANGLION_TOKEN, or `token = ...` in the config file.");
out:
	json_decref(scopes);
	json_decref(body);
	json_decref(tok);
	return error;
}

static int list_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	return cli_list_print(ctx, "/v1/tokens", list_cols, GN_ARRAY_LEN(list_cols), err);
}

static int revoke_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	int error = 0;
	json_t *ans = NULL;
	char *esc = gn_http_escape(args->pos[0]);
	char *path = gn_asprintf("/v1/tokens/%s", esc);

	if ((error = cli_request(&ans, ctx, "DELETE", path, NULL, err))) {
		error = cli_err_about(err, "%s '%s'", "API token", args->pos[0]);
		goto out;
	}
	/* 204 has no body; with -o json print nothing and let the exit code speak. */
	if (ctx->output == CLI_OUTPUT_TABLE)
		printf("API token %s revoked\n", args->pos[0]);
out:
	json_decref(ans);
	free(path);
	free(esc);
	return error;
}

static const output_col key_cols[] = {
	{"ID", "id", NULL},
	{"STATE", "state", NULL},
	{"CREATED", "created_at", NULL},
	{"VERIFY UNTIL", "verify_until", NULL},
	{"RETIRED", "retired_at", NULL},
};

static int device_keys_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	return cli_list_print(ctx, "/v1/device-token-keys", key_cols, GN_ARRAY_LEN(key_cols), err);
}

static int rotate_device_key_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	json_t *out = NULL, *k;
	bool retire = cli_args_get(args, "retire-previous") != NULL;
	json_t *body = json_pack("{s:b}", "retire_previous", retire);
	size_t i;
	int error = cli_request(&out, ctx, "POST", "/v1/device-token-keys/rotate", body, err);
	json_decref(body);
	if (error)
		return error;
	if (ctx->output == CLI_OUTPUT_JSON) {
		output_json(out);
		json_decref(out);
		return 0;
	}
	printf("Device token key %lld signs from now on, on every replica.\n",
	       (long long)json_integer_value(json_object_get(out, "key_id")));
	if (retire)
		printf("The keys before it are retired: every token they signed is refused now, and agents "
		       "authenticate again with their enrolled keys.\n");
	json_array_foreach(json_object_get(out, "keys"), i, k) {
		const char *state = json_string_value(json_object_get(k, "state"));
		if (state && strcmp(state, "verifying") == 0)
			printf("Key %lld still verifies the tokens it signed until %s; agents move to the new key as "
			       "they renew.\n",
			       (long long)json_integer_value(json_object_get(k, "id")),
			       json_string_value(json_object_get(k, "verify_until")));
	}
	printf("\n");
	output_table(json_object_get(out, "keys"), key_cols, GN_ARRAY_LEN(key_cols));
	json_decref(out);
	return 0;
}

static const cli_opt rotate_device_key_opts[] = {
	{"retire-previous", 0, NULL,
	 "refuse every token the previous keys signed at once (a key that may have leaked); agents authenticate "
	 "again"},
};

static const cli_opt create_opts[] = {
	{"name", 0, "NAME", "what the token is for, 1 to 64 characters (required)"},
	{"scope", 0, "SCOPE", "admin, operator, ci or read; repeatable or comma-separated (required)"},
	{"expires-in", 0, "DURATION", "lifetime: 3600, 90s, 30m, 1h, 7d, 2w (default: never expires)"},
};

static const cli_cmd cmds[] = {
	{"create", "", "Create an API token and print it (shown only once).", create_opts, GN_ARRAY_LEN(create_opts), 0,
	 0, create_run},
	{"list", "", "List API tokens (never the secrets).", NULL, 0, 0, 0, list_run},
	{"revoke", "ID", "Revoke an API token at once.", NULL, 0, 1, 1, revoke_run},
	{"device-keys", "", "List the keys that sign device tokens (never their secrets).", NULL, 0, 0, 0,
	 device_keys_run},
	{"rotate-device-key", "",
	 "Make a new key sign device tokens on every replica; the previous ones verify until their tokens expire.",
	 rotate_device_key_opts, GN_ARRAY_LEN(rotate_device_key_opts), 0, 0, rotate_device_key_run},
};

const cli_group cmd_tokens_group = {"tokens", "Manage API tokens and the device token keys (needs the admin scope).",
				    cmds, GN_ARRAY_LEN(cmds)};
