//! Local fan-out: who is connected, which channels each connection may view, and delivery into
//! each connection's bounded outbound queue (DESIGN §1, §3; PROTOCOL §1.4, §1.6).
//!
//! A packet is serialised once by its producer; the hub only clones the shared bytes into queues.
//! Delivery never waits: a full queue closes that one connection with 4009 and everyone else goes on.

mod outbox;
pub mod slash;
pub mod voice;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
};

use dashmap::DashMap;

pub use outbox::{CloseOrder, Control, Inbox, Outbox, Packet, Pushed, Wakes};

use crate::{identity::Identity, metrics::Metrics};

/// Process-unique id of one WebSocket connection.
pub type ConnId = u64;

/// An authenticated connection as the hub sees it.
pub struct Conn {
    pub id: ConnId,
    /// The account; never changes for a connection.
    pub user_id: String,
    /// The session family it authenticated through, if any (revocation closes it).
    pub session_id: Option<String>,
    pub outbox: Outbox,
    /// Who the connection is now: replaced when the account's roles or name change, so the
    /// session and the hub always judge permissions from the same snapshot.
    identity: RwLock<Arc<Identity>>,
    /// Channel ids this connection may view; kept in step with `Hub::channels`.
    channels: Mutex<Vec<String>>,
}

impl Conn {
    pub fn new(id: ConnId, identity: Arc<Identity>, outbox: Outbox) -> Conn {
        Conn {
            id,
            user_id: identity.user.id.clone(),
            session_id: identity.session_id.clone(),
            outbox,
            identity: RwLock::new(identity),
            channels: Mutex::new(Vec::new()),
        }
    }

