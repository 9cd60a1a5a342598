//! The store contract: every test runs once against SQLite and once against PostgreSQL, through
//! the public `Store` API only (plus a raw connection for facts the API does not read back).

use std::{
    str::FromStr,
    sync::{Arc, Mutex},
};

use confab::{
    error::Error,
    store::{
        Location, Store,
        channels::Channel,
        now,
        sessions::Rotation,
        users::{AccountKind, NewUser, User},
        writer::{Appended, ChannelEvent, NewMessage, Step},
    },
};
use serde_json::{Value, json};
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqlitePoolOptions},
};

use crate::support::{Backend, SYSTEM, WAIT, fresh_location, open_location, open_store};

on_both! {
    bootstrap_is_idempotent => bootstrap_is_idempotent_sqlite, bootstrap_is_idempotent_postgres;
    users_are_case_insensitive => users_are_case_insensitive_sqlite, users_are_case_insensitive_postgres;
    user_roles_are_replaced_atomically => user_roles_are_replaced_atomically_sqlite, user_roles_are_replaced_atomically_postgres;
    users_unbanned_sorted_case_insensitively => users_unbanned_sorted_case_insensitively_sqlite, users_unbanned_sorted_case_insensitively_postgres;
    writer_assigns_seq_per_channel => writer_assigns_seq_per_channel_sqlite, writer_assigns_seq_per_channel_postgres;
    writer_runs_on_commit_before_returning => writer_runs_on_commit_before_returning_sqlite, writer_runs_on_commit_before_returning_postgres;
    concurrent_appends_get_unique_contiguous_seqs => concurrent_appends_get_unique_contiguous_seqs_sqlite, concurrent_appends_get_unique_contiguous_seqs_postgres;
    nonce_duplicate_conflict_and_window => nonce_duplicate_conflict_and_window_sqlite, nonce_duplicate_conflict_and_window_postgres;
    history_reads => history_reads_sqlite, history_reads_postgres;
    thread_messages_share_the_channel_counter => thread_messages_share_the_channel_counter_sqlite, thread_messages_share_the_channel_counter_postgres;
    refresh_rotation_and_reuse => refresh_rotation_and_reuse_sqlite, refresh_rotation_and_reuse_postgres;
    expired_and_revoked_sessions => expired_and_revoked_sessions_sqlite, expired_and_revoked_sessions_postgres;
    mark_read_upserts => mark_read_upserts_sqlite, mark_read_upserts_postgres;
    settings_get_and_replace => settings_get_and_replace_sqlite, settings_get_and_replace_postgres;
    acknowledged_writes_survive_reopen => acknowledged_writes_survive_reopen_sqlite, acknowledged_writes_survive_reopen_postgres;
    append_after_close_fails => append_after_close_fails_sqlite, append_after_close_fails_postgres;
    concurrent_first_bootstrap => concurrent_first_bootstrap_sqlite, concurrent_first_bootstrap_postgres;
}

/// A fresh, bootstrapped store and where it lives.
struct Db {
    store: Store,
    location: Location,
    _dir: tempfile::TempDir,
}

async fn db(backend: Backend) -> Db {
    let dir = tempfile::tempdir().expect("tempdir");
    let location = fresh_location(backend, dir.path()).await;
    let store = open_location(&location).await;
    Db { store, location, _dir: dir }
}

/// A second connection to the same database, for facts the `Store` API does not read back.
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Raw {
    async fn connect(location: &Location) -> Raw {
        match location {
            Location::SqliteFile(path) => {
                let options = SqliteConnectOptions::new().filename(path);
                Raw::Sqlite(SqlitePoolOptions::new().max_connections(1).connect_with(options).await.expect("sqlite"))
            }
            Location::Postgres { url, schema } => {
                let mut options = PgConnectOptions::from_str(url).expect("postgres url");
                if let Some(schema) = schema {
                    options = options.options([("search_path", schema.as_str())]);
                }
                Raw::Postgres(PgPoolOptions::new().max_connections(1).connect_with(options).await.expect("postgres"))
            }
        }
    }

    async fn execute(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Raw::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
            Raw::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
        }
        .expect("raw statement");
    }

    /// Every `read_state` row of one account: (channel, thread, last read id, last read seq).
    async fn read_state(&self, user_id: &str) -> Vec<(String, String, Option<String>, i64)> {
        let sql = "SELECT channel_id, thread_id, last_read_id, last_read_seq FROM read_state \
                   WHERE user_id = $1 ORDER BY channel_id, thread_id";
        match self {
            Raw::Sqlite(pool) => sqlx::query_as(sql).bind(user_id).fetch_all(pool).await,
            Raw::Postgres(pool) => sqlx::query_as(sql).bind(user_id).fetch_all(pool).await,
        }
        .expect("read_state")
    }

    async fn close(self) {
        match self {
            Raw::Sqlite(pool) => pool.close().await,
            Raw::Postgres(pool) => pool.close().await,
        }
    }
}

async fn general_channel(store: &Store) -> Channel {
    store.channels().await.expect("channels").into_iter().find(|c| c.name == "general").expect("general exists")
}

async fn role_id(store: &Store, name: &str) -> String {
    store.roles().await.expect("roles").into_iter().find(|r| r.name == name).expect("role exists").id
}

/// The audit entry of a change made by test setup rather than by a user.
fn setup_audit(action: &'static str) -> confab::store::audit::Audit {
    confab::store::audit::Audit {
        action,
        actor_id: None,
        actor_name: "test".into(),
        target_id: None,
        target_name: None,
        details: serde_json::json!({}),
    }
}

/// Creates a text channel after the existing ones.
async fn channel(store: &Store, name: &str) -> Channel {
    let position = store.channels().await.expect("channels").len() as i64;
    let c = Channel {
        id: uuid::Uuid::now_v7().to_string(),
        name: name.to_owned(),
        kind: "text".to_owned(),
        display_name: None,
        description: None,
        size: None,
        permissions: "{}".to_owned(),
        position,
        seq: 0,
    };
    store.channel_create_audited(&c, &setup_audit("channel_create")).await.expect("channel_create");
    c
}

async fn user(store: &Store, name: &str) -> User {
    let roles = vec![role_id(store, "user").await];
    store
        .user_create(NewUser {
            username: name,
            kind: AccountKind::Local,
            password_hash: Some("$argon2id$not-a-real-hash".to_owned()),
            role_ids: roles,
        })
        .await
        .expect("user_create")
}

fn message(channel: &Channel, author: &User, content: &str) -> NewMessage {
    NewMessage {
        id: uuid::Uuid::now_v7().to_string(),
        channel_id: channel.id.clone(),
        channel_name: channel.name.clone(),
        thread_id: None,
        user_id: Some(author.id.clone()),
        author_name: author.username.clone(),
        content: content.to_owned(),
        created_at: now(),
        reply_to: None,
        ping: None,
        pings: json!({"users": [], "roles": [], "replies": []}),
        pinged: Default::default(),
        extra: None,
        nonce: None,
        nonce_window_s: 600.0,
    }
}

