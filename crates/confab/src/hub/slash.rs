//! The slash commands registered by live connections on this node (PROTOCOL §6.8).
//!
//! A registration belongs to the connection that made it, not to the account: it is replaced by
//! that connection's next `slash_register` and dropped when the connection closes, so a call is
//! always routed to a socket that can answer it. One short lock guards it; nothing awaits under it.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
};

use super::{ConnId, Outbox};
use crate::domain::slash::SlashCommand;

/// Calls remembered per handler connection, so a `slash_response` may name its call by `call_id`.
const PENDING_CALLS: usize = 256;

/// The connection that registered a command, and what routing a call to it needs.
#[derive(Clone)]
pub struct Handler {
    pub conn_id: ConnId,
    pub user_id: String,
    /// The registering account's name when it registered (`registeredBy`, `commander`).
    pub username: String,
    pub outbox: Outbox,
}

struct Registration {
    handler: Handler,
    commands: Vec<SlashCommand>,
    /// `(call_id, invoker account id)` of recent calls routed to this connection, oldest first.
    calls: VecDeque<(String, String)>,
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Another connection of the same account holds a registration.
    OtherSession,
    /// A connection of another account registered this name.
    Taken(String),
}

/// Registrations by connection.
#[derive(Default)]
pub struct SlashRegistry {
    by_conn: Mutex<HashMap<ConnId, Registration>>,
}

impl SlashRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConnId, Registration>> {
        self.by_conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces the set `handler`'s connection registered; returns the names it no longer has.
    /// An empty set removes the registration.
    pub fn register(&self, handler: Handler, commands: Vec<SlashCommand>) -> Result<Vec<String>, Refused> {
        let mut map = self.lock();
        for (conn, reg) in map.iter() {
            if *conn == handler.conn_id {
                continue;
            }
            if reg.handler.user_id == handler.user_id {
                return Err(Refused::OtherSession);
            }
            if let Some(c) = commands.iter().find(|c| reg.commands.iter().any(|r| r.name == c.name)) {
                return Err(Refused::Taken(c.name.clone()));
            }
        }
        let old = map.remove(&handler.conn_id);
        let dropped = old
            .as_ref()
            .map(|o| o.commands.iter().filter(|c| !commands.iter().any(|n| n.name == c.name)))
            .into_iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect();
        if !commands.is_empty() {
            let calls = old.map(|o| o.calls).unwrap_or_default();
            map.insert(handler.conn_id, Registration { handler, commands, calls });
        }
        Ok(dropped)
    }

    /// Forgets a closed connection's registration; returns the names it held.
    pub fn release(&self, conn_id: ConnId) -> Vec<String> {
        self.lock().remove(&conn_id).map(|r| r.commands.into_iter().map(|c| c.name).collect()).unwrap_or_default()
    }

    /// Every registered command with who registered it, sorted by name.
    pub fn all(&self) -> Vec<(SlashCommand, String)> {
        let mut all: Vec<(SlashCommand, String)> = self
            .lock()
            .values()
            .flat_map(|r| r.commands.iter().map(|c| (c.clone(), r.handler.username.clone())))
            .collect();
        all.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        all
    }

    /// The command called `name` and the connection that handles it.
    pub fn find(&self, name: &str) -> Option<(SlashCommand, Handler)> {
        self.lock()
            .values()
            .find_map(|r| r.commands.iter().find(|c| c.name == name).map(|c| (c.clone(), r.handler.clone())))
    }

    /// The command called `name` if a connection of `user_id` registered it.
    pub fn registered_by(&self, user_id: &str, name: &str) -> Option<SlashCommand> {
        self.lock()
            .values()
            .filter(|r| r.handler.user_id == user_id)
            .find_map(|r| r.commands.iter().find(|c| c.name == name).cloned())
    }

    /// Remembers that call `call_id` by `invoker_id` was routed to connection `conn_id`.
    pub fn call_routed(&self, conn_id: ConnId, call_id: String, invoker_id: String) {
        if let Some(reg) = self.lock().get_mut(&conn_id) {
            if reg.calls.len() >= PENDING_CALLS {
                reg.calls.pop_front();
            }
            reg.calls.push_back((call_id, invoker_id));
        }
    }

    /// The invoker of call `call_id` routed to a connection of `user_id`; the call is forgotten.
    pub fn take_call(&self, user_id: &str, call_id: &str) -> Option<String> {
        let mut map = self.lock();
        map.values_mut().filter(|r| r.handler.user_id == user_id).find_map(|r| {
            let at = r.calls.iter().position(|(id, _)| id == call_id)?;
            r.calls.remove(at).map(|(_, invoker)| invoker)
        })
    }
}
