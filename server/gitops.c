/* GitOps sync: read a commit, check it whole, plan it against the server, apply it in one
 * transaction; the status, suspend and resume, and the webhook. */
#include "gitops.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "crypto.h"
#include "deployments.h"
#include "fileio.h"
#include "gitops_repo.h"
#include "json.h"
#include "log.h"
#include "models.h"
#include "rollouts.h"
#include "sshsig.h"
#include "strategy.h"

#define STATE_COLS                                                                                       \
	"repository, branch, path, status, head_commit, head_signer, gn_ts(checked_at), applied_commit," \
	" applied_signer, gn_ts(applied_at), errors::text, plan::text, suspended, suspended_by,"         \
	" gn_ts(suspended_at), replan"
enum {
	S_REPO,
	S_BRANCH,
	S_PATH,
	S_STATUS,
	S_HEAD,
	S_HEAD_SIGNER,
	S_CHECKED,
	S_APPLIED,
	S_SIGNER,
	S_APPLIED_AT,
	S_ERRORS,
	S_PLAN,
	S_SUSPENDED,
	S_SUSPENDED_BY,
	S_SUSPENDED_AT,
	S_REPLAN
};

static const db_stmt st_state = {"gitops_state", "SELECT " STATE_COLS " FROM gitops_state", 0};
static const db_stmt st_refused = {
	"gitops_refused",
	"UPDATE gitops_state SET status = $1, head_commit = coalesce($2, head_commit),"
	" head_signer = CASE WHEN $2 IS NULL THEN head_signer ELSE $3 END, checked_at = now(), errors = $4::jsonb,"
	" plan = $5::jsonb",
	5};
static const db_stmt st_checked = {"gitops_checked", "UPDATE gitops_state SET checked_at = now()", 0};
static const db_stmt st_applied = {
	"gitops_applied",
	"UPDATE gitops_state SET repository = $1, branch = $2, path = $3, status = 'synced', head_commit = $4,"
	" head_signer = $5, checked_at = now(), applied_commit = $4, applied_signer = $5, applied_at = now(),"
	" errors = '[]', plan = '[]', replan = false",
	5};
static const db_stmt st_apply_mode = {"gitops_apply_mode", "SELECT set_config('ganglion.gitops', 'apply', true)", 0};
static const db_stmt st_model = {"gitops_model", "SELECT 1 FROM models WHERE name = $1", 1};
static const db_stmt st_version = {"gitops_version", "SELECT 1 FROM model_versions WHERE model = $1 AND version = $2",
				   2};
static const db_stmt st_deployments = {
	"gitops_deployments", "SELECT name, model, selector, follows, strategy::text FROM deployments ORDER BY name",
	0};
static const db_stmt st_aliases = {"gitops_aliases",
				   "SELECT model, alias, version FROM model_aliases ORDER BY model, alias", 0};
static const db_stmt st_managed = {
	"gitops_managed",
	"SELECT kind, key, file, line, commit, spec::text, gn_ts(applied_at) FROM gitops_objects ORDER BY kind, key",
	0};
static const db_stmt st_object_put = {
	"gitops_object_put",
	"INSERT INTO gitops_objects (kind, key, file, line, commit, spec) VALUES ($1, $2, $3, $4, $5, $6::jsonb)"
	" ON CONFLICT (kind, key) DO UPDATE SET file = excluded.file, line = excluded.line, commit = excluded.commit,"
	" spec = excluded.spec, applied_at = CASE WHEN gitops_objects.spec = excluded.spec"
	" THEN gitops_objects.applied_at ELSE now() END",
	6};
static const db_stmt st_object_drop = {"gitops_object_drop", "DELETE FROM gitops_objects WHERE kind = $1 AND key = $2",
				       2};
static const db_stmt st_suspend = {
	"gitops_suspend",
	"UPDATE gitops_state SET suspended = $1, suspended_by = CASE WHEN $1 THEN $2 END,"
	" suspended_at = CASE WHEN $1 THEN now() END, replan = replan OR NOT $1 WHERE suspended <> $1 RETURNING 1",
	2};
static const db_stmt st_wake = {"gitops_wake",
				"WITH w AS (UPDATE gitops_state SET woken_at = clock_timestamp() RETURNING 1)"
				" SELECT pg_notify('gn_jobs', 'gitops') FROM w",
				0};
static const db_stmt st_clock = {"gitops_clock", "SELECT clock_timestamp()::text", 0};
static const db_stmt st_woken = {"gitops_woken", "SELECT coalesce(woken_at > $1::timestamptz, false) FROM gitops_state",
				 1};
/* A webhook came since the last check (a resume wakes the sync too, and asks for a re-plan). */
static const db_stmt st_hooked = {
	"gitops_hooked",
	"SELECT coalesce(woken_at > coalesce(checked_at, '-infinity') AND NOT replan, false) FROM gitops_state", 0};

/* --- settings ----------------------------------------------------------------------------------- */

struct settings {
	struct gitops_source src;
	char *cache_dir; /* new */
	const char *branch, *path;
};

static void settings_init(struct settings *s, const struct gd_config *cfg)
{
	s->cache_dir = gn_asprintf("%s/gitops", cfg->data_dir);
	s->src = (struct gitops_source){cfg->gitops_repository,      cfg->gitops_token_file, cfg->gitops_ssh_key,
					cfg->gitops_ssh_known_hosts, s->cache_dir,           cfg->gitops_timeout};
	s->branch = cfg->gitops_branch;
	s->path = cfg->gitops_path;
}

static void settings_cleanup(struct settings *s)
{
	free(s->cache_dir);
}

static bool enabled(const struct gd_config *cfg)
{
	return cfg->gitops_repository && *cfg->gitops_repository;
}

