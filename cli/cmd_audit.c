/* ganglion audit: read the append-only audit log, newest first. */
#include "cli.h"

#include <stdlib.h>

static char *object_format(const json_t *row)
{
	const char *type = json_string_value(json_object_get(row, "object_type"));
	char *id = output_value_dup(json_object_get(row, "object_id"));
	char *s = type ? gn_asprintf("%s/%s", type, id) : gn_strdup(id);
	free(id);
	return s;
}

static const output_col list_cols[] = {
	{"AT", "at", NULL},
	{"ACTOR", "actor", NULL},
	{"ACTION", "action", NULL},
	{"OBJECT", NULL, object_format},
	{"REQUEST", "request_id", NULL},
	{"DETAIL", "detail", NULL},
};

static int list_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	int error = 0;
	json_t *page = NULL;
	const char *limit = cli_args_get(args, "limit");
	bool all = cli_args_get(args, "all") != NULL;
	gn_buf path;
	int64_t n;

	gn_buf_init(&path);
	gn_buf_puts(&path, "/v1/audit");
	if (limit) {
		if ((error = cli_parse_int(&n, limit, "--limit", 1, 1000, err)))
			goto out;
		char num[24];
		snprintf(num, sizeof(num), "%lld", (long long)n);
		cli_query_add(&path, "limit", num);
	}
	if ((error = cli_list(&page, ctx, path.data, all, err)))
		goto out;
	if (ctx->output == CLI_OUTPUT_JSON) {
		output_json(page);
		goto out;
	}
	output_table(json_object_get(page, "items"), list_cols, GN_ARRAY_LEN(list_cols));
	if (!all && json_is_string(json_object_get(page, "next_cursor")) && ctx->tty)
		fputs("(older entries: use --all to list every page)\n", stderr);
out:
	gn_buf_cleanup(&path);
	json_decref(page);
	return error;
}

static const cli_opt list_opts[] = {
	{"limit", 0, "N", "entries per page, 1 to 1000 (server default 100)"},
	{"all", 0, NULL, "follow the pages to the end instead of printing the newest page"},
};

static const cli_cmd cmds[] = {
	{"list", "", "List audit entries, newest first (one page unless --all).", list_opts, GN_ARRAY_LEN(list_opts), 0,
	 0, list_run},
};

const cli_group cmd_audit_group = {"audit", "Read the audit log (needs the admin scope).", cmds, GN_ARRAY_LEN(cmds)};
