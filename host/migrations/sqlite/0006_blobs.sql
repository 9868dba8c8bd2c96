-- Blobs: one row per (tenant, name). The content is the file
-- blobs/<tenant>/objects/<file> in the data directory, named by the host;
-- the committer renames a staged file there in the batch that writes its
-- row, so a blob is visible if and only if its row committed.
CREATE TABLE blobs (
    tenant       TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    file         TEXT    NOT NULL, -- file name under objects/
    size         INTEGER NOT NULL, -- bytes
    content_type TEXT    NOT NULL,
    etag         TEXT    NOT NULL, -- hex SHA-256 of the content
    created_at   INTEGER NOT NULL, -- unix ms
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID;
