//! The group-commit writer (DESIGN §4, PROTOCOL §7.3, §7.4).
//!
//! One task takes channel changes (message appends and other channel events) from a queue, commits
//! as many as are waiting in one transaction, and only then runs each change's `on_commit` (which
//! publishes the event) and answers its caller, in seq order. On SQLite, batches of appends
//! commit synchronously on the writer's own connection ([`Direct`]) and are published at once;
//! a commit that waits on another thread (PostgreSQL, SQLite's slower changes) is published while
//! the next batch is already committing, so publishing does not hold up the database. A crash
//! before the commit loses only unacknowledged changes; a crash after it loses nothing. If a batch
//! fails, each change is retried alone so one bad change cannot sink the others. Every change that
//! takes a seq also writes its packet to the event log in the same transaction, for `resume`. The
//! read indexes that must agree with the messages — who a message pings (`mentions`) and the
//! per-channel `message_counts` — are kept in that same transaction too.

mod change;
mod fast;
mod nonces;
mod rows;
mod transaction;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use sqlx::{Sqlite, SqlitePool, pool::PoolConnection};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use change::{Append, Change};
pub use change::{Appended, ChannelEvent, NewMessage, Pinged, Step, render_unstored};
use fast::{Seqs, fast_appends};
use transaction::own_conn;

use crate::{
    config::StoreConfig,
    error::{Error, Result},
    hub::Wakes,
    metrics::Metrics,
    store::{Backend, bounded, direct::Direct, search},
};

/// Runs inside the writer after the commit, before the next batch's: publishes in seq order,
/// leaving the wake-ups of the connections it gives packets to `Wakes`, which go to the batch's
/// last caller with its answer (see [`publish`]).
pub type OnCommit = Box<dyn FnOnce(&Appended, &mut Wakes) + Send>;

struct Op {
    change: Change,
    on_commit: OnCommit,
    /// The outcome, and for the batch's last change the readers to wake (see [`publish`]).
    reply: oneshot::Sender<(Result<Appended>, Wakes)>,
    /// When the change was queued: its wait for the writer is `confab_db_queue_seconds`.
    queued: Instant,
}

/// Handle to the writer; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Op>,
    stop: CancellationToken,
    /// Resolves when the writer thread has finished.
    done: Arc<Mutex<Option<oneshot::Receiver<()>>>>,
}

impl Writer {
    /// Starts the writer on a thread of its own with its own single-threaded runtime: it blocks
    /// that thread while SQLite commits on the [`Direct`] connection, and where a commit is round
    /// trips to a connection's thread (PostgreSQL, sqlx), each return to the writer would queue on
    /// the server's runtime behind the connection tasks with packets to write.
    /// Each commit is given up after `timeout` (PostgreSQL's `store.timeout_ms`).
    pub(super) fn start(
        backend: Backend,
        options: &StoreConfig,
        timeout: Option<Duration>,
        metrics: Arc<Metrics>,
    ) -> Result<Writer> {
        let (tx, rx) = mpsc::channel(8192);
        let stop = CancellationToken::new();
        let (finished, done) = oneshot::channel();
        let stopping = stop.clone();
        let (batch_max, index_idle) = (options.batch_max, Duration::from_millis(options.search_index_idle_ms));
        let direct = match &backend {
            Backend::Sqlite(pool) => {
                Some(Direct::open(pool.connect_options().get_filename(), options.sqlite_synchronous)?)
            }
            Backend::Postgres(_) => None,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("writer runtime: {e}")))?;
        std::thread::Builder::new()
            .name("confab-writer".into())
            .spawn(move || {
                runtime.block_on(async move {
                    // Beside the writer, on its thread: ends with it.
                    if let Backend::Sqlite(pool) = &backend {
                        tokio::spawn(crate::store::checkpoint::run(pool.clone()));
                    }
                    run(backend, direct, rx, stopping, (batch_max, index_idle, timeout), metrics).await;
                });
                let _ = finished.send(());
            })
            .map_err(|e| Error::Internal(format!("writer thread: {e}")))?;
        Ok(Writer { tx, stop, done: Arc::new(Mutex::new(Some(done))) })
    }

    /// Appends a message; resolves after the commit and after `on_commit` ran.
    pub async fn append(&self, message: NewMessage, on_commit: OnCommit) -> Result<Appended> {
        self.submit(Change::Append(Box::new(Append::new(message))), on_commit).await
    }

    /// Commits a channel event; resolves after the commit and after `on_commit` ran.
    pub async fn event(&self, event: ChannelEvent, on_commit: OnCommit) -> Result<Appended> {
        self.submit(Change::Event(Box::new(event)), on_commit).await
    }

    async fn submit(&self, change: Change, on_commit: OnCommit) -> Result<Appended> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Op { change, on_commit, reply, queued: Instant::now() })
            .await
            .map_err(|_| Error::Internal("writer stopped".into()))?;
        let (outcome, wakes) = done.await.map_err(|_| Error::Internal("writer stopped".into()))?;
        wakes.wake();
        outcome
    }

    /// Commits everything queued, then stops the writer.
    pub async fn drain(&self) {
        self.stop.cancel();
        if let Some(done) = self.done.lock().await.take() {
            let _ = done.await;
        }
    }
}

