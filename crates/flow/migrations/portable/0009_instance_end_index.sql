-- The retention cleanup asks every minute for the instances that ended before a cutoff: without
-- an index each of its four statements read the whole instance table inside the write
-- transaction, which stalled every other write for a quarter of a second once the city's cases
-- had filled the table with 100,000 instances.
CREATE INDEX flow_instances_ended ON flow_instances (ended_at) WHERE ended_at IS NOT NULL;