fn with_nonce(mut m: NewMessage, nonce: &str) -> NewMessage {
    m.nonce = Some(nonce.to_owned());
    m
}

async fn append(store: &Store, m: NewMessage) -> Appended {
    store.writer().append(m, Box::new(|_, _| {})).await.expect("append")
}

fn new_seq(outcome: &Appended) -> i64 {
    match outcome {
        Appended::New { seq, .. } => *seq,
        other => panic!("expected a new message, got {other:?}"),
    }
}

fn packet_of(outcome: &Appended) -> Value {
    match outcome {
        Appended::New { packet, .. } | Appended::Duplicate { packet } => {
            serde_json::from_str(packet).expect("packet is JSON")
        }
        other => panic!("expected a packet, got {other:?}"),
    }
}

fn contents(rows: &[confab::store::messages::MessageRow]) -> Vec<&str> {
    rows.iter().map(|r| r.content.as_str()).collect()
}

async fn bootstrap_is_idempotent(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(backend, dir.path()).await;
    store.bootstrap(SYSTEM).await.expect("second bootstrap");
    store.bootstrap(SYSTEM).await.expect("third bootstrap");

    let roles = store.roles().await.unwrap();
    let shape: Vec<(&str, i64, Option<&str>)> =
        roles.iter().map(|r| (r.name.as_str(), r.position, r.color.as_deref())).collect();
    assert_eq!(
        shape,
        [
            ("owner", 0, Some("#9400D3")),
            ("admin", 1, Some("#FF0000")),
            ("moderator", 2, Some("#FFFF00")),
            ("user", 3, None),
        ]
    );
    assert_eq!(roles[0].permission_list(), ["administrator"]);
    assert_eq!(roles[1].permission_list(), ["administrator"]);
    assert_eq!(roles[2].permission_list(), ["manage_messages", "manage_threads", "view_audit_log"]);
    assert_eq!(
        roles[3].permission_list(),
        [
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
        ]
    );
    for protected in &roles[..3] {
        assert!(!protected.self_assignable, "{} must not be self-assignable", protected.name);
    }
    let ids: std::collections::HashSet<&str> = roles.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 4, "role ids are distinct");

    let channels = store.channels().await.unwrap();
    assert_eq!(channels.len(), 1, "{channels:?}");
    let general = &channels[0];
    // The first start's welcome took seq 1; later starts posted nothing.
    assert_eq!((general.name.as_str(), general.kind.as_str(), general.seq), ("general", "text", 1));
    let welcome = store.messages_page(&general.id, "", 0, 10).await.unwrap();
    assert_eq!(contents(&welcome), [confab::store::bootstrap::WELCOME]);
    assert_eq!((welcome[0].user_id.as_deref(), welcome[0].author.as_str(), welcome[0].seq), (None, SYSTEM, 1));
    let perms: Value = serde_json::from_str(&general.permissions).expect("permissions are JSON");
    for key in ["view", "send", "create_thread"] {
        assert_eq!(perms[key], json!(["user"]), "general.{key}: {perms}");
    }
    assert_eq!(perms["delete"], json!(["admin", "moderator"]), "{perms}");
    // Keys not named for general either are absent or carry their PROTOCOL §5.5 defaults.
    for (key, default) in [("pin", "owner"), ("delete_own", "user"), ("edit_own", "user"), ("react", "user")] {
        if !perms[key].is_null() {
            assert_eq!(perms[key], json!([default]), "general.{key}: {perms}");
        }
    }
    assert_eq!(store.channel_seq(&general.id).await.unwrap(), 1, "the welcome only");
    store.close().await;
}

async fn users_are_case_insensitive(backend: Backend) {
    let Db { store, _dir, .. } = db(backend).await;
    let alice = user(&store, "Alice").await;
    assert_eq!(alice.username, "Alice");
    assert_eq!(alice.kind, "local");
    assert_eq!(alice.password_hash.as_deref(), Some("$argon2id$not-a-real-hash"));
    assert!(!alice.banned);
    assert!(alice.cracked());
    assert!(!alice.is_bot());

    for spelling in ["Alice", "alice", "ALICE", "aLiCe"] {
        let found = store.user_by_name(spelling).await.unwrap().unwrap_or_else(|| panic!("{spelling} not found"));
        assert_eq!(found, alice, "lookup by {spelling}");
    }
    assert_eq!(store.user_by_id(&alice.id).await.unwrap(), Some(alice.clone()));
    assert_eq!(store.user_by_id("no-such-id").await.unwrap(), None);
    assert_eq!(store.user_by_name("bob").await.unwrap(), None);

    let err = store
        .user_create(NewUser { username: "aLICE", kind: AccountKind::Local, password_hash: None, role_ids: vec![] })
        .await
        .expect_err("a case variant of an existing name is taken");
    assert!(matches!(err, Error::Client { .. }), "{err:?}");
    assert_eq!(err.text(), "Username already taken");
    assert_eq!(err.code(), confab_proto::ErrorCode::UsernameTaken);
    assert_eq!(store.user_count().await.unwrap(), 1);
    // The original keeps its spelling.
    assert_eq!(store.user_by_name("alice").await.unwrap().unwrap().username, "Alice");

    let bot = store
        .user_create(NewUser { username: "Helper", kind: AccountKind::Bot, password_hash: None, role_ids: vec![] })
        .await
        .unwrap();
    assert!(bot.is_bot());
    assert_eq!(bot.password_hash, None);
    assert_eq!(store.user_count().await.unwrap(), 2);
    store.close().await;
}

async fn user_roles_are_replaced_atomically(backend: Backend) {
    let Db { store, _dir, .. } = db(backend).await;
    let owner = role_id(&store, "owner").await;
    let moderator = role_id(&store, "moderator").await;
    let user_role = role_id(&store, "user").await;
    let mut both = vec![owner.clone(), user_role.clone()];
    both.sort();
    let carol = store
        .user_create(NewUser {
            username: "carol",
            kind: AccountKind::Local,
            password_hash: None,
            role_ids: both.clone(),
        })
        .await
        .unwrap();
    let dave = user(&store, "dave").await;

    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(sorted(store.user_role_ids(&carol.id).await.unwrap()), both);
    assert_eq!(store.user_role_ids(&dave.id).await.unwrap(), [user_role.as_str()]);

    store.user_set_roles(&carol.id, std::slice::from_ref(&moderator)).await.unwrap();
    assert_eq!(store.user_role_ids(&carol.id).await.unwrap(), [moderator.as_str()]);
    assert_eq!(store.user_role_ids(&dave.id).await.unwrap(), [user_role.as_str()], "other accounts untouched");

    let mut all = store.all_user_roles().await.unwrap();
    all.sort();
    let mut expected = vec![(carol.id.clone(), moderator.clone()), (dave.id.clone(), user_role.clone())];
    expected.sort();
    assert_eq!(all, expected);

    // An unknown role id fails the whole replacement; the previous roles stay.
    store
        .user_set_roles(&carol.id, &[user_role.clone(), "no-such-role".to_owned()])
        .await
        .expect_err("unknown role id is rejected");
    assert_eq!(store.user_role_ids(&carol.id).await.unwrap(), [moderator.as_str()]);

    store.user_set_roles(&carol.id, &[]).await.unwrap();
    assert!(store.user_role_ids(&carol.id).await.unwrap().is_empty());
    store.close().await;
}

