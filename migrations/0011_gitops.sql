-- GitOps: the fleet's desired state from a git repository (server/gitops.c). One row of sync state,
-- the objects the last applied commit manages, and a guard that keeps the API from changing them.

CREATE TABLE gitops_state (
    id              boolean PRIMARY KEY DEFAULT true CHECK (id),
    repository      text,                 -- where the applied commit came from
    branch          text,
    path            text,
    status          text NOT NULL DEFAULT 'never' CHECK (status IN ('never', 'synced', 'refused', 'failed')),
    head_commit     text,                 -- the branch head seen last
    head_signer     text,
    checked_at      timestamptz,          -- when the head was last fetched (or the fetch failed)
    applied_commit  text,                 -- the commit whose state the server holds
    applied_signer  text,                 -- "principals (SHA256:fingerprint)" when signatures are required
    applied_at      timestamptz,
    errors          jsonb NOT NULL DEFAULT '[]',  -- [{file, line, message}] of the last refusal or failure
    plan            jsonb NOT NULL DEFAULT '[]',  -- what the head would change, while it is not applied
    suspended       boolean NOT NULL DEFAULT false,
    suspended_by    text,
    suspended_at    timestamptz,
    -- A sync must re-plan even when the head is the applied commit (after resume: undo drift).
    replan          boolean NOT NULL DEFAULT false,
    woken_at        timestamptz           -- the last webhook: a sync that began before it runs again
);
INSERT INTO gitops_state DEFAULT VALUES;

-- Objects that git manages: kind and key ("cams", or "det/production" for a ModelAlias), where
-- they are declared, the commit applied last, and the spec it applied (to show drift).
CREATE TABLE gitops_objects (
    kind       text NOT NULL CHECK (kind IN ('Deployment', 'ModelAlias')),
    key        text NOT NULL,
    file       text NOT NULL,
    line       integer NOT NULL,
    commit     text NOT NULL,
    spec       jsonb NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, key)
);

-- Objects that git manages are read-only for everyone but the sync (which sets ganglion.gitops in
-- its transaction), unless sync is suspended: then changes are allowed and show as drift. The
-- error's SQLSTATE GN409 is a conflict (409) for gangliond.
CREATE FUNCTION gn_gitops_guard() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    k text;
    o gitops_objects;
BEGIN
    IF current_setting('ganglion.gitops', true) = 'apply' OR (SELECT suspended FROM gitops_state) THEN
        RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    IF TG_ARGV[0] = 'Deployment' THEN
        k := OLD.name;
    ELSE
        k := OLD.model || '/' || OLD.alias;
    END IF;
    SELECT * INTO o FROM gitops_objects WHERE kind = TG_ARGV[0] AND key = k;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'GN409', MESSAGE = format(
            '%s %s is managed by GitOps (%s, line %s, commit %s): change it in git, or suspend GitOps sync',
            CASE TG_ARGV[0] WHEN 'Deployment' THEN 'deployment' ELSE 'alias' END, k, o.file, o.line, left(o.commit, 12));
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END $$;

CREATE TRIGGER deployments_gitops_guard BEFORE UPDATE OF name, model, selector, follows, strategy OR DELETE
    ON deployments FOR EACH ROW EXECUTE FUNCTION gn_gitops_guard('Deployment');
CREATE TRIGGER model_aliases_gitops_guard BEFORE UPDATE OR DELETE
    ON model_aliases FOR EACH ROW EXECUTE FUNCTION gn_gitops_guard('ModelAlias');
