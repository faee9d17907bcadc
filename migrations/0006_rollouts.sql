-- Deployments (standing rules: a model, a device selector, the version or alias to follow, a
-- strategy) and rollouts (moving one deployment from a version to another in stages, with gates).
-- The controller (server/rollouts.c, a job) materialises what each device should run into
-- device_desired; a row with deployment_id NULL is a per-device override and is never touched.

CREATE TABLE deployments (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    model       text NOT NULL REFERENCES models (name),
    selector    text NOT NULL CHECK (selector <> ''),
    follows     text NOT NULL,          -- a version of model, or one of its aliases
    version     text,                   -- the version rolled out to every matching device
    strategy    jsonb NOT NULL,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (model, version) REFERENCES model_versions (model, version)
);

CREATE TABLE rollouts (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    deployment_id    uuid NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    from_version     text NOT NULL,
    to_version       text NOT NULL,
    state            text NOT NULL CHECK (state IN ('waiting_approval', 'running', 'paused', 'completed',
                                                    'rolled_back', 'aborted')),
    stage            integer NOT NULL DEFAULT 0,  -- index into strategy->'stages'
    stage_started_at timestamptz,
    strategy         jsonb NOT NULL,              -- the deployment's, as it was when the rollout began
    created_by       text NOT NULL,               -- the actor, as the audit log names it
    creator_token    uuid,                        -- the API token that started it (approval rule)
    approved_by      text,
    reason           text,                        -- why it is in its state
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    -- Devices taken into the canary because its stage would otherwise hold none (a small fleet):
    -- in the current stage and every later one, whatever their place.
    pinned           uuid[] NOT NULL DEFAULT '{}'
);
-- One rollout at a time per deployment.
CREATE UNIQUE INDEX rollouts_one_active ON rollouts (deployment_id)
    WHERE state IN ('waiting_approval', 'running', 'paused');
CREATE INDEX rollouts_deployment_idx ON rollouts (deployment_id, created_at);

CREATE TABLE rollout_events (
    id         bigserial PRIMARY KEY,
    rollout_id uuid NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    at         timestamptz NOT NULL DEFAULT now(),
    kind       text NOT NULL,
    detail     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX rollout_events_rollout_idx ON rollout_events (rollout_id, id);

ALTER TABLE device_desired ADD COLUMN deployment_id uuid REFERENCES deployments (id) ON DELETE CASCADE;

-- A device's place in a rollout: a number in [0, 1) from the rollout id and the device id, so it
-- never changes when the fleet grows; a stage of P percent takes the devices below P / 100.
CREATE FUNCTION gn_cohort(rollout uuid, device uuid) RETURNS double precision
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT ('x' || substr(md5(rollout::text || '/' || device::text), 1, 8))::bit(32)::bigint
                 / 4294967296.0 $$;

CREATE OR REPLACE FUNCTION gn_device_json(d devices) RETURNS jsonb
    LANGUAGE sql STABLE
    AS $$ SELECT jsonb_build_object(
        'id', d.id, 'name', d.name, 'labels', d.labels, 'facts', d.facts, 'status', d.status,
        'created_at', gn_ts(d.created_at), 'last_seen_at', gn_ts(d.last_seen_at),
        'decommissioned_at', gn_ts(d.decommissioned_at),
        'desired', (SELECT jsonb_build_object('model', dd.model, 'version', dd.version,
                        'assigned_by', dd.assigned_by, 'assigned_at', gn_ts(dd.assigned_at),
                        'deployment', (SELECT name FROM deployments WHERE id = dd.deployment_id),
                        'override', dd.deployment_id IS NULL)
                    FROM device_desired dd WHERE dd.device_id = d.id),
        'reported', d.reported, 'reported_at', gn_ts(d.reported_at)) $$;
