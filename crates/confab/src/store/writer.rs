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

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use sqlx::{Connection, Sqlite, SqliteConnection, SqlitePool, pool::PoolConnection};

use super::{
    Backend, WritePool,
    direct::Direct,
    messages::MessageRow,
    script::{self, Script, run_script},
    search,
};
use crate::{
    auth::tokens::hash_joined,
    config::StoreConfig,
    error::{Error, Result},
    hub::Wakes,
    metrics::Metrics,
};

/// A message to append to a channel (or thread).
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub channel_id: String,
    pub channel_name: String,
    /// `None` for a message directly in the channel.
    pub thread_id: Option<String>,
    pub user_id: Option<String>,
    pub author_name: String,
    pub content: String,
    pub created_at: f64,
    /// Replied-to message id and its author's name.
    pub reply_to: Option<(String, String)>,
    pub ping: Option<bool>,
    /// `{"users","roles","replies"}` for the live packet.
    pub pings: Value,
    /// The same pings by id, stored for `pings_get`.
    pub pinged: Pinged,
    /// Embeds, attachments, interaction, webhook: stored as JSON.
    pub extra: Option<Value>,
    pub nonce: Option<String>,
    pub nonce_window_s: f64,
}

/// Who a message pings, by id (PROTOCOL §5.6), as stored in `mentions` for `pings_get`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pinged {
    /// Mentioned accounts.
    pub users: Vec<String>,
    /// Mentioned roles.
    pub roles: Vec<String>,
    /// The replied-to author, when `ping` is not false.
    pub reply: Option<String>,
}

impl Pinged {
    /// `(target_kind, target_id)` rows; the kinds are those `pings_get` asks for.
    fn rows(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let users = self.users.iter().map(|u| ("user", u.as_str()));
        let roles = self.roles.iter().map(|r| ("role", r.as_str()));
        users.chain(roles).chain(self.reply.iter().map(|a| ("reply", a.as_str())))
    }
}

/// What an append did once committed.
#[derive(Debug, Clone, PartialEq)]
pub enum Appended {
    /// Stored with `seq`; `packet` is the serialised broadcast (no `listener`).
    New { seq: i64, packet: String },
    /// The nonce was used before for the same message: the original packet, nothing stored.
    Duplicate { packet: String },
    /// The nonce was used for a different target or content.
    NonceConflict,
    /// The nonce's original message has been deleted since.
    OriginalDeleted,
    /// The channel was deleted before the change committed.
    ChannelGone,
    /// A channel event was committed with `seq`; `packet` is its broadcast.
    Event { seq: i64, packet: String },
    /// A channel event's change matched nothing (already in that state, or already gone): no seq.
    Unchanged,
}

/// A state change other than a new message, scoped to one channel.
pub struct ChannelEvent {
    pub channel_id: String,
    /// The message the event is about, so `resume` can leave out events of deleted messages.
    pub message_id: Option<String>,
    /// Event kind as logged (the packet's `cmd`).
    pub kind: &'static str,
    pub step: Step,
    /// Renders the broadcast once the seq is known.
    pub render: Box<dyn Fn(i64) -> String + Send + Sync>,
}

/// The row change of a [`ChannelEvent`]; it must touch a row, or the event is [`Appended::Unchanged`].
#[derive(Debug, Clone)]
pub enum Step {
    /// New content; `mentions` (users and roles; `reply` is ignored, it cannot change) replace the
    /// message's stored mentions.
    Edit {
        message_id: String,
        content: String,
        extra: Option<String>,
        mentions: Pinged,
    },
    Delete {
        message_id: String,
    },
    ReactAdd {
        message_id: String,
        emoji: String,
        user_id: String,
        at: f64,
    },
    ReactRemove {
        message_id: String,
        emoji: String,
        user_id: String,
    },
    SetPinned {
        message_id: String,
        pinned: bool,
    },
    ThreadCreate {
        thread_id: String,
        name: String,
        user_id: String,
        user_name: String,
        at: f64,
    },
    /// Sets the thread's name and flags; touches a row only if something differs.
    ThreadUpdate {
        thread_id: String,
        name: String,
        locked: bool,
        archived: bool,
    },
    /// Deletes the thread and its messages.
    ThreadDelete {
        thread_id: String,
    },
    ThreadJoin {
        thread_id: String,
        user_id: String,
        at: f64,
    },
    ThreadLeave {
        thread_id: String,
        user_id: String,
    },
}

/// One queued change.
pub enum Change {
    Append(Box<Append>),
    Event(Box<ChannelEvent>),
}

