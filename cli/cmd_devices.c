/* ganglion devices: list, show, label and decommission enrolled devices, rotate their tokens. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#include "http_client.h"
#include "json.h"
#include "latency.h"
#include "model.h"
#include "selector.h"

/* One model the device should run: MODEL@VERSION (deployment NAME) or MODEL@VERSION (override). */
static void put_desired(gn_buf *b, const json_t *d)
{
	const char *dep = json_string_value(json_object_get(d, "deployment"));
	gn_buf_printf(b, "%s%s@%s (%s%s)", b->len ? ", " : "", json_string_value(json_object_get(d, "model")),
		      json_string_value(json_object_get(d, "version")), dep ? "deployment " : "override",
		      dep ? dep : "");
}

/* What the device should run, per model and from where, and the deployments it conflicts with. */
static char *fmt_desired(const json_t *row)
{
	json_t *d;
	size_t i;
	gn_buf b;
	gn_buf_init(&b);
	json_array_foreach(json_object_get(row, "desired"), i, d)
		put_desired(&b, d);
	json_array_foreach(json_object_get(row, "conflicts"), i, d)
		gn_buf_printf(&b, "%sCONFLICT %s: also deployment %s, kept %s", b.len ? "; " : "",
			      json_string_value(json_object_get(d, "model")),
			      json_string_value(json_object_get(d, "deployment")),
			      json_string_value(json_object_get(d, "kept")));
	return b.len ? gn_buf_detach(&b) : (gn_buf_cleanup(&b), gn_strdup("-"));
}

/* An integer field of obj, 0 when absent. */
static long long int_of(const json_t *obj, const char *key)
{
	return (long long)json_integer_value(json_object_get(obj, key));
}

/* A model's health since its version went live: requests, error share and p95 latency (an upper
 * bound: the top of its histogram bucket), or "idle". */
static void put_health(gn_buf *b, const json_t *m)
{
	long long req = int_of(m, "requests"), errs = int_of(m, "errors");
	const json_t *hist = json_object_get(m, "latency_us_buckets");
	uint64_t counts[GN_LATENCY_NBUCKETS] = {0};
	if (!req) {
		gn_buf_puts(b, "idle");
		return;
	}
	gn_buf_printf(b, "%lld req, %.1f%% err", req, 100.0 * (double)errs / (double)req);
	if (json_array_size(hist) != GN_LATENCY_NBUCKETS)
		return;
	for (size_t i = 0; i < GN_LATENCY_NBUCKETS; i++)
		counts[i] = (uint64_t)json_integer_value(json_array_get(hist, i));
	uint64_t p95 = gn_latency_quantile_us(counts, GN_LATENCY_NBUCKETS, 0.95);
	if (p95 == GN_LATENCY_OVERFLOW_US)
		gn_buf_puts(b, ", p95>10s");
	else if (p95 >= 1000)
		gn_buf_printf(b, ", p95<=%llums", (unsigned long long)(p95 / 1000));
	else if (p95)
		gn_buf_printf(b, ", p95<=%lluus", (unsigned long long)p95);
}

/* An update operation that is not a success: "FAILED [MODEL@]VERSION (N attempts): why", or
 * "downloading [MODEL@]VERSION"; nothing for an active (or no) operation. */
static void put_operation(gn_buf *b, const json_t *op, const char *sep)
{
	const char *state = json_string_value(json_object_get(op, "state"));
	const char *model = json_string_value(json_object_get(op, "model"));
	const char *version = json_string_value(json_object_get(op, "version"));
	const char *detail = json_string_value(json_object_get(op, "detail"));
	long long attempts = int_of(op, "attempts");
	if (!state || strcmp(state, "active") == 0)
		return;
	gn_buf_printf(b, "%s%s %s%s%s", b->len ? sep : "", strcmp(state, "failed") == 0 ? "FAILED" : state,
		      model && *model ? model : "", model && *model ? "@" : "", version ? version : "");
	if (attempts > 1)
		gn_buf_printf(b, " (%lld attempts)", attempts);
	if (strcmp(state, "failed") == 0)
		gn_buf_printf(b, ": %.60s", detail ? detail : "");
}

/* What the device runs and how each model does: MODEL@VERSION [health], and the update of a
 * model that is failing or under way. An agent that reports no operation per model has its last
 * operation shown instead. */
