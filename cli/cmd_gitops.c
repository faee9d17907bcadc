/* ganglion gitops: the fleet's desired state from git (status, plan, sync, suspend, resume), and
 * validate, which checks a checkout offline with the parser gangliond uses (lib/manifest.c). */
#include "cli.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fileio.h"
#include "manifest.h"

static char *fmt_commit(const json_t *v)
{
	const char *c = json_string_value(v);
	return gn_strdup(c ? c : "-");
}

/* Prints each {file, line, message} as FILE:LINE: MESSAGE (or the message alone). */
static void print_errors(FILE *f, const json_t *errors)
{
	size_t i;
	json_t *e;
	json_array_foreach(errors, i, e) {
		const char *file = json_string_value(json_object_get(e, "file"));
		json_int_t line = json_integer_value(json_object_get(e, "line"));
		const char *msg = json_string_value(json_object_get(e, "message"));
		if (file && line)
			fprintf(f, "  %s:%lld: %s\n", file, (long long)line, msg);
		else if (file)
			fprintf(f, "  %s: %s\n", file, msg);
		else
			fprintf(f, "  %s\n", msg);
	}
}

static char *fmt_changes(const json_t *row)
{
	gn_buf b;
	const char *key;
	json_t *v;
	gn_buf_init(&b);
	json_object_foreach((json_t *)json_object_get(row, "changes"), key, v) {
		char *from = output_value_dup(json_object_get(v, "from")),
		     *to = output_value_dup(json_object_get(v, "to"));
		gn_buf_printf(&b, "%s%s: %s -> %s", b.len ? "; " : "", key, strcmp(key, "strategy") == 0 ? "..." : from,
			      strcmp(key, "strategy") == 0 ? "..." : to);
		free(from);
		free(to);
	}
	return b.len ? gn_buf_detach(&b) : gn_strdup("-");
}

static const output_col plan_cols[] = {
	{"ACTION", "action", NULL}, {"KIND", "kind", NULL},         {"NAME", "name", NULL},
	{"FILE", "file", NULL},     {"CHANGES", NULL, fmt_changes},
};

static void print_status(const json_t *s)
{
	const json_t *applied = json_object_get(s, "applied"), *head = json_object_get(s, "head");
	const json_t *susp = json_object_get(s, "suspended");
	char *ac = fmt_commit(json_object_get(applied, "commit")), *hc = fmt_commit(json_object_get(head, "commit"));
	if (!json_is_true(json_object_get(s, "enabled"))) {
		printf("GitOps is off (gitops-repository is not set).\n");
		free(ac);
		free(hc);
		return;
	}
	printf("Repository:  %s\nBranch:      %s\nPath:        %s\n",
	       json_string_value(json_object_get(s, "repository")), json_string_value(json_object_get(s, "branch")),
	       json_string_value(json_object_get(s, "path")));
	printf("Status:      %s%s%s\n", json_string_value(json_object_get(s, "status")),
	       json_is_object(susp) ? ", suspended by " : "",
	       json_is_object(susp) ? json_string_value(json_object_get(susp, "by")) : "");
	printf("Applied:     %s", ac);
	if (json_is_string(json_object_get(applied, "signer")))
		printf(" signed by %s", json_string_value(json_object_get(applied, "signer")));
	printf("\nHead:        %s (checked %s)\n", hc,
	       json_is_string(json_object_get(head, "checked_at"))
		       ? json_string_value(json_object_get(head, "checked_at"))
		       : "never");
	printf("Objects:     %zu managed\n", json_array_size(json_object_get(s, "objects")));
	if (json_array_size(json_object_get(s, "errors"))) {
		printf("Errors:\n");
		print_errors(stdout, json_object_get(s, "errors"));
	}
	if (json_array_size(json_object_get(s, "plan"))) {
		printf("Pending plan:\n");
		output_table(json_object_get(s, "plan"), plan_cols, GN_ARRAY_LEN(plan_cols));
	}
	if (json_array_size(json_object_get(s, "drift"))) {
		static const output_col cols[] = {{"DRIFT", "drift", NULL},
						  {"KIND", "kind", NULL},
						  {"NAME", "name", NULL},
						  {"FILE", "file", NULL}};
		printf("Drift (changed outside git):\n");
		output_table(json_object_get(s, "drift"), cols, GN_ARRAY_LEN(cols));
	}
	free(ac);
	free(hc);
}

