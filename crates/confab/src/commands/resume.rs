//! `resume` (PROTOCOL §7.2): replay what a reconnecting client missed, per channel, from the log.
//!
//! Each resumed channel gets one cut-over point on the connection: live events of the channel are
//! set aside before the log is read, the log is replayed from the client's seq to its end (the cut),
//! `resumed` is sent, and then only live events above the cut are delivered — set-aside ones and
//! ones still on their way alike. Everything at or below the cut comes from the log, everything above
//! it live, each exactly once, so "replay, `resumed`, what follows" is complete and in seq order.
//! Live events that reached the connection before the `resume` are replayed again (§7.2).

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

    s.outbox.hold(targets.iter().map(|t| t.1.clone()).collect::<HashSet<_>>());
    let mut cuts = HashMap::new();
    let mut covered = Map::new();
    let mut stale = Vec::new();
    let outcome: Result<()> = async {
        for (name, channel_id, after) in &targets {
            let cut = match replay(s, channel_id, *after).await? {
                Replay::Done { cut } => cut,
                Replay::Stale { current } => {
                    stale.push(name.clone());
                    current
                }
            };
            covered.insert(name.clone(), json!(cut));
            cuts.insert(channel_id.clone(), cut);
        }
        Ok(())
    }
    .await;
    if let Err(e) = outcome {
        // Hand back whatever was set aside so the connection misses nothing, then report.
        s.outbox.release(&HashMap::new());
        return Err(e);
    }
    s.reply(frame, "resumed", json!({"channels": covered, "stale": stale, "unknown": unknown}));
    if s.outbox.release(&cuts) == Pushed::Overflow {
        state.hub.account(&s.outbox, Pushed::Overflow);
    }
    Ok(())
}

/// What [`replay`] did for one channel.
enum Replay {
    /// Replayed the log up to `cut`, the last seq read.
    Done { cut: i64 },
    /// Nothing replayed: the log no longer reaches back to the client's seq, the client is ahead of
    /// the channel, or more than [`MAX_EVENTS`] events would be replayed. The client refetches with
    /// `messages_get`, which sees at least what was committed at `current`, so `current` is the cut.
    Stale { current: i64 },
}

/// Replays the log of one channel after `after`.
///
/// The log is read in one statement, so it is a prefix of the channel's events: a channel's commits
/// happen in seq order (its row is locked to take a seq), and the read sees all of them up to some
/// point. Everything after that point commits after the read began, so after the hold: it is set
/// aside or arrives later, and is delivered live.
async fn replay(s: &Session, channel_id: &str, after: i64) -> Result<Replay> {
    let store = &s.state.store;
    let current = store.channel_seq(channel_id).await?;
    let pruned = store.events_min_seq(channel_id).await?.map_or(current > after, |min| min > after + 1);
    if after > current || pruned {
        return Ok(Replay::Stale { current });
    }
    let log = store.events_after(channel_id, after, MAX_EVENTS + 1).await?;
    if log.len() > MAX_EVENTS as usize {
        return Ok(Replay::Stale { current });
    }
    for (_, payload) in &log {
        // Events about messages deleted since are read (they move the cut) but not sent.
        if let Some(payload) = payload {
            s.send(wire::with_fields(payload, &[("replay", json!(true))]));
        }
    }
    Ok(Replay::Done { cut: log.last().map_or(after, |(seq, _)| *seq) })
}
