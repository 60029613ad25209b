-- Photos and files of cases (report, handling feedback, verification). Uploaded first, then linked
-- to a case by the intake or the action that uses them; unlinked uploads are removed after a day.
CREATE TABLE grid_attachments (
    id TEXT PRIMARY KEY,
    case_id TEXT REFERENCES grid_cases (id),
    stage TEXT,
    name TEXT NOT NULL,
    mime TEXT NOT NULL,
    size BIGINT NOT NULL,
    -- SM3 of the content, hex
    sm3 TEXT NOT NULL,
    data BLOB NOT NULL,
    uploaded_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX grid_attachments_case ON grid_attachments (case_id);
CREATE INDEX grid_attachments_unlinked ON grid_attachments (uploaded_by, created_at);
