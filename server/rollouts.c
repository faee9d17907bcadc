/* Rollouts and the controller that moves them stage by stage. */
#include "rollouts.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "deployments.h"
#include "latency.h"
#include "devices.h"
#include "drift.h"
#include "json.h"
#include "log.h"
#include "strategy.h"
#include "telemetry.h"

#define ACTIVE_STATES "('waiting_approval', 'running', 'paused')"

#define ROLLOUT_JSON                                                                                             \
	"jsonb_build_object('id', r.id, 'deployment', p.name, 'model', p.model, 'from_version', r.from_version," \
	" 'to_version', r.to_version, 'state', r.state, 'stage', r.stage, 'stage_started_at',"                   \
	" CASE WHEN r.stage_started_at = '-infinity' THEN NULL ELSE gn_ts(r.stage_started_at) END,"              \
	" 'strategy', r.strategy, 'created_by', r.created_by, 'approved_by', r.approved_by, 'reason', r.reason," \
	" 'created_at', gn_ts(r.created_at), 'updated_at', gn_ts(r.updated_at), 'finished_at',"                  \
	" gn_ts(r.finished_at), 'pinned', to_jsonb(r.pinned), 'held_back', to_jsonb(r.held_back))"

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
			       "::text, r.state, r.creator_token, r.stage, r.strategy::text, p.id, p.selector,"
			       " extract(epoch FROM r.created_at)::bigint"
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
/* Restarts a stage's bake but keeps an operator's promote ('-infinity', see st_promote). */
#define STAGE_RESTART \
	" stage_started_at = CASE WHEN r.stage_started_at = '-infinity' THEN r.stage_started_at ELSE now() END"
/* Takes the deployment's device that comes first in the rollout's order into the canary (and
 * restarts the stage's bake, unless an operator promoted it: '-infinity' stays), for a stage that
 * would otherwise hold no device; one held back is taken only when no other is left (a pinned
 * device is in every stage, held back or not). Rows marked stale (the device no longer matches
 * the selector) are not the deployment's to take. */
static const db_stmt st_pin = {
	"rollouts_pin",
	"UPDATE rollouts r SET pinned = r.pinned || x.device_id," STAGE_RESTART ", updated_at = now()"
	" FROM (SELECT dd.device_id FROM device_desired dd JOIN devices dv ON dv.id = dd.device_id, rollouts q"
	"  WHERE q.id = $1 AND dd.deployment_id = q.deployment_id AND dv.status = 'active' AND dd.stale_at IS NULL"
	"  ORDER BY dd.device_id = ANY(q.held_back), gn_cohort(q.id, dd.device_id) LIMIT 1) x WHERE r.id = $1"
	" RETURNING x.device_id",
	1};
/* Holds one of the deployment's devices back from a stage ($2 percent, below 100) that would take
 * every one of them (at least two), so that some stay on the old version as the control: the last
 * in the rollout's order among those not told the new version yet, never a pinned one. A device
 * already told the new version is never taken back to the old one to make a control (only a
 * device leaving mid-stage can bring that about): then nothing is held back and the comparing
 * gates wait, saying why, for an operator. Restarts the stage's bake (its control changed), unless
 * an operator promoted it. Nothing when the stage leaves a device out already. Rows marked stale
 * (the device no longer matches the selector and is leaving) neither count nor are chosen. */
static const db_stmt st_hold_back = {
	"rollouts_hold_back",
	"UPDATE rollouts r SET held_back = r.held_back || x.device_id," STAGE_RESTART ", updated_at = now()"
	" FROM (SELECT m.device_id FROM (SELECT dd.device_id, dd.device_id = ANY(q.pinned) AS pinned,"
	"   dd.version IS NOT DISTINCT FROM q.to_version AS told_new, gn_cohort(q.id, dd.device_id) AS place,"
	"   count(*) OVER () AS total, count(*) FILTER (WHERE NOT gn_in_stage(q.id, dd.device_id, $2::int, q.pinned,"
	"    q.held_back)) OVER () AS outside"
	"  FROM rollouts q JOIN device_desired dd ON dd.deployment_id = q.deployment_id"
	"  JOIN devices dv ON dv.id = dd.device_id WHERE q.id = $1 AND dv.status = 'active' AND dd.stale_at IS NULL) m"
	"  WHERE $2::int < 100 AND m.total >= 2 AND m.outside = 0 AND NOT m.pinned AND NOT m.told_new"
	"  ORDER BY m.place DESC, m.device_id LIMIT 1) x"
	" WHERE r.id = $1 RETURNING x.device_id, gn_notify_devices(ARRAY[x.device_id])",
	2};
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
	" r.pinned::text, r.stage_started_at = '-infinity', extract(epoch FROM r.created_at)::bigint,"              \
	" r.held_back::text"                                                                                        \
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
	R_PINNED,
	R_PROMOTED,
	R_CREATED,
	R_HELD_BACK
};

/* A device of a stage has finished with version $10 of model $7 once it reports it active, or
 * its last operation on the model (the model's own in its report, or the device's last one)
 * says installing it failed (reported is the device's latest report). */
#define FINISHED_WITH_NEW                                                                                  \
	"(EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(reported->'models') = 'array'" \
	"   THEN reported->'models' ELSE '[]' END) x WHERE x->>'name' = $7"                                \
	"   AND ((x->>'version' = $10 AND x->>'state' = 'active')"                                         \
	"    OR (x->'last_operation'->>'version' = $10 AND x->'last_operation'->>'state' = 'failed')))"    \
	" OR (reported->'last_operation'->>'model' = $7 AND reported->'last_operation'->>'version' = $10"  \
	"   AND reported->'last_operation'->>'state' = 'failed'))"

/* What each matching active device of a deployment should run: the rollout's new version for the
 * devices of the current stage (gn_in_stage: below its percentage and not held back, or pinned),
 * the deployment's version for the rest.
 * With a cap ($14, max_parallel), a device of the stage is told the new version only while fewer
 * than the cap of those told it have not finished with it (in the rollout's order); the others
 * keep what they were told. A device with a per-device override of the model (deployment_id
 * NULL) or that gets the model from another deployment is left alone, unless that one no longer
 * matches it (stale_at set): then this one takes it over. Only rows that change are written, so
 * a pass over a fleet where nothing changed writes nothing (and notifies no one). The changes are
 * gathered into arrays (an aggregate, which reads all of its input first) before the first row is
 * written: the statement never reads device_desired while it writes it, whatever plan PostgreSQL
 * picks (a nested loop that re-scanned the table as it grew made the first deployment over an
 * empty table quadratic). */
