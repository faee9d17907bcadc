/* Rollouts and the controller that moves them stage by stage. */
#include "rollouts.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "deployments.h"
#include "devices.h"
#include "json.h"
#include "log.h"
#include "strategy.h"

#define ACTIVE_STATES "('waiting_approval', 'running', 'paused')"

#define ROLLOUT_JSON                                                                                             \
	"jsonb_build_object('id', r.id, 'deployment', p.name, 'model', p.model, 'from_version', r.from_version," \
	" 'to_version', r.to_version, 'state', r.state, 'stage', r.stage, 'stage_started_at',"                   \
	" CASE WHEN r.stage_started_at = '-infinity' THEN NULL ELSE gn_ts(r.stage_started_at) END,"              \
	" 'strategy', r.strategy, 'created_by', r.created_by, 'approved_by', r.approved_by, 'reason', r.reason," \
	" 'created_at', gn_ts(r.created_at), 'updated_at', gn_ts(r.updated_at), 'finished_at',"                  \
	" gn_ts(r.finished_at))"

/* Newest first: the cursor is the creation time in microseconds, zero-padded, then the id. */
#define ROLLOUT_CURSOR "(lpad((extract(epoch FROM r.created_at) * 1000000)::bigint::text, 20, '0') || r.id::text)"
const db_stmt rollouts_list_stmt = {
	"rollouts_list",
	"SELECT " ROLLOUT_JSON "::text, " ROLLOUT_CURSOR " FROM rollouts r JOIN deployments p ON p.id = r.deployment_id"
	" WHERE ($1::text IS NULL OR p.name = $1) AND ($2::text IS NULL OR " ROLLOUT_CURSOR " COLLATE \"C\" < $2)"
	" ORDER BY " ROLLOUT_CURSOR " COLLATE \"C\" DESC LIMIT $3",
	3};
const db_stmt rollouts_events_stmt = {
	"rollouts_events",
	"SELECT jsonb_build_object('id', id, 'at', gn_ts(at), 'kind', kind, 'detail', detail)::text, id::text"
	" FROM rollout_events WHERE rollout_id = $1 AND ($2::bigint IS NULL OR id > $2::bigint) ORDER BY id LIMIT $3",
	3};
static const db_stmt st_insert = {
	"rollouts_insert",
	"INSERT INTO rollouts (deployment_id, from_version, to_version, state, stage_started_at, strategy,"
	" created_by, creator_token, reason)"
	" VALUES ($1, $2, $3, CASE WHEN ($4::jsonb->>'approval')::boolean THEN 'waiting_approval' ELSE 'running' END,"
	"  now(), $4::jsonb, $5, $6, $7) RETURNING id, state",
	7};
static const db_stmt st_event = {
	"rollouts_event",
	"INSERT INTO rollout_events (rollout_id, kind, detail) VALUES ($1, $2, coalesce($3::jsonb, '{}'))", 3};
static const db_stmt st_get = {"rollouts_get",
			       "SELECT " ROLLOUT_JSON
			       "::text, r.state, r.creator_token, r.stage, r.strategy::text, p.id"
			       " FROM rollouts r JOIN deployments p ON p.id = r.deployment_id WHERE r.id = $1",
			       1};
static const db_stmt st_lock = {"rollouts_lock", "SELECT 1 FROM rollouts WHERE id = $1 FOR UPDATE", 1};
static const db_stmt st_set_state = {
	"rollouts_set_state",
	"UPDATE rollouts SET state = $2, reason = $3, updated_at = now(),"
	" approved_by = coalesce($4, approved_by),"
	" stage_started_at = CASE WHEN $5::boolean THEN now() ELSE stage_started_at END,"
	" finished_at = CASE WHEN $2 IN ('completed', 'rolled_back', 'aborted') THEN now() END WHERE id = $1",
	5};
static const db_stmt st_promote = {
	"rollouts_promote",
	"UPDATE rollouts SET stage_started_at = '-infinity', updated_at = now(), reason = $2 WHERE id = $1", 2};
static const db_stmt st_next_stage = {
	"rollouts_next_stage",
	"UPDATE rollouts SET stage = stage + 1, stage_started_at = now(), updated_at = now(), reason = $2 WHERE id = $1",
	2};
