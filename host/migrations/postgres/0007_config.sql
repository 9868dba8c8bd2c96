-- As migrations/sqlite/0011_config.sql.
CREATE TABLE tenant_config (
    tenant TEXT NOT NULL,
    function TEXT NOT NULL,
    name TEXT NOT NULL,
    secret BIGINT NOT NULL,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (tenant, function, name)
);
