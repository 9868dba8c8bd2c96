-- As migrations/sqlite/0009_trace.sql.
ALTER TABLE outbox ADD COLUMN trace TEXT;
