//! Confab: an originChats-compatible chat server with durable storage.
//!
//! Module map, in the order a `message_new` frame travels:
//! - [`gateway`]: upgrade, one task per socket, frame decoding and dispatch;
//! - [`commands`]: one module per command group (authorise → validate → store → publish);
//! - [`accounts`] and [`auth`]: registration, logins, passwords, JWTs, throttles;
//! - [`store`]: SQLite / PostgreSQL behind one `Store`, with the group-commit writer;
//! - [`hub`]: channel audiences and bounded per-connection queues (fan-out);
//! - [`http`]: the HTTP API on the same listener; [`peer`]: who is on the other end (address, origin);
//! - [`attachments`]: uploaded files: storage, sniffing, expiry and the sweeper;
//! - [`push`]: Web Push: the VAPID key, encryption and the sender task;
//! - [`domain`]: pure rules (names, permissions, mentions, embeds, rate arithmetic);
//! - [`wire`]: rendering stored state as protocol JSON;
//! - [`members`]: the member list, serialised once per change;
//! - [`config`], [`state`], [`metrics`], [`error`], [`keys`]: plumbing.
//!
//! [`run`] serves one listener until a shutdown token fires, then drains and returns.

pub mod accounts;
pub mod admin;
pub mod attachments;
pub mod auth;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod domain;
pub mod error;
pub mod gateway;
pub mod http;
pub mod hub;
pub mod identity;
pub mod keys;
pub mod members;
pub mod metrics;
pub mod peer;
pub mod push;
pub mod ratelimit;
pub mod state;
pub mod store;
pub mod wire;

use std::{net::SocketAddr, sync::Arc, sync::atomic::Ordering, time::Duration};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{config::Config, metrics::Metrics, state::AppState, store::Store};

/// How long shutdown waits for sockets to say goodbye before closing the store anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Push subscriptions unused this long are deleted (PROTOCOL §6.9: six months).
const PUSH_UNUSED_S: f64 = 183.0 * 86_400.0;

/// Periodic upkeep until shutdown: forget idle throttle entries every minute; prune the stored
/// logs every hour. (They are pruned once before serving, in [`run_with_store`].)
async fn housekeeping(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    let mut minutes = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = state.shutdown.cancelled() => break,
        }
        minutes += 1;
        state.throttle.prune();
        state.limiter.prune();
        state.web_logins.prune();
        if minutes.is_multiple_of(60) {
            prune_logs(&state).await;
        }
    }
}

/// Prunes the resume log to its retention, the cluster's control log, expired idempotency nonces,
/// old audit entries and push subscriptions unused for six months.
async fn prune_logs(state: &AppState) {
    let limits = &state.config.limits;
    let max_age = limits.event_retention_days * 86_400.0;
    if let Err(e) = state.store.events_prune(limits.event_retention as i64, max_age).await {
        tracing::warn!("pruning the event log: {e}");
    }
    if state.cluster.is_some()
        && let Err(e) = state.store.control_prune().await
    {
        tracing::warn!("pruning the cluster's control log: {e}");
    }
    if let Err(e) = state.store.nonces_prune(limits.nonce_window_s as f64).await {
        tracing::warn!("pruning nonces: {e}");
    }
    if let Err(e) = state.store.audit_prune().await {
        tracing::warn!("pruning the audit log: {e}");
    }
    if let Err(e) = state.store.push_prune(store::now() - PUSH_UNUSED_S).await {
        tracing::warn!("pruning push subscriptions: {e}");
    }
}