static int gitops_status_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	json_t *ans = NULL;
	(void)args;
	int error = cli_request(&ans, ctx, "GET", "/v1/gitops", NULL, err);
	if (!error) {
		if (ctx->output == CLI_OUTPUT_JSON)
			output_json(ans);
		else
			print_status(ans);
	}
	json_decref(ans);
	return error;
}

/* A sync whose commit was refused, or whose fetch failed, fails the command. */
static int sync_outcome(const json_t *s, gn_err *err)
{
	const char *status = json_string_value(json_object_get(s, "status"));
	const json_t *first = json_array_get(json_object_get(s, "errors"), 0);
	const char *msg = first ? json_string_value(json_object_get(first, "message")) : "";
	if (status && strcmp(status, "refused") == 0)
		return gn_err_set(err, GN_EINVAL, "the head commit was refused; the last applied state stays: %s", msg);
	if (status && strcmp(status, "failed") == 0)
		return gn_err_set(err, GN_EUNAVAIL, "the sync failed; the last applied state stays: %s", msg);
	return 0;
}

static int gitops_sync_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	json_t *ans = NULL, *body = json_object();
	if (cli_args_get(args, "force"))
		json_object_set_new(body, "force", json_true());
	if (cli_args_get(args, "allow-rewrite"))
		json_object_set_new(body, "allow_rewrite", json_true());
	int error = cli_request(&ans, ctx, "POST", "/v1/gitops/sync", body, err);
	if (!error) {
		if (ctx->output == CLI_OUTPUT_JSON)
			output_json(ans);
		else
			print_status(ans);
		error = sync_outcome(ans, err);
	}
	json_decref(ans);
	json_decref(body);
	return error;
}

static int gitops_plan_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	json_t *ans = NULL, *body = json_object();
	const char *ref = cli_args_get(args, "ref");
	if (ref)
		json_object_set_new(body, "ref", json_string(ref));
	int error = cli_request(&ans, ctx, "POST", "/v1/gitops/plan", body, err);
	json_decref(body);
	if (error)
		return error;
	const json_t *errors = json_object_get(ans, "errors"), *changes = json_object_get(ans, "changes");
	if (ctx->output == CLI_OUTPUT_JSON)
		output_json(ans);
	else {
		printf("%s at %.12s: %s\n", json_string_value(json_object_get(ans, "ref")),
		       json_string_value(json_object_get(ans, "commit")),
		       json_string_value(json_object_get(ans, "summary")));
		if (json_array_size(changes))
			output_table(changes, plan_cols, GN_ARRAY_LEN(plan_cols));
		else if (!json_array_size(errors))
			printf("no changes\n");
	}
	if (json_array_size(errors)) {
		fprintf(stderr, "the commit would be refused:\n");
		print_errors(stderr, errors);
		error = gn_err_set(err, GN_EINVAL, "%zu error(s)", json_array_size(errors));
	}
	json_decref(ans);
	return error;
}

static int suspend_run(const cli_ctx *ctx, const char *what, gn_err *err)
{
	json_t *ans = NULL;
	char *path = gn_asprintf("/v1/gitops/%s", what);
	int error = cli_request(&ans, ctx, "POST", path, NULL, err);
	if (!error) {
		if (ctx->output == CLI_OUTPUT_JSON)
			output_json(ans);
		else
			print_status(ans);
	}
	json_decref(ans);
	free(path);
	return error;
}

static int gitops_suspend_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	(void)args;
	return suspend_run(ctx, "suspend", err);
}

static int gitops_resume_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	(void)args;
	return suspend_run(ctx, "resume", err);
}

/* Adds every document under dir (rel: its path as the repository shows it) to set, as gangliond
 * reads a commit: dot-files and dot-directories are skipped. */
