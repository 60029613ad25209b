-- Archival (DJ-AU-3, DJ-AU-6): a segment of the chain written to a file outside the database,
-- verified as it is written. Keyed by its first seq; segments follow each other without gaps.
CREATE TABLE audit_archives (
    first_seq BIGINT PRIMARY KEY,
    last_seq BIGINT NOT NULL UNIQUE,
    records BIGINT NOT NULL,
    -- The chain hash before the segment and at its end: the anchor verification resumes from.
    prev_hash TEXT NOT NULL,
    last_hash TEXT NOT NULL,
    oldest_at BIGINT NOT NULL,
    newest_at BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    file_name TEXT NOT NULL,
    file_digest TEXT NOT NULL,
    file_bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT,
    -- Keyed MAC over the fields above, like the records'.
    mac TEXT NOT NULL
);

-- A purge removes an archived segment's rows from the database; the row says it was allowed.
CREATE TABLE audit_purges (
    first_seq BIGINT PRIMARY KEY REFERENCES audit_archives (first_seq),
    last_seq BIGINT NOT NULL,
    purged_at BIGINT NOT NULL,
    purged_by TEXT
);

CREATE TRIGGER audit_archives_append_only BEFORE UPDATE OR DELETE ON audit_archives
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_archives_no_truncate BEFORE TRUNCATE ON audit_archives
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_purges_append_only BEFORE UPDATE OR DELETE ON audit_purges
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_purges_no_truncate BEFORE TRUNCATE ON audit_purges
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

-- Rows may be deleted only inside a purged segment.
CREATE FUNCTION audit_chain_purge_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.seq <= (SELECT COALESCE(MAX(last_seq), 0) FROM audit_purges) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit records are append-only';
END
$$;
CREATE FUNCTION audit_records_purge_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM audit_chain c
        WHERE c.record_id = OLD.id AND c.seq <= (SELECT COALESCE(MAX(last_seq), 0) FROM audit_purges)
    ) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit records are append-only';
END
$$;
DROP TRIGGER audit_records_append_only ON audit_records;
CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_records_purge_only BEFORE DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION audit_records_purge_only();
DROP TRIGGER audit_chain_append_only ON audit_chain;
CREATE TRIGGER audit_chain_no_update BEFORE UPDATE ON audit_chain
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_chain_purge_only BEFORE DELETE ON audit_chain
    FOR EACH ROW EXECUTE FUNCTION audit_chain_purge_only();
