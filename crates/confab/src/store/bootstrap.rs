//! First-start contents: the default roles and the `general` channel (PROTOCOL §5.3, §5.5).
//!
//! Runs on every start and does nothing once a marker setting exists, so a second start (or the
//! admin CLI on the same database) reuses everything.

use serde_json::json;

use super::{Store, channels::Channel, roles::Role};
use crate::{domain::permissions::default_channel_permissions, error::Result};

const MARKER: &str = "bootstrap_v1";

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

impl Store {
    /// Creates the default roles and `general` unless this database was bootstrapped before.
    pub async fn bootstrap(&self) -> Result<()> {
        if self.setting(MARKER).await?.is_some() {
            return Ok(());
        }
        if self.roles().await?.is_empty() {
            for (position, (name, color, perms)) in default_roles().into_iter().enumerate() {
                self.role_create(&Role {
                    id: uuid::Uuid::now_v7().to_string(),
                    name: name.to_owned(),
                    description: String::new(),
                    color: color.map(str::to_owned),
                    hoisted: false,
                    permissions: json!(perms).to_string(),
                    self_assignable: false,
                    category: None,
                    position: position as i64,
                })
                .await?;
            }
        }
        if self.channels().await?.is_empty() {
            let mut perms = default_channel_permissions();
            for key in ["view", "send", "create_thread"] {
                perms.insert(key.to_owned(), vec!["user".to_owned()]);
            }
            perms.insert("delete".to_owned(), vec!["admin".to_owned(), "moderator".to_owned()]);
            self.channel_create(&Channel {
                id: uuid::Uuid::now_v7().to_string(),
                name: "general".to_owned(),
                kind: "text".to_owned(),
                display_name: None,
                description: Some("General chat".to_owned()),
                size: None,
                permissions: json!(perms).to_string(),
                position: 0,
                seq: 0,
            })
            .await?;
        }
        self.set_setting(MARKER, "1").await
    }
}
