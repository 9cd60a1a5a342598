//! Voice channels (PROTOCOL §6.6): `voice_join`, `voice_leave`, `voice_mute`, `voice_unmute`,
//! `voice_state`, the cleanup when a socket closes, and the Confab extension `voice_signal`,
//! which relays WebRTC offers, answers and ICE candidates between participants of one voice
//! channel (docs/voice.md). Participants see each other's `peer_id`; other viewers do not.
//!
//! In cluster mode every change is also told to the other nodes (`Effect::Voice*`), which apply
//! it to their copy of the membership and announce it to their own viewers; a signal for a member
//! on another node is relayed through its node.

use confab_proto::Frame;
use serde_json::{Value, json};

use crate::{
    cluster::control::{Effect, VoiceMember},
    error::{Error, Result},
    gateway::Session,
    hub::{ConnId, Packet, voice::Participant},
    state::{AppState, ChannelEntry},
    wire,
};

/// Longest `peer_id`, in characters.
const PEER_ID_MAX: usize = 128;
/// Largest relayed signalling payload, in bytes of JSON (an SDP offer is a few KiB).
const SIGNAL_MAX: usize = 16_384;

/// A participant entry; `peer_id` only for viewers who are participants themselves.
fn entry(p: &Participant, with_peer: bool) -> Value {
    let mut e = json!({"id": p.user_id, "username": p.username, "muted": p.muted});
    if with_peer {
        e["peer_id"] = json!(p.peer_id);
    }
    e
}

/// `voice_state` of a voice channel in `channels_get`: who is in it, without peer ids.
pub fn listed(state: &AppState, channel_id: &str) -> Value {
    let list: Vec<Value> =
        state.voice.in_channel(channel_id).iter().map(|p| json!({"username": p.username, "muted": p.muted})).collect();
    Value::Array(list)
}

/// Sends `{cmd, channel, user}` about `p` to every viewer of its channel except `except`:
/// participants' copies carry the `peer_id`.
fn announce(state: &AppState, cmd: &str, p: &Participant, except: Option<ConnId>) {
    let fields = |with_peer| json!({"channel": p.channel_name, "user": entry(p, with_peer)});
    let (inner, outer) =
        (Packet::from(wire::packet(cmd, fields(true))), Packet::from(wire::packet(cmd, fields(false))));
    let inside: Vec<ConnId> =
        state.voice.in_channel(&p.channel_id).iter().filter(|q| q.node.is_none()).map(|q| q.conn_id).collect();
    state.hub.to_channel_each(&p.channel_id, |id| match id {
        id if Some(id) == except => None,
        id if inside.contains(&id) => Some(&inner),
        _ => Some(&outer),
    });
}

/// Tells the viewers of `p`'s channel (except `except`) that `p` left.
fn announce_left(state: &AppState, p: &Participant, except: Option<ConnId>) {
    let packet =
        Packet::from(wire::packet("voice_user_left", json!({"channel": p.channel_name, "username": p.username})));
    state.hub.to_channel_each(&p.channel_id, |id| (Some(id) != except).then_some(&packet));
}

/// Tells the other nodes of a cluster what `make` says, given this node's id.
fn tell(state: &AppState, make: impl FnOnce(String) -> Effect) {
    if let Some(cluster) = &state.cluster {
        cluster.tell(state, &make(cluster.node_id().to_owned()));
    }
}

/// Who holds a membership, as the other nodes name it: its node (this one when `None`) and that
/// node's connection id.
fn holder(state: &AppState, p: &Participant) -> Option<(String, ConnId)> {
    let cluster = state.cluster.as_ref()?;
    Some((p.node.clone().unwrap_or_else(|| cluster.node_id().to_owned()), p.conn_id))
}

/// `node` as this node's voice table names it: `None` for this node itself.
fn here<'a>(state: &AppState, node: &'a str) -> Option<&'a str> {
    (state.cluster.as_ref().map(|c| c.node_id()) != Some(node)).then_some(node)
}

fn member(p: &Participant, node: String) -> VoiceMember {
    VoiceMember {
        user_id: p.user_id.clone(),
        username: p.username.clone(),
        channel_id: p.channel_id.clone(),
        channel_name: p.channel_name.clone(),
        node,
        conn_id: p.conn_id,
        peer_id: p.peer_id.clone(),
        muted: p.muted,
    }
}

/// Another node's member joined (or, `quiet`, is told to this node after its start).
pub fn joined_elsewhere(state: &AppState, m: VoiceMember, quiet: bool) {
    let p = Participant {
        user_id: m.user_id,
        username: m.username,
        channel_id: m.channel_id,
        channel_name: m.channel_name,
        conn_id: m.conn_id,
        outbox: None,
        node: Some(m.node),
        peer_id: m.peer_id,
        muted: m.muted,
    };
    let (before, _) = state.voice.join(p.clone());
    if quiet {
        return;
    }
    if let Some(before) = before {
        moved_away(state, &before, None);
    }
    announce(state, "voice_user_joined", &p, None);
}

