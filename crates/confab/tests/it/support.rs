//! Test harness: a real server on 127.0.0.1:0 with its own temporary database, and real clients.
//!
//! `TestServer::spawn()` uses SQLite in a temporary folder; `TestServer::spawn_pg()` uses the
//! PostgreSQL server named by `CONFAB_TEST_POSTGRES_URL` (default: the local `test` database) with a
//! fresh schema per test. PostgreSQL is required: a missing server fails the test loudly.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use confab::{
    config::Config,
    metrics::Metrics,
    store::{Location, Store},
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{net::TcpStream, task::JoinHandle};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest, protocol::CloseFrame},
};
use tokio_util::sync::CancellationToken;

/// How long a test waits for an expected packet before failing.
pub const WAIT: Duration = Duration::from_secs(10);
/// The system username of the default configuration, for stores opened without a server.
pub const SYSTEM: &str = "originChats";

/// Whether `message` (history shape) is the welcome the first start posts into `general`.
pub fn is_welcome(message: &Value) -> bool {
    message["user"] == SYSTEM && message["content"] == confab::store::bootstrap::WELCOME
}

/// The messages of a `messages_get` reply without the first start's welcome: what the test itself
/// wrote (`gateway::first_start_welcomes_in_general` checks the welcome).
pub fn written(reply: &Value) -> Vec<Value> {
    let all = reply["messages"].as_array().unwrap_or_else(|| panic!("no messages in {reply}"));
    all.iter().filter(|m| !is_welcome(m)).cloned().collect()
}

