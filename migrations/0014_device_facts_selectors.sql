-- Selectors match what devices report as well as their labels: keys under facts. are derived from
-- the facts the agent sends at check-in (docs/OPERATIONS.md, "Runtime requirements and device
-- facts"), and on a clash the fact wins, so a label cannot pose as one (gangliond refuses to set
-- label keys that start with "facts." anyway).
--   facts.runtime        the runtime plugin's name (onnxruntime, opencv-dnn)
--   facts.arch           the machine (x86_64, aarch64)
--   facts.os             the kernel's name (Linux)
--   facts.target.KIND    "true" for each target the runtime offers (cpu, opencl, cuda, tensorrt)
CREATE FUNCTION gn_fact_labels(facts jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
               'facts.runtime', CASE WHEN jsonb_typeof(facts->'runtime'->'name') = 'string'
                                     THEN facts->'runtime'->>'name' END,
               'facts.arch', CASE WHEN jsonb_typeof(facts->'arch') = 'string' THEN facts->>'arch' END,
               'facts.os', CASE WHEN jsonb_typeof(facts->'os') = 'string'
                                THEN nullif(split_part(facts->>'os', ' ', 1), '') END))
        || coalesce((SELECT jsonb_object_agg('facts.target.' || (t->>'name'), 'true')
                       FROM jsonb_array_elements(CASE WHEN jsonb_typeof(facts->'runtime'->'targets') = 'array'
                                                      THEN facts->'runtime'->'targets' ELSE '[]' END) t
                      WHERE jsonb_typeof(t->'name') = 'string'), '{}')
$$;

-- What selectors read: labels and derived facts, kept current by PostgreSQL on every write.
ALTER TABLE devices ADD COLUMN selectable jsonb NOT NULL
    GENERATED ALWAYS AS (labels || gn_fact_labels(facts)) STORED;
CREATE INDEX devices_selectable_idx ON devices USING gin (selectable jsonb_path_ops);
