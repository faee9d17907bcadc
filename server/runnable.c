/* Can these devices run that model version? The version's signed requirements against the devices'
 * reported facts, with the rules of lib/requirements.c that the agent applies too. */
#include "runnable.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices.h"
#include "json.h"
#include "model.h"
#include "requirements.h"

#define NAMED_MAX 10 /* devices a refusal names; the rest are counted */

static const db_stmt st_requirements = {
	"runnable_requirements",
	"SELECT metadata->'requirements' FROM model_versions WHERE model = $1 AND version = $2", 2};
/* Only what the verdict reads, so that a large fleet's facts are not all copied. */
#define FACTS_COLUMNS                                                                        \
	" d.id, d.name, jsonb_strip_nulls(jsonb_build_object('runtime', d.facts->'runtime'," \
	" 'ram_bytes', d.facts->'ram_bytes'))::text"
static const db_stmt st_select = {"runnable_select",
				  "SELECT" FACTS_COLUMNS
				  " FROM devices d WHERE d.status = 'active' AND" DEVICES_SELECTOR_WHERE
				  " ORDER BY d.name NULLS LAST, d.id",
				  5};
static const db_stmt st_device = {"runnable_device",
				  "SELECT" FACTS_COLUMNS " FROM devices d WHERE d.id = $1 AND d.status = 'active'", 1};
static const db_stmt st_deployment = {
	"runnable_deployment",
	"SELECT p.model, p.selector, coalesce((SELECT version FROM model_aliases a WHERE a.model = p.model"
	" AND a.alias = $2), $2, p.version) FROM deployments p WHERE p.name = $1",
	2};

/* The version's requirements (new, or NULL when it states none). */
static int requirements(json_t **out, db_conn *c, const char *model, const char *version, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {model, version};
	int error = db_exec(&res, c, &st_requirements, p, err);
	*out = NULL;
	if (!error && PQntuples(res) == 0)
		error = gn_err_set(err, GN_ENOTFOUND, "model %s has no version %s", model, version);
	else if (!error && !PQgetisnull(res, 0, 0))
		*out = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
	PQclear(res);
	return error;
}

int runnable_refused(json_t **out, int *out_unreported, db_conn *c, const char *model, const char *version,
		     char *const sp[5], const char *device_id, gn_err *err)
{
	PGresult *res = NULL;
	json_t *req = NULL;
	const char *pd[] = {device_id};
	int error;
	*out = json_array();
	*out_unreported = 0;
	if ((error = requirements(&req, c, model, version, err)) || !req ||
	    gn_requirements_match(req, NULL, NULL, 0) == GN_REQ_OK) /* it needs nothing */
		goto out;
	if ((error = db_exec(&res, c, sp ? &st_select : &st_device, sp ? (const char *const *)sp : pd, err)))
		goto out;
	for (int i = 0; i < PQntuples(res); i++) {
		char why[512];
		json_t *facts = json_loads(PQgetvalue(res, i, 2), 0, NULL);
		enum gn_req_verdict v = gn_requirements_match(req, facts, why, sizeof(why));
		json_decref(facts);
		if (v == GN_REQ_UNKNOWN)
			++*out_unreported;
		if (v == GN_REQ_REFUSED)
			json_array_append_new(
				*out,
				json_pack("{s:s,s:o,s:s}", "device", PQgetvalue(res, i, 0), "name",
					  PQgetisnull(res, i, 1) ? json_null() : json_string(PQgetvalue(res, i, 1)),
					  "reason", why));
	}
out:
	PQclear(res);
	json_decref(req);
	if (error) {
		json_decref(*out);
		*out = NULL;
	}
	return error;
}

int runnable_check(db_conn *c, const char *model, const char *version, char *const sp[5], const char *device_id,
		   const char *what, gn_err *err)
{
	json_t *refused = NULL, *d;
	int unreported, error = runnable_refused(&refused, &unreported, c, model, version, sp, device_id, err);
	size_t i, n = refused ? json_array_size(refused) : 0;
	if (error || n == 0) {
		json_decref(refused);
		return error;
	}
	gn_buf b;
	gn_buf_init(&b);
	gn_buf_printf(&b, "%zu device(s) of the %s cannot run %s %s:", n, what, model, version);
	json_array_foreach(refused, i, d) {
		if (i == NAMED_MAX) {
			gn_buf_printf(&b, " and %zu more", n - i);
			break;
		}
		const char *name = gn_json_str(d, "name");
		gn_buf_printf(&b, "%s %s%s%s%s (%s)", i ? ";" : "", name ? name : "", name ? " [" : "",
			      gn_json_str(d, "device"), name ? "]" : "", gn_json_str(d, "reason"));
	}
	gn_buf_puts(&b, sp ? ". Narrow the selector (e.g. add facts.runtime=NAME, docs/OPERATIONS.md) or publish "
			     "a version they can run; `ganglion rollout plan` lists them"
			   : ". Publish a version it can run, or assign another one");
	error = gn_err_set(err, GN_ECONFLICT, "%s", b.data);
	gn_buf_cleanup(&b);
	json_decref(refused);
	return error;
}

int runnable_plan(json_t *plan, db_conn *c, const char *deployment, const char *version, gn_err *err)
{
	PGresult *res = NULL;
	char *sp[5] = {0};
	json_t *refused = NULL;
	int unreported = 0;
	const char *p[] = {deployment, version};
	if (version && (!*version || strlen(version) > GN_MODEL_VERSION_MAX))
		return gn_err_set(err, GN_EINVAL, "version must be a version or an alias of 1 to %d bytes",
				  GN_MODEL_VERSION_MAX);
	int error = db_exec(&res, c, &st_deployment, p, err);
	if (!error && PQntuples(res) == 0)
		error = gn_err_set(err, GN_ENOTFOUND, "no such deployment '%s'", deployment);
	if (!error && PQgetisnull(res, 0, 2))
		error = gn_err_set(err, GN_ENOTFOUND, "deployment '%s' follows no version yet", deployment);
	if (error || (error = devices_selector_params(sp, PQgetvalue(res, 0, 1), err)) ||
	    (error = runnable_refused(&refused, &unreported, c, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 2), sp, NULL,
				      err)))
		goto out;
	json_object_set_new(plan, "version", json_string(PQgetvalue(res, 0, 2)));
	json_object_set_new(plan, "refused", refused);
	json_object_set_new(plan, "unreported", json_integer(unreported));
out:
	for (int k = 0; k < 5; k++)
		free(sp[k]);
	PQclear(res);
	return error;
}
