-- The message service: templates, messages (the in-app inbox), deliveries (the outbox with its
-- per-channel send log) and per-user preferences. Times are unix ms.

CREATE TABLE notify_templates (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    -- default channels as ",inapp,email,"
    channels TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT
);

CREATE TABLE notify_messages (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    template_code TEXT,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    link TEXT,
    urgent BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    read_at BIGINT
);
CREATE INDEX notify_messages_user ON notify_messages (user_id, read_at, created_at);

CREATE TABLE notify_deliveries (
    id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    address TEXT,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    lease_until BIGINT,
    last_error TEXT,
    sent_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX notify_deliveries_due ON notify_deliveries (state, next_at);
CREATE INDEX notify_deliveries_message ON notify_deliveries (message_id);
CREATE INDEX notify_deliveries_created ON notify_deliveries (created_at);

CREATE TABLE notify_preferences (
    user_id TEXT PRIMARY KEY,
    -- enabled external channels as ",email,sms,"
    channels TEXT NOT NULL,
    quiet_start TEXT,
    quiet_end TEXT,
    updated_at BIGINT NOT NULL
);
