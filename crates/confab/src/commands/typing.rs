//! `typing` (PROTOCOL §6.1): an ephemeral, droppable broadcast; not stored and without seq.

use confab_proto::Frame;
use serde_json::json;

use super::target::{has_target, resolve};
use crate::{cluster::control::Effect, error::Result, gateway::Session, wire};

/// `typing {channel|thread_id}` → G S→V(ch).
pub async fn typing(s: &mut Session, frame: &Frame) -> Result<()> {
    if !has_target(frame) {
        return Err(crate::error::Error::bad_request("Channel name or thread_id not provided"));
    }
    let me = s.me()?.clone();
    let dir = s.state.directory();
    let target = resolve(s, frame, &dir).await?;
    let channel = target.channel;
    if target.thread.is_some() && !me.actor.channel_allows(&channel.perms, "send") {
        return Err(crate::error::Error::forbidden("You do not have permission to send messages in this thread"));
    }
    let packet = wire::packet(
        "typing",
        json!({"channel": channel.row.name, "user": me.user.username, "thread_id": target.thread_json(), "global": true}),
    );
    s.state.everywhere(Effect::Typing { channel: channel.row.id.clone(), packet: packet.clone() }, Some(s.conn_id));
    s.send(wire::with_listener(&packet, frame.listener()));
    Ok(())
}
