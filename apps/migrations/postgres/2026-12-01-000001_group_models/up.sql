-- The model versions of each consumer group, one of them current: every instance of the group
-- scores with the current one. A version is a packed artifact (anomaly_model::ModelPackage) with
-- the SHA-256 it is checked against when loaded.
CREATE TABLE model_versions (
    model_group TEXT NOT NULL,
    version TEXT NOT NULL,
    artifact BYTEA NOT NULL,
    sha256 TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (model_group, version)
);

-- Switched in the same transaction that inserts the version it names.
CREATE TABLE model_current (
    model_group TEXT PRIMARY KEY,
    version TEXT NOT NULL
);
