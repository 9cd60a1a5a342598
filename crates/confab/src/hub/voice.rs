//! Who is in which voice channel (PROTOCOL §6.6): at most one channel per account, bound to the
//! connection that joined. Kept in memory only: membership ends with the connection. In cluster
//! mode it holds the members of every node; those on other nodes have no queue here (`node`).

use std::{collections::HashMap, sync::Mutex};

use super::{ConnId, Outbox};

/// One account in a voice channel.
#[derive(Clone)]
pub struct Participant {
    pub user_id: String,
    pub username: String,
    pub channel_id: String,
    pub channel_name: String,
    /// The connection that joined, and its queue (for `voice_leave` on a move and for relayed
    /// signalling): `None` for a member on another node, whose connection ids are that node's.
    pub conn_id: ConnId,
    pub outbox: Option<Outbox>,
    /// The node the member is connected to; `None` = this one.
    pub node: Option<String>,
    pub peer_id: String,
    pub muted: bool,
}

/// The voice memberships of this server, by account id.
#[derive(Default)]
pub struct Voice {
    members: Mutex<HashMap<String, Participant>>,
}

impl Voice {
    fn members(&self) -> std::sync::MutexGuard<'_, HashMap<String, Participant>> {
        self.members.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Puts `p` in its channel: the membership it replaces, if any, and the others already in that
    /// channel, by name. Both come from under the one lock, so of two accounts joining at once the
    /// later finds the earlier among the others and the earlier is still there when the later is
    /// announced: each learns the other's peer id.
    pub fn join(&self, p: Participant) -> (Option<Participant>, Vec<Participant>) {
        let mut members = self.members();
        let mut others = in_channel(&members, &p.channel_id);
        others.retain(|q| q.user_id != p.user_id);
        (members.insert(p.user_id.clone(), p), others)
    }

    /// The membership of `user_id`.
    pub fn of_user(&self, user_id: &str) -> Option<Participant> {
        self.members().get(user_id).cloned()
    }

    /// Ends the membership of `user_id`.
    pub fn leave(&self, user_id: &str) -> Option<Participant> {
        self.members().remove(user_id)
    }

    /// Ends the membership bound to connection `conn_id` of `node` (`None` = this node).
    pub fn leave_conn(&self, node: Option<&str>, conn_id: ConnId) -> Option<Participant> {
        let mut members = self.members();
        let user =
            members.values().find(|p| p.conn_id == conn_id && p.node.as_deref() == node).map(|p| p.user_id.clone())?;
        members.remove(&user)
    }

    /// Sets the mute flag of `user_id`; the updated membership.
    pub fn set_muted(&self, user_id: &str, muted: bool) -> Option<Participant> {
        let mut members = self.members();
        let p = members.get_mut(user_id)?;
        p.muted = muted;
        Some(p.clone())
    }

    /// Every member.
    pub fn all(&self) -> Vec<Participant> {
        self.members().values().cloned().collect()
    }

    /// The members connected to this node.
    pub fn local(&self) -> Vec<Participant> {
        self.members().values().filter(|p| p.node.is_none()).cloned().collect()
    }

    /// The other nodes members are connected to.
    pub fn remote_nodes(&self) -> Vec<String> {
        let mut nodes: Vec<String> = self.members().values().filter_map(|p| p.node.clone()).collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    }

    /// Ends the memberships of the members on `node` (it died); the memberships ended.
    pub fn leave_node(&self, node: &str) -> Vec<Participant> {
        let mut members = self.members();
        let gone: Vec<String> =
            members.values().filter(|p| p.node.as_deref() == Some(node)).map(|p| p.user_id.clone()).collect();
        gone.iter().filter_map(|user| members.remove(user)).collect()
    }

    /// The participants of `channel_id`, by name.
    pub fn in_channel(&self, channel_id: &str) -> Vec<Participant> {
        in_channel(&self.members(), channel_id)
    }
}

/// The participants of `channel_id` among `members`, by name.
fn in_channel(members: &HashMap<String, Participant>, channel_id: &str) -> Vec<Participant> {
    let mut list: Vec<Participant> = members.values().filter(|p| p.channel_id == channel_id).cloned().collect();
    list.sort_by(|a, b| a.username.cmp(&b.username));
    list
}
