-- The duplicate check reads the open cases of one category in a small box. Positions carry their
-- latitude band (0.0005°, about 55 m: FLOOR(lat / 0.0005)) so that the index below finds the box
-- as a few short runs of longitude — the bands the box spans — and holds every column the check
-- reads (status too, which SQLite would otherwise read from the table): the check reads the index
-- alone, and closed cases are not in it.
ALTER TABLE grid_cases ADD COLUMN lat_band BIGINT;
UPDATE grid_cases SET lat_band = CAST(lat / 0.0005 AS INTEGER) - (lat < 0 AND lat / 0.0005 <> CAST(lat / 0.0005 AS INTEGER))
    WHERE lat IS NOT NULL;
DROP INDEX grid_cases_nearby;
CREATE INDEX grid_cases_open_nearby ON grid_cases (category_id, lat_band, lon, lat, created_at, status, id) WHERE status = 'open';
