-- Abnormal API use (等保 DJ-IP-3): what the detector saw, for the security administrator.
-- One open alert per rule and subject collects repeats (count, last_at) until it is handled.
CREATE TABLE security_alerts (
    id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    subject TEXT NOT NULL,
    subject_name TEXT,
    source_ip TEXT,
    first_at BIGINT NOT NULL,
    last_at BIGINT NOT NULL,
    count BIGINT NOT NULL,
    detail TEXT NOT NULL,
    blocked_until BIGINT,
    status TEXT NOT NULL,
    handled_by TEXT,
    handled_at BIGINT,
    note TEXT
);
CREATE INDEX security_alerts_recent ON security_alerts (last_at);
CREATE INDEX security_alerts_open ON security_alerts (rule, subject, status);
