-- A tenant's stored bytes are the sum of several rows, one per committer
-- that added to them (a shard each picks at start), so that nodes writing
-- for one tenant at once do not queue on one row. SQLite keeps one row:
-- it has one writer.
ALTER TABLE tenant_usage ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tenant_usage DROP CONSTRAINT tenant_usage_pkey;
ALTER TABLE tenant_usage ADD PRIMARY KEY (tenant, shard);
