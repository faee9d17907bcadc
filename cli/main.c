/* ganglion: the command-line client of gangliond. Resolves the server URL and token from flags,
 * environment and config file, then runs one command from the dispatch table. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "fileio.h"
#include "manpage.h"
#include "version.h"

#define TOKEN_FILE_MAX 4096

typedef struct cli_conf {
	char *url;
	char *token;
	char *output;
	int64_t timeout;
	char *ca_file;
	char *client_cert;
	char *client_key;
	char *config;
} cli_conf;

/* The one settings table: it drives the config file, GANGLION_* variables, the global flags
 * and the option list in --help. `config` can be a flag or variable but not a file key. */
static const gn_conf_opt conf_opts[] = {
	{"url", GN_CONF_STRING, offsetof(cli_conf, url), "http://127.0.0.1:7700", false, 0, 0, "URL",
	 "gangliond base URL"},
	{"token", GN_CONF_STRING, offsetof(cli_conf, token), NULL, false, 0, 0, "TOKEN|@FILE",
	 "API token, or @FILE to read it from FILE"},
	{"output", GN_CONF_STRING, offsetof(cli_conf, output), "table", false, 0, 0, "table|json",
	 "output format: aligned columns, or the server's JSON"},
	{"timeout", GN_CONF_DURATION, offsetof(cli_conf, timeout), "30s", false, 1, 3600, "DURATION",
	 "give up on a request after this long"},
	{"ca-file", GN_CONF_STRING, offsetof(cli_conf, ca_file), NULL, false, 0, 0, "FILE",
	 "CA bundle (PEM) an https url's certificate must chain to, instead of the system's CAs (the server is "
	 "always verified)"},
	{"client-cert", GN_CONF_STRING, offsetof(cli_conf, client_cert), NULL, false, 0, 0, "FILE",
	 "PEM certificate to present to a server that requires client certificates (with --client-key)"},
	{"client-key", GN_CONF_STRING, offsetof(cli_conf, client_key), NULL, false, 0, 0, "FILE",
	 "PEM private key (unencrypted) of --client-cert"},
	{"config", GN_CONF_STRING, offsetof(cli_conf, config), NULL, false, 0, 0, "FILE",
	 "config file (default $XDG_CONFIG_HOME/ganglion/config or ~/.config/ganglion/config)"},
};

static const gn_conf_table conf_table = {"ganglion", "GANGLION_", conf_opts, GN_ARRAY_LEN(conf_opts)};

#define N_CONF GN_ARRAY_LEN(conf_opts)
#define N_GLOBAL (N_CONF + 1) /* the settings, then --version */

static const cli_group *const groups[] = {
	&cmd_devices_group, &cmd_enroll_tokens_group, &cmd_tokens_group,    &cmd_audit_group,  &cmd_models_group,
	&cmd_keys_group,    &cmd_deploy_group,        &cmd_rollout_group,   &cmd_whoami_group, &cmd_gitops_group,
	&cmd_alerts_group,  &cmd_status_group,        &cmd_telemetry_group,
};

/* Commands main() runs itself, besides the groups. */
static const char *const builtins[] = {"help", "man", "completion"};

/* Fills opts (N_GLOBAL entries) with the global flags, taken from the settings table. */
static void global_opts(cli_opt *opts)
{
	for (size_t i = 0; i < N_CONF; i++) {
		opts[i] = (cli_opt){conf_opts[i].key, 0, conf_opts[i].argname, conf_opts[i].help};
		if (strcmp(conf_opts[i].key, "output") == 0)
			opts[i].short_name = 'o';
	}
	opts[N_CONF] = (cli_opt){"version", 'V', NULL, "print the version"};
}

