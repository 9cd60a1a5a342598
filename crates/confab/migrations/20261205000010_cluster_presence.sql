-- Presence across the nodes of a cluster (docs/cluster.md, "Presence"). Each live node has a row it refreshes every
-- `cluster.heartbeat_ms` on the database's clock; each (user, node) pair counts that node's connections of the
-- user. A connection's arrival and departure change the user's rows under a per-user advisory lock, so exactly one
-- of them sees the total go from 0 to 1 (and announces `user_connect`) or from 1 to 0 (`user_disconnect`), and the
-- per-user connection limit holds across nodes. A node silent for `cluster.node_ttl_ms` is deleted by whichever
-- node sees it first (`DELETE … RETURNING` gives it to exactly one), which then removes its presence rows the same
-- way. Only cluster mode (PostgreSQL) writes here.
CREATE TABLE cluster_nodes (
    id TEXT PRIMARY KEY,
    started_at DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE cluster_presence (
    user_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    conns BIGINT NOT NULL,
    PRIMARY KEY (user_id, node_id)
);
CREATE INDEX cluster_presence_by_node ON cluster_presence (node_id);