static int check_path(const char *path, gn_err *err)
{
	char *copy = gn_strdup(path), *save = NULL;
	int error = 0;
	if (*path == '/' || (*path && path[strlen(path) - 1] == '/'))
		error = GN_EINVAL;
	for (char *p = strtok_r(copy, "/", &save); p && !error; p = strtok_r(NULL, "/", &save))
		if (strcmp(p, ".") == 0 || strcmp(p, "..") == 0)
			error = GN_EINVAL;
	if (!error && strstr(path, "//"))
		error = GN_EINVAL;
	free(copy);
	if (error)
		return gn_err_set(err, GN_EINVAL,
				  "gitops-path '%.200s' must be a directory of the repository, relative, without . or "
				  ".. and without a leading or trailing /",
				  path);
	return 0;
}

static int check_secret_file(const char *path, gn_err *err)
{
	char *s = NULL;
	gn_err e;
	if (gn_secret_file_read(&s, path, 4096, &e))
		return gn_err_set(err, GN_EINVAL, "gitops-webhook-secret-file: %s", e.msg);
	size_t len = strlen(s);
	OPENSSL_cleanse(s, len);
	free(s);
	if (len < 16)
		return gn_err_set(err, GN_EINVAL,
				  "gitops-webhook-secret-file %s must hold a secret of 16 bytes or more", path);
	return 0;
}

int gitops_check_config(const struct gd_config *cfg, gn_err *err)
{
	static const struct {
		const char *key;
		size_t offset;
	} needs_repo[] = {
		{"gitops-token-file", offsetof(struct gd_config, gitops_token_file)},
		{"gitops-ssh-key", offsetof(struct gd_config, gitops_ssh_key)},
		{"gitops-ssh-known-hosts", offsetof(struct gd_config, gitops_ssh_known_hosts)},
		{"gitops-allowed-signers", offsetof(struct gd_config, gitops_allowed_signers)},
		{"gitops-webhook-secret-file", offsetof(struct gd_config, gitops_webhook_secret_file)},
		{"gitops-path", offsetof(struct gd_config, gitops_path)},
	};
	struct settings s;
	gn_allowed_signers a;
	gn_err e;
	int error = 0;
	if (!enabled(cfg)) {
		for (size_t i = 0; i < GN_ARRAY_LEN(needs_repo); i++)
			if (**(char *const *)((const char *)cfg + needs_repo[i].offset))
				return gn_err_set(err, GN_EINVAL, "%s is set but gitops-repository is not",
						  needs_repo[i].key);
		return 0;
	}
	if (!*cfg->gitops_branch || strncmp(cfg->gitops_branch, "refs/", 5) == 0 ||
	    !gitops_repo_ref_valid(cfg->gitops_branch))
		return gn_err_set(err, GN_EINVAL, "gitops-branch '%.100s' is not a valid branch name",
				  cfg->gitops_branch);
	if ((error = check_path(cfg->gitops_path, err)))
		return error;
	settings_init(&s, cfg);
	error = gitops_repo_check(&s.src, err);
	settings_cleanup(&s);
	if (error)
		return error;
	if (*cfg->gitops_allowed_signers) {
		error = gn_allowed_signers_load(&a, cfg->gitops_allowed_signers, &e);
		gn_allowed_signers_cleanup(&a);
		if (error)
			return gn_err_set(err, GN_EINVAL, "gitops-allowed-signers: %s", e.msg);
	}
	if (*cfg->gitops_webhook_secret_file)
		return check_secret_file(cfg->gitops_webhook_secret_file, err);
	return 0;
}

/* --- what the server holds ------------------------------------------------------------------ */

struct server {
	PGresult *deps;    /* name, model, selector, follows, strategy */
	PGresult *aliases; /* model, alias, version */
	PGresult *managed; /* kind, key, file, line, commit, spec, applied_at */
};

static int server_load(struct server *s, db_conn *c, gn_err *err)
{
	memset(s, 0, sizeof(*s));
	int error;
	if ((error = db_exec(&s->deps, c, &st_deployments, NULL, err)) ||
	    (error = db_exec(&s->aliases, c, &st_aliases, NULL, err)) ||
	    (error = db_exec(&s->managed, c, &st_managed, NULL, err)))
		return error;
	return 0;
}

static void server_cleanup(struct server *s)
{
	PQclear(s->deps);
	PQclear(s->aliases);
	PQclear(s->managed);
	memset(s, 0, sizeof(*s));
}

static int find_row(const PGresult *res, const char *a, const char *b)
{
	for (int i = 0; res && i < PQntuples(res); i++)
		if (strcmp(PQgetvalue(res, i, 0), a) == 0 && (!b || strcmp(PQgetvalue(res, i, 1), b) == 0))
			return i;
	return -1;
}

static int dep_row(const struct server *s, const char *name)
{
	return find_row(s->deps, name, NULL);
}

static int alias_row(const struct server *s, const char *model, const char *alias)
{
	return find_row(s->aliases, model, alias);
}

static int managed_row(const struct server *s, const char *kind, const char *key)
{
	return find_row(s->managed, kind, key);
}

/* --- plans ---------------------------------------------------------------------------------- */

enum action { A_CREATE, A_CHANGE, A_ADOPT, A_DELETE, A_RELEASE, A_KEEP };
static const char *const action_names[] = {"create", "change", "adopt", "delete", "release", "unchanged"};

struct item {
	enum action action;
	const char *kind;
	char *key;
	const gn_manifest_object *obj; /* NULL for delete and release */
	char *file;                    /* where it is (or was) declared */
	int line;
	json_t *changes; /* {"field": {"from": server, "to": git}} */
	json_t *spec;    /* what gitops_objects records: the document's fields, strategy complete */
};

struct plan {
	struct item *v;
	size_t n, cap;
	gn_manifest_errors errors;
};

static struct item *plan_add(struct plan *p, enum action a, const char *kind, const char *key, const char *file,
			     int line)
{
	if (p->n == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 16;
		p->v = gn_realloc(p->v, p->cap * sizeof(*p->v));
	}
	struct item *it = &p->v[p->n++];
	*it = (struct item){a, kind, gn_strdup(key), NULL, gn_strdup(file), line, json_object(), NULL};
	return it;
}

