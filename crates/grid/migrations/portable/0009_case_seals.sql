-- Integrity seals (DJ-DI-2): a keyed MAC over each case's report as filed and over each step of
-- its timeline (see grid::integrity). Rows from before are sealed when the service starts.
ALTER TABLE grid_cases ADD COLUMN report_mac TEXT;
ALTER TABLE grid_case_log ADD COLUMN row_mac TEXT;
