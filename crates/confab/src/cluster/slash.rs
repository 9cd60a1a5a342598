//! Slash commands across the nodes of a cluster (docs/cluster.md, "Slash commands"): each node
//! keeps its own connections' registrations and their pending calls in [`crate::hub::slash`], and
//! mirrors the registrations in the `cluster_slash` table, one row per (node, connection).
//!
//! A table rather than registrations re-announced over the control log: a node that starts later
//! reads what is registered instead of asking every node to repeat it (and waiting for answers it
//! cannot count); a name clash is judged under one lock against every node's rows, so two nodes
//! cannot both hand out a name; and a dead node's rows are deleted by one reaper, which announces
//! their `slash_remove` exactly once. Only listing, clash checks and finding another node's command
//! read the table; a call to a command of this node never does.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    domain::slash::{SlashCommand, parse_commands},
    error::Result,
    hub::{
        ConnId,
        slash::{Handler, Refused, clash},
    },
    state::AppState,
    store::slash::SlashRow,
    wire,
};

/// A command registered by a connection of another node.
pub struct Remote {
    pub node: String,
    pub conn: ConnId,
    pub username: String,
    pub command: SlashCommand,
}

fn row(node: &str, handler: &Handler, commands: &[SlashCommand]) -> SlashRow {
    let listed: Vec<Value> = commands.iter().map(|c| c.to_json(&handler.username)).collect();
    SlashRow {
        node_id: node.to_owned(),
        conn_id: handler.conn_id as i64,
        user_id: handler.user_id.clone(),
        username: handler.username.clone(),
        commands: Value::Array(listed).to_string(),
    }
}

/// The commands of a row (a row this code wrote parses; anything else counts as none).
fn commands_of(listed: &str) -> Vec<SlashCommand> {
    serde_json::from_str::<Value>(listed).ok().and_then(|v| parse_commands(Some(&v)).ok()).unwrap_or_default()
}

/// Stores `handler`'s registration of `commands` (none: removes it) on `node`, unless it clashes
/// with a registration of another connection on any node.
pub async fn claim(
    state: &AppState,
    node: &str,
    handler: &Handler,
    commands: &[SlashCommand],
) -> Result<std::result::Result<(), Refused>> {
    let row = row(node, handler, commands);
    state
        .store
        .slash_claim(&row, !commands.is_empty(), |others| {
            others.iter().try_for_each(|other| {
                let theirs = commands_of(&other.commands);
                match clash(&handler.user_id, commands, &other.user_id, theirs.iter().map(|c| c.name.as_str())) {
                    Some(refused) => Err(refused),
                    None => Ok(()),
                }
            })
        })
        .await
}

/// A connection of this node that held `names` closed: its row is deleted (retried while the
/// database is away), then `slash_remove` goes to every node. During shutdown the row stays: it
/// goes, and is announced, when the node is reaped, as its presence does.
pub fn release(state: &AppState, node: &str, conn_id: ConnId, names: Vec<String>) {
    let (state, node) = (state.clone(), node.to_owned());
    tokio::spawn(async move {
        let retry = Duration::from_millis(state.config.cluster.heartbeat_ms);
        while !state.shutdown.is_cancelled() {
            match state.store.slash_release(&node, conn_id as i64).await {
                Ok(()) => return removed(&state, names),
                Err(e) => {
                    tracing::warn!(error = %e, conn_id, "removing a slash registration; retrying");
                    tokio::time::sleep(retry).await;
                }
            }
        }
    });
}

/// S→A `slash_remove` of `names`.
fn removed(state: &AppState, names: Vec<String>) {
    if !names.is_empty() {
        state.to_all(wire::packet("slash_remove", json!({"commands": names})), None, false);
    }
}

/// The commands registered on the nodes other than `node`, with who registered each.
pub async fn elsewhere(state: &AppState, node: &str) -> Result<Vec<(SlashCommand, String)>> {
    Ok(state
        .store
        .slash_elsewhere(node)
        .await?
        .into_iter()
        .flat_map(|row| commands_of(&row.commands).into_iter().map(move |c| (c, row.username.clone())))
        .collect())
}

/// The command called `name` if a connection of another node than `node` registered it.
pub async fn find(state: &AppState, node: &str, name: &str) -> Result<Option<Remote>> {
    Ok(state.store.slash_elsewhere(node).await?.into_iter().find_map(|row| {
        let command = commands_of(&row.commands).into_iter().find(|c| c.name == name)?;
        Some(Remote { node: row.node_id, conn: row.conn_id as ConnId, username: row.username, command })
    }))
}

/// Deletes the rows `node` (an earlier run under this id, with `Some`) or the dead nodes (`None`)
/// left, and announces their `slash_remove`: each row is deleted, so announced, by one node only.
pub async fn reap(state: &AppState, node: Option<&str>) -> Result<()> {
    let names: Vec<String> = state
        .store
        .slash_drop_nodes(node)
        .await?
        .iter()
        .flat_map(|listed| commands_of(listed).into_iter().map(|c| c.name))
        .collect();
    removed(state, names);
    Ok(())
}

/// After another node declared this one dead and deleted its rows: puts back the registrations
/// its connections still hold and announces them again with `slash_add`. Not judged again: a
/// name another node took meanwhile is then held twice (calls go to whichever row is read first)
/// until one of the two connections closes.
pub async fn rejoin(state: &AppState, node: &str) -> Result<()> {
    for (handler, commands) in state.slash.registrations() {
        state.store.slash_put(&row(node, &handler, &commands)).await?;
        let added: Vec<Value> = commands.iter().map(|c| c.to_json(&handler.username)).collect();
        state.to_all(wire::packet("slash_add", json!({"commands": added})), None, false);
    }
    Ok(())
}
