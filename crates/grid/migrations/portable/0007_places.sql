-- Base information (B1.1), places (地所): buildings (楼栋) and the houses (房屋) in them, each with
-- its standard address, position and grid. `address_key` is the address normalised for matching
-- free-text addresses (geocoding). Changes are recorded in grid_base_history (object_type 'place').
CREATE TABLE grid_places (
    id TEXT PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    -- building, house
    kind TEXT NOT NULL,
    building_id TEXT REFERENCES grid_places (id),
    name TEXT NOT NULL,
    address TEXT NOT NULL,
    address_key TEXT NOT NULL,
    lon DOUBLE PRECISION NOT NULL,
    lat DOUBLE PRECISION NOT NULL,
    grid_id TEXT NOT NULL REFERENCES orgs (id),
    -- buildings: residential, commercial, office, public, industrial, mixed;
    -- houses: owner_occupied, rented, vacant, business
    usage TEXT NOT NULL,
    floors BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT
);
CREATE INDEX grid_places_key ON grid_places (address_key);
CREATE INDEX grid_places_grid ON grid_places (grid_id);
CREATE INDEX grid_places_building ON grid_places (building_id);
