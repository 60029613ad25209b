-- Timer start events with a cron cycle: the expression gives each next due time.
ALTER TABLE flow_start_timers ADD COLUMN cron TEXT;
