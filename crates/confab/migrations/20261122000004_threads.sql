-- Threads in forum channels (PROTOCOL §5.7, §6.3). Their messages live in `messages` with the
-- forum channel as `channel_id` and the thread as `thread_id`, sharing the channel's seq counter.
CREATE TABLE threads (
    id TEXT PRIMARY KEY,
    channel_id TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_by_name TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    locked BOOLEAN NOT NULL DEFAULT FALSE,
    archived BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX threads_by_channel ON threads (channel_id, created_at);

CREATE TABLE thread_participants (
    thread_id TEXT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    joined_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (thread_id, user_id)
);