static const db_stmt st_materialise = {
	"rollouts_materialise",
	"WITH ours AS MATERIALIZED (SELECT device_id, version FROM device_desired WHERE deployment_id = $6 AND model = $7),"
	" mine AS MATERIALIZED (SELECT d.id AS device_id, CASE WHEN $14::int IS NOT NULL THEN d.reported END AS reported,"
	"   o.version AS cur,"
	"   $9::uuid IS NOT NULL AND gn_in_stage($9::uuid, d.id, $11::int, $13::uuid[], $15::uuid[]) AS in_stage"
	"  FROM devices d LEFT JOIN ours o ON o.device_id = d.id"
	"  WHERE d.status = 'active' AND" DEVICES_SELECTOR_WHERE
	"   AND (o.device_id IS NOT NULL OR NOT EXISTS (SELECT 1 FROM device_desired x WHERE x.device_id = d.id"
	"    AND x.model = $7 AND (x.deployment_id IS NULL OR x.stale_at IS NULL)))),"
	" flight AS (SELECT count(*) AS n FROM mine WHERE $14::int IS NOT NULL AND in_stage AND cur = $10"
	"   AND NOT " FINISHED_WITH_NEW "),"
	" queue AS (SELECT device_id, row_number() OVER (ORDER BY gn_cohort($9::uuid, device_id), device_id) AS pos"
	"   FROM mine WHERE $14::int IS NOT NULL AND in_stage AND cur IS DISTINCT FROM $10),"
	" want AS (SELECT m.device_id, m.cur, CASE WHEN NOT m.in_stage THEN $8"
	"   WHEN m.cur = $10 OR $14::int IS NULL OR q.pos <= $14::int - (SELECT n FROM flight) THEN $10"
	"   ELSE coalesce(m.cur, $8) END AS version"
	"  FROM mine m LEFT JOIN queue q ON q.device_id = m.device_id),"
	" changes AS (SELECT array_agg(w.device_id ORDER BY w.device_id) AS ids,"
	"   array_agg(w.version ORDER BY w.device_id) AS versions"
	"  FROM want w WHERE w.version IS NOT NULL AND w.version IS DISTINCT FROM w.cur)"
	" INSERT INTO device_desired (device_id, model, version, assigned_by, deployment_id)"
	" SELECT u.device_id, $7, u.version, $12, $6 FROM changes, unnest(changes.ids, changes.versions) u(device_id, version)"
	" ON CONFLICT (device_id, model) DO UPDATE SET version = excluded.version, stale_at = NULL,"
	"  assigned_by = excluded.assigned_by, assigned_at = now(), deployment_id = excluded.deployment_id"
	" WHERE (device_desired.deployment_id = excluded.deployment_id AND device_desired.version <> excluded.version)"
	"  OR (device_desired.deployment_id <> excluded.deployment_id AND device_desired.stale_at IS NOT NULL)"
	" RETURNING device_id",
	15};

/* The health of a rollout's current stage, in one pass over the deployment's devices: devices in
 * it, healthy on the new version (active for the probation period), failed installs of it;
 * requests, errors and latency histograms of the canary (devices of the stage on the new version,
 * counting since they installed it) and, when $8 asks, of the control (the others, still on the
 * old version, counting since the rollout started: their counts minus the baseline taken then,
 * or all of them when the device has none or its counters went back, as after a restart); and
 * the devices held back from the stage. Rows marked stale (the device no longer matches the
 * selector, so it is told nothing new) are left out, as materialise leaves them. The device
 * events are read only for the stage's devices. */
static const db_stmt st_stage_stats = {
	"rollouts_stage_stats",
	"WITH r AS (SELECT id, created_at, deployment_id, pinned, held_back FROM rollouts WHERE id = $1),"
	" mine AS MATERIALIZED (SELECT dd.device_id, gn_in_stage(r.id, dd.device_id, $2::int, r.pinned, r.held_back)"
	"   AS in_stage, $2::int < 100 AND dd.device_id = ANY(r.held_back) AS held"
	"  FROM r JOIN device_desired dd ON dd.deployment_id = r.deployment_id JOIN devices dv ON dv.id = dd.device_id"
	"  WHERE dv.status = 'active' AND dd.stale_at IS NULL),"
	" per AS MATERIALIZED (SELECT m.device_id, m.in_stage,"
	"  (SELECT x FROM jsonb_array_elements(CASE WHEN jsonb_typeof(dv.reported->'models') = 'array'"
	"    THEN dv.reported->'models' ELSE '[]' END) x WHERE x->>'name' = $3"
	"    AND x->>'version' = CASE WHEN m.in_stage THEN $4 ELSE $6 END AND x->>'state' = 'active' LIMIT 1) AS rep,"
	"  CASE WHEN m.in_stage THEN (SELECT min(e.at) FROM device_events e WHERE e.device_id = m.device_id"
	"    AND e.at >= r.created_at AND e.operation->>'model' = $3 AND e.operation->>'version' = $4"
	"    AND e.operation->>'state' = 'active') END AS active_since,"
	"  CASE WHEN m.in_stage THEN (SELECT e.operation->>'state' FROM device_events e WHERE e.device_id = m.device_id"
	"    AND e.at >= r.created_at AND e.operation->>'model' = $3 AND e.operation->>'version' = $4"
	"    ORDER BY e.id DESC LIMIT 1) END AS last_state"
	"  FROM mine m JOIN devices dv ON dv.id = m.device_id, r WHERE m.in_stage OR $8::boolean),"
	" f AS MATERIALIZED (SELECT p.in_stage,"
	"   CASE WHEN k.whole THEN c.req ELSE c.req - b.requests END AS req,"
	"   CASE WHEN k.whole THEN c.err ELSE c.err - b.errors END AS err,"
	"   CASE WHEN k.whole OR b.latency_us_buckets IS NULL OR c.lat IS NULL THEN c.lat ELSE ARRAY("
	"     SELECT u.x - u.y FROM unnest(c.lat, b.latency_us_buckets) WITH ORDINALITY u(x, y, i) ORDER BY u.i) END AS lat"
	"  FROM per p"
	"  CROSS JOIN LATERAL (SELECT coalesce(gn_jcount(p.rep->'requests'), 0) AS req,"
	"    coalesce(gn_jcount(p.rep->'errors'), 0) AS err, gn_jbuckets(p.rep->'latency_us_buckets', $7::int) AS lat) c"
	"  LEFT JOIN rollout_baselines b ON NOT p.in_stage AND b.rollout_id = $1 AND b.device_id = p.device_id"
	"  CROSS JOIN LATERAL (SELECT b.device_id IS NULL OR c.req < b.requests OR c.err < b.errors"
	"    OR (c.lat IS NOT NULL AND b.latency_us_buckets IS NOT NULL AND EXISTS (SELECT 1"
	"     FROM unnest(c.lat, b.latency_us_buckets) v(x, y) WHERE v.x IS NULL OR v.y IS NULL OR v.x < v.y)) AS whole) k"
	"  WHERE p.rep IS NOT NULL)"
	" SELECT a.devices, b.healthy, b.failed, c.canary_req, c.canary_err, c.control_req, c.control_err, a.total,"
	"  c.control_devices,"
	"  (SELECT array_agg(q.s ORDER BY q.i) FROM (SELECT u.i, sum(u.v) AS s FROM f g, unnest(g.lat) WITH ORDINALITY"
	"    u(v, i) WHERE g.in_stage GROUP BY u.i) q)::text,"
	"  (SELECT array_agg(q.s ORDER BY q.i) FROM (SELECT u.i, sum(u.v) AS s FROM f g, unnest(g.lat) WITH ORDINALITY"
	"    u(v, i) WHERE NOT g.in_stage GROUP BY u.i) q)::text, a.held"
	" FROM (SELECT count(*) FILTER (WHERE in_stage) AS devices, count(*) AS total,"
	"   count(*) FILTER (WHERE held AND NOT in_stage) AS held FROM mine) a,"
	"  (SELECT count(*) FILTER (WHERE in_stage AND rep IS NOT NULL"
	"    AND active_since <= now() - make_interval(secs => $5::bigint)) AS healthy,"
	"   count(*) FILTER (WHERE in_stage AND last_state = 'failed') AS failed FROM per) b,"
	"  (SELECT coalesce(sum(req) FILTER (WHERE in_stage), 0) AS canary_req,"
	"   coalesce(sum(err) FILTER (WHERE in_stage), 0) AS canary_err,"
	"   coalesce(sum(req) FILTER (WHERE NOT in_stage), 0) AS control_req,"
	"   coalesce(sum(err) FILTER (WHERE NOT in_stage), 0) AS control_err,"
	"   count(*) FILTER (WHERE NOT in_stage) AS control_devices FROM f) c",
	8};

