/* Helpers every ganglion command shares: exit codes, argument parsing and help, value parsing,
 * and requests to gangliond. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
	{CLI_EUSAGE, CLI_EXIT_USAGE},      {GN_EAUTH, CLI_EXIT_AUTH},
	{GN_EFORBIDDEN, CLI_EXIT_AUTH},    {GN_ENOTFOUND, CLI_EXIT_NOTFOUND},
	{GN_ECONFLICT, CLI_EXIT_CONFLICT}, {GN_EUNAVAIL, CLI_EXIT_UNAVAIL},
	{GN_EINVAL, CLI_EXIT_INVALID},     {GN_ETOOBIG, CLI_EXIT_INVALID},
	{GN_EMISMATCH, CLI_EXIT_INVALID},  {CLI_ENOTGANGLION, CLI_EXIT_NOTGANGLION},
};

static const char *const exit_text[] = {
	[CLI_EXIT_OK] = "success",
	[CLI_EXIT_ERROR] = "any other error",
	[CLI_EXIT_USAGE] = "usage error: bad command, option, argument, config or token file",
	[CLI_EXIT_AUTH] = "authentication or authorisation failed (HTTP 401/403)",
	[CLI_EXIT_NOTFOUND] = "not found (HTTP 404)",
	[CLI_EXIT_CONFLICT] = "conflict (HTTP 409)",
	[CLI_EXIT_UNAVAIL] = "server unreachable, timed out, or failing (HTTP 5xx)",
	[CLI_EXIT_INVALID] = "request rejected by the server as invalid (HTTP 400/413/422)",
	[CLI_EXIT_NOTGANGLION] = "the server at --url is not gangliond (its answer is not JSON)",
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

const char *cli_nearest(const char *word, const char *const *names, size_t n)
{
	/* Two edits catch most typos (a dropped, doubled or swapped letter) without wild guesses. */
	return gn_nearest(word, names, n, 2);
}

