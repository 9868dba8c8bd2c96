-- Where an invocation's time went, stage by stage, in microseconds: a
-- small JSON object ({"receive":…,"authenticate":…,"validate":…,"process":…}).
ALTER TABLE invocations ADD COLUMN stages TEXT;
