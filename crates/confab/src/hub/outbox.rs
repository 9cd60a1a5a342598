//! One connection's bounded outbound queue and its close signal.
//!
//! The queue is bounded twice (packets and bytes, PROTOCOL §1.6) so that neither many small packets
//! nor a few huge ones can grow memory without limit. Producers never block: they learn whether the
//! packet was queued, dropped (presence under congestion) or overflowed.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::sync::Notify;

/// A serialised packet, shared by every recipient (cloning is a reference-count increment).
pub type Packet = tungstenite::Utf8Bytes;

/// How the server closes a connection: an optional `disconnect` packet, then the close frame.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CloseOrder {
    pub code: u16,
    pub reason: String,
    /// Text of the `{"cmd":"disconnect","reason"}` packet sent first, if any.
    pub disconnect: Option<String>,
}

impl CloseOrder {
    pub fn new(code: u16, reason: &str, disconnect: Option<&str>) -> CloseOrder {
        CloseOrder { code, reason: reason.to_owned(), disconnect: disconnect.map(str::to_owned) }
    }
    /// 4004 after `{"cmd":"disconnect","reason":"Session revoked"}`: the credential a connection
    /// authenticated with stopped being valid (PROTOCOL §2.12, §8.5).
    pub fn revoked() -> CloseOrder {
        CloseOrder::new(confab_proto::close::REVOKED, "Session revoked", Some("Session revoked"))
    }
    /// 4003 after `{"cmd":"disconnect","reason":"You have been banned"}` (PROTOCOL §8.5).
    pub fn banned() -> CloseOrder {
        CloseOrder::new(confab_proto::close::BANNED, "You have been banned", Some("You have been banned"))
    }
    /// 4009: the outbound queue overflowed.
    pub fn slow_consumer() -> CloseOrder {
        CloseOrder::new(confab_proto::close::SLOW_CONSUMER, "Slow consumer", None)
    }
}

/// The close signal a connection task waits on. The first order wins.
///
/// Several futures of one task may wait at once (the session loop's, and the one racing a blocked
/// socket write), so an order wakes every waiter: with `notify_one` it woke only the oldest, the
/// loop's, which is not polled while a write is blocked, and the close was lost.
#[derive(Default)]
pub struct Control {
    order: Mutex<Option<CloseOrder>>,
    notify: Notify,
}

impl Control {
    /// Asks the connection to close; later orders are ignored.
    pub fn close(&self, order: CloseOrder) {
        if let Ok(mut slot) = self.order.lock()
            && slot.is_none()
        {
            *slot = Some(order);
            self.notify.notify_waiters();
        }
    }

    /// Resolves when a close was ordered; returns the order.
    pub async fn wait(&self) -> CloseOrder {
        loop {
            // Registered before the order is looked at: `notify_waiters` keeps no permit, so an
            // order given between the look and the registration would otherwise be missed.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(order) = self.order.lock().ok().and_then(|o| o.clone()) {
                return order;
            }
            notified.await;
        }
    }
}

/// What a packet is to the bounds of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Part of the connection's own command's answer: not bounded (see [`Outbox::push_reply`]).
    Reply,
    /// Sent unasked: bounded, an overflow closes the connection.
    Event,
    /// Sent unasked and skipped when the queue is more than half full (presence, typing).
    Droppable,
}

/// Outcome of pushing one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// A droppable packet skipped because the queue is more than half full.
    Dropped,
    /// The queue is full (packets or bytes): the connection must be closed with 4009.
    Overflow,
    /// The connection is gone.
    Closed,
}

/// The producer side of a connection's queue; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
}

struct Shared {
    /// The queue and the channel bookkeeping under one lock, held only to push or pop: a channel
    /// event costs the publishing thread one lock per connection, and "held or delivered live"
    /// is decided atomically with respect to a resume starting.
    inner: Mutex<Inner>,
    /// Wakes the connection task when the queue goes from empty to not empty.
    ready: Notify,
    /// Set when the consumer is gone: pushes are refused.
    closed: AtomicBool,
    max_bytes: usize,
    max_packets: usize,
    control: Control,
}

