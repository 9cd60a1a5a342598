//! Durable storage: one `Store` over SQLite (default) or PostgreSQL, one module per aggregate.
//!
//! Both backends run the same SQL text (numbered `$n` parameters and portable column types); the
//! [`dispatch!`] macro expands one body once per backend so each is type-checked against its own
//! driver. Message appends go through the group-commit [`writer`], which acknowledges only after commit.

pub mod attachments;
pub mod audit;
pub mod bootstrap;
pub mod bots;
pub mod channels;
mod checkpoint;
mod control;
mod direct;
pub mod emoji;
pub mod events;
pub mod invites;
pub mod messages;
pub mod pings;
pub mod polls;
pub mod presence;
pub mod push;
pub mod read_state;
pub mod roles;
pub mod sauth;
mod script;
pub mod search;
pub mod sessions;
pub mod settings;
pub mod slash;
pub mod threads;
pub mod users;
pub mod webhooks;
pub mod writer;

use std::{path::Path, str::FromStr, sync::Arc, time::Duration};

use sqlx::{
    PgPool, SqlitePool,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions},
};

use crate::{
    error::{Error, Result},
    metrics::Metrics,
};

/// Runs `$body` with `$pool` bound to whichever pool the store uses.
macro_rules! dispatch {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store.backend() {
            $crate::store::Backend::Sqlite($pool) => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use dispatch;

/// The connection pool of one backend.
#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Starting a transaction that will write.
///
/// On SQLite it is `BEGIN IMMEDIATE`: a deferred transaction that reads first and writes later can
/// fail at once with "database is locked" when another writer committed in between (WAL snapshots
/// cannot be upgraded), whereas an immediate one waits for the write lock under the busy timeout.
pub trait WritePool {
    type Db: sqlx::Database;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>> + Send;
}

impl WritePool for SqlitePool {
    type Db = sqlx::Sqlite;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error>> + Send {
        self.begin_with("BEGIN IMMEDIATE")
    }
}

impl WritePool for PgPool {
    type Db = sqlx::Postgres;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error>> + Send {
        self.begin()
    }
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    writer: writer::Writer,
    /// Bumped after every committed change to accounts, roles or role assignments made through
    /// this handle, so a listing built from them (`users_list`) knows when it is stale without a
    /// query. Shared by clones: every clone writes to the same database.
    members: Arc<std::sync::atomic::AtomicU64>,
    /// PostgreSQL: the longest one wait for the database may take (`store.timeout_ms`).
    timeout: Option<Duration>,
}

/// Where to store data: the resolved form of `database_url` + `data_dir`.
#[derive(Debug, Clone)]
pub enum Location {
    /// A SQLite database file (created if missing).
    SqliteFile(std::path::PathBuf),
    /// A PostgreSQL URL, optionally with a schema to use as `search_path` (tests isolate by schema).
    Postgres { url: String, schema: Option<String> },
}

impl Location {
    /// Resolves `database_url` (empty → `<data_dir>/confab.db`).
    pub fn from_config(database_url: &str, data_dir: &Path) -> Location {
        if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
            Location::Postgres { url: database_url.to_owned(), schema: None }
        } else if let Some(path) =
            database_url.strip_prefix("sqlite://").or_else(|| database_url.strip_prefix("sqlite:"))
        {
            Location::SqliteFile(path.into())
        } else {
            Location::SqliteFile(data_dir.join("confab.db"))
        }
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Store {
    /// Opens (and creates) the database, applies the embedded migrations, starts the writer and
    /// makes sure the dialect-specific search index exists.
    pub async fn open(location: &Location, pool_size: u32, batch_max: usize, metrics: Arc<Metrics>) -> Result<Store> {
        let options = crate::config::StoreConfig { batch_max, pool_size, ..Default::default() };
        Self::open_with(location, &options, metrics).await
    }

    /// [`Store::open`] with every store option (SQLite durability level included).
    pub async fn open_with(
        location: &Location,
        options: &crate::config::StoreConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Store> {
        let pool_size = options.pool_size;
        let timeout = Duration::from_millis(options.timeout_ms);
        let backend = match location {
            Location::SqliteFile(path) => {
                private_file(path)
                    .map_err(|e| crate::error::Error::Internal(format!("create {}: {e}", path.display())))?;
                let mut connect = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT);
                for (pragma, value) in sqlite_pragmas(options.sqlite_synchronous) {
                    connect = connect.pragma(pragma, value);
                }
                // A local file does not go stale between uses: testing each connection before handing it out
                // would cost a round trip to its worker thread on every query.
                let pool = SqlitePoolOptions::new()
                    .max_connections(pool_size)
                    .test_before_acquire(false)
                    .connect_with(connect)
                    .await?;
                Backend::Sqlite(pool)
            }
            Location::Postgres { url, schema } => {
                // A session whose transaction waits on its client for half the time-out is ended
                // by the server: a node cut off in the middle of a commit would otherwise hold its
                // channel rows locked, and every other node's commits to them would wait with it.
                let idle = format!("{}ms", (timeout / 2).as_millis());
                let mut options =
                    PgConnectOptions::from_str(url)?.options([("idle_in_transaction_session_timeout", idle.as_str())]);
                if let Some(schema) = schema {
                    options = options.options([("search_path", schema.as_str())]);
                }
                let pool = PgPoolOptions::new()
                    .max_connections(pool_size)
                    .acquire_timeout(timeout)
                    .connect_with(options)
                    .await?;
                Backend::Postgres(pool)
            }
        };
        match &backend {
            Backend::Sqlite(pool) => MIGRATOR.run(pool).await,
            Backend::Postgres(pool) => MIGRATOR.run(pool).await,
        }
        .map_err(|e| crate::error::Error::Internal(format!("migrations: {e}")))?;
        // The search index (and its queue) exists before the writer, which indexes the queue.
        search::ensure_search_index(&backend).await?;
        let timeout = matches!(backend, Backend::Postgres(_)).then_some(timeout);
        let writer = writer::Writer::start(backend.clone(), options, timeout, metrics)?;
        Ok(Store { backend, writer, members: Arc::default(), timeout })
    }

    /// How many account, role or role-assignment changes this store has committed: equal values
    /// mean the member list read at the first is still current at the second.
    pub fn members_generation(&self) -> u64 {
        self.members.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records a committed change to accounts, roles or role assignments. Called after the commit
    /// and before the change is announced, so whoever hears of it and asks for the list gets the
    /// new one.
    pub(crate) fn members_changed(&self) {
        self.members.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Passes a role or account write's outcome through, recording the change when it committed.
    pub(crate) fn members_written<T>(&self, written: Result<T>) -> Result<T> {
        if written.is_ok() {
            self.members_changed();
        }
        written
    }

    /// The pool, for the aggregate modules.
    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The group-commit writer.
    pub fn writer(&self) -> &writer::Writer {
        &self.writer
    }

    /// Whether the database answers, within `store.timeout_ms` on PostgreSQL (for `/readyz`).
    pub async fn ping(&self) -> bool {
        let ping = async {
            dispatch!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ())).map_err(Error::from)
        };
        bounded(self.timeout, ping).await.is_ok()
    }

    /// Drains the writer and closes the pool; acknowledged writes are all committed after this.
    pub async fn close(&self) {
        self.writer.drain().await;
        dispatch!(self, pool => pool.close().await);
    }

    /// Which backend is in use, for logs.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// `wait` for the database, given up as [`Error::Unavailable`] after `limit` (PostgreSQL's
/// `store.timeout_ms`; `None`: as long as it takes). A write given up on may still commit.
pub(crate) async fn bounded<T>(limit: Option<Duration>, wait: impl Future<Output = Result<T>>) -> Result<T> {
    let Some(limit) = limit else { return wait.await };
    tokio::time::timeout(limit, wait)
        .await
        .unwrap_or_else(|_| Err(Error::Unavailable(format!("no answer from the database within {limit:?}"))))
}

/// How long a SQLite connection waits for another's write lock before it fails.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The size the WAL file is cut back to when it starts over (64 MiB): a burst may grow it, and
/// without a limit SQLite keeps the file at its largest size for good.
const WAL_FILE_LIMIT: i64 = 64 << 20;

/// The settings of every SQLite connection: the pool's and the writer's direct one. (The WAL
/// journal mode belongs to the database file; the pool sets it.)
fn sqlite_pragmas(sync: crate::config::SqliteSync) -> [(&'static str, String); 4] {
    [
        // NORMAL survives any process crash; FULL also survives power loss (one fsync per group
        // commit). See `store.sqlite_synchronous`.
        (
            "synchronous",
            match sync {
                crate::config::SqliteSync::Normal => "NORMAL",
                crate::config::SqliteSync::Full => "FULL",
            }
            .to_owned(),
        ),
        // A background task checkpoints instead (see `checkpoint`), and the writer's own
        // connection past a bound (`direct`).
        ("wal_autocheckpoint", "0".to_owned()),
        ("journal_size_limit", WAL_FILE_LIMIT.to_string()),
        ("foreign_keys", "ON".to_owned()),
    ]
}

/// Creates the database file (and its folder) readable by the owner only before SQLite opens it:
/// it holds password and token hashes. SQLite gives its `-wal` and `-shm` files the same mode.
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent)?;
    }
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The current time as Unix seconds with a fractional part, the unit of every stored time.
pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Whether an error is a unique-constraint violation (a name or key already taken).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}