/* Fails for --name (len bytes of name) that opts lacks, suggesting the nearest option. */
static int unknown_option(const cli_opt *opts, size_t nopts, const char *name, size_t len, gn_err *err)
{
	const char **names = gn_calloc(nopts + 1, sizeof(*names));
	char *given = gn_strndup(name, len);
	for (size_t i = 0; i < nopts; i++)
		names[i] = opts[i].name;
	names[nopts] = "help";
	const char *near = cli_nearest(given, names, nopts + 1);
	int error = near ? gn_err_set(err, CLI_EUSAGE, "unknown option --%s (did you mean --%s?)", given, near)
			 : gn_err_set(err, CLI_EUSAGE, "unknown option --%s", given);
	free(given);
	free(names);
	return error;
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
				error = unknown_option(opts, nopts, a + 2, len, err);
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

bool cli_group_bare(const cli_group *g)
{
	return g->n == 1 && strcmp(g->cmds[0].name, g->name) == 0;
}

void cli_cmd_help(FILE *f, const cli_group *group, const cli_cmd *cmd)
{
	bool bare = cli_group_bare(group);
	fprintf(f, "Usage: ganglion %s%s%s%s%s%s\n\n%s\n\nOptions:\n", group->name, bare ? "" : " ",
		bare ? "" : cmd->name, cmd->nopts ? " [options]" : "", cmd->synopsis[0] ? " " : "", cmd->synopsis,
		cmd->summary);
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
		.ca_file = ctx->ca_file,
		.client_cert = ctx->client_cert,
		.client_key = ctx->client_key,
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

/* Whether a Content-Type is JSON: application/json, or application/...+json (problem+json). */
static bool is_json_type(const char *ct)
{
	size_t n = strcspn(ct, "; \t");
	if (n < 16 || strncasecmp(ct, "application/", 12) != 0)
		return false;
	return (n == 16 && strncasecmp(ct + 12, "json", 4) == 0) || strncasecmp(ct + n - 5, "+json", 5) == 0;
}

/* Writes " (page title 'T')" for an HTML page that has a title, else "", with control characters
 * and quotes replaced: enough to recognise the page, never the page itself. */
static void page_title(char *out, size_t n, const gn_buf *body)
{
	const char *s = body->data, *end = body->data + body->len, *open = NULL, *start, *stop;
	out[0] = '\0';
	for (const char *p = s; p && p + 7 <= end && !open; p = memchr(p + 1, '<', (size_t)(end - p - 1)))
		if (strncasecmp(p, "<title>", 7) == 0)
			open = p;
	if (!open)
		return;
	start = open + 7;
	stop = memchr(start, '<', (size_t)(end - start));
	if (!stop)
		stop = end;
	while (start < stop && strchr(" \t\r\n", *start))
		start++;
	while (stop > start && strchr(" \t\r\n", stop[-1]))
		stop--;
	if (stop == start)
		return;
	size_t len = (size_t)(stop - start) > 80 ? 80 : (size_t)(stop - start);
	char title[81];
	for (size_t i = 0; i < len; i++)
		title[i] = ((unsigned char)start[i] < ' ' || start[i] == 0x7f || start[i] == '\'') ? '?' : start[i];
	title[len] = '\0';
	snprintf(out, n, " (page title '%s')", title);
}

/* Whether libmicrohttpd itself may answer with this status, before gangliond sees the request
 * (its refusals carry no Content-Type): any other error without one is from another server. */
static bool mhd_status(long status)
{
	static const long own[] = {400, 413, 414, 417, 431, 500, 501, 503, 505};
	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
		if (own[i] == status)
			return true;
	return false;
}

/* Fails for an answer in a media type gangliond never sends (an HTML page, say): the URL points at
 * some other web server (CLI_ENOTGANGLION), or, with a 5xx, a proxy in front of gangliond failed
 * (GN_EUNAVAIL). The page is never printed. Returns 0 for JSON, and for no Content-Type at all
 * unless it is an error: libmicrohttpd's own refusals (414, 431...) come without one, and their
 * HTML is left out of the message too; any other error status without one is another server's. */
static int check_foreign(const cli_ctx *ctx, const char *method, const char *url, const gn_http_resp *resp, gn_err *err)
{
	const char *ct = resp->content_type;
	char title[128], type[64];
	if (ct && *ct && is_json_type(ct))
		return 0;
	if ((!ct || !*ct) && resp->status >= 400 && !mhd_status(resp->status)) {
		page_title(title, sizeof(title), &resp->body);
		return gn_err_set(err, CLI_ENOTGANGLION,
				  "%s is not gangliond: %s %s answered HTTP %ld without a Content-Type%s; gangliond "
				  "answers its errors in problem+json; check --url (GANGLION_URL, or url in the "
				  "config file)",
				  ctx->url, method, url, resp->status, title);
	}
	if (!ct || !*ct) {
		gn_http_resp no_body = *resp;
		no_body.body.len = 0;
		int error = gn_http_check(&no_body, err);
		if (error) {
			page_title(title, sizeof(title), &resp->body);
			char why[sizeof(err->msg)];
			snprintf(why, sizeof(why), "%s", err->msg);
			gn_err_set(err, error, "%s %s: %s%s", method, url, why, title);
		}
		return error;
	}
	page_title(title, sizeof(title), &resp->body);
	snprintf(type, sizeof(type), "%.*s", (int)strcspn(ct, "; \t"), ct);
	for (char *p = type; *p; p++)
		if ((unsigned char)*p < ' ' || *p == 0x7f)
			*p = '?';
	if (resp->status >= 500)
		return gn_err_set(
			err, GN_EUNAVAIL,
			"%s %s: HTTP %ld with %s%s instead of gangliond's problem+json: is a proxy in front of "
			"gangliond failing?",
			method, url, resp->status, type, title);
	return gn_err_set(err, CLI_ENOTGANGLION,
			  "%s is not gangliond: %s %s answered HTTP %ld with %s%s, not JSON; check --url "
			  "(GANGLION_URL, or url in the config file)",
			  ctx->url, method, url, resp->status, type, title);
}

int cli_answer(json_t **out, const cli_ctx *ctx, const char *method, const char *url, const gn_http_resp *resp,
	       gn_err *err)
{
	int error = 0;

	*out = NULL;
	if ((error = check_foreign(ctx, method, url, resp, err)))
		return error;
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

/* The devices named name, active only or all (at most a page: names are meant to be few). New. */
static int devices_named(json_t **out, const cli_ctx *ctx, const char *name, bool active, gn_err *err)
{
	gn_buf path;
	gn_buf_init(&path);
	gn_buf_puts(&path, "/v1/devices");
	cli_query_add(&path, "name", name);
	if (active)
		cli_query_add(&path, "status", "active");
	int error = cli_request(out, ctx, "GET", path.data, NULL, err);
	gn_buf_cleanup(&path);
	return error;
}

int cli_device_id(char **out, const cli_ctx *ctx, const char *arg, gn_err *err)
{
	json_t *page = NULL, *items;
	int error = 0;
	*out = NULL;
	if (gn_is_uuid(arg)) {
		*out = gn_strdup(arg);
		return 0;
	}
	if (!*arg)
		return gn_err_set(err, CLI_EUSAGE, "a device id or name is empty");
	if ((error = devices_named(&page, ctx, arg, true, err)))
		goto out;
	if (json_array_size(json_object_get(page, "items")) == 0) {
		json_decref(page);
		page = NULL;
		if ((error = devices_named(&page, ctx, arg, false, err)))
			goto out;
	}
	items = json_object_get(page, "items");
	if (json_array_size(items) == 1) {
		*out = gn_strdup(json_string_value(json_object_get(json_array_get(items, 0), "id")));
	} else if (json_array_size(items) == 0) {
		error = gn_err_set(err, GN_ENOTFOUND, "no device is named '%s' (give its name or its id)", arg);
	} else {
		gn_buf ids;
		json_t *d;
		size_t i;
		gn_buf_init(&ids);
		json_array_foreach(items, i, d)
			gn_buf_printf(&ids, "%s%s (%s)", i ? ", " : "", json_string_value(json_object_get(d, "id")),
				      json_string_value(json_object_get(d, "status")));
		error = gn_err_set(err, CLI_EUSAGE, "%zu devices are named '%s': %s; give the id of one",
				   json_array_size(items), arg, ids.data);
		gn_buf_cleanup(&ids);
	}
out:
	json_decref(page);
	return error;
}

int cli_device_path(char **out, const cli_ctx *ctx, const char *arg, const char *suffix, gn_err *err)
{
	char *id = NULL;
	int error = cli_device_id(&id, ctx, arg, err);
	*out = NULL;
	if (!error) {
		char *esc = gn_http_escape(id);
		*out = gn_asprintf("/v1/devices/%s%s", esc, suffix);
		free(esc);
	}
	free(id);
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

int cli_err_about(gn_err *err, const char *fmt, ...)
{
	char what[256], msg[sizeof(err->msg)];
	va_list ap;
	if (err->code != GN_ENOTFOUND)
		return err->code;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(msg, sizeof(msg), "%s", err->msg);
	return gn_err_set(err, GN_ENOTFOUND, "%s: %s", what, msg);
}

/* Says that no model is called name (HTTP 404), with the nearest name among the models the token
 * may list: "did you mean". */
static void no_such_model(const cli_ctx *ctx, const char *name, gn_err *err)
{
	json_t *list = NULL, *item;
	gn_err ignored = {0};
	const char **names = NULL, *near = NULL;
	size_t n = 0, i;

	if (cli_list(&list, ctx, "/v1/models", true, &ignored) == 0) {
		names = gn_calloc(json_array_size(json_object_get(list, "items")) + 1, sizeof(*names));
		json_array_foreach(json_object_get(list, "items"), i, item) {
			if (json_is_string(json_object_get(item, "name")))
				names[n++] = json_string_value(json_object_get(item, "name"));
		}
		near = cli_nearest(name, names, n);
	}
	if (near)
		gn_err_set(err, GN_ENOTFOUND, "no model '%s' (HTTP 404); did you mean '%s'?", name, near);
	else
		gn_err_set(err, GN_ENOTFOUND, "no model '%s' (HTTP 404)%s", name,
			   list && !n ? "; none is published yet" : "");
	free(names);
	json_decref(list);
}

/* How many of a model's versions a message lists, newest first. */
#define VERSIONS_SHOWN 5

/* Says that model m (the server's object) has no version or alias `want` (HTTP 404), listing what
 * it has. */
static void no_such_version(const json_t *m, const char *model, const char *want, gn_err *err)
{
	const json_t *versions = json_object_get(m, "versions"), *v;
	const char *k;
	size_t i, n = json_array_size(versions);
	gn_buf b;

	gn_buf_init(&b);
	gn_buf_printf(&b, "model '%s' has no version or alias '%s' (HTTP 404)", model, want);
	json_array_foreach(versions, i, v) {
		if (i == VERSIONS_SHOWN)
			break;
		gn_buf_printf(&b, "%s%s", i ? ", " : "; its newest versions: ", gn_json_str(v, "version"));
	}
	if (n > VERSIONS_SHOWN)
		gn_buf_printf(&b, " (%zu in all)", n);
	i = 0;
	json_object_foreach((json_t *)json_object_get(m, "aliases"), k, v) {
		gn_buf_printf(&b, "%s%s", i++ ? ", " : "; aliases: ", k);
	}
	gn_err_set(err, GN_ENOTFOUND, "%s", b.data);
	gn_buf_cleanup(&b);
}

bool cli_model_not_found(const cli_ctx *ctx, const char *model, const char *version, gn_err *err)
{
	json_t *m = NULL;
	gn_err lookup = {0};
	bool rewritten = false;

	if (err->code != GN_ENOTFOUND)
		return false;
	char *esc = gn_http_escape(model), *path = gn_asprintf("/v1/models/%s", esc);
	int rc = cli_request(&m, ctx, "GET", path, NULL, &lookup);
	if (rc == GN_ENOTFOUND) {
		no_such_model(ctx, model, err);
		rewritten = true;
	} else if (rc == 0 && version) {
		/* The wanted one among its versions and aliases means the 404 was not about it. */
		const json_t *v;
		size_t i;
		bool found = json_object_get(json_object_get(m, "aliases"), version) != NULL;
		json_array_foreach(json_object_get(m, "versions"), i, v) {
			const char *s = gn_json_str(v, "version");
			found = found || (s && strcmp(s, version) == 0);
		}
		if (!found) {
			no_such_version(m, model, version, err);
			rewritten = true;
		}
	}
	free(path);
	free(esc);
	json_decref(m);
	return rewritten;
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