static void plan_cleanup(struct plan *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->v[i].key);
		free(p->v[i].file);
		json_decref(p->v[i].changes);
		json_decref(p->v[i].spec);
	}
	free(p->v);
	gn_manifest_errors_cleanup(&p->errors);
	memset(p, 0, sizeof(*p));
}

/* The plan as the API shows it: every item but the unchanged ones (new). */
static json_t *plan_json(const struct plan *p)
{
	json_t *a = json_array();
	for (size_t i = 0; i < p->n; i++) {
		const struct item *it = &p->v[i];
		if (it->action != A_KEEP)
			json_array_append_new(a, json_pack("{s:s,s:s,s:s,s:s,s:i,s:O}", "action",
							   action_names[it->action], "kind", it->kind, "name", it->key,
							   "file", it->file, "line", it->line, "changes", it->changes));
	}
	return a;
}

/* Records field in changes when the server's value (may be NULL: none) differs from git's. */
static void diff(json_t *changes, const char *field, const json_t *server, const json_t *git)
{
	if (server && git && json_equal((json_t *)server, (json_t *)git))
		return;
	json_object_set_new(
		changes, field,
		json_pack("{s:O,s:O}", "from", server ? server : json_null(), "to", git ? git : json_null()));
}

/* The line an error from the server's checks is about: strategy_parse names the field first
 * ("strategy.stages[1].percent must ...", "strategy.gates: unknown field 'x'"). */
static int strategy_line(const gn_manifest_object *o, const char *msg)
{
	char path[256];
	const char *f = strstr(msg, "field '");
	size_t n = strcspn(msg, " :");
	if (f)
		snprintf(path, sizeof(path), "%.*s.%.*s", (int)n, msg, (int)strcspn(f + 7, "'"), f + 7);
	else
		snprintf(path, sizeof(path), "%.*s", (int)n, msg);
	return gn_manifest_line(&o->lines, path);
}

static int exists(bool *out, db_conn *c, const db_stmt *st, const char *a, const char *b, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {a, b};
	int error = db_exec(&res, c, st, p, err);
	*out = !error && PQntuples(res) > 0;
	PQclear(res);
	return error;
}

/* Records an error about o, at the line of field. */
static void GN_PRINTF(4, 5)
	obj_error(struct plan *p, const gn_manifest_object *o, const char *field, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	gn_manifest_errors_vadd(&p->errors, o->file, gn_manifest_line(&o->lines, field), fmt, ap);
	va_end(ap);
}

/* True when the server's alias model/alias will still exist once the commit is applied. */
static bool alias_stays(const struct server *s, const gn_manifest_set *set, const struct gd_config *cfg,
			const char *model, const char *alias)
{
	char key[200];
	snprintf(key, sizeof(key), "%s/%s", model, alias);
	if (gn_manifest_set_find(set, "ModelAlias", key))
		return true;
	return alias_row(s, model, alias) >= 0 && (managed_row(s, "ModelAlias", key) < 0 || !cfg->gitops_prune);
}

static int plan_deployment(struct plan *p, db_conn *c, const struct server *s, const gn_manifest_set *set,
			   const struct gd_config *cfg, const gn_manifest_object *o, gn_err *err)
{
	struct strategy st;
	json_t *sj = NULL;
	gn_err e;
	bool ok = false;
	const char *model = gn_json_str(o->doc, "model"), *follow = gn_json_str(o->doc, "follow");
	int error = 0, before = (int)p->errors.n;
	if (strategy_parse(&st, &sj, json_object_get(o->doc, "strategy"), &e))
		gn_manifest_errors_add(&p->errors, o->file, strategy_line(o, e.msg), "%s", e.msg);
	if ((error = exists(&ok, c, &st_model, model, NULL, err)))
		goto out;
	if (!ok)
		obj_error(p, o, "model", "model: no model '%s' is published", model);
	else if (!alias_stays(s, set, cfg, model, follow)) {
		if ((error = exists(&ok, c, &st_version, model, follow, err)))
			goto out;
		if (!ok)
			obj_error(p, o, "follow", "follow: model %s has no version or alias '%s'", model, follow);
	}
	int row = dep_row(s, o->key);
	if (row >= 0 && strcmp(PQgetvalue(s->deps, row, 1), model) != 0)
		obj_error(p, o, "model",
			  "model: deployment %s runs model %s on the server, and a deployment's model cannot change; "
			  "give the new one another name",
			  o->key, PQgetvalue(s->deps, row, 1));
	if ((int)p->errors.n != before)
		goto out;
	bool managed = managed_row(s, "Deployment", o->key) >= 0;
	enum action a = row < 0 ? A_CREATE : managed ? A_CHANGE : A_ADOPT;
	struct item *it = plan_add(p, a, "Deployment", o->key, o->file, gn_manifest_line(&o->lines, ""));
	it->obj = o;
	it->spec = json_pack("{s:s,s:s,s:s,s:O}", "model", model, "selector", gn_json_str(o->doc, "selector"), "follow",
			     follow, "strategy", sj);
	if (row >= 0) {
		json_t *old = json_loads(PQgetvalue(s->deps, row, 4), 0, NULL);
		json_t *sel = json_string(PQgetvalue(s->deps, row, 2)), *fol = json_string(PQgetvalue(s->deps, row, 3));
		diff(it->changes, "selector", sel, json_object_get(it->spec, "selector"));
		diff(it->changes, "follow", fol, json_object_get(it->spec, "follow"));
		diff(it->changes, "strategy", old, sj);
		json_decref(old);
		json_decref(sel);
		json_decref(fol);
		if (a == A_CHANGE && json_object_size(it->changes) == 0)
			it->action = A_KEEP;
	}
out:
	json_decref(sj);
	return error;
}

