/* Table-driven configuration parsing shared by gangliond, ganglion-agent and the CLI. */
#include "conf.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIELD(cfg, opt) ((char *)(cfg) + (opt)->offset)

const gn_conf_opt *gn_conf_find(const gn_conf_table *t, const char *key)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->opts[i].key, key) == 0)
			return &t->opts[i];
	return NULL;
}

static int unknown_key(const gn_conf_table *t, const char *key, const char *where, gn_err *err)
{
	const char *best = NULL;
	size_t bestd = 3;
	/* The nearest key within 2 edits, as gn_nearest but without its length rule: a table's keys
	 * are few and long. */
	for (size_t i = 0; i < t->n; i++) {
		size_t dd = gn_edit_distance(key, t->opts[i].key);
		if (dd < bestd) {
			bestd = dd;
			best = t->opts[i].key;
		}
	}
	if (best)
		return gn_err_set(err, GN_EINVAL, "%s: unknown key '%s' (did you mean '%s'?)", where, key, best);
	return gn_err_set(err, GN_EINVAL, "%s: unknown key '%s'", where, key);
}

static int parse_int(int64_t *out, const char *s, int64_t mult_default, bool size, bool dur)
{
	char *end;
	errno = 0;
	if (!*s || isspace((unsigned char)*s))
		return -1;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s)
		return -1;
	int64_t mult = mult_default;
	if (*end) {
		if (size) {
			switch (toupper((unsigned char)*end)) {
			case 'K': mult = 1024; break;
			case 'M': mult = 1024 * 1024; break;
			case 'G': mult = 1024LL * 1024 * 1024; break;
			default: return -1;
			}
			end++;
			if (*end == 'i' || *end == 'I')
				end++;
			if (*end == 'B' || *end == 'b')
				end++;
		} else if (dur) {
			switch (*end) {
			case 's': mult = 1; break;
			case 'm': mult = 60; break;
			case 'h': mult = 3600; break;
			case 'd': mult = 86400; break;
			default: return -1;
			}
			end++;
		}
		if (*end)
			return -1;
	}
	if (v != 0 && (v > INT64_MAX / mult || v < INT64_MIN / mult))
		return -1;
	*out = (int64_t)v * mult;
	return 0;
}

int gn_conf_set(const gn_conf_table *t, void *cfg, const char *key, const char *value, const char *where, gn_err *err)
{
	const gn_conf_opt *o = gn_conf_find(t, key);
	if (!o)
		return unknown_key(t, key, where, err);
	void *f = FIELD(cfg, o);
	switch (o->type) {
	case GN_CONF_STRING: {
		char **sp = f;
		free(*sp);
		*sp = gn_strdup(value);
		return 0;
	}
	case GN_CONF_BOOL: {
		static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
		for (size_t i = 0; i < 4; i++) {
			if (strcasecmp(value, yes[i]) == 0) {
				*(bool *)f = true;
				return 0;
			}
			if (strcasecmp(value, no[i]) == 0) {
				*(bool *)f = false;
				return 0;
			}
		}
		return gn_err_set(err, GN_EINVAL, "%s: %s must be true or false, not '%s'", where, key, value);
	}
	case GN_CONF_INT:
	case GN_CONF_SIZE:
	case GN_CONF_DURATION: {
		int64_t v;
		const char *what = o->type == GN_CONF_SIZE       ? "a size (e.g. 1048576, 512K, 1M)"
				   : o->type == GN_CONF_DURATION ? "a duration (e.g. 30s, 5m, 2h)"
								 : "an integer";
		if (parse_int(&v, value, 1, o->type == GN_CONF_SIZE, o->type == GN_CONF_DURATION) < 0)
			return gn_err_set(err, GN_EINVAL, "%s: %s must be %s, not '%s'", where, key, what, value);
		if ((o->min || o->max) && (v < o->min || v > o->max))
			return gn_err_set(err, GN_EINVAL, "%s: %s must be between %lld and %lld, not %lld", where, key,
					  (long long)o->min, (long long)o->max, (long long)v);
		*(int64_t *)f = v;
		return 0;
	}
	}
	return gn_err_set(err, GN_ERROR, "%s: bad option type", where);
}