/// A queued message with what can be worked out before it is stored — the parts of its live packet
/// that do not depend on the seq, and its nonce fingerprint — done by the caller's task: the
/// writer, through which every message passes one after another, only splices the seq in
/// (building the packet took it as long as everything else it did for a message, outside the
/// database).
pub struct Append {
    message: NewMessage,
    /// `{"cmd":"message_new","channel":…,"thread_id":…,"global":true,"seq":`
    head: String,
    /// The live message object without `seq`.
    body: String,
    /// [`content_hash`] of a message with an author and a nonce.
    hash: Option<String>,
}

impl Append {
    fn new(message: NewMessage) -> Append {
        let head = format!(
            "{{\"cmd\":\"message_new\",\"channel\":{},\"thread_id\":{},\"global\":true,\"seq\":",
            json!(message.channel_name),
            json!(message.thread_id)
        );
        let body = Value::Object(live_message(&message)).to_string();
        let hash = message.user_id.as_ref().and(message.nonce.as_ref()).map(|_| content_hash(&message));
        Append { message, head, body, hash }
    }

    /// The live `message_new` packet once stored with `seq`.
    fn packet(&self, seq: i64) -> String {
        // `body` is a non-empty object: `seq` goes in front of its first member.
        let members = self.body.strip_prefix('{').unwrap_or(&self.body);
        format!("{}{seq},\"message\":{{\"seq\":{seq},{members}}}", self.head)
    }
}

impl std::ops::Deref for Append {
    type Target = NewMessage;

    fn deref(&self) -> &NewMessage {
        &self.message
    }
}

/// Runs inside the writer after the commit, before the next batch's: publishes in seq order,
/// leaving the wake-ups of the connections it gives packets to `Wakes`, which go to the batch's
/// last caller with its answer (see [`publish`]).
pub type OnCommit = Box<dyn FnOnce(&Appended, &mut Wakes) + Send>;

