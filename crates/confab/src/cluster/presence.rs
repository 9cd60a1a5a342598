//! This node's part in cluster-wide presence (docs/cluster.md, "Presence"): its connections are
//! counted in PostgreSQL per (user, node), so `user_connect` and `user_disconnect` go out once per
//! user for the whole cluster, and the per-user connection limit holds across nodes. A heartbeat
//! keeps the node's row fresh; a node that stops beating is reaped by another, which announces the
//! users it leaves with no connection anywhere.

use std::{
    collections::{BTreeSet, HashSet},
    sync::Arc,
    time::Duration,
};

use serde_json::json;

use super::control::Effect;
use crate::{error::Result, identity::Identity, state::AppState, store::presence::Joined, wire};

/// A connection of `user_id` arrives on this node: counted unless the user is at the limit.
pub async fn join(state: &AppState, node: &str, user_id: &str) -> Result<Joined> {
    state.store.presence_join(node, user_id, state.config.security.max_connections_per_user).await
}

/// A connection of `identity` left this node: uncounted, and `user_disconnect` to everyone when it
/// was the user's last anywhere. During shutdown nothing is uncounted: the node's rows stay until
/// it is reaped, so users reconnecting to another node meanwhile never appear to leave.
pub fn leave(state: &AppState, node: &str, identity: Arc<Identity>) {
    let (state, node) = (state.clone(), node.to_owned());
    tokio::spawn(async move {
        let retry = Duration::from_millis(state.config.cluster.heartbeat_ms);
        while !state.shutdown.is_cancelled() {
            match state.store.presence_leave(&node, &identity.user.id, false).await {
                Ok(last) => {
                    if last && identity.user.status != "invisible" {
                        announce_gone(&state, &identity.user.username);
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, user = %identity.user.id, "uncounting a connection; retrying");
                    tokio::time::sleep(retry).await;
                }
            }
        }
    });
}

fn announce_gone(state: &AppState, username: &str) {
    state.to_all(wire::packet("user_disconnect", json!({"username": username})), None, true);
}

/// Before serving: marks the node alive and drops the rows (presence, slash commands) an earlier
/// run under the same `cluster.node_id` left behind (its connections are gone).
pub async fn start(state: &AppState, node: &str) -> Result<()> {
    state.store.node_beat(node).await?;
    super::slash::reap(state, Some(node)).await?;
    reap(state, node).await
}

/// Uncounts every connection of a dead node, announcing each user left with none.
async fn reap(state: &AppState, node: &str) -> Result<()> {
    for user_id in state.store.presence_of_node(node).await? {
        if state.store.presence_leave(node, &user_id, true).await?
            && let Some(user) = state.store.user_by_id(&user_id).await?
            && user.status != "invisible"
        {
            announce_gone(state, &user.username);
        }
    }
    Ok(())
}

/// Counts this node's live connections again after another node declared it dead (it stalled
/// longer than `node_ttl_ms`) and removed them; users that were shown offline meanwhile come back.
async fn recount(state: &AppState, node: &str) -> Result<()> {
    for conn in state.hub.connections() {
        let identity = conn.identity();
        if let Joined::Counted { first: true } = state.store.presence_join(node, &conn.user_id, usize::MAX).await?
            && identity.user.status != "invisible"
        {
            state.to_all(wire::packet("user_connect", json!({"user": identity.presence()})), None, true);
        }
    }
    Ok(())
}

/// The heartbeat task: beats every `heartbeat_ms`, reaps nodes silent for `node_ttl_ms` and
/// uncounts the connections of nodes that have no row any more.
pub async fn heartbeat(state: AppState, node: String) {
    let config = &state.config.cluster;
    let ttl_s = config.node_ttl_ms as f64 / 1000.0;
    let mut tick = tokio::time::interval(Duration::from_millis(config.heartbeat_ms));
    let mut known = HashSet::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = state.shutdown.cancelled() => break,
        }
        match state.store.node_beat(&node).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!("this node was declared dead by another; counting its connections again");
                if let Err(e) = recount(&state, &node).await {
                    tracing::warn!(error = %e, "recounting this node's connections");
                }
                if let Err(e) = super::slash::rejoin(&state, &node).await {
                    tracing::warn!(error = %e, "putting back this node's slash commands");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cluster heartbeat"),
        }
        match state.store.nodes_reap(ttl_s).await {
            Ok(dead) => {
                for gone in dead {
                    tracing::warn!(node = %gone, "a cluster node stopped beating; removing its connections");
                    state.metrics.inc("confab_cluster_nodes_reaped_total", String::new());
                }
            }
            Err(e) => tracing::warn!(error = %e, "looking for dead cluster nodes"),
        }
        // Every node uncounts the dead nodes' connections; the per-user lock makes each
        // announcement happen once, whoever gets there first.
        for gone in state.store.presence_orphans().await.unwrap_or_default() {
            if let Err(e) = reap(&state, &gone).await {
                tracing::warn!(error = %e, node = %gone, "removing a dead node's connections");
            }
        }
        // Likewise their slash commands: each row is deleted, and announced, by one node.
        if let Err(e) = super::slash::reap(&state, None).await {
            tracing::warn!(error = %e, "removing dead nodes' slash commands");
        }
        if let Ok(live) = state.store.nodes_list().await {
            state.metrics.gauge_set("confab_cluster_nodes", String::new(), live.len() as i64);
            let live: HashSet<String> = live.into_iter().collect();
            // A node live at the last beat, or holding voice members here, that has no row now:
            // what it held in this node's memory goes, and what it may have changed without
            // telling anyone is read again (`commands::remote`).
            if let Some(cluster) = &state.cluster {
                let gone: BTreeSet<String> = known
                    .iter()
                    .cloned()
                    .chain(state.voice.remote_nodes())
                    .filter(|n| !live.contains(n) && *n != node)
                    .collect();
                for gone in gone {
                    cluster.apply_here(&Effect::NodeGone { node: gone });
                }
            }
            known = live;
        }
    }
}
