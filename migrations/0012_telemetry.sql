-- Telemetry: the window summaries agents send (POST /v1/agent/telemetry), one row per device,
-- model version and window, with one row per feature of the version's reference profile; both
-- tables partitioned by day of the window's start (UTC), so retention drops whole partitions.
-- Drift alert rules, and the alerts the alerts job opens and resolves.

CREATE TABLE telemetry_windows (
    device_id    uuid NOT NULL,
    model        text NOT NULL,
    version      text NOT NULL,
    window_start timestamptz NOT NULL,
    seconds      integer NOT NULL CHECK (seconds > 0),
    requests     bigint NOT NULL CHECK (requests >= 0),
    errors       bigint NOT NULL CHECK (errors >= 0 AND errors <= requests),
    latency_us_buckets bigint[] NOT NULL,  -- lib/latency.h's buckets
    dropped      bigint NOT NULL DEFAULT 0 CHECK (dropped >= 0),  -- windows the device's spool lost before this one
    resources    jsonb,
    received_at  timestamptz NOT NULL DEFAULT now(),
    -- A window is sent again until the server acknowledges it: the same one counts once.
    PRIMARY KEY (device_id, model, version, window_start)
) PARTITION BY RANGE (window_start);
CREATE INDEX telemetry_windows_start_idx ON telemetry_windows USING brin (window_start);

-- part: 'input' and 'output' (idx: the feature's position in the profile's list), 'intensity'
-- (an image's pixel histogram, idx 0) and 'channel' (idx: the channel; no bins). Inserted only
-- with a window that was new, so no key of their own.
CREATE TABLE telemetry_features (
    device_id    uuid NOT NULL,
    model        text NOT NULL,
    version      text NOT NULL,
    window_start timestamptz NOT NULL,
    part         text NOT NULL CHECK (part IN ('input', 'output', 'intensity', 'channel')),
    idx          integer NOT NULL CHECK (idx >= 0),
    counts       bigint[] NOT NULL,
    underflow    bigint NOT NULL CHECK (underflow >= 0),
    overflow     bigint NOT NULL CHECK (overflow >= 0),
    nan          bigint NOT NULL CHECK (nan >= 0),
    n            bigint NOT NULL CHECK (n >= 0),
    mean         double precision,   -- NULL when n = 0; m2 is the sum of squared deviations
    m2           double precision,
    min          double precision,
    max          double precision
) PARTITION BY RANGE (window_start);
CREATE INDEX telemetry_features_start_idx ON telemetry_features USING brin (window_start);

-- Element-wise sum of bigint arrays (bin counts merge so): NULLs count as 0, the longer wins.
CREATE FUNCTION gn_array_add(a bigint[], b bigint[]) RETURNS bigint[]
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT CASE WHEN a IS NULL THEN b WHEN b IS NULL THEN a ELSE
          ARRAY(SELECT coalesce(x, 0) + coalesce(y, 0) FROM unnest(a, b) WITH ORDINALITY AS t(x, y, i) ORDER BY i)
          END $$;
CREATE AGGREGATE gn_array_sum(bigint[]) (SFUNC = gn_array_add, STYPE = bigint[]);

-- Creates the partitions of both tables for one UTC day unless they exist; true when it did.
-- Under an advisory lock (server/db.h, DB_LOCK_TELEMETRY_PARTITIONS), so concurrent ingests
-- and the partitions job do not race.
CREATE FUNCTION gn_telemetry_partition(day date) RETURNS boolean
    LANGUAGE plpgsql
    AS $$
DECLARE
    suffix text := to_char(day, 'YYYYMMDD');
    lo text := to_char(day, 'YYYY-MM-DD') || ' 00:00:00+00';
    hi text := to_char(day + 1, 'YYYY-MM-DD') || ' 00:00:00+00';
BEGIN
    IF to_regclass('telemetry_features_' || suffix) IS NOT NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(1734438520);
    IF to_regclass('telemetry_features_' || suffix) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF telemetry_windows FOR VALUES FROM (%L) TO (%L)',
                   'telemetry_windows_' || suffix, lo, hi);
    EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF telemetry_features FOR VALUES FROM (%L) TO (%L)',
                   'telemetry_features_' || suffix, lo, hi);
    RETURN true;
END $$;

-- Drops the partitions of days before `before`; returns how many days it dropped.
CREATE FUNCTION gn_telemetry_drop_before(before date) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    r record;
    dropped integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(1734438520);
    FOR r IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'telemetry_windows'::regclass
               AND c.relname ~ '^telemetry_windows_[0-9]{8}$'
               AND to_date(right(c.relname, 8), 'YYYYMMDD') < before
    LOOP
        EXECUTE format('DROP TABLE IF EXISTS %I', 'telemetry_features_' || right(r.relname, 8));
        EXECUTE format('DROP TABLE %I', r.relname);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END $$;

SELECT gn_telemetry_partition(d::date)
  FROM generate_series((now() AT TIME ZONE 'UTC')::date - 1, (now() AT TIME ZONE 'UTC')::date + 2, '1 day') d;

CREATE TABLE alert_rules (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    model       text NOT NULL REFERENCES models (name),
    version     text,                 -- NULL: every version of the model
    feature     text,                 -- NULL: every feature of the profile (inputs, outputs, image)
    metric      text NOT NULL CHECK (metric IN ('psi', 'js', 'linf')),
    threshold   double precision NOT NULL CHECK (threshold > 0),
    min_samples bigint NOT NULL CHECK (min_samples >= 1),
    windows     integer NOT NULL CHECK (windows BETWEEN 1 AND 100),
    group_by    text,                 -- a label key: the fleet is judged per value of it
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE alerts (
    id          bigserial PRIMARY KEY,
    rule_id     uuid REFERENCES alert_rules (id) ON DELETE SET NULL,
    rule        text NOT NULL,
    model       text NOT NULL,
    version     text NOT NULL,
    feature     text NOT NULL,        -- "input:x0", "output:class", "image:intensity"
    group_value text,                 -- the label's value with the rule's group_by; NULL otherwise
    metric      text NOT NULL,
    threshold   double precision NOT NULL,
    value       double precision NOT NULL,  -- in the latest window judged
    samples     bigint NOT NULL,
    opened_at   timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    last_window timestamptz NOT NULL
);
CREATE UNIQUE INDEX alerts_open_idx ON alerts (rule_id, version, feature, coalesce(group_value, ''))
    WHERE resolved_at IS NULL;
CREATE INDEX alerts_model_idx ON alerts (model, id);