struct Op {
    change: Change,
    on_commit: OnCommit,
    /// The outcome, and for the batch's last change the readers to wake (see [`publish`]).
    reply: oneshot::Sender<(Result<Appended>, Wakes)>,
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
    pub(super) fn start(backend: Backend, options: &StoreConfig, metrics: Arc<Metrics>) -> Result<Writer> {
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
                        tokio::spawn(super::checkpoint::run(pool.clone()));
                    }
                    run(backend, direct, rx, stopping, batch_max, index_idle, metrics).await;
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
        self.tx.send(Op { change, on_commit, reply }).await.map_err(|_| Error::Internal("writer stopped".into()))?;
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
    batch_max: usize,
    index_idle: Duration,
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
        let (committed, overlapped) = {
            let changes: Vec<&Change> = batch.iter().map(|op| &op.change).collect();
            let mut committing = std::pin::pin!(commit(&backend, direct.as_mut(), &changes, &mut seqs, &mut own));
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
            Err(batch_error) => {
                tracing::warn!(error = %batch_error, size = batch.len(), "batch commit failed; retrying one by one");
                for op in batch {
                    match commit(&backend, direct.as_mut(), &[&op.change], &mut seqs, &mut own).await {
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

/// The SQLite writer's pooled connection for what the [`Direct`] one does not do (channel events,
/// search indexing), opened on first use and kept. SQLite drops a connection's page cache
/// whenever another connection has written since it last read, so whichever pooled connection is
/// free would re-read the pages of every table and index it writes; this one re-reads them only
/// after the direct connection wrote in between.
async fn own_conn<'c>(
    pool: &SqlitePool,
    own: &'c mut Option<PoolConnection<Sqlite>>,
) -> std::result::Result<&'c mut SqliteConnection, sqlx::Error> {
    let conn = match own {
        Some(conn) => conn,
        None => own.insert(pool.acquire().await?),
    };
    Ok(&mut **conn)
}

/// Adds the rows of the stored appends `stored` (indexes into `msgs`, with their `seqs` and
/// `packets`) to `script`: messages, event-log rows, nonces, mentions and per-channel counts.
///
/// Each table gets one statement that reads its rows from a JSON array bound as one parameter,
/// so the statement text is the same whatever the batch size and stays prepared: SQLite took
/// about 17 ms to prepare a 200-row `VALUES` list of 11 columns, far more than writing the rows.
fn append_rows<'a>(
    script: &mut Script<'a>,
    msgs: &[&'a Append],
    stored: &[usize],
    seqs: &[Option<i64>],
    packets: &'a [Option<String>],
    sqlite: bool,
) -> std::result::Result<(), sqlx::Error> {
    if stored.is_empty() {
        return Ok(());
    }
    let rows = script::json_rows(sqlite);
    let mut messages = Vec::with_capacity(stored.len());
    let mut events = Vec::with_capacity(stored.len());
    let mut nonces = Vec::new();
    let mut mentions = Vec::new();
    let mut counts: Vec<(&str, &str, i64)> = Vec::new();
    for &i in stored {
        let m = msgs[i];
        let thread = m.thread_id.as_deref().unwrap_or("");
        messages.push((
            &m.id,
            &m.channel_id,
            thread,
            &m.user_id,
            &m.author_name,
            &m.content,
            m.created_at,
            seqs[i],
            m.reply_to.as_ref().map(|r| &r.0),
            m.ping,
            m.extra.as_ref().map(Value::to_string),
        ));
        events.push((&m.channel_id, seqs[i], &m.id, &packets[i], m.created_at));
        if let (Some(user), Some(nonce), Some(hash)) = (&m.user_id, &m.nonce, &m.hash) {
            nonces.push((user, nonce, &m.id, &m.channel_id, thread, hash, m.created_at));
        }
        for (kind, target) in m.pinged.rows() {
            mentions.push((&m.id, kind, target));
        }
        match counts.iter_mut().find(|(c, t, _)| *c == m.channel_id && *t == thread) {
            Some((_, _, n)) => *n += 1,
            None => counts.push((m.channel_id.as_str(), thread, 1)),
        }
    }
    script.push(
        format!(
            "INSERT INTO messages (id, channel_id, thread_id, user_id, author_name, content, created_at, seq, \
             reply_to, ping, extra) SELECT r.value->>0, r.value->>1, r.value->>2, r.value->>3, r.value->>4, \
             r.value->>5, CAST(r.value->>6 AS DOUBLE PRECISION), CAST(r.value->>7 AS BIGINT), r.value->>8, \
             CAST(r.value->>9 AS BOOLEAN), r.value->>10 FROM {rows}"
        ),
        vec![script::json_array(&messages)?.into()],
    );
    script.push(
        format!(
            "INSERT INTO events (channel_id, seq, kind, message_id, payload, created_at) SELECT r.value->>0, \
             CAST(r.value->>1 AS BIGINT), 'message_new', r.value->>2, r.value->>3, \
             CAST(r.value->>4 AS DOUBLE PRECISION) FROM {rows}"
        ),
        vec![script::json_array(&events)?.into()],
    );
    if !nonces.is_empty() {
        // An expired row for the same nonce is replaced; a live one was a duplicate. (`WHERE
        // true` lets SQLite tell the upsert's ON from a join's.)
        script.push(
            format!(
                "INSERT INTO nonces (user_id, nonce, message_id, channel_id, thread_id, content_hash, created_at) \
                 SELECT r.value->>0, r.value->>1, r.value->>2, r.value->>3, r.value->>4, r.value->>5, \
                 CAST(r.value->>6 AS DOUBLE PRECISION) FROM {rows} WHERE true \
                 ON CONFLICT (user_id, nonce) DO UPDATE SET message_id = excluded.message_id, \
                 channel_id = excluded.channel_id, thread_id = excluded.thread_id, \
                 content_hash = excluded.content_hash, created_at = excluded.created_at"
            ),
            vec![script::json_array(&nonces)?.into()],
        );
    }
    if !mentions.is_empty() {
        // Location, author, seq and time are copied from the message row.
        script.push(
            format!(
                "INSERT INTO mentions (message_id, channel_id, thread_id, target_kind, target_id, author_id, seq, \
                 created_at) SELECT m.id, m.channel_id, m.thread_id, r.value->>1, r.value->>2, m.user_id, m.seq, \
                 m.created_at FROM {rows} JOIN messages m ON m.id = r.value->>0 WHERE true \
                 ON CONFLICT (message_id, target_kind, target_id) DO NOTHING"
            ),
            vec![script::json_array(&mentions)?.into()],
        );
    }
    script.push(
        format!(
            "INSERT INTO message_counts (channel_id, thread_id, total) SELECT r.value->>0, r.value->>1, \
             CAST(r.value->>2 AS BIGINT) FROM {rows} WHERE true \
             ON CONFLICT (channel_id, thread_id) DO UPDATE SET total = message_counts.total + excluded.total"
        ),
        vec![script::json_array(&counts)?.into()],
    );
    Ok(())
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

/// A message's nonce fingerprint: target and content, so a repeat can be told from a conflict.
fn content_hash(m: &NewMessage) -> String {
    hash_joined(&[&m.channel_id, m.thread_id.as_deref().unwrap_or(""), &m.content])
}

/// The `message_new` packet of a message that is shown once and never stored (an ephemeral
/// slash-command answer, PROTOCOL §6.8): the live shape without `seq` and without `global`, marked
/// `"ephemeral": true` [ext].
pub fn render_unstored(m: &NewMessage) -> String {
    let message = live_message(m);
    crate::wire::packet(
        "message_new",
        json!({"message": message, "channel": m.channel_name, "thread_id": m.thread_id, "ephemeral": true}),
    )
}

/// The message object of a live `message_new` without its `seq`: the history shape plus `pings`
/// and the nonce.
fn live_message(m: &NewMessage) -> serde_json::Map<String, Value> {
    let row = MessageRow {
        id: m.id.clone(),
        channel_id: m.channel_id.clone(),
        thread_id: m.thread_id.clone().unwrap_or_default(),
        user_id: m.user_id.clone(),
        author: m.author_name.clone(),
        content: m.content.clone(),
        created_at: m.created_at,
        seq: 0,
        edited: false,
        pinned: false,
        reply_to: m.reply_to.as_ref().map(|r| r.0.clone()),
        reply_user: m.reply_to.as_ref().map(|r| r.1.clone()),
        ping: m.ping,
        extra: m.extra.as_ref().map(Value::to_string),
        reactions: Vec::new(),
    };
    let mut message = crate::wire::message(&row);
    message.remove("seq");
    message.insert("pings".into(), m.pings.clone());
    if let Some(nonce) = &m.nonce {
        message.insert("nonce".into(), json!(nonce));
    }
    message
}

/// Stores one ping of message `$1` (already in `messages`): kind `$2`, target `$3`; location,
/// author, seq and time are copied from the message row.
const INSERT_MENTION: &str = "INSERT INTO mentions (message_id, channel_id, thread_id, target_kind, target_id, \
     author_id, seq, created_at) SELECT id, channel_id, thread_id, $2, $3, user_id, seq, created_at FROM messages \
     WHERE id = $1 ON CONFLICT (message_id, target_kind, target_id) DO NOTHING";

/// Stores the pings of message `$id` inside `$tx` ([`INSERT_MENTION`] for each).
macro_rules! record_pings {
    ($tx:ident, $id:expr, $pinged:expr) => {{
        let pinged: &Pinged = $pinged;
        for (kind, target) in pinged.rows() {
            sqlx::query(INSERT_MENTION).bind($id).bind(kind).bind(target).execute(&mut *$tx).await?;
        }
    }};
}

/// What the batch does with one append, decided before anything is written.
#[derive(Clone)]
enum Plan {
    Fresh,
    /// Repeat of a nonce stored earlier: the original message's id.
    DuplicateOf(String),
    /// Repeat of a nonce used earlier in this same batch: that append's index.
    DuplicateInBatch(usize),
    Conflict,
}

/// A run of consecutive appends inside an open transaction `$tx`, written with a handful of
/// statements instead of several per message: nonce look-up, one seq reservation per channel,
/// then one script of messages, event-log rows, nonces, mentions and counters ([`append_rows`]).
/// Expands once per backend.
macro_rules! apply_appends {
    ($tx:ident, $msgs:expr, $joined:expr) => {{
        let msgs: &[&Append] = $msgs;
        let n = msgs.len();
        let keyed = keyed(msgs);
        let prior: Prior = if keyed.is_empty() {
            Prior::new()
        } else {
            sqlx::query_as::<_, (String, String, String, String, f64)>(sqlx::AssertSqlSafe(nonce_lookup($joined)))
                .bind(script::json_array(&keyed)?)
                .fetch_all(&mut *$tx)
                .await?
        };
        let plans = plan(msgs, &prior);
        // One seq reservation per channel, handed out in arrival order.
        let mut channels: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, m) in msgs.iter().enumerate().filter(|(i, _)| matches!(plans[*i], Plan::Fresh)) {
            match channels.iter_mut().find(|(c, _)| *c == m.channel_id) {
                Some((_, list)) => list.push(i),
                None => channels.push((m.channel_id.as_str(), vec![i])),
            }
        }
        let mut seqs: Vec<Option<i64>> = vec![None; n];
        for (channel, list) in &channels {
            let last: Option<(i64,)> = sqlx::query_as("UPDATE channels SET seq = seq + $2 WHERE id = $1 RETURNING seq")
                .bind(*channel)
                .bind(list.len() as i64)
                .fetch_optional(&mut *$tx)
                .await?;
            if let Some((last,)) = last {
                let first = last - list.len() as i64 + 1;
                for (k, i) in list.iter().enumerate() {
                    seqs[*i] = Some(first + k as i64);
                }
            }
        }
        let stored: Vec<usize> = (0..n).filter(|i| seqs[*i].is_some()).collect();
        let packets: Vec<Option<String>> = (0..n).map(|i| seqs[i].map(|seq| msgs[i].packet(seq))).collect();
        // Everything else the batch writes needs no answer: one script, one round trip on SQLite.
        let mut script = Script::default();
        append_rows(&mut script, msgs, &stored, &seqs, &packets, $joined)?;
        run_script!($tx, &script, $joined);
        // Original packets of repeated nonces from earlier batches, in one query.
        let originals = originals(&plans);
        let mut found: HashMap<String, String> = HashMap::new();
        if !originals.is_empty() {
            let list = (1..=originals.len()).map(|k| format!("${k}")).collect::<Vec<_>>().join(", ");
            let sql = format!(
                "SELECT e.message_id, e.payload FROM events e JOIN messages x ON x.id = e.message_id \
                 WHERE e.kind = 'message_new' AND e.message_id IN ({list})"
            );
            let mut q = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(sql));
            for id in &originals {
                q = q.bind(*id);
            }
            found.extend(q.fetch_all(&mut *$tx).await?);
        }
        drop(script);
        outcomes(&plans, &seqs, packets, &found)
    }};
}

/// Stored nonces of a batch's senders, as read: user, nonce, message id, content fingerprint, time.
type Prior = Vec<(String, String, String, String, f64)>;

/// The `(user, nonce)` of each append that has one.
fn keyed<'a>(msgs: &[&'a Append]) -> Vec<(&'a str, &'a str)> {
    msgs.iter().filter_map(|m| Some((m.user_id.as_deref()?, m.nonce.as_deref()?))).collect()
}