async fn run(
    backend: Backend,
    mut direct: Option<Direct>,
    mut rx: mpsc::Receiver<Op>,
    stop: CancellationToken,
    (batch_max, index_idle, timeout): (usize, Duration, Option<Duration>),
    metrics: Arc<Metrics>,
) {
    let search = match &backend {
        Backend::Sqlite(pool) => Some(pool.clone()),
        Backend::Postgres(_) => None,
    };
    let mut backlog = match &search {
        Some(pool) => search::index_backlog(pool).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "reading the search queue");
            0
        }),
        None => 0,
    };
    let mut seqs = Seqs::new();
    let mut own = None;
    // A committed batch not yet published: it is published while the next batch commits.
    let mut unpublished: Option<Committed> = None;
    loop {
        // Publish now unless another batch is waiting to commit behind it; indexing goes after
        // publishing, as it holds the writer for a few milliseconds.
        if rx.is_empty() || backlog >= search::INDEX_STEP {
            publish(unpublished.take());
        }
        // Under a sustained load the writer is never idle: index as fast as messages come.
        while backlog >= search::INDEX_STEP {
            index_queued(search.as_ref(), &mut own, &mut backlog).await;
        }
        let first = if unpublished.is_some() {
            rx.try_recv().ok()
        } else {
            tokio::select! {
                op = rx.recv() => op,
                () = stop.cancelled() => rx.try_recv().ok(),
                () = tokio::time::sleep(index_idle), if backlog > 0 => {
                    index_queued(search.as_ref(), &mut own, &mut backlog).await;
                    continue;
                }
            }
        };
        let Some(first) = first else {
            if unpublished.is_some() {
                continue;
            }
            break;
        };
        let mut batch = vec![first];
        while batch.len() < batch_max {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        // The commit in progress and, when the writer was idle, its wake-up: about half of a
        // message's time in the server on a loaded machine (BENCHMARKS.md, thirteenth session).
        let waits = batch.iter().map(|op| started.saturating_duration_since(op.queued));
        metrics.observe_each("confab_db_queue_seconds", String::new(), waits);
        let (committed, overlapped) = {
            let changes: Vec<&Change> = batch.iter().map(|op| &op.change).collect();
            let committing = commit(&backend, direct.as_mut(), &changes, &mut seqs, &mut own);
            let mut committing = std::pin::pin!(bounded(timeout, committing));
            // Once this batch's statements are on their way to the database, the previous batch
            // is published: fanning out to every viewer no longer delays the next commit. (A
            // commit on the direct connection is done by the time its first poll returns.)
            let early = poll_once(&mut committing).await;
            publish(unpublished.take());
            match early {
                Some(result) => (result, false),
                None => (committing.await, true),
            }
        };
        match committed {
            Ok(outcomes) => {
                metrics.observe_commit(started.elapsed(), batch.len());
                if search.is_some() {
                    backlog += outcomes.iter().filter(|o| matches!(o, Appended::New { .. })).count() as i64;
                }
                let done = Committed { ops: batch, outcomes };
                // Held back only if there was something to overlap it with: after a synchronous
                // commit, waiting would only delay it.
                if overlapped {
                    unpublished = Some(done);
                } else {
                    publish(Some(done));
                }
            }
            // The database is out of reach: every change of the batch is refused at once (each
            // alone would wait as long again), and may have committed (its sender resends it with
            // its nonce). This node's sequencer reads such a commit from the log like a lost one.
            Err(e @ Error::Unavailable(_)) => {
                tracing::warn!(error = %e, size = batch.len(), "batch commit failed: database unavailable");
                metrics.inc("confab_db_unavailable_total", String::new());
                for op in batch {
                    let _ = op.reply.send((Err(Error::Unavailable(e.to_string())), Wakes::default()));
                }
            }
            Err(batch_error) => {
                tracing::warn!(error = %batch_error, size = batch.len(), "batch commit failed; retrying one by one");
                metrics.inc("confab_db_batch_retries_total", String::new());
                for op in batch {
                    let alone = [&op.change];
                    match bounded(timeout, commit(&backend, direct.as_mut(), &alone, &mut seqs, &mut own)).await {
                        Ok(outcomes) => publish(Some(Committed { ops: vec![op], outcomes })),
                        Err(e) => {
                            tracing::error!(error = %e, "append failed");
                            let _ = op.reply.send((Err(e), Wakes::default()));
                        }
                    }
                }
            }
        }
    }
    // Closed here, on this runtime: dropped, it would be handed back to the pool by a task that
    // this ending runtime never runs, and closing the pool would wait for it.
    if let Some(conn) = own {
        let _ = conn.close().await;
    }
}