/* What the deployment's devices still on the old version have counted when the rollout starts
 * running (only when its strategy compares the canary with them), so the control is judged over
 * the same period as the canary. */
static const db_stmt st_baseline = {
	"rollouts_baseline",
	"INSERT INTO rollout_baselines (rollout_id, device_id, requests, errors, latency_us_buckets)"
	" SELECT r.id, dd.device_id, coalesce(gn_jcount(m.x->'requests'), 0), coalesce(gn_jcount(m.x->'errors'), 0),"
	"  gn_jbuckets(m.x->'latency_us_buckets', $2::int)"
	" FROM rollouts r JOIN deployments p ON p.id = r.deployment_id"
	"  JOIN device_desired dd ON dd.deployment_id = r.deployment_id JOIN devices dv ON dv.id = dd.device_id"
	"  CROSS JOIN LATERAL (SELECT x FROM jsonb_array_elements(CASE WHEN jsonb_typeof(dv.reported->'models') = 'array'"
	"   THEN dv.reported->'models' ELSE '[]' END) x WHERE x->>'name' = p.model AND x->>'version' = r.from_version"
	"   AND x->>'state' = 'active' LIMIT 1) m"
	" WHERE r.id = $1 AND r.state = 'running' AND dv.status = 'active'"
	"  AND (r.strategy->'gates'->>'max_error_increase' IS NOT NULL"
	"   OR r.strategy->'gates'->>'max_p95_latency_ratio' IS NOT NULL)"
	" ON CONFLICT DO NOTHING",
	2};

/* Tells every replica to drop its cached check-in answers for the devices of the rollout's stage
 * of $2 percent (they are told another poll interval when it starts or stops running). */
static const db_stmt st_notify_stage = {
	"rollouts_notify_stage",
	"SELECT gn_notify_devices(ARRAY(SELECT dd.device_id FROM rollouts r"
	" JOIN device_desired dd ON dd.deployment_id = r.deployment_id"
	" WHERE r.id = $1 AND gn_in_stage(r.id, dd.device_id, $2::int, r.pinned, r.held_back)))",
	2};

/* Whether the device is in the current stage of a running rollout of a deployment it follows. */
static const db_stmt st_in_stage = {
	"rollouts_in_stage",
	"SELECT EXISTS (SELECT 1 FROM device_desired dd JOIN rollouts r ON r.deployment_id = dd.deployment_id"
	" AND r.state = 'running' WHERE dd.device_id = $1"
	" AND gn_in_stage(r.id, dd.device_id, (r.strategy->'stages'->r.stage->>'percent')::int, r.pinned, r.held_back))",
	1};

/* A hold of the current stage (a gate that cannot be judged), recorded unless the rollout's last
 * event is the same hold (same stage, same gates). */
static const db_stmt st_hold = {
	"rollouts_hold",
	"WITH e AS (INSERT INTO rollout_events (rollout_id, kind, detail)"
	"  SELECT $1, 'hold', $2::jsonb WHERE NOT EXISTS (SELECT 1 FROM (SELECT kind, detail FROM rollout_events"
	"   WHERE rollout_id = $1 ORDER BY id DESC LIMIT 1) l WHERE l.kind = 'hold'"
	"   AND l.detail->'stage' = $2::jsonb->'stage' AND l.detail->'unjudged' = $2::jsonb->'unjudged') RETURNING id),"
	" u AS (UPDATE rollouts SET reason = $3, updated_at = now() WHERE id = $1 AND reason IS DISTINCT FROM $3)"
	" SELECT count(*) FROM e",
	3};

struct stage_stats {
	long long devices, healthy, failed, canary_req, canary_err, control_req, control_err, all;
	long long control_devices; /* devices still on the old version that report it (when compared) */
	long long held_back;       /* devices held back from the stage as the control */
	uint64_t canary_lat[GN_LATENCY_NBUCKETS], control_lat[GN_LATENCY_NBUCKETS];
	uint64_t canary_samples, control_samples; /* the histograms' totals */
	bool compared;                            /* the control's figures were read */
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

/* Drops the cached check-in answers of the devices of the rollout's first `percent` percent. */
static int notify_stage(db_conn *c, const char *id, int percent, gn_err *err)
{
	char pct[16];
	snprintf(pct, sizeof(pct), "%d", percent);
	const char *p[] = {id, pct};
	return db_exec(NULL, c, &st_notify_stage, p, err);
}

/* Takes the control's baseline when the rollout starts running (see st_baseline). */
static int baseline(db_conn *c, const char *id, gn_err *err)
{
	char n[16];
	snprintf(n, sizeof(n), "%d", GN_LATENCY_NBUCKETS);
	const char *p[] = {id, n};
	return db_exec(NULL, c, &st_baseline, p, err);
}

/* The percentage of the stage a rollout's strategy (JSON text) is at; 0 when it cannot say. */
static int stage_percent(const char *strategy, int stage)
{
	struct strategy st;
	gn_err e;
	json_t *sj = json_loads(strategy, 0, NULL);
	int pct = !strategy_parse(&st, NULL, sj, &e) && stage >= 0 && stage < st.nstages ? st.stages[stage].percent : 0;
	json_decref(sj);
	return pct;
}

static int hold_back_one(db_conn *c, const struct gd_actor *who, const char *id, int stage, int percent, bool *held,
			 gn_err *err);

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
	const char *id = PQgetvalue(res, 0, 0);
	error = event(
		c, who, id, "start",
		json_pack("{s:s,s:s,s:s}", "from_version", from, "to_version", to, "state", PQgetvalue(res, 0, 1)),
		err);
	if (!error)
		error = hold_back_one(c, who, id, 0, stage_percent(strategy, 0), NULL, err);
	if (!error && strcmp(PQgetvalue(res, 0, 1), "running") == 0 && !(error = baseline(c, id, err)))
		error = notify_stage(c, id, stage_percent(strategy, 0), err);
	if (!error)
		gn_log(GN_LOG_INFO, "event=rollout_started rollout=%s from=%s to=%s by=%s", id, from, to, label);
	PQclear(res);
	return error;
}

