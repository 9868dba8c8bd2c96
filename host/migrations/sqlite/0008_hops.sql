-- How many consumer runs led to a message: 0 for a request's sends and
-- events, one more for each consumer that sends or writes while handling
-- one. Past the host's limit a message is dead-lettered as a loop.
ALTER TABLE outbox ADD COLUMN hops INTEGER NOT NULL DEFAULT 0;