/* Takes the deployment's device that comes first in the rollout's order into the canary (and
 * restarts the stage's bake), for a stage that would otherwise hold no device. */
static const db_stmt st_pin = {
	"rollouts_pin",
	"UPDATE rollouts r SET pinned = r.pinned || x.device_id, stage_started_at = now(), updated_at = now()"
	" FROM (SELECT dd.device_id FROM device_desired dd JOIN devices dv ON dv.id = dd.device_id, rollouts q"
	"  WHERE q.id = $1 AND dd.deployment_id = q.deployment_id AND dv.status = 'active'"
	"  ORDER BY gn_cohort(q.id, dd.device_id) LIMIT 1) x WHERE r.id = $1 RETURNING x.device_id",
	1};
static const db_stmt st_complete_deployment = {
	"rollouts_complete_deployment",
	"UPDATE deployments SET version = (SELECT to_version FROM rollouts WHERE id = $1), updated_at = now()"
	" WHERE id = (SELECT deployment_id FROM rollouts WHERE id = $1)",
	1};
#define DEPLOYMENTS_SELECT                                                                                          \
	"SELECT p.id, p.name, p.model, p.selector, p.follows, p.version, p.strategy::text,"                         \
	" (SELECT v.version FROM model_versions v WHERE v.model = p.model AND v.version ="                          \
	"   coalesce((SELECT version FROM model_aliases WHERE model = p.model AND alias = p.follows), p.follows))," \
	" r.id, r.state, r.stage, r.to_version, r.from_version, r.strategy::text,"                                  \
	" r.stage_started_at = '-infinity' OR r.stage_started_at <= now() - make_interval(secs =>"                  \
	"   coalesce((r.strategy->'stages'->r.stage->>'bake')::bigint, 0)),"                                        \
	" EXISTS (SELECT 1 FROM rollouts x WHERE x.deployment_id = p.id AND x.state IN ('rolled_back', 'aborted')"  \
	"   AND x.to_version = (SELECT v.version FROM model_versions v WHERE v.model = p.model AND v.version ="     \
	"   coalesce((SELECT version FROM model_aliases WHERE model = p.model AND alias = p.follows), p.follows))"  \
	"   AND x.from_version = p.version),"                                                                       \
	" r.pinned::text"                                                                                           \
	" FROM deployments p LEFT JOIN rollouts r ON r.deployment_id = p.id AND r.state IN " ACTIVE_STATES
static const db_stmt st_deployments = {"rollouts_deployments", DEPLOYMENTS_SELECT " ORDER BY p.created_at", 0};
static const db_stmt st_deployment = {"rollouts_deployment", DEPLOYMENTS_SELECT " WHERE p.id = $1", 1};
static const db_stmt st_wake = {"rollouts_wake", "SELECT pg_notify('gn_jobs', 'rollouts')", 0};
enum {
	D_ID,
	D_NAME,
	D_MODEL,
	D_SELECTOR,
	D_FOLLOWS,
	D_VERSION,
	D_STRATEGY,
	D_WANTED,
	R_ID,
	R_STATE,
	R_STAGE,
	R_TO,
	R_FROM,
	R_STRATEGY,
	R_BAKED,
	D_REFUSED,
	R_PINNED
};

/* What each matching active device of a deployment should run: the rollout's new version for the
 * devices below the current stage's percentage, the deployment's version for the rest. A device
 * with a per-device override of the model (deployment_id NULL) or that gets the model from
 * another deployment is left alone, unless that one no longer matches it (stale_at set): then
 * this one takes it over. */
static const db_stmt st_materialise = {
	"rollouts_materialise",
	"WITH want AS (SELECT d.id AS device_id, CASE WHEN $9::uuid IS NOT NULL"
	"   AND (gn_cohort($9::uuid, d.id) * 100 < $11::int OR d.id = ANY($13::uuid[])) THEN $10 ELSE $8 END AS version"
	"  FROM devices d WHERE d.status = 'active' AND" DEVICES_SELECTOR_WHERE ")"
	" INSERT INTO device_desired (device_id, model, version, assigned_by, deployment_id)"
	" SELECT w.device_id, $7, w.version, $12, $6 FROM want w WHERE w.version IS NOT NULL"
	" ON CONFLICT (device_id, model) DO UPDATE SET version = excluded.version, stale_at = NULL,"
	"  assigned_by = excluded.assigned_by, assigned_at = now(), deployment_id = excluded.deployment_id"
	" WHERE (device_desired.deployment_id = excluded.deployment_id AND device_desired.version <> excluded.version)"
	"  OR (device_desired.deployment_id <> excluded.deployment_id AND device_desired.stale_at IS NOT NULL)"
	" RETURNING device_id",
	13};