/// The membership held by `conn_id` of `node` ended there.
pub fn left_elsewhere(state: &AppState, node: &str, conn_id: ConnId) {
    if let Some(p) = state.voice.leave_conn(here(state, node), conn_id) {
        announce_left(state, &p, None);
    }
}

/// The member held by `conn_id` of `node` (un)muted.
pub fn muted_elsewhere(state: &AppState, node: &str, conn_id: ConnId, muted: bool) {
    let node = here(state, node);
    let found = state.voice.all().into_iter().find(|p| p.conn_id == conn_id && p.node.as_deref() == node);
    if let Some(p) = found.and_then(|p| state.voice.set_muted(&p.user_id, muted)) {
        announce(state, "voice_user_updated", &p, None);
    }
}

/// A signal relayed by another node for the member held by `conn_id` of `node`, if that is this
/// node and the member is still there.
pub fn signal_from_elsewhere(state: &AppState, node: &str, conn_id: ConnId, packet: String) {
    if here(state, node).is_some() {
        return;
    }
    let found = state.voice.local().into_iter().find(|p| p.conn_id == conn_id);
    if let Some(out) = found.and_then(|p| p.outbox) {
        state.hub.deliver(&out, &Packet::from(packet), false);
    }
}

/// Tells the other nodes (a new one among them) every member connected to this node.
pub fn tell_members(state: &AppState) {
    for p in state.voice.local() {
        tell(state, |node| Effect::VoiceJoin { member: member(&p, node), quiet: true });
    }
}

/// `node` died: its members leave, and this node's viewers are told.
pub fn node_gone(state: &AppState, node: &str) {
    for p in state.voice.leave_node(node) {
        announce_left(state, &p, None);
    }
}

/// `before` was replaced by a membership elsewhere: its viewers learn it left, and its connection,
/// if it is on this node and is not `joined_by`, gets `voice_leave`.
fn moved_away(state: &AppState, before: &Participant, joined_by: Option<ConnId>) {
    announce_left(state, before, None);
    if let Some(out) = before.outbox.as_ref().filter(|_| Some(before.conn_id) != joined_by) {
        let moved = wire::packet("voice_leave", json!({"channel": before.channel_name}));
        state.hub.deliver(out, &Packet::from(moved), false);
    }
}

/// The voice channel a frame names, if the requester may view it.
fn voice_channel(s: &Session, frame: &Frame) -> Result<ChannelEntry> {
    let Some(name) = frame.str("channel").filter(|n| !n.is_empty()) else {
        return Err(Error::bad_request("Channel name is required"));
    };
    let dir = s.state.directory();
    let channel = dir.channel(name).filter(|c| s.me().is_ok_and(|me| me.actor.channel_allows(&c.perms, "view")));
    let channel = channel.ok_or_else(|| Error::forbidden("You do not have permission to access this voice channel"))?;
    if channel.row.kind != "voice" {
        return Err(Error::bad_request("This is not a voice channel"));
    }
    Ok(channel.clone())
}

/// `voice_join {channel, peer_id}` (`view` and `connect`): leaves any other voice channel first
/// (the connection that held it gets `voice_leave`), then tells the other viewers.
pub async fn join(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?.clone();
    let peer_id = match frame.get("peer_id") {
        Some(Value::String(p)) if !p.trim().is_empty() && p.chars().count() <= PEER_ID_MAX => p.clone(),
        _ => return Err(Error::bad_request("Peer ID is required")),
    };
    let channel = voice_channel(s, frame)?;
    if !me.actor.has_in(&channel.perms, "connect") {
        return Err(Error::forbidden("You do not have permission to access this voice channel"));
    }
    let state = s.state.clone();
    let joined = Participant {
        user_id: me.user.id.clone(),
        username: me.user.username.clone(),
        channel_id: channel.row.id.clone(),
        channel_name: channel.row.name.clone(),
        conn_id: s.conn_id,
        outbox: Some(s.outbox.clone()),
        node: None,
        peer_id,
        muted: false,
    };
    let (before, others) = state.voice.join(joined.clone());
    let others: Vec<Value> =
        others.iter().map(|p| json!({"username": p.username, "peer_id": p.peer_id, "muted": p.muted})).collect();
    if let Some(before) = before {
        moved_away(&state, &before, Some(s.conn_id));
    }
    announce(&state, "voice_user_joined", &joined, Some(s.conn_id));
    tell(&state, |node| Effect::VoiceJoin { member: member(&joined, node), quiet: false });
    s.reply(
        frame,
        "voice_join",
        json!({"channel": channel.row.name, "participants": others,
               "ice_servers": state.config.voice.ice_servers}),
    );
    Ok(())
}

