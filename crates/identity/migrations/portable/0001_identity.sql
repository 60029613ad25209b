-- Organisations: the administrative tree (province > city > district > street > community > grid)
-- plus departments under any level. `path` is '/<root id>/.../<own id>/' for subtree queries.
CREATE TABLE orgs (
    id TEXT PRIMARY KEY,
    parent_id TEXT REFERENCES orgs (id),
    kind TEXT NOT NULL,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    depth BIGINT NOT NULL,
    sort BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX orgs_parent ON orgs (parent_id);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    username_key TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    primary_org_id TEXT NOT NULL REFERENCES orgs (id),
    -- At most one of the three administrator roles, by construction (三员分立).
    admin_role TEXT CHECK (admin_role IN ('sysadmin', 'secadmin', 'auditor')),
    status TEXT NOT NULL DEFAULT 'active',
    password_hash TEXT NOT NULL,
    must_change_password BIGINT NOT NULL DEFAULT 1,
    password_changed_at BIGINT NOT NULL,
    mobile_enc TEXT,
    mobile_idx TEXT,
    email TEXT,
    failed_logins BIGINT NOT NULL DEFAULT 0,
    first_failed_at BIGINT,
    locked_until BIGINT,
    totp_secret_enc TEXT,
    totp_enabled BIGINT NOT NULL DEFAULT 0,
    totp_last_step BIGINT,
    last_login_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX users_primary_org ON users (primary_org_id);
CREATE INDEX users_mobile_idx ON users (mobile_idx);

CREATE TABLE user_orgs (
    user_id TEXT NOT NULL REFERENCES users (id),
    org_id TEXT NOT NULL REFERENCES orgs (id),
    PRIMARY KEY (user_id, org_id)
);
CREATE INDEX user_orgs_org ON user_orgs (org_id);

CREATE TABLE password_history (
    user_id TEXT NOT NULL REFERENCES users (id),
    password_hash TEXT NOT NULL,
    changed_at BIGINT NOT NULL
);
CREATE INDEX password_history_user ON password_history (user_id, changed_at);

CREATE TABLE roles (
    id TEXT PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    builtin BIGINT NOT NULL DEFAULT 0,
    admin_role TEXT,
    mfa_required BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE role_permissions (
    role_id TEXT NOT NULL REFERENCES roles (id),
    permission TEXT NOT NULL,
    PRIMARY KEY (role_id, permission)
);

-- A role granted to a user with a data scope (分级授权).
CREATE TABLE grants (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    role_id TEXT NOT NULL REFERENCES roles (id),
    scope TEXT NOT NULL,
    anchor_org_id TEXT NOT NULL REFERENCES orgs (id),
    granted_by TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (user_id, role_id)
);
CREATE INDEX grants_user ON grants (user_id);

CREATE TABLE grant_orgs (
    grant_id TEXT NOT NULL REFERENCES grants (id),
    org_id TEXT NOT NULL REFERENCES orgs (id),
    PRIMARY KEY (grant_id, org_id)
);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    stage TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    source_ip TEXT,
    user_agent TEXT,
    revoked_at BIGINT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL REFERENCES users (id),
    code_hash TEXT NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

-- Connected applications (接入应用) that call the API with signed requests.
CREATE TABLE api_clients (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    secret_enc TEXT NOT NULL,
    sign_alg TEXT NOT NULL,
    scopes TEXT NOT NULL,
    org_id TEXT NOT NULL REFERENCES orgs (id),
    rate_limit_per_min BIGINT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE api_nonces (
    app_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    seen_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, nonce)
);
CREATE INDEX api_nonces_seen ON api_nonces (seen_at);

-- Settings edited at run time (the security policy), as JSON.
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT
);
