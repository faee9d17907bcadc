-- Delegated targets roles of the image repository (TUF delegations): their metadata, signed by keys
-- the server does not hold (CI's), is stored beside the top-level roles under the role's own name.
-- A delegated role's name is what lib/tufdeleg.c accepts: 1 to 64 characters of [A-Za-z0-9._-], not
-- starting with '.'.
ALTER TABLE tuf_metadata DROP CONSTRAINT tuf_metadata_role_check;
ALTER TABLE tuf_metadata ADD CONSTRAINT tuf_metadata_role_check
    CHECK (role ~ '^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$');
