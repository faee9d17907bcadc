-- Model registry, aliases, and the TUF image repository (keys and signed metadata).

CREATE TABLE models (
    name       text PRIMARY KEY CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE model_versions (
    model        text NOT NULL REFERENCES models (name),
    version      text NOT NULL,
    -- semantic-version precedence, for "latest"
    major        bigint NOT NULL,
    minor        bigint NOT NULL,
    patch        bigint NOT NULL,
    prerelease   text,
    prerelease_key text,           -- sorts as SemVer precedence (COLLATE "C"); see model_meta.c
    format       text NOT NULL CHECK (format IN ('onnx', 'tflite', 'tensorrt-plan', 'other')),
    filename     text NOT NULL,
    sha256       text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    length       bigint NOT NULL CHECK (length >= 0),
    metadata     jsonb NOT NULL,   -- requirements, inputs, outputs, provenance
    -- The sample and the reference profile exactly as signed: targets' custom fields carry the
    -- SHA-256 of these bytes, served as they are by .../sample and .../reference-profile.
    sample_json  text,
    profile_json text,
    custom       jsonb NOT NULL,   -- the TUF target's custom fields (integers only)
    published_by text NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, version)
);
CREATE INDEX model_versions_sha256_idx ON model_versions (sha256);

CREATE TABLE model_aliases (
    model      text NOT NULL,
    alias      text NOT NULL CHECK (alias ~ '^[a-z0-9]([a-z0-9._-]{0,62})$'),
    version    text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, alias),
    FOREIGN KEY (model, version) REFERENCES model_versions (model, version)
);

-- Signing keys. Online roles (targets, snapshot, timestamp) keep their private key here so every
-- replica can sign; root private keys live only in files under DATA_DIR/keys (or offline).
-- Two repositories share these tables: 'image' (every released model) and 'director' (what each
-- device should run now), as in Uptane.
CREATE TABLE tuf_keys (
    keyid       text PRIMARY KEY,
    repo        text NOT NULL CHECK (repo IN ('image', 'director')),
    role        text NOT NULL CHECK (role IN ('root', 'targets', 'snapshot', 'timestamp')),
    public      text NOT NULL,
    private_pem text,
    active      boolean NOT NULL DEFAULT true,
    -- a new online key waiting for an offline-signed root that lists it (root keys not on the server)
    pending     boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Every signed metadata file ever published, byte for byte; (role, version) never repeats.
CREATE TABLE tuf_metadata (
    repo       text NOT NULL CHECK (repo IN ('image', 'director')),
    role       text NOT NULL CHECK (role IN ('root', 'targets', 'snapshot', 'timestamp')),
    version    integer NOT NULL CHECK (version > 0),
    body       text NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repo, role, version)
);
