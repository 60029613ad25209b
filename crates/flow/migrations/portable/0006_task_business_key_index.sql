-- Tasks by business key (业务编号), the usual way to find one in the inbox: without it the
-- planner walked every open task of the platform (flow_tasks_state), and a lookup slowed from
-- ~1 ms to ~300 ms once the city's cases had filled the inbox with 60,000 open tasks.
CREATE INDEX flow_tasks_bkey ON flow_tasks (business_key, state);