/* The health of a rollout's current stage: devices in it, healthy on the new version (active for
 * the probation period), failed installs of it, and requests and errors of the canary (devices
 * on the new version) and of the control (the deployment's devices still on the old one). */
static const db_stmt st_stage_stats = {
	"rollouts_stage_stats",
	"WITH r AS (SELECT id, created_at, deployment_id, pinned FROM rollouts WHERE id = $1),"
	" mine AS (SELECT dd.device_id, dv.reported,"
	"   gn_cohort($1::uuid, dd.device_id) * 100 < $2::int OR dd.device_id = ANY(r.pinned) AS in_stage"
	"  FROM device_desired dd JOIN devices dv ON dv.id = dd.device_id, r"
	"  WHERE dd.deployment_id = r.deployment_id AND dv.status = 'active'),"
	" per AS (SELECT m.device_id, m.in_stage, m.reported,"
	"  EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(m.reported->'models') = 'array'"
	"    THEN m.reported->'models' ELSE '[]' END) x WHERE x->>'name' = $3 AND x->>'version' = $4"
	"    AND x->>'state' = 'active') AS on_new,"
	"  (SELECT min(e.at) FROM device_events e, r WHERE e.device_id = m.device_id AND e.at >= r.created_at"
	"    AND e.operation->>'model' = $3 AND e.operation->>'version' = $4 AND e.operation->>'state' = 'active')"
	"    AS active_since,"
	"  (SELECT e.operation->>'state' FROM device_events e, r WHERE e.device_id = m.device_id"
	"    AND e.at >= r.created_at AND e.operation->>'model' = $3 AND e.operation->>'version' = $4"
	"    ORDER BY e.id DESC LIMIT 1) AS last_state FROM mine m),"
	" rates AS (SELECT p.in_stage AND x->>'version' = $4 AS canary,"
	"   NOT p.in_stage AND x->>'version' = $6 AS control,"
	"   coalesce((x->>'requests')::bigint, 0) AS req, coalesce((x->>'errors')::bigint, 0) AS err"
	"  FROM per p, jsonb_array_elements(CASE WHEN jsonb_typeof(p.reported->'models') = 'array'"
	"    THEN p.reported->'models' ELSE '[]' END) x WHERE x->>'name' = $3 AND x->>'state' = 'active')"
	" SELECT (SELECT count(*) FROM per WHERE in_stage),"
	"  (SELECT count(*) FROM per WHERE in_stage AND on_new AND active_since <= now() - make_interval(secs => $5::bigint)),"
	"  (SELECT count(*) FROM per WHERE in_stage AND last_state = 'failed'),"
	"  (SELECT coalesce(sum(req), 0) FROM rates WHERE canary), (SELECT coalesce(sum(err), 0) FROM rates WHERE canary),"
	"  (SELECT coalesce(sum(req), 0) FROM rates WHERE control), (SELECT coalesce(sum(err), 0) FROM rates WHERE control),"
	"  (SELECT count(*) FROM per)",
	6};

struct stage_stats {
	long long devices, healthy, failed, canary_req, canary_err, control_req, control_err, all;
};

/* Records a transition in the rollout's events and the audit log. detail is stolen. */
static int event(db_conn *c, const struct gd_actor *who, const char *id, const char *kind, json_t *detail, gn_err *err)
{
	char *d = detail ? gn_json_dump(detail) : NULL;
	char action[64];
	const char *p[] = {id, kind, d};
	snprintf(action, sizeof(action), "rollout.%s", kind);
	int error = db_exec(NULL, c, &st_event, p, err);
	if (!error)
		error = audit_write(c, who, action, "rollout", id, detail, err);
	else
		json_decref(detail);
	free(d);
	return error;
}

