//! Configuration: defaults < `confab.toml` < `CONFAB_*` environment < command-line flags.
//!
//! Every key has a working default so `confab serve` needs no file at all. Values are checked once,
//! at start, and a bad one stops the start with a message that names the key.

use std::{net::SocketAddr, path::PathBuf};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

/// Which account kinds may authenticate (PROTOCOL §0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Local accounts only (handshake `cracked-only`).
    #[default]
    Local,
    /// Rotur accounts only (handshake `rotur`).
    Rotur,
    /// Both (handshake `cracked`).
    Mixed,
}

impl AuthMode {
    /// The handshake's `auth_mode` string (PROTOCOL §2.1).
    pub fn wire_name(self) -> &'static str {
        match self {
            AuthMode::Local => "cracked-only",
            AuthMode::Rotur => "rotur",
            AuthMode::Mixed => "cracked",
        }
    }

    /// Whether local accounts (passwords, JWTs, SAUTH2) are usable in this mode.
    pub fn local_enabled(self) -> bool {
        !matches!(self, AuthMode::Rotur)
    }
}

/// Who may create an account with `register` or `POST /auth/register` (`auth.registration`).
/// The first-run setup link creates the owner in every mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    /// Anyone.
    #[default]
    Open,
    /// Only with a live invite made by an administrator (`invite_create`).
    Invite,
    /// Nobody: "Registration is disabled".
    Closed,
}

impl RegistrationMode {
    /// The name in the configuration, the handshake and `/info`.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationMode::Open => "open",
            RegistrationMode::Invite => "invite",
            RegistrationMode::Closed => "closed",
        }
    }
}

/// The effective configuration of one server process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the one HTTP + WebSocket listener.
    pub listen: SocketAddr,
    /// Folder for the SQLite database, the signing key and other local state.
    pub data_dir: PathBuf,
    /// Empty: SQLite in `data_dir`. A `postgres://` URL switches the backend.
    pub database_url: String,
    /// Public base URL (no trailing slash); empty means `http://<listen>`.
    pub public_url: String,
    pub auth_mode: AuthMode,
    /// Extra Origins allowed on the upgrade and in CORS; `*` disables the check.
    pub allowed_origins: Vec<String>,
    /// Extra names the server answers to in `Host` (PROTOCOL §8.1), besides the host of
    /// `public_url` and loopback: any other `Host` gets 421.
    pub allowed_hosts: Vec<String>,
    /// Name shown as the author of server-generated messages; reserved for accounts.
    pub system_username: String,
    pub server: ServerInfo,
    pub auth: AuthConfig,
    pub security: SecurityConfig,
    pub limits: LimitsConfig,
    pub rate_limits: RateLimitsConfig,
    pub tls: TlsConfig,
    pub metrics: MetricsConfig,
    pub store: StoreConfig,
    pub rotur: RoturConfig,
    pub sauth: SauthConfig,
    pub mentions: MentionsConfig,
    pub attachments: crate::attachments::AttachmentsConfig,
    pub voice: VoiceConfig,
    pub push: crate::push::PushConfig,
    /// Whether bots may authenticate and be managed (PROTOCOL §2.8, §7.7).
    pub bots_enabled: bool,
    /// Bots defined in the configuration file; created or updated at start.
    pub bots: Vec<BotConfig>,
    /// Several nodes on one PostgreSQL database and a broker (docs/cluster.md).
    pub cluster: ClusterConfig,
    /// Set by `--dev` only: enables development conveniences and prints a warning.
    #[serde(skip)]
    pub dev: bool,
}

