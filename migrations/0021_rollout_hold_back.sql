-- A rollout's control group. A stage below 100 percent can, by the devices' places, take every
-- device of a small deployment (four devices and a 50 percent stage: one rollout in sixteen);
-- then none is left on the old version to judge the canary against. The controller holds one
-- back instead (server/rollouts.c): a held-back device stays out of every stage below 100
-- percent whatever its place, and takes the new version with everyone in the last stage. A
-- pinned device is never held back.
ALTER TABLE rollouts ADD COLUMN held_back uuid[] NOT NULL DEFAULT '{}';

-- Whether a device is in a rollout's stage of `percent` percent: pinned into it, or its place is
-- below the stage's share and it is not held back from a stage below 100 percent. Every statement
-- that decides who is in a stage asks this (a plain expression: PostgreSQL inlines it).
CREATE FUNCTION gn_in_stage(rollout uuid, device uuid, percent integer, pinned uuid[], held_back uuid[])
    RETURNS boolean
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT device = ANY(pinned)
                 OR (gn_cohort(rollout, device) * 100 < percent AND (percent >= 100 OR NOT (device = ANY(held_back)))) $$;
