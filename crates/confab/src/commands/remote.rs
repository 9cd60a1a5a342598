//! Other nodes' changes, applied to this node's connections (cluster mode, docs/cluster.md
//! "Control log"). The node that made a change has applied it to its own connections already;
//! here the same [`Effect`] reaches the rest, in the control log's order, through one task.
//! Deliveries and closes go straight to the hub; refreshes reread what changed from the database,
//! as the origin did; a slash call is routed by the node whose connection registered the command.

use tokio::sync::mpsc;

use super::{
    channels,
    connection::{self, Standing},
    roles, slash, users, voice,
};
use crate::{cluster::control::Effect, error::Result, hub::Packet, state::AppState};

/// Applies each effect as it comes, until shutdown.
pub async fn apply(state: AppState, mut effects: mpsc::UnboundedReceiver<Packet>) {
    loop {
        let next = tokio::select! {
            next = effects.recv() => next,
            () = state.shutdown.cancelled() => None,
        };
        let Some(body) = next else { break };
        let effect = match serde_json::from_str::<Effect>(&body) {
            Ok(effect) => effect,
            Err(e) => {
                tracing::warn!(error = %e, "an effect from another node that this node cannot read");
                continue;
            }
        };
        if let Err(e) = refresh(&state, effect).await {
            tracing::error!(error = %e, "applying another node's change");
        }
    }
}

/// Whether `node` is this node.
fn here(state: &AppState, node: &str) -> bool {
    state.cluster.as_ref().is_some_and(|c| c.node_id() == node)
}

/// Applies one effect here. Any of them may follow a change to accounts or roles, which this
/// node's cached member list cannot see: it is rebuilt on next use.
async fn refresh(state: &AppState, effect: Effect) -> Result<()> {
    state.store.members_changed();
    if effect.on_hub(&state.hub, None) {
        return Ok(());
    }
    match effect {
        Effect::Roles { visibility } => roles::roles_refresh(state, visibility).await,
        Effect::Channels => channels::directory_refresh(state).await,
        Effect::User { user } => channels::user_refresh(state, &user).await,
        Effect::Account { user } => {
            if let Some(user) = state.store.user_by_id(&user).await? {
                users::refresh_account(state, &user);
            }
            Ok(())
        }
        Effect::VoiceJoin { member, quiet } => {
            voice::joined_elsewhere(state, member, quiet);
            Ok(())
        }
        Effect::VoiceLeave { node, conn_id } => {
            voice::left_elsewhere(state, &node, conn_id);
            Ok(())
        }
        Effect::VoiceMute { node, conn_id, muted } => {
            voice::muted_elsewhere(state, &node, conn_id, muted);
            Ok(())
        }
        Effect::VoiceSignal { node, conn_id, packet } => {
            voice::signal_from_elsewhere(state, &node, conn_id, packet);
            Ok(())
        }
        Effect::VoiceSync => {
            voice::tell_members(state);
            Ok(())
        }
        Effect::NodeGone { node } => {
            voice::node_gone(state, &node);
            recheck(state).await
        }
        Effect::SlashCall { node, conn, call, packet, from_node, from } if here(state, &node) => {
            slash::routed_here(state, conn, call, &packet, from_node, from);
            Ok(())
        }
        Effect::ToConn { node, conn, packet } if here(state, &node) => {
            if let Some(conn) = state.hub.connection(conn) {
                state.hub.deliver(&conn.outbox, &Packet::from(packet), false);
            }
            Ok(())
        }
        Effect::SlashCall { .. } | Effect::ToConn { .. } => Ok(()),
        Effect::Close { .. } | Effect::ToAll { .. } | Effect::ToUser { .. } | Effect::Typing { .. } => Ok(()),
    }
}

/// After another node died: it may have committed a change and died before logging it
/// (docs/cluster.md, "Control log"), so this node rereads what such a change could have touched —
/// roles and channels (fresh lists to every connection), and each connected account with the
/// credential it logged in with, closing the connections a ban, a deletion or a revocation ended.
/// One or two queries per distinct account and credential; a node dies rarely.
async fn recheck(state: &AppState) -> Result<()> {
    roles::roles_refresh(state, true).await?;
    let mut seen = std::collections::HashSet::new();
    for conn in state.hub.connections() {
        if !seen.insert((conn.user_id.clone(), conn.session_id.clone())) {
            continue;
        }
        let identity = conn.identity();
        match connection::standing(state, &identity).await? {
            Standing::Closed(order) => {
                let (user, session) = (&conn.user_id, &conn.session_id);
                state.hub.close_where(|c| &c.user_id == user && &c.session_id == session, &order);
            }
            Standing::Live(fresh) => users::refresh_account(state, &fresh),
        }
    }
    Ok(())
}
