//! Custom emoji (PROTOCOL §3.7, §5.8, §6.9): name, image type and base64 image per decimal id,
//! each change written with its audit entry in one transaction.

use super::{
    Store, WritePool,
    audit::{Audit, audit_in_tx},
    dispatch, is_unique_violation,
};
use crate::error::{Error, Result};

/// An emoji without its image.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct EmojiRow {
    pub id: i64,
    pub name: String,
    /// `png`, `gif` or `jpg`.
    pub ext: String,
}

impl EmojiRow {
    /// `<id>.<ext>`, the `fileName` of the wire.
    pub fn file_name(&self) -> String {
        format!("{}.{}", self.id, self.ext)
    }
}

/// A stored image: its extension and base64 bytes.
pub struct EmojiImage {
    pub ext: String,
    pub base64: String,
}

/// What a write did.
#[derive(Debug, Clone, PartialEq)]
pub enum EmojiWrite {
    Done(EmojiRow),
    NameTaken,
    NotFound,
}

/// How often an add retries when a concurrent add took the same id (PostgreSQL).
const ID_TRIES: usize = 3;

impl Store {
    /// Adds an emoji with the next free id; `audit` gets its id as target.
    pub async fn emoji_add(&self, name: &str, image: &EmojiImage, audit: Audit) -> Result<EmojiWrite> {
        for _ in 0..ID_TRIES {
            match self.emoji_add_once(name, image, &audit).await {
                Err(e) if is_unique_violation(&e) => continue,
                other => return Ok(other?),
            }
        }
        Err(Error::Internal("emoji ids kept colliding".into()))
    }

    /// One try of [`Store::emoji_add`]; a unique violation means a concurrent add took the id.
    async fn emoji_add_once(
        &self,
        name: &str,
        image: &EmojiImage,
        audit: &Audit,
    ) -> std::result::Result<EmojiWrite, sqlx::Error> {
        dispatch!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let taken: Option<(i64,)> = sqlx::query_as("SELECT id FROM emojis WHERE name_lower = $1")
                .bind(name.to_lowercase())
                .fetch_optional(&mut *tx)
                .await?;
            if taken.is_some() {
                return Ok(EmojiWrite::NameTaken);
            }
            let (id,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(id), 0) + 1 FROM emojis").fetch_one(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO emojis (id, name, name_lower, ext, image, created_by, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(id)
            .bind(name)
            .bind(name.to_lowercase())
            .bind(&image.ext)
            .bind(&image.base64)
            .bind(&audit.actor_id)
            .bind(super::now())
            .execute(&mut *tx)
            .await?;
            let audit = Audit { target_id: Some(id.to_string()), ..audit.clone() };
            audit_in_tx!(tx, &audit);
            tx.commit().await?;
            Ok(EmojiWrite::Done(EmojiRow { id, name: name.to_owned(), ext: image.ext.clone() }))
        })
    }

    /// Renames emoji `id` and/or replaces its image.
    pub async fn emoji_update(
        &self,
        id: i64,
        name: Option<&str>,
        image: Option<&EmojiImage>,
        audit: &Audit,
    ) -> Result<EmojiWrite> {
        dispatch!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let found: Option<EmojiRow> = sqlx::query_as("SELECT id, name, ext FROM emojis WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(mut row) = found else { return Ok(EmojiWrite::NotFound) };
            if let Some(name) = name {
                let taken: Option<(i64,)> = sqlx::query_as("SELECT id FROM emojis WHERE name_lower = $1 AND id <> $2")
                    .bind(name.to_lowercase())
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                if taken.is_some() {
                    return Ok(EmojiWrite::NameTaken);
                }
                sqlx::query("UPDATE emojis SET name = $1, name_lower = $2 WHERE id = $3")
                    .bind(name)
                    .bind(name.to_lowercase())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                name.clone_into(&mut row.name);
            }
            if let Some(image) = image {
                sqlx::query("UPDATE emojis SET ext = $1, image = $2 WHERE id = $3")
                    .bind(&image.ext)
                    .bind(&image.base64)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                image.ext.clone_into(&mut row.ext);
            }
            audit_in_tx!(tx, audit);
            tx.commit().await?;
            Ok(EmojiWrite::Done(row))
        })
    }

    /// Deletes emoji `id`; whether it existed.
    pub async fn emoji_delete(&self, id: i64, audit: &Audit) -> Result<bool> {
        dispatch!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let done = sqlx::query("DELETE FROM emojis WHERE id = $1").bind(id).execute(&mut *tx).await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            audit_in_tx!(tx, audit);
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Every emoji, by id.
    pub async fn emojis(&self) -> Result<Vec<EmojiRow>> {
        Ok(dispatch!(self, pool => {
            sqlx::query_as("SELECT id, name, ext FROM emojis ORDER BY id").fetch_all(pool).await?
        }))
    }

    /// The emoji named `name` (case-insensitively).
    pub async fn emoji_by_name(&self, name: &str) -> Result<Option<EmojiRow>> {
        Ok(dispatch!(self, pool => {
            sqlx::query_as("SELECT id, name, ext FROM emojis WHERE name_lower = $1")
                .bind(name.to_lowercase())
                .fetch_optional(pool)
                .await?
        }))
    }

    /// The image of emoji `id`.
    pub async fn emoji_image(&self, id: i64) -> Result<Option<EmojiImage>> {
        let row: Option<(String, String)> = dispatch!(self, pool => {
            sqlx::query_as("SELECT ext, image FROM emojis WHERE id = $1").bind(id).fetch_optional(pool).await?
        });
        Ok(row.map(|(ext, base64)| EmojiImage { ext, base64 }))
    }
}
