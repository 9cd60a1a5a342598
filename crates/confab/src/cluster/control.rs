//! What one node's change does to live connections on the other nodes (docs/cluster.md, "Control
//! log"). The node that made the change applies it to its own connections at once; every other
//! node applies the same [`Effect`] when it arrives — over the broker, or read from the
//! `cluster_events` log when the broker lost it. Effects that must not be lost or repeated (closes,
//! refreshes, server-wide packets, presence) are numbered in that log and applied exactly once, in
//! order; typing only crosses the broker.

use serde::{Deserialize, Serialize};

use crate::{
    hub::{CloseOrder, Conn, ConnId, Hub, Packet, slash::PendingCall},
    identity::{Credential, credential},
};

/// The sequencer's key of the control log, beside channel ids (which are UUIDs, never this).
pub const LOG: &str = "~control";

/// Which connections a close applies to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Who {
    /// Every connection of an account (ban, kick, deleted account, bot token regenerated).
    User(String),
    /// Every connection of one session family (a revoked refresh family).
    Session(String),
    /// An account's connections that logged in with a SAUTH2 token.
    SauthOf(String),
}

impl Who {
    pub fn matches(&self, conn: &Conn) -> bool {
        match self {
            Who::User(user) => conn.user_id == *user,
            Who::Session(session) => conn.session_id.as_deref() == Some(session.as_str()),
            Who::SauthOf(user) => {
                conn.user_id == *user
                    && conn.session_id.as_deref().is_some_and(|s| matches!(credential(s), Credential::Sauth(_)))
            }
        }
    }
}

/// A voice member as the other nodes learn of it: its node and that node's connection id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoiceMember {
    pub user_id: String,
    pub username: String,
    pub channel_id: String,
    pub channel_name: String,
    pub node: String,
    pub conn_id: ConnId,
    pub peer_id: String,
    pub muted: bool,
}

/// A change every node applies to its own connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "e", rename_all = "snake_case")]
pub enum Effect {
    /// Close the matching connections with `order`.
    Close { who: Who, order: CloseOrder },
    /// A packet for every connection, except those of `but_user`.
    ToAll { packet: String, but_user: Option<String>, droppable: bool },
    /// A packet for every connection of one account (but the requester's, on the node it is on).
    ToUser { user: String, packet: String },
    /// A typing notice for a channel's viewers.
    Typing { channel: String, packet: String },
    /// Roles changed: reload them, rebuild every identity, send `roles_list`; with `visibility`,
    /// re-resolve channel audiences and send fresh channel lists too.
    Roles { visibility: bool },
    /// The channel list changed: reload it, re-resolve audiences, send fresh channel lists.
    Channels,
    /// One account's roles or name changed: rebuild its identities and audiences.
    User { user: String },
    /// One account's row changed (status, avatar, nickname, timeout): its connections see it.
    Account { user: String },
    /// A member joined a voice channel (leaving any other); `quiet`: an existing membership told
    /// again to a node that has just started, not announced.
    VoiceJoin { member: VoiceMember, quiet: bool },
    /// The voice membership held by `conn_id` of `node` ended.
    VoiceLeave { node: String, conn_id: ConnId },
    /// The voice member held by `conn_id` of `node` (un)muted.
    VoiceMute { node: String, conn_id: ConnId, muted: bool },
    /// A relayed WebRTC signal for the voice member held by `conn_id` of `node`.
    VoiceSignal { node: String, conn_id: ConnId, packet: String },
    /// A node has just started: every other node tells it its voice members (quietly).
    VoiceSync,
    /// `node` stopped beating, or started again under the same id: forget what it held. Found by
    /// each node for itself, or sent by the node itself when it starts.
    NodeGone { node: String },
    /// A call of a slash command registered by connection `conn` of node `node`: that node
    /// records `call` as pending on the connection (so its `slash_response` is matched there)
    /// and sends it `packet`, or tells the invoker's connection `from` of node `from_node` that the
    /// handler is gone. Logged, so the call is delivered once even if the broker drops it.
    SlashCall { node: String, conn: ConnId, call: PendingCall, packet: String, from_node: String, from: ConnId },
    /// A packet for connection `conn` of node `node` (connection ids are per node).
    ToConn { node: String, conn: ConnId, packet: String },
}

impl Effect {
    /// Whether the effect goes through the control log (never lost) rather than the broker only.
    pub fn durable(&self) -> bool {
        !matches!(self, Effect::Typing { .. })
    }

    /// Applies a delivery or a close to `hub`'s connections (but `except`, the requester's on the
    /// node that made it); `false` for the rest — refreshes, which need the database, and effects
    /// on one node's connections or memory, which need more than the hub (the caller runs them).
    pub fn on_hub(&self, hub: &Hub, except: Option<ConnId>) -> bool {
        match self {
            Effect::Close { who, order } => {
                hub.close_where(|c| who.matches(c), order);
            }
            Effect::ToAll { packet, but_user: None, droppable } => {
                hub.to_all(&Packet::from(packet.as_str()), except, *droppable);
            }
            Effect::ToAll { packet, but_user: Some(user), droppable } => {
                hub.to_all_but_user(&Packet::from(packet.as_str()), user, *droppable);
            }
            Effect::ToUser { user, packet } => {
                let packet = Packet::from(packet.as_str());
                for conn in hub.connections_of(user).iter().filter(|c| Some(c.id) != except) {
                    hub.deliver(&conn.outbox, &packet, false);
                }
            }
            Effect::Typing { channel, packet } => {
                hub.to_channel_droppable(channel, &Packet::from(packet.as_str()), except)
            }
            _ => return false,
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effects_round_trip_and_typing_is_not_logged() {
        let close = Effect::Close { who: Who::SauthOf("u1".into()), order: CloseOrder::revoked() };
        let text = serde_json::to_string(&close).unwrap();
        assert_eq!(serde_json::from_str::<Effect>(&text).unwrap(), close);
        assert!(close.durable());
        assert!(!Effect::Typing { channel: "c".into(), packet: "{}".into() }.durable());
        assert!(Effect::ToAll { packet: "{}".into(), but_user: None, droppable: true }.durable());
        assert!(Effect::ToAll { packet: "{}".into(), but_user: None, droppable: false }.durable());
        let call = PendingCall {
            call_id: "c1".into(),
            invoker_id: "u1".into(),
            invoker_name: "alice".into(),
            channel_id: "general".into(),
            command: "roll".into(),
        };
        let routed = Effect::SlashCall {
            node: "n1".into(),
            conn: 7,
            call,
            packet: "{}".into(),
            from_node: "n2".into(),
            from: 3,
        };
        let text = serde_json::to_string(&routed).unwrap();
        assert_eq!(serde_json::from_str::<Effect>(&text).unwrap(), routed);
        assert!(routed.durable(), "a call is delivered once");
    }
}