int rollouts_device_in_stage(bool *out, db_conn *c, const char *device_id, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {device_id};
	int error = db_exec(&res, c, &st_in_stage, p, err);
	*out = !error && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return error;
}

/* Reads a PostgreSQL array of counts ("{1,2,...}", or NULL for none) into out[n]. */
static void read_buckets(uint64_t out[GN_LATENCY_NBUCKETS], uint64_t *out_total, const char *text)
{
	const char *p = text ? text + 1 : NULL;
	*out_total = 0;
	for (int i = 0; i < GN_LATENCY_NBUCKETS; i++) {
		char *end = NULL;
		out[i] = p && *p && *p != '}' ? strtoull(p, &end, 10) : 0;
		if (end) {
			p = *end == ',' ? end + 1 : end;
			*out_total += out[i];
		}
	}
}

static int stage_stats(struct stage_stats *out, db_conn *c, const char *id, int percent, const char *model,
		       const char *to, const char *from, const struct strategy *st, gn_err *err)
{
	PGresult *res = NULL;
	char pct[16], prob[24], nb[16];
	snprintf(pct, sizeof(pct), "%d", percent);
	snprintf(prob, sizeof(prob), "%lld", (long long)st->probation_s);
	snprintf(nb, sizeof(nb), "%d", GN_LATENCY_NBUCKETS);
	memset(out, 0, sizeof(*out));
	out->compared = strategy_compares(st);
	const char *p[] = {id, pct, model, to, prob, from, nb, out->compared ? "true" : "false"};
	int error = db_exec(&res, c, &st_stage_stats, p, err);
	if (error)
		return error;
	long long *f[] = {&out->devices,     &out->healthy,     &out->failed, &out->canary_req,     &out->canary_err,
			  &out->control_req, &out->control_err, &out->all,    &out->control_devices};
	for (int i = 0; i < 9; i++)
		*f[i] = strtoll(PQgetvalue(res, 0, i), NULL, 10);
	read_buckets(out->canary_lat, &out->canary_samples, db_val(res, 0, 9));
	read_buckets(out->control_lat, &out->control_samples, db_val(res, 0, 10));
	out->held_back = strtoll(PQgetvalue(res, 0, 11), NULL, 10);
	PQclear(res);
	return 0;
}

/* A p95 in milliseconds from a histogram (the upper bound of its bucket). */
static double p95_ms(const uint64_t *lat)
{
	return (double)gn_latency_quantile_us(lat, GN_LATENCY_NBUCKETS, 0.95) / 1000.0;
}

static json_t *stats_json(const struct stage_stats *s)
{
	json_t *j = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "devices", (json_int_t)s->devices, "healthy",
			      (json_int_t)s->healthy, "failed", (json_int_t)s->failed, "canary_requests",
			      (json_int_t)s->canary_req, "canary_errors", (json_int_t)s->canary_err,
			      "canary_latency_samples", (json_int_t)s->canary_samples);
	json_object_set_new(j, "canary_p95_latency_ms",
			    s->canary_samples ? json_real(p95_ms(s->canary_lat)) : json_null());
	json_object_set_new(j, "held_back", json_integer(s->held_back));
	if (s->compared) {
		json_object_set_new(j, "control_devices", json_integer(s->control_devices));
		json_object_set_new(j, "control_requests", json_integer(s->control_req));
		json_object_set_new(j, "control_errors", json_integer(s->control_err));
		json_object_set_new(j, "control_latency_samples", json_integer((json_int_t)s->control_samples));
		json_object_set_new(j, "control_p95_latency_ms",
				    s->control_samples ? json_real(p95_ms(s->control_lat)) : json_null());
	}
	return j;
}

/* One gate's verdict on the current stage. */
enum gate_state { GATE_PASS, GATE_FAIL, GATE_UNJUDGED };
struct gate {
	const char *name;
	enum gate_state state;
	double value, limit; /* value is NAN when unjudged */
	char why[240];
	json_t *extra; /* owned: the canary judgement behind the gate, or NULL */
};
#define MAX_GATES 8

static struct gate *gate_add(struct gate *g, int *n, const char *name, double limit)
{
	struct gate *x = &g[(*n)++];
	*x = (struct gate){name, GATE_PASS, NAN, limit, "", NULL};
	return x;
}

static void gates_free(struct gate *g, int n)
{
	for (int i = 0; i < n; i++)
		json_decref(g[i].extra);
}

/* Why a gate cannot judge yet: a cohort with too few requests (or latency samples). */
static bool too_few(struct gate *g, const char *cohort, long long have, const char *what, int64_t need)
{
	if (have >= need)
		return false;
	g->state = GATE_UNJUDGED;
	snprintf(g->why, sizeof(g->why), "%s cannot be judged yet: the %s has %lld %s, min_requests is %lld", g->name,
		 cohort, have, what, (long long)need);
	return true;
}

/* No device left on the old version to compare with (it happens in a stage below 100 percent when
 * every remaining device is in the canary, or none of them reports the old version). */
static bool no_control(struct gate *g, const struct stage_stats *s)
{
	if (s->control_devices > 0)
		return false;
	g->state = GATE_UNJUDGED;
	snprintf(g->why, sizeof(g->why),
		 "%s cannot be judged: no device outside the stage reports the old version active to compare with",
		 g->name);
	return true;
}

static void gate_error_rate(struct gate *g, int *n, const struct strategy *st, const struct stage_stats *s)
{
	struct gate *x = gate_add(g, n, "max_error_rate", st->max_error_rate);
	if (too_few(x, "canary", s->canary_req, "requests", st->min_requests))
		return;
	x->value = (double)s->canary_err / (double)s->canary_req;
	x->state = x->value > st->max_error_rate ? GATE_FAIL : GATE_PASS;
	snprintf(x->why, sizeof(x->why), "canary error rate %.4f (%lld of %lld requests) is %s max_error_rate %.4f",
		 x->value, s->canary_err, s->canary_req, x->state == GATE_FAIL ? "above" : "within",
		 st->max_error_rate);
}