#[derive(Default)]
struct Inner {
    /// A plain deque, so an idle connection's queue allocates nothing (a bounded channel
    /// preallocates a block of slots).
    /// Each packet with whether it counts against the bounds (replies do not).
    queue: VecDeque<(Packet, bool)>,
    /// Bytes and packets queued that count against the bounds; under the lock rather than
    /// atomics, which would move their cache line between the publishing thread and the
    /// connection's on every push and pop.
    bytes: usize,
    packets: usize,
    channels: ChannelState,
}

/// Channel-event bookkeeping for `resume` (PROTOCOL §7.2): one cut-over point per resumed channel.
/// Everything at or below it reaches the client from the log (the replay), everything above it
/// from the live queue, each exactly once.
#[derive(Default)]
struct ChannelState {
    /// Set while a `resume` replays the log.
    held: Option<Held>,
    /// Per channel, the last seq a finished resume covered from the log. A live event at or below
    /// it was replayed, so it is dropped: it was committed before the log was read but published
    /// after the hold ended. Events of one channel are published in seq order, so the first live
    /// event above the cut removes it; nothing older can follow.
    cut: HashMap<String, i64>,
}

impl ChannelState {
    /// Whether live event `seq` of `channel` is past the channel's cut-over (and so must be
    /// delivered), forgetting the cut once an event passes it.
    fn past_cut(&mut self, channel: &str, seq: i64) -> bool {
        // The usual case, no resume ever, costs one length check.
        if self.cut.is_empty() {
            return true;
        }
        match self.cut.get(channel) {
            Some(&cut) if seq <= cut => false,
            Some(_) => {
                self.cut.remove(channel);
                true
            }
            None => true,
        }
    }
}

/// Live channel events set aside while a `resume` replays the log (PROTOCOL §7.2).
struct Held {
    channels: HashSet<String>,
    events: Vec<(String, i64, Packet)>,
}

/// The consumer side, owned by the connection task. Dropping it closes the queue.
pub struct Inbox {
    shared: Arc<Shared>,
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        if let Ok(mut inner) = self.shared.inner.lock() {
            inner.queue.clear();
            inner.bytes = 0;
            inner.packets = 0;
        }
    }
}

impl Outbox {
    /// A queue holding at most `max_packets` packets and `max_bytes` bytes.
    pub fn new(max_packets: usize, max_bytes: usize) -> (Outbox, Inbox) {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            ready: Notify::new(),
            closed: AtomicBool::new(false),
            max_bytes,
            max_packets,
            control: Control::default(),
        });
        (Outbox { shared: shared.clone() }, Inbox { shared })
    }

    /// The connection's close signal.
    pub fn control(&self) -> &Control {
        &self.shared.control
    }

    /// Queues a packet the server sends unasked (a broadcast) without waiting.
    pub fn push(&self, packet: &Packet, droppable: bool) -> Pushed {
        let class = if droppable { Class::Droppable } else { Class::Event };
        self.push_waking(packet, class, None)
    }

    /// Queues a packet of the connection's own command: the reply, and for `resume` the replay.
    /// It does not count against the bounds, which catch readers that fall behind the traffic
    /// the server sends unasked: the connection task writes out its queue before it reads the
    /// next command, so what a reader asked for is at most one command's answer, and every answer
    /// that can grow is paged (or, for `resume`, limited to `resume_max_events`). A reader that
    /// keeps up gets any answer the server chose to build.
    pub fn push_reply(&self, packet: &Packet) -> Pushed {
        self.push_waking(packet, Class::Reply, None)
    }

    /// Queues a packet; the connection task is woken now, or by `later` when given.
    fn push_waking(&self, packet: &Packet, class: Class, later: Option<&mut Wakes>) -> Pushed {
        let Ok(mut inner) = self.shared.inner.lock() else { return Pushed::Closed };
        self.push_locked(&mut inner, packet, class, later)
    }

    /// The push itself, under the lock the caller holds.
    fn push_locked(&self, inner: &mut Inner, packet: &Packet, class: Class, later: Option<&mut Wakes>) -> Pushed {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Pushed::Closed;
        }
        let counted = class != Class::Reply;
        if class == Class::Droppable && (inner.packets * 2 > shared.max_packets || inner.bytes * 2 > shared.max_bytes) {
            return Pushed::Dropped;
        }
        // Full means the bytes already queued reached the bound, not that this packet would pass
        // it: one large event still reaches a reader that keeps up, and a slow one is still
        // caught by the next packet.
        if counted && (inner.packets >= shared.max_packets || inner.bytes >= shared.max_bytes) {
            return Pushed::Overflow;
        }
        if counted {
            inner.bytes += packet.len();
            inner.packets += 1;
        }
        let was_empty = inner.queue.is_empty();
        inner.queue.push_back((packet.clone(), counted));
        if was_empty {
            match later {
                Some(wakes) => wakes.0.push(self.clone()),
                None => shared.ready.notify_one(),
            }
        }
        Pushed::Queued
    }

    /// [`Outbox::push`] of a packet that must not be dropped, waking the connection with `wakes`.
    pub fn push_later(&self, packet: &Packet, wakes: &mut Wakes) -> Pushed {
        self.push_waking(packet, Class::Event, Some(wakes))
    }
}

