-- Webhooks (PROTOCOL §3.5, §5.8, §6.9): each posts into one text channel with an opaque token that
-- is stored only as its SHA-256 digest. Deleting the channel deletes its webhooks. The creator's
-- name is kept for when the account is gone; while it exists its current name is shown.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    channel_id TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    avatar TEXT,
    token_hash TEXT NOT NULL UNIQUE,
    created_by TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_by_name TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX webhooks_by_channel ON webhooks (channel_id);