static void main_help(FILE *f, const cli_opt *gopts)
{
	fputs("Usage: ganglion [global options] COMMAND SUBCOMMAND [options] [arguments]\n\n"
	      "The command-line client of gangliond, the Ganglion fleet control plane.\n\nCommands:\n",
	      f);
	for (size_t i = 0; i < GN_ARRAY_LEN(groups); i++) {
		gn_buf subs;
		gn_buf_init(&subs);
		for (size_t k = 0; k < groups[i]->n && !cli_group_bare(groups[i]); k++)
			gn_buf_printf(&subs, "%s%s", k ? ", " : "", groups[i]->cmds[k].name);
		fprintf(f, "  %-15s %s%s%s%s\n", groups[i]->name, groups[i]->summary, subs.len ? " (" : "",
			subs.len ? subs.data : "", subs.len ? ")" : "");
		gn_buf_cleanup(&subs);
	}
	fprintf(f, "  %-15s %s\n  %-15s %s\n  %-15s %s\n", "help",
		"help on a command (help COMMAND [SUBCOMMAND]), or the command reference in Markdown "
		"(help --markdown)",
		"man", "print the manual page ganglion(1) in roff (man -l -)", "completion",
		"print the bash completion script");
	fputs("\nGlobal options (before or after the command):\n", f);
	for (size_t i = 0; i < N_CONF; i++) {
		char flag[64];
		int k = gopts[i].short_name ? snprintf(flag, sizeof(flag), "-%c, ", gopts[i].short_name) : 0;
		snprintf(flag + k, sizeof(flag) - (size_t)k, "--%s %s", gopts[i].name, gopts[i].arg);
		fprintf(f, "  %-26s %s", flag, gopts[i].help);
		if (conf_opts[i].def)
			fprintf(f, " [default: %s]", conf_opts[i].def);
		fputc('\n', f);
	}
	fprintf(f, "  %-26s %s\n  %-26s %s\n", "-V, --version", "print the version", "-h, --help", "show this help");
	fputs("\nSettings are taken from, first match wins: flags; the environment (GANGLION_URL,\n"
	      "GANGLION_TOKEN, GANGLION_OUTPUT, GANGLION_TIMEOUT, GANGLION_CA_FILE, GANGLION_CLIENT_CERT,\n"
	      "GANGLION_CLIENT_KEY); the config file ($GANGLION_CONFIG,\n"
	      "else $XDG_CONFIG_HOME/ganglion/config, else ~/.config/ganglion/config) with lines like\n"
	      "`url = http://host:7700` and `token = @/path/to/file`; the defaults above. Unknown keys\n"
	      "in the file are errors. A token written @FILE is read from FILE, e.g. DATA_DIR/admin.token.\n"
	      "\nExit codes:\n",
	      f);
	cli_exit_help(f);
	fputs("\nRun 'ganglion COMMAND --help' for a command's subcommands and options.\n", f);
}

/* Finds the group called name; otherwise fails, suggesting the nearest command. */
static int find_group(const cli_group **out, const char *name, gn_err *err)
{
	const char *names[GN_ARRAY_LEN(groups) + GN_ARRAY_LEN(builtins)];
	size_t n = 0;
	for (size_t i = 0; i < GN_ARRAY_LEN(groups); i++) {
		if (strcmp(groups[i]->name, name) == 0) {
			*out = groups[i];
			return 0;
		}
		names[n++] = groups[i]->name;
	}
	for (size_t i = 0; i < GN_ARRAY_LEN(builtins); i++)
		names[n++] = builtins[i];
	const char *near = cli_nearest(name, names, n);
	if (near)
		return gn_err_set(err, CLI_EUSAGE, "unknown command '%s' (did you mean '%s'?)", name, near);
	return gn_err_set(err, CLI_EUSAGE, "unknown command '%s'", name);
}

/* Finds g's command called name; otherwise fails, suggesting the nearest one. */
static int find_cmd(const cli_cmd **out, const cli_group *g, const char *name, gn_err *err)
{
	const char **names = gn_calloc(g->n, sizeof(*names));
	int error = 0;
	for (size_t i = 0; i < g->n; i++) {
		if (strcmp(g->cmds[i].name, name) == 0) {
			*out = &g->cmds[i];
			goto out;
		}
		names[i] = g->cmds[i].name;
	}
	const char *near = cli_nearest(name, names, g->n);
	if (near)
		error = gn_err_set(err, CLI_EUSAGE, "unknown %s subcommand '%s' (did you mean '%s'?)", g->name, name,
				   near);
	else
		error = gn_err_set(err, CLI_EUSAGE, "unknown %s subcommand '%s'", g->name, name);
out:
	free(names);
	return error;
}