static void gate_error_increase(struct gate *g, int *n, const struct strategy *st, const struct stage_stats *s)
{
	struct gate *x = gate_add(g, n, "max_error_increase", st->max_error_increase);
	if (no_control(x, s) || too_few(x, "canary", s->canary_req, "requests", st->min_requests) ||
	    too_few(x, "control", s->control_req, "requests since the rollout started", st->min_requests))
		return;
	double canary = (double)s->canary_err / (double)s->canary_req;
	double control = (double)s->control_err / (double)s->control_req;
	x->value = canary - control;
	x->state = x->value > st->max_error_increase ? GATE_FAIL : GATE_PASS;
	snprintf(x->why, sizeof(x->why),
		 "canary error rate %.4f is %.4f above the control's %.4f (max_error_increase %.4f)", canary, x->value,
		 control, st->max_error_increase);
}

static void gate_latency(struct gate *g, int *n, const struct strategy *st, const struct stage_stats *s)
{
	struct gate *x = gate_add(g, n, "max_p95_latency_ms", st->max_p95_latency_ms);
	if (too_few(x, "canary", (long long)s->canary_samples, "latency samples", st->min_requests))
		return;
	x->value = p95_ms(s->canary_lat);
	x->state = x->value > st->max_p95_latency_ms ? GATE_FAIL : GATE_PASS;
	snprintf(x->why, sizeof(x->why), "canary p95 latency %.1f ms (%llu samples) is %s max_p95_latency_ms %.1f",
		 x->value, (unsigned long long)s->canary_samples, x->state == GATE_FAIL ? "above" : "within",
		 st->max_p95_latency_ms);
}

static void gate_latency_ratio(struct gate *g, int *n, const struct strategy *st, const struct stage_stats *s)
{
	struct gate *x = gate_add(g, n, "max_p95_latency_ratio", st->max_p95_latency_ratio);
	if (no_control(x, s) ||
	    too_few(x, "canary", (long long)s->canary_samples, "latency samples", st->min_requests) ||
	    too_few(x, "control", (long long)s->control_samples, "latency samples since the rollout started",
		    st->min_requests))
		return;
	double canary = p95_ms(s->canary_lat), control = p95_ms(s->control_lat);
	x->value = canary / control;
	x->state = x->value > st->max_p95_latency_ratio ? GATE_FAIL : GATE_PASS;
	snprintf(x->why, sizeof(x->why),
		 "canary p95 latency %.1f ms is %.2f times the control's %.1f ms (max_p95_latency_ratio %.2f)", canary,
		 x->value, control, st->max_p95_latency_ratio);
}

/* What the telemetry gates look at: the deployment's devices (its selector), windows that start
 * after the rollout did. */
struct rollout_ref {
	const char *model, *to, *from, *selector;
	int64_t since;
};

static struct telemetry_query ref_query(const struct rollout_ref *r)
{
	/* A window may end a little past the server's clock (telemetry_ingest allows the skew). */
	return (struct telemetry_query){r->since, (int64_t)time(NULL) + TELEMETRY_CLOCK_SKEW + 1,
					r->selector && *r->selector ? r->selector : NULL, NULL};
}

/* The canary's telemetry windows against the control's (lib/canary.h, as GET
 * /v1/models/{name}/canary judges them): fail fails the stage; marginal and inconclusive cannot
 * pass it, so they hold it (an operator's promote waives them). */
static int gate_canary_judgement(struct gate *g, int *n, db_conn *c, const struct strategy *st,
				 const struct rollout_ref *r, gn_err *err)
{
	struct gate *x = gate_add(g, n, "canary_judgement", st->canary_min_score);
	struct telemetry_query q = ref_query(r);
	enum gn_canary_verdict v;
	double score;
	int error = telemetry_canary_json(&x->extra, &v, &score, c, r->model, r->to, r->from, &q, st->canary_min_score,
					  st->canary_marginal_score, err);
	if (error)
		return error;
	x->value = score;
	if (v == GN_CANARY_INCONCLUSIVE) {
		json_t *m = json_array_get(json_object_get(x->extra, "metrics"), 0);
		x->state = GATE_UNJUDGED;
		snprintf(x->why, sizeof(x->why),
			 "canary_judgement cannot be judged yet: inconclusive, %lld canary and %lld control device "
			 "windows of telemetry since the rollout started (at least %d a side)",
			 (long long)json_integer_value(json_object_get(m, "n_canary")),
			 (long long)json_integer_value(json_object_get(m, "n_control")),
			 TELEMETRY_CANARY_MIN_OBSERVATIONS);
		return 0;
	}
	char failed[120] = "";
	size_t i, len = 0;
	json_t *m;
	json_array_foreach(json_object_get(x->extra, "metrics"), i, m) {
		if (strcmp(json_string_value(json_object_get(m, "verdict")), "fail") == 0 && len < sizeof(failed))
			len += (size_t)snprintf(failed + len, sizeof(failed) - len, "%s%s", len ? ", " : "",
						json_string_value(json_object_get(m, "name")));
	}
	x->state = v == GN_CANARY_FAIL ? GATE_FAIL : v == GN_CANARY_MARGINAL ? GATE_UNJUDGED : GATE_PASS;
	snprintf(x->why, sizeof(x->why), "canary judgement %s: score %.0f (min_score %.0f, marginal_score %.0f)%s%s",
		 gn_canary_verdict_name(v), score, st->canary_min_score, st->canary_marginal_score,
		 *failed ? "; worse than the control: " : "", failed);
	return 0;
}

/* The largest PSI of the canary's outputs, merged over its devices' windows, against the new
 * version's reference profile; judged once every output it profiles has min_requests samples. */
