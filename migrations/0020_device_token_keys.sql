-- Device token keys (server/device_tokens.c): the HMAC keys that sign device tokens, by id, so
-- that the key can be rotated without taking the fleet down. The newest key that is not retired
-- signs; a superseded key still verifies the tokens it signed until verify_until (the longest a
-- token signed before the rotation lives), unless an operator retires it sooner. A retired key's
-- secret is erased. Tokens carry their key's id ("gnd_v3.KEY.…"); the older "gnd_v2.…" tokens
-- carry none and were signed by key 1, the key of server_secrets before this migration.
CREATE TABLE device_token_keys (
    id            integer PRIMARY KEY CHECK (id > 0),
    secret        text, -- hex; NULL once retired
    created_at    timestamptz NOT NULL DEFAULT now(),
    superseded_at timestamptz,
    verify_until  timestamptz, -- NULL while it signs
    retired_at    timestamptz,
    CHECK ((secret IS NULL) = (retired_at IS NOT NULL)),
    CHECK ((superseded_at IS NULL) = (verify_until IS NULL))
);

INSERT INTO device_token_keys (id, secret, created_at)
    SELECT 1, secret, created_at FROM server_secrets WHERE name = 'device_token_hmac';

-- Every replica hears of every change at once. The payload is "ID STATE VERIFY_UNTIL": STATE one
-- of signing, verifying, retired; VERIFY_UNTIL in Unix seconds, 0 when none. Never the secret.
CREATE FUNCTION gn_device_token_keys_notify() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM pg_notify('gn_device_token_keys', NEW.id::text || ' ' ||
        CASE WHEN NEW.retired_at IS NOT NULL THEN 'retired'
             WHEN NEW.verify_until IS NOT NULL THEN 'verifying'
             ELSE 'signing' END || ' ' ||
        coalesce(floor(extract(epoch FROM NEW.verify_until))::bigint, 0));
    RETURN NULL;
END $$;

CREATE TRIGGER device_token_keys_notify AFTER INSERT OR UPDATE ON device_token_keys
    FOR EACH ROW EXECUTE FUNCTION gn_device_token_keys_notify();
