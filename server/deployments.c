/* Deployments: checks, overlap with other deployments of the same model, the rollouts a change
 * starts, and the controller's bookkeeping of devices that stopped matching or match two. */
#include "deployments.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "config.h"
#include "devices.h"
#include "log.h"
#include "model.h"
#include "models.h"
#include "rollouts.h"
#include "runnable.h"
#include "strategy.h"

#define DEPLOYMENT_JSON                                                                                     \
	"jsonb_build_object('name', p.name, 'model', p.model, 'selector', p.selector, 'follow', p.follows," \
	" 'version', p.version, 'strategy', p.strategy, 'created_by', p.created_by,"                        \
	" 'created_at', gn_ts(p.created_at), 'updated_at', gn_ts(p.updated_at),"                            \
	" 'devices', (SELECT count(*) FROM device_desired dd WHERE dd.deployment_id = p.id"                 \
	"   AND dd.stale_at IS NULL),"                                                                      \
	" 'rollout', (SELECT jsonb_build_object('id', r.id, 'state', r.state, 'stage', r.stage,"            \
	"   'from_version', r.from_version, 'to_version', r.to_version) FROM rollouts r"                    \
	"   WHERE r.deployment_id = p.id AND r.state IN ('waiting_approval', 'running', 'paused')))"

const db_stmt deployments_list_stmt = {"deployments_list",
				       "SELECT " DEPLOYMENT_JSON
				       "::text, p.name FROM deployments p WHERE ($1::text IS NULL OR p.name > $1)"
				       " ORDER BY p.name LIMIT $2",
				       2};
static const db_stmt st_get = {"deployments_get",
			       "SELECT " DEPLOYMENT_JSON "::text, p.id, p.model, p.version, p.strategy::text"
			       " FROM deployments p WHERE p.name = $1",
			       1};
static const db_stmt st_get_for_update = {
	"deployments_get_for_update",
	"SELECT p.id, p.model, p.version, p.selector, p.follows, p.strategy::text,"
	" (SELECT r.id FROM rollouts r WHERE r.deployment_id = p.id AND r.state IN ('waiting_approval', 'running',"
	"  'paused')) FROM deployments p WHERE p.name = $1 FOR UPDATE",
	1};
static const db_stmt st_resolve = {"deployments_resolve",
				   "SELECT v.version FROM model_versions v WHERE v.model = $1 AND v.version ="
				   " coalesce((SELECT version FROM model_aliases WHERE model = $1 AND alias = $2), $2)",
				   2};
/* The other deployments of a model, oldest first. */
static const db_stmt st_others = {"deployments_others",
				  "SELECT name, selector FROM deployments WHERE name <> $1 AND model = $2"
				  " ORDER BY created_at",
				  2};
/* Devices both selectors match ($1..$5 and $6..$10), active. */
static const db_stmt st_overlap = {
	"deployments_overlap",
	"SELECT count(*) FROM devices d WHERE d.status = 'active' AND" DEVICES_SELECTOR_WHERE " AND"
	" d.selectable @> $6::jsonb"
	" AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements($7::jsonb) e WHERE d.selectable->>(e->>0) IS DISTINCT FROM e->>1)"
	" AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements($8::jsonb) e WHERE d.selectable->>(e->>0) = e->>1)"
	" AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text($9::jsonb) k WHERE NOT d.selectable ? k)"
	" AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text($10::jsonb) k WHERE d.selectable ? k)",
	10};
static const db_stmt st_insert = {
	"deployments_insert",
	"INSERT INTO deployments (name, model, selector, follows, version, strategy, created_by)"
	" SELECT $1, $2, $3, $4, $5, $6::jsonb, $7 WHERE EXISTS (SELECT 1 FROM models WHERE name = $2)",
	7};
static const db_stmt st_update = {
	"deployments_update",
	"UPDATE deployments SET follows = $2, selector = $3, strategy = $4::jsonb, updated_at = now() WHERE id = $1",
	4};
static const db_stmt st_delete = {"deployments_delete", "DELETE FROM deployments WHERE name = $1 RETURNING id", 1};