static int gate_output_psi(struct gate *g, int *n, db_conn *c, const struct strategy *st, const struct rollout_ref *r,
			   gn_err *err)
{
	struct gate *x = gate_add(g, n, "max_output_psi", st->max_output_psi);
	struct telemetry_query q = ref_query(r);
	struct gn_drift_profile *p = NULL;
	json_t *d = NULL, *f;
	int error = telemetry_profile_load(&p, c, r->model, r->to, err);
	size_t outputs = p ? p->noutputs : 0;
	gn_drift_profile_free(p);
	if (error)
		return error;
	if (!outputs) {
		x->state = GATE_UNJUDGED;
		snprintf(x->why, sizeof(x->why),
			 "max_output_psi cannot be judged: %.60s@%.60s has no reference profile of its outputs",
			 r->model, r->to);
		return 0;
	}
	if ((error = telemetry_drift_json(&d, c, r->model, r->to, &q, err)))
		return error;
	const char *worst = NULL;
	long long samples = -1;
	size_t i, found = 0;
	json_array_foreach(json_object_get(json_array_get(json_object_get(d, "groups"), 0), "features"), i, f) {
		const char *name = json_string_value(json_object_get(f, "feature"));
		if (!name || strncmp(name, "output:", 7) != 0)
			continue;
		long long k = (long long)json_integer_value(json_object_get(f, "n"));
		samples = samples < 0 || k < samples ? k : samples;
		found++;
		json_t *psi = json_object_get(f, "psi");
		if (json_is_number(psi) && (isnan(x->value) || json_number_value(psi) > x->value)) {
			x->value = json_number_value(psi);
			worst = name;
		}
	}
	if (found < outputs || samples < 0)
		samples = 0;
	if (samples < st->min_requests || !worst) {
		x->state = GATE_UNJUDGED;
		x->value = NAN;
		snprintf(
			x->why, sizeof(x->why),
			"max_output_psi cannot be judged yet: the canary has %lld output samples, min_requests is %lld",
			samples, (long long)st->min_requests);
	} else {
		x->state = x->value > st->max_output_psi ? GATE_FAIL : GATE_PASS;
		snprintf(x->why, sizeof(x->why),
			 "canary output PSI %.4f (%.80s, %lld samples) is %s max_output_psi %.4f", x->value, worst,
			 samples, x->state == GATE_FAIL ? "above" : "within", st->max_output_psi);
	}
	json_decref(d);
	return 0;
}

/* Adds the gates on the canary's telemetry (not in the last stage for the comparing one). */
static int gates_telemetry(struct gate g[MAX_GATES], int *n, db_conn *c, const struct strategy *st,
			   const struct rollout_ref *r, bool last_stage, gn_err *err)
{
	int error = 0;
	if (st->canary_judgement && !last_stage)
		error = gate_canary_judgement(g, n, c, st, r, err);
	if (!error && st->max_output_psi >= 0)
		error = gate_output_psi(g, n, c, st, r, err);
	return error;
}

/* Judges every gate the strategy sets on the stage. A gate that compares the canary with the
 * devices still on the old version has nothing to compare with in the last stage (it holds every
 * device), so there it is not judged at all; the gates on the canary alone are. */
static int gates_judge(struct gate g[MAX_GATES], const struct strategy *st, const struct stage_stats *s,
		       bool last_stage)
{
	int n = 0;
	struct gate *x = gate_add(g, &n, "max_failed", (double)st->max_failed);
	x->value = (double)s->failed;
	x->state = s->failed > st->max_failed ? GATE_FAIL : GATE_PASS;
	snprintf(x->why, sizeof(x->why), "%lld failed install(s), %s max_failed %lld", s->failed,
		 x->state == GATE_FAIL ? "more than" : "within", (long long)st->max_failed);
	x = gate_add(g, &n, "max_failed_share", st->max_failed_share);
	x->value = s->devices > 0 ? (double)s->failed / (double)s->devices : 0;
	x->state = x->value > st->max_failed_share ? GATE_FAIL : GATE_PASS;
	snprintf(x->why, sizeof(x->why), "%lld of %lld devices failed to install, %s max_failed_share %.3f", s->failed,
		 s->devices, x->state == GATE_FAIL ? "more than" : "within", st->max_failed_share);
	if (st->max_error_rate >= 0)
		gate_error_rate(g, &n, st, s);
	if (st->max_error_increase >= 0 && !last_stage)
		gate_error_increase(g, &n, st, s);
	if (st->max_p95_latency_ms >= 0)
		gate_latency(g, &n, st, s);
	if (st->max_p95_latency_ratio >= 0 && !last_stage)
		gate_latency_ratio(g, &n, st, s);
	return n;
}

static const char *gate_state_name(enum gate_state s)
{
	return s == GATE_FAIL ? "fail" : s == GATE_UNJUDGED ? "unjudged" : "pass";
}

static json_t *gates_json(const struct gate *g, int n)
{
	json_t *a = json_array();
	for (int i = 0; i < n; i++) {
		json_t *x = json_pack("{s:s,s:s,s:o,s:f,s:s}", "gate", g[i].name, "state", gate_state_name(g[i].state),
				      "value", isnan(g[i].value) ? json_null() : json_real(g[i].value), "limit",
				      g[i].limit, "detail", g[i].why);
		if (g[i].extra)
			json_object_set(x, "judgement", g[i].extra);
		json_array_append_new(a, x);
	}
	return a;
}

