-- Messages published with a time to live while no instance waited for them (message
-- buffering): the first subscription that matches before they expire takes them.
CREATE TABLE flow_messages (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    correlation_key TEXT,
    -- The publisher's own id for the message: publishing it again while it is buffered is refused.
    message_id TEXT,
    variables TEXT NOT NULL,
    published_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    published_by TEXT
);
CREATE INDEX flow_messages_name_key ON flow_messages (name, correlation_key, published_at);
CREATE INDEX flow_messages_expires ON flow_messages (expires_at);
CREATE UNIQUE INDEX flow_messages_message_id ON flow_messages (name, message_id);
