-- Foundation schema: API tokens, enrollment tokens, devices, device authentication, audit log.

-- RFC 3339 UTC text for a timestamp, the one format the API speaks.
CREATE FUNCTION gn_ts(t timestamptz) RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') $$;

CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    hash         text NOT NULL UNIQUE,            -- SHA-256 hex of the token; the token is never stored
    scopes       text[] NOT NULL CHECK (scopes <@ ARRAY['admin','operator','ci','read'] AND cardinality(scopes) > 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   uuid,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);

CREATE TABLE enroll_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL DEFAULT '',
    hash        text NOT NULL UNIQUE,
    labels      jsonb NOT NULL DEFAULT '{}',
    max_uses    integer NOT NULL CHECK (max_uses > 0),
    uses        integer NOT NULL DEFAULT 0 CHECK (uses >= 0 AND uses <= max_uses),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  uuid
);

CREATE TABLE devices (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name              text NOT NULL DEFAULT '',
    public_key        text NOT NULL UNIQUE,        -- raw Ed25519 key, hex
    labels            jsonb NOT NULL DEFAULT '{}',
    facts             jsonb NOT NULL DEFAULT '{}',
    status            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'decommissioned')),
    enroll_token_id   uuid REFERENCES enroll_tokens (id),
    created_at        timestamptz NOT NULL DEFAULT now(),
    last_seen_at      timestamptz,
    decommissioned_at timestamptz
);
CREATE INDEX devices_labels_idx ON devices USING gin (labels jsonb_path_ops);

-- The API's view of a device.
CREATE FUNCTION gn_device_json(d devices) RETURNS jsonb
    LANGUAGE sql STABLE
    AS $$ SELECT jsonb_build_object(
        'id', d.id, 'name', d.name, 'labels', d.labels, 'facts', d.facts, 'status', d.status,
        'created_at', gn_ts(d.created_at), 'last_seen_at', gn_ts(d.last_seen_at),
        'decommissioned_at', gn_ts(d.decommissioned_at)) $$;

CREATE TABLE device_challenges (
    nonce      text PRIMARY KEY,
    device_id  uuid NOT NULL REFERENCES devices (id),
    expires_at timestamptz NOT NULL
);

CREATE TABLE device_sessions (
    hash       text PRIMARY KEY,
    device_id  uuid NOT NULL REFERENCES devices (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX device_sessions_device_idx ON device_sessions (device_id);

CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    token_id    uuid,
    action      text NOT NULL,
    object_type text NOT NULL,
    object_id   text,
    request_id  text,
    detail      jsonb NOT NULL DEFAULT '{}'
);

-- The audit log is append-only for everyone who goes through SQL, the application included.
CREATE FUNCTION gn_audit_append_only() RETURNS trigger
    LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP; END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION gn_audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION gn_audit_append_only();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;