async fn users_unbanned_sorted_case_insensitively(backend: Backend) {
    let Db { store, location, _dir } = db(backend).await;
    for name in ["bob", "Alice", "dave", "Carol", "eve"] {
        user(&store, name).await;
    }
    let names = |users: Vec<User>| users.into_iter().map(|u| u.username).collect::<Vec<_>>();
    assert_eq!(names(store.users_unbanned().await.unwrap()), ["Alice", "bob", "Carol", "dave", "eve"]);

    // No Store call bans yet; set the flag directly and check both listings honour it.
    let raw = Raw::connect(&location).await;
    raw.execute("UPDATE users SET banned = TRUE WHERE username_lower = 'carol'").await;
    raw.close().await;
    assert_eq!(names(store.users_unbanned().await.unwrap()), ["Alice", "bob", "dave", "eve"]);
    let all = store.users_all().await.unwrap();
    assert_eq!(
        all.iter().map(|u| (u.username.as_str(), u.banned)).collect::<Vec<_>>(),
        [("Alice", false), ("bob", false), ("Carol", true), ("dave", false), ("eve", false)]
    );
    store.close().await;
}

async fn writer_assigns_seq_per_channel(backend: Backend) {
    let Db { store, _dir, .. } = db(backend).await;
    let general = channel(&store, "news").await; // starts empty: `general` has the welcome
    let dev = channel(&store, "dev").await;
    let alice = user(&store, "Alice").await;
    assert_eq!(store.channel_seq(&general.id).await.unwrap(), 0);
    assert_eq!(store.channel_seq("no-such-channel").await.unwrap(), 0);

    let mut seqs = Vec::new();
    for i in 1..=3 {
        let m = message(&general, &alice, &format!("hello {i}"));
        let id = m.id.clone();
        let outcome = append(&store, m).await;
        let packet = packet_of(&outcome);
        assert_eq!(packet["cmd"], "message_new");
        assert_eq!(packet["channel"], "news");
        assert_eq!(packet["seq"], new_seq(&outcome));
        assert_eq!(packet["global"], true);
        assert_eq!(packet["message"]["id"], id);
        assert_eq!(packet["message"]["user"], "Alice");
        assert_eq!(packet["message"]["content"], format!("hello {i}"));
        assert_eq!(packet["message"]["seq"], new_seq(&outcome));
        assert!(packet.get("listener").is_none(), "{packet}");
        seqs.push(new_seq(&outcome));
    }
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(store.channel_seq(&general.id).await.unwrap(), 3);

    // Another channel has its own counter.
    assert_eq!(new_seq(&append(&store, message(&dev, &alice, "elsewhere")).await), 1);
    assert_eq!(store.channel_seq(&dev.id).await.unwrap(), 1);
    assert_eq!(new_seq(&append(&store, message(&general, &alice, "back")).await), 4);
    assert_eq!(store.channel_seq(&general.id).await.unwrap(), 4);

    // A channel that does not exist stores nothing.
    let mut ghost = dev.clone();
    ghost.id = "no-such-channel".to_owned();
    assert_eq!(append(&store, message(&ghost, &alice, "into the void")).await, Appended::ChannelGone);
    assert_eq!(store.channel_seq(&dev.id).await.unwrap(), 1);

    // A channel event takes the next seq between appends (the SQLite writer keeps seqs between
    // commits; an event moves them behind its back).
    let pinned = ChannelEvent {
        channel_id: general.id.clone(),
        message_id: None,
        kind: "message_pin",
        step: Step::SetPinned { message_id: first_id(&store, &general).await, pinned: true },
        render: Box::new(|seq| json!({"cmd": "message_pin", "seq": seq}).to_string()),
    };
    let outcome = store.writer().event(pinned, Box::new(|_, _| {})).await.unwrap();
    assert!(matches!(outcome, Appended::Event { seq: 5, .. }), "{outcome:?}");
    assert_eq!(new_seq(&append(&store, message(&general, &alice, "after the pin")).await), 6);

    // A channel deleted after the writer last wrote to it: nothing is stored, the others go on.
    assert_eq!(new_seq(&append(&store, message(&dev, &alice, "dev again")).await), 2);
    store.channel_delete(&dev.id, &setup_audit("channel_delete")).await.unwrap();
    assert_eq!(append(&store, message(&dev, &alice, "too late")).await, Appended::ChannelGone);
    assert_eq!(new_seq(&append(&store, message(&general, &alice, "still here")).await), 7);
    store.close().await;
}

/// The id of one message of `channel`.
async fn first_id(store: &Store, channel: &Channel) -> String {
    store.messages_page(&channel.id, "", 0, 1).await.unwrap().remove(0).id
}

async fn writer_runs_on_commit_before_returning(backend: Backend) {
    let Db { store, _dir, .. } = db(backend).await;
    let general = general_channel(&store).await;
    let alice = user(&store, "Alice").await;
    for i in 0..5 {
        let seen: Arc<Mutex<Option<Appended>>> = Arc::default();
        let slot = seen.clone();
        let outcome = store
            .writer()
            .append(
                message(&general, &alice, &format!("m{i}")),
                Box::new(move |a, _| *slot.lock().unwrap() = Some(a.clone())),
            )
            .await
            .unwrap();
        let observed = seen.lock().unwrap().clone();
        assert_eq!(observed, Some(outcome), "on_commit ran with the outcome before append returned");
    }
    store.close().await;
}

async fn concurrent_appends_get_unique_contiguous_seqs(backend: Backend) {
    const TASKS: i64 = 40;
    const EACH: i64 = 5;
    let Db { store, _dir, .. } = db(backend).await;
    let general = channel(&store, "news").await; // starts empty: `general` has the welcome
    let alice = user(&store, "Alice").await;
    let published: Arc<Mutex<Vec<i64>>> = Arc::default();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (store, general, alice, published) = (store.clone(), general.clone(), alice.clone(), published.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..EACH {
                let published = published.clone();
                let outcome = store
                    .writer()
                    .append(
                        message(&general, &alice, &format!("t{t} m{i}")),
                        Box::new(move |a, _| {
                            if let Appended::New { seq, .. } = a {
                                published.lock().unwrap().push(*seq);
                            }
                        }),
                    )
                    .await
                    .expect("append");
                mine.push(new_seq(&outcome));
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let mine = task.await.expect("task");
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "one task's appends are ordered: {mine:?}");
        all.extend(mine);
    }
    all.sort_unstable();
    let expected: Vec<i64> = (1..=TASKS * EACH).collect();
    assert_eq!(all, expected, "every seq exactly once, no gaps");
    assert_eq!(*published.lock().unwrap(), expected, "on_commit runs in seq order");
    assert_eq!(store.channel_seq(&general.id).await.unwrap(), TASKS * EACH);
    let stored = store.messages_page(&general.id, "", 0, 1000).await.unwrap();
    assert_eq!(stored.iter().map(|r| r.seq).collect::<Vec<_>>(), expected);
    store.close().await;
}

