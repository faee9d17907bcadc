-- Open authentication nonces per device are bounded (server/device_auth.c keeps the newest few):
-- record when each was issued, and find a device's quickly.
ALTER TABLE device_challenges ADD COLUMN issued_at timestamptz NOT NULL DEFAULT clock_timestamp();
CREATE INDEX device_challenges_device_idx ON device_challenges (device_id, issued_at);