int rollouts_start(db_conn *c, const struct gd_actor *who, const char *deployment_id, const char *from, const char *to,
		   const char *strategy, gn_err *err)
{
	PGresult *res = NULL;
	char label[128];
	actor_label(label, sizeof(label), who);
	const char *p[] = {deployment_id, from, to, strategy, label, who->kind == GD_ACTOR_TOKEN ? who->id : NULL,
			   "started"};
	int error = db_exec(&res, c, &st_insert, p, err);
	if (error == GN_ECONFLICT)
		return gn_err_set(err, GN_ECONFLICT, "a rollout of this deployment is already in progress");
	if (error)
		return error;
	error = event(
		c, who, PQgetvalue(res, 0, 0), "start",
		json_pack("{s:s,s:s,s:s}", "from_version", from, "to_version", to, "state", PQgetvalue(res, 0, 1)),
		err);
	gn_log(GN_LOG_INFO, "event=rollout_started rollout=%s from=%s to=%s by=%s", PQgetvalue(res, 0, 0), from, to,
	       label);
	PQclear(res);
	return error;
}

static int stage_stats(struct stage_stats *out, db_conn *c, const char *id, int percent, const char *model,
		       const char *to, const char *from, int64_t probation_s, gn_err *err)
{
	PGresult *res = NULL;
	char pct[16], prob[24];
	snprintf(pct, sizeof(pct), "%d", percent);
	snprintf(prob, sizeof(prob), "%lld", (long long)probation_s);
	const char *p[] = {id, pct, model, to, prob, from};
	int error = db_exec(&res, c, &st_stage_stats, p, err);
	if (error)
		return error;
	long long *f[] = {&out->devices,    &out->healthy,     &out->failed,      &out->canary_req,
			  &out->canary_err, &out->control_req, &out->control_err, &out->all};
	for (int i = 0; i < 8; i++)
		*f[i] = strtoll(PQgetvalue(res, 0, i), NULL, 10);
	PQclear(res);
	return 0;
}

static json_t *stats_json(const struct stage_stats *s)
{
	return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "devices", (json_int_t)s->devices, "healthy",
			 (json_int_t)s->healthy, "failed", (json_int_t)s->failed, "canary_requests",
			 (json_int_t)s->canary_req, "canary_errors", (json_int_t)s->canary_err, "control_requests",
			 (json_int_t)s->control_req, "control_errors", (json_int_t)s->control_err);
}

/* Why the stage fails its gates (into why), or false when it does not (yet). */
static bool gate_failed(char *why, size_t n, const struct strategy *st, const struct stage_stats *s)
{
	if (s->failed > st->max_failed) {
		snprintf(why, n, "%lld failed install(s), more than max_failed %lld", s->failed,
			 (long long)st->max_failed);
		return true;
	}
	if (s->devices > 0 && (double)s->failed / (double)s->devices > st->max_failed_share) {
		snprintf(why, n, "%lld of %lld devices failed to install, more than max_failed_share %.3f", s->failed,
			 s->devices, st->max_failed_share);
		return true;
	}
	double canary = s->canary_req ? (double)s->canary_err / (double)s->canary_req : 0;
	double control = s->control_req ? (double)s->control_err / (double)s->control_req : 0;
	if (st->max_error_rate >= 0 && s->canary_req >= st->min_requests && canary > st->max_error_rate) {
		snprintf(why, n, "canary error rate %.4f (%lld of %lld requests) is above max_error_rate %.4f", canary,
			 s->canary_err, s->canary_req, st->max_error_rate);
		return true;
	}
	if (st->max_error_increase >= 0 && s->canary_req >= st->min_requests && s->control_req >= st->min_requests &&
	    canary - control > st->max_error_increase) {
		snprintf(why, n, "canary error rate %.4f is %.4f above the control's %.4f (max_error_increase %.4f)",
			 canary, canary - control, control, st->max_error_increase);
		return true;
	}
	return false;
}