static int plan_alias(struct plan *p, db_conn *c, const struct server *s, const gn_manifest_object *o, gn_err *err)
{
	const char *model = gn_json_str(o->doc, "model"), *alias = gn_json_str(o->doc, "alias");
	const char *version = gn_json_str(o->doc, "version");
	bool ok = false;
	int error;
	if ((error = exists(&ok, c, &st_model, model, NULL, err)))
		return error;
	if (!ok) {
		obj_error(p, o, "model", "model: no model '%s' is published", model);
		return 0;
	}
	if ((error = exists(&ok, c, &st_version, model, version, err)))
		return error;
	if (!ok) {
		obj_error(p, o, "version", "version: model %s has no version %s", model, version);
		return 0;
	}
	int row = alias_row(s, model, alias);
	enum action a = row < 0 ? A_CREATE : managed_row(s, "ModelAlias", o->key) >= 0 ? A_CHANGE : A_ADOPT;
	struct item *it = plan_add(p, a, "ModelAlias", o->key, o->file, gn_manifest_line(&o->lines, ""));
	it->obj = o;
	it->spec = json_pack("{s:s,s:s,s:s}", "model", model, "alias", alias, "version", version);
	if (row >= 0) {
		json_t *old = json_string(PQgetvalue(s->aliases, row, 2));
		diff(it->changes, "version", old, json_object_get(it->spec, "version"));
		json_decref(old);
		if (a == A_CHANGE && json_object_size(it->changes) == 0)
			it->action = A_KEEP;
	} else
		diff(it->changes, "version", NULL, json_object_get(it->spec, "version"));
	/* A yanked version may stay where an alias names it, but not be newly named. */
	gn_err e;
	if (it->action != A_KEEP && (error = models_targetable(c, model, version, "an alias", &e))) {
		if (error != GN_ECONFLICT) {
			*err = e;
			return error;
		}
		obj_error(p, o, "version", "version: %s", e.msg);
	}
	return 0;
}

/* Managed objects that the commit no longer declares: deleted (gitops-prune) or released. */
static void plan_removals(struct plan *p, const struct server *s, const gn_manifest_set *set, bool prune)
{
	for (int i = 0; i < PQntuples(s->managed); i++) {
		const char *kind = PQgetvalue(s->managed, i, 0), *key = PQgetvalue(s->managed, i, 1);
		if (gn_manifest_set_find(set, kind, key))
			continue;
		bool dep = strcmp(kind, "Deployment") == 0, there = false;
		if (dep)
			there = dep_row(s, key) >= 0;
		else if (strchr(key, '/')) {
			char *model = gn_strndup(key, (size_t)(strchr(key, '/') - key));
			there = alias_row(s, model, strchr(key, '/') + 1) >= 0;
			free(model);
		}
		plan_add(p, prune && there ? A_DELETE : A_RELEASE, dep ? "Deployment" : "ModelAlias", key,
			 PQgetvalue(s->managed, i, 2), atoi(PQgetvalue(s->managed, i, 3)));
	}
}

/* Plans set against what the server holds now (read on c, inside the caller's transaction when
 * it has one); errors that need the server go to p->errors with file and line. */
static int plan_make(struct plan *p, db_conn *c, const gn_manifest_set *set, const struct gd_config *cfg, gn_err *err)
{
	struct server s;
	int error = server_load(&s, c, err);
	for (size_t i = 0; !error && i < set->n; i++) {
		const gn_manifest_object *o = &set->v[i];
		if (strcmp(o->kind->name, "Deployment") == 0)
			error = plan_deployment(p, c, &s, set, cfg, o, err);
		else
			error = plan_alias(p, c, &s, o, err);
	}
	if (!error)
		plan_removals(p, &s, set, cfg->gitops_prune);
	server_cleanup(&s);
	return error;
}

/* Adds to set->errors what the server would refuse in the documents that did parse, so that a
 * refusal names every error at once (the plan itself is not shown: files are missing from it). */
static int server_errors(gn_manifest_set *set, db_conn *c, const struct gd_config *cfg, gn_err *err)
{
	struct plan p;
	memset(&p, 0, sizeof(p));
	int error = plan_make(&p, c, set, cfg, err);
	for (size_t i = 0; !error && i < p.errors.n; i++)
		gn_manifest_errors_add(&set->errors, p.errors.v[i].file, p.errors.v[i].line, "%s", p.errors.v[i].msg);
	plan_cleanup(&p);
	return error;
}

/* --- applying ------------------------------------------------------------------------------- */

/* Splits a ModelAlias key "model/alias" (model is new). */
static char *alias_model(const char *key, const char **out_alias)
{
	const char *slash = strchr(key, '/');
	*out_alias = slash + 1;
	return gn_strndup(key, (size_t)(slash - key));
}

/* The domain call for one item, in the caller's transaction. */
static int apply_item(db_conn *c, const struct gd_actor *who, const struct item *it, gn_err *err)
{
	char *out = NULL;
	const char *alias = NULL;
	int error = 0;
	if (strcmp(it->kind, "ModelAlias") == 0) {
		char *model = alias_model(it->key, &alias);
		if (it->action == A_DELETE)
			error = models_alias_delete_tx(c, who, model, alias, err);
		else
			error = models_alias_set_tx(c, who, model, alias, gn_json_str(it->spec, "version"), err);
		free(model);
		return error;
	}
	if (it->action == A_DELETE)
		return deployments_delete_tx(c, who, it->key, err);
	json_t *req = json_pack("{s:O,s:O,s:O}", "selector", json_object_get(it->spec, "selector"), "follow",
				json_object_get(it->spec, "follow"), "strategy", json_object_get(it->spec, "strategy"));
	if (it->action == A_CREATE) {
		json_object_set_new(req, "name", json_string(it->key));
		json_object_set(req, "model", json_object_get(it->spec, "model"));
		error = deployments_create_tx(&out, c, who, req, err);
	} else
		error = deployments_update_tx(&out, c, who, it->key, req, err);
	free(out);
	json_decref(req);
	return error;
}