async fn nonce_duplicate_conflict_and_window(backend: Backend) {
    let Db { store, _dir, .. } = db(backend).await;
    let general = channel(&store, "news").await; // starts empty: `general` has the welcome
    let dev = channel(&store, "dev").await;
    let alice = user(&store, "Alice").await;
    let bob = user(&store, "bob").await;

    let first = append(&store, with_nonce(message(&general, &alice, "hi"), "n1")).await;
    assert_eq!(new_seq(&first), 1);
    let Appended::New { packet: original, .. } = &first else { unreachable!() };
    assert_eq!(packet_of(&first)["message"]["nonce"], "n1");

    // Same nonce, same target and content: the original packet, nothing stored.
    let again = append(&store, with_nonce(message(&general, &alice, "hi"), "n1")).await;
    assert_eq!(again, Appended::Duplicate { packet: original.clone() });
    assert_eq!(store.channel_seq(&general.id).await.unwrap(), 1);

    // Same nonce, different content or channel: a conflict, nothing stored.
    assert_eq!(append(&store, with_nonce(message(&general, &alice, "hello"), "n1")).await, Appended::NonceConflict);
    assert_eq!(append(&store, with_nonce(message(&dev, &alice, "hi"), "n1")).await, Appended::NonceConflict);
    assert_eq!(store.channel_seq(&general.id).await.unwrap(), 1);
    assert_eq!(store.channel_seq(&dev.id).await.unwrap(), 0);

    // The scope is the account: another user may use the same nonce.
    assert_eq!(new_seq(&append(&store, with_nonce(message(&general, &bob, "hi"), "n1")).await), 2);
    // Another nonce is a new message even with the same content.
    assert_eq!(new_seq(&append(&store, with_nonce(message(&general, &alice, "hi"), "n2")).await), 3);

    // After the window the nonce is free again (the window is measured from created_at).
    let mut old = with_nonce(message(&general, &alice, "long ago"), "n3");
    old.created_at = now() - 100.0;
    old.nonce_window_s = 10.0;
    assert_eq!(new_seq(&append(&store, old).await), 4);
    let mut fresh = with_nonce(message(&general, &alice, "something else"), "n3");
    fresh.nonce_window_s = 10.0;
    let reused = append(&store, fresh).await;
    assert_eq!(new_seq(&reused), 5, "nonce reusable after the window: {reused:?}");
    // ...and the reuse is itself remembered.
    let mut repeat = with_nonce(message(&general, &alice, "something else"), "n3");
    repeat.nonce_window_s = 10.0;
    assert_eq!(append(&store, repeat).await, Appended::Duplicate { packet: packet_of_string(&reused) });

    let history = store.messages_page(&general.id, "", 0, 100).await.unwrap();
    assert_eq!(contents(&history), ["hi", "hi", "hi", "long ago", "something else"]);

    // The same new nonce twice at once (one batch or two): stored once, the other gets its packet.
    let (a, b) = tokio::join!(
        append(&store, with_nonce(message(&general, &alice, "twice"), "n4")),
        append(&store, with_nonce(message(&general, &alice, "twice"), "n4")),
    );
    let (stored, repeat) = if matches!(a, Appended::New { .. }) { (a, b) } else { (b, a) };
    assert_eq!(new_seq(&stored), 6);
    assert_eq!(repeat, Appended::Duplicate { packet: packet_of_string(&stored) });

    // A repeat whose original was deleted finds nothing to answer with.
    let id = packet_of(&stored)["message"]["id"].as_str().unwrap().to_owned();
    let delete = ChannelEvent {
        channel_id: general.id.clone(),
        message_id: Some(id.clone()),
        kind: "message_delete",
        step: Step::Delete { message_id: id },
        render: Box::new(|seq| json!({"cmd": "message_delete", "seq": seq}).to_string()),
    };
    store.writer().event(delete, Box::new(|_, _| {})).await.unwrap();
    let after = append(&store, with_nonce(message(&general, &alice, "twice"), "n4")).await;
    assert_eq!(after, Appended::OriginalDeleted);
    store.close().await;
}

fn packet_of_string(outcome: &Appended) -> String {
    match outcome {
        Appended::New { packet, .. } => packet.clone(),
        other => panic!("expected a new message, got {other:?}"),
    }
}

