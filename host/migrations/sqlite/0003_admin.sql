-- Operator API keys for the admin listener. Only a SHA-256 of the key is
-- kept: the key is shown once, at creation.
CREATE TABLE operator_keys (
    id         TEXT    PRIMARY KEY, -- the key's public part, shown in listings
    name       TEXT    NOT NULL,
    hash       TEXT    NOT NULL UNIQUE, -- hex SHA-256 of the whole key
    created_at INTEGER NOT NULL,  -- unix ms
    revoked_at INTEGER            -- unix ms; a revoked key is refused
);

-- Tenants: the namespaces functions, documents and messages live in.
CREATE TABLE tenants (
    name       TEXT    PRIMARY KEY,
    created_at INTEGER NOT NULL, -- unix ms
    created_by TEXT    NOT NULL, -- operator key id, or "manifest" for tenants of loaded manifests
    requests_per_second REAL,    -- rate limit at the receive stage; NULL: none
    burst      INTEGER,          -- requests admitted at once; NULL: one second's worth
    auth       TEXT              -- the tenant's own token settings (JSON); NULL: the host's
);