/* True when the stage has enough healthy devices to move on (its bake time is checked apart). */
static bool stage_passed(const struct strategy *st, const struct stage_stats *s)
{
	long long need = st->min_healthy < s->devices ? st->min_healthy : s->devices;
	long long share = (long long)ceil(st->min_success_share * (double)s->devices - 1e-9);
	return s->healthy >= need && s->healthy >= share;
}

static int set_state(db_conn *c, const char *id, const char *state, const char *reason, const char *approver,
		     bool restart_stage, gn_err *err)
{
	const char *p[] = {id, state, reason, approver, restart_stage ? "true" : "false"};
	return db_exec(NULL, c, &st_set_state, p, err);
}

/* Takes one device into a stage that would hold none, and says so in the rollout's events. */
static int pin_one(db_conn *c, const struct gd_actor *who, const char *id, int stage, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {id};
	int error = db_exec(&res, c, &st_pin, p, err);
	if (!error && PQntuples(res) == 1) {
		gn_log(GN_LOG_INFO, "event=rollout_pinned rollout=%s stage=%d device=%s", id, stage,
		       PQgetvalue(res, 0, 0));
		error = event(c, who, id, "pin",
			      json_pack("{s:i,s:s,s:s}", "stage", stage, "device", PQgetvalue(res, 0, 0), "reason",
					"the stage held no device; the first in the rollout's order joins it"),
			      err);
	}
	PQclear(res);
	return error;
}

/* Judges a running rollout's current stage: fail (roll back or pause), hold, next stage, or done. */
static int judge(db_conn *c, const struct gd_actor *who, const PGresult *d, int row, gn_err *err)
{
	struct strategy st;
	struct stage_stats s;
	json_t *sj = json_loads(PQgetvalue(d, row, R_STRATEGY), 0, NULL);
	char why[300];
	const char *id = PQgetvalue(d, row, R_ID);
	int stage = atoi(PQgetvalue(d, row, R_STAGE));
	int error = strategy_parse(&st, NULL, sj, err);
	json_decref(sj);
	if (error || stage >= st.nstages)
		return error ? error
			     : gn_err_set(err, GN_ERROR, "rollout %s is at stage %d of %d", id, stage, st.nstages);
	if ((error = stage_stats(&s, c, id, st.stages[stage].percent, PQgetvalue(d, row, D_MODEL),
				 PQgetvalue(d, row, R_TO), PQgetvalue(d, row, R_FROM), st.probation_s, err)))
		return error;
	if (gate_failed(why, sizeof(why), &st, &s)) {
		const char *state = st.rollback_on_failure ? "rolled_back" : "paused";
		json_t *detail = json_pack("{s:i,s:s,s:o}", "stage", stage, "reason", why, "stats", stats_json(&s));
		if ((error = set_state(c, id, state, why, NULL, false, err)) ||
		    (error = event(c, who, id, st.rollback_on_failure ? "rollback" : "pause", detail, err)))
			return error;
		gn_log(GN_LOG_WARN, "event=rollout_gate_failed rollout=%s stage=%d action=%s why=\"%s\"", id, stage,
		       st.rollback_on_failure ? "rollback" : "pause", why);
		return 0;
	}
	/* A canary stage with no device would judge nothing and pass: give it one. */
	if (s.devices == 0 && s.all > 0 && stage + 1 < st.nstages)
		return pin_one(c, who, id, stage, err);
	if (strcmp(PQgetvalue(d, row, R_BAKED), "t") != 0 || !stage_passed(&st, &s))
		return 0;
	json_t *detail = json_pack("{s:i,s:i,s:o}", "stage", stage, "percent", st.stages[stage].percent, "stats",
				   stats_json(&s));
	const char *p[] = {id, "stage passed"};
	if (stage + 1 < st.nstages) {
		if ((error = db_exec(NULL, c, &st_next_stage, p, err))) {
			json_decref(detail);
			return error;
		}
		gn_log(GN_LOG_INFO, "event=rollout_stage_passed rollout=%s stage=%d", id, stage);
		return event(c, who, id, "stage", detail, err);
	}
	const char *pc[] = {id};
	if ((error = set_state(c, id, "completed", "every stage passed", NULL, false, err)) ||
	    (error = db_exec(NULL, c, &st_complete_deployment, pc, err))) {
		json_decref(detail);
		return error;
	}
	gn_log(GN_LOG_INFO, "event=rollout_completed rollout=%s", id);
	return event(c, who, id, "complete", detail, err);
}