/* ganglion help [COMMAND [SUBCOMMAND]] | help --markdown: the help texts, or the command reference
 * of docs/CLI.md. */
static int help_run(int argc, char **argv, const cli_opt *gopts, gn_err *err)
{
	static const cli_opt opts[] = {
		{"markdown", 0, NULL, "the command reference in Markdown, as docs/CLI.md holds it"},
	};
	cli_args args = {0};
	const cli_group *g = NULL;
	const cli_cmd *c = NULL;
	int error;

	if ((error = cli_args_parse(&args, opts, GN_ARRAY_LEN(opts), argc, argv, false, err)))
		return error;
	if (args.help) {
		fputs("Usage: ganglion help [COMMAND [SUBCOMMAND]] | ganglion help --markdown\n", stdout);
	} else if (cli_args_get(&args, "markdown")) {
		if (args.npos)
			error = gn_err_set(err, CLI_EUSAGE, "help --markdown takes no arguments");
		else
			manpage_print(stdout, "markdown", &conf_table, gopts, N_GLOBAL, groups, GN_ARRAY_LEN(groups));
	} else if (args.npos == 0) {
		main_help(stdout, gopts);
	} else if (args.npos > 2) {
		error = gn_err_set(err, CLI_EUSAGE, "help: unexpected argument '%s'", args.pos[2]);
	} else if (!(error = find_group(&g, args.pos[0], err))) {
		if (args.npos == 1 || cli_group_bare(g))
			cli_group_bare(g) ? cli_cmd_help(stdout, g, &g->cmds[0]) : cli_group_help(stdout, g);
		else if (!(error = find_cmd(&c, g, args.pos[1], err)))
			cli_cmd_help(stdout, g, c);
	}
	cli_args_cleanup(&args);
	return error;
}

/* Applies the global flags in args, whose settings start at index first in args->opts. */
static int apply_flags(cli_conf *cfg, const cli_args *args, size_t first, gn_err *err)
{
	for (size_t k = 0; k < args->ngiven; k++) {
		const cli_opt *o = &args->opts[args->given[k].opt];
		char where[96];
		if (args->given[k].opt < first || args->given[k].opt >= first + N_CONF)
			continue;
		snprintf(where, sizeof(where), "option --%s", o->name);
		int rc = gn_conf_set(&conf_table, cfg, o->name, args->given[k].value, where, err);
		if (rc)
			return rc;
	}
	return 0;
}

/* Returns the default config file path (new), or NULL without a home directory. */
static char *default_config_path(void)
{
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	if (xdg && xdg[0] == '/')
		return gn_asprintf("%s/ganglion/config", xdg);
	if (home && *home)
		return gn_asprintf("%s/.config/ganglion/config", home);
	return NULL;
}

/* Loads defaults < config file < environment < flags before the command < flags after it. */
static int load_conf(cli_conf *cfg, const cli_args *gargs, const cli_args *cargs, size_t cmd_nopts, gn_err *err)
{
	int error = 0;
	char *deflt = NULL;
	const char *path = cli_args_get(cargs, "config");
	const char *env = getenv("GANGLION_CONFIG");

	if ((error = gn_conf_defaults(&conf_table, cfg, err)))
		goto out;
	if (!path)
		path = cli_args_get(gargs, "config");
	if (!path && env && *env)
		path = env;
	/* Only the default file may be missing; one named on purpose must exist. */
	if (!path && (deflt = default_config_path()) && access(deflt, F_OK) == 0)
		path = deflt;
	if (path && (error = gn_conf_load_file(&conf_table, cfg, path, err)))
		goto out;
	for (size_t i = 0; i < N_CONF; i++) {
		char name[64];
		const char *v;
		if (strcmp(conf_opts[i].key, "config") == 0)
			continue;
		/* Look up our own variables only: other programs' GANGLION_* variables are not ours to judge.
		 */
		snprintf(name, sizeof(name), "GANGLION_%s", conf_opts[i].key);
		for (char *p = name; *p; p++)
			*p = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
		if ((v = getenv(name)) && *v && (error = gn_conf_set(&conf_table, cfg, conf_opts[i].key, v, name, err)))
			goto out;
	}
	if ((error = apply_flags(cfg, gargs, 0, err)) || (error = apply_flags(cfg, cargs, cmd_nopts, err)))
		goto out;
out:
	if (error)
		err->code = error = CLI_EUSAGE;
	free(deflt);
	return error;
}

