-- History is only ever read by instance (the instance page, the retention cleanup goes through
-- the instances' end times), so the index on the history's time was written with every history
-- row and read by nothing.
DROP INDEX flow_history_at;
