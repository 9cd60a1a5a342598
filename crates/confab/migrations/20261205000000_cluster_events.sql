-- The cluster's control log (docs/cluster.md): changes to live connections that every node must apply — closes
-- (ban, revoked session, deleted account), role, channel-list and profile refreshes, and server-wide packets. Its
-- seq comes from the one counter row, bumped in the appending statement's transaction, so committed seqs have no
-- hole and commit order is seq order: a node that missed one on the broker reads it here, as for channel events.
-- `body` is the effect as JSON; `node` the node that made the change (it applied it already). Only cluster mode
-- writes here; rows older than a day are pruned.
CREATE TABLE cluster_head (
    id INTEGER PRIMARY KEY,
    seq BIGINT NOT NULL
);
INSERT INTO cluster_head (id, seq) VALUES (1, 0);
CREATE TABLE cluster_events (
    seq BIGINT PRIMARY KEY,
    node TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
