-- Several models per device, one version of each: the desired state is keyed by (device, model),
-- a deployment covers one model, and a device matches at most one deployment per model. A device
-- that a label change (or its enrolment) makes match a second deployment of a model it already
-- gets from another stays on that one; the conflict is kept in device_conflicts (shown on the
-- device, audited as device.conflict) until it goes away.

ALTER TABLE device_desired DROP CONSTRAINT device_desired_pkey;
ALTER TABLE device_desired ADD PRIMARY KEY (device_id, model);
-- When the deployment's selector stopped matching the device (a label change, a new selector):
-- another deployment of the model may take the row over; the controller removes it after a grace.
ALTER TABLE device_desired ADD COLUMN stale_at timestamptz;

-- What a device's signed director targets name, as gn_desired_key writes it, so the re-sign rule
-- compares several models at once. NULL in rows signed before this migration: the one model of
-- the model, model_version and assigned_at columns stands for it (server/director.c).
ALTER TABLE director_targets ADD COLUMN desired_key text;

-- "MODEL=VERSION@ASSIGNED_AT" of each model the device should run, ordered by model, joined by
-- ","; '' for none. A change of any of them (a re-assignment too) changes the key.
CREATE FUNCTION gn_desired_key(device uuid) RETURNS text
    LANGUAGE sql STABLE
    AS $$ SELECT coalesce(string_agg(dd.model || '=' || dd.version || '@' || gn_ts(dd.assigned_at), ','
                                     ORDER BY dd.model COLLATE "C"), '')
          FROM device_desired dd WHERE dd.device_id = device $$;

-- A device that matches deployment_id's selector but runs that model from kept_id: the older
-- rule wins, and this says so until it no longer holds.
CREATE TABLE device_conflicts (
    device_id     uuid NOT NULL REFERENCES devices (id),
    model         text NOT NULL,
    deployment_id uuid NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    kept_id       uuid NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    since         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, deployment_id)
);
CREATE INDEX device_conflicts_deployment_idx ON device_conflicts (deployment_id);

CREATE OR REPLACE FUNCTION gn_device_json(d devices) RETURNS jsonb
    LANGUAGE sql STABLE
    AS $$ SELECT jsonb_build_object(
        'id', d.id, 'name', d.name, 'labels', d.labels, 'facts', d.facts, 'status', d.status,
        'created_at', gn_ts(d.created_at), 'last_seen_at', gn_ts(d.last_seen_at),
        'decommissioned_at', gn_ts(d.decommissioned_at),
        'desired', coalesce((SELECT jsonb_agg(jsonb_build_object('model', dd.model, 'version', dd.version,
                        'assigned_by', dd.assigned_by, 'assigned_at', gn_ts(dd.assigned_at),
                        'deployment', (SELECT name FROM deployments WHERE id = dd.deployment_id),
                        'override', dd.deployment_id IS NULL) ORDER BY dd.model COLLATE "C")
                    FROM device_desired dd WHERE dd.device_id = d.id), '[]'),
        'conflicts', coalesce((SELECT jsonb_agg(jsonb_build_object('model', c.model, 'deployment', p.name,
                        'kept', k.name, 'since', gn_ts(c.since)) ORDER BY c.model COLLATE "C", p.name)
                    FROM device_conflicts c JOIN deployments p ON p.id = c.deployment_id
                    JOIN deployments k ON k.id = c.kept_id WHERE c.device_id = d.id), '[]'),
        'reported', d.reported, 'reported_at', gn_ts(d.reported_at)) $$;