/// Prints the first-run setup link (`auth::setup`) when local accounts are on and no account is an
/// owner yet. On standard output, not in the log: the link is a credential for the operator.
async fn announce_setup(state: &AppState, local: SocketAddr) -> anyhow::Result<()> {
    if state.local_enabled().is_err() || state.has_owner().await.map_err(|e| anyhow::anyhow!("{e}"))? {
        return Ok(());
    }
    let token = state.setup.issue(store::now());
    // Listening on port 0 leaves ":0" in the derived public URL; the real port is known now.
    let base = match state.config.public_url.strip_suffix(":0") {
        Some(_) => format!("http://{local}"),
        None => state.config.public_url.clone(),
    };
    println!("No owner yet: open {base}/#setup={token} to create the owner account (one use, valid 24 hours).");
    Ok(())
}

/// Opens the configured store, migrates and bootstraps it.
pub async fn open_store(config: &Config, metrics: Arc<Metrics>) -> anyhow::Result<Store> {
    let location = store::Location::from_config(&config.database_url, &config.data_dir);
    let store = Store::open_with(&location, &config.store, metrics).await.context("opening the database")?;
    store.bootstrap(&config.system_username).await.context("creating default roles and channels")?;
    Ok(store)
}

/// Serves HTTP and WebSocket on `listener` until `shutdown` is cancelled, then closes every socket
/// with 1001, commits everything acknowledged and returns.
pub async fn run(listener: TcpListener, config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let store = open_store(&config, metrics.clone()).await?;
    run_with_store(listener, config, store, metrics, shutdown).await
}

/// [`run`] with a store that is already open (tests use it to pick a PostgreSQL schema).
pub async fn run_with_store(
    listener: TcpListener,
    config: Config,
    store: Store,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let jwt = keys::load(&config).context("loading the signing key")?;
    let vapid = keys::vapid(&config).context("loading the VAPID key")?;
    let storage = attachments::storage::Storage::new(&config.attachments, &config.data_dir)
        .context("opening the attachment storage")?;
    let state = AppState::new(config, store.clone(), jwt, vapid, metrics, shutdown.clone(), storage);
    state.reload_directory().await.context("loading channels and roles")?;
    admin::bots_from_config(&state.store, &state.config).await.map_err(|e| anyhow::anyhow!("configured bots: {e}"))?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, store = store.kind(), public_url = %state.config.public_url, "confab serving");
    announce_setup(&state, local).await.context("looking for an owner")?;
    cluster::Cluster::start(&state).await?;
    if let Some(effects) = state.cluster.as_ref().and_then(|c| c.take_effects()) {
        tokio::spawn(commands::remote::apply(state.clone(), effects));
    }

    prune_logs(&state).await;
    let pruner = tokio::spawn(housekeeping(state.clone()));
    let sweeper = tokio::spawn(attachments::sweeper::run(state.clone()));
    let polls = tokio::spawn(commands::polls::expire(state.clone()));
    let pusher = tokio::spawn(push::sender::run(state.clone()));

    let app = http::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let stop = {
        let state = state.clone();
        async move {
            state.shutdown.cancelled().await;
            state.draining.store(true, Ordering::Release);
        }
    };
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        stop.await;
        h.graceful_shutdown(Some(SHUTDOWN_GRACE));
    });
    let admit = http::listener::Admit { state: state.clone() };
    let mut server = axum_server::from_tcp(listener.into_std()?)?.handle(handle);
    // Slowloris: a request's head must arrive within the header timeout (hyper needs a timer
    // to enforce it).
    let header_timeout = Duration::from_secs(state.config.security.header_timeout_s);
    server.http_builder().http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
    match (&state.config.tls.cert_file, &state.config.tls.key_file) {
        (Some(cert), Some(key)) => {
            let tls = keys::tls_config(cert, key).context("loading the TLS certificate")?;
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls).acceptor(admit);
            server.acceptor(acceptor).serve(app).await?;
        }
        _ => server.acceptor(admit).serve(app).await?,
    }
    state.sessions.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, state.sessions.wait()).await.is_err() {
        tracing::warn!("some sockets did not close in time");
    }
    pruner.abort();
    sweeper.abort();
    polls.abort();
    pusher.abort();
    store.close().await;
    tracing::info!("confab stopped");
    Ok(())
}
