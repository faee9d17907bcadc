-- Signed device tokens (server/device_tokens.c): every replica checks a device's bearer token in
-- memory with a key they share through this table, instead of looking the token up in
-- device_sessions. A token carries its device's token generation; raising the generation (token
-- rotation, decommissioning) refuses every token minted before, on every replica at once through
-- the gn_device_tokens channel.
CREATE TABLE server_secrets (
    name       text PRIMARY KEY,
    secret     text NOT NULL, -- hex
    created_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE devices ADD COLUMN token_generation bigint NOT NULL DEFAULT 0;

-- Decommissioning a device also ends its tokens, whichever statement does it.
CREATE FUNCTION gn_device_tokens_bump() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF OLD.status = 'active' AND NEW.status <> 'active' THEN
        NEW.token_generation := greatest(NEW.token_generation, OLD.token_generation + 1);
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER devices_tokens_bump BEFORE UPDATE OF status ON devices
    FOR EACH ROW EXECUTE FUNCTION gn_device_tokens_bump();

-- The payload is "DEVICE_ID GENERATION STATUS".
CREATE FUNCTION gn_device_tokens_notify() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM pg_notify('gn_device_tokens', NEW.id::text || ' ' || NEW.token_generation || ' ' || NEW.status);
    RETURN NULL;
END $$;

CREATE TRIGGER devices_tokens_notify AFTER UPDATE ON devices
    FOR EACH ROW
    WHEN (OLD.token_generation IS DISTINCT FROM NEW.token_generation OR OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION gn_device_tokens_notify();
