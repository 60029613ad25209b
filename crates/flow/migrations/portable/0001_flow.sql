-- The workflow engine's tables. Times are unix ms; JSON is TEXT.

-- Deployed process models: one row per version of a key.
CREATE TABLE flow_definitions (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    version BIGINT NOT NULL,
    name TEXT NOT NULL,
    xml TEXT NOT NULL,
    -- form key -> form-js schema (JSON object)
    forms TEXT NOT NULL DEFAULT '{}',
    checksum TEXT NOT NULL,
    deployed_at BIGINT NOT NULL,
    deployed_by TEXT,
    UNIQUE (key, version)
);

-- Instances: the engine state as JSON plus the columns searches need.
CREATE TABLE flow_instances (
    id TEXT PRIMARY KEY,
    definition_id TEXT NOT NULL REFERENCES flow_definitions(id),
    def_key TEXT NOT NULL,
    business_key TEXT,
    status TEXT NOT NULL,
    state TEXT NOT NULL,
    rev BIGINT NOT NULL,
    incidents BIGINT NOT NULL DEFAULT 0,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    started_by TEXT,
    org_id TEXT,
    parent_id TEXT,
    parent_token BIGINT
);
CREATE INDEX flow_instances_def ON flow_instances (def_key, status, started_at);
CREATE INDEX flow_instances_bkey ON flow_instances (business_key);
CREATE INDEX flow_instances_started ON flow_instances (started_at);
CREATE INDEX flow_instances_parent ON flow_instances (parent_id);

-- History: one row per transaction that moved an instance (events as a JSON array).
CREATE TABLE flow_history (
    instance_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT,
    events TEXT NOT NULL,
    PRIMARY KEY (instance_id, seq)
);
CREATE INDEX flow_history_at ON flow_history (at);

-- User tasks (待办). Candidate lists are stored as ",a,b," for matching.
CREATE TABLE flow_tasks (
    id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    token BIGINT NOT NULL,
    element_id TEXT NOT NULL,
    name TEXT NOT NULL,
    def_key TEXT NOT NULL,
    def_name TEXT NOT NULL,
    business_key TEXT,
    assignee TEXT,
    owner TEXT,
    candidate_users TEXT NOT NULL DEFAULT '',
    candidate_groups TEXT NOT NULL DEFAULT '',
    candidate_orgs TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    priority BIGINT NOT NULL,
    due_at BIGINT,
    follow_up_at BIGINT,
    form_key TEXT,
    inputs TEXT NOT NULL DEFAULT '{}',
    org_id TEXT,
    created_at BIGINT NOT NULL,
    claimed_at BIGINT,
    completed_at BIGINT,
    completed_by TEXT,
    urge_count BIGINT NOT NULL DEFAULT 0,
    last_urged_at BIGINT,
    warned BIGINT NOT NULL DEFAULT 0,
    UNIQUE (instance_id, token)
);
CREATE INDEX flow_tasks_assignee ON flow_tasks (assignee, state);
CREATE INDEX flow_tasks_state ON flow_tasks (state, created_at);
CREATE INDEX flow_tasks_done ON flow_tasks (completed_by, completed_at);

CREATE TABLE flow_timers (
    instance_id TEXT NOT NULL,
    token BIGINT NOT NULL,
    element_id TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    PRIMARY KEY (instance_id, token)
);
CREATE INDEX flow_timers_due ON flow_timers (due_at);

CREATE TABLE flow_jobs (
    instance_id TEXT NOT NULL,
    token BIGINT NOT NULL,
    element_id TEXT NOT NULL,
    handler TEXT NOT NULL,
    retries_left BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    run_at BIGINT NOT NULL,
    lease_until BIGINT,
    last_error TEXT,
    headers TEXT NOT NULL,
    vars TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (instance_id, token)
);
CREATE INDEX flow_jobs_run ON flow_jobs (run_at);

CREATE TABLE flow_subscriptions (
    instance_id TEXT NOT NULL,
    token BIGINT NOT NULL,
    element_id TEXT NOT NULL,
    name TEXT NOT NULL,
    correlation_key TEXT,
    signal BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (instance_id, token)
);
CREATE INDEX flow_subscriptions_name ON flow_subscriptions (name, correlation_key);

CREATE TABLE flow_incidents (
    id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    token BIGINT NOT NULL,
    element_id TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    resolved_at BIGINT,
    resolution TEXT
);
CREATE INDEX flow_incidents_open ON flow_incidents (resolved_at, created_at);
CREATE INDEX flow_incidents_instance ON flow_incidents (instance_id);
