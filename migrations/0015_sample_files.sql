-- The tensor files of a release's sample (.npy, stored content-addressed like model files): the
-- sample JSON names each by SHA-256 and length, and its own SHA-256 is in the signed target. A row
-- keeps the file from the artifact sweep and lets the devices that may read the version fetch it.
CREATE TABLE model_sample_files (
    model   text NOT NULL,
    version text NOT NULL,
    sha256  text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    length  bigint NOT NULL CHECK (length > 0),
    PRIMARY KEY (model, version, sha256),
    FOREIGN KEY (model, version) REFERENCES model_versions (model, version)
);
CREATE INDEX model_sample_files_sha256_idx ON model_sample_files (sha256);