/* The first gate in state `state`, or NULL. */
static const struct gate *gate_first(const struct gate *g, int n, enum gate_state state)
{
	for (int i = 0; i < n; i++)
		if (g[i].state == state)
			return &g[i];
	return NULL;
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

/* Holds one device back from the rollout's stage `stage` of `percent` percent when it would take
 * every device of the deployment (st_hold_back), and says so in the rollout's events; *held (when
 * given) says whether it did. */
static int hold_back_one(db_conn *c, const struct gd_actor *who, const char *id, int stage, int percent, bool *held,
			 gn_err *err)
{
	PGresult *res = NULL;
	char pct[16];
	snprintf(pct, sizeof(pct), "%d", percent);
	const char *p[] = {id, pct};
	int error = db_exec(&res, c, &st_hold_back, p, err);
	if (held)
		*held = !error && PQntuples(res) == 1;
	if (!error && PQntuples(res) == 1) {
		gn_log(GN_LOG_INFO, "event=rollout_held_back rollout=%s stage=%d device=%s", id, stage,
		       PQgetvalue(res, 0, 0));
		error = event(c, who, id, "hold_back",
			      json_pack("{s:i,s:i,s:s,s:s}", "stage", stage, "percent", percent, "device",
					PQgetvalue(res, 0, 0), "reason",
					"the stage would take every device of the deployment; this one stays on the "
					"old version as the control until the last stage"),
			      err);
	}
	PQclear(res);
	return error;
}

/* Holds a stage whose bake is over while a gate cannot be judged: the rollout's reason says why,
 * and its events say so once per stage and set of such gates. */
static int hold(db_conn *c, const struct gd_actor *who, const char *id, int stage, const struct gate *g, int n,
		const struct stage_stats *s, gn_err *err)
{
	PGresult *res = NULL;
	json_t *names = json_array();
	char reason[300];
	for (int i = 0; i < n; i++)
		if (g[i].state == GATE_UNJUDGED)
			json_array_append_new(names, json_string(g[i].name));
	snprintf(reason, sizeof(reason), "holding stage %d: %s", stage, gate_first(g, n, GATE_UNJUDGED)->why);
	json_t *detail = json_pack("{s:i,s:o,s:s,s:o,s:o}", "stage", stage, "unjudged", names, "reason", reason,
				   "gates", gates_json(g, n), "stats", stats_json(s));
	char *text = gn_json_dump(detail);
	const char *p[] = {id, text, reason};
	int error = db_exec(&res, c, &st_hold, p, err);
	if (!error && strcmp(PQgetvalue(res, 0, 0), "0") != 0) {
		gn_log(GN_LOG_WARN, "event=rollout_held rollout=%s stage=%d why=\"%s\"", id, stage, reason);
		error = audit_write(c, who, "rollout.hold", "rollout", id, detail, err);
		detail = NULL;
	}
	json_decref(detail);
	free(text);
	PQclear(res);
	return error;
}

/* Fails a stage on a gate: rolls back or pauses, as the strategy says. detail is stolen. */
static int fail_stage(db_conn *c, const struct gd_actor *who, const char *id, const struct strategy *st, int stage,
		      const struct gate *bad, json_t *detail, gn_err *err)
{
	const char *action = st->rollback_on_failure ? "rollback" : "pause";
	int error;
	if ((error = set_state(c, id, st->rollback_on_failure ? "rolled_back" : "paused", bad->why, NULL, false,
			       err)) ||
	    (error = notify_stage(c, id, st->stages[stage].percent, err))) {
		json_decref(detail);
		return error;
	}
	gn_log(GN_LOG_WARN, "event=rollout_gate_failed rollout=%s stage=%d gate=%s action=%s why=\"%s\"", id, stage,
	       bad->name, action, bad->why);
	return event(c, who, id, action, detail, err);
}

/* Moves a rollout whose stage passed to its next stage, or completes it. detail is stolen. */
static int pass_stage(db_conn *c, const struct gd_actor *who, const char *id, const struct strategy *st, int stage,
		      json_t *detail, gn_err *err)
{
	const char *p[] = {id, "stage passed"};
	int error;
	if (stage + 1 < st->nstages) {
		if ((error = db_exec(NULL, c, &st_next_stage, p, err))) {
			json_decref(detail);
			return error;
		}
		gn_log(GN_LOG_INFO, "event=rollout_stage_passed rollout=%s stage=%d", id, stage);
		/* The next stage keeps its control before any of its devices is told the new version. */
		if ((error = event(c, who, id, "stage", detail, err)) ||
		    (error = hold_back_one(c, who, id, stage + 1, st->stages[stage + 1].percent, NULL, err)))
			return error;
		return notify_stage(c, id, st->stages[stage + 1].percent, err);
	}
	const char *pc[] = {id};
	if ((error = set_state(c, id, "completed", "every stage passed", NULL, false, err)) ||
	    (error = db_exec(NULL, c, &st_complete_deployment, pc, err)) || (error = notify_stage(c, id, 100, err))) {
		json_decref(detail);
		return error;
	}
	gn_log(GN_LOG_INFO, "event=rollout_completed rollout=%s", id);
	return event(c, who, id, "complete", detail, err);
}

/* Judges a running rollout's current stage: fail (roll back or pause), hold, next stage, or done.
 * A failed gate acts at once, bake or not. Once the bake is over and enough devices are healthy,
 * the stage passes only if every gate could be judged; one that cannot (too few requests, no
 * device left on the old version) holds the stage, explicitly, until it can, or until an
 * operator promotes the rollout, which waives it (named in the stage's event). */
static int judge_gates(db_conn *c, const struct gd_actor *who, const PGresult *d, int row, const struct strategy *stp,
		       int stage, const struct stage_stats *sp, const struct gate *g, int n, gn_err *err);

static int judge(db_conn *c, const struct gd_actor *who, const PGresult *d, int row, gn_err *err)
{
	struct strategy st;
	struct stage_stats s;
	struct gate g[MAX_GATES];
	json_t *sj = json_loads(PQgetvalue(d, row, R_STRATEGY), 0, NULL);
	const char *id = PQgetvalue(d, row, R_ID);
	int stage = atoi(PQgetvalue(d, row, R_STAGE));
	int error = strategy_parse(&st, NULL, sj, err);
	json_decref(sj);
	if (error || stage >= st.nstages)
		return error ? error
			     : gn_err_set(err, GN_ERROR, "rollout %s is at stage %d of %d", id, stage, st.nstages);
	if ((error = stage_stats(&s, c, id, st.stages[stage].percent, PQgetvalue(d, row, D_MODEL),
				 PQgetvalue(d, row, R_TO), PQgetvalue(d, row, R_FROM), &st, err)))
		return error;
	/* The fleet may have changed since the stage began (a device left) so that the stage takes
	 * every device: keep a control. A hold-back restarts the bake, and this pass read the rollout
	 * before it: the next pass judges the stage afresh (as after a pin). */
	if (st.stages[stage].percent < 100 && s.all >= 2 && s.devices == s.all) {
		bool held = false;
		if ((error = hold_back_one(c, who, id, stage, st.stages[stage].percent, &held, err)) || held)
			return error;
	}
	int n = gates_judge(g, &st, &s, stage + 1 == st.nstages);
	struct rollout_ref ref = {PQgetvalue(d, row, D_MODEL), PQgetvalue(d, row, R_TO), PQgetvalue(d, row, R_FROM),
				  PQgetvalue(d, row, D_SELECTOR), strtoll(PQgetvalue(d, row, R_CREATED), NULL, 10)};
	if (!(error = gates_telemetry(g, &n, c, &st, &ref, stage + 1 == st.nstages, err)))
		error = judge_gates(c, who, d, row, &st, stage, &s, g, n, err);
	gates_free(g, n);
	return error;
}

/* What judge does once the gates are judged. */
static int judge_gates(db_conn *c, const struct gd_actor *who, const PGresult *d, int row, const struct strategy *stp,
		       int stage, const struct stage_stats *sp, const struct gate *g, int n, gn_err *err)
{
	const struct strategy st = *stp;
	const struct stage_stats s = *sp;
	const char *id = PQgetvalue(d, row, R_ID);
	const struct gate *bad = gate_first(g, n, GATE_FAIL), *open = gate_first(g, n, GATE_UNJUDGED);
	if (bad)
		return fail_stage(c, who, id, &st, stage, bad,
				  json_pack("{s:i,s:s,s:s,s:o,s:o}", "stage", stage, "gate", bad->name, "reason",
					    bad->why, "gates", gates_json(g, n), "stats", stats_json(&s)),
				  err);
	/* A canary stage with no device would judge nothing and pass: give it one (and one that
	 * would take every device keeps one back: hold_back_one, in judge). */
	if (s.devices == 0 && s.all > 0 && stage + 1 < st.nstages)
		return pin_one(c, who, id, stage, err);
	if (strcmp(PQgetvalue(d, row, R_BAKED), "t") != 0 || !stage_passed(&st, &s))
		return 0;
	if (open && strcmp(PQgetvalue(d, row, R_PROMOTED), "t") != 0)
		return hold(c, who, id, stage, g, n, &s, err);
	json_t *detail = json_pack("{s:i,s:i,s:o,s:o}", "stage", stage, "percent", st.stages[stage].percent, "gates",
				   gates_json(g, n), "stats", stats_json(&s));
	if (open) {
		json_t *waived = json_array();
		for (int i = 0; i < n; i++)
			if (g[i].state == GATE_UNJUDGED)
				json_array_append_new(waived, json_string(g[i].why));
		json_object_set_new(detail, "waived", waived);
		json_object_set_new(detail, "waived_by", json_string("promote"));
	}
	return pass_stage(c, who, id, &st, stage, detail, err);
}

/* Writes what the deployment's devices should run now; their director targets are signed at their
 * next check-in (the desired state changed), so a big fleet costs no signing here. */
static int materialise(long *out_changed, db_conn *c, const PGresult *d, int row, gn_err *err)
{
	char *sp[5] = {0}, label[160], pct[16] = "0", cap[24] = "";
	PGresult *res = NULL;
	struct strategy st;
	int error = devices_selector_params(sp, PQgetvalue(d, row, D_SELECTOR), err);
	const char *rid = db_val(d, row, R_ID), *state = db_val(d, row, R_STATE);
	if (!error && rid && strcmp(state, "waiting_approval") != 0) {
		json_t *sj = json_loads(PQgetvalue(d, row, R_STRATEGY), 0, NULL);
		int stage = atoi(PQgetvalue(d, row, R_STAGE));
		if (!(error = strategy_parse(&st, NULL, sj, err)) && stage < st.nstages)
			snprintf(pct, sizeof(pct), "%d", st.stages[stage].percent);
		if (!error && st.max_parallel)
			snprintf(cap, sizeof(cap), "%lld", (long long)st.max_parallel);
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
			   rid ? PQgetvalue(d, row, R_PINNED) : "{}",
			   cap[0] ? cap : NULL,
			   rid ? PQgetvalue(d, row, R_HELD_BACK) : "{}"};
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
				  json_string_value(json_object_get(j, "from_version")), &st, err))) {
		struct gate g[MAX_GATES];
		int n = gates_judge(g, &st, &s, stage + 1 == st.nstages);
		struct rollout_ref ref = {json_string_value(json_object_get(j, "model")),
					  json_string_value(json_object_get(j, "to_version")),
					  json_string_value(json_object_get(j, "from_version")), PQgetvalue(res, 0, 6),
					  strtoll(PQgetvalue(res, 0, 7), NULL, 10)};
		/* A finished rollout's telemetry gates are not judged again. */
		const char *state = PQgetvalue(res, 0, 1);
		bool live = strcmp(state, "running") == 0 || strcmp(state, "paused") == 0 ||
			    strcmp(state, "waiting_approval") == 0;
		if (!live || !(error = gates_telemetry(g, &n, c, &st, &ref, stage + 1 == st.nstages, err))) {
			json_t *prog = stats_json(&s);
			json_object_set_new(prog, "percent", json_integer(st.stages[stage].percent));
			json_object_set_new(prog, "deployment_devices", json_integer(s.all));
			json_object_set_new(prog, "gates", gates_json(g, n));
			json_object_set_new(j, "progress", prog);
		}
		gates_free(g, n);
	}
	if (!error)
		*out = gn_json_dump(j);
	json_decref(j);
	json_decref(sj);
	PQclear(res);
	return error;
}