/* Reads a token from path into *out (new), without surrounding whitespace (gn_secret_file_read),
 * as a usage error naming the token file when it cannot. */
static int read_token_file(char **out, const char *path, gn_err *err)
{
	if (!gn_secret_file_read(out, path, TOKEN_FILE_MAX, err))
		return 0;
	char why[sizeof(err->msg)];
	snprintf(why, sizeof(why), "%s", err->msg);
	return gn_err_set(err, CLI_EUSAGE, "token file: %s", why);
}

/* Turns the loaded settings into the context commands run with. */
static int make_ctx(cli_ctx *ctx, char **out_token, cli_conf *cfg, gn_err *err)
{
	size_t n = strlen(cfg->url);
	if (strncmp(cfg->url, "http://", 7) != 0 && strncmp(cfg->url, "https://", 8) != 0)
		return gn_err_set(err, CLI_EUSAGE, "url must start with http:// or https://, not '%s'", cfg->url);
	while (n > 0 && cfg->url[n - 1] == '/')
		cfg->url[--n] = '\0';
	ctx->url = cfg->url;
	bool cert = cfg->client_cert && *cfg->client_cert, key = cfg->client_key && *cfg->client_key;
	if (cert != key)
		return gn_err_set(err, CLI_EUSAGE, "client-cert and client-key go together: give both, or neither");
	if (strncmp(cfg->url, "http://", 7) == 0 && ((cfg->ca_file && *cfg->ca_file) || cert))
		return gn_err_set(err, CLI_EUSAGE, "%s is set but url %s is plain http://: use an https:// url",
				  cert ? "client-cert" : "ca-file", cfg->url);
	ctx->ca_file = cfg->ca_file && *cfg->ca_file ? cfg->ca_file : NULL;
	ctx->client_cert = cert ? cfg->client_cert : NULL;
	ctx->client_key = key ? cfg->client_key : NULL;
	if (strcmp(cfg->output, "table") == 0)
		ctx->output = CLI_OUTPUT_TABLE;
	else if (strcmp(cfg->output, "json") == 0)
		ctx->output = CLI_OUTPUT_JSON;
	else
		return gn_err_set(err, CLI_EUSAGE, "output must be table or json, not '%s'", cfg->output);
	ctx->timeout_s = (long)cfg->timeout;
	ctx->tty = isatty(STDOUT_FILENO);
	if (cfg->token && cfg->token[0] == '@') {
		int rc = read_token_file(out_token, cfg->token + 1, err);
		if (rc)
			return rc;
		ctx->token = *out_token;
	} else if (cfg->token && *cfg->token) {
		ctx->token = cfg->token;
	}
	return 0;
}

