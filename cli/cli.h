/* Shared declarations of the ganglion CLI: exit codes, the command tables, argument parsing,
 * requests to gangliond and table/JSON output. */
#ifndef GN_CLI_H
#define GN_CLI_H

#include <stdio.h>

#include <jansson.h>

#include "common.h"
#include "http_client.h"

/* Exit codes. The one table from error code to exit code is in cli.c (cli_exit_code); these
 * are also printed by `ganglion --help` and listed in docs/CLI.md.
 *
 *   exit | meaning                                          | error codes
 *   -----+--------------------------------------------------+-----------------------------
 *     0  | success                                          | 0
 *     1  | any other error                                  | GN_ERROR, GN_EGONE, others
 *     2  | usage: bad command, option, argument, config     | CLI_EUSAGE
 *     3  | authentication or authorisation (HTTP 401/403)   | GN_EAUTH, GN_EFORBIDDEN
 *     4  | not found (HTTP 404)                             | GN_ENOTFOUND
 *     5  | conflict (HTTP 409)                              | GN_ECONFLICT
 *     6  | server unreachable, timed out, or HTTP 5xx       | GN_EUNAVAIL
 *     7  | request rejected as invalid (HTTP 400/413/422)   | GN_EINVAL, GN_ETOOBIG, GN_EMISMATCH
 *     8  | the server at --url is not gangliond             | CLI_ENOTGANGLION
 *
 * A command that acts on nothing fails (a selector that matches no device: 4); a list that comes
 * back empty is a success. */
enum cli_exit {
	CLI_EXIT_OK = 0,
	CLI_EXIT_ERROR = 1,
	CLI_EXIT_USAGE = 2,
	CLI_EXIT_AUTH = 3,
	CLI_EXIT_NOTFOUND = 4,
	CLI_EXIT_CONFLICT = 5,
	CLI_EXIT_UNAVAIL = 6,
	CLI_EXIT_INVALID = 7,
	CLI_EXIT_NOTGANGLION = 8,
};

/* A CLI-only error code: the command line or configuration is wrong. GN_EINVAL stays for
 * requests the server rejected, so the two exit differently. */
#define CLI_EUSAGE (-100)
/* A CLI-only error code: what answered at the URL is some other web server (its answer is neither
 * JSON nor problem+json), not gangliond. */
#define CLI_ENOTGANGLION (-101)

/* Returns the exit code for an error code (0 for 0). */
int cli_exit_code(int code);
/* Writes the exit-code table for --help to f. */
void cli_exit_help(FILE *f);

enum cli_output { CLI_OUTPUT_TABLE, CLI_OUTPUT_JSON };

/* What every command runs with, resolved from flags, environment and config file. */
typedef struct cli_ctx {
	const char *url;         /* base URL without a trailing slash */
	const char *token;       /* bearer token or NULL */
	const char *ca_file;     /* CA bundle for https, or NULL for the system's */
	const char *client_cert; /* PEM client certificate and key (mTLS), or NULL */
	const char *client_key;
	enum cli_output output;
	long timeout_s;
	bool tty; /* stdout is a terminal */
} cli_ctx;

/* One --option of a command (or of the program). */
typedef struct cli_opt {
	const char *name; /* "selector" for --selector */
	char short_name;  /* 'o' for -o, or 0 */
	const char *arg;  /* value name for --help ("S"); NULL for a flag without a value */
	const char *help;
} cli_opt;

/* A parsed command line; values and positionals are borrowed from argv. */
typedef struct cli_args {
	const cli_opt *opts;
	size_t nopts;
	char **pos;
	size_t npos;
	struct cli_given {
		size_t opt; /* index into opts */
		const char *value;
	} * given; /* in command-line order */
	size_t ngiven;
	bool help;
	int next; /* index of the first argument not parsed (stop_at_positional) */
} cli_args;

typedef struct cli_cmd {
	const char *name;     /* "list" */
	const char *synopsis; /* positional arguments for usage lines: "ID key=value... key-..." */
	const char *summary;
	const cli_opt *opts;
	size_t nopts;
	size_t min_pos, max_pos;
	int (*run)(const cli_ctx *ctx, const cli_args *args, gn_err *err);
} cli_cmd;

typedef struct cli_group {
	const char *name; /* "devices" */
	const char *summary;
	const cli_cmd *cmds;
	size_t n;
} cli_group;

/* Whether g is one command run as `ganglion NAME [options]`, without a subcommand (whoami): a
 * group whose only command has the group's name. */
bool cli_group_bare(const cli_group *g);

extern const cli_group cmd_devices_group;
extern const cli_group cmd_enroll_tokens_group;
extern const cli_group cmd_tokens_group;
extern const cli_group cmd_audit_group;
extern const cli_group cmd_models_group;
extern const cli_group cmd_keys_group;
extern const cli_group cmd_deploy_group;
extern const cli_group cmd_rollout_group;
extern const cli_group cmd_whoami_group;
extern const cli_group cmd_gitops_group;
extern const cli_group cmd_alerts_group;
extern const cli_group cmd_telemetry_group;
extern const cli_group cmd_status_group;

/* Parses argv[0..argc) against opts into out (cli_args_cleanup it): --name value, --name=value,
 * -x value, -xvalue, -h/--help, and `--` ending options. Options may come anywhere unless
 * stop_at_positional, which stops at the first positional and records its index in out->next.
 * Fails with CLI_EUSAGE. */
int cli_args_parse(cli_args *out, const cli_opt *opts, size_t nopts, int argc, char **argv, bool stop_at_positional,
		   gn_err *err) GN_WUR;