/* The order of the calls: deletions first (they may free devices another deployment takes),
 * aliases before the deployments that follow them, changes before creations, and the aliases that
 * go away once nothing follows them. */
static int phase_of(const struct item *it)
{
	bool dep = strcmp(it->kind, "Deployment") == 0;
	switch (it->action) {
	case A_DELETE: return dep ? 0 : 4;
	case A_CREATE: return dep ? 3 : 1;
	case A_CHANGE:
	case A_ADOPT: return dep ? 2 : 1;
	default: return -1;
	}
}

/* The line a failed domain call is about. */
static int item_line(const struct item *it, const char *msg)
{
	if (!it->obj)
		return it->line;
	if (strstr(msg, "selector"))
		return gn_manifest_line(&it->obj->lines, "selector");
	if (strstr(msg, "rollout") || strstr(msg, "version"))
		return gn_manifest_line(&it->obj->lines, strcmp(it->kind, "Deployment") == 0 ? "follow" : "version");
	return it->line;
}

static int record_objects(db_conn *c, const struct plan *p, const char *commit, gn_err *err)
{
	int error = 0;
	for (size_t i = 0; !error && i < p->n; i++) {
		const struct item *it = &p->v[i];
		if (it->action == A_DELETE || it->action == A_RELEASE) {
			const char *pd[] = {it->kind, it->key};
			error = db_exec(NULL, c, &st_object_drop, pd, err);
			continue;
		}
		char line[16], *spec = gn_json_dump(it->spec);
		snprintf(line, sizeof(line), "%d", it->line);
		const char *pp[] = {it->kind, it->key, it->file, line, commit, spec};
		error = db_exec(NULL, c, &st_object_put, pp, err);
		free(spec);
	}
	return error;
}

struct sync {
	const struct gd_config *cfg;
	const struct settings *s;
	const gn_manifest_set *set;
	const struct gitops_commit *head;
	const char *signer; /* NULL when signatures are not required */
	const char *by;
	bool rewritten;
};

/* Plans and applies y in one transaction. 0 with p->errors empty: applied; 0 with errors: refused
 * (nothing changed); otherwise a failure. */
static int apply(struct plan *p, db_conn *c, const struct sync *y, gn_err *err)
{
	struct gd_actor who;
	gn_err e;
	int error;
	size_t changed = 0;
	actor_system(&who, "gitops");
	snprintf(who.request_id, sizeof(who.request_id), "%.40s", y->head->id);
	if ((error = db_tx_begin(c, err)) || (error = db_exec(NULL, c, &st_apply_mode, NULL, err)) ||
	    (error = db_lock_xact(c, DB_LOCK_DEPLOYMENTS, err)) || (error = plan_make(p, c, y->set, y->cfg, err)) ||
	    p->errors.n)
		goto out;
	for (int phase = 0; phase <= 4 && !p->errors.n; phase++)
		for (size_t i = 0; i < p->n && !p->errors.n; i++) {
			const struct item *it = &p->v[i];
			if (phase_of(it) != phase)
				continue;
			changed++;
			if (apply_item(c, &who, it, &e)) {
				if (e.code == GN_EUNAVAIL || e.code == GN_ERROR) {
					*err = e;
					error = e.code;
					goto out;
				}
				gn_manifest_errors_add(&p->errors, it->file, item_line(it, e.msg), "%s %s: %s",
						       it->kind, it->key, e.msg);
			}
		}
	if (p->errors.n)
		goto out;
	json_t *detail = json_pack("{s:s,s:s,s:s,s:s,s:o,s:s,s:b,s:o}", "repository", y->s->src.url, "branch",
				   y->s->branch, "commit", y->head->id, "summary", y->head->summary, "signer",
				   y->signer ? json_string(y->signer) : json_null(), "by", y->by, "rewritten",
				   y->rewritten, "changes", plan_json(p));
	const char *pa[] = {y->s->src.url, y->s->branch, y->s->path, y->head->id, y->signer};
	if ((error = record_objects(c, p, y->head->id, err)) ||
	    (error = audit_write(c, &who, "gitops.apply", "commit", y->head->id, detail, err)) ||
	    (error = db_exec(NULL, c, &st_applied, pa, err)) || (error = rollouts_wake(c, err)) ||
	    (error = db_tx_commit(c, err)))
		goto out;
	gn_log(GN_LOG_INFO, "event=gitops_applied commit=%s changes=%zu signer=%s", y->head->id, changed,
	       y->signer ? y->signer : "-");
out:
	if (error || p->errors.n)
		db_tx_rollback(c);
	return error;
}

/* --- syncing -------------------------------------------------------------------------------- */

/* Records a refused commit or a failed fetch (head may be NULL), logging it when it is news. */
static int record_refusal(db_conn *c, const PGresult *state, const char *status, const struct gitops_commit *head,
			  const char *signer, const gn_manifest_errors *errors, json_t *plan, gn_err *err)
{
	json_t *ej = gn_manifest_errors_json(errors), *old = json_loads(PQgetvalue(state, 0, S_ERRORS), 0, NULL);
	char *es = gn_json_dump(ej), *ps = gn_json_dump(plan);
	const char *id = head ? head->id : NULL, *was = db_val(state, 0, S_HEAD);
	const char *p[] = {status, id, signer, es, ps};
	if (!json_equal(ej, old) || (id && (!was || strcmp(was, id) != 0)))
		gn_log(GN_LOG_WARN, "event=gitops_%s commit=%s errors=%zu first=\"%s%s%d: %s\"", status, id ? id : "-",
		       errors->n, errors->n && *errors->v[0].file ? errors->v[0].file : "",
		       errors->n && *errors->v[0].file ? ":" : "", errors->n ? errors->v[0].line : 0,
		       errors->n ? errors->v[0].msg : "");
	int error = db_exec(NULL, c, &st_refused, p, err);
	json_decref(ej);
	json_decref(old);
	json_decref(plan);
	free(es);
	free(ps);
	return error;
}

