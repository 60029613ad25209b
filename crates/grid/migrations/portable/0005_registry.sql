-- Base information (B1.1), facilities (物设/部件: digital-city-management component code, class,
-- position, owner department, state) and organisations (组织: unified social credit code).
-- Changes are recorded in grid_base_history (object_type 'facility' / 'org_record').
CREATE TABLE grid_facilities (
    id TEXT PRIMARY KEY,
    -- 16 digits: 6-digit area code, 2-digit major class, 2-digit minor class, 6-digit sequence
    code TEXT NOT NULL UNIQUE,
    category_id TEXT NOT NULL REFERENCES grid_categories (id),
    name TEXT NOT NULL,
    lon DOUBLE PRECISION NOT NULL,
    lat DOUBLE PRECISION NOT NULL,
    grid_id TEXT NOT NULL REFERENCES orgs (id),
    owner_org_id TEXT REFERENCES orgs (id),
    -- normal, damaged, missing, removed
    state TEXT NOT NULL,
    address TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT
);
CREATE INDEX grid_facilities_grid ON grid_facilities (grid_id);

CREATE TABLE grid_org_records (
    id TEXT PRIMARY KEY,
    uscc TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    -- enterprise, institution, social, individual
    kind TEXT NOT NULL,
    address TEXT,
    grid_id TEXT NOT NULL REFERENCES orgs (id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT
);
CREATE INDEX grid_org_records_grid ON grid_org_records (grid_id);
