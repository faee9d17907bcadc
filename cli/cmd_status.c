/* ganglion status: the fleet at a glance (GET /v1/status). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

/* "1.0.0 90/100, 2.0.0 10/0": each version, devices running it / told to run it. */
static char *fmt_versions(const json_t *row)
{
	json_t *v;
	size_t i;
	gn_buf b;
	gn_buf_init(&b);
	json_array_foreach(json_object_get(row, "versions"), i, v)
		gn_buf_printf(&b, "%s%s %lld/%lld", i ? ", " : "", json_string_value(json_object_get(v, "version")),
			      (long long)json_integer_value(json_object_get(v, "running")),
			      (long long)json_integer_value(json_object_get(v, "desired")));
	if (!b.len)
		gn_buf_puts(&b, "-");
	return gn_buf_detach(&b);
}

static const output_col model_cols[] = {
	{"MODEL", "model", NULL},
	{"DEVICES", "devices", NULL},
	{"VERSIONS (RUNNING/DESIRED)", NULL, fmt_versions},
	{"UPDATING", "updating", NULL},
	{"FAILING", "failing", NULL},
	{"STALE", "stale", NULL},
};

static const output_col failure_cols[] = {
	{"MODEL", "model", NULL},
	{"VERSION", "version", NULL},
	{"DEVICES", "devices", NULL},
	{"REASON", "reason", NULL},
};

static const output_col stale_cols[] = {{"DEVICES", "devices", NULL}, {"REASON", "reason", NULL}};

/* "running stage 1 of 3 (10 %)". */
static char *fmt_stage(const json_t *row)
{
	return gn_asprintf("%s, stage %lld of %lld (%lld %%)", json_string_value(json_object_get(row, "state")),
			   (long long)json_integer_value(json_object_get(row, "stage")) + 1,
			   (long long)json_integer_value(json_object_get(row, "stages")),
			   (long long)json_integer_value(json_object_get(row, "percent")));
}

/* "120/1000": devices told the new version, of the deployment's. */
static char *fmt_told(const json_t *row)
{
	return gn_asprintf("%lld/%lld", (long long)json_integer_value(json_object_get(row, "told_new")),
			   (long long)json_integer_value(json_object_get(row, "devices")));
}

static const output_col rollout_cols[] = {
	{"ID", "id", NULL},         {"DEPLOYMENT", "deployment", NULL},
	{"MODEL", "model", NULL},   {"FROM", "from_version", NULL},
	{"TO", "to_version", NULL}, {"STATE", NULL, fmt_stage},
	{"ON NEW", NULL, fmt_told}, {"REASON", "reason", NULL},
};

/* Every model's failures as rows of one table, each with its model. New. */
static json_t *failure_rows(const json_t *models)
{
	json_t *rows = json_array(), *m, *f;
	size_t i, k;
	json_array_foreach(models, i, m)
		json_array_foreach(json_object_get(m, "failures"), k, f) {
			json_t *row = json_deep_copy(f);
			json_object_set(row, "model", json_object_get(m, "model"));
			json_array_append_new(rows, row);
		}
	return rows;
}

static void print_status(const json_t *st)
{
	json_t *dev = json_object_get(st, "devices"), *models = json_object_get(st, "models");
	json_t *rollouts = json_object_get(st, "rollouts"), *stale = json_object_get(st, "stale");
	printf("Devices: %lld active (%lld failing, %lld stale: not seen for %llds), %lld decommissioned\n",
	       (long long)json_integer_value(json_object_get(dev, "active")),
	       (long long)json_integer_value(json_object_get(dev, "failing")),
	       (long long)json_integer_value(json_object_get(dev, "stale")),
	       (long long)json_integer_value(json_object_get(st, "stale_after")),
	       (long long)json_integer_value(json_object_get(dev, "decommissioned")));
	printf("\n");
	if (json_array_size(models))
		output_table(models, model_cols, GN_ARRAY_LEN(model_cols));
	else
		printf("No model is deployed or reported.\n");
	json_t *fails = failure_rows(models);
	if (json_array_size(fails)) {
		printf("\nFailing, by their last update:\n");
		output_table(fails, failure_cols, GN_ARRAY_LEN(failure_cols));
	}
	json_decref(fails);
	if (json_array_size(stale)) {
		printf("\nStale:\n");
		output_table(stale, stale_cols, GN_ARRAY_LEN(stale_cols));
	}
	printf("\n");
	if (json_array_size(rollouts)) {
		printf("Rollouts in progress:\n");
		output_table(rollouts, rollout_cols, GN_ARRAY_LEN(rollout_cols));
	} else {
		printf("No rollout in progress.\n");
	}
}

static int status_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	json_t *st = NULL;
	(void)args;
	int error = cli_request(&st, ctx, "GET", "/v1/status", NULL, err);
	if (!error) {
		if (ctx->output == CLI_OUTPUT_JSON)
			output_json(st);
		else
			print_status(st);
	}
	json_decref(st);
	return error;
}

static const cli_cmd status_cmds[] = {
	{"status", "",
	 "The fleet at a glance: per model, devices running and told each version, updating, failing (and why) "
	 "and stale; rollouts in progress.",
	 NULL, 0, 0, 0, status_run},
};

const cli_group cmd_status_group = {"status", "Show the fleet at a glance.", status_cmds, GN_ARRAY_LEN(status_cmds)};
