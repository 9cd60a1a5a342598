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
pub type Packet = axum::extract::ws::Utf8Bytes;

/// How the server closes a connection: an optional `disconnect` packet, then the close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    queue: VecDeque<Packet>,
    /// Bytes queued; under the lock rather than an atomic, which would move its cache line
    /// between the publishing thread and the connection's on every push and pop.
    bytes: usize,
    channels: ChannelState,
}

/// Channel-event bookkeeping for `resume`.
#[derive(Default)]
struct ChannelState {
    /// Set while a `resume` replays the log.
    held: Option<Held>,
    /// The first live seq queued per channel: everything from it on reached this connection live,
    /// so a later `resume` must not replay it again.
    first_live: HashMap<String, i64>,
}

impl ChannelState {
    /// Records that `seq` of `channel` was queued live, unless an earlier one was. Looked up
    /// before inserting, so the usual case (already recorded) allocates no key.
    fn mark_live(&mut self, channel: &str, seq: i64) {
        if !self.first_live.contains_key(channel) {
            self.first_live.insert(channel.to_owned(), seq);
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

    /// Queues a packet without waiting.
    pub fn push(&self, packet: &Packet, droppable: bool) -> Pushed {
        self.push_waking(packet, droppable, None)
    }

    /// Queues a packet; the connection task is woken now, or by `later` when given.
    fn push_waking(&self, packet: &Packet, droppable: bool, later: Option<&mut Wakes>) -> Pushed {
        let Ok(mut inner) = self.shared.inner.lock() else { return Pushed::Closed };
        self.push_locked(&mut inner, packet, droppable, later)
    }

    /// The push itself, under the lock the caller holds.
    fn push_locked(&self, inner: &mut Inner, packet: &Packet, droppable: bool, later: Option<&mut Wakes>) -> Pushed {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Pushed::Closed;
        }
        let len = packet.len();
        if droppable && (inner.queue.len() * 2 > shared.max_packets || inner.bytes * 2 > shared.max_bytes) {
            return Pushed::Dropped;
        }
        if inner.queue.len() >= shared.max_packets || inner.bytes + len > shared.max_bytes {
            return Pushed::Overflow;
        }
        inner.bytes += len;
        let was_empty = inner.queue.is_empty();
        inner.queue.push_back(packet.clone());
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
        self.push_waking(packet, false, Some(wakes))
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
    /// Queues an event of `channel_id` with `seq`, or sets it aside while that channel is held.
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
        let pushed = self.push_locked(&mut inner, packet, false, Some(wakes));
        if pushed == Pushed::Queued {
            inner.channels.mark_live(channel_id, seq);
        }
        pushed
    }

    /// Starts setting aside live events of `channels` (before the log is read). Returns, per
    /// channel, the first seq this connection already received live: the replay stops before it.
    pub fn hold(&self, channels: HashSet<String>) -> HashMap<String, i64> {
        let Ok(mut inner) = self.shared.inner.lock() else { return HashMap::new() };
        let state = &mut inner.channels;
        let first = channels.iter().filter_map(|c| state.first_live.get(c).map(|s| (c.clone(), *s))).collect();
        state.held = Some(Held { channels, events: Vec::new() });
        first
    }

    /// Forgets what was received live in `channel_id` (the connection stopped viewing it, so later
    /// events of that channel did not reach it and a resume must replay them).
    pub fn forget_channel(&self, channel_id: &str) {
        if let Ok(mut inner) = self.shared.inner.lock() {
            inner.channels.first_live.remove(channel_id);
        }
    }

    /// Ends a hold: queues the set-aside events whose seq is past what the replay `covered`, in
    /// arrival order, and drops the rest (they were replayed). `Overflow` if the queue filled.
    pub fn release(&self, covered: &HashMap<String, i64>) -> Pushed {
        let Ok(mut inner) = self.shared.inner.lock() else { return Pushed::Closed };
        let mut outcome = Pushed::Queued;
        if let Some(h) = inner.channels.held.take() {
            for (channel, seq, packet) in h.events {
                if seq > covered.get(&channel).copied().unwrap_or(-1) {
                    match self.push_locked(&mut inner, &packet, false, None) {
                        Pushed::Overflow => outcome = Pushed::Overflow,
                        Pushed::Queued => inner.channels.mark_live(&channel, seq),
                        _ => {}
                    }
                }
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
        let p = inner.queue.pop_front()?;
        inner.bytes -= p.len();
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
        assert_eq!(out.push(&big, false), Pushed::Overflow);
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

    #[test]
    fn held_events_are_released_past_the_replay() {
        let (out, mut inbox) = Outbox::new(16, 1 << 20);
        let wakes = &mut Wakes::default();
        out.hold(["c".to_owned()].into_iter().collect());
        assert_eq!(out.push_channel("c", 5, &Packet::from("five"), wakes), Pushed::Queued);
        assert_eq!(out.push_channel("d", 9, &Packet::from("other"), wakes), Pushed::Queued);
        assert_eq!(out.push_channel("c", 6, &Packet::from("six"), wakes), Pushed::Queued);
        assert_eq!(inbox.try_recv().as_ref().map(Packet::as_str), Some("other"));
        assert!(inbox.try_recv().is_none());
        out.release(&[("c".to_owned(), 5)].into_iter().collect());
        assert_eq!(inbox.try_recv().as_ref().map(Packet::as_str), Some("six"));
        assert!(inbox.try_recv().is_none());
        assert_eq!(out.push_channel("c", 7, &Packet::from("seven"), wakes), Pushed::Queued);
        assert_eq!(inbox.try_recv().as_ref().map(Packet::as_str), Some("seven"));
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