/// The requester's membership for leave and mute: it must exist, be in the named channel (when
/// one is named) and that channel must still exist.
fn membership(s: &Session, frame: &Frame) -> Result<Participant> {
    let me = s.me()?;
    let p = s.state.voice.of_user(&me.user.id).ok_or_else(|| Error::not_found("You are not in a voice channel"))?;
    if frame.str("channel").is_some_and(|c| !c.eq_ignore_ascii_case(&p.channel_name)) {
        return Err(Error::not_found("You are not in this voice channel"));
    }
    if !s.state.directory().channels.iter().any(|c| c.row.id == p.channel_id) {
        s.state.voice.leave(&p.user_id);
        return Err(Error::not_found("Voice channel no longer exists"));
    }
    Ok(p)
}

/// `voice_leave {channel?}`.
pub async fn leave(s: &mut Session, frame: &Frame) -> Result<()> {
    let p = membership(s, frame)?;
    s.state.voice.leave(&p.user_id);
    announce_left(&s.state, &p, None);
    if let Some((node, conn_id)) = holder(&s.state, &p) {
        s.state.everywhere(Effect::VoiceLeave { node, conn_id }, None);
    }
    s.reply(frame, "voice_leave", json!({"channel": p.channel_name}));
    Ok(())
}

/// `voice_mute` / `voice_unmute {channel?}`.
pub async fn mute(s: &mut Session, frame: &Frame, muted: bool) -> Result<()> {
    let p = membership(s, frame)?;
    let p =
        s.state.voice.set_muted(&p.user_id, muted).ok_or_else(|| Error::not_found("You are not in a voice channel"))?;
    announce(&s.state, "voice_user_updated", &p, None);
    if let Some((node, conn_id)) = holder(&s.state, &p) {
        s.state.everywhere(Effect::VoiceMute { node, conn_id, muted }, None);
    }
    let cmd = if muted { "voice_mute" } else { "voice_unmute" };
    s.reply(frame, cmd, json!({"channel": p.channel_name, "muted": muted}));
    Ok(())
}

/// `voice_state {channel}`: the participants, with `peer_id` for a caller who is one of them.
pub async fn voice_state(s: &mut Session, frame: &Frame) -> Result<()> {
    let channel = voice_channel(s, frame)?;
    let list = s.state.voice.in_channel(&channel.row.id);
    let inside = list.iter().any(|p| p.conn_id == s.conn_id);
    let participants: Vec<Value> = list.iter().map(|p| entry(p, inside)).collect();
    s.reply(frame, "voice_state", json!({"channel": channel.row.name, "participants": participants}));
    Ok(())
}

/// `voice_signal {to, data}` [ext]: relays `data` (an offer, answer or ICE candidate, opaque to
/// the server) to participant `to` of the sender's voice channel, as
/// `{"cmd":"voice_signal","channel","from","from_peer_id","data"}` on the connection that joined.
pub async fn signal(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?.clone();
    let from = s.state.voice.of_user(&me.user.id).filter(|p| p.node.is_none() && p.conn_id == s.conn_id);
    let from = from.ok_or_else(|| Error::not_found("You are not in a voice channel"))?;
    let Some(to) = frame.str("to").filter(|t| !t.is_empty()) else {
        return Err(Error::bad_request("Recipient (to) is required"));
    };
    let data =
        frame.get("data").filter(|d| !d.is_null()).ok_or_else(|| Error::bad_request("Signal data is required"))?;
    if data.to_string().len() > SIGNAL_MAX {
        return Err(Error::new(
            confab_proto::ErrorCode::TooLarge,
            format!("Signal data too large (max {SIGNAL_MAX} bytes)"),
        ));
    }
    let target = s.state.voice.in_channel(&from.channel_id).into_iter().find(|p| p.username.eq_ignore_ascii_case(to));
    let target = target.filter(|p| p.user_id != from.user_id);
    let target = target.ok_or_else(|| Error::not_found("Recipient is not in your voice channel"))?;
    let packet = wire::packet(
        "voice_signal",
        json!({"channel": from.channel_name, "from": from.username, "from_peer_id": from.peer_id, "data": data}),
    );
    match (&target.outbox, holder(&s.state, &target)) {
        (Some(out), _) => s.state.hub.deliver(out, &Packet::from(packet), false),
        (None, Some((node, conn_id))) => s.state.everywhere(Effect::VoiceSignal { node, conn_id, packet }, None),
        (None, None) => {}
    }
    s.reply(frame, "voice_signal", json!({"to": target.username, "delivered": true}));
    Ok(())
}

/// Ends the voice membership of a closed connection and tells the channel's viewers.
pub fn connection_closed(state: &AppState, conn_id: ConnId) {
    if let Some(p) = state.voice.leave_conn(None, conn_id) {
        announce_left(state, &p, None);
        tell(state, |node| Effect::VoiceLeave { node, conn_id });
    }
}