/// Connections given packets whose tasks are not woken yet. The writer publishes a committed
/// batch with their wake-ups held back and answers the batch's requesters; the last of them wakes
/// the readers: a requester's task, which writes its own acknowledgement, then runs ahead of the
/// hundreds of reader tasks the batch makes ready, instead of behind them. Nothing is reordered:
/// every packet is in its queue before any task of the batch is woken. Dropped, it wakes them
/// too, so a `Wakes` whose requester is gone cannot leave a connection asleep beside its packets
/// (a push onto a queue that is not empty wakes nobody).
#[derive(Default)]
pub struct Wakes(Vec<Outbox>);

impl Wakes {
    /// Wakes every connection that was given a packet.
    pub fn wake(self) {
        drop(self);
    }
}

impl Drop for Wakes {
    fn drop(&mut self) {
        for outbox in self.0.drain(..) {
            outbox.shared.ready.notify_one();
        }
    }
}

impl Outbox {
    /// Queues an event of `channel_id` with `seq`, sets it aside while that channel is held, or
    /// drops it if a resume already replayed it (`Dropped`).
    pub fn push_channel(&self, channel_id: &str, seq: i64, packet: &Packet, wakes: &mut Wakes) -> Pushed {
        let Ok(mut inner) = self.shared.inner.lock() else { return Pushed::Closed };
        if let Some(h) = inner.channels.held.as_mut()
            && h.channels.contains(channel_id)
        {
            if h.events.len() >= self.shared.max_packets {
                return Pushed::Overflow;
            }
            h.events.push((channel_id.to_owned(), seq, packet.clone()));
            return Pushed::Queued;
        }
        if !inner.channels.past_cut(channel_id, seq) {
            return Pushed::Dropped;
        }
        self.push_locked(&mut inner, packet, Class::Event, Some(wakes))
    }

    /// Starts setting aside live events of `channels`. Called before the log is read, so every
    /// event committed after the read is either set aside or arrives after the release.
    pub fn hold(&self, channels: HashSet<String>) {
        if let Ok(mut inner) = self.shared.inner.lock() {
            inner.channels.held = Some(Held { channels, events: Vec::new() });
        }
    }

    /// Forgets the cut-over of `channel_id` (the connection stopped viewing it).
    pub fn forget_channel(&self, channel_id: &str) {
        if let Ok(mut inner) = self.shared.inner.lock() {
            inner.channels.cut.remove(channel_id);
        }
    }