async fn history_reads(backend: Backend) {
    let Db { store, _dir, .. } = db(backend).await;
    let general = channel(&store, "news").await; // starts empty: `general` has the welcome
    let dev = channel(&store, "dev").await;
    let alice = user(&store, "Alice").await;
    assert_eq!(store.message_latest(&general.id, "").await.unwrap(), None);
    assert!(store.messages_page(&general.id, "", 0, 10).await.unwrap().is_empty());

    let mut ids = Vec::new();
    let mut stamps = Vec::new();
    for i in 1..=10 {
        let m = message(&general, &alice, &format!("m{i}"));
        ids.push(m.id.clone());
        stamps.push(m.created_at);
        append(&store, m).await;
    }
    let page = |skip, limit| {
        let store = store.clone();
        let channel = general.id.clone();
        async move { store.messages_page(&channel, "", skip, limit).await.unwrap() }
    };
    assert_eq!(contents(&page(0, 3).await), ["m8", "m9", "m10"], "newest page, oldest first");
    assert_eq!(contents(&page(3, 3).await), ["m5", "m6", "m7"]);
    assert_eq!(contents(&page(9, 5).await), ["m1"]);
    assert!(page(10, 5).await.is_empty());
    assert_eq!(page(0, 100).await.len(), 10);
    assert!(store.messages_page(&dev.id, "", 0, 10).await.unwrap().is_empty(), "other channels are separate");

    let before = |id: String, limit| {
        let store = store.clone();
        let channel = general.id.clone();
        async move { store.messages_before(&channel, "", &id, limit).await.unwrap() }
    };
    assert_eq!(contents(&before(ids[4].clone(), 2).await), ["m3", "m4"]);
    assert_eq!(contents(&before(ids[2].clone(), 10).await), ["m1", "m2"]);
    assert!(before(ids[0].clone(), 10).await.is_empty());
    assert!(before("no-such-id".to_owned(), 10).await.is_empty(), "unknown id → []");
    assert!(store.messages_before(&dev.id, "", &ids[4], 10).await.unwrap().is_empty(), "id from another channel");

    let row = store.message_in(&general.id, "", &ids[2]).await.unwrap().expect("m3 is in general");
    assert_eq!(row.id, ids[2]);
    assert_eq!(row.channel_id, general.id);
    assert_eq!(row.thread_id, "");
    assert_eq!(row.user_id.as_deref(), Some(alice.id.as_str()));
    assert_eq!(row.author, "Alice");
    assert_eq!(row.content, "m3");
    assert_eq!(row.seq, 3);
    assert_eq!(row.created_at, stamps[2]);
    assert!(!row.edited && !row.pinned);
    assert_eq!((row.reply_to, row.reply_user, row.ping, row.extra), (None, None, None, None));
    assert_eq!(store.message_in(&dev.id, "", &ids[2]).await.unwrap(), None, "wrong channel");
    assert_eq!(store.message_in(&general.id, "some-thread", &ids[2]).await.unwrap(), None, "wrong thread");
    assert_eq!(store.message_in(&general.id, "", "no-such-id").await.unwrap(), None);

    assert_eq!(store.message_latest(&general.id, "").await.unwrap(), Some((ids[9].clone(), 10, stamps[9])));
    assert_eq!(store.message_latest(&dev.id, "").await.unwrap(), None);

    // A reply, a ping flag and extra JSON round-trip.
    let mut reply = message(&general, &alice, "re: m1");
    reply.reply_to = Some((ids[0].clone(), "Alice".to_owned()));
    reply.ping = Some(true);
    reply.extra = Some(json!({"embeds": [{"title": "t"}]}));
    let reply_id = reply.id.clone();
    let reply_at = reply.created_at;
    let outcome = append(&store, reply).await;
    let live = packet_of(&outcome);
    let row = store.message_in(&general.id, "", &reply_id).await.unwrap().expect("reply stored");
    assert_eq!(row.reply_to.as_deref(), Some(ids[0].as_str()));
    assert_eq!(row.reply_user.as_deref(), Some("Alice"));
    assert_eq!(row.ping, Some(true));
    let extra: Value = serde_json::from_str(row.extra.as_deref().expect("extra stored")).unwrap();
    assert_eq!(extra, json!({"embeds": [{"title": "t"}]}));
    assert_eq!(row.created_at, reply_at, "timestamps round-trip exactly");
    // History renders the same message object as the live packet (minus pings and nonce). The
    // timestamp is compared above: serde_json's default float parsing may be one ulp off.
    let mut live_message = live["message"].clone();
    live_message.as_object_mut().unwrap().remove("pings");
    live_message.as_object_mut().unwrap().remove("timestamp");
    let mut history_message = confab::wire::message(&row);
    history_message.remove("timestamp");
    assert_eq!(Value::Object(history_message), live_message);
    store.close().await;
}

async fn thread_messages_share_the_channel_counter(backend: Backend) {
    let Db { store, _dir, .. } = db(backend).await;
    let general = channel(&store, "news").await; // starts empty: `general` has the welcome
    let alice = user(&store, "Alice").await;
    let in_thread = |content: &str| {
        let mut m = message(&general, &alice, content);
        m.thread_id = Some("thread-1".to_owned());
        m
    };
    assert_eq!(new_seq(&append(&store, message(&general, &alice, "c1")).await), 1);
    let t1 = in_thread("t1");
    let t1_id = t1.id.clone();
    assert_eq!(new_seq(&append(&store, t1).await), 2);
    let t2 = in_thread("t2");
    let t2_id = t2.id.clone();
    let outcome = append(&store, t2).await;
    assert_eq!(new_seq(&outcome), 3);
    assert_eq!(packet_of(&outcome)["thread_id"], "thread-1");
    assert_eq!(store.channel_seq(&general.id).await.unwrap(), 3);

    assert_eq!(contents(&store.messages_page(&general.id, "", 0, 10).await.unwrap()), ["c1"]);
    assert_eq!(contents(&store.messages_page(&general.id, "thread-1", 0, 10).await.unwrap()), ["t1", "t2"]);
    assert_eq!(contents(&store.messages_before(&general.id, "thread-1", &t2_id, 10).await.unwrap()), ["t1"]);
    assert!(store.messages_before(&general.id, "", &t2_id, 10).await.unwrap().is_empty());
    assert_eq!(store.message_in(&general.id, "", &t1_id).await.unwrap(), None);
    assert_eq!(store.message_in(&general.id, "thread-1", &t1_id).await.unwrap().unwrap().content, "t1");
    assert_eq!(store.message_latest(&general.id, "thread-1").await.unwrap().map(|l| (l.0, l.1)), Some((t2_id, 3)));
    assert_eq!(store.message_latest(&general.id, "").await.unwrap().map(|l| l.1), Some(1));
    store.close().await;
}

async fn refresh_rotation_and_reuse(backend: Backend) {
    let Db { store, _dir, .. } = db(backend).await;
    let alice = user(&store, "Alice").await;
    let later = now() + 3600.0;
    let sid = store.session_create(&alice.id, "password", later).await.unwrap();
    assert_eq!(store.session_user(&sid).await.unwrap().as_deref(), Some(alice.id.as_str()));
    store.refresh_insert(&sid, "h1", later).await.unwrap();
    assert_eq!(store.session_of_refresh("h1").await.unwrap().as_deref(), Some(sid.as_str()));

    let rotated = Rotation::Rotated { session_id: sid.clone(), user_id: alice.id.clone() };
    assert_eq!(store.refresh_rotate("h1", "h2", later).await.unwrap(), rotated);
    assert_eq!(store.session_of_refresh("h2").await.unwrap().as_deref(), Some(sid.as_str()), "same family");
    assert_eq!(store.refresh_rotate("h2", "h3", later).await.unwrap(), rotated);
    assert_eq!(store.session_user(&sid).await.unwrap().as_deref(), Some(alice.id.as_str()));

    // Presenting a spent token revokes the whole family.
    assert_eq!(
        store.refresh_rotate("h1", "hx", later).await.unwrap(),
        Rotation::Reused { session_id: sid.clone(), user_id: alice.id.clone() }
    );
    assert_eq!(store.session_user(&sid).await.unwrap(), None);
    assert_eq!(store.refresh_rotate("h3", "h4", later).await.unwrap(), Rotation::Invalid, "family revoked");
    assert_eq!(store.session_of_refresh("hx").await.unwrap(), None, "nothing stored for the reused token");
    assert_eq!(store.refresh_rotate("unknown", "h5", later).await.unwrap(), Rotation::Invalid);

    // Another family of the same account is unaffected.
    let other = store.session_create(&alice.id, "password", later).await.unwrap();
    store.refresh_insert(&other, "o1", later).await.unwrap();
    assert_eq!(
        store.refresh_rotate("o1", "o2", later).await.unwrap(),
        Rotation::Rotated { session_id: other.clone(), user_id: alice.id.clone() }
    );
    assert_eq!(store.session_user(&other).await.unwrap().as_deref(), Some(alice.id.as_str()));
    store.close().await;
}

