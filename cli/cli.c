/* Helpers every ganglion command shares: exit codes, argument parsing and help, value parsing,
 * and requests to gangliond. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "http_client.h"
#include "json.h"
#include "selector.h"

/* Answers bigger than this are refused; a page of 1000 devices with facts fits easily. */
#define MAX_RESPONSE ((size_t)64 * 1024 * 1024)
#define MAX_JSON_DEPTH 64
/* A server that keeps handing out cursors is broken; stop rather than loop forever. */
#define MAX_PAGES 100000

/* The one table from error code to exit code. */
static const struct {
	int code;
	int exit;
} exit_map[] = {
	{CLI_EUSAGE, CLI_EXIT_USAGE},      {GN_EAUTH, CLI_EXIT_AUTH},         {GN_EFORBIDDEN, CLI_EXIT_AUTH},
	{GN_ENOTFOUND, CLI_EXIT_NOTFOUND}, {GN_ECONFLICT, CLI_EXIT_CONFLICT}, {GN_EUNAVAIL, CLI_EXIT_UNAVAIL},
	{GN_EINVAL, CLI_EXIT_INVALID},     {GN_ETOOBIG, CLI_EXIT_INVALID},
};

static const char *const exit_text[] = {
	[CLI_EXIT_OK] = "success",
	[CLI_EXIT_ERROR] = "any other error",
	[CLI_EXIT_USAGE] = "usage error: bad command, option, argument, config or token file",
	[CLI_EXIT_AUTH] = "authentication or authorisation failed (HTTP 401/403)",
	[CLI_EXIT_NOTFOUND] = "not found (HTTP 404)",
	[CLI_EXIT_CONFLICT] = "conflict (HTTP 409)",
	[CLI_EXIT_UNAVAIL] = "server unreachable, timed out, or failing (HTTP 5xx)",
	[CLI_EXIT_INVALID] = "request rejected by the server as invalid (HTTP 400/413)",
};

int cli_exit_code(int code)
{
	if (code == 0)
		return CLI_EXIT_OK;
	for (size_t i = 0; i < GN_ARRAY_LEN(exit_map); i++)
		if (exit_map[i].code == code)
			return exit_map[i].exit;
	return CLI_EXIT_ERROR;
}

void cli_exit_help(FILE *f)
{
	for (size_t i = 0; i < GN_ARRAY_LEN(exit_text); i++)
		fprintf(f, "  %zu  %s\n", i, exit_text[i]);
}

static const cli_opt *find_long(const cli_opt *opts, size_t n, const char *name, size_t len, size_t *idx)
{
	for (size_t i = 0; i < n; i++) {
		if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0) {
			*idx = i;
			return &opts[i];
		}
	}
	return NULL;
}

static const cli_opt *find_short(const cli_opt *opts, size_t n, char c, size_t *idx)
{
	for (size_t i = 0; i < n; i++) {
		if (opts[i].short_name && opts[i].short_name == c) {
			*idx = i;
			return &opts[i];
		}
	}
	return NULL;
}

static void args_give(cli_args *a, size_t opt, const char *value)
{
	a->given = gn_realloc(a->given, (a->ngiven + 1) * sizeof(*a->given));
	a->given[a->ngiven].opt = opt;
	a->given[a->ngiven].value = value;
	a->ngiven++;
}

