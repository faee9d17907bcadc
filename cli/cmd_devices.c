/* ganglion devices: list, show, label and decommission enrolled devices. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#include "http_client.h"
#include "json.h"
#include "selector.h"

/* What the device should run: MODEL@VERSION, and from where (a deployment, or an override). */
static char *fmt_desired(const json_t *row)
{
	json_t *d = json_object_get(row, "desired");
	if (!json_is_object(d))
		return gn_strdup("-");
	const char *dep = json_string_value(json_object_get(d, "deployment"));
	return gn_asprintf("%s@%s (%s%s)", json_string_value(json_object_get(d, "model")),
			   json_string_value(json_object_get(d, "version")), dep ? "deployment " : "override",
			   dep ? dep : "");
}

/* What the device runs and how its last update went: MODEL@VERSION, or "failed VERSION: why". */
static char *fmt_runs(const json_t *row)
{
	json_t *rep = json_object_get(row, "reported"), *m, *op = json_object_get(rep, "last_operation");
	gn_buf b;
	size_t i;
	gn_buf_init(&b);
	json_array_foreach(json_object_get(rep, "models"), i, m)
		gn_buf_printf(&b, "%s%s@%s", b.len ? ", " : "", json_string_value(json_object_get(m, "name")),
			      json_string_value(json_object_get(m, "version")));
	const char *state = json_string_value(json_object_get(op, "state"));
	if (state && strcmp(state, "failed") == 0)
		gn_buf_printf(&b, "%sFAILED %s: %.60s", b.len ? "; " : "",
			      json_string_value(json_object_get(op, "version")),
			      json_string_value(json_object_get(op, "detail"))
				      ? json_string_value(json_object_get(op, "detail"))
				      : "");
	else if (state && strcmp(state, "active") != 0)
		gn_buf_printf(&b, "%s%s %s", b.len ? "; " : "", state,
			      json_string_value(json_object_get(op, "version")));
	if (!b.len) {
		gn_buf_cleanup(&b);
		return gn_strdup("-");
	}
	return gn_buf_detach(&b);
}

static const output_col list_cols[] = {
	{"ID", "id", NULL},
	{"NAME", "name", NULL},
	{"STATUS", "status", NULL},
	{"LABELS", "labels", NULL},
	{"DESIRED", NULL, fmt_desired},
	{"RUNS", NULL, fmt_runs},
	{"LAST SEEN", "last_seen_at", NULL},
};

static const output_col show_fields[] = {
	{"ID", "id", NULL},
	{"Name", "name", NULL},
	{"Status", "status", NULL},
	{"Labels", "labels", NULL},
	{"Created", "created_at", NULL},
	{"Last seen", "last_seen_at", NULL},
	{"Decommissioned", "decommissioned_at", NULL},
	{"Facts", "facts", NULL},
	{"Desired", "desired", NULL},
	{"Reported", "reported", NULL},
	{"Reported at", "reported_at", NULL},
};

/* Returns /v1/devices/{id} with id URL-encoded (new). */
static char *device_path(const char *id)
{
	char *esc = gn_http_escape(id);
	char *path = gn_asprintf("/v1/devices/%s", esc);
	free(esc);
	return path;
}

static int list_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	int error = 0;
	const char *selector = cli_args_get(args, "selector"), *status = cli_args_get(args, "status");
	const char *limit = cli_args_get(args, "limit");
	bool all = cli_args_get(args, "all") != NULL;
	json_t *page = NULL;
	gn_selector sel = {0};
	gn_buf path;
	int64_t n;

	gn_buf_init(&path);
	gn_buf_puts(&path, "/v1/devices");
	if (selector) {
		/* Catch a bad selector here, with the parser the server uses. */
		if ((error = gn_selector_parse(&sel, selector, err))) {
			err->code = error = CLI_EUSAGE;
			goto out;
		}
		cli_query_add(&path, "selector", selector);
	}
	if (status) {
		if (strcmp(status, "active") != 0 && strcmp(status, "decommissioned") != 0) {
			error = gn_err_set(err, CLI_EUSAGE, "--status must be active or decommissioned, not '%s'",
					   status);
			goto out;
		}
		cli_query_add(&path, "status", status);
	}
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
		fputs("(more devices: use --all to list every page)\n", stderr);
