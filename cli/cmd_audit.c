/* ganglion audit: read the append-only audit log, newest first, filtered. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* Adds --since or --until as a query parameter: a time as it is (the server checks it), or a
 * duration ago (30m, 2h, 7d) turned into a UTC time by this machine's clock. */
static int time_add(gn_buf *path, const cli_args *args, const char *name, gn_err *err)
{
	const char *v = cli_args_get(args, name);
	char flag[16], at[32];
	int64_t ago;
	if (!v)
		return 0;
	if (strchr(v, '-') || strchr(v, ':')) {
		cli_query_add(path, name, v);
		return 0;
	}
	snprintf(flag, sizeof(flag), "--%s", name);
	int error = cli_parse_duration(&ago, v, flag, err);
	if (error) {
		snprintf(err->msg, sizeof(err->msg),
			 "%s must be a time such as 2026-01-02T15:04:05Z or 2026-01-02, or a duration ago such as "
			 "30m, 2h or 7d, not '%s'",
			 flag, v);
		return error;
	}
	time_t t = time(NULL) - (time_t)ago;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm);
	cli_query_add(path, name, at);
	return 0;
}

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
	static const char *const filters[] = {"actor", "action", "object"};
	for (size_t i = 0; i < GN_ARRAY_LEN(filters); i++)
		if (cli_args_get(args, filters[i]))
			cli_query_add(&path, filters[i], cli_args_get(args, filters[i]));
	if ((error = time_add(&path, args, "since", err)) || (error = time_add(&path, args, "until", err)))
		goto out;
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
	{"actor", 0, "WHO", "only entries by WHO: a token's name or id, or an actor as shown (token:ci, controller)"},
	{"action", 0, "A", "only action A (token.create), or a group of actions (token)"},
	{"object", 0, "O", "only entries about object O, as shown (model/det) or its id alone (det)"},
	{"since", 0, "T", "only entries at or after T: 2026-01-02T15:04:05Z, 2026-01-02, or a duration ago (2h, 7d)"},
	{"until", 0, "T", "only entries before T (same forms as --since)"},
};

static const cli_cmd cmds[] = {
	{"list", "", "List audit entries, newest first (one page unless --all); the filters combine.", list_opts,
	 GN_ARRAY_LEN(list_opts), 0, 0, list_run},
};

const cli_group cmd_audit_group = {"audit", "Read the audit log (needs the admin scope).", cmds, GN_ARRAY_LEN(cmds)};
