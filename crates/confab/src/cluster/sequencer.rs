//! The per-node, per-channel sequencer (docs/cluster.md): events reach this node from its own
//! writer and from other nodes over the broker, and events of one channel committed on two nodes
//! can arrive in either order, or not at all (the broker is at most once). Every committed seq of
//! a channel is in the `events` table with no hole (the counter row is locked to the commit), so
//! the sequencer hands each channel's events to the hub strictly in seq order, holds back those
//! that come early, and leaves the missing ones to be read from the database ([`Sequencer::missing`]).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
};

use tokio::sync::mpsc;

use super::control::LOG;
use crate::hub::{ConnId, Hub, Outbox, Packet, Wakes};

/// One event for the hub: the packet for the channel's viewers (`None`: an event of a message
/// deleted since, stepped over), the connection that gets `own` instead (the requester, with its
/// `listener`) on the node that committed it.
pub struct Item {
    pub packet: Option<Packet>,
    pub except: Option<ConnId>,
    pub own: Option<(Outbox, Packet)>,
}

impl Item {
    /// An event as another node or the database gives it: for every viewer.
    pub fn shared(packet: Option<Packet>) -> Item {
        Item { packet, except: None, own: None }
    }
}

/// Where one channel stands.
struct Chan {
    /// The next seq to deliver.
    next: i64,
    /// The channel's last seq in the database at the previous tail sync.
    seen: i64,
    /// Events that came ahead of `next`.
    early: BTreeMap<i64, Item>,
    /// A read from the database for this channel is armed or running.
    filling: bool,
}

impl Chan {
    fn at(last: i64) -> Chan {
        Chan { next: last + 1, seen: last, early: BTreeMap::new(), filling: false }
    }
}

/// Channel id → where it stands. A channel it has not heard of was created after the node
/// started (the start reads every channel's seq): it starts at seq 1. The control log is one more
/// stream, [`LOG`], whose events go to the task that applies effects instead of to the hub.
pub struct Sequencer {
    channels: Mutex<HashMap<String, Chan>>,
    effects: mpsc::UnboundedSender<Packet>,
}

impl Sequencer {
    /// A sequencer handing the control log's effects to `effects`.
    pub fn new(effects: mpsc::UnboundedSender<Packet>) -> Sequencer {
        Sequencer { channels: Mutex::default(), effects }
    }

    /// Hands an effect to the task that applies them (an ephemeral one, which has no seq).
    pub fn apply(&self, effect: Packet) {
        let _ = self.effects.send(effect);
    }

