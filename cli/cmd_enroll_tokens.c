/* ganglion enroll-tokens: create, list and revoke the tokens devices enroll with. */
#include "cli.h"

#include <stdlib.h>

#include "http_client.h"

static char *uses_format(const json_t *row)
{
	return gn_asprintf("%lld/%lld", (long long)json_integer_value(json_object_get(row, "uses")),
			   (long long)json_integer_value(json_object_get(row, "max_uses")));
}

static const output_col list_cols[] = {
	{"ID", "id", NULL},
	{"NAME", "name", NULL},
	{"LABELS", "labels", NULL},
	{"USES", NULL, uses_format},
	{"EXPIRES", "expires_at", NULL},
	{"REVOKED", "revoked_at", NULL},
	{"CREATED", "created_at", NULL},
};

static const output_col created_fields[] = {
	{"ID", "id", NULL},
	{"Name", "name", NULL},
	{"Labels", "labels", NULL},
	{"Max uses", "max_uses", NULL},
	{"Expires", "expires_at", NULL},
};

static int create_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	int error = 0;
	json_t *body = json_object(), *labels = json_object(), *tok = NULL;
	const char *name = cli_args_get(args, "name"), *expires = cli_args_get(args, "expires-in");
	const char *max_uses = cli_args_get(args, "max-uses"), *label;
	int64_t n;

	if (name)
		json_object_set_new(body, "name", json_string(name));
	for (size_t i = 0; (label = cli_args_nth(args, "label", i)); i++)
		if ((error = cli_label_add(labels, label, false, err)))
			goto out;
	if (json_object_size(labels))
		json_object_set(body, "labels", labels);
	if (expires) {
		if ((error = cli_parse_duration(&n, expires, "--expires-in", err)))
			goto out;
		json_object_set_new(body, "expires_in", json_integer(n));
	}
	if (max_uses) {
		if ((error = cli_parse_int(&n, max_uses, "--max-uses", 1, 1000000, err)))
			goto out;
		json_object_set_new(body, "max_uses", json_integer(n));
	}
	if ((error = cli_request(&tok, ctx, "POST", "/v1/enroll-tokens", body, err)))
		goto out;
	if (ctx->output == CLI_OUTPUT_JSON) {
		output_json(tok);
		goto out;
	}
	printf("Enrollment token created.\n\n");
	output_fields(tok, created_fields, GN_ARRAY_LEN(created_fields));
	output_secret("enrollment token", json_string_value(json_object_get(tok, "token")),
		      "Give it to the agent on each device that should enroll with it.");
out:
	json_decref(body);
	json_decref(labels);
	json_decref(tok);
	return error;
}

static int list_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	return cli_list_print(ctx, "/v1/enroll-tokens", list_cols, GN_ARRAY_LEN(list_cols), err);
}

static int revoke_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	int error = 0;
	json_t *ans = NULL;
	char *esc = gn_http_escape(args->pos[0]);
	char *path = gn_asprintf("/v1/enroll-tokens/%s", esc);

	if ((error = cli_request(&ans, ctx, "DELETE", path, NULL, err))) {
		error = cli_err_about(err, "%s '%s'", "enrollment token", args->pos[0]);
		goto out;
	}
	/* 204 has no body; with -o json print nothing and let the exit code speak. */
	if (ctx->output == CLI_OUTPUT_TABLE)
		printf("enrollment token %s revoked\n", args->pos[0]);
out:
	json_decref(ans);
	free(path);
	free(esc);
	return error;
}

static const cli_opt create_opts[] = {
	{"name", 0, "NAME", "a name to recognise the token by"},
	{"label", 0, "KEY=VALUE", "a label every device enrolled with it gets (repeatable)"},
	{"expires-in", 0, "DURATION", "lifetime: 3600, 90s, 30m, 1h, 7d, 2w (server default 1d)"},
	{"max-uses", 0, "N", "how many devices may enroll with it, 1 to 1000000 (server default 1)"},
};

static const cli_cmd cmds[] = {
	{"create", "", "Create an enrollment token and print it (shown only once).", create_opts,
	 GN_ARRAY_LEN(create_opts), 0, 0, create_run},
	{"list", "", "List enrollment tokens (never the secrets).", NULL, 0, 0, 0, list_run},
	{"revoke", "ID", "Revoke an enrollment token; devices enrolled with it stay.", NULL, 0, 1, 1, revoke_run},
};

const cli_group cmd_enroll_tokens_group = {"enroll-tokens", "Manage the tokens that devices enroll with.", cmds,
					   GN_ARRAY_LEN(cmds)};
