-- One row per (message, subscribed function) still to be handled. The
-- consumer's transaction deletes it together with the consumer's own writes,
-- so a message is done if and only if its effects committed.
CREATE TABLE deliveries (
    id           TEXT    PRIMARY KEY, -- UUIDv7
    message_id   TEXT    NOT NULL,    -- outbox.id
    tenant       TEXT    NOT NULL,
    function     TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0, -- deliveries started so far
    available_at INTEGER NOT NULL,           -- unix ms: not before
    lease_until  INTEGER,                    -- unix ms: a runner holds it until then
    lease_token  TEXT,                       -- which runner
    last_error   TEXT,
    UNIQUE (message_id, function)
);
CREATE INDEX deliveries_due ON deliveries (tenant, function, available_at);
CREATE INDEX deliveries_available ON deliveries (available_at);
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE lease_until IS NOT NULL;

-- Deliveries that ran out of attempts or that their consumer gave up on.
CREATE TABLE dead_letters (
    id         TEXT    PRIMARY KEY, -- the delivery's id
    message_id TEXT    NOT NULL,    -- outbox.id, kept while this row exists
    tenant     TEXT    NOT NULL,
    function   TEXT    NOT NULL,
    attempts   INTEGER NOT NULL,
    last_error TEXT    NOT NULL,
    failed_at  INTEGER NOT NULL     -- unix ms
);
CREATE INDEX dead_letters_by_function ON dead_letters (tenant, function, failed_at);

-- Cron schedules: the next tick to fire, advanced in the same transaction
-- that enqueues a tick's message, so each tick fires once across restarts.
CREATE TABLE schedules (
    tenant    TEXT    NOT NULL,
    function  TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    cron      TEXT    NOT NULL,
    timezone  TEXT    NOT NULL,
    next_tick INTEGER NOT NULL, -- unix ms
    last_tick INTEGER,          -- unix ms of the last tick fired
    PRIMARY KEY (tenant, function, name)
);

CREATE INDEX outbox_created ON outbox (created_at);
