-- The duplicate check names the nearest open main case (主件): a case not itself flagged as a
-- possible duplicate. Flagged cases point at their main case instead of at each other, and a busy
-- spot holds a few main cases rather than every report made there, so the check reads a few index
-- entries per event however many reports pile up (at 1,200 open reports of one category in one
-- spot it read them all: 190 µs an event).
DROP INDEX grid_cases_open_nearby;
CREATE INDEX grid_cases_open_main_nearby ON grid_cases (category_id, lat_band, lon, lat, created_at, status, id)
    WHERE status = 'open' AND possible_duplicate_of IS NULL;