static int walk_dir(gn_manifest_set *set, const char *dir, const char *rel, size_t *count, gn_err *err)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int error = 0;
	if (!d)
		return gn_err_set(err, CLI_EUSAGE, "cannot read the directory %s", dir);
	while (!error && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char *path = gn_asprintf("%s/%s", dir, e->d_name);
		char *name = *rel ? gn_asprintf("%s/%s", rel, e->d_name) : gn_strdup(e->d_name);
		struct stat st;
		char *text = NULL;
		size_t len = 0;
		gn_err fe;
		if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
			error = walk_dir(set, path, name, count, err);
		else if (!gn_manifest_is_document(e->d_name))
			;
		else if (S_ISLNK(st.st_mode))
			gn_manifest_errors_add(&set->errors, name, 0, "a symbolic link: not followed");
		else if (gn_file_read(&text, &len, path, GN_MANIFEST_MAX_FILE, &fe))
			gn_manifest_errors_add(&set->errors, name, 0, "%s", fe.msg);
		else {
			gn_manifest_set_add(set, name, text, len);
			(*count)++;
		}
		free(text);
		free(path);
		free(name);
	}
	closedir(d);
	return error;
}

static int gitops_validate_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	gn_manifest_set set;
	size_t count = 0;
	memset(&set, 0, sizeof(set));
	int error = walk_dir(&set, args->pos[0], "", &count, err);
	if (!error)
		gn_manifest_set_finish(&set);
	if (!error && ctx->output == CLI_OUTPUT_JSON) {
		json_t *out = json_pack("{s:I,s:I,s:o}", "documents", (json_int_t)count, "objects", (json_int_t)set.n,
					"errors", gn_manifest_errors_json(&set.errors));
		output_json(out);
		json_decref(out);
	} else if (!error && !set.errors.n)
		printf("%zu document(s), %zu object(s): valid (the server also checks models, versions, strategies "
		       "and overlaps)\n",
		       count, set.n);
	if (!error && set.errors.n) {
		json_t *e = gn_manifest_errors_json(&set.errors);
		if (ctx->output != CLI_OUTPUT_JSON)
			print_errors(stderr, e);
		json_decref(e);
		error = gn_err_set(err, GN_EINVAL, "%zu error(s) in %s", set.errors.n + set.errors.more, args->pos[0]);
	}
	gn_manifest_set_cleanup(&set);
	return error;
}

static const cli_opt sync_opts[] = {
	{"force", 0, NULL, "plan and apply the head even if it is applied already (undoes drift)"},
	{"allow-rewrite", 0, NULL, "apply a head that does not descend from the applied commit (after a force push)"},
};
static const cli_opt plan_opts[] = {{"ref", 0, "REF", "a branch or ref to plan instead (e.g. a pull request's)"}};

static const cli_cmd gitops_cmds[] = {
	{"status", "", "Show the applied commit, the head, errors with file and line, the pending plan and drift.",
	 NULL, 0, 0, 0, gitops_status_run},
	{"plan", "", "Dry run: what the branch head (or --ref) would change; exit 7 if it would be refused.", plan_opts,
	 GN_ARRAY_LEN(plan_opts), 0, 0, gitops_plan_run},
	{"sync", "", "Fetch and apply the branch head now; exit 7 if it is refused, 6 if the fetch fails.", sync_opts,
	 GN_ARRAY_LEN(sync_opts), 0, 0, gitops_sync_run},
	{"suspend", "", "Stop syncing; objects from git become changeable through the API (shown as drift).", NULL, 0,
	 0, 0, gitops_suspend_run},
	{"resume", "", "Sync again; the next sync undoes drift.", NULL, 0, 0, 0, gitops_resume_run},
	{"validate", "DIR", "Check the documents of a checkout offline, as the server parses them (exit 7 on errors).",
	 NULL, 0, 1, 1, gitops_validate_run},
};

const cli_group cmd_gitops_group = {"gitops", "The fleet's desired state from a git repository (docs/GITOPS.md).",
				    gitops_cmds, GN_ARRAY_LEN(gitops_cmds)};
