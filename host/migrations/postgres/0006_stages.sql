-- As migrations/sqlite/0010_stages.sql.
ALTER TABLE invocations ADD COLUMN stages TEXT;