/// Cluster mode (docs/cluster.md): several `confab serve` nodes on one PostgreSQL database, with
/// committed events fanned out between them over a broker. Empty `broker` = one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `""` (one node), `nats://host:port` or `redis://host:port`.
    pub broker: String,
    /// Prefix of every broker subject, so several clusters can share one broker.
    pub name: String,
    /// This node's id on the broker; empty = a fresh UUIDv7 at every start.
    pub node_id: String,
    /// How long an event that arrived ahead of a missing seq waits before the missing ones are
    /// read from the database.
    pub gap_wait_ms: u64,
    /// How often each node compares every channel's last seq with what it delivered (finds a lost
    /// tail: events the broker dropped with nothing after them).
    pub sync_interval_ms: u64,
    /// How often a node publishes a probe to itself; two missed probes = the broker is down.
    pub probe_interval_ms: u64,
    /// How often a node reads new events from the database while the broker is down.
    pub degraded_poll_ms: u64,
    /// Envelopes waiting for the broker before new ones are dropped (and found by the others'
    /// gap fill or tail sync instead).
    pub publish_queue: usize,
    /// How often a node marks itself alive in `cluster_nodes`.
    pub heartbeat_ms: u64,
    /// A node not heard of for this long is dead: another node removes its presence and announces
    /// the users who are left with no connection. Longer than a quick reconnect elsewhere, so a
    /// user whose node died and who came back on another one is never shown offline.
    pub node_ttl_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            broker: String::new(),
            name: "confab".to_owned(),
            node_id: String::new(),
            gap_wait_ms: 50,
            sync_interval_ms: 1000,
            probe_interval_ms: 1000,
            degraded_poll_ms: 200,
            publish_queue: 65_536,
            heartbeat_ms: 1000,
            node_ttl_ms: 10_000,
        }
    }
}

impl ClusterConfig {
    /// Whether this node is one of several.
    pub fn enabled(&self) -> bool {
        !self.broker.is_empty()
    }
}

/// What the server calls itself before anyone changes it with `server_update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerInfo {
    pub name: String,
    pub owner: String,
    pub icon: String,
    pub banner: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The older switch, kept so existing files keep their meaning: `false` is `registration =
    /// "closed"`. Set together with `registration = "open"` or `"invite"` it is refused at start.
    pub allow_registration: bool,
    /// `open`, `invite` or `closed`; unset means `open` (or `closed` with `allow_registration = false`).
    pub registration: Option<RegistrationMode>,
    pub password_min: usize,
    pub password_max: usize,
    pub default_roles: Vec<String>,
    /// Hex or plain secret of at least 32 bytes; empty means the generated key in `data_dir`.
    pub jwt_secret: String,
    /// `iss` claim; empty means `public_url`.
    pub jwt_issuer: String,
    /// `aud` claim; empty means `public_url`.
    pub jwt_audience: String,
    pub access_ttl_s: u64,
    pub refresh_ttl_s: u64,
    pub family_max_s: u64,
    /// Argon2id workers; 0 means one per core.
    pub hash_workers: usize,
    pub hash_queue: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    pub heartbeat_s: u64,
    pub dead_peer_s: u64,
    /// How long one write to a socket may stay blocked (the peer stopped reading) before the
    /// connection is dropped.
    pub write_timeout_s: u64,
    pub auth_deadline_s: u64,
    /// Inbound WebSocket frame cap in bytes (close 1009 above it).
    pub frame_max: usize,
    pub max_connections_per_user: usize,
    /// Open TCP connections per client address, HTTP and WebSocket alike (a trusted proxy's
    /// clients are counted by their forwarded address on the upgrade).
    pub max_connections_per_ip: usize,
    /// How long a request's head (request line and headers) may take to arrive.
    pub header_timeout_s: u64,
    /// How long a connection may send nothing at all before it is dropped.
    pub idle_timeout_s: u64,
    /// Peers whose `X-Forwarded-For` / `CF-Connecting-IP` are believed.
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub post_content: usize,
    pub search_results: usize,
    /// Outbound queue per connection, in packets and in bytes (close 4009 above either).
    pub queue_packets: usize,
    pub queue_bytes: usize,
    pub nonce_window_s: u64,
    /// Events kept per channel for `resume`, and their maximum age (PROTOCOL §7.2).
    pub event_retention: u64,
    pub event_retention_days: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitsConfig {
    pub enabled: bool,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        RateLimitsConfig { enabled: true }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// CIDRs allowed to read `/metrics` without a token.
    pub allow: Vec<String>,
    /// Bearer token that also admits a scraper; empty disables token access.
    pub token: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Most messages committed in one transaction by the group-commit writer.
    pub batch_max: usize,
    /// Connections in the read pool.
    pub pool_size: u32,
    /// SQLite `synchronous` in WAL mode: `normal` survives any process crash (kill -9), `full`
    /// also survives power loss at the cost of one fsync per group commit.
    pub sqlite_synchronous: SqliteSync,
    /// SQLite: how long the writer waits with no change to commit before it adds the newest
    /// messages to the search index (it also does when 256 are waiting). Searches find messages
    /// that are not indexed yet all the same.
    pub search_index_idle_ms: u64,
    /// PostgreSQL: the longest the server waits for the database on one step — a connection from
    /// the pool, one group commit, the `/readyz` probe — before it gives up and answers
    /// `unavailable` (or 503). Sessions also end a transaction left idle for half of it, so a
    /// node cut off mid-commit holds no lock the other nodes wait for any longer.
    pub timeout_ms: u64,
}

