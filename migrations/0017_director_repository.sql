-- The director as a full TUF repository per device: each time a device's targets are signed, a
-- snapshot over them and a timestamp over that snapshot are signed too, at the same version, by
-- the director's online snapshot and timestamp keys. Rows signed before (or while those keys wait
-- for an offline-signed root) have neither; such a row counts as stale once the keys are active.
ALTER TABLE director_targets ADD COLUMN snapshot_body text, ADD COLUMN timestamp_body text;
