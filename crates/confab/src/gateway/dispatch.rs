//! Routes a decoded frame to its handler and turns a handler's error into the right packet
//! (PROTOCOL §2.2, §4.1–4.3).

use std::time::Instant;

use confab_proto::{ErrorCode, Frame};
use serde_json::json;

use super::{handshake::COMMANDS, session::Session};
use crate::{commands, error::Error};

/// Commands that authenticate a connection; after `auth_success` they are refused.
const AUTH_COMMANDS: [&str; 5] = ["auth", "login", "register", "tokenauth", "botauth"];

/// Handles one frame to completion (the reply is queued before the next frame is read).
pub async fn handle(s: &mut Session, frame: Frame) {
    let started = Instant::now();
    let cmd = frame.cmd.as_str();
    let label = if COMMANDS.contains(&cmd) || AUTH_COMMANDS.contains(&cmd) { cmd } else { "unknown" };
    let result = if cmd == "ping" {
        s.reply(&frame, "pong", json!({"val": "pong"}));
        Ok(())
    } else if !s.authenticated() {
        commands::auth::unauthenticated(s, &frame).await
    } else if AUTH_COMMANDS.contains(&cmd) {
        Err(Error::new(ErrorCode::AlreadyAuthenticated, format!("Unknown command: {cmd}")))
    } else {
        match cmd {
            "channel_create" => commands::channels::create(s, &frame).await,
            "channel_delete" => commands::channels::delete(s, &frame).await,
            "channel_move" => commands::channels::move_channel(s, &frame).await,
            "channel_update" => commands::channels::update(s, &frame).await,
            "channels_get" => commands::channels::get(s, &frame).await,
            "embeds_list" => commands::history::embeds_list(s, &frame).await,
            "message_delete" => commands::edits::message_delete(s, &frame).await,
            "message_edit" => commands::edits::message_edit(s, &frame).await,
            "message_get" => commands::history::message_get(s, &frame).await,
            "message_new" => commands::messages::new(s, &frame).await,
            "message_pin" => commands::pins::pin(s, &frame, true).await,
            "message_react_add" => commands::reactions::react(s, &frame, true).await,
            "message_react_remove" => commands::reactions::react(s, &frame, false).await,
            "message_replies" => commands::history::message_replies(s, &frame).await,
            "message_unpin" => commands::pins::pin(s, &frame, false).await,
            "messages_around" => commands::history::messages_around(s, &frame).await,
            "messages_get" => commands::history::messages_get(s, &frame).await,
            "messages_pinned" => commands::history::messages_pinned(s, &frame).await,
            "resume" => commands::resume::resume(s, &frame).await,
            "typing" => commands::typing::typing(s, &frame).await,
            "users_list" => commands::users::list(s, &frame).await,
            "users_online" => commands::users::online(s, &frame).await,
            _ => Err(Error::new(ErrorCode::UnknownCommand, format!("Unknown command: {cmd}"))),
        }
    };
    let outcome = match &result {
        Ok(()) => "ok",
        Err(Error::Internal(_)) => "internal",
        Err(_) => "error",
    };
    if let Err(e) = result {
        s.error(&frame, &e);
    }
    let m = &s.state.metrics;
    m.inc("confab_commands_total", format!("cmd=\"{label}\",outcome=\"{outcome}\""));
    m.observe("confab_command_seconds", format!("cmd=\"{label}\""), started.elapsed());
}
