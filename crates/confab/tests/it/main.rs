//! Integration tests: the real server on 127.0.0.1:0 with its own temporary database, driven by
//! real WebSocket and HTTP clients. One binary for the whole crate keeps link time down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod bots;
mod channels;
mod cli;
mod durability;
mod gateway;
mod limits;
mod message_ops;
mod moderation;
mod perf;
mod reads;
mod revocation;
mod roles;
mod rotur;
mod sauth;
mod smoke;
mod store;
mod support;
mod tls;
mod webhooks;
