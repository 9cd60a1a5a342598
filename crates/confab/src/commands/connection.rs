//! An authenticated connection's life in the hub, whichever way it authenticated (`register`,
//! `login`, `auth`, `?token=`, `botauth`, SAUTH2): joining — limits, hub registration,
//! `auth_success`, `ready`, presence (PROTOCOL §2.9) — and leaving when its socket closes (§2.11).

use std::sync::Arc;

use confab_proto::{ErrorCode, close};
use serde_json::json;

use crate::{
    accounts,
    auth::tokens::random_token,
    cluster::presence,
    error::{Error, Result},
    gateway::Session,
    hub::{CloseOrder, Conn},
    identity::{Credential, Identity, credential},
    state::AppState,
    store::{presence::Joined, users::User},
    wire,
};

fn too_many() -> Error {
    Error::new(ErrorCode::TooManyConnections, "Too many connections")
}

/// Finishes a successful authentication: limits, hub registration, `auth_success`, `ready`, presence.
/// `role_ids` are the account's roles when they were read with it; `None` reads them here.
pub async fn complete(
    s: &mut Session,
    listener: Option<&str>,
    user: User,
    role_ids: Option<Vec<String>>,
    session_id: Option<String>,
    created: bool,
) -> crate::error::Result<()> {
    let state = s.state.clone();
    if user.banned {
        return Err(accounts::banned());
    }
    let refuse = |s: &mut Session| {
        s.close(CloseOrder::new(close::POLICY, "Too many connections", None));
        Err(too_many())
    };
    if state.hub.user_connections(&user.id) >= state.config.security.max_connections_per_user {
        return refuse(s);
    }
    let identity = Arc::new(match role_ids {
        Some(ids) => state.identity_with(user, &ids, session_id),
        None => state.identity(user, session_id).await?,
    });
    // In a cluster, the limit and "first connection" are the cluster's (counted in PostgreSQL);
    // from here on the connection is counted, and `disconnected` uncounts it.
    let first_anywhere = match &state.cluster {
        None => None,
        Some(cluster) => match presence::join(&state, cluster.node_id(), &identity.user.id).await? {
            Joined::Full => return refuse(s),
            Joined::Counted { first } => Some(first),
        },
    };
    let u = &identity.user;
    let ready_user = json!({
        "id": u.id, "username": u.username, "nickname": u.nickname, "roles": identity.role_names(),
        "status": {"status": u.status, "text": u.status_text}, "pfp_url": u.pfp_url,
        "cracked": u.cracked(), "bot": u.is_bot(),
    });
    // auth_success and ready are queued before the connection joins any audience, so they are the
    // first two packets it gets after authenticating (PROTOCOL §2.9).
    s.send(wire::with_listener(&wire::packet("auth_success", json!({"val": "Authentication successful"})), listener));
    let validator = random_token();
    let upload_key = crate::attachments::UploadKey {
        conn_id: s.conn_id,
        user_id: identity.user.id.clone(),
        validator: validator.clone(),
    };
    state.attachments.keys.insert(s.validator_key.clone(), upload_key);
    s.send(wire::with_listener(&wire::packet("ready", json!({"user": ready_user, "validator": validator})), listener));
    let viewable = state.directory().viewable(&identity.actor);
    let conn = Arc::new(Conn::new(s.conn_id, identity.clone(), s.outbox.clone()));
    let count = state.hub.register(conn.clone(), viewable);
    s.conn = Some(conn);
    state.metrics.gauge("confab_connections", "state=\"authenticated\"".into(), 1);
    // A ban or timeout saved while this login was in flight would miss a connection registered
    // after it: read the account again now that the hub knows the connection.
    // Likewise a logout, refresh reuse or password change that closed this session's sockets just
    // before it registered.
    match standing(&state, &identity).await? {
        Standing::Closed(order) => {
            s.close(order);
            return Ok(());
        }
        Standing::Live(fresh) if fresh.timeout_until != identity.user.timeout_until => {
            super::users::refresh_account(&state, &fresh);
        }
        Standing::Live(_) => {}
    }
    if created {
        let join = wire::packet("user_join", json!({"user": identity.presence()}));
        state.to_all(join, None, false);
    }
    if first_anywhere.unwrap_or(count == 1) && u.status != "invisible" {
        let connect = wire::packet("user_connect", json!({"user": identity.presence()}));
        state.to_all(connect, None, true);
    }
    Ok(())
}

/// Where a connection's account and credential stand in the database now.
pub enum Standing {
    /// Still allowed in: the account as stored.
    Live(User),
    /// To be closed with this order: banned, deleted, or its session family or SAUTH2 token revoked.
    Closed(CloseOrder),
}

/// Reads a connection's account, and the session family or SAUTH2 token it logged in with, again
/// (two queries at most): for a connection that may have missed the change that ended it — one
/// saved while its login was in flight, or on a cluster node that died before telling the others.
pub async fn standing(state: &AppState, identity: &Identity) -> Result<Standing> {
    let user_id = &identity.user.id;
    let fresh = match identity.session_id.as_deref().map(credential) {
        Some(Credential::Sauth(hash)) => {
            if !state.store.sauth_token_valid(user_id, hash).await? {
                return Ok(Standing::Closed(CloseOrder::revoked()));
            }
            state.store.user_by_id(user_id).await?
        }
        Some(Credential::Bot(hash)) => {
            if !state.bot_token_live(user_id, hash).await? {
                return Ok(Standing::Closed(CloseOrder::revoked()));
            }
            state.store.user_by_id(user_id).await?
        }
        Some(Credential::Family(sid)) => match state.store.user_with_session(user_id, sid).await? {
            Some(found) if !found.session_live => return Ok(Standing::Closed(CloseOrder::revoked())),
            found => found.map(|f| f.user),
        },
        None => state.store.user_by_id(user_id).await?,
    };
    Ok(match fresh {
        None => Standing::Closed(CloseOrder::revoked()),
        Some(fresh) if fresh.banned => Standing::Closed(CloseOrder::banned()),
        Some(fresh) => Standing::Live(fresh),
    })
}

/// Cleans up after a connection closes: hub, presence (PROTOCOL §2.11).
pub fn disconnected(s: &mut Session) {
    let Some(identity) = s.conn.take().map(|c| c.identity()) else {
        return;
    };
    let state = &s.state;
    state.metrics.gauge("confab_connections", "state=\"authenticated\"".into(), -1);
    let left = state.hub.unregister(s.conn_id);
    if let Some(cluster) = &state.cluster {
        presence::leave(state, cluster.node_id(), identity);
    } else if let Some((_, 0)) = left
        && identity.user.status != "invisible"
    {
        let packet = wire::packet("user_disconnect", json!({"username": identity.user.username}));
        state.hub.to_all(&packet.into(), None, true);
    }
}