static char *fmt_runs(const json_t *row)
{
	json_t *rep = json_object_get(row, "reported"), *m;
	bool per_model = false;
	gn_buf b;
	size_t i;
	gn_buf_init(&b);
	json_array_foreach(json_object_get(rep, "models"), i, m) {
		const char *state = json_string_value(json_object_get(m, "state"));
		if (state && strcmp(state, "active") == 0) {
			gn_buf_printf(&b, "%s%s@%s [", b.len ? "; " : "", json_string_value(json_object_get(m, "name")),
				      json_string_value(json_object_get(m, "version")));
			put_health(&b, m);
			gn_buf_puts(&b, "]");
		}
		if (json_is_object(json_object_get(m, "last_operation"))) {
			per_model = true;
			put_operation(&b, json_object_get(m, "last_operation"), "; ");
		}
	}
	if (!per_model)
		put_operation(&b, json_object_get(rep, "last_operation"), "; ");
	return b.len ? gn_buf_detach(&b) : (gn_buf_cleanup(&b), gn_strdup("-"));
}

/* The rows of `devices show`'s model table: each model the device should run or reports, with
 * where it comes from, what runs, its health and its last update. */
static json_t *model_rows(const json_t *dev)
{
	json_t *rows = json_object(), *out = json_array(), *d, *m;
	const char *name;
	size_t i;
	json_array_foreach(json_object_get(dev, "desired"), i, d) {
		gn_buf b;
		gn_buf_init(&b);
		put_desired(&b, d);
		json_object_set_new(rows, json_string_value(json_object_get(d, "model")),
				    json_pack("{s:s%}", "desired", b.data, b.len));
		gn_buf_cleanup(&b);
	}
	json_array_foreach(json_object_get(json_object_get(dev, "reported"), "models"), i, m) {
		const char *n = json_string_value(json_object_get(m, "name"));
		json_t *r = n ? json_object_get(rows, n) : NULL;
		gn_buf h, o;
		if (!n)
			continue;
		if (!r)
			json_object_set_new(rows, n, r = json_object());
		gn_buf_init(&h);
		gn_buf_init(&o);
		if (json_is_string(json_object_get(m, "version")))
			json_object_set(r, "runs", json_object_get(m, "version"));
		put_health(&h, m);
		json_object_set_new(r, "health", json_stringn(h.data, h.len));
		if (json_is_string(json_object_get(m, "self_test")))
			json_object_set(r, "self_test", json_object_get(m, "self_test"));
		put_operation(&o, json_object_get(m, "last_operation"), "");
		if (o.len)
			json_object_set_new(r, "update", json_stringn(o.data, o.len));
		gn_buf_cleanup(&h);
		gn_buf_cleanup(&o);
	}
	json_object_foreach(rows, name, d)
		json_array_append_new(out, json_pack("{s:s,s:O}", "model", name, "row", d));
	json_decref(rows);
	return out;
}

/* A cell of the model table: the row's field named by the column. */
#define MODEL_CELL(fn, key)                                                                 \
	static char *fn(const json_t *row)                                                  \
	{                                                                                   \
		return output_value_dup(json_object_get(json_object_get(row, "row"), key)); \
	}
MODEL_CELL(cell_desired, "desired")
MODEL_CELL(cell_runs, "runs")
MODEL_CELL(cell_health, "health")
MODEL_CELL(cell_self_test, "self_test")
MODEL_CELL(cell_update, "update")

static const output_col model_cols[] = {
	{"MODEL", "model", NULL},      {"DESIRED", NULL, cell_desired},     {"RUNS", NULL, cell_runs},
	{"HEALTH", NULL, cell_health}, {"SELF-TEST", NULL, cell_self_test}, {"UPDATE", NULL, cell_update},
};

/* The agent's version, as it reported it. */
static char *fmt_agent(const json_t *row)
{
	return output_value_dup(json_object_get(json_object_get(row, "reported"), "agent_version"));
}

