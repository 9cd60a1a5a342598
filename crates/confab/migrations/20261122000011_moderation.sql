-- Account timeouts (PROTOCOL §4.6): until when (Unix seconds) a `user_timeout` keeps the account
-- from sending, editing, typing and reacting. NULL means never timed out.
ALTER TABLE users ADD COLUMN timeout_until DOUBLE PRECISION;