/* Writes what the deployment's devices should run now; their director targets are signed at their
 * next check-in (the desired state changed), so a big fleet costs no signing here. */
static int materialise(long *out_changed, db_conn *c, const PGresult *d, int row, gn_err *err)
{
	char *sp[5] = {0}, label[160], pct[16] = "0";
	PGresult *res = NULL;
	struct strategy st;
	int error = devices_selector_params(sp, PQgetvalue(d, row, D_SELECTOR), err);
	const char *rid = db_val(d, row, R_ID), *state = db_val(d, row, R_STATE);
	if (!error && rid && strcmp(state, "waiting_approval") != 0) {
		json_t *sj = json_loads(PQgetvalue(d, row, R_STRATEGY), 0, NULL);
		int stage = atoi(PQgetvalue(d, row, R_STAGE));
		if (!(error = strategy_parse(&st, NULL, sj, err)) && stage < st.nstages)
			snprintf(pct, sizeof(pct), "%d", st.stages[stage].percent);
		json_decref(sj);
	}
	snprintf(label, sizeof(label), "deployment:%s", PQgetvalue(d, row, D_NAME));
	const char *p[] = {sp[0],
			   sp[1],
			   sp[2],
			   sp[3],
			   sp[4],
			   PQgetvalue(d, row, D_ID),
			   PQgetvalue(d, row, D_MODEL),
			   db_val(d, row, D_VERSION),
			   rid,
			   db_val(d, row, R_TO),
			   pct,
			   label,
			   rid ? PQgetvalue(d, row, R_PINNED) : "{}"};
	if (!error)
		error = db_exec(&res, c, &st_materialise, p, err);
	if (!error)
		*out_changed = PQntuples(res);
	PQclear(res);
	for (int i = 0; i < 5; i++)
		free(sp[i]);
	return error;
}

/* Starts a rollout where the alias the deployment follows now names another version (unless a
 * rollout to that version from this one was already rolled back or aborted: moving the alias
 * again, or `deploy set`, retries it). */
static int follow_alias(db_conn *c, const struct gd_actor *who, const PGresult *d, int row, gn_err *err)
{
	const char *wanted = db_val(d, row, D_WANTED), *version = db_val(d, row, D_VERSION);
	if (!wanted || !version || strcmp(wanted, version) == 0 || db_val(d, row, R_ID) ||
	    strcmp(PQgetvalue(d, row, D_REFUSED), "t") == 0)
		return 0;
	return rollouts_start(c, who, PQgetvalue(d, row, D_ID), version, wanted, PQgetvalue(d, row, D_STRATEGY), err);
}

/* One deployment's pass, in its own transaction. */
static int tick_one(db_conn *c, const struct gd_actor *who, const PGresult *d, int row, gn_err *err)
{
	const char *rid = db_val(d, row, R_ID);
	const char *p[] = {rid};
	int error;
	if ((error = db_tx_begin(c, err)))
		return error;
	if (rid && (error = db_exec(NULL, c, &st_lock, p, err)))
		goto out;
	if (rid && strcmp(PQgetvalue(d, row, R_STATE), "running") == 0)
		error = judge(c, who, d, row, err);
	else if (!rid)
		error = follow_alias(c, who, d, row, err);
	if (!error)
		error = db_tx_commit(c, err);
out:
	if (error)
		db_tx_rollback(c);
	return error;
}

/* Re-reads the deployment's row (a judgement may have changed its rollout) and materialises it. */
static int write_desired(db_conn *c, const char *id, gn_err *err)
{
	PGresult *d = NULL;
	long changed = 0;
	const char *p[] = {id};
	int error = db_exec(&d, c, &st_deployment, p, err);
	if (!error && PQntuples(d) == 1 && !(error = materialise(&changed, c, d, 0, err)) && changed)
		gn_log(GN_LOG_INFO, "event=deployment_applied deployment=%s devices_changed=%ld",
		       PQgetvalue(d, 0, D_NAME), changed);
	PQclear(d);
	return error;
}