out:
	gn_selector_cleanup(&sel);
	gn_buf_cleanup(&path);
	json_decref(page);
	return error;
}

static int show_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	int error = 0;
	json_t *dev = NULL;
	char *path = device_path(args->pos[0]);

	if ((error = cli_request(&dev, ctx, "GET", path, NULL, err)))
		goto out;
	if (ctx->output == CLI_OUTPUT_JSON)
		output_json(dev);
	else
		output_fields(dev, show_fields, GN_ARRAY_LEN(show_fields));
out:
	json_decref(dev);
	free(path);
	return error;
}

static int label_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	int error = 0;
	json_t *labels = json_object(), *body = NULL, *dev = NULL;
	char *path = device_path(args->pos[0]), *shown = NULL;

	/* Check every change before sending any, so a typo changes nothing. */
	for (size_t i = 1; i < args->npos; i++)
		if ((error = cli_label_add(labels, args->pos[i], true, err)))
			goto out;
	body = json_pack("{s:O}", "labels", labels);
	if ((error = cli_request(&dev, ctx, "PATCH", path, body, err)))
		goto out;
	if (ctx->output == CLI_OUTPUT_JSON) {
		output_json(dev);
		goto out;
	}
	shown = output_value_dup(json_object_get(dev, "labels"));
	printf("device %s labeled: %s\n", args->pos[0], shown);
out:
	json_decref(labels);
	json_decref(body);
	json_decref(dev);
	free(shown);
	free(path);
	return error;
}

static int decommission_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	int error = 0;
	json_t *dev = NULL;
	char *path = device_path(args->pos[0]);

	if ((error = cli_request(&dev, ctx, "DELETE", path, NULL, err)))
		goto out;
	if (ctx->output == CLI_OUTPUT_JSON)
		output_json(dev);
	else
		printf("device %s decommissioned; its tokens are revoked\n", args->pos[0]);
out:
	json_decref(dev);
	free(path);
	return error;
}

/* Splits MODEL@VERSION (VERSION may be an alias); CLI_EUSAGE when malformed. */
static int split_model(char **model, char **version, const char *arg, gn_err *err)
{
	const char *at = strchr(arg, '@');
	if (!at || at == arg || !at[1]) {
		gn_err_set(err, CLI_EUSAGE, "expected MODEL@VERSION (or MODEL@ALIAS), got '%s'", arg);
		return CLI_EUSAGE;
	}
	*model = gn_strndup(arg, (size_t)(at - arg));
	*version = gn_strdup(at + 1);
	return 0;
}

static int assign_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	int error = 0;
	json_t *body = NULL, *ans = NULL;
	char *model = NULL, *version = NULL, *path = NULL;
	const char *selector = cli_args_get(args, "selector");
	gn_selector sel = {0};

	if (selector ? args->npos != 1 : args->npos != 2) {
		gn_err_set(err, CLI_EUSAGE, "give either ID MODEL@VERSION or --selector S MODEL@VERSION");
		return CLI_EUSAGE;
	}
	if ((error = split_model(&model, &version, args->pos[args->npos - 1], err)))
		goto out;
	if (selector) {
		if ((error = gn_selector_parse(&sel, selector, err))) {
			err->code = error = CLI_EUSAGE;
			goto out;
		}
		body = json_pack("{s:s,s:s,s:s}", "selector", selector, "model", model, "version", version);
		if ((error = cli_request(&ans, ctx, "POST", "/v1/desired", body, err)))
			goto out;
		if (ctx->output == CLI_OUTPUT_JSON)
			output_json(ans);
		else
			printf("%lld device(s) assigned %s %s\n",
			       (long long)json_integer_value(json_object_get(ans, "count")), model,
			       gn_json_str(ans, "version") ? gn_json_str(ans, "version") : version);
		goto out;
	}
	char *dev = device_path(args->pos[0]);
	path = gn_asprintf("%s/desired", dev);
	free(dev);
	body = json_pack("{s:s,s:s}", "model", model, "version", version);
	if ((error = cli_request(&ans, ctx, "PUT", path, body, err)))
		goto out;
	if (ctx->output == CLI_OUTPUT_JSON)
		output_json(ans);
	else
		printf("device %s assigned %s %s; it installs it at its next check-in\n", args->pos[0], model,
		       gn_json_str(ans, "version"));
