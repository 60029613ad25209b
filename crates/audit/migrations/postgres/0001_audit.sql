CREATE TABLE audit_records (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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

CREATE TABLE audit_chain (
    seq BIGINT PRIMARY KEY,
    record_id BIGINT NOT NULL UNIQUE,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    sealed_at BIGINT NOT NULL
);

CREATE TABLE audit_checkpoints (
    seq BIGINT PRIMARY KEY,
    root_hash TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit records are append-only';
END
$$;
CREATE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_chain_append_only BEFORE UPDATE OR DELETE ON audit_chain
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_chain_no_truncate BEFORE TRUNCATE ON audit_chain
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