async fn expired_and_revoked_sessions(backend: Backend) {
    let Db { store, _dir, .. } = db(backend).await;
    let alice = user(&store, "Alice").await;
    let later = now() + 3600.0;

    // An expired token is invalid but does not revoke its family.
    let sid = store.session_create(&alice.id, "password", later).await.unwrap();
    store.refresh_insert(&sid, "expired", now() - 1.0).await.unwrap();
    assert_eq!(store.refresh_rotate("expired", "e2", later).await.unwrap(), Rotation::Invalid);
    assert_eq!(store.session_user(&sid).await.unwrap().as_deref(), Some(alice.id.as_str()));
    assert_eq!(store.session_of_refresh("e2").await.unwrap(), None);

    // An expired family: no user, and its live-looking tokens are invalid.
    let old = store.session_create(&alice.id, "password", now() - 1.0).await.unwrap();
    store.refresh_insert(&old, "in-old-family", later).await.unwrap();
    assert_eq!(store.session_user(&old).await.unwrap(), None);
    assert_eq!(store.refresh_rotate("in-old-family", "x", later).await.unwrap(), Rotation::Invalid);

    // Revocation.
    let sid2 = store.session_create(&alice.id, "password", later).await.unwrap();
    store.refresh_insert(&sid2, "r1", later).await.unwrap();
    store.session_revoke(&sid2).await.unwrap();
    assert_eq!(store.session_user(&sid2).await.unwrap(), None);
    assert_eq!(store.refresh_rotate("r1", "r2", later).await.unwrap(), Rotation::Invalid);
    assert_eq!(store.session_of_refresh("r1").await.unwrap().as_deref(), Some(sid2.as_str()), "whatever its state");
    assert_eq!(store.session_user(&sid).await.unwrap().as_deref(), Some(alice.id.as_str()), "others unaffected");
    assert_eq!(store.session_user("no-such-session").await.unwrap(), None);
    store.close().await;
}

async fn mark_read_upserts(backend: Backend) {
    let Db { store, location, _dir } = db(backend).await;
    let general = general_channel(&store).await;
    let alice = user(&store, "Alice").await;
    let bob = user(&store, "bob").await;
    store.mark_read(&alice.id, &general.id, "", Some("m1"), 1).await.unwrap();
    store.mark_read(&alice.id, &general.id, "", Some("m7"), 7).await.unwrap();
    store.mark_read(&alice.id, &general.id, "thread-1", None, 3).await.unwrap();
    store.mark_read(&bob.id, &general.id, "", Some("m2"), 2).await.unwrap();

    let raw = Raw::connect(&location).await;
    assert_eq!(
        raw.read_state(&alice.id).await,
        [
            (general.id.clone(), String::new(), Some("m7".to_owned()), 7),
            (general.id.clone(), "thread-1".to_owned(), None, 3),
        ]
    );
    assert_eq!(raw.read_state(&bob.id).await, [(general.id.clone(), String::new(), Some("m2".to_owned()), 2)]);
    raw.close().await;
    store.close().await;
}

async fn settings_get_and_replace(backend: Backend) {
    let Db { store, _dir, .. } = db(backend).await;
    assert_eq!(store.setting("server.name").await.unwrap(), None);
    store.set_setting("server.name", "Confab").await.unwrap();
    assert_eq!(store.setting("server.name").await.unwrap().as_deref(), Some("Confab"));
    store.set_setting("server.name", "Renamed").await.unwrap();
    assert_eq!(store.setting("server.name").await.unwrap().as_deref(), Some("Renamed"));
    store.set_setting("server.icon", "").await.unwrap();
    assert_eq!(store.setting("server.icon").await.unwrap().as_deref(), Some(""));
    assert_eq!(store.setting("server.name").await.unwrap().as_deref(), Some("Renamed"));
    store.close().await;
}

