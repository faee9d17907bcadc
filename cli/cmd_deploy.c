/* ganglion deploy and ganglion rollout: deployments (standing rules) and their canary rollouts. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_client.h"

static char *fmt_rollout(const json_t *row)
{
	json_t *r = json_object_get(row, "rollout");
	if (!json_is_object(r))
		return gn_strdup("-");
	return gn_asprintf("%s %s->%s stage %lld", json_string_value(json_object_get(r, "state")),
			   json_string_value(json_object_get(r, "from_version")),
			   json_string_value(json_object_get(r, "to_version")),
			   (long long)json_integer_value(json_object_get(r, "stage")));
}

static const output_col deploy_cols[] = {
	{"NAME", "name", NULL},         {"MODEL", "model", NULL},     {"SELECTOR", "selector", NULL},
	{"FOLLOWS", "follow", NULL},    {"VERSION", "version", NULL}, {"DEVICES", "devices", NULL},
	{"ROLLOUT", NULL, fmt_rollout},
};

static char *fmt_progress(const json_t *row)
{
	json_t *p = json_object_get(row, "progress");
	if (!json_is_object(p))
		return gn_strdup("-");
	long long held = (long long)json_integer_value(json_object_get(p, "held_back"));
	char extra[64] = "";
	if (held > 0)
		snprintf(extra, sizeof(extra), ", %lld held back as the control", held);
	return gn_asprintf("%lld%%: %lld/%lld healthy, %lld failed%s",
			   (long long)json_integer_value(json_object_get(p, "percent")),
			   (long long)json_integer_value(json_object_get(p, "healthy")),
			   (long long)json_integer_value(json_object_get(p, "devices")),
			   (long long)json_integer_value(json_object_get(p, "failed")), extra);
}

/* Each gate of the current stage: "max_failed 0/0 pass, max_p95_latency_ratio -/1.5 unjudged". */
static char *fmt_gates(const json_t *row)
{
	json_t *g;
	size_t i;
	gn_buf b;
	gn_buf_init(&b);
	json_array_foreach(json_object_get(json_object_get(row, "progress"), "gates"), i, g) {
		json_t *v = json_object_get(g, "value");
		gn_buf_printf(&b, "%s%s ", i ? ", " : "", json_string_value(json_object_get(g, "gate")));
		if (json_is_number(v))
			gn_buf_printf(&b, "%g", json_number_value(v));
		else
			gn_buf_puts(&b, "-");
		gn_buf_printf(&b, "/%g %s", json_number_value(json_object_get(g, "limit")),
			      json_string_value(json_object_get(g, "state")));
	}
	if (!b.len)
		gn_buf_puts(&b, "-");
	return gn_buf_detach(&b);
}

static const output_col rollout_cols[] = {
	{"ID", "id", NULL},         {"DEPLOYMENT", "deployment", NULL}, {"FROM", "from_version", NULL},
	{"TO", "to_version", NULL}, {"STATE", "state", NULL},           {"STAGE", "stage", NULL},
	{"REASON", "reason", NULL},
};

static const output_col rollout_fields[] = {
	{"ID", "id", NULL},
	{"Deployment", "deployment", NULL},
	{"Model", "model", NULL},
	{"From", "from_version", NULL},
	{"To", "to_version", NULL},
	{"State", "state", NULL},
	{"Stage", "stage", NULL},
	{"Progress", NULL, fmt_progress},
	{"Gates", NULL, fmt_gates},
	{"Reason", "reason", NULL},
	{"Created by", "created_by", NULL},
	{"Approved by", "approved_by", NULL},
};

/* Prints a deployment or rollout answer (taken) as JSON or as fields. */
static void show(const cli_ctx *ctx, json_t *ans, const output_col *cols, size_t n)
{
	if (ctx->output == CLI_OUTPUT_JSON)
		output_json(ans);
	else
		output_fields(ans, cols, n);
	json_decref(ans);
}

/* Reads --strategy @FILE or inline JSON into *out (new, or NULL when not given). */
static int strategy_arg(json_t **out, const cli_args *args, gn_err *err)
{
	const char *s = cli_args_get(args, "strategy");
	json_error_t je;
	*out = NULL;
	if (!s)
		return 0;
	*out = s[0] == '@' ? json_load_file(s + 1, JSON_REJECT_DUPLICATES, &je)
			   : json_loads(s, JSON_REJECT_DUPLICATES, &je);
	if (!*out || !json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		return gn_err_set(err, CLI_EUSAGE, "--strategy must be a JSON object or @FILE holding one: %s",
				  je.text);
	}
	return 0;
}