/// The PostgreSQL server used by the PostgreSQL tests.
pub fn postgres_url() -> String {
    std::env::var("CONFAB_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned())
}

/// The test PostgreSQL server's URL with `schema` as its search path, for a `confab` process
/// (which takes one `database_url`).
pub fn postgres_url_in(schema: &str) -> String {
    let base = postgres_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-csearch_path%3D{schema}")
}

/// A fresh schema on the test PostgreSQL server; panics if the server is unreachable.
pub async fn pg_schema() -> String {
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    let pool = sqlx::PgPool::connect(&postgres_url())
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is required for this test ({}): {e}", postgres_url()));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&pool).await.expect("create schema");
    pool.close().await;
    schema
}

/// Opens a store of the given backend for contract tests.
pub async fn open_store(backend: Backend, dir: &std::path::Path) -> Store {
    open_location(&fresh_location(backend, dir).await).await
}

/// Which database a server or store test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running server and what is needed to talk to it.
pub struct TestServer {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub config: Config,
    pub store: Store,
    location: Location,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// A server on SQLite with default configuration.
    pub async fn spawn() -> TestServer {
        Self::spawn_with(Backend::Sqlite, |_| {}).await
    }

    /// A server on PostgreSQL with default configuration.
    pub async fn spawn_pg() -> TestServer {
        Self::spawn_with(Backend::Postgres, |_| {}).await
    }

    /// A server on `backend` whose configuration `tweak` may change.
    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let location = fresh_location(backend, dir.path()).await;
        Self::spawn_in(location, dir, tweak).await
    }

    /// A server on the existing database at `location` (another node of a cluster), whose
    /// configuration `tweak` may change.
    pub async fn spawn_on(location: &Location, tweak: impl FnOnce(&mut Config)) -> TestServer {
        Self::spawn_in(location.clone(), tempfile::tempdir().expect("tempdir"), tweak).await
    }

    /// Another node of this server's cluster started now, on the same database with the same
    /// configuration but its own address, data folder and `cluster.node_id`.
    pub async fn sibling(&self, node_id: &str) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = self.config.clone();
        config.listen = listener.local_addr().expect("addr");
        config.data_dir = dir.path().to_owned();
        config.cluster.node_id = node_id.to_owned();
        Self::start(listener, config, self.location.clone(), dir).await
    }

    /// A server on `location` with `dir` as its data folder.
    async fn spawn_in(location: Location, dir: tempfile::TempDir, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut config = Config { data_dir: dir.path().to_owned(), listen: addr, ..Config::default() };
        config.auth.hash_workers = 2;
        // Tests send many frames from one address and account. The limiters (per-IP auth bucket,
        // per-class rate limits) are switched on by the tests that exercise them.
        config.rate_limits.enabled = false;
        // A small pool and batch, as every other test store has (`open_location`).
        config.store.pool_size = 4;
        config.store.batch_max = 256;
        tweak(&mut config);
        let config = config.validated().expect("valid config");
        Self::start(listener, config, location, dir).await
    }

    async fn start(
        listener: tokio::net::TcpListener,
        config: Config,
        location: Location,
        dir: tempfile::TempDir,
    ) -> TestServer {
        let addr = listener.local_addr().expect("addr");
        let metrics = Arc::new(Metrics::default());
        // Opened with the server's store options, so that a test's tweak of them applies.
        let store = Store::open_with(&location, &config.store, metrics.clone()).await.expect("open store");
        store.bootstrap(&config.system_username).await.expect("bootstrap");
        let shutdown = CancellationToken::new();
        let task =
            tokio::spawn(confab::run_with_store(listener, config.clone(), store.clone(), metrics, shutdown.clone()));
        let server = TestServer {
            addr,
            http: reqwest::Client::new(),
            config,
            store,
            location,
            shutdown,
            task: Some(task),
            _dir: dir,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        if let Some(cert) = &self.config.tls.cert_file {
            // TLS: trust the server's own (self-signed) certificate and ask over HTTPS.
            loop {
                let last = match tls_connect(self.addr, "localhost", cert).await {
                    Ok(mut tls) => match http_get_raw(&mut tls, "localhost", "/healthz").await {
                        Ok((200, _)) => return,
                        other => format!("{other:?}"),
                    },
                    Err(e) => e.to_string(),
                };
                let finished = self.task.as_ref().is_some_and(JoinHandle::is_finished);
                assert!(!finished, "TLS server stopped: {last}");
                assert!(tokio::time::Instant::now() < deadline, "TLS server did not become ready: {last}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        loop {
            if let Ok(r) = self.http.get(self.url("/healthz")).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "server did not become ready");
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `http://addr/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `ws://addr/path`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Opens a socket on `/` and reads the handshake.
    pub async fn connect(&self) -> Client {
        Client::connect(&self.ws_url("/")).await
    }

    /// Registers `name` over a new socket; returns the client after `ready`.
    pub async fn register(&self, name: &str) -> Client {
        Client::register(&self.ws_url("/"), name).await
    }

    /// Logs `name` in over a new socket.
    pub async fn login(&self, name: &str, password: &str) -> Client {
        Client::login(&self.ws_url("/"), name, password).await
    }

    /// Gives the account `name` exactly the roles `roles` (by name) in the store, for setting up.
    pub async fn set_roles(&self, name: &str, roles: &[&str]) {
        let all = self.store.roles().await.unwrap();
        let ids: Vec<String> = roles
            .iter()
            .map(|r| all.iter().find(|x| x.name == *r).unwrap_or_else(|| panic!("no role {r}")).id.clone())
            .collect();
        let user = self.store.user_by_name(name).await.unwrap().unwrap();
        self.store.user_set_roles(&user.id, &ids).await.unwrap();
    }

    /// A new account holding exactly `roles`, logged in over a new socket (so the connection's
    /// identity carries those roles).
    pub async fn member(&self, name: &str, roles: &[&str]) -> Client {
        self.http_register(name).await;
        self.set_roles(name, roles).await;
        self.login(name, "correct horse").await
    }

    /// The id of account `name`.
    pub async fn user_id(&self, name: &str) -> String {
        self.store.user_by_name(name).await.unwrap().unwrap_or_else(|| panic!("no account {name}")).id
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.http.post(self.url(path)).json(&body).send().await.expect("http");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Registers over HTTP and returns the token set.
    pub async fn http_register(&self, name: &str) -> Value {
        let (status, body) =
            self.post_json("/auth/register", json!({"username": name, "password": "correct horse"})).await;
        assert_eq!(status, 201, "{body}");
        body
    }

    /// Runs `sql` (one or more statements) on the server's own database: its SQLite file, or its
    /// PostgreSQL schema. For tests that need the database to misbehave.
    pub async fn raw_sql(&self, sql: &str) {
        match &self.location {
            Location::SqliteFile(path) => {
                let pool =
                    sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.expect("open SQLite");
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&pool).await.expect("raw SQL");
                pool.close().await;
            }
            Location::Postgres { url, schema } => {
                let pool = sqlx::PgPool::connect(url).await.expect("connect to PostgreSQL");
                let path = schema.as_deref().map(|s| format!("SET search_path TO \"{s}\"; ")).unwrap_or_default();
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("{path}{sql}"))).execute(&pool).await.expect("raw SQL");
                pool.close().await;
            }
        }
    }

    /// Stops the server gracefully and starts a new one on the same database and data folder
    /// (on a new port; the configuration, signing key included, is unchanged).
    pub async fn restart(self) -> TestServer {
        self.restart_after(Duration::ZERO).await
    }

    /// [`TestServer::restart`], with the server down for `down` (for what must happen while no
    /// server runs, such as a poll expiring).
    pub async fn restart_after(self, down: Duration) -> TestServer {
        self.restart_on("127.0.0.1:0".parse().expect("address"), down).await
    }

    /// [`TestServer::restart`] on the same address, for clients that reconnect by themselves.
    pub async fn restart_in_place(self) -> TestServer {
        let addr = self.addr;
        self.restart_on(addr, Duration::ZERO).await
    }

    async fn restart_on(mut self, addr: SocketAddr, down: Duration) -> TestServer {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
        tokio::time::sleep(down).await;
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().expect("tempdir"));
        Self::start(listener, self.config.clone(), self.location.clone(), dir).await
    }

    /// The value of one series at `GET /metrics`, written as rendered (`name` or `name{labels}`);
    /// 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let r = self.http.get(self.url("/metrics")).send().await.expect("GET /metrics");
        assert!(r.status().is_success(), "GET /metrics: {}", r.status());
        let text = r.text().await.expect("metrics body");
        text.lines()
            .filter_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .find_map(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until `series` satisfies `pred`; fails after [`WAIT`].
    pub async fn wait_metric(&self, series: &str, pred: impl Fn(f64) -> bool) -> f64 {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let v = self.metric(series).await;
            if pred(v) {
                return v;
            }
            assert!(tokio::time::Instant::now() < deadline, "{series} stayed at {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A WebSocket client speaking the protocol.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub handshake: Value,
    next_listener: u64,
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Closed {
    /// A close frame with this code and reason.
    Frame(u16, String),
    /// The TCP connection ended without a close frame.
    Dropped,
}

impl Client {
    /// Connects to `url` with extra request headers (e.g. Origin).
    pub async fn open(url: &str, headers: &[(&str, &str)]) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let mut request = url.into_client_request()?;
        for (k, v) in headers {
            request.headers_mut().insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                v.parse().expect("header value"),
            );
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Client { ws, handshake: Value::Null, next_listener: 0 })
    }

    /// Opens a socket on `url` (any server, a `confab` process too) and reads the handshake.
    pub async fn connect(url: &str) -> Client {
        let mut c = Client::open(url, &[]).await.expect("connect");
        c.handshake = c.recv_cmd("handshake").await;
        c
    }

    /// Registers `name` (password `correct horse`) over a new socket on `url`; returns the client
    /// after `ready`.
    pub async fn register(url: &str, name: &str) -> Client {
        let mut c = Client::connect(url).await;
        c.send(json!({"cmd": "register", "username": name, "password": "correct horse"})).await;
        c.expect_auth().await;
        c
    }

    /// Logs `name` in over a new socket on `url`.
    pub async fn login(url: &str, name: &str, password: &str) -> Client {
        let mut c = Client::connect(url).await;
        c.send(json!({"cmd": "login", "username": name, "password": password})).await;
        c.expect_auth().await;
        c
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, v: Value) {
        self.send_raw(&v.to_string()).await;
    }

    /// Sends a JSON frame; `false` when the connection is gone (its server was killed).
    pub async fn send_or_gone(&mut self, v: Value) -> bool {
        self.ws.send(Message::text(v.to_string())).await.is_ok()
    }

    /// Sends a raw text frame.
    pub async fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// The next JSON packet; fails the test after [`WAIT`] or if the socket closes.
    pub async fn recv(&mut self) -> Value {
        self.next_packet().await.unwrap_or_else(|end| panic!("expected a packet, got {end}"))
    }

    /// The next JSON packet, or `None` once the connection is gone (its server was killed);
    /// fails the test after [`WAIT`] without either.
    pub async fn recv_or_gone(&mut self) -> Option<Value> {
        self.next_packet().await.ok()
    }

    /// The next JSON packet, or how the connection ended.
    async fn next_packet(&mut self) -> Result<Value, String> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next()).await.expect("timed out waiting for a packet");
            match msg {
                Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(t.as_str()).expect("server sent JSON")),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => return Err(format!("{other:?}")),
            }
        }
    }

    /// Skips packets until one with `cmd` arrives.
    pub async fn recv_cmd(&mut self, cmd: &str) -> Value {
        loop {
            let p = self.recv().await;
            if p["cmd"] == cmd {
                return p;
            }
        }
    }

    /// Sends `frame` with a fresh `listener` and returns the first packet that carries it.
    pub async fn request(&mut self, mut frame: Value) -> Value {
        self.next_listener += 1;
        let listener = format!("l{}", self.next_listener);
        frame["listener"] = json!(listener);
        self.send(frame).await;
        loop {
            let p = self.recv().await;
            if p["listener"] == listener {
                return p;
            }
        }
    }

    /// Sends `frame` with a fresh listener; returns the reply and every packet that arrived before
    /// it (heartbeat pings left out).
    pub async fn request_seeing(&mut self, mut frame: Value) -> (Value, Vec<Value>) {
        let listener = format!("seeing-{}", uuid::Uuid::now_v7());
        frame["listener"] = json!(listener);
        self.send(frame).await;
        let mut before = Vec::new();
        loop {
            let p = self.recv().await;
            if p["listener"] == listener {
                return (p, before);
            }
            if p["cmd"] != "ping" {
                before.push(p);
            }
        }
    }

    /// Packets that arrived since the last request, via a `ping` round trip: a connection's frames
    /// are handled in order, so the pong comes after everything its earlier commands caused.
    pub async fn drain(&mut self) -> Vec<Value> {
        let (pong, before) = self.request_seeing(json!({"cmd": "ping"})).await;
        assert_eq!(pong["cmd"], "pong");
        before
    }

    /// Waits for `auth_success` then `ready`; returns `ready`.
    pub async fn expect_auth(&mut self) -> Value {
        let first = self.recv_skip_presence().await;
        assert_eq!(first["cmd"], "auth_success", "{first}");
        let ready = self.recv_skip_presence().await;
        assert_eq!(ready["cmd"], "ready", "{ready}");
        ready
    }

    async fn recv_skip_presence(&mut self) -> Value {
        loop {
            let p = self.recv().await;
            if !matches!(p["cmd"].as_str(), Some("user_connect" | "user_join" | "user_disconnect" | "ping")) {
                return p;
            }
        }
    }

    /// Reads until the connection ends; returns how it ended.
    pub async fn closed(&mut self) -> Closed {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await.expect("timed out waiting for close") {
                Some(Ok(Message::Close(Some(CloseFrame { code, reason })))) => {
                    return Closed::Frame(code.into(), reason.to_string());
                }
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return Closed::Dropped,
                Some(Ok(_)) => continue,
            }
        }
    }
}