/// The query for the stored nonces of `$1`, a JSON array of [`keyed`] pairs: one text whatever
/// the batch size.
fn nonce_lookup(sqlite: bool) -> String {
    format!(
        "SELECT n.user_id, n.nonce, n.message_id, n.content_hash, n.created_at FROM {} \
         JOIN nonces n ON n.user_id = r.value->>0 AND n.nonce = r.value->>1",
        script::json_rows(sqlite)
    )
}

/// What to do with each append, in arrival order, given the nonces already stored.
fn plan(msgs: &[&Append], prior: &Prior) -> Vec<Plan> {
    let prior: HashMap<(&str, &str), (&str, &str, f64)> = prior
        .iter()
        .map(|(user, nonce, id, hash, at)| ((user.as_str(), nonce.as_str()), (id.as_str(), hash.as_str(), *at)))
        .collect();
    let mut plans = Vec::with_capacity(msgs.len());
    let mut in_batch: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, m) in msgs.iter().enumerate() {
        let key = m.user_id.as_deref().zip(m.nonce.as_deref());
        let plan = match (key, &m.hash) {
            (Some(k), Some(hash)) => {
                if let Some(&j) = in_batch.get(&k) {
                    if msgs[j].hash.as_ref() == Some(hash) { Plan::DuplicateInBatch(j) } else { Plan::Conflict }
                } else {
                    match prior.get(&k).filter(|(_, _, at)| *at > m.created_at - m.nonce_window_s) {
                        Some((id, h, _)) if h == hash => Plan::DuplicateOf((*id).to_owned()),
                        Some(_) => Plan::Conflict,
                        None => {
                            in_batch.insert(k, i);
                            Plan::Fresh
                        }
                    }
                }
            }
            _ => Plan::Fresh,
        };
        plans.push(plan);
    }
    plans
}

