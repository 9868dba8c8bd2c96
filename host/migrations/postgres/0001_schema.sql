-- The whole schema of SQLite migrations 0001–0006 in one step (see
-- migrations/sqlite for what each table is for). Times are unix
-- milliseconds. Names and keys compare byte-wise (COLLATE "C"), as on
-- SQLite, so listings page in the same order on both backends.
CREATE TABLE documents (
    tenant     TEXT COLLATE "C" NOT NULL,
    collection TEXT COLLATE "C" NOT NULL,
    key        TEXT COLLATE "C" NOT NULL,
    value      TEXT,
    version    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, collection, key)
);

CREATE TABLE outbox (
    id              TEXT COLLATE "C" PRIMARY KEY,
    tenant          TEXT   NOT NULL,
    topic           TEXT   NOT NULL,
    payload         BYTEA  NOT NULL,
    idempotency_key TEXT,
    available_at    BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    request_id      TEXT   NOT NULL
);
CREATE UNIQUE INDEX outbox_idempotency
    ON outbox (tenant, topic, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX outbox_available ON outbox (available_at);
CREATE INDEX outbox_created ON outbox (created_at);

CREATE TABLE invocations (
    request_id     TEXT   PRIMARY KEY,
    tenant         TEXT   NOT NULL,
    function       TEXT   NOT NULL,
    route          TEXT   NOT NULL,
    status         BIGINT NOT NULL,
    outcome        TEXT   NOT NULL,
    attempts       BIGINT NOT NULL,
    duration_us    BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    exceeded_limit TEXT
);
CREATE INDEX invocations_by_function ON invocations (tenant, function, created_at);

CREATE TABLE deliveries (
    id           TEXT COLLATE "C" PRIMARY KEY,
    message_id   TEXT   NOT NULL,
    tenant       TEXT   NOT NULL,
    function     TEXT   NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    available_at BIGINT NOT NULL,
    lease_until  BIGINT,
    lease_token  TEXT,
    last_error   TEXT,
    UNIQUE (message_id, function)
);
CREATE INDEX deliveries_due ON deliveries (tenant, function, available_at);
CREATE INDEX deliveries_available ON deliveries (available_at);
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE lease_until IS NOT NULL;

CREATE TABLE dead_letters (
    id         TEXT COLLATE "C" PRIMARY KEY,
    message_id TEXT   NOT NULL,
    tenant     TEXT   NOT NULL,
    function   TEXT   NOT NULL,
    attempts   BIGINT NOT NULL,
    last_error TEXT   NOT NULL,
    failed_at  BIGINT NOT NULL
);
CREATE INDEX dead_letters_by_function ON dead_letters (tenant, function, failed_at);

CREATE TABLE schedules (
    tenant    TEXT   NOT NULL,
    function  TEXT   NOT NULL,
    name      TEXT   NOT NULL,
    cron      TEXT   NOT NULL,
    timezone  TEXT   NOT NULL,
    next_tick BIGINT NOT NULL,
    last_tick BIGINT,
    PRIMARY KEY (tenant, function, name)
);

CREATE TABLE operator_keys (
    id         TEXT COLLATE "C" PRIMARY KEY,
    name       TEXT   NOT NULL,
    hash       TEXT   NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE tenants (
    name                TEXT COLLATE "C" PRIMARY KEY,
    created_at          BIGINT NOT NULL,
    created_by          TEXT   NOT NULL,
    requests_per_second DOUBLE PRECISION,
    burst               BIGINT,
    auth                TEXT,
    max_functions       BIGINT,
    max_stored_bytes    BIGINT
);

CREATE TABLE function_versions (
    tenant      TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    version     BIGINT NOT NULL,
    manifest    TEXT   NOT NULL,
    schemas     TEXT   NOT NULL,
    component   TEXT   NOT NULL,
    size        BIGINT NOT NULL,
    deployed_at BIGINT NOT NULL,
    deployed_by TEXT   NOT NULL,
    PRIMARY KEY (tenant, name, version)
);

CREATE TABLE functions (
    tenant       TEXT COLLATE "C" NOT NULL,
    name         TEXT COLLATE "C" NOT NULL,
    version      BIGINT NOT NULL,
    activated_at BIGINT NOT NULL,
    activated_by TEXT   NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE tenant_usage (
    tenant       TEXT   PRIMARY KEY,
    stored_bytes BIGINT NOT NULL
);

CREATE TABLE blobs (
    tenant       TEXT COLLATE "C" NOT NULL,
    name         TEXT COLLATE "C" NOT NULL,
    file         TEXT   NOT NULL,
    size         BIGINT NOT NULL,
    content_type TEXT   NOT NULL,
    etag         TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);
