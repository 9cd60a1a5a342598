-- Invites (docs/protocol-details.md, "Registration modes and invites"): in `auth.registration = "invite"` mode
-- an account is created only with a live invite. The code is random (22 letters and digits, ~131 bits) and kept as
-- is, so administrators can copy the link again from the list. A registration counts a use in the same
-- transaction that creates the account, with a conditional UPDATE, so concurrent registrations never exceed
-- `max_uses`. Revoked invites stay listed with their counts.
CREATE TABLE invites (
    code TEXT PRIMARY KEY,
    created_by TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_by_name TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION,
    max_uses BIGINT,
    uses BIGINT NOT NULL DEFAULT 0,
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX invites_by_created ON invites (created_at);
