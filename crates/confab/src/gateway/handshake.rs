//! The `handshake` packet (PROTOCOL §2.1).

use serde_json::{Value, json};

use crate::{config::AuthMode, error::Result, state::AppState};

/// Commands this server handles, in byte order; the handshake's `capabilities` is exactly this
/// list filtered by mode. A test checks that each one is dispatched.
pub const COMMANDS: &[&str] = &[
    "attachment_delete",
    "attachment_get",
    "auth",
    "bot_create",
    "bot_delete",
    "bot_token_regenerate",
    "botauth",
    "channel_create",
    "channel_delete",
    "channel_move",
    "channel_update",
    "channels_get",
    "embeds_list",
    "emoji_add",
    "emoji_delete",
    "emoji_get_all",
    "emoji_get_filename",
    "emoji_get_id",
    "emoji_update",
    "invite_create",
    "invite_list",
    "invite_revoke",
    "login",
    "message_delete",
    "message_edit",
    "message_get",
    "message_new",
    "message_pin",
    "message_react_add",
    "message_react_remove",
    "message_replies",
    "message_unpin",
    "messages_around",
    "messages_get",
    "messages_pinned",
    "messages_search",
    "modlog_get",
    "modlog_summary",
    "pfp_get",
    "pfp_set",
    "ping",
    "pings_get",
    "poll_create",
    "poll_end",
    "poll_get",
    "poll_results",
    "poll_vote",
    "push_get_vapid",
    "push_subscribe",
    "push_unsubscribe",
    "rate_limit_reset",
    "rate_limit_status",
    "register",
    "resume",
    "sauth_token_create",
    "sauth_token_revoke",
    "role_create",
    "role_delete",
    "role_permissions_get",
    "role_permissions_set",
    "role_reorder",
    "role_set",
    "role_update",
    "roles_list",
    "self_role_add",
    "self_role_remove",
    "self_roles_list",
    "server_info",
    "server_update",
    "slash_call",
    "slash_list",
    "slash_register",
    "slash_response",
    "status_get",
    "status_set",
    "thread_create",
    "thread_delete",
    "thread_get",
    "thread_join",
    "thread_leave",
    "thread_messages",
    "thread_update",
    "tokenauth",
    "typing",
    "unreads_ack",
    "unreads_count",
    "unreads_get",
    "user_ban",
    "user_delete",
    "user_leave",
    "user_roles_get",
    "user_roles_set",
    "user_timeout",
    "user_unban",
    "user_update",
    "users_banned_list",
    "users_list",
    "users_online",
    "voice_join",
    "voice_leave",
    "voice_mute",
    "voice_signal",
    "voice_state",
    "voice_unmute",
    "webhook_create",
    "webhook_delete",
    "webhook_get",
    "webhook_list",
    "webhook_regenerate",
    "webhook_update",
];

/// The command names advertised under the current configuration, sorted by byte value: local
/// account commands (invites included) only in modes `local` and `mixed`, bot commands only while
/// `bots` are enabled, attachment commands (and `attachment_upload`) only while attachments are
/// enabled, push commands only while Web Push is enabled.
pub fn capabilities(mode: AuthMode, bots: bool, attachments: bool, push: bool) -> Vec<&'static str> {
    let mut caps: Vec<&'static str> = COMMANDS
        .iter()
        .copied()
        .filter(|c| {
            mode.local_enabled()
                || !matches!(*c, "login" | "register" | "tokenauth" | "sauth_token_create" | "sauth_token_revoke")
                    && !c.starts_with("invite_")
        })
        .filter(|c| bots || !matches!(*c, "botauth" | "bot_create" | "bot_delete" | "bot_token_regenerate"))
        .filter(|c| attachments || !c.starts_with("attachment_"))
        .filter(|c| push || !c.starts_with("push_"))
        .collect();
    if attachments {
        // Not a command: the official client gates uploads on this name (PROTOCOL §2.1).
        caps.push("attachment_upload");
    }
    caps.sort_unstable();
    caps
}

/// Builds the handshake for a connection whose validator key is `validator_key`.
pub async fn packet(state: &AppState, validator_key: &str) -> Result<String> {
    let cfg = &state.config;
    let mut extensions =
        vec!["array_frames", "close_codes", "durable_acks", "error_codes", "idempotent_send", "resume"];
    if cfg.auth_mode.local_enabled() {
        extensions.extend(["sauth2", "token_auth"]);
    }
    if cfg.bots_enabled {
        extensions.push("bots");
    }
    extensions.sort_unstable();
    let val: Value = json!({
        "server": state.server_info().await?,
        "limits": {"post_content": cfg.limits.post_content, "search_results": cfg.limits.search_results},
        "attachments": cfg.attachments.handshake(),
        "version": confab_proto::PROTOCOL_VERSION,
        "validator_key": validator_key,
        "capabilities": capabilities(cfg.auth_mode, cfg.bots_enabled, cfg.attachments.enabled, cfg.push.enabled),
        "permissions": confab_proto::PERMISSIONS,
        "auth_mode": cfg.auth_mode.wire_name(),
        "registration": cfg.auth.registration_mode().as_str(),
        "extensions": extensions,
        "params": {
            "heartbeat_s": cfg.security.heartbeat_s,
            "dead_peer_s": cfg.security.dead_peer_s,
            "auth_deadline_s": cfg.security.auth_deadline_s,
            "frame_max": cfg.security.frame_max,
            "nonce_max": 64,
            "nonce_window_s": cfg.limits.nonce_window_s,
            "resume_max_events": crate::commands::resume::MAX_EVENTS,
            "sauth_ttl_s": cfg.sauth.ttl_s,
        },
    });
    Ok(crate::wire::packet("handshake", json!({"val": val})))
}