/// How hard SQLite pushes each commit to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    /// WAL + NORMAL: durable against process crashes; the WAL is synced at checkpoints.
    #[default]
    Normal,
    /// WAL + FULL: every commit is fsynced.
    Full,
}

/// Mention rules (PROTOCOL §5.6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct MentionsConfig {
    /// Roles that only holders of `mention_everyone` may mention with `@&role`.
    pub restricted_roles: Vec<String>,
}

/// Voice channels (PROTOCOL §6.6, docs/voice.md): the ICE servers (STUN / TURN) handed to
/// participants for their WebRTC connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct VoiceConfig {
    pub ice_servers: Vec<IceServer>,
}

/// One entry of `RTCConfiguration.iceServers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct IceServer {
    /// `stun:` / `turn:` / `turns:` URLs.
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// SAUTH2 one-time web logins (PROTOCOL §2.7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SauthConfig {
    /// One user per token (1UPT): a generic token admits one live or pending session.
    pub one_session_per_token: bool,
    /// Lifetime of a pending web login.
    pub ttl_s: u64,
}

impl Default for SauthConfig {
    fn default() -> Self {
        SauthConfig { one_session_per_token: true, ttl_s: 120 }
    }
}

/// A bot defined in the configuration file (PROTOCOL §2.8): `name`, exactly one of `token` and
/// `token_hash`, and optional `roles` (default `auth.default_roles`). A plain `token` is replaced by
/// its digest when the configuration is validated, so it is never kept in memory or printed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct BotConfig {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub token: String,
    /// SHA-256 hex digest of the token.
    pub token_hash: String,
    pub roles: Vec<String>,
}

/// The shortest plain bot token accepted from the configuration file: 43 base64url characters
/// carry 256 bits, the entropy PROTOCOL §8.3 asks of every token.
pub const BOT_TOKEN_MIN: usize = 43;

/// The Rotur validator service (PROTOCOL §2.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoturConfig {
    /// Base URL of the service; tests point it at a fake.
    pub base_url: String,
    /// How long one validation may take before "Authentication service unavailable".
    pub timeout_s: u64,
}

impl Default for RoturConfig {
    fn default() -> Self {
        RoturConfig { base_url: "https://api.rotur.dev".to_owned(), timeout_s: 5 }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 5613)),
            data_dir: PathBuf::from("./confab-data"),
            database_url: String::new(),
            public_url: String::new(),
            auth_mode: AuthMode::Local,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            system_username: "originChats".to_owned(),
            server: ServerInfo::default(),
            auth: AuthConfig::default(),
            security: SecurityConfig::default(),
            limits: LimitsConfig::default(),
            rate_limits: RateLimitsConfig::default(),
            tls: TlsConfig::default(),
            metrics: MetricsConfig::default(),
            store: StoreConfig::default(),
            rotur: RoturConfig::default(),
            sauth: SauthConfig::default(),
            mentions: MentionsConfig::default(),
            attachments: crate::attachments::AttachmentsConfig::default(),
            voice: VoiceConfig::default(),
            push: crate::push::PushConfig::default(),
            bots_enabled: true,
            bots: Vec::new(),
            cluster: ClusterConfig::default(),
            dev: false,
        }
    }
}

