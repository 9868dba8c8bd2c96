-- Tenants' configuration for their functions (`sluice:function/config`).
-- `function` is '' for a value every function of the tenant reads. A
-- secret's `value` is sealed with the host's key (`v1.<key id>.<base64>`);
-- any other value is kept as it was set.
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
