-- Confab schema. One text for SQLite and PostgreSQL: only TEXT, BIGINT, DOUBLE PRECISION and BOOLEAN
-- columns, so both dialects read it the same way. Ids are UUIDv7 strings; times are Unix seconds.

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    username_lower TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    password_hash TEXT,
    external_id TEXT UNIQUE,
    nickname TEXT,
    status TEXT NOT NULL DEFAULT 'online',
    status_text TEXT NOT NULL DEFAULT '',
    pfp_url TEXT,
    banned BOOLEAN NOT NULL DEFAULT FALSE,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE roles (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    name_lower TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    color TEXT,
    hoisted BOOLEAN NOT NULL DEFAULT FALSE,
    permissions TEXT NOT NULL DEFAULT '[]',
    self_assignable BOOLEAN NOT NULL DEFAULT FALSE,
    category TEXT,
    position BIGINT NOT NULL
);

CREATE TABLE user_roles (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, role_id)
);

CREATE TABLE channels (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    name_lower TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    display_name TEXT,
    description TEXT,
    size BIGINT,
    permissions TEXT NOT NULL DEFAULT '{}',
    position BIGINT NOT NULL,
    seq BIGINT NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL
);

-- thread_id is '' for messages directly in a channel, so one index serves channels and threads.
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    channel_id TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    thread_id TEXT NOT NULL DEFAULT '',
    user_id TEXT,
    author_name TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    seq BIGINT NOT NULL,
    edited BOOLEAN NOT NULL DEFAULT FALSE,
    pinned BOOLEAN NOT NULL DEFAULT FALSE,
    reply_to TEXT,
    ping BOOLEAN,
    extra TEXT
);
CREATE INDEX messages_by_scope_seq ON messages (channel_id, thread_id, seq);

-- Every channel-scoped event as broadcast, for resume (PROTOCOL §7.2).
CREATE TABLE events (
    channel_id TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    message_id TEXT,
    payload TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (channel_id, seq)
);
CREATE INDEX events_by_message ON events (message_id);

-- Idempotent send (PROTOCOL §7.4): one row per (account, nonce) inside the window.
CREATE TABLE nonces (
    user_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    message_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (user_id, nonce)
);

-- A session family: one login, its refresh tokens and the access tokens that carry its id as `sid`.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    method TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    spent BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE read_state (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel_id TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    thread_id TEXT NOT NULL DEFAULT '',
    last_read_id TEXT,
    last_read_seq BIGINT NOT NULL,
    PRIMARY KEY (user_id, channel_id, thread_id)
);