/* Checks the head's signature when gitops-allowed-signers is set; problems go to errors. */
static void check_signature(char **out_signer, gn_manifest_errors *errors, const struct gd_config *cfg,
			    const struct gitops_commit *head)
{
	gn_allowed_signers a;
	gn_err e;
	*out_signer = NULL;
	if (!*cfg->gitops_allowed_signers)
		return;
	if (gn_allowed_signers_load(&a, cfg->gitops_allowed_signers, &e))
		gn_manifest_errors_add(errors, "", 0, "gitops-allowed-signers: %s", e.msg);
	else if (!head->signature)
		gn_manifest_errors_add(errors, "", 0,
				       "commit %.12s is not signed; gitops-allowed-signers requires an SSH signature "
				       "(git commit -S with gpg.format=ssh)",
				       head->id);
	else if (gn_sshsig_verify(out_signer, &a, "git", head->time, head->signature, head->signature_len,
				  head->signed_data, head->signed_len, &e))
		gn_manifest_errors_add(errors, "", 0, "commit %.12s: %s", head->id, e.msg);
	gn_allowed_signers_cleanup(&a);
}

/* True when the applied commit came from this repository and branch (and path, with_path). */
static bool same_source(const PGresult *state, const struct settings *s, bool with_path)
{
	const char *r = db_val(state, 0, S_REPO), *b = db_val(state, 0, S_BRANCH), *p = db_val(state, 0, S_PATH);
	return r && b && p && strcmp(r, s->src.url) == 0 && strcmp(b, s->branch) == 0 &&
	       (!with_path || strcmp(p, s->path) == 0);
}

static int sync_once(db_conn *c, const struct gd_config *cfg, const char *by, bool force, bool allow_rewrite,
		     gn_err *err)
{
	PGresult *state = NULL;
	struct settings s;
	struct gitops_commit head;
	gn_manifest_set set;
	struct plan p;
	char *signer = NULL;
	gn_err e;
	int error;
	memset(&head, 0, sizeof(head));
	memset(&set, 0, sizeof(set));
	memset(&p, 0, sizeof(p));
	settings_init(&s, cfg);
	if ((error = db_exec(&state, c, &st_state, NULL, err)))
		goto out;
	if (strcmp(PQgetvalue(state, 0, S_SUSPENDED), "t") == 0) {
		error = gn_err_set(err, GN_ECONFLICT, "GitOps sync is suspended (by %s since %s); resume it first",
				   PQgetvalue(state, 0, S_SUSPENDED_BY), PQgetvalue(state, 0, S_SUSPENDED_AT));
		goto out;
	}
	const char *applied = db_val(state, 0, S_APPLIED);
	bool same = same_source(state, &s, false);
	if (gitops_repo_read(&head, &set, &s.src, s.branch, s.path, same ? applied : NULL, &e)) {
		gn_manifest_errors_add(&p.errors, "", 0, "%s", e.msg);
		error = record_refusal(c, state, "failed", NULL, NULL, &p.errors, json_array(), err);
		goto out;
	}
	if (applied && strcmp(applied, head.id) == 0 && same_source(state, &s, true) && !force &&
	    strcmp(PQgetvalue(state, 0, S_STATUS), "synced") == 0 && strcmp(PQgetvalue(state, 0, S_REPLAN), "f") == 0) {
		error = db_exec(NULL, c, &st_checked, NULL, err);
		goto out;
	}
	check_signature(&signer, &set.errors, cfg, &head);
	/* Another repository, or a force push: perhaps an old signed state brought back. */
	if (applied && (!same || head.descends == 0) && !allow_rewrite)
		gn_manifest_errors_add(
			&set.errors, "", 0,
			"commit %.12s does not descend from the applied commit %.12s (history rewritten, or "
			"another repository or branch); the applied state stays until an operator runs "
			"`ganglion gitops sync --allow-rewrite`",
			head.id, applied);
	if (set.errors.n || set.errors.more) {
		if (!(error = server_errors(&set, c, cfg, err)))
			error = record_refusal(c, state, "refused", &head, signer, &set.errors, json_array(), err);
		goto out;
	}
	struct sync y = {cfg, &s, &set, &head, signer, by, applied && (!same || head.descends == 0)};
	if ((error = apply(&p, c, &y, err)))
		goto out;
	if (p.errors.n)
		error = record_refusal(c, state, "refused", &head, signer, &p.errors, plan_json(&p), err);
out:
	PQclear(state);
	free(signer);
	plan_cleanup(&p);
	gn_manifest_set_cleanup(&set);
	gitops_commit_cleanup(&head);
	settings_cleanup(&s);
	return error;
}

static int lock(db_conn *c, gn_err *err)
{
	bool got = false;
	int error = db_try_lock_session(&got, c, DB_LOCK_GITOPS, err);
	if (!error && !got)
		error = gn_err_set(err, GN_ECONFLICT, "a GitOps sync or plan is running; try again shortly");
	return error;
}

static int woken_since(bool *out, db_conn *c, const char *since, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {since};
	int error = db_exec(&res, c, &st_woken, p, err);
	*out = !error && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return error;
}

int gitops_sync(json_t **out, db_conn *c, const struct gd_config *cfg, const char *by, bool force, bool allow_rewrite,
		gn_err *err)
{
	int error;
	if (out)
		*out = NULL;
	if (!enabled(cfg))
		return gn_err_set(err, GN_ECONFLICT, "GitOps is off: gitops-repository is not set");
	if ((error = lock(c, err)))
		return error;
	/* A webhook during a sync may announce a commit this one fetched too early: go again. */
	for (int round = 0; round < 3; round++) {
		PGresult *clock = NULL;
		bool again = false;
		if ((error = db_exec(&clock, c, &st_clock, NULL, err)) ||
		    (error = sync_once(c, cfg, by, force && round == 0, allow_rewrite && round == 0, err)) ||
		    (error = woken_since(&again, c, PQgetvalue(clock, 0, 0), err)) || !again) {
			PQclear(clock);
			break;
		}
		PQclear(clock);
	}
	db_unlock_session(c, DB_LOCK_GITOPS);
	if (!error && out)
		error = gitops_status(out, c, cfg, err);
	return error;
}

