-- The director: what each device should run, per-device signed targets, and what devices report.

CREATE TABLE device_desired (
    device_id   uuid PRIMARY KEY REFERENCES devices (id),
    model       text NOT NULL,
    version     text NOT NULL,
    assigned_by text NOT NULL,
    assigned_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (model, version) REFERENCES model_versions (model, version)
);

-- Each device's director targets metadata, every version ever signed (versions only go up).
CREATE TABLE director_targets (
    device_id  uuid NOT NULL REFERENCES devices (id),
    version    integer NOT NULL CHECK (version > 0),
    body       text NOT NULL,
    model      text,
    model_version text,
    assigned_at timestamptz,          -- of the desired state it names: a re-assignment re-signs
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, version)
);

ALTER TABLE devices ADD COLUMN reported jsonb NOT NULL DEFAULT '{}';
ALTER TABLE devices ADD COLUMN reported_at timestamptz;

-- Update attempts as agents report them (downloading, verifying, loading, active, failed, ...).
CREATE TABLE device_events (
    id        bigserial PRIMARY KEY,
    device_id uuid NOT NULL REFERENCES devices (id),
    at        timestamptz NOT NULL DEFAULT now(),
    operation jsonb NOT NULL
);
CREATE INDEX device_events_device_idx ON device_events (device_id, id);

CREATE OR REPLACE FUNCTION gn_device_json(d devices) RETURNS jsonb
    LANGUAGE sql STABLE
    AS $$ SELECT jsonb_build_object(
        'id', d.id, 'name', d.name, 'labels', d.labels, 'facts', d.facts, 'status', d.status,
        'created_at', gn_ts(d.created_at), 'last_seen_at', gn_ts(d.last_seen_at),
        'decommissioned_at', gn_ts(d.decommissioned_at),
        'desired', (SELECT jsonb_build_object('model', dd.model, 'version', dd.version,
                        'assigned_by', dd.assigned_by, 'assigned_at', gn_ts(dd.assigned_at))
                    FROM device_desired dd WHERE dd.device_id = d.id),
        'reported', d.reported, 'reported_at', gn_ts(d.reported_at)) $$;