int rollouts_wake(db_conn *c, gn_err *err)
{
	return db_exec(NULL, c, &st_wake, NULL, err);
}

int rollouts_tick(db_conn *c, gn_err *err)
{
	PGresult *d = NULL;
	struct gd_actor who;
	int error = db_exec(&d, c, &st_deployments, NULL, err), failures = 0;
	actor_system(&who, "controller");
	for (int i = 0; !error && i < PQntuples(d); i++) {
		const char *name = PQgetvalue(d, i, D_NAME);
		gn_err e;
		/* One deployment's trouble must not hold up the others. */
		if (tick_one(c, &who, d, i, &e) || deployments_reconcile(c, &who, PQgetvalue(d, i, D_ID), &e) ||
		    write_desired(c, PQgetvalue(d, i, D_ID), &e)) {
			gn_log(GN_LOG_WARN, "event=controller_failed deployment=%s msg=\"%s\"", name, e.msg);
			failures++;
		}
	}
	PQclear(d);
	if (!error && failures)
		error = gn_err_set(err, GN_ERROR, "the controller failed on %d deployment(s); see the log", failures);
	return error;
}

int rollouts_get(char **out, db_conn *c, const char *id, gn_err *err)
{
	PGresult *res = NULL;
	struct strategy st;
	struct stage_stats s;
	int error;
	*out = NULL;
	if (!gn_is_uuid(id))
		return gn_err_set(err, GN_ENOTFOUND, "no such rollout '%.40s'", id);
	const char *p[] = {id};
	if ((error = db_exec(&res, c, &st_get, p, err)))
		return error;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return gn_err_set(err, GN_ENOTFOUND, "no such rollout '%s'", id);
	}
	json_t *j = json_loads(PQgetvalue(res, 0, 0), 0, NULL), *sj = json_loads(PQgetvalue(res, 0, 4), 0, NULL);
	int stage = atoi(PQgetvalue(res, 0, 3));
	if (!(error = strategy_parse(&st, NULL, sj, err)) && stage < st.nstages &&
	    !(error = stage_stats(&s, c, id, st.stages[stage].percent, json_string_value(json_object_get(j, "model")),
				  json_string_value(json_object_get(j, "to_version")),
				  json_string_value(json_object_get(j, "from_version")), st.probation_s, err))) {
		json_t *prog = stats_json(&s);
		json_object_set_new(prog, "percent", json_integer(st.stages[stage].percent));
		json_object_set_new(prog, "deployment_devices", json_integer(s.all));
		json_object_set_new(j, "progress", prog);
	}
	if (!error)
		*out = gn_json_dump(j);
	json_decref(j);
	json_decref(sj);
	PQclear(res);
	return error;
}

/* Checks that the rollout's state allows action and applies it. */
static int act(db_conn *c, const struct gd_actor *who, const char *id, const char *action, const char *state,
	       const char *creator, gn_err *err)
{
	char label[128], reason[200];
	bool active =
		strcmp(state, "running") == 0 || strcmp(state, "paused") == 0 || strcmp(state, "waiting_approval") == 0;
	actor_label(label, sizeof(label), who);
	snprintf(reason, sizeof(reason), "%s by %s", action, label);
	if (strcmp(action, "pause") == 0 && strcmp(state, "running") == 0)
		return set_state(c, id, "paused", reason, NULL, false, err);
	if (strcmp(action, "resume") == 0 && strcmp(state, "paused") == 0)
		return set_state(c, id, "running", reason, NULL, true, err);
	if (strcmp(action, "abort") == 0 && active)
		return set_state(c, id, "aborted", reason, NULL, false, err);
	if (strcmp(action, "promote") == 0 && (strcmp(state, "running") == 0 || strcmp(state, "paused") == 0)) {
		const char *p[] = {id, reason};
		int error = db_exec(NULL, c, &st_promote, p, err);
		return error ? error : set_state(c, id, "running", reason, NULL, false, err);
	}
	if (strcmp(action, "approve") == 0 && strcmp(state, "waiting_approval") == 0) {
		if (creator && who->kind == GD_ACTOR_TOKEN && strcmp(creator, who->id) == 0)
			return gn_err_set(err, GN_EFORBIDDEN, "the token that started rollout %s cannot approve it",
					  id);
		return set_state(c, id, "running", reason, label, true, err);
	}
	return gn_err_set(err, GN_ECONFLICT, "rollout %s is %s; it cannot %s", id, state, action);
}

