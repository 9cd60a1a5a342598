-- Bot accounts (PROTOCOL §2.8, §7.7). The account itself is a `users` row of kind 'bot'; these
-- tables hold what only bots have. `announced` records whether `user_join` was broadcast for the
-- bot: `bot_create` announces at once, a bot from the configuration file or the CLI at its first
-- login, so every bot is announced exactly once.
CREATE TABLE bots (
    user_id TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    announced BOOLEAN NOT NULL DEFAULT FALSE,
    created_at DOUBLE PRECISION NOT NULL
);

-- Bot tokens, stored only as SHA-256 digests. A bot has at most one live token; replaced tokens
-- stay as revoked rows so a configuration file that still names one cannot bring it back.
CREATE TABLE bot_tokens (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, token_hash)
);