int gn_conf_defaults(const gn_conf_table *t, void *cfg, gn_err *err)
{
	for (size_t i = 0; i < t->n; i++) {
		const gn_conf_opt *o = &t->opts[i];
		if (o->type == GN_CONF_STRING) {
			char **sp = (char **)FIELD(cfg, o);
			free(*sp);
			*sp = o->def ? gn_strdup(o->def) : NULL;
			continue;
		}
		if (o->def) {
			int rc = gn_conf_set(t, cfg, o->key, o->def, "default", err);
			if (rc)
				return rc;
		}
	}
	return 0;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

int gn_conf_load_file(const gn_conf_table *t, void *cfg, const char *path, gn_err *err)
{
	int error = 0;
	char line[4096];
	unsigned lineno = 0;
	FILE *f = fopen(path, "re");
	if (!f)
		return gn_err_set(err, GN_ENOTFOUND, "cannot open config file %s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		char where[512];
		lineno++;
		snprintf(where, sizeof(where), "%s:%u", path, lineno);
		if (!strchr(line, '\n') && !feof(f)) {
			error = gn_err_set(err, GN_EINVAL, "%s: line too long", where);
			goto out;
		}
		char *s = trim(line);
		if (!*s || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			/* One optional section, named after the program, for familiarity. */
			size_t n = strlen(s);
			if (s[n - 1] == ']' && n - 2 == strlen(t->program) && strncmp(s + 1, t->program, n - 2) == 0)
				continue;
			error = gn_err_set(err, GN_EINVAL, "%s: unknown section %s (only [%s] is allowed)", where, s,
					   t->program);
			goto out;
		}
		char *eq = strchr(s, '=');
		if (!eq) {
			error = gn_err_set(err, GN_EINVAL, "%s: expected 'key = value'", where);
			goto out;
		}
		*eq = '\0';
		char *key = trim(s), *val = trim(eq + 1);
		size_t vl = strlen(val);
		if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
			val[vl - 1] = '\0';
			val++;
		}
		if (strcmp(key, "config") == 0) {
			error = gn_err_set(err, GN_EINVAL, "%s: 'config' cannot be set inside a config file", where);
			goto out;
		}
		if ((error = gn_conf_set(t, cfg, key, val, where, err)))
			goto out;
	}
	if (ferror(f))
		error = gn_err_set(err, GN_ERROR, "error reading %s", path);
out:
	fclose(f);
	return error;
}