int gitops_poll(db_conn *c, const struct gd_config *cfg, gn_err *err)
{
	PGresult *res = NULL;
	if (!enabled(cfg))
		return 0;
	int error = db_exec(&res, c, &st_hooked, NULL, err);
	if (!error) {
		bool hooked = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
		error = gitops_sync(NULL, c, cfg, hooked ? "webhook" : "poll", false, false, err);
	}
	PQclear(res);
	return error == GN_ECONFLICT ? 0 : error; /* suspended, or a sync running elsewhere */
}

int gitops_plan(json_t **out, db_conn *c, const struct gd_config *cfg, const char *ref, gn_err *err)
{
	PGresult *state = NULL;
	struct settings s;
	struct gitops_commit head;
	gn_manifest_set set;
	struct plan p;
	char *signer = NULL;
	int error;
	*out = NULL;
	memset(&set, 0, sizeof(set));
	memset(&p, 0, sizeof(p));
	memset(&head, 0, sizeof(head));
	if (!enabled(cfg))
		return gn_err_set(err, GN_ECONFLICT, "GitOps is off: gitops-repository is not set");
	if (ref && !gitops_repo_ref_valid(ref))
		return gn_err_set(err, GN_EINVAL, "'%.200s' is not a valid branch or ref name", ref);
	if ((error = lock(c, err)))
		return error;
	settings_init(&s, cfg);
	if ((error = db_exec(&state, c, &st_state, NULL, err)) ||
	    (error = gitops_repo_read(&head, &set, &s.src, ref ? ref : s.branch, s.path,
				      same_source(state, &s, false) ? db_val(state, 0, S_APPLIED) : NULL, err)))
		goto out;
	check_signature(&signer, &set.errors, cfg, &head);
	if (set.errors.n ? (error = server_errors(&set, c, cfg, err)) : (error = plan_make(&p, c, &set, cfg, err)))
		goto out;
	for (size_t i = 0; i < set.errors.n; i++)
		gn_manifest_errors_add(&p.errors, set.errors.v[i].file, set.errors.v[i].line, "%s",
				       set.errors.v[i].msg);
	*out = json_pack("{s:s,s:s,s:s,s:o,s:b,s:o,s:o}", "ref", ref ? ref : s.branch, "commit", head.id, "summary",
			 head.summary, "signer", signer ? json_string(signer) : json_null(), "rewritten",
			 head.descends == 0, "changes", plan_json(&p), "errors", gn_manifest_errors_json(&p.errors));
out:
	db_unlock_session(c, DB_LOCK_GITOPS);
	PQclear(state);
	free(signer);
	plan_cleanup(&p);
	gn_manifest_set_cleanup(&set);
	gitops_commit_cleanup(&head);
	settings_cleanup(&s);
	return error;
}

/* --- status ----------------------------------------------------------------------------------- */

/* Differences between what git says (spec) and the server's object, or NULL when they agree. */
static json_t *drift_of(const struct server *s, int m)
{
	const char *kind = PQgetvalue(s->managed, m, 0), *key = PQgetvalue(s->managed, m, 1);
	json_t *spec = json_loads(PQgetvalue(s->managed, m, 5), 0, NULL), *changes = json_object();
	const char *state = NULL;
	if (strcmp(kind, "Deployment") == 0) {
		int row = dep_row(s, key);
		if (row < 0)
			state = "deleted";
		else {
			json_t *sel = json_string(PQgetvalue(s->deps, row, 2)),
			       *fol = json_string(PQgetvalue(s->deps, row, 3));
			json_t *st = json_loads(PQgetvalue(s->deps, row, 4), 0, NULL);
			diff(changes, "selector", sel, json_object_get(spec, "selector"));
			diff(changes, "follow", fol, json_object_get(spec, "follow"));
			diff(changes, "strategy", st, json_object_get(spec, "strategy"));
			json_decref(sel);
			json_decref(fol);
			json_decref(st);
		}
	} else {
		int row = alias_row(s, gn_json_str(spec, "model"), gn_json_str(spec, "alias"));
		if (row < 0)
			state = "deleted";
		else {
			json_t *v = json_string(PQgetvalue(s->aliases, row, 2));
			diff(changes, "version", v, json_object_get(spec, "version"));
			json_decref(v);
		}
	}
	if (!state && json_object_size(changes))
		state = "changed";
	json_t *d = NULL;
	if (state)
		d = json_pack("{s:s,s:s,s:s,s:i,s:s,s:O}", "kind", kind, "name", key, "file",
			      PQgetvalue(s->managed, m, 2), "line", atoi(PQgetvalue(s->managed, m, 3)), "drift", state,
			      "changes", changes);
	json_decref(spec);
	json_decref(changes);
	return d;
}

static json_t *text_or_null(const PGresult *res, int col)
{
	const char *v = db_val(res, 0, col);
	return v ? json_string(v) : json_null();
}