async fn acknowledged_writes_survive_reopen(backend: Backend) {
    let Db { store, location, _dir } = db(backend).await;
    let general = channel(&store, "news").await; // starts empty: `general` has the welcome
    let alice = user(&store, "Alice").await;
    store.set_setting("server.name", "Durable").await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (store, general, alice) = (store.clone(), general.clone(), alice.clone());
        tasks.push(tokio::spawn(async move {
            let m = with_nonce(message(&general, &alice, &format!("durable {i}")), &format!("nonce-{i}"));
            let id = m.id.clone();
            (id, new_seq(&append(&store, m).await))
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.push(t.await.expect("task"));
    }
    acked.sort_by_key(|a| a.1);
    store.close().await;
    drop(store);

    let store = open_location(&location).await;
    assert_eq!(store.channel_seq(&general.id).await.unwrap(), 20);
    let stored = store.messages_page(&general.id, "", 0, 100).await.unwrap();
    assert_eq!(stored.iter().map(|r| (r.id.clone(), r.seq)).collect::<Vec<_>>(), acked);
    assert_eq!(store.user_by_name("alice").await.unwrap().map(|u| u.id), Some(alice.id.clone()));
    assert_eq!(store.setting("server.name").await.unwrap().as_deref(), Some("Durable"));
    // Reopening bootstraps again without duplicating anything.
    assert_eq!(store.roles().await.unwrap().len(), 4);
    assert_eq!(store.channels().await.unwrap().len(), 2, "general and news");
    let welcome = store.messages_page(&general_channel(&store).await.id, "", 0, 10).await.unwrap();
    assert_eq!(contents(&welcome), [confab::store::bootstrap::WELCOME]);
    // The counter and the nonce window survive the restart.
    assert_eq!(new_seq(&append(&store, message(&general, &alice, "after restart")).await), 21);
    let repeat = with_nonce(message(&general, &alice, "durable 3"), "nonce-3");
    assert!(matches!(append(&store, repeat).await, Appended::Duplicate { .. }));
    store.close().await;
}

async fn append_after_close_fails(backend: Backend) {
    let Db { store, _dir, .. } = db(backend).await;
    let general = general_channel(&store).await;
    let alice = user(&store, "Alice").await;
    append(&store, message(&general, &alice, "before")).await;
    store.close().await;
    let after =
        tokio::time::timeout(WAIT, store.writer().append(message(&general, &alice, "after"), Box::new(|_, _| {})))
            .await
            .expect("an append after close must not hang");
    assert!(after.is_err(), "append after close: {after:?}");
}

/// Two nodes starting at once on a fresh database both start, and create one set of defaults.
async fn concurrent_first_bootstrap(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let location = fresh_location(backend, dir.path()).await;
    let metrics = Arc::new(confab::metrics::Metrics::default());
    let store = Store::open(&location, 4, 16, metrics).await.expect("open");
    let (a, b) = tokio::join!(store.bootstrap(SYSTEM), store.bootstrap(SYSTEM));
    a.expect("first bootstrap");
    b.expect("concurrent bootstrap");
    assert_eq!(store.roles().await.unwrap().len(), 4);
    let channels = store.channels().await.unwrap();
    assert_eq!(channels.len(), 1);
    // One welcome, whichever start posted it.
    let welcome = store.messages_page(&channels[0].id, "", 0, 10).await.unwrap();
    assert_eq!(contents(&welcome), [confab::store::bootstrap::WELCOME]);
    store.close().await;
}

/// Two stores on one PostgreSQL schema, as two nodes of a cluster have, each with its own writer
/// and metrics, and a raw connection to install slow triggers with.
struct TwoNodes {
    db: Db,
    other: Store,
    metrics: [Arc<confab::metrics::Metrics>; 2],
    raw: sqlx::PgPool,
}

async fn two_nodes() -> TwoNodes {
    let dir = tempfile::tempdir().expect("tempdir");
    let location = fresh_location(Backend::Postgres, dir.path()).await;
    let metrics = [Arc::new(confab::metrics::Metrics::default()), Arc::new(confab::metrics::Metrics::default())];
    let store = Store::open(&location, 4, 256, metrics[0].clone()).await.expect("open store");
    store.bootstrap(SYSTEM).await.expect("bootstrap");
    let other = Store::open(&location, 4, 256, metrics[1].clone()).await.expect("open second store");
    let Raw::Postgres(raw) = Raw::connect(&location).await else { unreachable!("a PostgreSQL location") };
    TwoNodes { db: Db { store, location, _dir: dir }, other, metrics, raw }
}

impl TwoNodes {
    /// Makes every statement of kind `event` on `table` sleep `seconds` once it has written (and
    /// locked) its rows, so that two writers' transactions overlap.
    async fn slow(&self, table: &str, event: &str, level: &str, seconds: f64) {
        for sql in [
            format!(
                "CREATE OR REPLACE FUNCTION slow_{table}() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN PERFORM pg_sleep({seconds}); RETURN NULL; END $$"
            ),
            format!(
                "CREATE TRIGGER slow_{table} AFTER {event} ON {table} FOR EACH {level} EXECUTE FUNCTION slow_{table}()"
            ),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&self.raw).await.expect("install trigger");
        }
    }

    /// Waits until `n` sessions of this database sleep in a trigger during a statement starting
    /// with `statement`.
    async fn until_sleeping(&self, statement: &str, n: i64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (sleeping,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event = 'PgSleep' AND query LIKE $1 || '%'",
            )
            .bind(statement)
            .fetch_one(&self.raw)
            .await
            .expect("pg_stat_activity");
            if sleeping >= n {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{n} sleeping `{statement}` never seen");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Counter `name` of node `i` (0 if never incremented).
    fn counter(&self, i: usize, name: &str) -> u64 {
        let text = self.metrics[i].render();
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0)
    }
}

/// A reaction by `user` on `message` in `channel`, as a channel event.
fn react(channel: &Channel, message: &str, user: &User) -> ChannelEvent {
    ChannelEvent {
        channel_id: channel.id.clone(),
        message_id: Some(message.to_owned()),
        kind: "reaction_add",
        step: Step::ReactAdd {
            message_id: message.to_owned(),
            emoji: "👍".into(),
            user_id: user.id.clone(),
            at: now(),
        },
        render: Box::new(|seq| json!({"cmd": "reaction_add", "seq": seq}).to_string()),
    }
}

/// One change for a writer: an append or a channel event.
enum Queued {
    Append(NewMessage),
    Event(ChannelEvent),
}

/// Queues `changes` on `store`'s writer one after another (each is in the queue before the next
/// is sent) and waits for all of them.
async fn queue_all(store: Store, changes: Vec<Queued>) -> Vec<Appended> {
    let writer = store.writer();
    let pending = changes.into_iter().map(|c| async move {
        match c {
            Queued::Append(m) => writer.append(m, Box::new(|_, _| {})).await,
            Queued::Event(e) => writer.event(e, Box::new(|_, _| {})).await,
        }
    });
    futures_util::future::join_all(pending).await.into_iter().map(|r| r.expect("change committed")).collect()
}

/// Two nodes' writers each commit one batch touching the same two channels, in opposite orders,
/// at the same moment (every seq reservation holds its row lock 0.3 s): they must lock the
/// channel rows in one order and wait for each other, never deadlock (scaleout.md §4.2). The
/// second round puts a channel event first in one batch: an event changes its row before it
/// takes its seq, so a batch with events locks its channels up front.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_lock_channels_in_one_order_postgres() {
    let nodes = two_nodes().await;
    let store = &nodes.db.store;
    let (a, b) = (channel(store, "a").await, channel(store, "b").await);
    let (p1, p2) = (channel(store, "p1").await, channel(store, "p2").await);
    let (u1, u2) = (user(store, "ann").await, user(store, "bob").await);
    let target = new_seq(&append(store, message(&a, &u1, "react to me")).await);
    assert_eq!(target, 1);
    let target_id = first_id(store, &a).await;
    nodes.slow("channels", "UPDATE", "ROW", 0.3).await;
    let rounds: [(Vec<Queued>, Vec<Queued>); 2] = [
        (
            vec![Queued::Append(message(&b, &u1, "1b")), Queued::Append(message(&a, &u1, "1a"))],
            vec![Queued::Append(message(&a, &u2, "2a")), Queued::Append(message(&b, &u2, "2b"))],
        ),
        (
            vec![Queued::Event(react(&a, &target_id, &u1)), Queued::Append(message(&b, &u1, "1b"))],
            vec![Queued::Append(message(&b, &u2, "2b")), Queued::Event(react(&a, &target_id, &u2))],
        ),
    ];
    let mut commits = [0, 1].map(|i| nodes.counter(i, "confab_db_commit_seconds_count"));
    for (first, second) in rounds {
        // Each writer is busy with a slow commit of its own while both batches queue behind it.
        let primers = [
            tokio::spawn(queue_all(nodes.db.store.clone(), vec![Queued::Append(message(&p1, &u1, "p"))])),
            tokio::spawn(queue_all(nodes.other.clone(), vec![Queued::Append(message(&p2, &u2, "p"))])),
        ];
        nodes.until_sleeping("UPDATE channels", 2).await;
        let batches = [
            tokio::spawn(queue_all(nodes.db.store.clone(), first)),
            tokio::spawn(queue_all(nodes.other.clone(), second)),
        ];
        for task in primers.into_iter().chain(batches) {
            for outcome in task.await.expect("task") {
                assert!(matches!(outcome, Appended::New { .. } | Appended::Event { .. }), "{outcome:?}");
            }
        }
        for (i, commits) in commits.iter_mut().enumerate() {
            *commits += 2;
            assert_eq!(nodes.counter(i, "confab_db_batch_retries_total"), 0, "node {i} retried a batch");
            // Primer and batch: two commits each, so each batch went in one transaction.
            assert_eq!(nodes.counter(i, "confab_db_commit_seconds_count"), *commits, "node {i} commits");
        }
    }
    // Every channel's seqs are 1..n without a hole.
    let (a_seq, b_seq) = (5, 4);
    for (c, last) in [(&a, a_seq), (&b, b_seq)] {
        let seqs: Vec<(i64,)> = sqlx::query_as("SELECT seq FROM events WHERE channel_id = $1 ORDER BY seq")
            .bind(&c.id)
            .fetch_all(&nodes.raw)
            .await
            .unwrap();
        assert_eq!(seqs.into_iter().map(|(s,)| s).collect::<Vec<_>>(), (1..=last).collect::<Vec<_>>(), "{}", c.name);
    }
    nodes.other.close().await;
}

/// Two nodes send one message with one nonce at the same moment: the first node's transaction
/// has written its nonce and not yet committed when the second reads the nonces. Exactly one
/// message is stored, and the second send answers `Duplicate` with the first one's packet
/// (scaleout.md §4.3, PROTOCOL §7.4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonce_raced_on_two_nodes_is_stored_once_postgres() {
    let nodes = two_nodes().await;
    let store = &nodes.db.store;
    let general = general_channel(store).await;
    let ann = user(store, "ann").await;
    nodes.slow("nonces", "INSERT", "STATEMENT", 0.5).await;
    let first = with_nonce(message(&general, &ann, "only once"), "n-race");
    let first_id = first.id.clone();
    let sent = tokio::spawn(queue_all(store.clone(), vec![Queued::Append(first)]));
    nodes.until_sleeping("INSERT INTO nonces", 1).await;
    let second = queue_all(
        nodes.other.clone(),
        vec![Queued::Append(with_nonce(message(&general, &ann, "only once"), "n-race"))],
    );
    let second = second.await.remove(0);
    let first = sent.await.expect("first send").remove(0);
    new_seq(&first);
    match &second {
        Appended::Duplicate { packet } => {
            let packet: Value = serde_json::from_str(packet).expect("packet");
            assert_eq!(packet["message"]["id"], first_id.as_str(), "{packet}");
        }
        other => panic!("the second send stored or failed: {other:?}"),
    }
    let (stored,): (i64,) = sqlx::query_as("SELECT count(*) FROM messages WHERE content = 'only once'")
        .fetch_one(&nodes.raw)
        .await
        .unwrap();
    assert_eq!(stored, 1);
    let (owner,): (String,) =
        sqlx::query_as("SELECT message_id FROM nonces WHERE nonce = 'n-race'").fetch_one(&nodes.raw).await.unwrap();
    assert_eq!(owner, first_id);
    nodes.other.close().await;
}