impl Default for ServerInfo {
    fn default() -> Self {
        ServerInfo { name: "Confab".to_owned(), owner: "Admin".to_owned(), icon: String::new(), banner: String::new() }
    }
}

impl AuthConfig {
    /// The registration mode in force (`validated` has resolved `allow_registration` into it).
    pub fn registration_mode(&self) -> RegistrationMode {
        match (self.allow_registration, self.registration) {
            (false, _) => RegistrationMode::Closed,
            (true, mode) => mode.unwrap_or_default(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            allow_registration: true,
            registration: None,
            password_min: 8,
            password_max: 128,
            default_roles: vec!["user".to_owned()],
            jwt_secret: String::new(),
            jwt_issuer: String::new(),
            jwt_audience: String::new(),
            access_ttl_s: 900,
            refresh_ttl_s: 30 * 86_400,
            family_max_s: 90 * 86_400,
            hash_workers: 0,
            hash_queue: 64,
        }
    }
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            heartbeat_s: 30,
            dead_peer_s: 90,
            write_timeout_s: 30,
            auth_deadline_s: 10,
            frame_max: 65_536,
            max_connections_per_user: 10,
            max_connections_per_ip: 50,
            header_timeout_s: 10,
            idle_timeout_s: 120,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            post_content: 2000,
            search_results: 30,
            queue_packets: 2048,
            queue_bytes: 1 << 20,
            nonce_window_s: 600,
            event_retention: 10_000,
            event_retention_days: 7.0,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { allow: vec!["127.0.0.0/8".to_owned(), "::1/128".to_owned()], token: String::new() }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            batch_max: 512,
            pool_size: 8,
            sqlite_synchronous: SqliteSync::Normal,
            search_index_idle_ms: 20,
            timeout_ms: 5000,
        }
    }
}

/// Command-line values that override every other layer; `None` leaves the key alone.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

/// A configuration that failed to load or validate; the text names the offending key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// Names an unknown key (a typo in `confab.toml` or a `CONFAB_*` variable would otherwise change
/// nothing and say nothing), where it came from, and the known key closest to it.
fn describe(e: figment::Error) -> ConfigError {
    let figment::error::Kind::UnknownField(field, known) = &e.kind else { return ConfigError(e.to_string()) };
    // The path ends with the unknown key itself.
    let parent = &e.path[..e.path.len().saturating_sub(1)];
    let key = |last: &str| parent.iter().map(String::as_str).chain([last]).collect::<Vec<_>>().join(".");
    let source = match e.metadata.as_ref().and_then(|m| m.source.as_ref()) {
        Some(figment::Source::File(path)) => format!(" in {}", path.display()),
        _ if e.metadata.as_ref().is_some_and(|m| m.name.contains("environment")) => {
            format!(" (environment variable CONFAB_{})", e.path.join("__").to_ascii_uppercase())
        }
        _ => String::new(),
    };
    let hint = match known.iter().min_by_key(|k| edit_distance(field, k)) {
        Some(k) => format!("; did you mean `{}`?", key(k)),
        None => String::new(),
    };
    ConfigError(format!("unknown key `{}`{source}{hint}", key(field)))
}

/// Levenshtein distance: single-character insertions, deletions and substitutions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb)).min(above + 1).min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