int main(int argc, char **argv)
{
	int error = 0, first, argi = 0;
	char cmdname[96] = "";
	gn_err err = {0};
	cli_conf cfg = {0};
	cli_args gargs = {0}, cargs = {0};
	cli_opt gopts[N_GLOBAL], *copts = NULL;
	const cli_group *group = NULL;
	const cli_cmd *cmd = NULL;
	cli_ctx ctx = {0};
	char *token = NULL;

	global_opts(gopts);
	if ((error = cli_args_parse(&gargs, gopts, N_GLOBAL, argc - 1, argv + 1, true, &err)))
		goto out;
	if (gargs.help) {
		main_help(stdout, gopts);
		goto out;
	}
	if (cli_args_get(&gargs, "version")) {
		printf("ganglion %s\n", gn_version());
		goto out;
	}
	first = 1 + gargs.next;
	if (first >= argc) {
		error = gn_err_set(&err, CLI_EUSAGE, "no command given");
		goto out;
	}
	if (strcmp(argv[first], "help") == 0) {
		error = help_run(argc - first - 1, argv + first + 1, gopts, &err);
		goto out;
	}
	if (strcmp(argv[first], "man") == 0 || strcmp(argv[first], "completion") == 0) {
		if (first + 1 < argc)
			error = gn_err_set(&err, CLI_EUSAGE, "%s: unexpected argument '%s'", argv[first],
					   argv[first + 1]);
		else
			manpage_print(stdout, argv[first], &conf_table, gopts, N_GLOBAL, groups, GN_ARRAY_LEN(groups));
		goto out;
	}
	if ((error = find_group(&group, argv[first], &err)))
		goto out;
	if (cli_group_bare(group)) {
		cmd = &group->cmds[0];
		argi = first + 1; /* its options come right after its name */
	} else if (first + 1 >= argc) {
		error = gn_err_set(&err, CLI_EUSAGE, "%s: no subcommand given", group->name);
		goto out;
	} else if (strcmp(argv[first + 1], "--help") == 0 || strcmp(argv[first + 1], "-h") == 0 ||
		   strcmp(argv[first + 1], "help") == 0) {
		cli_group_help(stdout, group);
		goto out;
	} else if ((error = find_cmd(&cmd, group, argv[first + 1], &err))) {
		goto out;
	} else {
		argi = first + 2;
	}
	/* What messages call the command: "devices list", or "whoami". */
	snprintf(cmdname, sizeof(cmdname), "%s%s%s", group->name, cli_group_bare(group) ? "" : " ",
		 cli_group_bare(group) ? "" : cmd->name);

	/* The command's own options, then the global settings flags (not --version). */
	copts = gn_calloc(cmd->nopts + N_CONF, sizeof(*copts));
	if (cmd->nopts)
		memcpy(copts, cmd->opts, cmd->nopts * sizeof(*copts));
	memcpy(copts + cmd->nopts, gopts, N_CONF * sizeof(*copts));
	if ((error = cli_args_parse(&cargs, copts, cmd->nopts + N_CONF, argc - argi, argv + argi, false, &err)))
		goto out;
	if (cargs.help) {
		cli_cmd_help(stdout, group, cmd);
		goto out;
	}
	if (cargs.npos < cmd->min_pos) {
		error = gn_err_set(&err, CLI_EUSAGE, "%s: missing arguments: %s", cmdname, cmd->synopsis);
		goto out;
	}
	if (cargs.npos > cmd->max_pos) {
		error = gn_err_set(&err, CLI_EUSAGE, "%s: unexpected argument '%s'", cmdname, cargs.pos[cmd->max_pos]);
		goto out;
	}
	if ((error = load_conf(&cfg, &gargs, &cargs, cmd->nopts, &err)) || (error = make_ctx(&ctx, &token, &cfg, &err)))
		goto out;
	error = cmd->run(&ctx, &cargs, &err);
out:
	if (error) {
		fprintf(stderr, "ganglion: %s\n", err.msg[0] ? err.msg : gn_err_name(error));
		if (error == CLI_EUSAGE)
			fprintf(stderr, "Try 'ganglion%s%s --help'.\n", group ? " " : "",
				cmdname[0] ? cmdname
				: group    ? group->name
					   : "");
	}
	if (fflush(stdout) != 0 && !error) {
		fprintf(stderr, "ganglion: cannot write output: %s\n", strerror(errno));
		error = GN_ERROR;
	}
	cli_args_cleanup(&gargs);
	cli_args_cleanup(&cargs);
	gn_conf_cleanup(&conf_table, &cfg);
	free(copts);
	free(token);
	return cli_exit_code(error);
}
