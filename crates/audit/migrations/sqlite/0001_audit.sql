CREATE TABLE audit_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    actor_id TEXT,
    actor_name TEXT,
    actor_org TEXT,
    source_ip TEXT,
    request_id TEXT,
    channel TEXT NOT NULL,
    action TEXT NOT NULL,
    object_type TEXT,
    object_id TEXT,
    result TEXT NOT NULL,
    reason TEXT,
    detail TEXT,
    -- H(canonical content), computed when written; the MAC is over it, the chain links it.
    digest TEXT NOT NULL,
    mac TEXT NOT NULL
);
CREATE INDEX audit_records_at ON audit_records (at);
CREATE INDEX audit_records_actor ON audit_records (actor_name, at);
CREATE INDEX audit_records_action ON audit_records (action, at);
CREATE INDEX audit_records_object ON audit_records (object_type, object_id);

-- INTEGER PRIMARY KEY makes seq the rowid: one B-tree fewer per sealed record.
CREATE TABLE audit_chain (
    seq INTEGER PRIMARY KEY,
    record_id BIGINT NOT NULL UNIQUE,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    sealed_at BIGINT NOT NULL
);

CREATE TABLE audit_checkpoints (
    seq INTEGER PRIMARY KEY,
    root_hash TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_chain_no_update BEFORE UPDATE ON audit_chain
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_chain_no_delete BEFORE DELETE ON audit_chain
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
