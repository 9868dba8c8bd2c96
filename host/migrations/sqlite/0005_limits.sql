-- The limit an invocation went over (`memory_bytes`, `timeout_ms`, …), when
-- its outcome is `limit` or `timeout`.
ALTER TABLE invocations ADD COLUMN exceeded_limit TEXT;
