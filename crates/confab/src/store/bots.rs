//! Bot accounts and their tokens (PROTOCOL §2.8, §7.7): the account is an ordinary `users` row of
//! kind `bot`; its token is stored only as a SHA-256 digest, one live token per bot.

use super::{
    Store, WritePool,
    audit::{Audit, audit_in_tx},
    dispatch,
    users::{AccountKind, NewUser, User, create_error, user_insert_in_tx},
};
use crate::error::{Error, Result};

/// A bot to create.
#[derive(Debug, Clone)]
pub struct NewBot<'a> {
    pub username: &'a str,
    pub role_ids: Vec<String>,
    /// Digest of the bot's first token.
    pub token_hash: String,
    /// Whether `user_join` is broadcast with the creation (`bot_create`); otherwise the first
    /// login announces the bot.
    pub announced: bool,
}

impl Store {
    /// Creates a bot account, its bot row and its token in one transaction, with `audit` when
    /// given; "Username already taken" when the folded name exists.
    pub async fn bot_create(&self, bot: NewBot<'_>, audit: Option<&Audit>) -> Result<User> {
        let id = uuid::Uuid::now_v7().to_string();
        let new =
            NewUser { username: bot.username, kind: AccountKind::Bot, password_hash: None, role_ids: bot.role_ids };
        let now = super::now();
        let result: std::result::Result<(), sqlx::Error> = dispatch!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            user_insert_in_tx!(tx, &id, &new);
            sqlx::query("INSERT INTO bots (user_id, announced, created_at) VALUES ($1, $2, $3)")
                .bind(&id)
                .bind(bot.announced)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO bot_tokens (user_id, token_hash, created_at) VALUES ($1, $2, $3)")
                .bind(&id)
                .bind(&bot.token_hash)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            if let Some(audit) = audit {
                let audit = Audit { target_id: Some(id.clone()), ..audit.clone() };
                audit_in_tx!(tx, &audit);
            }
            tx.commit().await
        }.await);
        result.map_err(create_error)?;
        self.members_changed();
        self.user_by_id(&id).await?.ok_or_else(|| Error::Internal("created bot vanished".into()))
    }

    /// The digest of the bot's live token, if it has one.
    pub async fn bot_token_hash(&self, user_id: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = dispatch!(self, pool => {
            sqlx::query_as("SELECT token_hash FROM bot_tokens WHERE user_id = $1 AND revoked = FALSE")
                .bind(user_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|r| r.0))
    }

    /// Whether `token_hash` was a token of the bot that has since been replaced.
    pub async fn bot_token_revoked(&self, user_id: &str, token_hash: &str) -> Result<bool> {
        let row: Option<(bool,)> = dispatch!(self, pool => {
            sqlx::query_as("SELECT revoked FROM bot_tokens WHERE user_id = $1 AND token_hash = $2")
                .bind(user_id)
                .bind(token_hash)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.is_some_and(|r| r.0))
    }

    /// Replaces the bot's live token with `token_hash`; the old one is kept as revoked and never
    /// works again. `audit`, when given, is committed with the change.
    pub async fn bot_token_replace(&self, user_id: &str, token_hash: &str, audit: Option<&Audit>) -> Result<()> {
        dispatch!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query("UPDATE bot_tokens SET revoked = TRUE WHERE user_id = $1 AND revoked = FALSE")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO bot_tokens (user_id, token_hash, created_at) VALUES ($1, $2, $3)")
                .bind(user_id)
                .bind(token_hash)
                .bind(super::now())
                .execute(&mut *tx)
                .await?;
            if let Some(audit) = audit {
                audit_in_tx!(tx, audit);
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Marks the bot announced; `true` only for the call that changed it, so exactly one login
    /// broadcasts `user_join`.
    pub async fn bot_mark_announced(&self, user_id: &str) -> Result<bool> {
        let done = dispatch!(self, pool => {
            sqlx::query("UPDATE bots SET announced = TRUE WHERE user_id = $1 AND announced = FALSE")
                .bind(user_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done > 0)
    }
}
