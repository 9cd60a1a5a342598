-- Attachments (PROTOCOL §3.6, §6.9). The bytes live in the file storage under `storage_key`; this row
-- says whose they are, where they may be posted and until when they are kept. No foreign keys on
-- purpose: when a channel, a message or an account goes, the row stays until the sweeper has
-- removed its file too, so nothing is left behind on disk after a crash between the two.
CREATE TABLE attachments (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    name TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    width BIGINT,
    height BIGINT,
    permanent BOOLEAN NOT NULL DEFAULT FALSE,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION,
    -- Set once a message references the upload; until then it expires an hour after created_at.
    message_id TEXT
);
CREATE INDEX attachments_by_message ON attachments (message_id);
CREATE INDEX attachments_by_expiry ON attachments (expires_at);
