/* Table-driven configuration: one table per program names every key, its type, where it lives
 * in the program's config struct, its default, and whether SIGHUP reloads it. The same table
 * parses INI files, environment variables and --flags, and writes --help and the sample config.
 * Unknown keys are errors everywhere. */
#ifndef GN_CONF_H
#define GN_CONF_H

#include "common.h"

enum gn_conf_type {
	GN_CONF_STRING,   /* char * (owned by the struct; freed by gn_conf_cleanup) */
	GN_CONF_INT,      /* int64_t, within [min, max] */
	GN_CONF_BOOL,     /* bool: true/false/yes/no/on/off/1/0 */
	GN_CONF_SIZE,     /* int64_t bytes: 1048576, 512K, 1M, 2G (binary units) */
	GN_CONF_DURATION, /* int64_t seconds: 30, 30s, 5m, 2h, 7d */
};

typedef struct gn_conf_opt {
	const char *key; /* "listen"; flag --listen; env PREFIX_LISTEN (dashes become _) */
	enum gn_conf_type type;
	size_t offset;   /* offsetof(config struct, field) */
	const char *def; /* default, as text; NULL for none */
	bool reload;     /* SIGHUP applies it */
	int64_t min, max;
	const char *argname; /* for --help: "ADDR:PORT" */
	const char *help;
} gn_conf_opt;

typedef struct gn_conf_table {
	const char *program;    /* "gangliond" */
	const char *env_prefix; /* "GANGLIOND_" */
	const gn_conf_opt *opts;
	size_t n;
} gn_conf_table;

/* Finds an option by key; NULL if none. Borrowed. */
const gn_conf_opt *gn_conf_find(const gn_conf_table *t, const char *key);
/* Sets every field to its default. */
int gn_conf_defaults(const gn_conf_table *t, void *cfg, gn_err *err) GN_WUR;
/* Parses value for key into cfg; `where` names the source in errors ("file.ini:3"). */
int gn_conf_set(const gn_conf_table *t, void *cfg, const char *key, const char *value, const char *where,
		gn_err *err) GN_WUR;
/* Applies an INI file of `key = value` lines (# or ; comments). */
int gn_conf_load_file(const gn_conf_table *t, void *cfg, const char *path, gn_err *err) GN_WUR;
/* Applies PREFIX_KEY variables from envp (NULL-terminated); variables with the prefix that name no
 * key are errors, so a typo does not pass silently. */
int gn_conf_load_env(const gn_conf_table *t, void *cfg, char *const *envp, gn_err *err) GN_WUR;
/* Applies --key=value / --key value / --flag arguments from argv[0..argc); stops at the first
 * argument that is not a flag and stores its index in *out_first_positional. *out_help is set
 * when --help is seen. */
int gn_conf_load_args(int *out_first_positional, bool *out_help, const gn_conf_table *t, void *cfg, int argc,
		      char **argv, gn_err *err) GN_WUR;
/* Loads in precedence order defaults < config file < environment < flags. The config file is
 * the one named by the "config" key if the table has one (from flags, or from envp: the process
 * environment is never read behind the caller's back). */
int gn_conf_load_all(int *out_first_positional, bool *out_help, const gn_conf_table *t, void *cfg, int argc,
		     char **argv, char *const *envp, gn_err *err) GN_WUR;
/* Copies the reloadable fields from src to dst (strings are moved; src keeps NULL). */
void gn_conf_copy_reloadable(const gn_conf_table *t, void *dst, void *src);
/* Returns the name --help shows for o's value: its argname, else one for its type. Borrowed. */
const char *gn_conf_argname(const gn_conf_opt *o);
/* Returns the --help text for the table (new). */
char *gn_conf_help_dup(const gn_conf_table *t, const char *usage);
/* Returns a commented sample config file listing every key with its default (new). */
char *gn_conf_sample_dup(const gn_conf_table *t);
/* Checks that the file at path is exactly the sample gn_conf_sample_dup writes (so a sample shipped
 * in packaging/ cannot drift from the table); GN_ECONFLICT naming the program otherwise. */
int gn_conf_sample_check(const gn_conf_table *t, const char *path, gn_err *err) GN_WUR;
/* Frees the string fields of cfg. */
void gn_conf_cleanup(const gn_conf_table *t, void *cfg);

#endif