int cli_args_parse(cli_args *out, const cli_opt *opts, size_t nopts, int argc, char **argv, bool stop_at_positional,
		   gn_err *err)
{
	int error = 0, i;
	bool only_pos = false;

	memset(out, 0, sizeof(*out));
	out->opts = opts;
	out->nopts = nopts;
	out->pos = gn_calloc((size_t)argc + 1, sizeof(*out->pos));
	for (i = 0; i < argc; i++) {
		char *a = argv[i];
		const cli_opt *o = NULL;
		const char *value = NULL;
		size_t idx = 0;

		if (only_pos || a[0] != '-' || a[1] == '\0') {
			if (stop_at_positional)
				break;
			out->pos[out->npos++] = a;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			only_pos = true;
			if (stop_at_positional) {
				i++;
				break;
			}
			continue;
		}
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			out->help = true;
			continue;
		}
		if (a[1] == '-') {
			const char *eq = strchr(a + 2, '=');
			size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
			if (!(o = find_long(opts, nopts, a + 2, len, &idx))) {
				error = gn_err_set(err, CLI_EUSAGE, "unknown option %.*s", (int)(len + 2), a);
				goto out;
			}
			if (eq && !o->arg) {
				error = gn_err_set(err, CLI_EUSAGE, "option --%s takes no value", o->name);
				goto out;
			}
			if (eq)
				value = eq + 1;
		} else {
			if (!(o = find_short(opts, nopts, a[1], &idx))) {
				error = gn_err_set(err, CLI_EUSAGE, "unknown option -%c", a[1]);
				goto out;
			}
			if (a[2] && !o->arg) {
				error = gn_err_set(err, CLI_EUSAGE, "option -%c takes no value", o->short_name);
				goto out;
			}
			if (a[2])
				value = a + 2;
		}
		if (!o->arg) {
			value = "true";
		} else if (!value) {
			if (i + 1 >= argc) {
				error = gn_err_set(err, CLI_EUSAGE, "option --%s needs a value (%s)", o->name, o->arg);
				goto out;
			}
			value = argv[++i];
		}
		args_give(out, idx, value);
	}
	out->next = i;
out:
	if (error)
		cli_args_cleanup(out);
	return error;
}

void cli_args_cleanup(cli_args *args)
{
	free(args->pos);
	free(args->given);
	args->pos = NULL;
	args->given = NULL;
	args->npos = args->ngiven = 0;
}

const char *cli_args_nth(const cli_args *args, const char *name, size_t i)
{
	for (size_t k = 0; k < args->ngiven; k++) {
		if (strcmp(args->opts[args->given[k].opt].name, name) != 0)
			continue;
		if (i-- == 0)
			return args->given[k].value;
	}
	return NULL;
}

const char *cli_args_get(const cli_args *args, const char *name)
{
	const char *last = NULL;
	for (size_t k = 0; k < args->ngiven; k++)
		if (strcmp(args->opts[args->given[k].opt].name, name) == 0)
			last = args->given[k].value;
	return last;
}

void cli_opts_help(FILE *f, const cli_opt *opts, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char flag[96];
		const cli_opt *o = &opts[i];
		int k = 0;
		if (o->short_name)
			k = snprintf(flag, sizeof(flag), "-%c, ", o->short_name);
		snprintf(flag + k, sizeof(flag) - (size_t)k, "--%s%s%s", o->name, o->arg ? " " : "",
			 o->arg ? o->arg : "");
		fprintf(f, "  %-28s %s\n", flag, o->help);
	}
	fprintf(f, "  %-28s %s\n", "-h, --help", "show this help");
}

void cli_cmd_help(FILE *f, const cli_group *group, const cli_cmd *cmd)
{
	fprintf(f, "Usage: ganglion %s %s%s%s%s\n\n%s\n\nOptions:\n", group->name, cmd->name,
		cmd->nopts ? " [options]" : "", cmd->synopsis[0] ? " " : "", cmd->synopsis, cmd->summary);
	cli_opts_help(f, cmd->opts, cmd->nopts);
	fputs("\nGlobal options (--url, --token, -o, ...) are accepted too; see 'ganglion --help'.\n", f);
}

void cli_group_help(FILE *f, const cli_group *group)
{
	int w = 0;
	fprintf(f, "Usage: ganglion %s COMMAND [options]\n\n%s\n\nCommands:\n", group->name, group->summary);
	for (size_t i = 0; i < group->n; i++) {
		int k = (int)(strlen(group->cmds[i].name) + 1 + strlen(group->cmds[i].synopsis));
		w = k > w ? k : w;
	}
	for (size_t i = 0; i < group->n; i++) {
		char *head = gn_asprintf("%s %s", group->cmds[i].name, group->cmds[i].synopsis);
		fprintf(f, "  %-*s   %s\n", w, head, group->cmds[i].summary);
		free(head);
	}
	fprintf(f, "\nRun 'ganglion %s COMMAND --help' for a command's options.\n", group->name);
}

int cli_parse_int(int64_t *out, const char *s, const char *what, int64_t min, int64_t max, gn_err *err)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (!*s || *end || errno || s[0] == ' ' || v < min || v > max)
		return gn_err_set(err, CLI_EUSAGE, "%s must be an integer from %lld to %lld, not '%s'", what,
				  (long long)min, (long long)max, s);
	*out = v;
	return 0;
}

