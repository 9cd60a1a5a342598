-- Indexes for the reads that must not grow with the size of a channel (PROTOCOL §6.1 `pings_get`, §6.7).
-- Full-text search is dialect-specific and is set up by `Store::ensure_search_index`, not here.

-- Who each message pings, filled by the group-commit writer in the message's own transaction:
-- kind 'user' (an @mention), 'role' (an @&mention) or 'reply' (the replied-to author, when `ping`
-- is not false). `pings_get` reads a range of `mentions_by_target` instead of scanning messages.
CREATE TABLE mentions (
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    channel_id TEXT NOT NULL,
    thread_id TEXT NOT NULL DEFAULT '',
    target_kind TEXT NOT NULL,
    target_id TEXT NOT NULL,
    author_id TEXT,
    seq BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (message_id, target_kind, target_id)
);
CREATE INDEX mentions_by_target ON mentions (target_kind, target_id, created_at);

-- Messages per channel (thread_id '') or thread, kept by the writer, so `total_messages` and the
-- unread count of a never-read channel cost one row instead of counting the channel.
CREATE TABLE message_counts (
    channel_id TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    thread_id TEXT NOT NULL DEFAULT '',
    total BIGINT NOT NULL,
    PRIMARY KEY (channel_id, thread_id)
);
INSERT INTO message_counts (channel_id, thread_id, total)
    SELECT channel_id, thread_id, COUNT(*) FROM messages GROUP BY channel_id, thread_id;
