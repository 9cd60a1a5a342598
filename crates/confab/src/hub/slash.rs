//! The slash commands registered by live connections on this node (PROTOCOL §6.8).
//!
//! A registration belongs to the connection that made it, not to the account: it is replaced by
//! that connection's next `slash_register` and dropped when the connection closes, so a call is
//! always routed to a socket that can answer it. One short lock guards it; nothing awaits under it.
//! In cluster mode the other nodes' registrations are in PostgreSQL ([`crate::cluster::slash`]);
//! this registry still holds the calls routed to this node's connections.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
};

use serde::{Deserialize, Serialize};

use super::{ConnId, Outbox};
use crate::domain::slash::SlashCommand;

/// Unanswered calls remembered per handler connection; beyond this the oldest is forgotten.
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
    /// Calls routed to this connection and not answered yet, oldest first.
    calls: VecDeque<PendingCall>,
}

/// A call routed to a handler connection: the only thing a `slash_response` may answer, once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCall {
    pub call_id: String,
    pub invoker_id: String,
    pub invoker_name: String,
    pub channel_id: String,
    pub command: String,
}

/// What a `slash_response` says about the call it answers; `None` matches anything.
#[derive(Debug, Clone, Copy)]
pub struct CallQuery<'a> {
    pub call_id: Option<&'a str>,
    /// An account id, or (as some bot libraries send it) the invoker's username.
    pub invoker: Option<&'a str>,
    pub channel_id: &'a str,
    pub command: Option<&'a str>,
}

impl CallQuery<'_> {
    fn matches(&self, call: &PendingCall) -> bool {
        self.call_id.is_none_or(|id| id == call.call_id)
            && self.invoker.is_none_or(|i| i == call.invoker_id || i.eq_ignore_ascii_case(&call.invoker_name))
            && self.channel_id == call.channel_id
            && self.command.is_none_or(|c| c == call.command)
    }
}

/// Why no pending call answers a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// Nothing routed to this connection fits: a forged or repeated response.
    None,
    /// Several calls fit and the response does not say which.
    Ambiguous,
}

/// The position in `calls` of the call `query` answers: the one with its `call_id`; else the
/// oldest of the invoker's calls of that command (they are interchangeable); else, when the
/// response leaves the command or the invoker out (older bot libraries), the only call that fits.
fn pick(calls: &VecDeque<PendingCall>, query: &CallQuery<'_>) -> Result<usize, Unmatched> {
    let mut fits = calls.iter().enumerate().filter(|(_, c)| query.matches(c)).map(|(at, _)| at);
    let first = fits.next().ok_or(Unmatched::None)?;
    let exact = query.call_id.is_some() || (query.invoker.is_some() && query.command.is_some());
    if !exact && fits.next().is_some() {
        return Err(Unmatched::Ambiguous);
    }
    Ok(first)
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Another connection of the same account holds a registration.
    OtherSession,
    /// A connection of another account registered this name.
    Taken(String),
}

/// Whether a registration of `commands` by `user_id` clashes with another connection's, held by
/// `other_user` with the command names `other_names`: one account registers from one connection
/// only, and a name belongs to one connection.
pub fn clash<'a>(
    user_id: &str,
    commands: &[SlashCommand],
    other_user: &str,
    mut other_names: impl Iterator<Item = &'a str>,
) -> Option<Refused> {
    if other_user == user_id {
        return Some(Refused::OtherSession);
    }
    other_names.find(|n| commands.iter().any(|c| c.name == *n)).map(|n| Refused::Taken(n.to_owned()))
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
            let names = reg.commands.iter().map(|c| c.name.as_str());
            if let Some(refused) = clash(&handler.user_id, &commands, &reg.handler.user_id, names) {
                return Err(refused);
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

    /// Every registration with its handler, for putting them back in the cluster's table.
    pub fn registrations(&self) -> Vec<(Handler, Vec<SlashCommand>)> {
        self.lock().values().map(|r| (r.handler.clone(), r.commands.clone())).collect()
    }

    /// Remembers that `call` was routed to connection `conn_id`; returns where to send it, or
    /// `None` when the connection has no registration (it closed). Done before the call is sent,
    /// so an answer can never arrive before the call is known.
    pub fn call_routed(&self, conn_id: ConnId, call: PendingCall) -> Option<Outbox> {
        let mut map = self.lock();
        let reg = map.get_mut(&conn_id)?;
        if reg.calls.len() >= PENDING_CALLS {
            reg.calls.pop_front();
        }
        reg.calls.push_back(call);
        Some(reg.handler.outbox.clone())
    }

    /// Takes the pending call of connection `conn_id` that `query` answers (see [`pick`]); a call
    /// is answered once.
    pub fn take_call(&self, conn_id: ConnId, query: &CallQuery<'_>) -> Result<PendingCall, Unmatched> {
        let mut map = self.lock();
        let reg = map.get_mut(&conn_id).ok_or(Unmatched::None)?;
        let at = pick(&reg.calls, query)?;
        reg.calls.remove(at).ok_or(Unmatched::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str, invoker: &str, channel: &str, command: &str) -> PendingCall {
        PendingCall {
            call_id: id.into(),
            invoker_id: format!("id-{invoker}"),
            invoker_name: invoker.into(),
            channel_id: channel.into(),
            command: command.into(),
        }
    }

    fn query<'a>(call_id: Option<&'a str>, invoker: Option<&'a str>, command: Option<&'a str>) -> CallQuery<'a> {
        CallQuery { call_id, invoker, channel_id: "general", command }
    }

    #[test]
    fn a_response_answers_a_routed_call_once() {
        let calls: VecDeque<PendingCall> = [
            call("c1", "alice", "general", "roll"),
            call("c2", "alice", "general", "roll"),
            call("c3", "bob", "general", "flip"),
            call("c4", "carol", "news", "roll"),
        ]
        .into();
        assert_eq!(pick(&calls, &query(Some("c2"), None, Some("roll"))), Ok(1));
        assert_eq!(pick(&calls, &query(Some("c2"), None, Some("flip"))), Err(Unmatched::None));
        assert_eq!(pick(&calls, &query(Some("c4"), None, None)), Err(Unmatched::None), "another channel");
        assert_eq!(pick(&calls, &query(None, Some("id-alice"), Some("roll"))), Ok(0), "the oldest");
        assert_eq!(pick(&calls, &query(None, Some("Bob"), Some("flip"))), Ok(2), "by username");
        assert_eq!(pick(&calls, &query(None, Some("id-carol"), Some("roll"))), Err(Unmatched::None));
        assert_eq!(pick(&calls, &query(None, Some("id-mallory"), Some("roll"))), Err(Unmatched::None));
        // Without `command`: the invoker's only call in the channel, or nothing.
        assert_eq!(pick(&calls, &query(None, Some("id-bob"), None)), Ok(2));
        assert_eq!(pick(&calls, &query(None, Some("id-alice"), None)), Err(Unmatched::Ambiguous));
        assert_eq!(pick(&calls, &query(None, None, Some("flip"))), Ok(2));
        assert_eq!(pick(&calls, &query(None, None, Some("roll"))), Err(Unmatched::Ambiguous));
        assert_eq!(pick(&VecDeque::new(), &query(None, None, Some("roll"))), Err(Unmatched::None));
    }
}