int cli_parse_duration(int64_t *out, const char *s, const char *what, gn_err *err)
{
	static const struct {
		char unit;
		int64_t mult;
	} units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}, {'w', 7 * 86400}};
	char *end;
	int64_t mult = 0;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (end != s && s[0] >= '0' && s[0] <= '9' && !errno) {
		if (!*end)
			mult = 1;
		for (size_t i = 0; i < GN_ARRAY_LEN(units) && *end && !end[1]; i++)
			if (*end == units[i].unit)
				mult = units[i].mult;
	}
	if (!mult || v <= 0 || v > INT64_MAX / mult / 2)
		return gn_err_set(err, CLI_EUSAGE,
				  "%s must be a positive duration such as 3600, 90s, 30m, 1h, 7d or 2w, not '%s'", what,
				  s);
	*out = v * mult;
	return 0;
}

int cli_label_add(json_t *labels, const char *arg, bool allow_remove, gn_err *err)
{
	int error = 0;
	const char *eq = strchr(arg, '=');
	size_t len = strlen(arg);
	char *key = NULL;
	bool remove = !eq && allow_remove && len > 0 && arg[len - 1] == '-';

	if (!eq && !remove) {
		error = gn_err_set(err, CLI_EUSAGE, "expected key=value%s, not '%.200s'",
				   allow_remove ? " or key-" : "", arg);
		goto out;
	}
	key = gn_strndup(arg, eq ? (size_t)(eq - arg) : len - 1);
	if ((error = gn_label_key_check(key, err)) || (eq && (error = gn_label_value_check(eq + 1, err)))) {
		err->code = error = CLI_EUSAGE;
		goto out;
	}
	if (json_object_get(labels, key)) {
		error = gn_err_set(err, CLI_EUSAGE, "label '%s' given more than once", key);
		goto out;
	}
	json_object_set_new(labels, key, eq ? json_string(eq + 1) : json_null());
out:
	free(key);
	return error;
}

void cli_query_add(gn_buf *path, const char *key, const char *value)
{
	char *esc = gn_http_escape(value);
	gn_buf_printf(path, "%c%s=%s", path->data && strchr(path->data, '?') ? '&' : '?', key, esc);
	free(esc);
}

int cli_request(json_t **out, const cli_ctx *ctx, const char *method, const char *path, const json_t *body, gn_err *err)
{
	int error = 0;
	gn_http_resp resp = {0};
	char *url = gn_asprintf("%s%s", ctx->url, path);
	char *text = body ? gn_json_dump(body) : NULL;
	gn_http_req req = {
		.method = method,
		.url = url,
		.token = ctx->token,
		.body = text,
		.body_len = text ? strlen(text) : 0,
		.timeout_s = ctx->timeout_s,
		.max_response = MAX_RESPONSE,
	};

	*out = NULL;
	if ((error = gn_http_do(&resp, &req, err))) {
		if (error == GN_ETOOBIG) /* our own limit, not a 413 from the server */
			err->code = error = GN_ERROR;
		goto out;
	}
	error = cli_answer(out, ctx, method, url, &resp, err);
out:
	gn_http_resp_cleanup(&resp);
	free(text);
	free(url);
	return error;
}

int cli_answer(json_t **out, const cli_ctx *ctx, const char *method, const char *url, const gn_http_resp *resp,
	       gn_err *err)
{
	int error = 0;

	*out = NULL;
	if ((error = gn_http_check(resp, err))) {
		if (error == GN_EAUTH && !ctx->token) {
			char why[sizeof(err->msg)];
			snprintf(why, sizeof(why), "%s", err->msg);
			gn_err_set(err, error, "%s; no token given (use --token, GANGLION_TOKEN or the config file)",
				   why);
		}
		return error;
	}
	if (resp->body.len == 0)
		return 0;
	if ((error = gn_json_parse(out, resp->body.data, resp->body.len, MAX_JSON_DEPTH, err))) {
		char why[sizeof(err->msg)];
		snprintf(why, sizeof(why), "%s", err->msg);
		error = gn_err_set(err, GN_ERROR, "%s %s: the server's answer is not JSON: %s", method, url, why);
	}
	return error;
}

