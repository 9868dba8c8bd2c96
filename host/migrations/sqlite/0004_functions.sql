-- Functions deployed through the admin API. Every upload is a version; the
-- component's bytes live in the data directory (components/<sha256>.wasm),
-- its manifest and schemas here.
CREATE TABLE function_versions (
    tenant      TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    version     INTEGER NOT NULL, -- 1, 2, … per function
    manifest    TEXT    NOT NULL, -- sluice.toml as uploaded
    schemas     TEXT    NOT NULL, -- JSON object: schema path -> schema document
    component   TEXT    NOT NULL, -- hex SHA-256 of the component bytes
    size        INTEGER NOT NULL, -- component bytes
    deployed_at INTEGER NOT NULL, -- unix ms
    deployed_by TEXT    NOT NULL, -- operator key id
    PRIMARY KEY (tenant, name, version)
);

-- Which version of each deployed function is live.
CREATE TABLE functions (
    tenant       TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    activated_at INTEGER NOT NULL, -- unix ms
    activated_by TEXT    NOT NULL, -- operator key id
    PRIMARY KEY (tenant, name)
);

-- Per-tenant quotas; NULL: none.
ALTER TABLE tenants ADD COLUMN max_functions INTEGER;
ALTER TABLE tenants ADD COLUMN max_stored_bytes INTEGER;

-- Bytes of live documents (key + value) per tenant, kept by the committer
-- in the transaction that writes them: what max_stored_bytes is checked against.
CREATE TABLE tenant_usage (
    tenant       TEXT    PRIMARY KEY,
    stored_bytes INTEGER NOT NULL
);
INSERT INTO tenant_usage (tenant, stored_bytes)
    SELECT tenant, SUM(length(CAST(key AS BLOB)) + length(CAST(value AS BLOB)))
    FROM documents WHERE value IS NOT NULL GROUP BY tenant;
