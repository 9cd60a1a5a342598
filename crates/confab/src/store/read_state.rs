//! Per-account read positions (PROTOCOL §6.7): last-read message id and its seq, per channel or thread.

use super::{Store, dispatch};
use crate::error::Result;

impl Store {
    /// Sets the read position of `user_id` in a channel (thread `""`) or thread.
    pub async fn mark_read(
        &self,
        user_id: &str,
        channel_id: &str,
        thread_id: &str,
        message_id: Option<&str>,
        seq: i64,
    ) -> Result<()> {
        dispatch!(self, pool => {
            sqlx::query(
                "INSERT INTO read_state (user_id, channel_id, thread_id, last_read_id, last_read_seq) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, channel_id, thread_id) \
                 DO UPDATE SET last_read_id = excluded.last_read_id, last_read_seq = excluded.last_read_seq",
            )
            .bind(user_id)
            .bind(channel_id)
            .bind(thread_id)
            .bind(message_id)
            .bind(seq)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}
