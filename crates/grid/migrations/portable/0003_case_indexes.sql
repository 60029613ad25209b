-- The duplicate check looks for open cases of one category in a small latitude band: index it so
-- the check costs the few nearby cases, not every open case of the category.
CREATE INDEX grid_cases_nearby ON grid_cases (category_id, status, lat);
