-- Documents: one row per (tenant, collection, key). A deleted document keeps
-- its row as a tombstone (value NULL) so its version keeps counting and a
-- reader that saw it before the delete still conflicts at commit.
CREATE TABLE documents (
    tenant     TEXT    NOT NULL,
    collection TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    value      TEXT,
    version    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL, -- unix milliseconds
    PRIMARY KEY (tenant, collection, key)
) WITHOUT ROWID;

-- Messages staged by committed invocations, waiting for delivery.
CREATE TABLE outbox (
    id              TEXT    PRIMARY KEY, -- UUIDv7: time-ordered
    tenant          TEXT    NOT NULL,
    topic           TEXT    NOT NULL,
    payload         BLOB    NOT NULL,
    idempotency_key TEXT,
    available_at    INTEGER NOT NULL, -- unix milliseconds: commit time + delay
    created_at      INTEGER NOT NULL,
    request_id      TEXT    NOT NULL
);
CREATE UNIQUE INDEX outbox_idempotency
    ON outbox (tenant, topic, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX outbox_available ON outbox (available_at);

-- One row per request that reached the process stage.
CREATE TABLE invocations (
    request_id  TEXT    PRIMARY KEY,
    tenant      TEXT    NOT NULL,
    function    TEXT    NOT NULL,
    route       TEXT    NOT NULL,
    status      INTEGER NOT NULL,
    outcome     TEXT    NOT NULL, -- ok | guest-error | trap | timeout | conflict | invalid-response
    attempts    INTEGER NOT NULL,
    duration_us INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX invocations_by_function ON invocations (tenant, function, created_at);
