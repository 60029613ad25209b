-- Third-party platforms (第三方平台: 数字城管, 综治, 12345) and the transactional outbox that
-- delivers to them (B2.1, B4).
CREATE TABLE grid_platforms (
    id TEXT PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    -- city_management (数字城管), governance (综治), hotline (12345), other
    kind TEXT NOT NULL,
    -- The org standing for the platform: cases dispatched to it go to the platform, and its
    -- connected application (which signs the platform's calls to us) belongs to it.
    org_id TEXT NOT NULL UNIQUE REFERENCES orgs (id),
    app_id TEXT NOT NULL UNIQUE,
    endpoint TEXT NOT NULL,
    -- Our credentials at the platform: key and secret (sealed with the key ring).
    out_key TEXT NOT NULL,
    out_secret_enc TEXT NOT NULL,
    sign_alg TEXT NOT NULL,
    -- JSON: field and category mapping, paths, acknowledgement format, coordinate system.
    mapping TEXT NOT NULL,
    timeout_ms BIGINT NOT NULL,
    alert_after_minutes BIGINT NOT NULL,
    enabled BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Messages to platforms, written in the transaction of the case step that causes them; the relay
-- delivers them in `seq` order per platform and case, retrying until the platform acknowledges.
CREATE TABLE grid_outbox (
    id TEXT PRIMARY KEY,
    platform_id TEXT NOT NULL REFERENCES grid_platforms (id),
    case_id TEXT NOT NULL REFERENCES grid_cases (id),
    seq BIGINT NOT NULL,
    -- dispatch (派遣 to the platform) or status (受理, 办结, 核实反馈 … of a case)
    kind TEXT NOT NULL,
    -- Sent as X-Zs-Idempotency-Key and in the body: the platform dedups on it.
    idem_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    -- pending, delivered
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    lease_until BIGINT,
    last_error TEXT,
    last_attempt_at BIGINT,
    ticket TEXT,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT,
    alerted_at BIGINT,
    UNIQUE (platform_id, idem_key),
    UNIQUE (platform_id, case_id, seq)
);
CREATE INDEX grid_outbox_due ON grid_outbox (state, next_at);
CREATE INDEX grid_outbox_case ON grid_outbox (case_id);

-- A case's standing with a platform: dispatched to it ('out') or received from it ('in').
CREATE TABLE grid_platform_links (
    platform_id TEXT NOT NULL REFERENCES grid_platforms (id),
    case_id TEXT NOT NULL REFERENCES grid_cases (id),
    direction TEXT NOT NULL,
    -- What the platform last told us: received, accepted, returned, handled, verified, verify_failed
    remote_state TEXT,
    remote_note TEXT,
    remote_at BIGINT,
    ticket TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (platform_id, case_id)
);
CREATE INDEX grid_platform_links_case ON grid_platform_links (case_id);

-- Callbacks received, once each: a callback sent twice has no second effect.
CREATE TABLE grid_platform_inbox (
    platform_id TEXT NOT NULL REFERENCES grid_platforms (id),
    callback_id TEXT NOT NULL,
    case_id TEXT,
    kind TEXT NOT NULL,
    -- applied, recorded, stale
    outcome TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (platform_id, callback_id)
);

-- Runs of the reconciliation of case states with a platform.
CREATE TABLE grid_platform_reconciliations (
    id TEXT PRIMARY KEY,
    platform_id TEXT NOT NULL REFERENCES grid_platforms (id),
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    checked BIGINT NOT NULL DEFAULT 0,
    matched BIGINT NOT NULL DEFAULT 0,
    advanced BIGINT NOT NULL DEFAULT 0,
    resent BIGINT NOT NULL DEFAULT 0,
    -- JSON list of {case_no, ours, theirs, action}
    detail TEXT NOT NULL DEFAULT '[]',
    error TEXT
);
CREATE INDEX grid_platform_reconciliations_platform ON grid_platform_reconciliations (platform_id, started_at);