/* Checks that the rollout's state allows action and applies it; stage is its current stage, of
 * pct percent (whose devices poll faster only while it runs). A rollout that starts or carries on
 * running keeps a control first, as one that starts does: the fleet may have changed meanwhile. */
static int act(db_conn *c, const struct gd_actor *who, const char *id, const char *action, const char *state,
	       const char *creator, int stage, int pct, gn_err *err)
{
	char label[128], reason[200];
	bool active =
		strcmp(state, "running") == 0 || strcmp(state, "paused") == 0 || strcmp(state, "waiting_approval") == 0;
	int error;
	actor_label(label, sizeof(label), who);
	snprintf(reason, sizeof(reason), "%s by %s", action, label);
	if (strcmp(action, "pause") == 0 && strcmp(state, "running") == 0)
		error = set_state(c, id, "paused", reason, NULL, false, err);
	else if (strcmp(action, "resume") == 0 && strcmp(state, "paused") == 0) {
		if (!(error = set_state(c, id, "running", reason, NULL, true, err)))
			error = hold_back_one(c, who, id, stage, pct, NULL, err);
	} else if (strcmp(action, "abort") == 0 && active)
		error = set_state(c, id, "aborted", reason, NULL, false, err);
	else if (strcmp(action, "promote") == 0 && (strcmp(state, "running") == 0 || strcmp(state, "paused") == 0)) {
		const char *p[] = {id, reason};
		if (!(error = db_exec(NULL, c, &st_promote, p, err)))
			error = set_state(c, id, "running", reason, NULL, false, err);
	} else if (strcmp(action, "approve") == 0 && strcmp(state, "waiting_approval") == 0) {
		if (creator && who->kind == GD_ACTOR_TOKEN && strcmp(creator, who->id) == 0)
			return gn_err_set(err, GN_EFORBIDDEN, "the token that started rollout %s cannot approve it",
					  id);
		if (!(error = set_state(c, id, "running", reason, label, true, err)) &&
		    !(error = hold_back_one(c, who, id, stage, pct, NULL, err)))
			error = baseline(c, id, err);
	} else {
		return gn_err_set(err, GN_ECONFLICT, "rollout %s is %s; it cannot %s", id, state, action);
	}
	return error ? error : notify_stage(c, id, pct, err);
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
	if ((error = act(c, who, id, action, PQgetvalue(res, 0, 1), db_val(res, 0, 2), atoi(PQgetvalue(res, 0, 3)),
			 stage_percent(PQgetvalue(res, 0, 4), atoi(PQgetvalue(res, 0, 3))), err)) ||
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

/* A dry run's stages, counted as the controller takes them over a fresh rollout id and the
 * devices it counts (active, not marked stale): never none (it pins one) and, below 100 percent,
 * never all of two or more (it holds one back). */
static const db_stmt st_plan = {
	"rollouts_plan",
	"WITH p AS (SELECT id FROM deployments WHERE name = $1), r AS (SELECT gen_random_uuid() AS id),"
	" devs AS (SELECT gn_cohort(r.id, dd.device_id) * 100 AS pos FROM device_desired dd"
	"   JOIN devices dv ON dv.id = dd.device_id, p, r"
	"   WHERE dd.deployment_id = p.id AND dv.status = 'active' AND dd.stale_at IS NULL)"
	" SELECT (SELECT count(*) FROM p), (SELECT count(*) FROM devs),"
	"  (SELECT coalesce(jsonb_agg(jsonb_build_object('percent', s.pct::int, 'devices',"
	"    GREATEST(LEAST((SELECT count(*) FROM devs WHERE pos < s.pct::int),"
	"      CASE WHEN s.pct::int < 100 AND (SELECT count(*) FROM devs) >= 2 THEN (SELECT count(*) FROM devs) - 1 END),"
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