out:
	gn_selector_cleanup(&sel);
	json_decref(body);
	json_decref(ans);
	free(model);
	free(version);
	free(path);
	return error;
}

static int unassign_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	char *dev = device_path(args->pos[0]), *path = gn_asprintf("%s/desired", dev);
	json_t *ans = NULL;
	int error = cli_request(&ans, ctx, "DELETE", path, NULL, err);
	if (!error && ctx->output != CLI_OUTPUT_JSON)
		printf("device %s has no desired model now; it keeps serving what it runs\n", args->pos[0]);
	json_decref(ans);
	free(dev);
	free(path);
	return error;
}

static const output_col event_cols[] = {
	{"AT", "at", NULL},
	{"OPERATION", "operation", NULL},
};

static int events_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	char *dev = device_path(args->pos[0]), *path = gn_asprintf("%s/events", dev);
	json_t *page = NULL;
	int error = cli_request(&page, ctx, "GET", path, NULL, err);
	if (!error) {
		if (ctx->output == CLI_OUTPUT_JSON)
			output_json(page);
		else
			output_table(json_object_get(page, "items"), event_cols, GN_ARRAY_LEN(event_cols));
	}
	json_decref(page);
	free(dev);
	free(path);
	return error;
}

static const cli_opt assign_opts[] = {
	{"selector", 0, "S", "assign every active device whose labels match S instead of one ID"},
};

static const cli_opt list_opts[] = {
	{"selector", 0, "S", "only devices whose labels match S, e.g. site=north,type!=camera,gpu,!old"},
	{"status", 0, "STATUS", "only active or decommissioned devices"},
	{"limit", 0, "N", "devices per page, 1 to 1000 (server default 100)"},
	{"all", 0, NULL, "follow the pages to the end instead of printing the first one"},
};

static const cli_cmd cmds[] = {
	{"list", "", "List devices (one page unless --all).", list_opts, GN_ARRAY_LEN(list_opts), 0, 0, list_run},
	{"show", "ID", "Show one device with its labels and facts.", NULL, 0, 1, 1, show_run},
	{"label", "ID key=value... key-...",
	 "Set labels (key=value) and remove them (key-) on a device; other labels stay.", NULL, 0, 2, SIZE_MAX,
	 label_run},
	{"decommission", "ID", "Decommission a device: it can no longer authenticate.", NULL, 0, 1, 1,
	 decommission_run},
	{"assign", "ID MODEL@VERSION | --selector S MODEL@VERSION",
	 "Set the model version (or alias, resolved now) a device should run.", assign_opts, GN_ARRAY_LEN(assign_opts),
	 1, 2, assign_run},
	{"unassign", "ID", "Clear a device's desired model (it keeps serving what it runs).", NULL, 0, 1, 1,
	 unassign_run},
	{"events", "ID", "Show a device's update attempts as it reported them, newest first.", NULL, 0, 1, 1,
	 events_run},
};

const cli_group cmd_devices_group = {"devices", "Inspect and manage enrolled devices.", cmds, GN_ARRAY_LEN(cmds)};
