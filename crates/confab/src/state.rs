//! Shared server state: configuration, store, hub, credentials and the cached directory.
//!
//! One `AppState` per running server, passed explicitly (no globals), so tests can run many servers
//! in one process.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use dashmap::DashMap;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub use crate::identity::Identity;
use crate::{
    auth::{jwt::JwtKeys, password::Hasher, throttle::AuthThrottle},
    cluster::control::{Effect, Who},
    config::Config,
    domain::permissions::{Actor, ChannelPermissions},
    error::Result,
    hub::{CloseOrder, ConnId, Hub},
    metrics::Metrics,
    store::{Store, channels::Channel, roles::Role, users::User},
};

/// Everything a request handler may need; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The fields behind [`AppState`].
pub struct Inner {
    pub config: Config,
    pub store: Store,
    pub hub: Hub,
    pub jwt: JwtKeys,
    pub hasher: Hasher,
    pub throttle: AuthThrottle,
    /// Per-account limits by command class.
    pub limiter: crate::ratelimit::Limiter,
    /// Pending SAUTH2 web logins.
    pub web_logins: crate::auth::sauth::WebLogins,
    /// The first-run link's token while the server has no owner.
    pub setup: crate::auth::setup::SetupLink,
    /// The Rotur validator service (modes `rotur` and `mixed`).
    pub rotur: crate::auth::rotur::Rotur,
    /// File storage and upload credentials for attachments.
    pub attachments: crate::attachments::Attachments,
    /// The VAPID key and the queue to the push sender.
    pub push: crate::push::Push,
    /// Slash commands registered by this node's live connections.
    pub slash: crate::hub::slash::SlashRegistry,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    /// Set once shutdown begins; `/readyz` reports `draining`.
    pub draining: AtomicBool,
    /// Open TCP connections per client IP: counted when accepted (`http::listener`), or on the
    /// upgrade for clients behind a trusted proxy.
    pub ip_conns: DashMap<IpAddr, usize>,
    /// Live socket tasks; shutdown waits for them to send their close frames.
    pub sessions: tokio_util::task::TaskTracker,
    /// The last `/info` answer and when it was computed (PROTOCOL §3.3).
    pub info_cache: tokio::sync::Mutex<Option<(std::time::Instant, Value)>>,
    /// Voice channel memberships.
    pub voice: crate::hub::voice::Voice,
    /// This node's part of a cluster; `None` on a single node (`cluster.broker` empty).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Wakes the poll expiry task when a poll with an expiry is created.
    pub poll_wake: tokio::sync::Notify,
    /// The member list, serialised once per change (`users_list`, `users_online`).
    pub members: crate::members::MemberCache,
    next_conn: AtomicU64,
    directory: RwLock<Arc<Directory>>,
}

/// A channel with its permission map parsed once.
#[derive(Debug, Clone)]
pub struct ChannelEntry {
    pub row: Channel,
    pub perms: ChannelPermissions,
}

/// Cached channels and roles: read on every command, changed rarely, so kept in memory and
/// replaced wholesale after a change.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub channels: Vec<ChannelEntry>,
    /// Highest position first.
    pub roles: Vec<Role>,
    /// The server's shown name, icon and banner (settings over configuration).
    pub server: ServerIdentity,
}

/// What `server_update` changes, cached because every handshake shows it.
#[derive(Debug, Clone, Default)]
pub struct ServerIdentity {
    pub name: String,
    pub icon: String,
    pub banner: String,
}

impl Directory {
    /// A channel by name: exact match first, then case-insensitive.
    pub fn channel(&self, name: &str) -> Option<&ChannelEntry> {
        self.channels
            .iter()
            .find(|c| c.row.name == name)
            .or_else(|| self.channels.iter().find(|c| c.row.name.to_lowercase() == name.to_lowercase()))
    }

    /// A role by name, case-insensitively.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.name.eq_ignore_ascii_case(name))
    }

    /// Roles for the given ids, highest position first.
    pub fn roles_of(&self, ids: &[String]) -> Vec<Role> {
        self.roles.iter().filter(|r| ids.contains(&r.id)).cloned().collect()
    }

    /// The actor for a set of roles (sorted highest first).
    pub fn actor(&self, roles: &[Role]) -> Actor {
        let mut permissions: Vec<String> = roles.iter().flat_map(Role::permission_list).collect();
        permissions.sort();
        permissions.dedup();
        Actor { roles: roles.iter().map(|r| r.name.clone()).collect(), permissions }
    }

    /// Ids of the channels `actor` may view.
    pub fn viewable(&self, actor: &Actor) -> Vec<String> {
        self.channels.iter().filter(|c| actor.channel_allows(&c.perms, "view")).map(|c| c.row.id.clone()).collect()
    }
}