/// The stored messages that repeated nonces point to.
fn originals(plans: &[Plan]) -> Vec<&str> {
    plans
        .iter()
        .filter_map(|p| match p {
            Plan::DuplicateOf(id) => Some(id.as_str()),
            _ => None,
        })
        .collect()
}

/// Each append's outcome: its seq and packet if stored, else what its plan found; `found` holds
/// the packets of [`originals`] that still exist. Repeats copy their packets first, so a stored
/// append's packet then moves into its outcome instead of being copied (once per message).
fn outcomes(
    plans: &[Plan],
    seqs: &[Option<i64>],
    mut packets: Vec<Option<String>>,
    found: &HashMap<String, String>,
) -> Vec<Appended> {
    let repeats: Vec<Option<Appended>> = plans
        .iter()
        .map(|plan| match plan {
            Plan::Fresh => None,
            Plan::DuplicateOf(id) => Some(match found.get(id) {
                Some(packet) => Appended::Duplicate { packet: packet.clone() },
                None => Appended::OriginalDeleted,
            }),
            Plan::DuplicateInBatch(j) => Some(match &packets[*j] {
                Some(packet) => Appended::Duplicate { packet: packet.clone() },
                None => Appended::ChannelGone,
            }),
            Plan::Conflict => Some(Appended::NonceConflict),
        })
        .collect();
    repeats
        .into_iter()
        .zip(seqs)
        .zip(packets.iter_mut())
        .map(|((repeat, seq), packet)| {
            repeat.unwrap_or_else(|| match (seq, packet.take()) {
                (Some(seq), Some(packet)) => Appended::New { seq: *seq, packet },
                _ => Appended::ChannelGone,
            })
        })
        .collect()
}

