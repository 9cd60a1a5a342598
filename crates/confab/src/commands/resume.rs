//! `resume` (PROTOCOL §7.2): replay what a reconnecting client missed, per channel, from the log.
//!
//! Live events of the resumed channels are set aside in the connection's queue before the log is
//! read, the log is replayed, `resumed` is sent, and only then are the set-aside events released —
//! those the replay already covered are dropped. Events this connection already received live
//! (between `ready` and `resume`) are not replayed again. Nothing is lost and nothing is sent twice;
//! a client that resumes as its first command after `ready` also gets every channel in seq order.

use std::collections::{HashMap, HashSet};

use confab_proto::Frame;
use serde_json::{Map, Value, json};

use crate::{
    error::{Error, Result},
    gateway::Session,
    hub::Pushed,
    wire,
};

/// Most channels in one `resume` frame.
const MAX_CHANNELS: usize = 100;
/// Most events replayed for one channel; more makes the channel stale.
pub const MAX_EVENTS: i64 = 5000;

/// `resume {channels: {name: last seq seen}}` → replayed events, then `resumed`.
pub async fn resume(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?.clone();
    let state = s.state.clone();
    let invalid = || Error::bad_request("Invalid resume request");
    let Some(Value::Object(requested)) = frame.get("channels") else { return Err(invalid()) };
    if requested.len() > MAX_CHANNELS {
        return Err(Error::bad_request("Too many channels in resume"));
    }
    let mut wanted = Vec::with_capacity(requested.len());
    for (name, seq) in requested {
        let seq = seq.as_i64().filter(|n| *n >= 0).ok_or_else(invalid)?;
        wanted.push((name.clone(), seq));
    }
    let dir = state.directory();
    let mut unknown = Vec::new();
    let mut targets = Vec::new();
    for (name, seq) in wanted {
        match dir.channel(&name) {
            Some(c) if me.actor.channel_allows(&c.perms, "view") && matches!(c.row.kind.as_str(), "text" | "forum") => {
                targets.push((name, c.row.id.clone(), seq));
            }
            _ => unknown.push(name),
        }
    }

    let live_from = s.outbox.hold(targets.iter().map(|t| t.1.clone()).collect::<HashSet<_>>());
    let mut covered_by_id = HashMap::new();
    let mut covered = Map::new();
    let mut stale = Vec::new();
    let outcome: Result<()> = async {
        for (name, channel_id, after) in &targets {
            let current = state.store.channel_seq(channel_id).await?;
            let pruned = state.store.events_min_seq(channel_id).await?.map_or(current > *after, |min| min > after + 1);
            let pending = state.store.events_count_after(channel_id, *after).await?;
            if *after > current || pruned || pending > MAX_EVENTS {
                stale.push(name.clone());
                covered.insert(name.clone(), json!(current));
                covered_by_id.insert(channel_id.clone(), current);
                continue;
            }
            // Events from the first one this connection received live on were delivered already.
            let live_from = live_from.get(channel_id).copied().unwrap_or(i64::MAX);
            for (seq, payload) in state.store.events_after(channel_id, *after, MAX_EVENTS).await? {
                // Only up to `current`: what committed after it is in the set-aside buffer.
                if seq < live_from && seq <= current {
                    s.send(wire::with_fields(&payload, &[("replay", json!(true))]));
                }
            }
            // Everything up to `current` is covered: later events are in the set-aside buffer.
            covered.insert(name.clone(), json!(current));
            covered_by_id.insert(channel_id.clone(), current);
        }
        Ok(())
    }
    .await;
    if let Err(e) = outcome {
        // Hand back whatever was set aside so the connection misses nothing, then report.
        let all: HashMap<String, i64> = HashMap::new();
        s.outbox.release(&all);
        return Err(e);
    }
    s.reply(frame, "resumed", json!({"channels": covered, "stale": stale, "unknown": unknown}));
    if s.outbox.release(&covered_by_id) == Pushed::Overflow {
        state.hub.account(&s.outbox, Pushed::Overflow);
    }
    Ok(())
}