/// The cluster's control log: batches appended by two nodes at once get consecutive seqs each,
/// and the log has no hole and no seq twice; a reader after any seq gets the rest in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_log_batches_from_two_nodes_leave_no_hole_postgres() {
    let nodes = two_nodes().await;
    let batch = |node: &str, k: usize| (0..k).map(|i| format!("{node}-{i}")).collect::<Vec<String>>();
    let mut tasks = Vec::new();
    for (store, node) in [(nodes.db.store.clone(), "a"), (nodes.other.clone(), "b")] {
        tasks.push(tokio::spawn(async move {
            let mut firsts = Vec::new();
            for round in 1..=20 {
                firsts.push((
                    store.control_append(node, &batch(node, round % 4 + 1)).await.expect("append"),
                    round % 4 + 1,
                ));
            }
            firsts
        }));
    }
    let mut appended = 0;
    for task in tasks {
        for (first, len) in task.await.expect("appender") {
            appended += len;
            // Each batch is contiguous: its rows are one node's, in order.
            let rows = nodes.db.store.control_after(first - 1, len as i64).await.expect("read");
            let seqs: Vec<i64> = rows.iter().map(|(seq, _, _)| *seq).collect();
            assert_eq!(seqs, (first..first + len as i64).collect::<Vec<_>>());
            let bodies: Vec<&str> = rows.iter().map(|(_, _, body)| body.as_str()).collect();
            let node = &rows[0].1;
            assert_eq!(bodies, batch(node, len).iter().map(String::as_str).collect::<Vec<_>>());
        }
    }
    let all = nodes.db.store.control_after(0, 1000).await.expect("read all");
    let seqs: Vec<i64> = all.iter().map(|(seq, _, _)| *seq).collect();
    assert_eq!(seqs, (1..=appended as i64).collect::<Vec<_>>(), "no hole, nothing twice");
    assert_eq!(nodes.db.store.control_head().await.expect("head"), appended as i64);
}

/// Under writes that never pause, SQLite's WAL still starts over. The background checkpoint alone
/// never caught up with the writer, so the WAL grew for as long as the writes went on (70 MB a
/// second in the fan-out bench); the writer now finishes the checkpoint itself past a bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_starts_over_under_writes_that_never_pause() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    /// Enough single-message commits to write about 1 GiB of WAL frames (977 MiB of WAL when it
    /// never starts over), many times the bound.
    const MESSAGES: usize = 24_000;
    const SENDERS: usize = 32;
    let dir = tempfile::tempdir().expect("tempdir");
    let location = fresh_location(Backend::Sqlite, dir.path()).await;
    // One message per commit: the most WAL pages per message, and commits back to back.
    let options = confab::config::StoreConfig { batch_max: 1, ..Default::default() };
    let store =
        Store::open_with(&location, &options, Arc::new(confab::metrics::Metrics::default())).await.expect("open store");
    store.bootstrap(SYSTEM).await.expect("bootstrap");
    let channel = general_channel(&store).await;
    let author = user(&store, "writer").await;
    let sent = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let (store, channel, author, sent) = (store.clone(), channel.clone(), author.clone(), sent.clone());
        senders.push(tokio::spawn(async move {
            while sent.fetch_add(1, Ordering::Relaxed) < MESSAGES {
                append(&store, message(&channel, &author, "keep going")).await;
            }
        }));
    }
    // The WAL's size, sampled while the writes go on.
    let wal = dir.path().join("confab.db-wal");
    let watcher = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut largest = 0;
            while !done.load(Ordering::Relaxed) {
                largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            largest
        })
    };
    for s in senders {
        s.await.expect("sender");
    }
    done.store(true, Ordering::Relaxed);
    let largest = watcher.await.expect("watcher");
    // The bound is 16 384 pages of 4 KiB (64 MiB); allow as much again for the frames that arrive
    // while the checkpoint that starts the WAL over runs.
    assert!(largest < 128 << 20, "the WAL reached {} MiB", largest >> 20);
    store.close().await;
}
