/* The fleet's status, computed by PostgreSQL in one statement. */
#include "status.h"

#include <stdio.h>
#include <stdlib.h>

/* Active devices; what each runs (its report's models), should run (its desired state), and the
 * models whose last update failed (each model's last operation in the report, or the device's
 * last one for a model without its own); the stale ones. Then per model: devices,
 * versions running and desired, devices updating (told a version they do not run yet and not
 * failing), failing (grouped by version and reason) and stale; and the rollouts in progress. */
static const db_stmt st_status = {
	"status_get",
	"WITH act AS MATERIALIZED (SELECT id, last_seen_at, reported FROM devices WHERE status = 'active'),"
	" runs AS MATERIALIZED (SELECT DISTINCT a.id AS device_id, x->>'name' AS model, x->>'version' AS version"
	"  FROM act a, jsonb_array_elements(CASE WHEN jsonb_typeof(a.reported->'models') = 'array'"
	"   THEN a.reported->'models' ELSE '[]' END) x"
	"  WHERE jsonb_typeof(x->'name') = 'string' AND jsonb_typeof(x->'version') = 'string'"
	"   AND coalesce(x->>'state', 'active') = 'active'),"
	" wants AS MATERIALIZED (SELECT dd.device_id, dd.model, dd.version FROM device_desired dd"
	"  JOIN act a ON a.id = dd.device_id),"
	" ops AS (SELECT a.id AS device_id, x->>'name' AS model, x->'last_operation' AS op"
	"  FROM act a, jsonb_array_elements(CASE WHEN jsonb_typeof(a.reported->'models') = 'array'"
	"   THEN a.reported->'models' ELSE '[]' END) x"
	"  WHERE jsonb_typeof(x->'name') = 'string' AND jsonb_typeof(x->'last_operation') = 'object'"
	"  UNION ALL SELECT a.id, a.reported->'last_operation'->>'model', a.reported->'last_operation' FROM act a"
	"  WHERE jsonb_typeof(a.reported->'last_operation'->'model') = 'string' AND NOT EXISTS (SELECT 1"
	"   FROM jsonb_array_elements(CASE WHEN jsonb_typeof(a.reported->'models') = 'array'"
	"    THEN a.reported->'models' ELSE '[]' END) y"
	"   WHERE y->>'name' = a.reported->'last_operation'->>'model' AND jsonb_typeof(y->'last_operation') = 'object')),"
	" fails AS MATERIALIZED (SELECT device_id, model, coalesce(op->>'version', '') AS version,"
	"   left(coalesce(op->>'detail', ''), 200) AS reason FROM ops WHERE op->>'state' = 'failed'),"
	" stale AS MATERIALIZED (SELECT id AS device_id, CASE WHEN last_seen_at IS NULL THEN 'never checked in'"
	"   ELSE 'not seen for more than ' || $2 END AS reason"
	"  FROM act WHERE last_seen_at IS NULL OR last_seen_at < now() - make_interval(secs => $1::bigint)),"
	" mdev AS MATERIALIZED (SELECT model, device_id FROM runs UNION SELECT model, device_id FROM wants"
	"  UNION SELECT model, device_id FROM fails),"
	" ver AS MATERIALIZED (SELECT model, version, count(*) FILTER (WHERE r) AS running,"
	"   count(*) FILTER (WHERE NOT r) AS desired"
	"  FROM (SELECT model, version, true AS r FROM runs UNION ALL SELECT model, version, false FROM wants) u"
	"  GROUP BY model, version),"
	" upd AS MATERIALIZED (SELECT w.model, count(*) AS n FROM wants w"
	"  LEFT JOIN runs r ON r.device_id = w.device_id AND r.model = w.model AND r.version = w.version"
	"  LEFT JOIN fails f ON f.device_id = w.device_id AND f.model = w.model"
	"  WHERE r.device_id IS NULL AND f.device_id IS NULL GROUP BY w.model),"
	" stl AS MATERIALIZED (SELECT x.model, count(*) AS n FROM mdev x JOIN stale s USING (device_id)"
	"  GROUP BY x.model)"
	" SELECT jsonb_build_object("
	"  'devices', (SELECT jsonb_build_object('active', count(*) FILTER (WHERE status = 'active'),"
	"    'decommissioned', count(*) FILTER (WHERE status = 'decommissioned'),"
	"    'stale', (SELECT count(*) FROM stale), 'failing', (SELECT count(DISTINCT device_id) FROM fails))"
	"   FROM devices),"
	"  'stale_after', $1::bigint,"
	"  'stale', (SELECT coalesce(jsonb_agg(jsonb_build_object('reason', reason, 'devices', n) ORDER BY reason), '[]')"
	"   FROM (SELECT reason, count(*) AS n FROM stale GROUP BY reason) s),"
	"  'models', (SELECT coalesce(jsonb_agg(jsonb_build_object('model', m.model, 'devices', m.n,"
	"    'versions', (SELECT jsonb_agg(jsonb_build_object('version', v.version, 'running', v.running,"
	"      'desired', v.desired) ORDER BY v.version) FROM ver v WHERE v.model = m.model),"
	"    'updating', coalesce((SELECT n FROM upd WHERE upd.model = m.model), 0),"
	"    'failing', (SELECT count(*) FROM fails f WHERE f.model = m.model),"
	"    'stale', coalesce((SELECT n FROM stl WHERE stl.model = m.model), 0),"
	"    'failures', (SELECT coalesce(jsonb_agg(jsonb_build_object('version', g.version, 'reason', g.reason,"
	"      'devices', g.n) ORDER BY g.n DESC, g.version, g.reason), '[]')"
	"     FROM (SELECT version, reason, count(*) AS n FROM fails f WHERE f.model = m.model"
	"      GROUP BY version, reason) g)) ORDER BY m.model), '[]')"
	"   FROM (SELECT model, count(*) AS n FROM mdev GROUP BY model) m),"
	"  'rollouts', (SELECT coalesce(jsonb_agg(jsonb_build_object('id', r.id, 'deployment', p.name, 'model', p.model,"
	"    'from_version', r.from_version, 'to_version', r.to_version, 'state', r.state, 'stage', r.stage,"
	"    'stages', jsonb_array_length(r.strategy->'stages'),"
	"    'percent', (r.strategy->'stages'->r.stage->>'percent')::int, 'reason', r.reason,"
	"    'devices', (SELECT count(*) FROM device_desired dd WHERE dd.deployment_id = p.id),"
	"    'told_new', (SELECT count(*) FROM device_desired dd WHERE dd.deployment_id = p.id"
	"      AND dd.version = r.to_version),"
	"    'created_at', gn_ts(r.created_at)) ORDER BY r.created_at, r.id), '[]')"
	"   FROM rollouts r JOIN deployments p ON p.id = r.deployment_id"
	"   WHERE r.state IN ('waiting_approval', 'running', 'paused')))::text",
	2};

int64_t status_stale_after(int64_t poll_interval_s)
{
	return poll_interval_s * 3 < 60 ? 60 : poll_interval_s * 3;
}

int status_get(char **out, db_conn *c, int64_t stale_after_s, gn_err *err)
{
	PGresult *res = NULL;
	char secs[24], human[32];
	long long s = (long long)stale_after_s;
	snprintf(secs, sizeof(secs), "%lld", s);
	if (s % 3600 == 0)
		snprintf(human, sizeof(human), "%lldh", s / 3600);
	else if (s % 60 == 0)
		snprintf(human, sizeof(human), "%lldm", s / 60);
	else
		snprintf(human, sizeof(human), "%llds", s);
	const char *p[] = {secs, human};
	*out = NULL;
	int error = db_exec(&res, c, &st_status, p, err);
	if (!error)
		*out = gn_strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return error;
}