impl Config {
    /// Loads the layers in order and validates the result.
    pub fn load(file: Option<&std::path::Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError(format!("config file {} does not exist", path.display())));
                }
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("confab.toml")),
        }
        // `CONFAB_TEST_*` belongs to the test suites (e.g. `CONFAB_TEST_POSTGRES_URL`), which start
        // the server from a shell that exports it, and `CONFAB_CHAT_*` to `confab chat` (a user who
        // chats and serves from one shell): neither is a configuration key.
        let env =
            Env::prefixed("CONFAB_").filter(|key| !key.starts_with("test_") && !key.starts_with("chat_")).split("__");
        figment = figment.merge(env).merge(Serialized::defaults(overrides));
        let config: Config = figment.extract().map_err(describe)?;
        config.validated()
    }

    /// Checks cross-field rules that serde cannot express, and fills derived defaults.
    pub fn validated(mut self) -> Result<Config, ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("key `{key}`: {why}")));
        // Tokens name `public_url` as issuer and audience unless `auth.jwt_*` say otherwise: nodes
        // of a cluster must agree on it, so there it may not be left to each node's own address.
        let own_address = self.public_url.is_empty() && self.auth.jwt_issuer.is_empty();
        if self.cluster.enabled() && own_address {
            return bad(
                "public_url",
                "cluster mode needs one public_url (the load balancer's address) on every node: tokens name it",
            );
        }
        if self.public_url.is_empty() {
            let scheme = if self.tls.cert_file.is_some() { "https" } else { "http" };
            self.public_url = format!("{scheme}://{}", self.listen);
        }
        self.public_url = self.public_url.trim_end_matches('/').to_owned();
        if !(self.public_url.starts_with("http://") || self.public_url.starts_with("https://")) {
            return bad("public_url", "must start with http:// or https://");
        }
        if !self.database_url.is_empty()
            && !self.database_url.starts_with("postgres://")
            && !self.database_url.starts_with("postgresql://")
            && !self.database_url.starts_with("sqlite:")
        {
            return bad("database_url", "must be empty, a sqlite: URL or a postgres:// URL");
        }
        if self.security.heartbeat_s == 0 {
            return bad("security.heartbeat_s", "must be at least 1");
        }
        if self.security.dead_peer_s < 2 * self.security.heartbeat_s {
            return bad("security.dead_peer_s", "must be at least twice security.heartbeat_s");
        }
        if self.security.header_timeout_s == 0 {
            return bad("security.header_timeout_s", "must be at least 1");
        }
        if self.security.idle_timeout_s < self.security.dead_peer_s {
            return bad("security.idle_timeout_s", "must be at least security.dead_peer_s");
        }
        if self.security.write_timeout_s == 0 {
            return bad("security.write_timeout_s", "must be at least 1");
        }
        if self.security.auth_deadline_s == 0 {
            return bad("security.auth_deadline_s", "must be at least 1");
        }
        if self.security.frame_max < 1024 {
            return bad("security.frame_max", "must be at least 1024 bytes");
        }
        if self.security.max_connections_per_user == 0 || self.security.max_connections_per_ip == 0 {
            return bad("security.max_connections_per_*", "must be at least 1");
        }
        if self.auth.password_min == 0 || self.auth.password_min > self.auth.password_max {
            return bad("auth.password_min", "must be between 1 and auth.password_max");
        }
        self.auth.registration = Some(match (self.auth.allow_registration, self.auth.registration) {
            (true, mode) => mode.unwrap_or_default(),
            (false, None | Some(RegistrationMode::Closed)) => RegistrationMode::Closed,
            (false, Some(mode)) => {
                let why = format!(
                    "is \"{}\" but auth.allow_registration = false closes registration; remove \
                     auth.allow_registration (auth.registration replaces it)",
                    mode.as_str()
                );
                return bad("auth.registration", &why);
            }
        });
        if self.auth.access_ttl_s == 0 || self.auth.access_ttl_s > 86_400 {
            return bad("auth.access_ttl_s", "must be between 1 and 86400");
        }
        if !self.auth.jwt_secret.is_empty() && self.auth.jwt_secret.len() < 32 {
            return bad("auth.jwt_secret", "must be at least 32 characters");
        }
        if self.limits.post_content == 0 {
            return bad("limits.post_content", "must be at least 1");
        }
        if self.limits.queue_packets < 16 || self.limits.queue_bytes < 16 * 1024 {
            return bad("limits.queue_*", "must allow at least 16 packets and 16 KiB");
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return bad("tls", "set both tls.cert_file and tls.key_file, or neither");
        }
        if !(self.rotur.base_url.starts_with("http://") || self.rotur.base_url.starts_with("https://")) {
            return bad("rotur.base_url", "must start with http:// or https://");
        }
        self.rotur.base_url = self.rotur.base_url.trim_end_matches('/').to_owned();
        if self.limits.event_retention == 0 || self.limits.event_retention_days <= 0.0 {
            return bad("limits.event_retention", "must be positive");
        }
        if self.sauth.ttl_s == 0 {
            return bad("sauth.ttl_s", "must be at least 1");
        }
        if self.rotur.timeout_s == 0 {
            return bad("rotur.timeout_s", "must be at least 1");
        }
        if self.store.batch_max == 0 || self.store.pool_size == 0 {
            return bad("store", "batch_max and pool_size must be at least 1");
        }
        if self.store.timeout_ms < 100 {
            return bad("store.timeout_ms", "must be at least 100");
        }
        for cidr in &self.metrics.allow {
            if crate::domain::net::Cidr::parse(cidr).is_none() {
                return bad("metrics.allow", &format!("`{cidr}` is not a CIDR"));
            }
        }
        for cidr in &self.security.trusted_proxies {
            if crate::domain::net::Cidr::parse(cidr).is_none() {
                return bad("security.trusted_proxies", &format!("`{cidr}` is not a CIDR"));
            }
        }
        if self.attachments.max_attachments_per_user == 0 || self.attachments.max_attachments_per_user < -1 {
            return bad("attachments.max_attachments_per_user", "must be -1 (unlimited) or at least 1");
        }
        if self.attachments.storage == crate::attachments::storage::StorageKind::S3
            && let Some((key, why)) = self.attachments.s3.problem()
        {
            return bad(key, why);
        }
        self.validate_bots()?;
        self.validate_push()?;
        self.validate_cluster()?;
        if self.auth.jwt_issuer.is_empty() {
            self.auth.jwt_issuer = self.public_url.clone();
        }
        if self.auth.jwt_audience.is_empty() {
            self.auth.jwt_audience = self.public_url.clone();
        }
        Ok(self)
    }

    /// Checks the `push` section and fills in its contact (`push.subject`) from `public_url`.
    fn validate_push(&mut self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("key `push.{key}`: {why}")));
        let push = &mut self.push;
        if push.subject.is_empty() {
            push.subject = if self.public_url.starts_with("https://") {
                self.public_url.clone()
            } else {
                // Accepted by the push services that check (Apple refuses an empty one); an
                // operator sets a real contact in `push.subject`.
                "mailto:webpush@localhost".to_owned()
            };
        }
        if !(push.subject.starts_with("mailto:") || push.subject.starts_with("https://")) {
            return bad("subject", "must be a mailto: or https:// URI");
        }
        // Push services keep a message for four weeks at most.
        if push.ttl_s > 28 * 86_400 {
            return bad("ttl_s", "must be at most 2419200 (four weeks)");
        }
        if push.queue == 0 || push.concurrency == 0 || push.timeout_s == 0 || push.attempts == 0 {
            return bad("queue, concurrency, timeout_s and attempts", "must be at least 1");
        }
        Ok(())
    }

    /// Checks `cluster.*`: a broker this build speaks, and what every node must share — the
    /// PostgreSQL database (SQLite belongs to one process) and the JWT secret (without it each
    /// node signs with a key of its own in `data_dir`, and a token from one is refused by another).
    fn validate_cluster(&mut self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("key `{key}`: {why}")));
        let c = &mut self.cluster;
        if !c.enabled() {
            return Ok(());
        }
        let known = [("nats://", cfg!(feature = "nats"), "nats"), ("redis://", cfg!(feature = "redis"), "redis")];
        match known.iter().find(|(scheme, _, _)| c.broker.starts_with(scheme)) {
            None => return bad("cluster.broker", "must be empty, a nats:// URL or a redis:// URL"),
            Some((_, false, feature)) => {
                return bad("cluster.broker", &format!("this build has no `{feature}` feature"));
            }
            Some(_) => {}
        }
        if !(self.database_url.starts_with("postgres://") || self.database_url.starts_with("postgresql://")) {
            return bad("database_url", "cluster mode needs database_url = postgres://… (cluster.broker is set)");
        }
        if self.auth.jwt_secret.is_empty() {
            return bad("auth.jwt_secret", "cluster mode needs one auth.jwt_secret shared by every node");
        }
        if c.name.is_empty() || !c.name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_') {
            return bad("cluster.name", "must be letters, digits, - or _");
        }
        if c.node_id.is_empty() {
            c.node_id = uuid::Uuid::now_v7().simple().to_string();
        } else if !c.node_id.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_') {
            return bad("cluster.node_id", "must be letters, digits, - or _");
        }
        for (key, v) in [
            ("cluster.gap_wait_ms", c.gap_wait_ms),
            ("cluster.sync_interval_ms", c.sync_interval_ms),
            ("cluster.probe_interval_ms", c.probe_interval_ms),
            ("cluster.degraded_poll_ms", c.degraded_poll_ms),
            ("cluster.publish_queue", c.publish_queue as u64),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1");
            }
        }
        Ok(())
    }

    /// Checks `bots[]` (names follow the username rules and are unique; exactly one of `token` and
    /// `token_hash`) and replaces each plain token by its digest.
    fn validate_bots(&mut self) -> Result<(), ConfigError> {
        let mut seen: Vec<String> = Vec::new();
        for (i, bot) in self.bots.iter_mut().enumerate() {
            let bad = |field: &str, why: &str| Err(ConfigError(format!("key `bots[{i}].{field}`: {why}")));
            let Ok(name) = crate::domain::names::username(&bot.name) else {
                return bad("name", "must be 2-32 characters from letters, digits, `_` and `-`");
            };
            bot.name = name.to_owned();
            let folded = bot.name.to_ascii_lowercase();
            if folded == self.system_username.to_ascii_lowercase() {
                return bad("name", "is the reserved system username");
            }
            if seen.contains(&folded) {
                return bad("name", "names another bot already (names are case-insensitive)");
            }
            seen.push(folded);
            match (bot.token.is_empty(), bot.token_hash.is_empty()) {
                (false, false) | (true, true) => return bad("token", "set exactly one of token and token_hash"),
                (false, true) => {
                    if bot.token.chars().count() < BOT_TOKEN_MIN {
                        return bad("token", &format!("must be at least {BOT_TOKEN_MIN} characters"));
                    }
                    bot.token_hash = crate::auth::tokens::hash_token(&bot.token);
                    bot.token.clear();
                }
                (true, false) => {
                    if bot.token_hash.len() != 64 || !bot.token_hash.chars().all(|c| c.is_ascii_hexdigit()) {
                        return bad("token_hash", "must be a SHA-256 digest: 64 hexadecimal digits");
                    }
                    bot.token_hash.make_ascii_lowercase();
                }
            }
            if bot.roles.iter().any(|r| !crate::domain::names::role_name_ok(r)) {
                return bad("roles", "must be role names");
            }
        }
        Ok(())
    }

    /// The configuration as TOML with secrets replaced, for `confab config`.
    pub fn redacted_toml(&self) -> String {
        let mut shown = self.clone();
        let redact = |s: &mut String| {
            if !s.is_empty() {
                *s = "[redacted]".to_owned();
            }
        };
        redact(&mut shown.auth.jwt_secret);
        redact(&mut shown.metrics.token);
        redact(&mut shown.attachments.s3.secret_access_key);
        // A password in a URL's user part (`scheme://user:password@host`).
        for url in [&mut shown.database_url, &mut shown.cluster.broker] {
            if let Some(at) = url.find('@')
                && let Some(colon) = url[..at].rfind(':')
                && !url[..colon].ends_with('/')
            {
                url.replace_range(colon + 1..at, "[redacted]");
            }
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_derive_public_url() {
        let c = Config::default().validated().unwrap();
        assert_eq!(c.public_url, "http://127.0.0.1:5613");
        assert_eq!(c.auth.jwt_issuer, c.public_url);
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut c = Config::default();
        c.security.dead_peer_s = 10;
        let err = c.validated().unwrap_err().to_string();
        assert!(err.contains("security.dead_peer_s"), "{err}");
        let c = Config { database_url: "mysql://x".into(), ..Config::default() };
        assert!(c.validated().unwrap_err().to_string().contains("database_url"));
    }

    #[test]
    fn s3_storage_needs_its_keys() {
        let mut c = Config::default();
        c.attachments.storage = crate::attachments::storage::StorageKind::S3;
        let err = c.clone().validated().unwrap_err().to_string();
        assert!(err.contains("attachments.s3.bucket"), "{err}");
        c.attachments.s3.bucket = "files".into();
        c.attachments.s3.access_key_id = "id".into();
        let err = c.clone().validated().unwrap_err().to_string();
        assert!(err.contains("attachments.s3.secret_access_key"), "{err}");
        c.attachments.s3.secret_access_key = "key".into();
        assert!(c.validated().is_ok());
    }

    #[test]
    fn bots_are_checked_and_plain_tokens_hashed() {
        let token = "t".repeat(43);
        let bot = |name: &str, token: &str, hash: &str| BotConfig {
            name: name.into(),
            token: token.into(),
            token_hash: hash.into(),
            roles: Vec::new(),
        };
        let c = Config { bots: vec![bot(" notifier ", &token, "")], ..Config::default() }.validated().unwrap();
        assert_eq!(c.bots[0].name, "notifier");
        assert_eq!(c.bots[0].token, "");
        assert_eq!(c.bots[0].token_hash, crate::auth::tokens::hash_token(&token));
        assert!(!c.redacted_toml().contains(&token));
        let cases = [
            (vec![bot("x", &token, "")], "bots[0].name"),
            (vec![bot("originChats", &token, "")], "bots[0].name"),
            (vec![bot("a1", &token, ""), bot("A1", &token, "")], "bots[1].name"),
            (vec![bot("a1", "short", "")], "bots[0].token"),
            (vec![bot("a1", "", "")], "bots[0].token"),
            (vec![bot("a1", &token, &"a".repeat(64))], "bots[0].token"),
            (vec![bot("a1", "", "not hex")], "bots[0].token_hash"),
        ];
        for (bots, key) in cases {
            let err = Config { bots, ..Config::default() }.validated().unwrap_err().to_string();
            assert!(err.contains(key), "{err} should name {key}");
        }
        let upper = "A".repeat(64);
        let c = Config { bots: vec![bot("a1", "", &upper)], ..Config::default() }.validated().unwrap();
        assert_eq!(c.bots[0].token_hash, "a".repeat(64));
    }

    #[test]
    fn registration_mode_and_the_older_switch() {
        let mode = |allow: bool, registration: Option<RegistrationMode>| {
            let mut c = Config::default();
            c.auth.allow_registration = allow;
            c.auth.registration = registration;
            c.validated().map(|c| c.auth.registration_mode())
        };
        assert_eq!(mode(true, None).unwrap(), RegistrationMode::Open);
        assert_eq!(mode(false, None).unwrap(), RegistrationMode::Closed, "existing files keep their meaning");
        assert_eq!(mode(true, Some(RegistrationMode::Invite)).unwrap(), RegistrationMode::Invite);
        assert_eq!(mode(false, Some(RegistrationMode::Closed)).unwrap(), RegistrationMode::Closed);
        let err = mode(false, Some(RegistrationMode::Invite)).unwrap_err().to_string();
        assert!(err.contains("auth.registration") && err.contains("allow_registration"), "{err}");
    }

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("heartbeat", "heartbeat_s"), 2);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn redaction_hides_secrets() {
        let mut c = Config::default();
        c.auth.jwt_secret = "s".repeat(40);
        c.database_url = "postgres://bob:hunter2@db/x".into();
        c.attachments.s3.secret_access_key = "s3-secret-key".into();
        let shown = c.redacted_toml();
        assert!(!shown.contains("hunter2"));
        assert!(!shown.contains("s3-secret-key"));
        assert!(!shown.contains(&"s".repeat(40)));
        assert!(shown.contains("[redacted]"));
    }
}