int gitops_status(json_t **out, db_conn *c, const struct gd_config *cfg, gn_err *err)
{
	PGresult *st = NULL;
	struct server s;
	int error;
	*out = NULL;
	if ((error = db_exec(&st, c, &st_state, NULL, err)) || (error = server_load(&s, c, err))) {
		PQclear(st);
		return error;
	}
	json_t *objects = json_array(), *drift = json_array();
	for (int i = 0; i < PQntuples(s.managed); i++) {
		json_t *d = drift_of(&s, i);
		if (d)
			json_array_append_new(drift, d);
		json_array_append_new(
			objects, json_pack("{s:s,s:s,s:s,s:i,s:s,s:s}", "kind", PQgetvalue(s.managed, i, 0), "name",
					   PQgetvalue(s.managed, i, 1), "file", PQgetvalue(s.managed, i, 2), "line",
					   atoi(PQgetvalue(s.managed, i, 3)), "commit", PQgetvalue(s.managed, i, 4),
					   "applied_at", PQgetvalue(s.managed, i, 6)));
	}
	bool on = enabled(cfg), suspended = strcmp(PQgetvalue(st, 0, S_SUSPENDED), "t") == 0;
	json_t *errors = json_loads(PQgetvalue(st, 0, S_ERRORS), 0, NULL);
	json_t *plan = json_loads(PQgetvalue(st, 0, S_PLAN), 0, NULL);
	*out = json_pack("{s:b,s:o,s:o,s:o,s:b,s:b,s:s,s:o,s:{s:o,s:o,s:o},s:{s:o,s:o,s:o},s:o,s:o,s:o,s:o}", "enabled",
			 on, "repository", on ? json_string(cfg->gitops_repository) : json_null(), "branch",
			 on ? json_string(cfg->gitops_branch) : json_null(), "path",
			 on ? json_string(cfg->gitops_path) : json_null(), "signatures_required",
			 on && *cfg->gitops_allowed_signers, "prune", cfg->gitops_prune, "status",
			 PQgetvalue(st, 0, S_STATUS), "suspended",
			 suspended ? json_pack("{s:s,s:s}", "by", PQgetvalue(st, 0, S_SUSPENDED_BY), "at",
					       PQgetvalue(st, 0, S_SUSPENDED_AT))
				   : json_null(),
			 "head", "commit", text_or_null(st, S_HEAD), "signer", text_or_null(st, S_HEAD_SIGNER),
			 "checked_at", text_or_null(st, S_CHECKED), "applied", "commit", text_or_null(st, S_APPLIED),
			 "signer", text_or_null(st, S_SIGNER), "at", text_or_null(st, S_APPLIED_AT), "errors",
			 errors ? errors : json_array(), "plan", plan ? plan : json_array(), "drift", drift, "objects",
			 objects);
	server_cleanup(&s);
	PQclear(st);
	return 0;
}

/* --- suspend, resume, webhook ----------------------------------------------------------------- */

int gitops_suspend(json_t **out, db_conn *c, const struct gd_actor *who, const struct gd_config *cfg, bool suspend,
		   gn_err *err)
{
	PGresult *res = NULL;
	char label[128];
	int error;
	*out = NULL;
	if (!enabled(cfg))
		return gn_err_set(err, GN_ECONFLICT, "GitOps is off: gitops-repository is not set");
	actor_label(label, sizeof(label), who);
	const char *p[] = {suspend ? "true" : "false", label};
	if ((error = db_tx_begin(c, err)) || (error = db_exec(&res, c, &st_suspend, p, err)))
		goto out;
	if (PQntuples(res) == 0) {
		error = gn_err_set(err, GN_ECONFLICT, "GitOps sync is %s already", suspend ? "suspended" : "running");
		goto out;
	}
	if ((error = audit_write(c, who, suspend ? "gitops.suspend" : "gitops.resume", "gitops", NULL, NULL, err)) ||
	    (!suspend && (error = db_exec(NULL, c, &st_wake, NULL, err))) || (error = db_tx_commit(c, err)))
		goto out;
	gn_log(GN_LOG_INFO, "event=gitops_%s by=%s", suspend ? "suspended" : "resumed", label);
out:
	if (error)
		db_tx_rollback(c);
	PQclear(res);
	return error ? error : gitops_status(out, c, cfg, err);
}

/* True when sig is the lower- or upper-case hex of the HMAC-SHA256 of body under secret. */
static bool hmac_ok(const char *sig, const char *secret, const char *body, size_t len)
{
	unsigned char md[EVP_MAX_MD_SIZE], want[32];
	unsigned int mdlen = 0;
	if (strlen(sig) != 64 || gn_hex_decode(want, sizeof(want), sig) ||
	    !HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)body, len, md, &mdlen) ||
	    mdlen != sizeof(want))
		return false;
	return gn_consttime_eq(md, want, sizeof(want));
}

int gitops_hook(db_conn *c, const struct gd_config *cfg, const char *hub_sig, const char *gitea_sig,
		const char *gitlab_token, const char *body, size_t len, gn_err *err)
{
	char *secret = NULL;
	gn_err e;
	bool ok = false;
	if (!enabled(cfg) || !*cfg->gitops_webhook_secret_file)
		return gn_err_set(err, GN_ENOTFOUND, "no GitOps webhook is configured (gitops-webhook-secret-file)");
	if (gn_secret_file_read(&secret, cfg->gitops_webhook_secret_file, 4096, &e)) {
		gn_log(GN_LOG_ERROR, "event=gitops_webhook_secret_unreadable msg=\"%s\"", e.msg);
		return gn_err_set(err, GN_ERROR, "the webhook secret cannot be read");
	}
	size_t slen = strlen(secret);
	if (hub_sig)
		ok = strncmp(hub_sig, "sha256=", 7) == 0 && hmac_ok(hub_sig + 7, secret, body, len);
	else if (gitea_sig)
		ok = hmac_ok(gitea_sig, secret, body, len);
	else if (gitlab_token)
		ok = strlen(gitlab_token) == strlen(secret) && gn_consttime_eq(gitlab_token, secret, strlen(secret));
	OPENSSL_cleanse(secret, slen);
	free(secret);
	if (!ok)
		return gn_err_set(err, GN_EAUTH,
				  "%s webhook signature: send X-Hub-Signature-256: sha256=HEX, the HMAC-SHA256 of the "
				  "body under the shared secret (or X-Gitea-Signature, or X-Gitlab-Token)",
				  hub_sig || gitea_sig || gitlab_token ? "wrong" : "no");
	return db_exec(NULL, c, &st_wake, NULL, err);
}
