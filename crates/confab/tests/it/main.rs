//! Integration tests: the real server on 127.0.0.1:0 with its own temporary database, driven by
//! real WebSocket and HTTP clients. One binary for the whole crate keeps link time down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Generates a SQLite and a PostgreSQL test for each `async fn name(Backend)`; multi-threaded so
/// the server's tasks and the clients really run side by side.
macro_rules! on_both {
    ($($test:ident => $sqlite:ident, $postgres:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            $test(crate::support::Backend::Sqlite).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            $test(crate::support::Backend::Postgres).await;
        }
    )*};
}

mod attachments;
mod auth;
mod authz;
mod bots;
mod channels;
mod cli;
mod cluster;
mod cluster_chaos;
mod cluster_control;
mod cluster_slash;
mod durability;
mod emoji;
mod gateway;
mod hostile;
mod invites;
mod limits;
mod message_ops;
mod moderation;
mod moto;
mod perf;
mod polls;
mod push;
mod reads;
mod resume_stress;
mod revocation;
mod roles;
mod rotur;
mod sauth;
mod smoke;
mod store;
mod support;
mod terminal;
mod tls;
mod voice;
mod web;
mod webhooks;
