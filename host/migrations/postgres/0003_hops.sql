-- As migrations/sqlite/0008_hops.sql.
ALTER TABLE outbox ADD COLUMN hops INTEGER NOT NULL DEFAULT 0;