/* The device's last update operation: "STATE MODEL@VERSION (N attempts): detail". */
static char *fmt_last_update(const json_t *row)
{
	const json_t *op = json_object_get(json_object_get(row, "reported"), "last_operation");
	const char *state = json_string_value(json_object_get(op, "state"));
	gn_buf b;
	if (!state)
		return gn_strdup("-");
	gn_buf_init(&b);
	if (strcmp(state, "active") == 0)
		gn_buf_printf(&b, "active %s@%s", json_string_value(json_object_get(op, "model")),
			      json_string_value(json_object_get(op, "version")));
	else
		put_operation(&b, op, "");
	gn_buf_printf(&b, " at %s",
		      json_string_value(json_object_get(op, "at")) ? json_string_value(json_object_get(op, "at"))
								   : "?");
	return gn_buf_detach(&b);
}

/* Bytes as GiB or MiB with one decimal. */
static void put_bytes(gn_buf *b, json_int_t n)
{
	if (n >= 1073741824)
		gn_buf_printf(b, "%.1f GiB", (double)n / 1073741824.0);
	else
		gn_buf_printf(b, "%.1f MiB", (double)n / 1048576.0);
}

/* The runtime the agent reported: "NAME VERSION: TARGET (DEVICE, MEMORY), ...; ONNX opsets up to N". */
static char *fmt_runtime(const json_t *row)
{
	const json_t *rt = json_object_get(json_object_get(row, "facts"), "runtime"), *t;
	const char *name = json_string_value(json_object_get(rt, "name"));
	size_t i;
	gn_buf b;
	if (!name)
		return gn_strdup(rt ? "not reported yet (the agent could not probe its plugin)" : "-");
	gn_buf_init(&b);
	const char *version = json_string_value(json_object_get(rt, "version"));
	gn_buf_printf(&b, "%s %s:", name, version ? version : "?");
	json_array_foreach(json_object_get(rt, "targets"), i, t) {
		json_int_t total = json_integer_value(json_object_get(t, "mem_total_bytes"));
		const char *dev = json_string_value(json_object_get(t, "device"));
		const char *tname = json_string_value(json_object_get(t, "name"));
		gn_buf_printf(&b, "%s %s (%s", i ? "," : "", tname ? tname : "?", dev && *dev ? dev : "unnamed");
		if (total > 0) {
			gn_buf_puts(&b, ", ");
			put_bytes(&b, total);
		}
		gn_buf_puts(&b, ")");
	}
	json_int_t opset = json_integer_value(json_object_get(rt, "onnx_opset"));
	if (opset > 0)
		gn_buf_printf(&b, "; ONNX opsets up to %lld", (long long)opset);
	if (json_is_false(json_object_get(rt, "loaded")))
		gn_buf_puts(&b, "; not loaded (no model needs it yet)");
	return gn_buf_detach(&b);
}