/// A batch that has committed, with what each of its changes did.
struct Committed {
    ops: Vec<Op>,
    outcomes: Vec<Appended>,
}

/// Runs each change's `on_commit` (the broadcast) and answers its caller, in order. The wake-ups
/// of the connections given packets (see [`Wakes`]) go with the last answer, and that caller's
/// task wakes them as it resumes: woken from a runtime worker, the readers are queued on that
/// worker and run there or are stolen by the other, where woken from this thread each went
/// through the runtime's shared queue, and this thread is free for the next commit sooner
/// (fan-out +7 %, BENCHMARKS.md item 15). A caller that is gone drops them, which wakes them.
fn publish(committed: Option<Committed>) {
    let Some(Committed { ops, outcomes }) = committed else { return };
    let mut wakes = Wakes::default();
    let mut outcomes = outcomes.into_iter();
    let mut last = None;
    for op in ops {
        let outcome = outcomes.next().unwrap_or(Appended::ChannelGone);
        (op.on_commit)(&outcome, &mut wakes);
        if let Some((reply, outcome)) = last.replace((op.reply, outcome)) {
            let _ = reply.send((Ok(outcome), Wakes::default()));
        }
    }
    if let Some((reply, outcome)) = last {
        let _ = reply.send((Ok(outcome), wakes));
    }
}

/// Polls `fut` once, so that its first request reaches the database's thread; `None` while it waits.
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut *fut).poll(cx) {
            std::task::Poll::Ready(out) => Some(out),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

/// One step of SQLite search indexing (see `search::index_step`) on the writer's connection;
/// `backlog` is what is left.
async fn index_queued(pool: Option<&SqlitePool>, own: &mut Option<PoolConnection<Sqlite>>, backlog: &mut i64) {
    let Some(pool) = pool else { return };
    let step = async { search::index_step(own_conn(pool, own).await?).await };
    match step.await {
        Ok(done) if done >= search::INDEX_STEP => *backlog = (*backlog - done).max(1),
        Ok(_) => *backlog = 0,
        Err(e) => {
            // Searches still find queued messages; the next append retries.
            tracing::warn!(error = %e, "search indexing failed");
            *backlog = 0;
        }
    }
}

/// Commits `batch`: on SQLite a batch of appends synchronously on the direct connection
/// ([`fast_appends`]), anything else in a transaction that reads as it goes ([`transaction`]).
async fn commit(
    backend: &Backend,
    direct: Option<&mut Direct>,
    batch: &[&Change],
    seqs: &mut Seqs,
    own: &mut Option<PoolConnection<Sqlite>>,
) -> Result<Vec<Appended>> {
    if let Some(direct) = direct
        && let Some(outcomes) = fast_appends(direct, batch, seqs)?
    {
        return Ok(outcomes);
    }
    // The transaction moves seqs on its own.
    seqs.clear();
    transaction::commit(backend, batch, own).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::writer::change::tests::message;

    /// The readers a batch gives packets to are woken by its last caller, once it has its answer
    /// (the first caller's answer wakes nobody); if that caller is gone, they are woken anyway.
    #[tokio::test]
    async fn the_last_caller_wakes_the_readers_or_they_wake_without_it() {
        use crate::hub::{Outbox, Packet};
        use futures_util::FutureExt;
        for last_caller_gone in [false, true] {
            let (out, mut inbox) = Outbox::new(16, 1 << 20);
            let mut reader = tokio::spawn(async move { inbox.recv().await });
            tokio::task::yield_now().await;
            let (mut ops, mut answers) = (Vec::new(), Vec::new());
            for i in 0..2 {
                let (reply, answer) = oneshot::channel();
                let out = out.clone();
                let on_commit: OnCommit = Box::new(move |_: &Appended, wakes: &mut Wakes| {
                    out.push_later(&Packet::from(format!("p{i}")), wakes);
                });
                let change = Change::Append(Box::new(Append::new(message(None, None, None))));
                ops.push(Op { change, on_commit, reply, queued: Instant::now() });
                answers.push(answer);
            }
            if last_caller_gone {
                answers.pop();
            }
            publish(Some(Committed { ops, outcomes: vec![Appended::Unchanged, Appended::Unchanged] }));
            let (_, first_wakes) = answers.remove(0).await.unwrap();
            if !last_caller_gone {
                first_wakes.wake();
                for _ in 0..10 {
                    tokio::task::yield_now().await;
                }
                assert!((&mut reader).now_or_never().is_none(), "woken before the last caller's answer");
                let (_, wakes) = answers.remove(0).await.unwrap();
                wakes.wake();
            }
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            let first = reader.now_or_never().expect("woken").unwrap();
            assert_eq!(first.as_ref().map(Packet::as_str), Some("p0"));
        }
    }
}