int rollouts_action(char **out, db_conn *c, const struct gd_actor *who, const char *id, const char *action, gn_err *err)
{
	static const char *const actions[] = {"pause", "resume", "promote", "abort", "approve"};
	PGresult *res = NULL;
	bool known = false;
	int error;
	*out = NULL;
	for (size_t i = 0; i < GN_ARRAY_LEN(actions); i++)
		known |= strcmp(actions[i], action) == 0;
	if (!known)
		return gn_err_set(err, GN_EINVAL,
				  "unknown rollout action '%.40s' (pause, resume, promote, abort, approve)", action);
	if (!gn_is_uuid(id))
		return gn_err_set(err, GN_ENOTFOUND, "no such rollout '%.40s'", id);
	const char *p[] = {id};
	if ((error = db_tx_begin(c, err)) || (error = db_exec(NULL, c, &st_lock, p, err)) ||
	    (error = db_exec(&res, c, &st_get, p, err)))
		goto out;
	if (PQntuples(res) == 0) {
		error = gn_err_set(err, GN_ENOTFOUND, "no such rollout '%s'", id);
		goto out;
	}
	if ((error = act(c, who, id, action, PQgetvalue(res, 0, 1), db_val(res, 0, 2), err)) ||
	    (error = event(c, who, id, action, NULL, err)) || (error = rollouts_wake(c, err)) ||
	    (error = db_tx_commit(c, err)))
		goto out;
	error = rollouts_get(out, c, id, err);
out:
	if (error)
		db_tx_rollback(c);
	PQclear(res);
	return error;
}

static const db_stmt st_plan = {
	"rollouts_plan",
	"WITH p AS (SELECT id FROM deployments WHERE name = $1), r AS (SELECT gen_random_uuid() AS id),"
	" devs AS (SELECT gn_cohort(r.id, dd.device_id) * 100 AS pos FROM device_desired dd, p, r"
	"   WHERE dd.deployment_id = p.id)"
	" SELECT (SELECT count(*) FROM p), (SELECT count(*) FROM devs),"
	"  (SELECT coalesce(jsonb_agg(jsonb_build_object('percent', s.pct::int, 'devices',"
	"    GREATEST((SELECT count(*) FROM devs WHERE pos < s.pct::int),"
	"     CASE WHEN EXISTS (SELECT 1 FROM devs) THEN 1 ELSE 0 END))), '[]')::text"
	"   FROM jsonb_array_elements_text($2::jsonb) AS s(pct))",
	2};
static const db_stmt st_plan_strategy = {"rollouts_plan_strategy",
					 "SELECT strategy::text FROM deployments WHERE name = $1", 1};

int rollouts_plan(json_t **out, db_conn *c, const char *name, gn_err *err)
{
	PGresult *res = NULL;
	struct strategy st;
	json_t *pcts = json_array();
	char *spcts = NULL;
	const char *pn[] = {name};
	int error = db_exec(&res, c, &st_plan_strategy, pn, err);
	*out = NULL;
	if (!error && PQntuples(res) == 0)
		error = gn_err_set(err, GN_ENOTFOUND, "no such deployment '%s'", name);
	if (!error) {
		json_t *sj = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
		error = strategy_parse(&st, NULL, sj, err);
		json_decref(sj);
	}
	PQclear(res);
	res = NULL;
	for (int i = 0; !error && i < st.nstages; i++)
		json_array_append_new(pcts, json_sprintf("%d", st.stages[i].percent));
	spcts = gn_json_dump(pcts);
	const char *p[] = {name, spcts};
	if (!error && !(error = db_exec(&res, c, &st_plan, p, err)))
		*out = json_pack("{s:s,s:I,s:o}", "deployment", name, "devices",
				 (json_int_t)strtoll(PQgetvalue(res, 0, 1), NULL, 10), "stages",
				 json_loads(PQgetvalue(res, 0, 2), 0, NULL));
	PQclear(res);
	json_decref(pcts);
	free(spcts);
	return error;
}
