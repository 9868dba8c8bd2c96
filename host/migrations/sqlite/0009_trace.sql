-- The W3C traceparent of the invocation that sent a message (or made a
-- document event), when traces are exported; its consumer's span continues
-- that trace.
ALTER TABLE outbox ADD COLUMN trace TEXT;
