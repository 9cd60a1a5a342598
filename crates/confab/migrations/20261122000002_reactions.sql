-- Reactions, in the order they were added (PROTOCOL §5.6 `reactions`), and the reply index for
-- `message_replies`.

CREATE TABLE reactions (
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    emoji TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
);

CREATE INDEX messages_by_reply ON messages (reply_to);
CREATE INDEX messages_pinned ON messages (channel_id, thread_id, pinned);