    /// Starts every channel after its last committed seq.
    pub fn start_at(&self, seqs: Vec<(String, i64)>) {
        let mut channels = self.lock();
        for (id, last) in seqs {
            channels.insert(id, Chan::at(last));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Chan>> {
        self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes event `seq` of `channel`: delivers it and any early ones it unblocks, holds it back
    /// if it is early, drops it if already delivered (the requester's own reply is still given:
    /// its answer must not be lost to a database read that came first). `true` when a read from
    /// the database should be armed for this channel (the caller arms it, after a short wait).
    pub fn offer(&self, hub: &Hub, channel: &str, seq: i64, item: Item, wakes: &mut Wakes) -> bool {
        let mut channels = self.lock();
        let chan = channels.entry(channel.to_owned()).or_insert_with(|| Chan::at(0));
        if seq < chan.next {
            if let Some((out, own)) = item.own {
                hub.deliver_later(&out, &own, wakes);
            }
            return false;
        }
        if seq > chan.next {
            chan.early.insert(seq, item);
            let arm = !chan.filling;
            chan.filling = true;
            return arm;
        }
        self.deliver(hub, channel, seq, item, wakes);
        chan.next += 1;
        while let Some(item) = chan.early.remove(&chan.next) {
            self.deliver(hub, channel, chan.next, item, wakes);
            chan.next += 1;
        }
        false
    }

    /// Moves `channel` past everything before `seq` without delivering it (events pruned from the
    /// log before this node read them).
    pub fn skip_to(&self, hub: &Hub, channel: &str, seq: i64, wakes: &mut Wakes) {
        let mut channels = self.lock();
        let Some(chan) = channels.get_mut(channel) else { return };
        while chan.next < seq {
            if let Some(item) = chan.early.remove(&chan.next) {
                self.deliver(hub, channel, chan.next, item, wakes);
            }
            chan.next += 1;
        }
        while let Some(item) = chan.early.remove(&chan.next) {
            self.deliver(hub, channel, chan.next, item, wakes);
            chan.next += 1;
        }
    }

    /// The seqs of `channel` to read from the database now: from `next` up to the first early
    /// event, or else up to `upto`. `None` when nothing is missing, which also ends the read.
    pub fn missing(&self, channel: &str, upto: i64) -> Option<(i64, i64)> {
        let mut channels = self.lock();
        let chan = channels.get_mut(channel)?;
        let until = chan.early.keys().next().map_or(upto, |first| first - 1);
        if until < chan.next {
            chan.filling = false;
            return None;
        }
        Some((chan.next, until))
    }

    /// Tail sync: given each channel's last committed seq, the channels this node is behind on,
    /// with the seq to read up to. `now`: read everything committed (the broker is down or has
    /// just come back); otherwise only what was already committed at the previous sync (an event
    /// committed since may still be on its way; a copy read twice is dropped by seq, but each
    /// read is a query). The control log is always read to its head. Marks them as being read.
    pub fn behind(&self, seqs: Vec<(String, i64)>, now: bool) -> Vec<(String, i64)> {
        let mut channels = self.lock();
        let mut out = Vec::new();
        for (id, last) in seqs {
            let chan = channels.entry(id.clone()).or_insert_with(|| Chan::at(0));
            let before = std::mem::replace(&mut chan.seen, last);
            // The control log is rare and must be quick even when the broker drops it: all of it.
            let upto = if now || id == LOG { last } else { before.min(last) };
            if upto >= chan.next && !chan.filling {
                chan.filling = true;
                out.push((id, upto));
            }
        }
        out
    }

    fn deliver(&self, hub: &Hub, channel: &str, seq: i64, item: Item, wakes: &mut Wakes) {
        if let Some((out, own)) = &item.own {
            hub.deliver_later(out, own, wakes);
        }
        match &item.packet {
            Some(effect) if channel == LOG => self.apply(effect.clone()),
            Some(packet) => hub.to_channel(channel, seq, packet, item.except, wakes),
            None => {}
        }
    }

    /// Events held back, over all channels.
    pub fn early(&self) -> usize {
        self.lock().values().map(|c| c.early.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn item(text: &str) -> Item {
        Item::shared(Some(Packet::from(text.to_owned())))
    }

    /// Early events wait for the missing one, which the database read supplies; late copies are
    /// dropped; the tail sync finds what was committed and never arrived.
    #[test]
    fn delivers_in_seq_order_and_reports_what_is_missing() {
        let hub = Hub::new(std::sync::Arc::new(Metrics::default()));
        let (effects, mut applied) = mpsc::unbounded_channel();
        let seqr = Sequencer::new(effects);
        seqr.start_at(vec![("c".into(), 10)]);
        let mut wakes = Wakes::default();
        assert!(!seqr.offer(&hub, "c", 11, item("11"), &mut wakes));
        assert!(seqr.offer(&hub, "c", 13, item("13"), &mut wakes), "a gap arms a read");
        assert!(!seqr.offer(&hub, "c", 14, item("14"), &mut wakes), "armed once");
        assert_eq!(seqr.early(), 2);
        assert_eq!(seqr.missing("c", 0), Some((12, 12)));
        assert!(!seqr.offer(&hub, "c", 12, item("12"), &mut wakes));
        assert_eq!(seqr.early(), 0);
        assert_eq!(seqr.missing("c", 14), None, "nothing missing ends the read");
        assert!(!seqr.offer(&hub, "c", 12, item("again"), &mut wakes), "a late copy is dropped");
        // The tail: 15 and 16 were committed and never arrived. The first sync only notes them
        // (they may be on their way); the second reads what was committed at the first.
        assert!(seqr.behind(vec![("c".into(), 16)], false).is_empty());
        assert_eq!(seqr.behind(vec![("c".into(), 17)], false), vec![("c".to_owned(), 16)]);
        assert_eq!(seqr.missing("c", 16), Some((15, 16)));
        seqr.skip_to(&hub, "c", 17, &mut wakes);
        assert_eq!(seqr.missing("c", 16), None);
        // A channel created after the start begins at 1; with the broker down, all is read now.
        assert_eq!(seqr.behind(vec![("new".into(), 2)], true), vec![("new".to_owned(), 2)]);
        assert_eq!(seqr.missing("new", 2), Some((1, 2)));
        // The control log is ordered the same way, and its events go to the effects task.
        seqr.start_at(vec![(LOG.into(), 3)]);
        assert!(seqr.offer(&hub, LOG, 5, item("five"), &mut wakes));
        assert!(applied.try_recv().is_err(), "held back until 4");
        assert!(!seqr.offer(&hub, LOG, 4, item("four"), &mut wakes));
        assert_eq!(applied.try_recv().unwrap().as_str(), "four");
        assert_eq!(applied.try_recv().unwrap().as_str(), "five");
    }
}