/* Writes the env variable name of key into out: PREFIX + upper-case key, '-' as '_'. */
static void env_name(char *out, size_t n, const char *prefix, const char *key)
{
	size_t i = 0;
	for (const char *p = prefix; *p && i + 1 < n; p++)
		out[i++] = *p;
	for (const char *p = key; *p && i + 1 < n; p++)
		out[i++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
	out[i] = '\0';
}

/* Returns the value of variable name in envp (borrowed), or NULL; the first one wins, as with
 * getenv(). */
static const char *env_get(char *const *envp, const char *name)
{
	size_t n = strlen(name);
	for (char *const *e = envp; e && *e; e++)
		if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
			return *e + n + 1;
	return NULL;
}

int gn_conf_load_env(const gn_conf_table *t, void *cfg, char *const *envp, gn_err *err)
{
	size_t pl = strlen(t->env_prefix);
	for (char *const *e = envp; e && *e; e++) {
		if (strncmp(*e, t->env_prefix, pl) != 0)
			continue;
		const char *eq = strchr(*e, '=');
		if (!eq)
			continue;
		const gn_conf_opt *found = NULL;
		char name[128];
		for (size_t i = 0; i < t->n && !found; i++) {
			env_name(name, sizeof(name), t->env_prefix, t->opts[i].key);
			if (strlen(name) == (size_t)(eq - *e) && strncmp(name, *e, (size_t)(eq - *e)) == 0)
				found = &t->opts[i];
		}
		if (!found) {
			char var[128];
			snprintf(var, sizeof(var), "%.*s", (int)(eq - *e), *e);
			return gn_err_set(err, GN_EINVAL, "environment: unknown variable %s", var);
		}
		if (strcmp(found->key, "config") == 0)
			continue; /* handled by gn_conf_load_all */
		int rc = gn_conf_set(t, cfg, found->key, eq + 1, "environment", err);
		if (rc)
			return rc;
	}
	return 0;
}

int gn_conf_load_args(int *out_first_positional, bool *out_help, const gn_conf_table *t, void *cfg, int argc,
		      char **argv, gn_err *err)
{
	int i;
	*out_help = false;
	for (i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (strncmp(a, "--", 2) != 0)
			break;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			*out_help = true;
			continue;
		}
		char key[128];
		const char *val = NULL;
		const char *eq = strchr(a + 2, '=');
		size_t kl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
		if (kl >= sizeof(key))
			return gn_err_set(err, GN_EINVAL, "unknown option %s", a);
		memcpy(key, a + 2, kl);
		key[kl] = '\0';
		const gn_conf_opt *o = gn_conf_find(t, key);
		if (!o) {
			char where[160];
			snprintf(where, sizeof(where), "option --%s", key);
			return unknown_key(t, key, where, err);
		}
		if (eq)
			val = eq + 1;
		else if (o->type == GN_CONF_BOOL)
			val = "true";
		else if (i + 1 < argc)
			val = argv[++i];
		else
			return gn_err_set(err, GN_EINVAL, "option --%s needs a value", key);
		int rc = gn_conf_set(t, cfg, key, val, "command line", err);
		if (rc)
			return rc;
	}
	*out_first_positional = i;
	return 0;
}

int gn_conf_load_all(int *out_first_positional, bool *out_help, const gn_conf_table *t, void *cfg, int argc,
		     char **argv, char *const *envp, gn_err *err)
{
	int rc;
	const gn_conf_opt *copt = gn_conf_find(t, "config");
	char *path = NULL;

	if ((rc = gn_conf_defaults(t, cfg, err)))
		return rc;
	/* A first pass over flags and environment finds the config file (and reports bad flags early). */
	if ((rc = gn_conf_load_args(out_first_positional, out_help, t, cfg, argc, argv, err)))
		return rc;
	if (*out_help)
		return 0;
	if (copt) {
		char name[128];
		char *fromflag = *(char **)FIELD(cfg, copt);
		env_name(name, sizeof(name), t->env_prefix, "config");
		const char *fromenv = env_get(envp, name);
		if (fromflag)
			path = gn_strdup(fromflag);
		else if (fromenv && *fromenv)
			path = gn_strdup(fromenv);
	}
	if ((rc = gn_conf_defaults(t, cfg, err)))
		goto out;
	if (path) {
		if ((rc = gn_conf_load_file(t, cfg, path, err)))
			goto out;
		char **sp = (char **)FIELD(cfg, copt);
		free(*sp);
		*sp = gn_strdup(path);
	}
	if ((rc = gn_conf_load_env(t, cfg, envp, err)))
		goto out;
	rc = gn_conf_load_args(out_first_positional, out_help, t, cfg, argc, argv, err);
out:
	free(path);
	return rc;
}

void gn_conf_copy_reloadable(const gn_conf_table *t, void *dst, void *src)
{
	for (size_t i = 0; i < t->n; i++) {
		const gn_conf_opt *o = &t->opts[i];
		if (!o->reload)
			continue;
		void *d = FIELD(dst, o), *s = FIELD(src, o);
		switch (o->type) {
		case GN_CONF_STRING:
			free(*(char **)d);
			*(char **)d = *(char **)s;
			*(char **)s = NULL;
			break;
		case GN_CONF_BOOL: *(bool *)d = *(bool *)s; break;
		default: *(int64_t *)d = *(int64_t *)s; break;
		}
	}
}