impl AppState {
    /// Assembles the state; `store` must be migrated and bootstrapped, `storage` is where
    /// attachment files go.
    pub fn new(
        config: Config,
        store: Store,
        jwt: JwtKeys,
        vapid: Option<crate::push::vapid::Vapid>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        storage: crate::attachments::storage::Storage,
    ) -> AppState {
        let hasher = Hasher::new(config.auth.hash_workers, config.auth.hash_queue);
        let throttle = AuthThrottle::new(config.rate_limits.enabled);
        AppState(Arc::new(Inner {
            hub: Hub::new(metrics.clone()),
            hasher,
            throttle,
            limiter: crate::ratelimit::Limiter::new(config.rate_limits.enabled),
            web_logins: crate::auth::sauth::WebLogins::new(
                std::time::Duration::from_secs(config.sauth.ttl_s),
                config.sauth.one_session_per_token,
            ),
            setup: crate::auth::setup::SetupLink::default(),
            rotur: crate::auth::rotur::Rotur::new(
                &config.rotur.base_url,
                std::time::Duration::from_secs(config.rotur.timeout_s),
            ),
            slash: crate::hub::slash::SlashRegistry::default(),
            cluster: config.cluster.enabled().then(|| Arc::new(crate::cluster::Cluster::new(&config.cluster))),
            attachments: crate::attachments::Attachments::new(&config.attachments, storage),
            push: crate::push::Push::new(&config.push, vapid),
            config,
            store,
            jwt,
            metrics,
            shutdown,
            draining: AtomicBool::new(false),
            ip_conns: DashMap::new(),
            sessions: tokio_util::task::TaskTracker::new(),
            info_cache: tokio::sync::Mutex::new(None),
            voice: crate::hub::voice::Voice::default(),
            poll_wake: tokio::sync::Notify::new(),
            members: crate::members::MemberCache::default(),
            next_conn: AtomicU64::new(1),
            directory: RwLock::new(Arc::new(Directory::default())),
        }))
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Applies `effect` to this node's connections (but `except`) and, in cluster mode, has every
    /// other node apply it to theirs (docs/cluster.md, "Control log"). A refresh effect does
    /// nothing here: its caller runs the refresh on this node itself.
    pub fn everywhere(&self, effect: Effect, except: Option<ConnId>) {
        effect.on_hub(&self.hub, except);
        if let Some(cluster) = &self.cluster {
            cluster.tell(self, &effect);
        }
    }

    /// Accounts with a live connection: on this node, or in cluster mode on any node.
    pub async fn online_users(&self) -> Result<std::collections::HashSet<String>> {
        Ok(match &self.cluster {
            None => self.hub.online_users().into_iter().collect(),
            Some(_) => self.store.presence_online().await?.into_iter().collect(),
        })
    }

    /// Whether an account has a live connection (on any node, in cluster mode).
    pub async fn is_online(&self, user_id: &str) -> Result<bool> {
        Ok(match &self.cluster {
            None => self.hub.user_connections(user_id) > 0,
            Some(_) => self.store.presence_total(user_id).await? > 0,
        })
    }

    /// Closes the matching connections on every node with `order`.
    pub fn close(&self, who: Who, order: CloseOrder) {
        self.everywhere(Effect::Close { who, order }, None);
    }

    /// A packet for every connection on every node (but `except`, on this one).
    pub fn to_all(&self, packet: String, except: Option<ConnId>, droppable: bool) {
        self.everywhere(Effect::ToAll { packet, but_user: None, droppable }, except);
    }

    /// The current directory snapshot.
    pub fn directory(&self) -> Arc<Directory> {
        self.directory.read().map(|d| d.clone()).unwrap_or_default()
    }

    /// Reloads channels and roles from the store.
    pub async fn reload_directory(&self) -> Result<()> {
        let channels = self
            .store
            .channels()
            .await?
            .into_iter()
            .map(|row| {
                let perms = serde_json::from_str(&row.permissions).unwrap_or_default();
                ChannelEntry { row, perms }
            })
            .collect();
        let roles = self.store.roles().await?;
        let cfg = &self.config.server;
        let setting = |key: &'static str, default: &str| {
            let default = default.to_owned();
            async move { Ok::<_, crate::error::Error>(self.store.setting(key).await?.unwrap_or(default)) }
        };
        let server = ServerIdentity {
            name: setting("server.name", &cfg.name).await?,
            icon: setting("server.icon", &cfg.icon).await?,
            banner: setting("server.banner", &cfg.banner).await?,
        };
        if let Ok(mut d) = self.directory.write() {
            *d = Arc::new(Directory { channels, roles, server });
        }
        // Role names and colours in the member list come from the directory.
        self.store.members_changed();
        Ok(())
    }

    /// Loads an account's roles and builds its identity.
    pub async fn identity(&self, user: User, session_id: Option<String>) -> Result<Identity> {
        let ids = self.store.user_role_ids(&user.id).await?;
        Ok(self.identity_with(user, &ids, session_id))
    }

    /// Builds an account's identity from role ids read with it.
    pub fn identity_with(&self, user: User, role_ids: &[String], session_id: Option<String>) -> Identity {
        let dir = self.directory();
        let roles = dir.roles_of(role_ids);
        let actor = dir.actor(&roles);
        Identity { user, roles, actor, session_id }
    }

    /// Role names per account id, highest first, for listings.
    pub async fn roles_by_user(&self) -> Result<HashMap<String, Vec<Role>>> {
        let dir = self.directory();
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (user, role) in self.store.all_user_roles().await? {
            map.entry(user).or_default().push(role);
        }
        Ok(map.into_iter().map(|(u, ids)| (u, dir.roles_of(&ids))).collect())
    }

    /// The server's displayed name, owner, icon and banner, from the cached directory.
    pub async fn server_info(&self) -> Result<Value> {
        let server = self.directory().server.clone();
        Ok(json!({
            "name": server.name,
            "owner": {"name": self.config.server.owner},
            "icon": server.icon,
            "banner": server.banner,
            "url": self.config.public_url,
        }))
    }
}
