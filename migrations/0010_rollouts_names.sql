-- Rollouts at fleet scale, latency gates over the same period, and devices addressed by name.

-- 1. One notification per statement, not per row, when desired state changes. A controller pass
-- that moves 100,000 devices used to queue 100,000 notifications; now it queues one per 200
-- devices, their ids separated by spaces (server/checkin_cache.c reads one id or a list).
CREATE FUNCTION gn_notify_devices(ids uuid[]) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    i integer := 1;
    n integer := coalesce(cardinality(ids), 0);
BEGIN
    WHILE i <= n LOOP
        PERFORM pg_notify('gn_director', array_to_string(ids[i:i + 199], ' '));
        i := i + 200;
    END LOOP;
END $$;

CREATE FUNCTION gn_notify_desired_rows() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM gn_notify_devices(ARRAY(SELECT DISTINCT device_id FROM old_rows));
    ELSE
        PERFORM gn_notify_devices(ARRAY(SELECT DISTINCT device_id FROM new_rows));
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS device_desired_notify ON device_desired;
CREATE TRIGGER device_desired_notify_insert AFTER INSERT ON device_desired
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION gn_notify_desired_rows();
CREATE TRIGGER device_desired_notify_update AFTER UPDATE ON device_desired
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION gn_notify_desired_rows();
CREATE TRIGGER device_desired_notify_delete AFTER DELETE ON device_desired
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION gn_notify_desired_rows();

-- A device's place in a rollout, as 0006 defines it, with the same values (k / 2^32 is exact in
-- double precision either way) but divided as double precision instead of numeric: a quarter of
-- the time over a large fleet, where every controller pass computes it per device.
CREATE OR REPLACE FUNCTION gn_cohort(rollout uuid, device uuid) RETURNS double precision
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT ('x' || substr(md5(rollout::text || '/' || device::text), 1, 8))::bit(32)::bigint::double precision
                 / 4294967296.0::double precision $$;

-- The controller reads a deployment's devices by deployment.
CREATE INDEX device_desired_deployment_idx ON device_desired (deployment_id);

-- 2. Counters as devices report them, read defensively: a report is the device's word, and one
-- malformed value must not make a statement over the whole fleet fail. A count is a JSON
-- integer from 0 to 10^18; a latency histogram is an array of exactly n counts. NULL otherwise.
CREATE FUNCTION gn_jcount(v jsonb) RETURNS bigint
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT CASE WHEN jsonb_typeof(v) = 'number' AND v::text ~ '^[0-9]{1,18}$' THEN v::text::bigint END $$;

CREATE FUNCTION gn_jbuckets(v jsonb, n integer) RETURNS bigint[]
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT CASE WHEN jsonb_typeof(v) = 'array' AND jsonb_array_length(v) = n THEN
        (SELECT CASE WHEN count(c) = n THEN array_agg(c ORDER BY i) END
         FROM jsonb_array_elements(v) WITH ORDINALITY e(x, i), gn_jcount(e.x) c) END $$;

-- 3. What the devices still on the old version had counted when a rollout started running, so
-- that the canary (counting since it installed the new version) is compared with the control
-- over the same period: the control's counts minus these. Written only when the strategy has a
-- gate that compares the two.
CREATE TABLE rollout_baselines (
    rollout_id         uuid NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    device_id          uuid NOT NULL,
    requests           bigint NOT NULL,
    errors             bigint NOT NULL,
    latency_us_buckets bigint[],
    PRIMARY KEY (rollout_id, device_id)
);

-- 4. A device's name is unique among active devices (the CLI addresses devices by name). Where
-- active devices already share a name, the oldest keeps it and each later one becomes NAME~ID8
-- (the first 8 characters of its id), with an audit row, as 0009 does for API tokens.
WITH dup AS (
    SELECT id, name, row_number() OVER (PARTITION BY name ORDER BY created_at, id) AS n
    FROM devices WHERE status = 'active' AND name <> ''
), renamed AS (
    UPDATE devices d SET name = left(dup.name, 119) || '~' || left(d.id::text, 8)
    FROM dup WHERE d.id = dup.id AND dup.n > 1
    RETURNING d.id, dup.name AS old_name, d.name AS new_name
)
INSERT INTO audit_log (actor, action, object_type, object_id, detail)
SELECT 'migration', 'device.rename', 'device', id::text,
       jsonb_build_object('from', old_name, 'to', new_name,
                          'reason', 'another active device had this name; names are unique among active devices')
FROM renamed;

CREATE UNIQUE INDEX devices_active_name_idx ON devices (name) WHERE status = 'active' AND name <> '';