static int deploy_create_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	json_t *body = NULL, *ans = NULL, *strategy = NULL;
	const char *model = cli_args_get(args, "model"), *sel = cli_args_get(args, "selector");
	const char *follow = cli_args_get(args, "follow");
	int error;
	if (!model || !sel || !follow)
		return gn_err_set(err, CLI_EUSAGE, "--model, --selector and --follow are required");
	if ((error = strategy_arg(&strategy, args, err)))
		return error;
	body = json_pack("{s:s,s:s,s:s,s:s}", "name", args->pos[0], "model", model, "selector", sel, "follow", follow);
	if (strategy)
		json_object_set_new(body, "strategy", strategy);
	if (!(error = cli_request(&ans, ctx, "POST", "/v1/deployments", body, err)))
		show(ctx, ans, deploy_cols, GN_ARRAY_LEN(deploy_cols));
	else if (cli_model_not_found(ctx, model, follow, err)) /* "did you mean" for a mistyped name */
		error = err->code;
	json_decref(body);
	return error;
}

static int deploy_list_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	(void)args;
	return cli_list_print(ctx, "/v1/deployments", deploy_cols, GN_ARRAY_LEN(deploy_cols), err);
}

static char *deploy_path(const char *name, const char *suffix)
{
	char *esc = gn_http_escape(name);
	char *path = gn_asprintf("/v1/deployments/%s%s", esc, suffix);
	free(esc);
	return path;
}

static int deploy_show_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	json_t *ans = NULL;
	char *path = deploy_path(args->pos[0], "");
	int error = cli_request(&ans, ctx, "GET", path, NULL, err);
	if (!error)
		show(ctx, ans, deploy_cols, GN_ARRAY_LEN(deploy_cols));
	free(path);
	return error;
}

static int deploy_set_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	json_t *body = json_object(), *ans = NULL, *strategy = NULL;
	const char *follow = cli_args_get(args, "follow"), *sel = cli_args_get(args, "selector");
	char *path = deploy_path(args->pos[0], "");
	int error = strategy_arg(&strategy, args, err);
	if (!error && !follow && !sel && !strategy)
		error = gn_err_set(err, CLI_EUSAGE, "nothing to change: give --follow, --selector or --strategy");
	if (error)
		goto out;
	if (follow)
		json_object_set_new(body, "follow", json_string(follow));
	if (sel)
		json_object_set_new(body, "selector", json_string(sel));
	if (strategy)
		json_object_set(body, "strategy", strategy);
	if (!(error = cli_request(&ans, ctx, "PATCH", path, body, err)))
		show(ctx, ans, deploy_cols, GN_ARRAY_LEN(deploy_cols));
out:
	json_decref(body);
	json_decref(strategy);
	free(path);
	return error;
}

static int deploy_delete_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	json_t *ans = NULL;
	char *path = deploy_path(args->pos[0], "");
	int error = cli_request(&ans, ctx, "DELETE", path, NULL, err);
	if (!error && ctx->output == CLI_OUTPUT_TABLE)
		printf("deployment %s deleted\n", args->pos[0]);
	json_decref(ans);
	free(path);
	return error;
}

static const cli_opt deploy_create_opts[] = {
	{"model", 0, "MODEL", "the model (required)"},
	{"selector", 0, "SELECTOR", "the devices, e.g. site=north,kind=cam (required)"},
	{"follow", 0, "VERSION|ALIAS", "what to run: a version, or an alias to follow as it moves (required)"},
	{"strategy", 0, "JSON|@FILE", "stages, gates, on_failure, approval (docs/API.md); default: all at once"},
};
static const cli_opt deploy_set_opts[] = {
	{"follow", 0, "VERSION|ALIAS", "follow another version or alias (starts a rollout)"},
	{"selector", 0, "SELECTOR", "another selector"},
	{"strategy", 0, "JSON|@FILE", "another strategy, for the next rollout"},
};