void cli_args_cleanup(cli_args *args);
/* Returns the last value given for option name ("true" for flags), or NULL. Borrowed. */
const char *cli_args_get(const cli_args *args, const char *name);
/* Returns the i-th value given for option name, or NULL past the last. Borrowed. */
const char *cli_args_nth(const cli_args *args, const char *name, size_t i);

/* Writes the --help text of a command, a command group, or the options list to f. */
void cli_cmd_help(FILE *f, const cli_group *group, const cli_cmd *cmd);
void cli_group_help(FILE *f, const cli_group *group);
void cli_opts_help(FILE *f, const cli_opt *opts, size_t n);

/* Parses a decimal integer in [min, max] given for `what`; CLI_EUSAGE otherwise. */
int cli_parse_int(int64_t *out, const char *s, const char *what, int64_t min, int64_t max, gn_err *err) GN_WUR;
/* Parses a positive duration: 3600, 90s, 30m, 1h, 7d, 2w; returns seconds. CLI_EUSAGE otherwise. */
int cli_parse_duration(int64_t *out, const char *s, const char *what, gn_err *err) GN_WUR;
/* Adds one `key=value` (or, with allow_remove, `key-` as null) to the labels object after checking
 * key and value; CLI_EUSAGE for a bad or repeated key. */
int cli_label_add(json_t *labels, const char *arg, bool allow_remove, gn_err *err) GN_WUR;

/* Appends ?key=value or &key=value to path, value URL-encoded. */
void cli_query_add(gn_buf *path, const char *key, const char *value);
/* Sends one request to ctx->url + path (path already URL-encoded) with body (may be NULL), and
 * stores the parsed JSON answer in *out (new; NULL for an empty answer such as 204). Non-2xx
 * answers become errors carrying the server's problem detail. */
int cli_request(json_t **out, const cli_ctx *ctx, const char *method, const char *path, const json_t *body,
		gn_err *err) GN_WUR;
/* Turns the answer to method url into *out (new; NULL for an empty body) as cli_request does:
 * non-2xx statuses become errors carrying the server's problem detail. */
int cli_answer(json_t **out, const cli_ctx *ctx, const char *method, const char *url, const gn_http_resp *resp,
	       gn_err *err) GN_WUR;
/* GETs a list endpoint (path may already hold a query). Without all, *out is the server's page
 * (new); with all, next_cursor is followed to the end and *out is {"items":[...]} (new). */
int cli_list(json_t **out, const cli_ctx *ctx, const char *path, bool all, gn_err *err) GN_WUR;

/* Puts what a failed request was about before err's message ("device 'ID': no such device
 * (HTTP 404)") when err is a not-found (GN_ENOTFOUND), so the message names what was missing;
 * returns err->code. */
int cli_err_about(gn_err *err, const char *fmt, ...) GN_PRINTF(2, 3);
/* Says which part of model[@version] a not-found (GN_ENOTFOUND in err) was about, by asking the
 * server: no such model (with the nearest model name: "did you mean"), or no such version or alias
 * of it (listing its newest versions and its aliases). Returns true when it rewrote err so; false, leaving err alone,
 * for another error or when the model (and version, unless NULL) exist: the 404 was about
 * something else. */
bool cli_model_not_found(const cli_ctx *ctx, const char *model, const char *version, gn_err *err);
/* Returns the name in names nearest to word, for "did you mean" (borrowed), or NULL. */
const char *cli_nearest(const char *word, const char *const *names, size_t n);
/* Resolves a device named on the command line into its id (*out, new). An argument shaped like a
 * device id (a UUID) is taken as one. Anything else is a device name: the active device of that
 * name (names are unique among active devices), else the one decommissioned device that had it.
 * GN_ENOTFOUND when no device has that name; CLI_EUSAGE when several decommissioned ones do (their
 * ids are listed, to give one of them instead). */
int cli_device_id(char **out, const cli_ctx *ctx, const char *arg, gn_err *err) GN_WUR;
/* Returns /v1/devices/{id}SUFFIX (new) for a device given by id or name (cli_device_id). */
int cli_device_path(char **out, const cli_ctx *ctx, const char *arg, const char *suffix, gn_err *err) GN_WUR;

/* Reads the JSON file at path, at most max bytes, into *out (new); CLI_EUSAGE when it cannot be read,
 * is larger, or is not JSON, with a message naming the file. */
int cli_read_json_file(json_t **out, const char *path, size_t max, gn_err *err) GN_WUR;
/* Writes v pretty (two-space indent, final newline) to path atomically, or to stdout when path is
 * NULL; GN_ERROR when it cannot. */
int cli_write_json(const char *path, const json_t *v, gn_err *err) GN_WUR;

/* One column of a table: a header and a member of each row, or a function that formats the row. */
typedef struct output_col {
	const char *header;
	const char *key;
	char *(*format)(const json_t *row); /* new string; NULL to use key */
} output_col;

/* Fetches every page of path and prints it: the merged JSON with -o json, else a table of cols. */
int cli_list_print(const cli_ctx *ctx, const char *path, const struct output_col *cols, size_t ncols,
		   gn_err *err) GN_WUR;

/* Prints v pretty (two-space indent) to stdout. */
void output_json(const json_t *v);
/* Prints the array rows as a table with a header row, columns as wide as their widest cell. */
void output_table(const json_t *rows, const output_col *cols, size_t n);
/* Prints one object as `HEADER:  value` lines. */
void output_fields(const json_t *obj, const output_col *cols, size_t n);
/* Returns a JSON value formatted for a table cell (new): null as -, labels as k=v,k=v, arrays
 * joined with commas, control characters replaced. */
char *output_value_dup(const json_t *v);
/* Prints a freshly created secret, saying that it is shown only once. */
void output_secret(const char *what, const char *secret, const char *hint);

#endif
