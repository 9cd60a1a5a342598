//! Voice channels (PROTOCOL §6.6): `voice_join`, `voice_leave`, `voice_mute`, `voice_unmute`,
//! `voice_state`, the cleanup when a socket closes, and the Confab extension `voice_signal`,
//! which relays WebRTC offers, answers and ICE candidates between participants of one voice
//! channel (docs/voice.md). Participants see each other's `peer_id`; other viewers do not.

use confab_proto::Frame;
use serde_json::{Value, json};

use crate::{
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
    let inside: Vec<ConnId> = state.voice.in_channel(&p.channel_id).iter().map(|q| q.conn_id).collect();
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
        outbox: s.outbox.clone(),
        peer_id,
        muted: false,
    };
    let (before, others) = state.voice.join(joined.clone());
    let others: Vec<Value> =
        others.iter().map(|p| json!({"username": p.username, "peer_id": p.peer_id, "muted": p.muted})).collect();
    if let Some(before) = before {
        announce_left(&state, &before, None);
        if before.conn_id != s.conn_id {
            let moved = wire::packet("voice_leave", json!({"channel": before.channel_name}));
            state.hub.deliver(&before.outbox, &Packet::from(moved), false);
        }
    }
    announce(&state, "voice_user_joined", &joined, Some(s.conn_id));
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
    s.reply(frame, "voice_leave", json!({"channel": p.channel_name}));
    Ok(())
}

/// `voice_mute` / `voice_unmute {channel?}`.
pub async fn mute(s: &mut Session, frame: &Frame, muted: bool) -> Result<()> {
    let p = membership(s, frame)?;
    let p =
        s.state.voice.set_muted(&p.user_id, muted).ok_or_else(|| Error::not_found("You are not in a voice channel"))?;
    announce(&s.state, "voice_user_updated", &p, None);
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
    let from = s.state.voice.of_user(&me.user.id).filter(|p| p.conn_id == s.conn_id);
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
    s.state.hub.deliver(&target.outbox, &Packet::from(packet), false);
    s.reply(frame, "voice_signal", json!({"to": target.username, "delivered": true}));
    Ok(())
}

/// Ends the voice membership of a closed connection and tells the channel's viewers.
pub fn connection_closed(state: &AppState, conn_id: ConnId) {
    if let Some(p) = state.voice.leave_conn(conn_id) {
        announce_left(state, &p, None);
    }
}
