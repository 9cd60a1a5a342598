-- Web Push subscriptions (PROTOCOL §6.9). One row per browser endpoint: a browser holds one
-- subscription, so when another account subscribes the same endpoint the row moves to it. Removed
-- with the account, when the push service answers 404 or 410, or after six months unused.
CREATE TABLE push_subscriptions (
    endpoint TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    p256dh TEXT NOT NULL,
    auth TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    -- The last time the push service accepted a message for it; created_at until then.
    used_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX push_subscriptions_by_user ON push_subscriptions (user_id);
