/* ganglion whoami: the API token this CLI sends, as the server knows it (name, scopes, expiry). */
#include "cli.h"

#include <stdlib.h>

static char *expires_format(const json_t *row)
{
	const json_t *v = json_object_get(row, "expires_at");
	return json_is_null(v) ? gn_strdup("never") : output_value_dup(v);
}

static const output_col fields[] = {
	{"Name", "name", NULL},          {"ID", "id", NULL},
	{"Scopes", "scopes", NULL},      {"Expires", NULL, expires_format},
	{"Created", "created_at", NULL}, {"Last used", "last_used_at", NULL},
};

static int whoami_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	json_t *me = NULL;
	int error = cli_request(&me, ctx, "GET", "/v1/whoami", NULL, err);
	if (!error) {
		if (ctx->output == CLI_OUTPUT_JSON) {
			output_json(me);
		} else {
			printf("Server:     %s\n", ctx->url);
			output_fields(me, fields, GN_ARRAY_LEN(fields));
		}
	}
	json_decref(me);
	return error;
}

static const cli_cmd cmds[] = {
	{"whoami", "", "Show the API token in use: its name, scopes and expiry, as the server knows it.", NULL, 0, 0, 0,
	 whoami_run},
};

const cli_group cmd_whoami_group = {"whoami", "Show the API token in use (name, scopes, expiry).", cmds,
				    GN_ARRAY_LEN(cmds)};