/* The platform the agent reported: "OS, ARCH, RAM". */
static char *fmt_platform(const json_t *row)
{
	const json_t *f = json_object_get(row, "facts");
	const char *os = json_string_value(json_object_get(f, "os")),
		   *arch = json_string_value(json_object_get(f, "arch"));
	json_int_t ram = json_integer_value(json_object_get(f, "ram_bytes"));
	gn_buf b;
	if (!os && !arch && ram <= 0)
		return gn_strdup("-");
	gn_buf_init(&b);
	gn_buf_printf(&b, "%s %s", os ? os : "?", arch ? arch : "?");
	if (ram > 0) {
		gn_buf_puts(&b, ", ");
		put_bytes(&b, ram);
		gn_buf_puts(&b, " RAM");
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
	{"Runtime", NULL, fmt_runtime},
	{"Platform", NULL, fmt_platform},
	{"Agent", NULL, fmt_agent},
	{"Last update", NULL, fmt_last_update},
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
	json_t *dev = NULL, *rows = NULL, *c;
	size_t i;
	char *path = device_path(args->pos[0]);

	if ((error = cli_request(&dev, ctx, "GET", path, NULL, err))) {
		error = cli_err_about(err, "device '%s'", args->pos[0]);
		goto out;
	}
	if (ctx->output == CLI_OUTPUT_JSON) {
		output_json(dev);
		goto out;
	}
	output_fields(dev, show_fields, GN_ARRAY_LEN(show_fields));
	rows = model_rows(dev);
	if (json_array_size(rows)) {
		fputs("\nModels:\n", stdout);
		output_table(rows, model_cols, GN_ARRAY_LEN(model_cols));
	}
	json_array_foreach(json_object_get(dev, "conflicts"), i, c)
		printf("%sCONFLICT: deployment %s also matches this device for model %s; it stays on deployment %s"
		       " (since %s)\n",
		       i ? "" : "\n", json_string_value(json_object_get(c, "deployment")),
		       json_string_value(json_object_get(c, "model")), json_string_value(json_object_get(c, "kept")),
		       json_string_value(json_object_get(c, "since")));
out:
	json_decref(rows);
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
	if ((error = cli_request(&dev, ctx, "PATCH", path, body, err))) {
		error = cli_err_about(err, "device '%s'", args->pos[0]);
		goto out;
	}
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

	if ((error = cli_request(&dev, ctx, "DELETE", path, NULL, err))) {
		error = cli_err_about(err, "device '%s'", args->pos[0]);
		goto out;
	}
	if (ctx->output == CLI_OUTPUT_JSON)
		output_json(dev);
	else
		printf("device %s decommissioned; its tokens are revoked\n", args->pos[0]);
out:
	json_decref(dev);
	free(path);
	return error;
}

static int rotate_token_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	int error = 0;
	json_t *out = NULL;
	char *dev = device_path(args->pos[0]);
	char *path = gn_asprintf("%s/rotate-token", dev);

	if ((error = cli_request(&out, ctx, "POST", path, NULL, err))) {
		error = cli_err_about(err, "device '%s'", args->pos[0]);
		goto out;
	}
	if (ctx->output == CLI_OUTPUT_JSON)
		output_json(out);
	else
		printf("device %s: its tokens are revoked on every replica (token generation %lld); its agent "
		       "authenticates again with its enrolled key\n",
		       args->pos[0], (long long)json_integer_value(json_object_get(out, "token_generation")));
out:
	json_decref(out);
	free(path);
	free(dev);
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
		gn_err_set(err, CLI_EUSAGE, "give either DEVICE MODEL@VERSION or --selector S MODEL@VERSION");
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
		if ((error = cli_request(&ans, ctx, "POST", "/v1/desired", body, err))) {
			cli_model_not_found(ctx, model, version, err);
			error = err->code;
			goto out;
		}
		/* An action on nothing is an error, so a script notices a selector that matches nothing. */
		if (json_integer_value(json_object_get(ans, "count")) == 0) {
			error = gn_err_set(err, GN_ENOTFOUND,
					   "no active device matches selector '%s'; nothing assigned", selector);
			goto out;
		}
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
	if ((error = cli_request(&ans, ctx, "PUT", path, body, err))) {
		if (!cli_model_not_found(ctx, model, version, err))
			cli_err_about(err, "device '%s'", args->pos[0]);
		error = err->code;
		goto out;
	}
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
	const char *model = args->npos > 1 ? args->pos[1] : NULL;
	char *dev = device_path(args->pos[0]);
	json_t *ans = NULL;
	gn_buf path;
	int error;
	if (model && gn_model_name_check(model, err)) {
		err->code = CLI_EUSAGE;
		free(dev);
		return CLI_EUSAGE;
	}
	gn_buf_init(&path);
	gn_buf_printf(&path, "%s/desired", dev);
	if (model)
		cli_query_add(&path, "model", model);
	error = cli_request(&ans, ctx, "DELETE", path.data, NULL, err);
	if (error) {
		error = cli_err_about(err, "device '%s'", args->pos[0]);
	} else if (ctx->output != CLI_OUTPUT_JSON) {
		if (model)
			printf("device %s: assignment of %s removed; its agent unloads %s unless a deployment gives it\n",
			       args->pos[0], model, model);
		else
			printf("device %s: per-device assignments removed; what deployments give it stays\n",
			       args->pos[0]);
	}
	json_decref(ans);
	free(dev);
	gn_buf_cleanup(&path);
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
	if (error) {
		error = cli_err_about(err, "device '%s'", args->pos[0]);
	} else {
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

static int rename_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	const char *name = args->pos[1];
	char *path = device_path(args->pos[0]);
	json_t *body = json_pack("{s:s}", "name", name), *dev = NULL;
	int error = 0;
	/* The server's rules, checked first: a name that looks like an id could not be told apart. */
	if (!*name || strlen(name) > 128 || gn_is_uuid(name))
		error = gn_err_set(err, CLI_EUSAGE,
				   "a device name is 1 to 128 characters and not shaped like an id, not '%s'", name);
	else if (!(error = cli_request(&dev, ctx, "PATCH", path, body, err)) && ctx->output == CLI_OUTPUT_JSON)
		output_json(dev);
	else if (!error)
		printf("device %s is named %s\n", args->pos[0], name);
	json_decref(body);
	json_decref(dev);
	free(path);
	return error;
}

/* Runs run with the device of args->pos[0], given by id or by name (cli_device_id), as its id. */
static int on_device(int (*run)(const cli_ctx *, const cli_args *, gn_err *), const cli_ctx *ctx, const cli_args *args,
		     gn_err *err)
{
	char *id = NULL;
	cli_args a = *args;
	int error = cli_device_id(&id, ctx, args->pos[0], err);
	if (error)
		return error;
	a.pos = gn_calloc(args->npos, sizeof(*a.pos));
	memcpy(a.pos, args->pos, args->npos * sizeof(*a.pos));
	a.pos[0] = id;
	error = run(ctx, &a, err);
	free(a.pos);
	free(id);
	return error;
}

#define ON_DEVICE(run)                                                                    \
	static int run##_on_device(const cli_ctx *ctx, const cli_args *args, gn_err *err) \
	{                                                                                 \
		return on_device(run, ctx, args, err);                                    \
	}
ON_DEVICE(show_run)
ON_DEVICE(label_run)
ON_DEVICE(decommission_run)
ON_DEVICE(rotate_token_run)
ON_DEVICE(unassign_run)
ON_DEVICE(events_run)
ON_DEVICE(rename_run)

static int assign_run_on_device(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	/* With --selector, the first argument is MODEL@VERSION. */
	return cli_args_get(args, "selector") ? assign_run(ctx, args, err) : on_device(assign_run, ctx, args, err);
}

static const cli_opt assign_opts[] = {
	{"selector", 0, "S", "assign every active device whose labels match S instead of one DEVICE"},
};

static const cli_opt list_opts[] = {
	{"selector", 0, "S", "only devices whose labels match S, e.g. site=north,type!=camera,gpu,!old"},
	{"status", 0, "STATUS", "only active or decommissioned devices"},
	{"limit", 0, "N", "devices per page, 1 to 1000 (server default 100)"},
	{"all", 0, NULL, "follow the pages to the end instead of printing the first one"},
};

static const cli_cmd cmds[] = {
	{"list", "", "List devices (one page unless --all).", list_opts, GN_ARRAY_LEN(list_opts), 0, 0, list_run},
	{"show", "DEVICE", "Show one device: labels, facts, and per model what it should run, runs, and how it does.",
	 NULL, 0, 1, 1, show_run_on_device},
	{"label", "DEVICE key=value... key-...",
	 "Set labels (key=value) and remove them (key-) on a device; other labels stay.", NULL, 0, 2, SIZE_MAX,
	 label_run_on_device},
	{"decommission", "DEVICE", "Decommission a device: it can no longer authenticate.", NULL, 0, 1, 1,
	 decommission_run_on_device},
	{"rotate-token", "DEVICE",
	 "Revoke a device's bearer tokens on every replica at once; its agent gets a new one with its enrolled key.",
	 NULL, 0, 1, 1, rotate_token_run_on_device},
	{"assign", "DEVICE MODEL@VERSION | --selector S MODEL@VERSION",
	 "Set the version (or alias, resolved now) of one model a device should run, beside its others.", assign_opts,
	 GN_ARRAY_LEN(assign_opts), 1, 2, assign_run_on_device},
	{"unassign", "DEVICE [MODEL]",
	 "Remove a device's per-device assignment of MODEL, or of every model (deployments' models stay).", NULL, 0, 1,
	 2, unassign_run_on_device},
	{"events", "DEVICE", "Show a device's update attempts as it reported them, newest first.", NULL, 0, 1, 1,
	 events_run_on_device},
	{"rename", "DEVICE NAME", "Rename a device (names are unique among active devices).", NULL, 0, 2, 2,
	 rename_run_on_device},
};

const cli_group cmd_devices_group = {"devices", "Inspect and manage enrolled devices (DEVICE: an id or a name).", cmds,
				     GN_ARRAY_LEN(cmds)};
