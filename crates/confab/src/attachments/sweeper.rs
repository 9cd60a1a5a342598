//! Removes attachments whose time is up: expired, never used by a message within
//! `unused_ttl_s`, or left behind by a deleted message or channel (PROTOCOL §3.6, §6.1).
//!
//! It works from the stored rows alone, so a restart loses nothing: what was due while the server
//! was down goes on the first sweep. The file goes first and the row second; a crash in between
//! leaves a row whose file is already gone, which the next sweep finishes.

use std::time::Duration;

use crate::state::AppState;

/// Rows removed per query; a sweep repeats until nothing is due.
const BATCH: i64 = 200;

/// Sweeps every `sweep_interval_ms` until shutdown.
pub async fn run(state: AppState) {
    let every = Duration::from_millis(state.config.attachments.sweep_interval_ms.max(10));
    loop {
        if let Err(e) = sweep(&state).await {
            tracing::warn!("attachment sweep: {e}");
        }
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// One sweep; the number of attachments removed.
pub async fn sweep(state: &AppState) -> crate::error::Result<usize> {
    let mut removed = 0;
    loop {
        let now = crate::store::now();
        let unused_before = now - state.config.attachments.unused_ttl_s as f64;
        let due = state.store.attachments_due(now, unused_before, BATCH).await?;
        if due.is_empty() {
            return Ok(removed);
        }
        for id in &due {
            remove(state, id).await?;
            removed += 1;
        }
    }
}

/// Removes `user_id`'s oldest uploads beyond `max` (−1: no limit), used or not: the limit of
/// `attachments.max_attachments_per_user`, applied right after each upload.
pub async fn keep_newest(state: &AppState, user_id: &str, max: i64) -> crate::error::Result<()> {
    let Ok(max) = usize::try_from(max) else { return Ok(()) };
    let ids = state.store.attachments_of(user_id).await?;
    for id in &ids[..ids.len().saturating_sub(max)] {
        remove(state, id).await?;
    }
    Ok(())
}

/// Removes one attachment's file, then its row.
pub async fn remove(state: &AppState, id: &str) -> crate::error::Result<()> {
    state
        .attachments
        .storage
        .delete(id)
        .await
        .map_err(|e| crate::error::Error::Internal(format!("removing attachment file: {e}")))?;
    state.store.attachment_delete(id).await?;
    Ok(())
}
