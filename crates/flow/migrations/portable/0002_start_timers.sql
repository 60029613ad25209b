-- Timer start events of deployed processes: the next time each starts an instance. Only the
-- latest version of a process keeps its start timers.
CREATE TABLE flow_start_timers (
    definition_id TEXT NOT NULL,
    element_id TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    every_ms BIGINT,
    remaining BIGINT,
    PRIMARY KEY (definition_id, element_id)
);
CREATE INDEX flow_start_timers_due ON flow_start_timers (due_at);
