-- Multi-grid fusion (多网格融合): area boundaries over the org tree, grid workers, the event
-- category taxonomy, assignment rules, and cases with their stage log.

-- The boundary of an org of the administrative tree (city … grid). `shape` is the boundary as
-- JSON ({"polygons": [[[[lon, lat], …]]]}), WGS84.
CREATE TABLE grid_areas (
    org_id TEXT PRIMARY KEY REFERENCES orgs (id),
    shape TEXT NOT NULL,
    min_lon DOUBLE PRECISION NOT NULL,
    min_lat DOUBLE PRECISION NOT NULL,
    max_lon DOUBLE PRECISION NOT NULL,
    max_lat DOUBLE PRECISION NOT NULL,
    label_lon DOUBLE PRECISION NOT NULL,
    label_lat DOUBLE PRECISION NOT NULL,
    area_m2 DOUBLE PRECISION NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT
);

-- Bumped on every boundary change, so every node reloads its point → grid index.
CREATE TABLE grid_meta (
    key TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO grid_meta (key, value) VALUES ('areas_version', 0);

CREATE TABLE grid_workers (
    grid_id TEXT NOT NULL REFERENCES orgs (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    assigned_at BIGINT NOT NULL,
    PRIMARY KEY (grid_id, user_id)
);
CREATE INDEX grid_workers_user ON grid_workers (user_id);

-- Two-level taxonomy: top classes (parent_id NULL) and their categories.
CREATE TABLE grid_categories (
    id TEXT PRIMARY KEY,
    parent_id TEXT REFERENCES grid_categories (id),
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    -- component (部件), event (事件) or governance (综治)
    kind TEXT NOT NULL,
    owner_org_id TEXT REFERENCES orgs (id),
    -- normal / urgent / critical allowed, JSON list
    urgencies TEXT NOT NULL,
    -- per-stage time limits as ISO 8601 durations on the working-day calendar, JSON object
    limits TEXT NOT NULL,
    keywords TEXT NOT NULL DEFAULT '',
    sort BIGINT NOT NULL DEFAULT 0,
    enabled BIGINT NOT NULL DEFAULT 1,
    updated_at BIGINT NOT NULL
);
CREATE INDEX grid_categories_parent ON grid_categories (parent_id);

-- What dispatchers chose for which words: the suggestion learns from it.
CREATE TABLE grid_category_learning (
    token TEXT NOT NULL,
    category_id TEXT NOT NULL REFERENCES grid_categories (id),
    hits BIGINT NOT NULL,
    PRIMARY KEY (token, category_id)
);

-- Automatic assignment (属主/属地): category × area → department. NULL matches any.
CREATE TABLE grid_rules (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    category_id TEXT REFERENCES grid_categories (id),
    area_org_id TEXT REFERENCES orgs (id),
    -- a fixed department, or the event's own street / community / district office (属地)
    department_id TEXT REFERENCES orgs (id),
    target_level TEXT,
    priority BIGINT NOT NULL DEFAULT 0,
    enabled BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE grid_counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

CREATE TABLE grid_cases (
    id TEXT PRIMARY KEY,
    case_no TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    external_id TEXT,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    category_id TEXT NOT NULL REFERENCES grid_categories (id),
    urgency TEXT NOT NULL,
    lon DOUBLE PRECISION,
    lat DOUBLE PRECISION,
    address TEXT,
    grid_id TEXT REFERENCES orgs (id),
    -- the grid (or the dispatch centre when the place is unknown), for data-scope filtering
    org_id TEXT NOT NULL REFERENCES orgs (id),
    reporter TEXT NOT NULL,
    reporter_user TEXT,
    department_id TEXT REFERENCES orgs (id),
    assigned_by_rule TEXT,
    -- report, accept, dispatch, handle, extension, verify, closed, rejected
    stage TEXT NOT NULL,
    -- open, closed, rejected, merged
    status TEXT NOT NULL,
    duplicate_of TEXT REFERENCES grid_cases (id),
    possible_duplicate_of TEXT REFERENCES grid_cases (id),
    instance_id TEXT,
    stage_due_at BIGINT,
    rework_count BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    accepted_at BIGINT,
    dispatched_at BIGINT,
    handled_at BIGINT,
    verified_at BIGINT,
    closed_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX grid_cases_source_ext ON grid_cases (source, external_id);
CREATE INDEX grid_cases_stage ON grid_cases (status, stage);
CREATE INDEX grid_cases_category_time ON grid_cases (category_id, created_at);
CREATE INDEX grid_cases_org ON grid_cases (org_id);
CREATE INDEX grid_cases_department ON grid_cases (department_id, status);
CREATE INDEX grid_cases_instance ON grid_cases (instance_id);

-- Every step of a case with its time (B2.2): the timeline.
CREATE TABLE grid_case_log (
    case_id TEXT NOT NULL REFERENCES grid_cases (id),
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    action TEXT NOT NULL,
    stage TEXT NOT NULL,
    actor TEXT,
    note TEXT,
    PRIMARY KEY (case_id, seq)
);