/// Where a fresh store of `backend` lives: `<dir>/confab.db`, or a fresh PostgreSQL schema.
pub async fn fresh_location(backend: Backend, dir: &std::path::Path) -> Location {
    match backend {
        Backend::Sqlite => Location::SqliteFile(dir.join("confab.db")),
        Backend::Postgres => Location::Postgres { url: postgres_url(), schema: Some(pg_schema().await) },
    }
}

/// Opens, migrates and bootstraps the store at `location` (e.g. again after `close`).
pub async fn open_location(location: &Location) -> Store {
    let store = Store::open(location, 4, 256, Arc::new(Metrics::default())).await.expect("open store");
    store.bootstrap(SYSTEM).await.expect("bootstrap");
    store
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("addr").port()
}

/// A TLS client configuration (ring provider, no global default) trusting only the PEM
/// certificates in `cert`.
pub fn tls_client_config(cert: &std::path::Path) -> Arc<tokio_rustls::rustls::ClientConfig> {
    use tokio_rustls::rustls::{
        ClientConfig, RootCertStore,
        pki_types::{CertificateDer, pem::PemObject},
    };
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).expect("read certificate") {
        roots.add(c.expect("parse certificate")).expect("add root");
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A TLS connection to `addr` verified for `server_name` against the certificate in `cert`.
pub async fn tls_connect(
    addr: SocketAddr,
    server_name: &str,
    cert: &std::path::Path,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(server_name.to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(tls_client_config(cert)).connect(name, tcp).await
}

/// `GET path` as a raw HTTP/1.1 request with `Connection: close`; returns the status and body.
pub async fn http_get_raw<S>(stream: &mut S, host: &str, path: &str) -> std::io::Result<(u16, String)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;
    let mut response = Vec::new();
    // A peer that closes without close_notify still delivered what it sent.
    match stream.read_to_end(&mut response).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(e),
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not HTTP: {text:?}")))?;
    let body = text.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_owned());
    Ok((status, body))
}
