-- Slash commands registered on every node of a cluster (docs/cluster.md, "Slash commands"). One row per registering
-- connection, keyed by (node, connection), holding the commands in their `slash_list` form. A node writes its
-- connections' rows under one advisory lock, after checking the other rows for a clash, so name conflicts are judged
-- against the whole cluster; it deletes a row when the connection closes. The rows of a node that stopped beating
-- (no row in `cluster_nodes`) are deleted by whichever node sees it first (`DELETE … RETURNING`), which announces
-- `slash_remove` for them. Only cluster mode (PostgreSQL) writes here; the node itself keeps routing its own calls.
CREATE TABLE cluster_slash (
    node_id TEXT NOT NULL,
    conn_id BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    username TEXT NOT NULL,
    commands TEXT NOT NULL,
    PRIMARY KEY (node_id, conn_id)
);
