-- Polls (PROTOCOL §5.8, §6.9). A poll belongs to the message that shows it; the row is written
-- just before that message, so it has no foreign key to it: reads join `messages`, and the expiry
-- task deletes a due poll whose message is gone. Options are the JSON array of the embed.

CREATE TABLE polls (
    id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    channel_id TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    thread_id TEXT NOT NULL DEFAULT '',
    question TEXT NOT NULL,
    options TEXT NOT NULL,
    allow_multiselect BOOLEAN NOT NULL,
    expires_at DOUBLE PRECISION,
    created_by TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    ended BOOLEAN NOT NULL DEFAULT FALSE,
    ended_at DOUBLE PRECISION
);

-- What the expiry task reads: open polls by expiry.
CREATE INDEX polls_open_by_expiry ON polls (expires_at) WHERE NOT ended AND expires_at IS NOT NULL;

-- One row per chosen option; a re-vote replaces the voter's rows.
CREATE TABLE poll_votes (
    poll_id TEXT NOT NULL REFERENCES polls (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    option_id TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (poll_id, user_id, option_id)
);
