-- SAUTH2 generic tokens (PROTOCOL §2.7), issued per user by an administrator, stored hashed.
CREATE TABLE sauth_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at DOUBLE PRECISION NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX sauth_tokens_by_user ON sauth_tokens (user_id);