    /// The current identity snapshot.
    pub fn identity(&self) -> Arc<Identity> {
        match self.identity.read() {
            Ok(i) => i.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the identity (after a role or profile change).
    pub fn set_identity(&self, identity: Arc<Identity>) {
        if let Ok(mut slot) = self.identity.write() {
            *slot = identity;
        }
    }
}

/// Registry of authenticated connections and channel audiences.
pub struct Hub {
    conns: DashMap<ConnId, Arc<Conn>>,
    channels: DashMap<String, HashMap<ConnId, Outbox>>,
    users: DashMap<String, usize>,
    metrics: Arc<Metrics>,
}

impl Hub {
    pub fn new(metrics: Arc<Metrics>) -> Hub {
        Hub { conns: DashMap::new(), channels: DashMap::new(), users: DashMap::new(), metrics }
    }

    /// Adds an authenticated connection viewing `channels`. Returns the account's live count after.
    pub fn register(&self, conn: Arc<Conn>, channels: Vec<String>) -> usize {
        for ch in &channels {
            self.channels.entry(ch.clone()).or_default().insert(conn.id, conn.outbox.clone());
        }
        if let Ok(mut mine) = conn.channels.lock() {
            *mine = channels;
        }
        let count = {
            let mut n = self.users.entry(conn.user_id.clone()).or_insert(0);
            *n += 1;
            *n
        };
        self.conns.insert(conn.id, conn);
        count
    }

    /// Removes a connection. Returns it and the account's live count after, if it was registered.
    pub fn unregister(&self, id: ConnId) -> Option<(Arc<Conn>, usize)> {
        let (_, conn) = self.conns.remove(&id)?;
        let channels = conn.channels.lock().map(|c| c.clone()).unwrap_or_default();
        for ch in channels {
            if let Some(mut members) = self.channels.get_mut(&ch) {
                members.remove(&id);
            }
        }
        let left = match self.users.get_mut(&conn.user_id) {
            Some(mut n) => {
                *n = n.saturating_sub(1);
                *n
            }
            None => 0,
        };
        if left == 0 {
            self.users.remove_if(&conn.user_id, |_, n| *n == 0);
        }
        Some((conn, left))
    }

    /// Live authenticated connections of one account.
    pub fn user_connections(&self, user_id: &str) -> usize {
        self.users.get(user_id).map_or(0, |n| *n)
    }

    /// Recomputes which channels each connection may view (after a channel or role change) and
    /// moves it in or out of channel audiences at once. `viewable` maps an identity to channel ids.
    pub fn rescope(&self, viewable: impl Fn(&Identity) -> Vec<String>) {
        for conn in self.conns.iter() {
            let now = viewable(&conn.identity());
            let Ok(mut mine) = conn.channels.lock() else { continue };
            for gone in mine.iter().filter(|c| !now.contains(c)) {
                if let Some(mut members) = self.channels.get_mut(gone) {
                    members.remove(&conn.id);
                }
                conn.outbox.forget_channel(gone);
            }
            for added in now.iter().filter(|c| !mine.contains(c)) {
                self.channels.entry(added.clone()).or_default().insert(conn.id, conn.outbox.clone());
            }
            *mine = now;
        }
        self.channels.retain(|_, members| !members.is_empty());
    }

    /// The live connections of one account.
    pub fn connections_of(&self, user_id: &str) -> Vec<Arc<Conn>> {
        self.conns.iter().filter(|c| c.user_id == user_id).map(|c| c.clone()).collect()
    }

    /// One live authenticated connection.
    pub fn connection(&self, id: ConnId) -> Option<Arc<Conn>> {
        self.conns.get(&id).map(|c| c.clone())
    }

    /// Every live authenticated connection.
    pub fn connections(&self) -> Vec<Arc<Conn>> {
        self.conns.iter().map(|c| c.clone()).collect()
    }

    /// Ids of accounts with at least one live authenticated connection.
    pub fn online_users(&self) -> Vec<String> {
        self.users.iter().filter(|e| *e.value() > 0).map(|e| e.key().clone()).collect()
    }

    /// Number of authenticated connections.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether no connection is authenticated.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// S→V(ch): the channel event `seq` to every connection that may view `channel_id`, except
    /// `except`. Connections resuming that channel set it aside until their replay is done. The
    /// connections are woken by `wakes` (see [`Wakes`]).
    pub fn to_channel(&self, channel_id: &str, seq: i64, packet: &Packet, except: Option<ConnId>, wakes: &mut Wakes) {
        if let Some(members) = self.channels.get(channel_id) {
            for (id, out) in members.iter() {
                if Some(*id) != except {
                    let pushed = out.push_channel(channel_id, seq, packet, wakes);
                    self.account(out, pushed);
                }
            }
        }
    }

    /// S→V(ch) for ephemeral packets (typing) that a congested connection may skip.
    pub fn to_channel_droppable(&self, channel_id: &str, packet: &Packet, except: Option<ConnId>) {
        if let Some(members) = self.channels.get(channel_id) {
            for (id, out) in members.iter() {
                if Some(*id) != except {
                    self.deliver(out, packet, true);
                }
            }
        }
    }

    /// S→V(ch) with the packet `pick` chooses per connection (`None` skips it): voice events show
    /// participants more than other viewers (PROTOCOL §6.6).
    pub fn to_channel_each<'p>(&self, channel_id: &str, pick: impl Fn(ConnId) -> Option<&'p Packet>) {
        if let Some(members) = self.channels.get(channel_id) {
            for (id, out) in members.iter() {
                if let Some(packet) = pick(*id) {
                    self.deliver(out, packet, false);
                }
            }
        }
    }

    /// S→A: every authenticated connection, except `except`. `droppable` marks presence-like
    /// packets that a congested connection may skip.
    pub fn to_all(&self, packet: &Packet, except: Option<ConnId>, droppable: bool) {
        for conn in self.conns.iter() {
            if Some(conn.id) != except {
                self.deliver(&conn.outbox, packet, droppable);
            }
        }
    }

    /// S→A except every connection of `user_id`.
    pub fn to_all_but_user(&self, packet: &Packet, user_id: &str, droppable: bool) {
        for conn in self.conns.iter() {
            if conn.user_id != user_id {
                self.deliver(&conn.outbox, packet, droppable);
            }
        }
    }

    /// S→U(u): every connection of `user_id`.
    pub fn to_user(&self, user_id: &str, packet: &Packet) {
        for conn in self.conns.iter() {
            if conn.user_id == user_id {
                self.deliver(&conn.outbox, packet, false);
            }
        }
    }

    /// Closes every connection matching `pred` with `order`; returns how many.
    pub fn close_where(&self, pred: impl Fn(&Conn) -> bool, order: &CloseOrder) -> usize {
        let mut n = 0;
        for conn in self.conns.iter() {
            if pred(&conn) {
                conn.outbox.control().close(order.clone());
                n += 1;
            }
        }
        n
    }

    /// Queues `packet` on one outbox, closing it with 4009 if it overflows.
    pub fn deliver(&self, out: &Outbox, packet: &Packet, droppable: bool) {
        self.account(out, out.push(packet, droppable));
    }

    /// [`Hub::deliver`] of a packet that must not be dropped, waking the connection with `wakes`.
    pub fn deliver_later(&self, out: &Outbox, packet: &Packet, wakes: &mut Wakes) {
        self.account(out, out.push_later(packet, wakes));
    }

    /// Counts a push and closes its connection with 4009 on overflow.
    pub fn account(&self, out: &Outbox, pushed: outbox::Pushed) {
        match pushed {
            outbox::Pushed::Queued => self.metrics.frame_out(),
            outbox::Pushed::Dropped | outbox::Pushed::Closed => {}
            outbox::Pushed::Overflow => {
                self.metrics.overflow();
                out.control().close(CloseOrder::slow_consumer());
            }
        }
    }
}