const gn_json_field deployments_create_fields[] = {
	{"name", GN_JSON_STRING, true, false},     {"model", GN_JSON_STRING, true, false},
	{"selector", GN_JSON_STRING, true, false}, {"follow", GN_JSON_STRING, true, false},
	{"strategy", GN_JSON_OBJECT, false, true},
};
const size_t deployments_create_nfields = GN_ARRAY_LEN(deployments_create_fields);
const gn_json_field deployments_update_fields[] = {
	{"follow", GN_JSON_STRING, false, false},
	{"selector", GN_JSON_STRING, false, false},
	{"strategy", GN_JSON_OBJECT, false, true},
};
const size_t deployments_update_nfields = GN_ARRAY_LEN(deployments_update_fields);

static void free_params(char *p[5])
{
	for (int i = 0; i < 5; i++)
		free(p[i]);
}

/* Resolves what a deployment follows (a version or an alias of model) to a version. */
static int resolve(char out[GN_MODEL_VERSION_MAX + 1], db_conn *c, const char *model, const char *follow, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {model, follow};
	int error = db_exec(&res, c, &st_resolve, p, err);
	if (error)
		return error;
	if (PQntuples(res) == 0)
		error = gn_err_set(err, GN_ENOTFOUND, "model %s has no version or alias '%s'", model, follow);
	else
		snprintf(out, GN_MODEL_VERSION_MAX + 1, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return error;
}

/* Refuses a selector that matches a device another deployment of the same model already covers (a
 * device runs one version of each model, from one deployment), naming that deployment. */
static int check_overlap(db_conn *c, const char *name, const char *model, const char *selector, gn_err *err)
{
	PGresult *others = NULL;
	char *mine[5] = {0};
	const char *pn[] = {name, model};
	int error;
	if ((error = devices_selector_params(mine, selector, err)) ||
	    (error = db_exec(&others, c, &st_others, pn, err)))
		goto out;
	for (int i = 0; !error && i < PQntuples(others); i++) {
		char *theirs[5] = {0};
		PGresult *res = NULL;
		if ((error = devices_selector_params(theirs, PQgetvalue(others, i, 1), err)))
			break;
		const char *p[] = {mine[0],   mine[1],   mine[2],   mine[3],   mine[4],
				   theirs[0], theirs[1], theirs[2], theirs[3], theirs[4]};
		if (!(error = db_exec(&res, c, &st_overlap, p, err)) && strcmp(PQgetvalue(res, 0, 0), "0") != 0)
			error = gn_err_set(
				err, GN_ECONFLICT,
				"selector '%s' matches %s device(s) that deployment %s (selector '%s') already "
				"covers for model %s; a device follows one deployment per model",
				selector, PQgetvalue(res, 0, 0), PQgetvalue(others, i, 0), PQgetvalue(others, i, 1),
				model);
		PQclear(res);
		free_params(theirs);
	}
out:
	PQclear(others);
	free_params(mine);
	return error;
}

/* Checks a deployment name: a lower-case DNS label, like a model name. */
static int name_check(const char *name, gn_err *err)
{
	if (gn_model_name_check(name, err))
		return gn_err_set(
			err, GN_EINVAL,
			"deployment name '%s' must be 1 to 63 lower-case letters, digits and '-', starting and "
			"ending with a letter or digit",
			name);
	return 0;
}

/* Refuses when a device the selector matches cannot run model at version (runnable.h). */
static int check_runnable(db_conn *c, const char *name, const char *model, const char *version, const char *selector,
			  gn_err *err)
{
	char *sp[5] = {0}, what[160];
	snprintf(what, sizeof(what), "deployment %s (selector '%.100s')", name, selector);
	int error = devices_selector_params(sp, selector, err);
	if (!error)
		error = runnable_check(c, model, version, sp, NULL, what, err);
	for (int k = 0; k < 5; k++)
		free(sp[k]);
	return error;
}

/* Checks a selector: well formed and not empty (an empty one would take the whole fleet). */
static int selector_check(const char *selector, gn_err *err)
{
	char *p[5] = {0};
	if (!*selector)
		return gn_err_set(err, GN_EINVAL, "the selector is empty; name the devices (e.g. site=north)");
	int error = devices_selector_params(p, selector, err);
	free_params(p);
	return error;
}

static int get_json(char **out, db_conn *c, const char *name, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {name};
	int error = db_exec(&res, c, &st_get, p, err);
	*out = NULL;
	if (error)
		return error;
	if (PQntuples(res) == 0)
		error = gn_err_set(err, GN_ENOTFOUND, "no such deployment '%s'", name);
	else
		*out = gn_strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return error;
}

int deployments_get(char **out, db_conn *c, const char *name, gn_err *err)
{
	return get_json(out, c, name, err);
}

int deployments_create_tx(char **out, db_conn *c, const struct gd_actor *who, const json_t *req, gn_err *err)
{
	struct strategy st;
	json_t *sj = NULL;
	char *sjs = NULL, version[GN_MODEL_VERSION_MAX + 1], label[128];
	PGresult *res = NULL;
	const char *name = gn_json_str(req, "name"), *model = gn_json_str(req, "model");
	const char *selector = gn_json_str(req, "selector"), *follow = gn_json_str(req, "follow");
	int error;
	*out = NULL;
	if ((error = name_check(name, err)) || (error = selector_check(selector, err)) ||
	    (error = strategy_parse(&st, &sj, json_object_get(req, "strategy"), err)))
		goto out;
	sjs = gn_json_dump(sj);
	actor_label(label, sizeof(label), who);
	if ((error = db_lock_xact(c, DB_LOCK_DEPLOYMENTS, err)) || (error = resolve(version, c, model, follow, err)) ||
	    (error = models_targetable(c, model, version, "a deployment", err)) ||
	    (error = check_overlap(c, name, model, selector, err)) ||
	    (error = check_runnable(c, name, model, version, selector, err)))
		goto out;
	const char *p[] = {name, model, selector, follow, version, sjs, label};
	if ((error = db_exec(&res, c, &st_insert, p, err))) {
		if (error == GN_ECONFLICT)
			gn_err_set(err, GN_ECONFLICT, "a deployment named %s exists already", name);
		goto out;
	}
	if ((error = audit_write(c, who, "deployment.create", "deployment", name,
				 json_pack("{s:s,s:s,s:s,s:s}", "model", model, "selector", selector, "follow", follow,
					   "version", version),
				 err)) ||
	    (error = rollouts_wake(c, err)))
		goto out;
	error = get_json(out, c, name, err);
out:
	PQclear(res);
	json_decref(sj);
	free(sjs);
	return error;
}

int deployments_create(char **out, db_conn *c, const struct gd_actor *who, const json_t *req, gn_err *err)
{
	int error;
	*out = NULL;
	if ((error = db_tx_begin(c, err)) || (error = deployments_create_tx(out, c, who, req, err)) ||
	    (error = db_tx_commit(c, err))) {
		db_tx_rollback(c);
		free(*out);
		*out = NULL;
	}
	return error;
}

/* Applies an update (values not given stay as they are); a new version to follow starts a rollout. */
static int apply_update(db_conn *c, const struct gd_actor *who, const char *name, const json_t *req, gn_err *err)
{
	PGresult *res = NULL;
	json_t *sj = NULL;
	char *sjs = NULL, version[GN_MODEL_VERSION_MAX + 1];
	struct strategy st;
	const char *pn[] = {name};
	int error = db_exec(&res, c, &st_get_for_update, pn, err);
	if (error)
		return error;
	if (PQntuples(res) == 0) {
		error = gn_err_set(err, GN_ENOTFOUND, "no such deployment '%s'", name);
		goto out;
	}
	const char *id = PQgetvalue(res, 0, 0), *model = PQgetvalue(res, 0, 1), *current = db_val(res, 0, 2);
	const char *selector = gn_json_str(req, "selector") ? gn_json_str(req, "selector") : PQgetvalue(res, 0, 3);
	const char *follow = gn_json_str(req, "follow") ? gn_json_str(req, "follow") : PQgetvalue(res, 0, 4);
	json_t *strat = json_object_get(req, "strategy");
	json_t *old = json_loads(PQgetvalue(res, 0, 5), 0, NULL);
	error = strategy_parse(&st, &sj, strat ? strat : old, err);
	json_decref(old);
	if (error || (error = selector_check(selector, err)) || (error = resolve(version, c, model, follow, err)) ||
	    (gn_json_str(req, "selector") && (error = check_overlap(c, name, model, selector, err))))
		goto out;
	bool moves = current && strcmp(current, version) != 0;
	if ((moves || !current) && (error = models_targetable(c, model, version, "a deployment", err)))
		goto out;
	if ((moves || !current || gn_json_str(req, "selector")) &&
	    (error = check_runnable(c, name, model, version, selector, err)))
		goto out;
	if (moves && !PQgetisnull(res, 0, 6)) {
		error = gn_err_set(err, GN_ECONFLICT,
				   "rollout %s of deployment %s is in progress; abort it or wait before following %s",
				   PQgetvalue(res, 0, 6), name, version);
		goto out;
	}
	sjs = gn_json_dump(sj);
	const char *pu[] = {id, follow, selector, sjs};
	if ((error = db_exec(NULL, c, &st_update, pu, err)) ||
	    (error = audit_write(c, who, "deployment.update", "deployment", name, json_deep_copy(req), err)))
		goto out;
	if (moves)
		error = rollouts_start(c, who, id, current, version, sjs, err);
out:
	PQclear(res);
	json_decref(sj);
	free(sjs);
	return error;
}

int deployments_update_tx(char **out, db_conn *c, const struct gd_actor *who, const char *name, const json_t *req,
			  gn_err *err)
{
	int error;
	*out = NULL;
	if ((error = db_lock_xact(c, DB_LOCK_DEPLOYMENTS, err)) || (error = apply_update(c, who, name, req, err)) ||
	    (error = rollouts_wake(c, err)))
		return error;
	return get_json(out, c, name, err);
}

int deployments_update(char **out, db_conn *c, const struct gd_actor *who, const char *name, const json_t *req,
		       gn_err *err)
{
	int error;
	*out = NULL;
	if ((error = db_tx_begin(c, err)) || (error = deployments_update_tx(out, c, who, name, req, err)) ||
	    (error = db_tx_commit(c, err))) {
		db_tx_rollback(c);
		free(*out);
		*out = NULL;
	}
	return error;
}

int deployments_delete(db_conn *c, const struct gd_actor *who, const char *name, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {name};
	char missing[200];
	snprintf(missing, sizeof(missing), "no such deployment '%.100s'", name);
	int error =
		audit_change(&res, c, who, &st_delete, p, missing, "deployment.delete", "deployment", name, NULL, err);
	PQclear(res);
	return error;
}

int deployments_delete_tx(db_conn *c, const struct gd_actor *who, const char *name, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {name};
	int error = db_exec(&res, c, &st_delete, p, err);
	if (!error && PQntuples(res) == 0)
		error = gn_err_set(err, GN_ENOTFOUND, "no such deployment '%.100s'", name);
	if (!error)
		error = audit_write(c, who, "deployment.delete", "deployment", name, NULL, err);
	PQclear(res);
	return error;
}

/* --- the controller's bookkeeping ------------------------------------------------------------- */

/* The deployment, and whether another deployment of its model exists (else none can conflict). */
static const db_stmt st_reconcile_get = {
	"deployments_reconcile_get",
	"SELECT p.name, p.model, p.selector,"
	" EXISTS (SELECT 1 FROM deployments o WHERE o.model = p.model AND o.id <> p.id)"
	" FROM deployments p WHERE p.id = $1",
	1};
/* Marks the deployment's rows of active devices its selector ($1..$5) no longer matches as stale,
 * and unmarks those it matches again. */
static const db_stmt st_mark_stale = {
	"deployments_mark_stale",
	"UPDATE device_desired dd SET stale_at = CASE WHEN dd.stale_at IS NULL THEN now() END FROM devices d"
	" WHERE dd.deployment_id = $6 AND d.id = dd.device_id AND d.status = 'active'"
	" AND (dd.stale_at IS NULL) = NOT (" DEVICES_SELECTOR_WHERE ")",
	6};
/* Removes the deployment's rows stale for longer than $2 seconds (no other deployment took them). */
static const db_stmt st_drop_stale = {
	"deployments_drop_stale",
	"DELETE FROM device_desired WHERE deployment_id = $1 AND stale_at < now() - make_interval(secs => $2::bigint)"
	" RETURNING device_id",
	2};
/* Devices the selector ($1..$5) matches that run the model ($7) from another deployment than $6:
 * recorded as conflicts (a new one, or one whose keeper changed, is returned with its keeper's
 * name); conflicts of $6 whose device no longer has one are dropped. */
static const db_stmt st_conflicts = {
	"deployments_conflicts",
	"WITH cur AS (SELECT dd.device_id, dd.deployment_id AS kept FROM devices d"
	"  JOIN device_desired dd ON dd.device_id = d.id AND dd.model = $7"
	"  WHERE d.status = 'active' AND" DEVICES_SELECTOR_WHERE
	"  AND dd.deployment_id IS NOT NULL AND dd.deployment_id <> $6 AND dd.stale_at IS NULL),"
	" gone AS (DELETE FROM device_conflicts c WHERE c.deployment_id = $6"
	"  AND NOT EXISTS (SELECT 1 FROM cur WHERE cur.device_id = c.device_id))"
	" INSERT INTO device_conflicts AS c (device_id, model, deployment_id, kept_id)"
	" SELECT cur.device_id, $7, $6, cur.kept FROM cur WHERE NOT EXISTS (SELECT 1 FROM device_conflicts x"
	"  WHERE x.device_id = cur.device_id AND x.deployment_id = $6 AND x.kept_id = cur.kept)"
	" ON CONFLICT (device_id, deployment_id) DO UPDATE SET kept_id = excluded.kept_id, since = now()"
	" RETURNING c.device_id, (SELECT name FROM deployments WHERE id = c.kept_id)",
	7};

/* Marks and removes the deployment's stale rows. */
static int release_stale(db_conn *c, char *const sp[5], const char *id, const char *name, gn_err *err)
{
	PGresult *res = NULL;
	char grace[24];
	int64_t interval = config_get()->rollout_interval;
	/* Long enough for every other deployment of the model to have had a pass at the device. */
	snprintf(grace, sizeof(grace), "%lld", (long long)(3 * interval > 60 ? 3 * interval : 60));
	const char *pm[] = {sp[0], sp[1], sp[2], sp[3], sp[4], id}, *pd[] = {id, grace};
	int error = db_exec(NULL, c, &st_mark_stale, pm, err);
	if (!error && !(error = db_exec(&res, c, &st_drop_stale, pd, err)) && PQntuples(res))
		gn_log(GN_LOG_INFO,
		       "event=deployment_released deployment=%s devices=%d note=\"their labels no longer match\"", name,
		       PQntuples(res));
	PQclear(res);
	return error;
}

/* Records the deployment's conflicts, auditing each new one. */
static int record_conflicts(db_conn *c, const struct gd_actor *who, char *const sp[5], const char *id, const char *name,
			    const char *model, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {sp[0], sp[1], sp[2], sp[3], sp[4], id, model};
	int error = db_exec(&res, c, &st_conflicts, p, err);
	for (int i = 0; !error && i < PQntuples(res); i++) {
		const char *dev = PQgetvalue(res, i, 0), *kept = PQgetvalue(res, i, 1);
		gn_log(GN_LOG_WARN, "event=deployment_conflict device_id=%s model=%s deployment=%s kept=%s", dev, model,
		       name, kept);
		error = audit_write(c, who, "device.conflict", "device", dev,
				    json_pack("{s:s,s:s,s:s,s:s}", "model", model, "deployment", name, "kept", kept,
					      "reason",
					      "the device matches both deployments; it stays on the one it runs"),
				    err);
	}
	PQclear(res);
	return error;
}

int deployments_reconcile(db_conn *c, const struct gd_actor *who, const char *deployment_id, gn_err *err)
{
	PGresult *dep = NULL;
	char *sp[5] = {0};
	const char *p[] = {deployment_id};
	int error;
	if ((error = db_tx_begin(c, err)))
		return error;
	if ((error = db_exec(&dep, c, &st_reconcile_get, p, err)) || PQntuples(dep) == 0)
		goto out;
	const char *name = PQgetvalue(dep, 0, 0), *model = PQgetvalue(dep, 0, 1);
	bool others = strcmp(PQgetvalue(dep, 0, 3), "t") == 0;
	/* Alone with its model, a deployment has no conflict to find (nor any left: a conflict's
	 * other deployment takes it along when deleted), and a fleet-wide scan is saved. */
	if ((error = devices_selector_params(sp, PQgetvalue(dep, 0, 2), err)) ||
	    (error = release_stale(c, sp, deployment_id, name, err)) ||
	    (others && (error = record_conflicts(c, who, sp, deployment_id, name, model, err))))
		goto out;
	error = db_tx_commit(c, err);
out:
	if (error)
		db_tx_rollback(c);
	PQclear(dep);
	free_params(sp);
	return error;
}
