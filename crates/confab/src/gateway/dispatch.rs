//! Routes a decoded frame to its handler and turns a handler's error into the right packet
//! (PROTOCOL §2.2, §4.1–4.3).

use std::time::Instant;

use confab_proto::{ErrorCode, Frame};
use serde_json::json;

use super::{context::Session, handshake::COMMANDS};
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
    } else if COMMANDS.contains(&cmd)
        && let Err(e) = commands::check_field_types(&frame)
    {
        Err(e)
    } else if let Some((class, cost)) = crate::ratelimit::classify(cmd)
        && cmd != "message_new"
        && s.limited(&frame, class, cost)
    {
        // Refused: the `rate_limit` packet is the whole answer. `message_new` checks after validating.
        Ok(())
    } else {
        match cmd {
            "attachment_delete" => commands::attachments::delete(s, &frame).await,
            "attachment_get" => commands::attachments::get(s, &frame).await,
            "bot_create" => commands::bots::create(s, &frame).await,
            "bot_delete" => commands::bots::delete(s, &frame).await,
            "bot_token_regenerate" => commands::bots::regenerate(s, &frame).await,
            "channel_create" => commands::channels::create(s, &frame).await,
            "channel_delete" => commands::channels::delete(s, &frame).await,
            "channel_move" => commands::channels::move_channel(s, &frame).await,
            "channel_update" => commands::channels::update(s, &frame).await,
            "channels_get" => commands::channels::get(s, &frame).await,
            "embeds_list" => commands::history::embeds_list(s, &frame).await,
            "emoji_add" => commands::emoji::add(s, &frame).await,
            "emoji_delete" => commands::emoji::delete(s, &frame).await,
            "emoji_get_all" => commands::emoji::get_all(s, &frame).await,
            "emoji_get_filename" => commands::emoji::get_by_name(s, &frame, false).await,
            "emoji_get_id" => commands::emoji::get_by_name(s, &frame, true).await,
            "emoji_update" => commands::emoji::update(s, &frame).await,
            "invite_create" => commands::invites::create(s, &frame).await,
            "invite_list" => commands::invites::list(s, &frame).await,
            "invite_revoke" => commands::invites::revoke(s, &frame).await,
            "message_delete" => commands::edits::message_delete(s, &frame).await,
            "message_edit" => commands::edits::message_edit(s, &frame).await,
            "message_get" => commands::history::message_get(s, &frame).await,
            "message_new" => commands::messages::new(s, &frame).await,
            "message_pin" => commands::pins::message_pin(s, &frame).await,
            "message_react_add" => commands::reactions::react(s, &frame, true).await,
            "message_react_remove" => commands::reactions::react(s, &frame, false).await,
            "message_replies" => commands::history::message_replies(s, &frame).await,
            "message_unpin" => commands::pins::pin(s, &frame, false).await,
            "messages_around" => commands::history::messages_around(s, &frame).await,
            "messages_get" => commands::history::messages_get(s, &frame).await,
            "messages_pinned" => commands::history::messages_pinned(s, &frame).await,
            "messages_search" => commands::history::messages_search(s, &frame).await,
            "modlog_get" => commands::moderation::modlog_get(s, &frame).await,
            "modlog_summary" => commands::moderation::modlog_summary(s, &frame).await,
            "pfp_get" => commands::presence::pfp_get(s, &frame).await,
            "pfp_set" => commands::presence::pfp_set(s, &frame).await,
            "pings_get" => commands::pings::pings_get(s, &frame).await,
            "poll_create" => commands::polls::create(s, &frame).await,
            "poll_end" => commands::polls::end(s, &frame).await,
            "poll_get" => commands::polls::get(s, &frame).await,
            "poll_results" => commands::polls::results_cmd(s, &frame).await,
            "poll_vote" => commands::polls::vote(s, &frame).await,
            "push_get_vapid" => commands::push::get_vapid(s, &frame).await,
            "push_subscribe" => commands::push::subscribe(s, &frame).await,
            "push_unsubscribe" => commands::push::unsubscribe(s, &frame).await,
            "rate_limit_reset" => commands::limits::reset(s, &frame).await,
            "rate_limit_status" => commands::limits::status(s, &frame).await,
            "resume" => commands::resume::resume(s, &frame).await,
            "sauth_token_create" => commands::sauth::create(s, &frame).await,
            "sauth_token_revoke" => commands::sauth::revoke(s, &frame).await,
            "role_create" => commands::roles::create(s, &frame).await,
            "role_delete" => commands::roles::delete(s, &frame).await,
            "role_permissions_get" => commands::roles::permissions_get(s, &frame).await,
            "role_permissions_set" => commands::roles::permissions_set(s, &frame).await,
            "role_reorder" => commands::roles::reorder(s, &frame).await,
            "role_set" => commands::roles::set(s, &frame).await,
            "role_update" => commands::roles::update(s, &frame).await,
            "roles_list" => commands::roles::list(s, &frame).await,
            "self_role_add" => commands::roles::self_role(s, &frame, true).await,
            "self_role_remove" => commands::roles::self_role(s, &frame, false).await,
            "self_roles_list" => commands::roles::self_list(s, &frame).await,
            "server_info" => commands::server::server_info(s, &frame).await,
            "server_update" => commands::server::server_update(s, &frame).await,
            "slash_call" => commands::slash::call(s, &frame).await,
            "slash_list" => commands::slash::list(s, &frame).await,
            "slash_register" => commands::slash::register(s, &frame).await,
            "slash_response" => commands::slash::respond(s, &frame).await,
            "status_get" => commands::presence::status_get(s, &frame).await,
            "status_set" => commands::presence::status_set(s, &frame).await,
            "thread_create" => commands::threads::create(s, &frame).await,
            "thread_delete" => commands::threads::delete(s, &frame).await,
            "thread_get" => commands::threads::get(s, &frame).await,
            "thread_join" => commands::threads::membership(s, &frame, true).await,
            "thread_leave" => commands::threads::membership(s, &frame, false).await,
            "thread_messages" => commands::history::thread_messages(s, &frame).await,
            "thread_update" => commands::threads::update(s, &frame).await,
            "typing" => commands::typing::typing(s, &frame).await,
            "unreads_ack" => commands::unreads::unreads_ack(s, &frame).await,
            "unreads_count" => commands::unreads::unreads_count(s, &frame).await,
            "unreads_get" => commands::unreads::unreads_get(s, &frame).await,
            "user_ban" => commands::moderation::user_ban(s, &frame).await,
            "user_delete" => commands::moderation::user_delete(s, &frame).await,
            "user_leave" => commands::moderation::user_leave(s, &frame).await,
            "user_roles_get" => commands::roles::user_roles_get(s, &frame).await,
            "user_roles_set" => commands::roles::user_roles_set(s, &frame).await,
            "user_timeout" => commands::moderation::user_timeout(s, &frame).await,
            "user_unban" => commands::moderation::user_unban(s, &frame).await,
            "user_update" => commands::moderation::user_update(s, &frame).await,
            "users_banned_list" => commands::moderation::users_banned_list(s, &frame).await,
            "users_list" => commands::users::list(s, &frame).await,
            "users_online" => commands::users::online(s, &frame).await,
            "voice_join" => commands::voice::join(s, &frame).await,
            "voice_leave" => commands::voice::leave(s, &frame).await,
            "voice_mute" => commands::voice::mute(s, &frame, true).await,
            "voice_signal" => commands::voice::signal(s, &frame).await,
            "voice_state" => commands::voice::voice_state(s, &frame).await,
            "voice_unmute" => commands::voice::mute(s, &frame, false).await,
            "webhook_create" => commands::webhooks::create(s, &frame).await,
            "webhook_delete" => commands::webhooks::delete(s, &frame).await,
            "webhook_get" => commands::webhooks::get(s, &frame).await,
            "webhook_list" => commands::webhooks::list(s, &frame).await,
            "webhook_regenerate" => commands::webhooks::regenerate(s, &frame).await,
            "webhook_update" => commands::webhooks::update(s, &frame).await,
            _ => Err(Error::new(ErrorCode::UnknownCommand, format!("Unknown command: {cmd}"))),
        }
    };
    let outcome = match &result {
        Ok(()) => "ok",
        Err(Error::Internal(_)) => "internal",
        Err(Error::Unavailable(_)) => "unavailable",
        Err(_) => "error",
    };
    if let Err(e) = result {
        s.error(&frame, &e);
    }
    let m = &s.state.metrics;
    m.inc("confab_commands_total", format!("cmd=\"{label}\",outcome=\"{outcome}\""));
    m.observe("confab_command_seconds", format!("cmd=\"{label}\""), started.elapsed());
}
