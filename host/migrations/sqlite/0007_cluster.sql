-- Component bytes, so any node sharing the database can compile a deployed
-- version (each node keeps its own copy under components/ and its own cache).
CREATE TABLE components (
    sha   TEXT PRIMARY KEY, -- hex SHA-256 of the bytes
    bytes BLOB NOT NULL
);

-- Bumped in every transaction that changes tenants or deployed functions:
-- nodes that see it move reload them.
CREATE TABLE catalog_changes (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
);
INSERT INTO catalog_changes (id, generation) VALUES (1, 0);