static const cli_cmd deploy_cmds[] = {
	{"create", "NAME", "Create a deployment: a standing rule for every matching device, now and later.",
	 deploy_create_opts, GN_ARRAY_LEN(deploy_create_opts), 1, 1, deploy_create_run},
	{"list", "", "List deployments with their versions and rollouts.", NULL, 0, 0, 0, deploy_list_run},
	{"show", "NAME", "Show one deployment.", NULL, 0, 1, 1, deploy_show_run},
	{"set", "NAME", "Change a deployment; a new version rolls out by its strategy.", deploy_set_opts,
	 GN_ARRAY_LEN(deploy_set_opts), 1, 1, deploy_set_run},
	{"delete", "NAME", "Delete a deployment (its devices keep what they run).", NULL, 0, 1, 1, deploy_delete_run},
};

const cli_group cmd_deploy_group = {"deploy", "Manage deployments: which devices run which model version.", deploy_cmds,
				    GN_ARRAY_LEN(deploy_cmds)};

/* --- rollouts --------------------------------------------------------------------------------- */

static int rollout_list_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	gn_buf path;
	gn_buf_init(&path);
	gn_buf_puts(&path, "/v1/rollouts");
	if (cli_args_get(args, "deployment"))
		cli_query_add(&path, "deployment", cli_args_get(args, "deployment"));
	int error = cli_list_print(ctx, path.data, rollout_cols, GN_ARRAY_LEN(rollout_cols), err);
	gn_buf_cleanup(&path);
	return error;
}

static int rollout_get(json_t **out, const cli_ctx *ctx, const char *id, gn_err *err)
{
	char *esc = gn_http_escape(id);
	char *path = gn_asprintf("/v1/rollouts/%s", esc);
	int error = cli_request(out, ctx, "GET", path, NULL, err);
	free(esc);
	free(path);
	return error;
}

static int rollout_status_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	json_t *ans = NULL;
	int error = rollout_get(&ans, ctx, args->pos[0], err);
	if (!error)
		show(ctx, ans, rollout_fields, GN_ARRAY_LEN(rollout_fields));
	return error;
}

static bool finished(const char *state)
{
	return strcmp(state, "completed") == 0 || strcmp(state, "rolled_back") == 0 || strcmp(state, "aborted") == 0;
}

/* Prints one line of progress when it changed: state, stage and its figures. */
static void watch_line(const json_t *r, char *last, size_t n)
{
	char *prog = fmt_progress(r), *gates = fmt_gates(r);
	char *line = gn_asprintf(
		"%s stage %lld %s [%s]%s%s", json_string_value(json_object_get(r, "state")),
		(long long)json_integer_value(json_object_get(r, "stage")), prog, gates,
		json_is_string(json_object_get(r, "reason")) ? " - " : "",
		json_is_string(json_object_get(r, "reason")) ? json_string_value(json_object_get(r, "reason")) : "");
	if (strcmp(line, last) != 0) {
		printf("%s\n", line);
		fflush(stdout);
		snprintf(last, n, "%s", line);
	}
	free(prog);
	free(gates);
	free(line);
}

static int rollout_watch_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	char last[512] = "";
	int64_t interval = 2;
	int error = 0;
	if (cli_args_get(args, "interval") &&
	    (error = cli_parse_duration(&interval, cli_args_get(args, "interval"), "--interval", err)))
		return error;
	for (;;) {
		json_t *r = NULL;
		if ((error = rollout_get(&r, ctx, args->pos[0], err)))
			return error;
		const char *state = json_string_value(json_object_get(r, "state"));
		watch_line(r, last, sizeof(last));
		if (finished(state)) {
			if (strcmp(state, "completed") != 0)
				error = gn_err_set(err, GN_ERROR, "rollout %s ended %s: %s", args->pos[0], state,
						   json_string_value(json_object_get(r, "reason")));
			json_decref(r);
			return error;
		}
		json_decref(r);
		sleep((unsigned)interval);
	}
}

static int rollout_action(const cli_ctx *ctx, const char *id, const char *action, gn_err *err)
{
	json_t *ans = NULL;
	char *esc = gn_http_escape(id);
	char *path = gn_asprintf("/v1/rollouts/%s/%s", esc, action);
	int error = cli_request(&ans, ctx, "POST", path, NULL, err);
	if (!error)
		show(ctx, ans, rollout_fields, GN_ARRAY_LEN(rollout_fields));
	free(esc);
	free(path);
	return error;
}

