//! First-start contents: the default roles, the `general` channel (PROTOCOL §5.3, §5.5) and a
//! welcome message in it.
//!
//! Runs on every start in one transaction whose inserts ignore conflicts, so a second start — or
//! two processes starting on a new database at once (two nodes, or `confab user add` during the
//! first `confab serve`) — reuses what is there instead of failing.

use serde_json::json;

use super::{
    Store, WritePool, dispatch,
    writer::{NewMessage, Pinged},
};
use crate::{domain::permissions::default_channel_permissions, error::Result};

const MARKER: &str = "bootstrap_v1";

/// What the system user says in `general` on the first start. The official client shows nothing
/// sent into a channel whose history was empty when it loaded it until a reload, so `general`
/// never starts empty.
pub const WELCOME: &str = "Welcome! This is the start of #general.";

/// The four default roles: (name, colour, permissions).
fn default_roles() -> Vec<(&'static str, Option<&'static str>, Vec<&'static str>)> {
    vec![
        ("owner", Some("#9400D3"), vec!["administrator"]),
        ("admin", Some("#FF0000"), vec!["administrator"]),
        ("moderator", Some("#FFFF00"), vec!["manage_messages", "manage_threads", "view_audit_log"]),
        (
            "user",
            None,
            vec![
                "send_messages",
                "read_message_history",
                "add_reactions",
                "attach_files",
                "embed_links",
                "external_emojis",
                "connect",
                "speak",
                "stream",
                "use_voice_activity",
                "use_slash_commands",
            ],
        ),
    ]
}

/// `general`'s permission map: members may view, send and create threads; admins and moderators delete.
fn general_permissions() -> String {
    let mut perms = default_channel_permissions();
    for key in ["view", "send", "create_thread"] {
        perms.insert(key.to_owned(), vec!["user".to_owned()]);
    }
    perms.insert("delete".to_owned(), vec!["admin".to_owned(), "moderator".to_owned()]);
    json!(perms).to_string()
}

impl Store {
    /// Creates the default roles and `general` unless this database was bootstrapped before; the
    /// start that does so then posts [`WELCOME`] from `system_username` into `general`, stored like
    /// any message (seq, event log), so history and `resume` show it.
    pub async fn bootstrap(&self, system_username: &str) -> Result<()> {
        let now = super::now();
        let general: Option<String> = dispatch!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let done: Option<(String,)> = sqlx::query_as("SELECT value FROM settings WHERE key = $1")
                .bind(MARKER)
                .fetch_optional(&mut *tx)
                .await?;
            if done.is_none() {
                for (position, (name, color, perms)) in default_roles().into_iter().enumerate() {
                    sqlx::query(
                        "INSERT INTO roles (id, name, name_lower, description, color, hoisted, permissions, \
                         self_assignable, category, position) VALUES ($1, $2, $2, '', $3, FALSE, $4, FALSE, NULL, $5) \
                         ON CONFLICT (name_lower) DO NOTHING",
                    )
                    .bind(uuid::Uuid::now_v7().to_string())
                    .bind(name)
                    .bind(color)
                    .bind(json!(perms).to_string())
                    .bind(position as i64)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "INSERT INTO channels (id, name, name_lower, kind, display_name, description, size, permissions, \
                     position, seq, created_at) VALUES ($1, 'general', 'general', 'text', NULL, 'General chat', NULL, \
                     $2, 0, 0, $3) ON CONFLICT (name_lower) DO NOTHING",
                )
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(general_permissions())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                // Whoever sets the marker (two processes may race to it) posts the welcome.
                let marked =
                    sqlx::query("INSERT INTO settings (key, value) VALUES ($1, '1') ON CONFLICT (key) DO NOTHING")
                        .bind(MARKER)
                        .execute(&mut *tx)
                        .await?;
                let general: Option<(String,)> = sqlx::query_as("SELECT id FROM channels WHERE name_lower = 'general'")
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.commit().await?;
                general.map(|(id,)| id).filter(|_| marked.rows_affected() == 1)
            } else {
                tx.commit().await?;
                None
            }
        });
        if let Some(channel_id) = general {
            // Through the writer, as every message: it owns the seq and the event log. (A crash
            // between the two commits loses the welcome, never doubles it.)
            self.writer().append(welcome(channel_id, system_username), Box::new(|_, _| {})).await?;
        }
        Ok(())
    }
}

/// The welcome message of a new database's `general`.
fn welcome(channel_id: String, system_username: &str) -> NewMessage {
    NewMessage {
        id: uuid::Uuid::now_v7().to_string(),
        channel_id,
        channel_name: "general".to_owned(),
        thread_id: None,
        user_id: None,
        author_name: system_username.to_owned(),
        content: WELCOME.to_owned(),
        created_at: super::now(),
        reply_to: None,
        ping: None,
        pings: json!({"users": [], "roles": [], "replies": []}),
        pinged: Pinged::default(),
        extra: None,
        nonce: None,
        nonce_window_s: 0.0,
    }
}