int cli_list(json_t **out, const cli_ctx *ctx, const char *path, bool all, gn_err *err)
{
	int error = 0;
	json_t *page = NULL, *merged = NULL;
	char *cursor = NULL, *url = NULL;
	const char *sep = strchr(path, '?') ? "&" : "?";

	*out = NULL;
	if (all)
		merged = json_pack("{s:[]}", "items");
	for (long pages = 0;; pages++) {
		json_t *items;
		const char *next;
		if (pages >= MAX_PAGES) {
			error = gn_err_set(err, GN_ERROR, "GET %s: gave up after %d pages", path, MAX_PAGES);
			goto out;
		}
		if (cursor) {
			char *esc = gn_http_escape(cursor);
			free(url);
			url = gn_asprintf("%s%scursor=%s", path, sep, esc);
			free(esc);
		}
		json_decref(page);
		page = NULL;
		if ((error = cli_request(&page, ctx, "GET", url ? url : path, NULL, err)))
			goto out;
		items = json_object_get(page, "items");
		if (!json_is_array(items)) {
			error = gn_err_set(err, GN_ERROR, "GET %s: the server's answer has no \"items\" array", path);
			goto out;
		}
		if (!all)
			break;
		json_array_extend(json_object_get(merged, "items"), items);
		next = json_string_value(json_object_get(page, "next_cursor"));
		if (!next || !*next)
			break;
		if (cursor && strcmp(cursor, next) == 0) {
			error = gn_err_set(err, GN_ERROR, "GET %s: the server returned the same cursor twice", path);
			goto out;
		}
		free(cursor);
		cursor = gn_strdup(next);
	}
	if (all) {
		*out = merged;
		merged = NULL;
	} else {
		*out = page;
		page = NULL;
	}
out:
	json_decref(page);
	json_decref(merged);
	free(cursor);
	free(url);
	return error;
}

int cli_read_json_file(json_t **out, const char *path, size_t max, gn_err *err)
{
	int error = 0;
	FILE *f = fopen(path, "re");
	gn_buf b;
	char chunk[65536];
	size_t n;

	gn_buf_init(&b);
	if (!f) {
		error = gn_err_set(err, CLI_EUSAGE, "cannot open %s: %s", path, strerror(errno));
		goto out;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (n > max - b.len) {
			error = gn_err_set(err, CLI_EUSAGE, "%s is larger than %zu bytes", path, max);
			goto out;
		}
		gn_buf_append(&b, chunk, n);
	}
	if (ferror(f)) {
		error = gn_err_set(err, CLI_EUSAGE, "cannot read %s: %s", path, strerror(errno));
		goto out;
	}
	if (b.len == 0) {
		error = gn_err_set(err, CLI_EUSAGE, "%s is empty", path);
		goto out;
	}
	if ((error = gn_json_parse(out, b.data, b.len, MAX_JSON_DEPTH, err))) {
		char why[sizeof(err->msg)];
		snprintf(why, sizeof(why), "%s", err->msg);
		error = gn_err_set(err, CLI_EUSAGE, "%s: %s", path, why);
	}
out:
	if (f)
		fclose(f);
	gn_buf_cleanup(&b);
	return error;
}

int cli_write_json(const char *path, const json_t *v, gn_err *err)
{
	int error = 0;
	char *text = json_dumps(v, JSON_INDENT(2));
	gn_buf b;

	if (!text) /* only on allocation failure */
		abort();
	gn_buf_init(&b);
	gn_buf_printf(&b, "%s\n", text);
	if (path)
		error = gn_file_write_atomic(path, b.data, b.len, 0644, err);
	else if (fwrite(b.data, 1, b.len, stdout) != b.len)
		error = gn_err_set(err, GN_ERROR, "cannot write output: %s", strerror(errno));
	free(text);
	gn_buf_cleanup(&b);
	return error;
}

int cli_list_print(const cli_ctx *ctx, const char *path, const struct output_col *cols, size_t ncols, gn_err *err)
{
	json_t *list = NULL;
	int error = cli_list(&list, ctx, path, true, err);
	if (!error) {
		if (ctx->output == CLI_OUTPUT_JSON)
			output_json(list);
		else
			output_table(json_object_get(list, "items"), cols, ncols);
	}
	json_decref(list);
	return error;
}