    /// Ends a hold at the cut-over points `covered` (per channel, the last seq the replay took from
    /// the log): queues the set-aside events above their channel's cut, in arrival order, drops the
    /// rest (they were replayed), and keeps each cut for events still on their way. A channel
    /// missing from `covered` has no cut: all its set-aside events are queued. `Overflow` if the
    /// queue filled.
    pub fn release(&self, covered: &HashMap<String, i64>) -> Pushed {
        let Ok(mut inner) = self.shared.inner.lock() else { return Pushed::Closed };
        let Some(held) = inner.channels.held.take() else { return Pushed::Queued };
        inner.channels.cut.extend(covered.iter().map(|(c, s)| (c.clone(), *s)));
        let mut outcome = Pushed::Queued;
        for (channel, seq, packet) in held.events {
            if inner.channels.past_cut(&channel, seq)
                && self.push_locked(&mut inner, &packet, Class::Event, None) == Pushed::Overflow
            {
                outcome = Pushed::Overflow;
            }
        }
        outcome
    }
}

impl Inbox {
    /// The next packet, waiting for one. (A push between an empty pop and the wait leaves a
    /// `Notify` permit, so no wake-up is lost.)
    pub async fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = self.try_recv() {
                return Some(p);
            }
            self.shared.ready.notified().await;
        }
    }

    /// The next packet if one is queued.
    pub fn try_recv(&mut self) -> Option<Packet> {
        let mut inner = self.shared.inner.lock().ok()?;
        let (p, counted) = inner.queue.pop_front()?;
        if counted {
            inner.bytes -= p.len();
            inner.packets -= 1;
        }
        Some(p)
    }

    /// The connection's close signal.
    pub fn control(&self) -> &Control {
        &self.shared.control
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_by_packets_and_bytes() {
        let (out, _in) = Outbox::new(16, 1024);
        let small = Packet::from("x".repeat(10));
        for _ in 0..16 {
            assert_eq!(out.push(&small, false), Pushed::Queued);
        }
        assert_eq!(out.push(&small, false), Pushed::Overflow);

        let (out, _in) = Outbox::new(16, 1024);
        let big = Packet::from("y".repeat(600));
        assert_eq!(out.push(&big, false), Pushed::Queued);
        assert_eq!(out.push(&big, false), Pushed::Queued, "under the bound before it: one packet may pass it");
        assert_eq!(out.push(&big, false), Pushed::Overflow);
    }

    /// A packet larger than the whole byte bound is queued by a queue that is not full: the
    /// reply a reader asked for is never an overflow by itself.
    #[test]
    fn one_packet_over_the_byte_bound_is_queued() {
        let (out, mut inbox) = Outbox::new(16, 1024);
        let huge = Packet::from("z".repeat(5000));
        assert_eq!(out.push(&Packet::from("small"), false), Pushed::Queued);
        assert_eq!(out.push(&huge, false), Pushed::Queued);
        assert_eq!(out.push(&Packet::from("next"), false), Pushed::Overflow);
        assert_eq!(inbox.try_recv().as_ref().map(Packet::as_str), Some("small"));
        assert_eq!(inbox.try_recv().map(|p| p.len()), Some(5000));
        assert_eq!(out.push(&Packet::from("after"), false), Pushed::Queued);
    }

    /// A command's answer, however long (a replay of thousands of events), neither overflows the
    /// queue nor takes room from the events the server sends unasked.
    #[test]
    fn replies_do_not_count_against_the_bounds() {
        let (out, mut inbox) = Outbox::new(16, 1024);
        let hundred = Packet::from("r".repeat(100));
        for _ in 0..100 {
            assert_eq!(out.push_reply(&hundred), Pushed::Queued);
        }
        let event = Packet::from("e".repeat(100));
        let mut events = 0;
        while out.push(&event, false) == Pushed::Queued {
            events += 1;
        }
        assert_eq!(events, 11, "the byte bound is the events' own: refused once 1024 bytes of them are queued");
        let mut got = 0;
        while inbox.try_recv().is_some() {
            got += 1;
        }
        assert_eq!(got, 111);
        assert_eq!(out.push(&event, false), Pushed::Queued, "a drained queue takes events again");
    }

    #[test]
    fn droppable_packets_skip_a_half_full_queue() {
        let (out, mut inbox) = Outbox::new(16, 1 << 20);
        let p = Packet::from("p");
        for _ in 0..9 {
            assert_eq!(out.push(&p, false), Pushed::Queued);
        }
        assert_eq!(out.push(&p, true), Pushed::Dropped);
        while inbox.try_recv().is_some() {}
        assert_eq!(out.push(&p, true), Pushed::Queued);
    }

    /// A live event of channel `c` as the publishing thread gives it to the connection.
    fn live(out: &Outbox, seq: i64) -> Pushed {
        out.push_channel("c", seq, &Packet::from(seq.to_string()), &mut Wakes::default())
    }

    /// What `resume` does once it holds `c`: the log read saw the events after `after` up to
    /// `log_end`; they are replayed (as the connection's own packets), `resumed` follows, and the
    /// hold ends at that cut.
    fn replay_and_release(out: &Outbox, after: i64, log_end: i64) {
        for seq in after + 1..=log_end {
            assert_eq!(out.push_reply(&Packet::from(format!("r{seq}"))), Pushed::Queued);
        }
        assert_eq!(out.push_reply(&Packet::from("resumed")), Pushed::Queued);
        assert_eq!(out.release(&[("c".to_owned(), log_end)].into_iter().collect()), Pushed::Queued);
    }

    /// The client's view from its first replayed packet on, ignoring live events before it as
    /// PROTOCOL §7.2 allows: must be every seq after `after` up to `last` exactly once, in order,
    /// with `resumed` right after the replayed ones.
    fn assert_complete(inbox: &mut Inbox, after: i64, last: i64) {
        let mut got = Vec::new();
        while let Some(p) = inbox.try_recv() {
            got.push(p.as_str().to_owned());
        }
        let from = got.iter().position(|p| p.starts_with('r')).unwrap_or(got.len());
        let stream = &got[from..];
        let resumed = stream.iter().position(|p| p == "resumed").expect("resumed was sent");
        assert!(stream[..resumed].iter().all(|p| p.starts_with('r')), "only replayed events before resumed: {got:?}");
        let seqs: Vec<i64> = stream
            .iter()
            .filter(|p| *p != "resumed")
            .map(|p| p.trim_start_matches('r').parse().expect("a seq"))
            .collect();
        assert_eq!(seqs, (after + 1..=last).collect::<Vec<_>>(), "stream {got:?}");
    }

    /// Race 1 of issue 17: a live event that reached the connection between `ready` and `resume`
    /// is replayed again, so the stream after it stands alone.
    #[test]
    fn live_events_before_the_resume_are_replayed_again() {
        let (out, mut inbox) = Outbox::new(64, 1 << 20);
        assert_eq!(live(&out, 34), Pushed::Queued);
        out.hold(["c".to_owned()].into_iter().collect());
        replay_and_release(&out, 5, 34);
        assert_eq!(live(&out, 35), Pushed::Queued);
        assert_complete(&mut inbox, 5, 35);
    }

    /// Race 2: events set aside during the hold that the log read also saw are not lost when the
    /// connection had received an earlier one live.
    #[test]
    fn events_set_aside_and_read_from_the_log_arrive_once() {
        let (out, mut inbox) = Outbox::new(64, 1 << 20);
        assert_eq!(live(&out, 7868), Pushed::Queued);
        out.hold(["c".to_owned()].into_iter().collect());
        assert_eq!(live(&out, 7869), Pushed::Queued);
        assert_eq!(live(&out, 7870), Pushed::Queued);
        // 7871 committed after the log read: set aside, delivered after `resumed`.
        assert_eq!(live(&out, 7871), Pushed::Queued);
        replay_and_release(&out, 7860, 7870);
        assert_eq!(live(&out, 7872), Pushed::Queued);
        assert_complete(&mut inbox, 7860, 7872);
    }

    /// Race 3: an event committed before the log read but published after the hold ended is not
    /// delivered a second time; the first event past the cut removes it.
    #[test]
    fn events_published_after_the_release_but_replayed_are_dropped() {
        let (out, mut inbox) = Outbox::new(64, 1 << 20);
        out.hold(["c".to_owned()].into_iter().collect());
        replay_and_release(&out, 5, 12);
        assert_eq!(live(&out, 11), Pushed::Dropped);
        assert_eq!(live(&out, 12), Pushed::Dropped);
        assert_eq!(live(&out, 13), Pushed::Queued);
        assert_complete(&mut inbox, 5, 13);
        assert!(out.shared.inner.lock().unwrap().channels.cut.is_empty(), "the cut is forgotten once passed");
    }

    /// Other channels flow while one is held; a failed resume (no cut) hands everything back.
    #[test]
    fn a_hold_sets_aside_only_its_channels() {
        let (out, mut inbox) = Outbox::new(16, 1 << 20);
        let wakes = &mut Wakes::default();
        out.hold(["c".to_owned()].into_iter().collect());
        assert_eq!(out.push_channel("c", 5, &Packet::from("five"), wakes), Pushed::Queued);
        assert_eq!(out.push_channel("d", 9, &Packet::from("other"), wakes), Pushed::Queued);
        assert_eq!(inbox.try_recv().as_ref().map(Packet::as_str), Some("other"));
        assert!(inbox.try_recv().is_none());
        out.release(&HashMap::new());
        assert_eq!(inbox.try_recv().as_ref().map(Packet::as_str), Some("five"));
        assert_eq!(out.push_channel("c", 6, &Packet::from("six"), wakes), Pushed::Queued);
        assert_eq!(inbox.try_recv().as_ref().map(Packet::as_str), Some("six"));
    }

    /// A held-back wake-up reaches a connection waiting for its queue only through `wake`, once
    /// per connection however many packets it was given.
    #[tokio::test]
    async fn held_back_wakes_come_with_wake() {
        let (out, mut inbox) = Outbox::new(16, 1 << 20);
        let mut waiting = tokio::spawn(async move {
            let first = inbox.recv().await;
            (first, inbox.try_recv())
        });
        tokio::task::yield_now().await;
        let mut wakes = Wakes::default();
        assert_eq!(out.push_later(&Packet::from("a"), &mut wakes), Pushed::Queued);
        assert_eq!(out.push_later(&Packet::from("b"), &mut wakes), Pushed::Queued);
        assert_eq!(wakes.0.len(), 1);
        // Not woken yet: the task is still waiting after it had every chance to run.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(futures_util::FutureExt::now_or_never(&mut waiting).is_none());
        wakes.wake();
        let (first, second) = waiting.await.unwrap();
        assert_eq!(first.as_ref().map(Packet::as_str), Some("a"));
        assert_eq!(second.as_ref().map(Packet::as_str), Some("b"));
    }

    /// A `Wakes` dropped on its way (its requester gone) still wakes the connections in it.
    #[tokio::test]
    async fn dropped_wakes_still_wake() {
        let (out, mut inbox) = Outbox::new(16, 1 << 20);
        let waiting = tokio::spawn(async move { inbox.recv().await });
        tokio::task::yield_now().await;
        let mut wakes = Wakes::default();
        assert_eq!(out.push_later(&Packet::from("a"), &mut wakes), Pushed::Queued);
        drop(wakes);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let woken = futures_util::FutureExt::now_or_never(waiting).expect("woken when dropped").unwrap();
        assert_eq!(woken.as_ref().map(Packet::as_str), Some("a"));
    }

    /// Two waiters of one connection (the session loop's and a blocked write's) both learn of a
    /// close, whichever registered first.
    #[tokio::test]
    async fn a_close_order_wakes_every_waiter() {
        let c = Arc::new(Control::default());
        let first = tokio::spawn({
            let c = c.clone();
            async move { c.wait().await }
        });
        tokio::task::yield_now().await;
        let second = tokio::spawn({
            let c = c.clone();
            async move { c.wait().await }
        });
        tokio::task::yield_now().await;
        c.close(CloseOrder::revoked());
        let both = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            (first.await.unwrap().code, second.await.unwrap().code)
        });
        assert_eq!(both.await.expect("both waiters woken"), (4004, 4004));
    }

    #[tokio::test]
    async fn first_close_order_wins() {
        let c = Control::default();
        c.close(CloseOrder::new(4003, "a", None));
        c.close(CloseOrder::new(4004, "b", None));
        assert_eq!(c.wait().await.code, 4003);
    }
}
