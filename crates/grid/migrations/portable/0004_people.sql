-- Base information (B1.1), people (人口). Personal fields are encrypted with the key ring
-- (context = table.column) and looked up by blind index; `grid_base_history` records who changed
-- which fields when (never the values).
CREATE TABLE grid_people (
    id TEXT PRIMARY KEY,
    name_enc TEXT NOT NULL,
    id_card_enc TEXT NOT NULL,
    id_card_idx TEXT NOT NULL UNIQUE,
    gender TEXT NOT NULL,
    birth_year BIGINT NOT NULL,
    mobile_enc TEXT,
    household TEXT,
    relation TEXT,
    -- registered (户籍), resident (常住), floating (流动)
    residence TEXT NOT NULL,
    address_enc TEXT,
    grid_id TEXT NOT NULL REFERENCES orgs (id),
    -- key groups (重点人群), comma-separated between commas: ",独居老人,低保,"
    tags TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT
);
CREATE INDEX grid_people_grid ON grid_people (grid_id);
CREATE INDEX grid_people_household ON grid_people (household);

CREATE TABLE grid_base_history (
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT,
    -- create, update, import
    action TEXT NOT NULL,
    -- names of the fields changed, JSON list
    fields TEXT NOT NULL
);
CREATE INDEX grid_base_history_object ON grid_base_history (object_type, object_id, at);
