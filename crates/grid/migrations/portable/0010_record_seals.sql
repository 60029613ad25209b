-- Integrity seals of base-information records (DJ-DI-2): a keyed MAC over every column of each
-- person, place, facility and organisation row, rewritten with each change (see
-- grid::integrity::SealedTable). Rows from before are sealed when the service starts.
ALTER TABLE grid_people ADD COLUMN row_mac TEXT;
ALTER TABLE grid_places ADD COLUMN row_mac TEXT;
ALTER TABLE grid_facilities ADD COLUMN row_mac TEXT;
ALTER TABLE grid_org_records ADD COLUMN row_mac TEXT;
