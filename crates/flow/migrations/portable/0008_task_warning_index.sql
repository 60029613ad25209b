-- The deadline worker's question, "which open tasks are due soon and not warned yet, or overdue
-- and not warned red", answered by one range per level: without it each round walked every open
-- task and sorted them, inside the write transaction.
CREATE INDEX flow_tasks_warn ON flow_tasks (warned, due_at) WHERE state = 'open' AND due_at IS NOT NULL;