#define ACTION(name)                                                                           \
	static int rollout_##name##_run(const cli_ctx *ctx, const cli_args *args, gn_err *err) \
	{                                                                                      \
		return rollout_action(ctx, args->pos[0], #name, err);                          \
	}
ACTION(pause)
ACTION(resume)
ACTION(promote)
ACTION(abort)
ACTION(approve)

static int rollout_plan_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	json_t *ans = NULL;
	char *base = deploy_path(args->pos[0], "/plan");
	gn_buf path;
	gn_buf_init(&path);
	gn_buf_puts(&path, base);
	free(base);
	if (cli_args_get(args, "follow"))
		cli_query_add(&path, "version", cli_args_get(args, "follow"));
	int error = cli_request(&ans, ctx, "GET", path.data, NULL, err);
	gn_buf_cleanup(&path);
	if (error)
		return error;
	if (ctx->output == CLI_OUTPUT_JSON) {
		output_json(ans);
	} else {
		static const output_col cols[] = {{"PERCENT", "percent", NULL}, {"DEVICES", "devices", NULL}};
		static const output_col refused_cols[] = {
			{"DEVICE", "device", NULL}, {"NAME", "name", NULL}, {"WHY IT CANNOT RUN IT", "reason", NULL}};
		const json_t *refused = json_object_get(ans, "refused");
		printf("deployment %s: %lld device(s)\n", args->pos[0],
		       (long long)json_integer_value(json_object_get(ans, "devices")));
		output_table(json_object_get(ans, "stages"), cols, GN_ARRAY_LEN(cols));
		printf("\n%zu device(s) the selector matches cannot run %s", json_array_size(refused),
		       json_string_value(json_object_get(ans, "version"))
			       ? json_string_value(json_object_get(ans, "version"))
			       : "it");
		if (json_integer_value(json_object_get(ans, "unreported")) > 0)
			printf("; %lld have not reported their runtime yet (their agents check before they download)",
			       (long long)json_integer_value(json_object_get(ans, "unreported")));
		printf("\n");
		if (json_array_size(refused) > 0)
			output_table(refused, refused_cols, GN_ARRAY_LEN(refused_cols));
	}
	json_decref(ans);
	return 0;
}

static const cli_opt rollout_plan_opts[] = {
	{"follow", 0, "VERSION|ALIAS", "plan for this version instead of the one the deployment follows"}};
static const cli_opt rollout_list_opts[] = {{"deployment", 0, "NAME", "only this deployment's rollouts"}};
static const cli_opt rollout_watch_opts[] = {{"interval", 0, "DURATION", "how often to look (default 2s)"}};

static const cli_cmd rollout_cmds[] = {
	{"plan", "DEPLOYMENT",
	 "Dry run: the devices each stage of a rollout would reach, and those that cannot run the version.",
	 rollout_plan_opts, GN_ARRAY_LEN(rollout_plan_opts), 1, 1, rollout_plan_run},
	{"list", "", "List rollouts, newest first.", rollout_list_opts, GN_ARRAY_LEN(rollout_list_opts), 0, 0,
	 rollout_list_run},
	{"status", "ID", "Show a rollout and the health of its current stage.", NULL, 0, 1, 1, rollout_status_run},
	{"watch", "ID", "Follow a rollout until it ends: exit 0 when it completes, 1 when it rolls back or is aborted.",
	 rollout_watch_opts, GN_ARRAY_LEN(rollout_watch_opts), 1, 1, rollout_watch_run},
	{"pause", "ID", "Pause a rollout.", NULL, 0, 1, 1, rollout_pause_run},
	{"resume", "ID", "Resume a paused rollout (its stage's bake starts again).", NULL, 0, 1, 1, rollout_resume_run},
	{"promote", "ID", "Skip the rest of the current stage's bake.", NULL, 0, 1, 1, rollout_promote_run},
	{"abort", "ID", "Abort a rollout: every device goes back to the version it came from.", NULL, 0, 1, 1,
	 rollout_abort_run},
	{"approve", "ID", "Approve a rollout waiting for it (not with the token that started it).", NULL, 0, 1, 1,
	 rollout_approve_run},
};

const cli_group cmd_rollout_group = {"rollout", "Follow and steer rollouts.", rollout_cmds, GN_ARRAY_LEN(rollout_cmds)};
