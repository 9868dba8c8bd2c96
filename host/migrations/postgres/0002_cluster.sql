-- As migrations/sqlite/0007_cluster.sql.
CREATE TABLE components (
    sha   TEXT  PRIMARY KEY,
    bytes BYTEA NOT NULL
);

CREATE TABLE catalog_changes (
    id         BIGINT PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO catalog_changes (id, generation) VALUES (1, 0);