/// One channel event inside an open transaction `$tx`: the row change, then (only if it touched
/// a row) the next seq and the event log entry. Expands once per backend.
macro_rules! apply_event {
    ($tx:ident, $e:ident) => {{
        let e: &ChannelEvent = $e;
        let touched = match &e.step {
            Step::Edit { message_id, content, extra, mentions } => {
                let done = sqlx::query("UPDATE messages SET content = $1, extra = $2, edited = TRUE WHERE id = $3")
                    .bind(content)
                    .bind(extra)
                    .bind(message_id)
                    .execute(&mut *$tx)
                    .await?;
                sqlx::query("DELETE FROM mentions WHERE message_id = $1 AND target_kind IN ('user', 'role')")
                    .bind(message_id)
                    .execute(&mut *$tx)
                    .await?;
                record_pings!($tx, message_id, &Pinged { reply: None, ..mentions.clone() });
                done
            }
            Step::Delete { message_id } => {
                sqlx::query(
                    "UPDATE message_counts SET total = total - 1 WHERE (channel_id, thread_id) IN \
                     (SELECT channel_id, thread_id FROM messages WHERE id = $1)",
                )
                .bind(message_id)
                .execute(&mut *$tx)
                .await?;
                sqlx::query("DELETE FROM messages WHERE id = $1").bind(message_id).execute(&mut *$tx).await?
            }
            Step::ReactAdd { message_id, emoji, user_id, at } => {
                sqlx::query(
                    "INSERT INTO reactions (message_id, emoji, user_id, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (message_id, emoji, user_id) DO NOTHING",
                )
                .bind(message_id)
                .bind(emoji)
                .bind(user_id)
                .bind(at)
                .execute(&mut *$tx)
                .await?
            }
            Step::ReactRemove { message_id, emoji, user_id } => {
                sqlx::query("DELETE FROM reactions WHERE message_id = $1 AND emoji = $2 AND user_id = $3")
                    .bind(message_id)
                    .bind(emoji)
                    .bind(user_id)
                    .execute(&mut *$tx)
                    .await?
            }
            Step::SetPinned { message_id, pinned } => {
                sqlx::query("UPDATE messages SET pinned = $1 WHERE id = $2 AND pinned <> $1")
                    .bind(pinned)
                    .bind(message_id)
                    .execute(&mut *$tx)
                    .await?
            }
            Step::ThreadCreate { thread_id, name, user_id, user_name, at } => {
                let created = sqlx::query(
                    "INSERT INTO threads (id, channel_id, name, created_by, created_by_name, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(thread_id)
                .bind(&e.channel_id)
                .bind(name)
                .bind(user_id)
                .bind(user_name)
                .bind(at)
                .execute(&mut *$tx)
                .await?;
                sqlx::query("INSERT INTO thread_participants (thread_id, user_id, joined_at) VALUES ($1, $2, $3)")
                    .bind(thread_id)
                    .bind(user_id)
                    .bind(at)
                    .execute(&mut *$tx)
                    .await?;
                created
            }
            Step::ThreadUpdate { thread_id, name, locked, archived } => {
                sqlx::query(
                    "UPDATE threads SET name = $1, locked = $2, archived = $3 WHERE id = $4 \
                     AND (name <> $1 OR locked <> $2 OR archived <> $3)",
                )
                .bind(name)
                .bind(locked)
                .bind(archived)
                .bind(thread_id)
                .execute(&mut *$tx)
                .await?
            }
            Step::ThreadDelete { thread_id } => {
                sqlx::query("DELETE FROM messages WHERE thread_id = $1").bind(thread_id).execute(&mut *$tx).await?;
                sqlx::query("DELETE FROM message_counts WHERE channel_id = $1 AND thread_id = $2")
                    .bind(&e.channel_id)
                    .bind(thread_id)
                    .execute(&mut *$tx)
                    .await?;
                sqlx::query("DELETE FROM threads WHERE id = $1").bind(thread_id).execute(&mut *$tx).await?
            }
            Step::ThreadJoin { thread_id, user_id, at } => {
                sqlx::query(
                    "INSERT INTO thread_participants (thread_id, user_id, joined_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (thread_id, user_id) DO NOTHING",
                )
                .bind(thread_id)
                .bind(user_id)
                .bind(at)
                .execute(&mut *$tx)
                .await?
            }
            Step::ThreadLeave { thread_id, user_id } => {
                sqlx::query("DELETE FROM thread_participants WHERE thread_id = $1 AND user_id = $2")
                    .bind(thread_id)
                    .bind(user_id)
                    .execute(&mut *$tx)
                    .await?
            }
        }
        .rows_affected();
        if touched == 0 {
            Appended::Unchanged
        } else {
            let seq: Option<(i64,)> = sqlx::query_as("UPDATE channels SET seq = seq + 1 WHERE id = $1 RETURNING seq")
                .bind(&e.channel_id)
                .fetch_optional(&mut *$tx)
                .await?;
            match seq {
                None => Appended::ChannelGone,
                Some((seq,)) => {
                    let packet = (e.render)(seq);
                    sqlx::query(
                        "INSERT INTO events (channel_id, seq, kind, message_id, payload, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(&e.channel_id)
                    .bind(seq)
                    .bind(e.kind)
                    .bind(&e.message_id)
                    .bind(&packet)
                    .bind(super::now())
                    .execute(&mut *$tx)
                    .await?;
                    Appended::Event { seq, packet }
                }
            }
        }
    }};
}

/// Runs `$batch` in the write transaction that `$begin` opens: runs of consecutive appends are written
/// together, channel events one by one, in order. Expands once per backend.
macro_rules! commit_on {
    ($begin:expr, $batch:ident, $joined:expr) => {{
        let mut outcomes = Vec::with_capacity($batch.len());
        let mut tx = $begin.await?;
        let mut i = 0;
        while i < $batch.len() {
            let run = appends_from($batch, i);
            if run.is_empty() {
                if let Change::Event(e) = $batch[i] {
                    outcomes.push(apply_event!(tx, e));
                }
                i += 1;
            } else {
                i += run.len();
                outcomes.extend(apply_appends!(tx, &run, $joined));
            }
        }
        tx.commit().await?;
        outcomes
    }};
}

/// Commits `batch`: on SQLite a batch of appends synchronously on the direct connection
/// ([`fast_appends`]), anything else in a transaction that reads as it goes.
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
    // The transaction below moves seqs on its own.
    seqs.clear();
    Ok(match backend {
        Backend::Sqlite(pool) => commit_on!(own_conn(pool, own).await?.begin_with("BEGIN IMMEDIATE"), batch, true),
        Backend::Postgres(pool) => commit_on!(pool.begin_write(), batch, false),
    })
}

/// The last seq of each channel as the SQLite writer committed it. Only the writer moves a
/// channel's seq, and a SQLite database belongs to one process, so the writer need not read it
/// back inside every transaction. A stale entry cannot do harm: a seq used twice breaks the
/// event log's primary key and a deleted channel its foreign key, the batch fails, the cache is
/// dropped and the changes are retried one by one the slow way. (PostgreSQL may be shared by
/// several nodes: it always reads the seq in the transaction.)
type Seqs = HashMap<String, i64>;

/// A batch of appends on SQLite, on the writer's own thread: stored nonces read first (only the
/// writer writes them), seqs from [`Seqs`] (read once per channel), every row in one
/// transaction, then the packets that repeated nonces answer with. `None` when the batch does not
/// qualify (a channel event, or a channel that is gone): the caller takes the slow path.
fn fast_appends(direct: &mut Direct, batch: &[&Change], seqs: &mut Seqs) -> Result<Option<Vec<Appended>>> {
    let msgs = appends_from(batch, 0);
    if msgs.len() != batch.len() {
        return Ok(None);
    }
    let mut missing: Vec<&str> =
        msgs.iter().map(|m| m.channel_id.as_str()).filter(|c| !seqs.contains_key(*c)).collect();
    missing.sort_unstable();
    missing.dedup();
    if !missing.is_empty() {
        let found = direct.channel_seqs(&missing)?;
        if found.len() < missing.len() {
            return Ok(None);
        }
        seqs.extend(found);
    }
    let keyed = keyed(&msgs);
    let prior: Prior = if keyed.is_empty() {
        Prior::new()
    } else {
        direct.rows(&nonce_lookup(true), &script::json_array(&keyed)?, |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
    };
    let plans = plan(&msgs, &prior);
    let mut last: Vec<(&str, i64)> = Vec::new();
    let mut assigned = vec![None; msgs.len()];
    for (i, m) in msgs.iter().enumerate().filter(|(i, _)| matches!(plans[*i], Plan::Fresh)) {
        let seq = match last.iter_mut().find(|(c, _)| *c == m.channel_id) {
            Some((_, s)) => {
                *s += 1;
                *s
            }
            None => {
                let s = seqs.get(&m.channel_id).copied().unwrap_or(0) + 1;
                last.push((m.channel_id.as_str(), s));
                s
            }
        };
        assigned[i] = Some(seq);
    }
    let packets: Vec<Option<String>> = msgs.iter().zip(&assigned).map(|(m, s)| s.map(|s| m.packet(s))).collect();
    let stored: Vec<usize> = (0..msgs.len()).filter(|i| assigned[*i].is_some()).collect();
    let mut script = Script::default();
    for (channel, seq) in &last {
        script.push("UPDATE channels SET seq = $2 WHERE id = $1", vec![(*channel).into(), (*seq).into()]);
    }
    append_rows(&mut script, &msgs, &stored, &assigned, &packets, true)?;
    if let Err(e) = direct.commit(&script) {
        seqs.clear();
        return Err(e);
    }
    for (channel, seq) in last {
        seqs.insert(channel.to_owned(), seq);
    }
    let originals = originals(&plans);
    let found: HashMap<String, String> = if originals.is_empty() {
        HashMap::new()
    } else {
        direct
            .rows(
                "SELECT e.message_id, e.payload FROM events e JOIN messages x ON x.id = e.message_id \
                 WHERE e.kind = 'message_new' AND e.message_id IN (SELECT value FROM json_each($1))",
                &script::json_array(&originals)?,
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
            .into_iter()
            .collect()
    };
    drop(script);
    Ok(Some(outcomes(&plans, &assigned, packets, &found)))
}

/// The appends that start at `from`, up to the next channel event.
fn appends_from<'a>(batch: &[&'a Change], from: usize) -> Vec<&'a Append> {
    batch[from..]
        .iter()
        .map_while(|c| match c {
            Change::Append(m) => Some(&**m),
            Change::Event(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(thread_id: Option<&str>, nonce: Option<&str>, extra: Option<Value>) -> NewMessage {
        NewMessage {
            id: "m1".into(),
            channel_id: "c1".into(),
            channel_name: "gen\"eral".into(),
            thread_id: thread_id.map(str::to_owned),
            user_id: Some("u1".into()),
            author_name: "ann".into(),
            content: "say \"seq\":1 {}\\".into(),
            created_at: 1_700_000_000.25,
            reply_to: Some(("m0".into(), "bob".into())),
            ping: Some(false),
            pings: json!({"users": ["bob"], "roles": [], "replies": []}),
            pinged: Pinged::default(),
            extra,
            nonce: nonce.map(str::to_owned),
            nonce_window_s: 600.0,
        }
    }

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
                ops.push(Op { change, on_commit, reply });
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

    /// The spliced packet is the live shape: the message object with its seq, and around it the
    /// channel, thread, seq and `global` (PROTOCOL §7.3), whatever the text needs escaped.
    #[test]
    fn spliced_packet_has_the_live_shape() {
        let embeds = json!({"embeds": [{"title": "t", "seq": 5}]});
        for m in [message(None, None, None), message(Some("t\"1"), Some("n1"), Some(embeds))] {
            let packet: Value = serde_json::from_str(&Append::new(m.clone()).packet(42)).unwrap();
            let mut object = live_message(&m);
            object.insert("seq".into(), json!(42));
            let expected = json!({
                "cmd": "message_new",
                "message": object,
                "channel": m.channel_name,
                "thread_id": m.thread_id,
                "seq": 42,
                "global": true,
            });
            assert_eq!(packet, expected);
            assert_eq!(packet["message"]["content"], m.content);
            assert_eq!(packet["message"]["nonce"], m.nonce.map_or(Value::Null, Value::from));
        }
    }
}
