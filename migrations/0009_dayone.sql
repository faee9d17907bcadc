-- API token names are unique among live tokens (not revoked, not expired), so an audit entry's
-- actor names one token. server/tokens.c enforces it for new tokens (expiry depends on the time,
-- which an index cannot); here live duplicates that a database already holds are renamed, not
-- refused: the oldest keeps its name, each later one becomes NAME~ID8 (the first 8 characters of
-- its id), and an audit row says so. Revoked and expired tokens keep their names.
WITH live AS (
    SELECT id, name, row_number() OVER (PARTITION BY name ORDER BY created_at, id) AS n
    FROM api_tokens
    WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
), renamed AS (
    UPDATE api_tokens t SET name = left(l.name, 55) || '~' || left(t.id::text, 8)
    FROM live l WHERE t.id = l.id AND l.n > 1
    RETURNING t.id, l.name AS old_name, t.name AS new_name
)
INSERT INTO audit_log (actor, action, object_type, object_id, detail)
SELECT 'migration', 'token.rename', 'token', id::text,
       jsonb_build_object('from', old_name, 'to', new_name,
                          'reason', 'another live token had this name; names are unique among live tokens')
FROM renamed;

CREATE INDEX api_tokens_live_name_idx ON api_tokens (name) WHERE revoked_at IS NULL;

-- A yanked version stays published (devices that run it keep it, and its signed target stays in
-- the image repository), but no deployment, alias or device assignment may newly target it.
ALTER TABLE model_versions ADD COLUMN yanked_at timestamptz;
ALTER TABLE model_versions ADD COLUMN yanked_by text;
ALTER TABLE model_versions ADD COLUMN yank_reason text CHECK (length(yank_reason) <= 500);
