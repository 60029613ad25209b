-- An instance's open tasks: without this index the planner picked flow_tasks_state (every open
-- task of the platform, in creation order) for `instance_id = ? AND state = 'open'`, a scan that
-- grew with the inbox.
CREATE INDEX flow_tasks_instance_state ON flow_tasks (instance_id, state);