static const char *type_arg(const gn_conf_opt *o)
{
	if (o->argname)
		return o->argname;
	switch (o->type) {
	case GN_CONF_INT: return "N";
	case GN_CONF_BOOL: return "BOOL";
	case GN_CONF_SIZE: return "SIZE";
	case GN_CONF_DURATION: return "DURATION";
	default: return "VALUE";
	}
}

const char *gn_conf_argname(const gn_conf_opt *o)
{
	return type_arg(o);
}

char *gn_conf_help_dup(const gn_conf_table *t, const char *usage)
{
	gn_buf b;
	gn_buf_init(&b);
	gn_buf_printf(&b, "%s\n\nOptions (also settable as `key = value` in the config file, or as %sKEY):\n", usage,
		      t->env_prefix);
	for (size_t i = 0; i < t->n; i++) {
		const gn_conf_opt *o = &t->opts[i];
		char flag[96];
		snprintf(flag, sizeof(flag), "--%s %s", o->key, type_arg(o));
		gn_buf_printf(&b, "  %-32s %s", flag, o->help);
		if (o->def && *o->def)
			gn_buf_printf(&b, " [default: %s]", o->def);
		if (o->reload)
			gn_buf_puts(&b, " (reloads on SIGHUP)");
		gn_buf_puts(&b, "\n");
	}
	gn_buf_printf(&b, "  %-32s %s\n", "--help", "show this help");
	gn_buf_printf(&b, "  %-32s %s\n", "--version", "print the version and the git commit, and exit");
	return gn_buf_detach(&b);
}

char *gn_conf_sample_dup(const gn_conf_table *t)
{
	gn_buf b;
	gn_buf_init(&b);
	gn_buf_printf(&b,
		      "# Sample configuration for %s: every key with its default.\n"
		      "# Generated from the program's option table; do not edit by hand.\n"
		      "# Each key can also be given as a --flag or as %sKEY in the environment.\n",
		      t->program, t->env_prefix);
	for (size_t i = 0; i < t->n; i++) {
		const gn_conf_opt *o = &t->opts[i];
		if (strcmp(o->key, "config") == 0)
			continue;
		gn_buf_printf(&b, "\n# %s%s\n", o->help, o->reload ? " (reloads on SIGHUP)" : "");
		gn_buf_printf(&b, "#%s = %s\n", o->key, o->def ? o->def : "");
	}
	return gn_buf_detach(&b);
}

int gn_conf_sample_check(const gn_conf_table *t, const char *path, gn_err *err)
{
	int error = 0;
	char *want = gn_conf_sample_dup(t);
	gn_buf got;
	char chunk[4096];
	size_t n;
	gn_buf_init(&got);
	FILE *f = fopen(path, "re");
	if (!f) {
		error = gn_err_set(err, GN_ENOTFOUND, "cannot open %s: %s", path, strerror(errno));
		goto out;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		gn_buf_append(&got, chunk, n);
	fclose(f);
	if (!got.data || strcmp(got.data, want) != 0)
		error = gn_err_set(err, GN_ECONFLICT, "%s is stale: regenerate it with `%s sample-config`", path,
				   t->program);
out:
	gn_buf_cleanup(&got);
	free(want);
	return error;
}

void gn_conf_cleanup(const gn_conf_table *t, void *cfg)
{
	for (size_t i = 0; i < t->n; i++) {
		const gn_conf_opt *o = &t->opts[i];
		if (o->type == GN_CONF_STRING) {
			char **sp = (char **)FIELD(cfg, o);
			free(*sp);
			*sp = NULL;
		}
	}
}
