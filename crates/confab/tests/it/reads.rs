//! Indexed reads (PROTOCOL §6.1 `messages_search` and `pings_get`, §6.7 unreads, §6.9 server
//! identity), on SQLite and PostgreSQL: success shapes, every error text, visibility filtering,
//! threads, and counts that stay right across deletions. `perf_reads_scale` (ignored) measures
//! that these reads cost the same on a channel of a million messages as on one of a thousand.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use confab::store::{
    Store,
    audit::AuditFilter,
    writer::{NewMessage, Pinged},
};
use confab::{config::StoreConfig, metrics::Metrics};
use serde_json::{Value, json};

use crate::{
    channels::open,
    support::{Backend, Client, TestServer, fresh_location, open_location, postgres_url},
};

/// A server whose rate limits are off: these tests make many `reads` requests.
async fn spawn(backend: Backend) -> TestServer {
    TestServer::spawn_with(backend, |c| c.rate_limits.enabled = false).await
}

/// Sends `content` to `target` (`{"channel"}` or `{"thread_id"}` plus extras) and returns the
/// stored message.
async fn send(c: &mut Client, target: Value, content: &str) -> Value {
    let mut frame = target;
    frame["cmd"] = json!("message_new");
    frame["content"] = json!(content);
    let echo = c.request(frame).await;
    assert_eq!(echo["cmd"], "message_new", "{echo}");
    echo["message"].clone()
}

fn general() -> Value {
    json!({"channel": "general"})
}

/// Creates channel `name` of `kind` as the owner `admin`; `permissions` `None` keeps the owner-only
/// defaults.
async fn channel(admin: &mut Client, name: &str, kind: &str, permissions: Option<Value>) {
    let mut frame = json!({"cmd": "channel_create", "name": name, "type": kind});
    if let Some(p) = permissions {
        frame["permissions"] = p;
    }
    let r = admin.request(frame).await;
    assert_eq!(r["cmd"], "channel_create", "{r}");
}

/// Creates a thread in forum `channel` and returns its id.
async fn thread(c: &mut Client, channel: &str, name: &str) -> Value {
    let r = c.request(json!({"cmd": "thread_create", "channel": channel, "name": name})).await;
    assert_eq!(r["cmd"], "thread_create", "{r}");
    r["thread"]["id"].clone()
}

/// Asserts that `frame` is refused with `text` and `code`.
async fn refused(c: &mut Client, frame: Value, text: &str, code: &str) {
    let r = c.request(frame.clone()).await;
    assert_eq!(r["cmd"], "error", "{frame} → {r}");
    assert_eq!(r["val"], text, "{frame}");
    assert_eq!(r["code"], code, "{frame}");
    assert_eq!(r["src"], frame["cmd"], "{frame}");
}

fn ids(list: &Value) -> Vec<Value> {
    list.as_array().unwrap().iter().map(|m| m["id"].clone()).collect()
}

// ---------------------------------------------------------------------------------------------
// Unreads (PROTOCOL §6.7)

async fn unreads_scenario(backend: Backend) {
    let server = spawn(backend).await;
    let mut admin = server.member("root", &["owner"]).await;
    let mut alice = server.register("alice").await;
    let mut bob = server.register("bob").await;
    let mut bob2 = server.login("bob", "correct horse").await;

    let m1 = send(&mut alice, general(), "one").await;
    let m2 = send(&mut alice, general(), "two").await;
    let m3 = send(&mut alice, general(), "three").await;

    // `general` also holds the first start's welcome, unread like any message.
    let count = json!({"cmd": "unreads_count", "channel": "general"});
    let r = bob.request(count.clone()).await;
    assert_eq!(
        r,
        json!({"cmd": "unreads_count", "channel": "general", "unread_count": 4, "last_read": null,
               "total_messages": 4, "mention_count": 0, "listener": r["listener"]})
    );
    let all = bob.request(json!({"cmd": "unreads_get"})).await;
    assert_eq!(
        all["unreads"],
        json!({"general": {"last_read": null, "unread_count": 4, "total_messages": 4, "mention_count": 0}})
    );

    // Ack an older message: the reply, and unreads_update on every connection of the account.
    let r = bob.request(json!({"cmd": "unreads_ack", "channel": "general", "message_id": m1["id"]})).await;
    assert_eq!(
        r,
        json!({"cmd": "unreads_ack", "channel": "general", "last_read": m1["id"], "listener": r["listener"]})
    );
    let update = bob2.recv_cmd("unreads_update").await;
    assert_eq!(update, json!({"cmd": "unreads_update", "channel": "general", "last_read": m1["id"]}));
    assert_eq!(bob.recv_cmd("unreads_update").await, update);
    let r = bob.request(count.clone()).await;
    assert_eq!((r["unread_count"].clone(), r["last_read"].clone()), (json!(2), m1["id"].clone()));

    // Deleting the last-read message keeps the count right: it counts messages after its seq.
    let r = alice.request(json!({"cmd": "message_delete", "channel": "general", "id": m1["id"]})).await;
    assert_eq!(r["cmd"], "message_delete", "{r}");
    let r = bob.request(count.clone()).await;
    assert_eq!((r["unread_count"].clone(), r["total_messages"].clone()), (json!(2), json!(3)));
    assert_eq!(r["last_read"], m1["id"]);

    // Without message_id: the newest message; then back to an older one (mark as unread).
    let r = bob.request(json!({"cmd": "unreads_ack", "channel": "general"})).await;
    assert_eq!(r["last_read"], m3["id"]);
    assert_eq!(bob.request(count.clone()).await["unread_count"], 0);
    bob.request(json!({"cmd": "unreads_ack", "channel": "general", "message_id": m2["id"]})).await;
    assert_eq!(bob.request(count.clone()).await["unread_count"], 1);
    // A new message after the read position counts; deleting an unread one uncounts it.
    let m4 = send(&mut alice, general(), "four").await;
    let r = bob.request(count.clone()).await;
    assert_eq!((r["unread_count"].clone(), r["total_messages"].clone()), (json!(2), json!(4)));
    alice.request(json!({"cmd": "message_delete", "channel": "general", "id": m4["id"]})).await;
    let r = bob.request(count.clone()).await;
    assert_eq!((r["unread_count"].clone(), r["total_messages"].clone()), (json!(1), json!(3)));
    // messages_get from the start marks everything read.
    bob.request(json!({"cmd": "messages_get", "channel": "general"})).await;
    assert_eq!(bob.request(count.clone()).await["unread_count"], 0);

    // An empty channel: last_read null and no unreads_update (the next update bob2 sees is for
    // the ack that follows).
    channel(&mut admin, "empty", "text", Some(open())).await;
    let r = bob.request(json!({"cmd": "unreads_ack", "channel": "empty"})).await;
    assert_eq!(r, json!({"cmd": "unreads_ack", "channel": "empty", "last_read": null, "listener": r["listener"]}));
    let marker = send(&mut alice, general(), "marker").await;
    bob.request(json!({"cmd": "unreads_ack", "channel": "general", "message_id": m2["id"]})).await;
    bob.request(json!({"cmd": "unreads_ack", "channel": "general", "message_id": marker["id"]})).await;
    loop {
        let update = bob2.recv_cmd("unreads_update").await;
        assert_eq!(update["channel"], "general", "{update}");
        if update["last_read"] == marker["id"] {
            break;
        }
    }
    bob.request(json!({"cmd": "unreads_ack", "channel": "general", "message_id": m2["id"]})).await;
    assert_eq!(bob2.recv_cmd("unreads_update").await["last_read"], m2["id"]);

    // Threads of a viewable forum channel; hidden channels and threads never show up.
    channel(&mut admin, "forum", "forum", Some(open())).await;
    channel(&mut admin, "secret", "text", None).await;
    channel(&mut admin, "vault", "forum", None).await;
    let tid = thread(&mut alice, "forum", "t").await;
    let t1 = send(&mut alice, json!({"thread_id": tid}), "in thread").await;
    send(&mut alice, json!({"thread_id": tid}), "again").await;
    send(&mut admin, json!({"channel": "secret"}), "hidden").await;
    let hidden = thread(&mut admin, "vault", "v").await;
    send(&mut admin, json!({"thread_id": hidden}), "hidden too").await;

    let all = bob.request(json!({"cmd": "unreads_get"})).await;
    let key = format!("thread/{}", tid.as_str().unwrap());
    assert_eq!(
        all["unreads"],
        json!({
            "general": {"last_read": m2["id"], "unread_count": 2, "total_messages": 4, "mention_count": 0},
            "empty": {"last_read": null, "unread_count": 0, "total_messages": 0, "mention_count": 0},
            key.clone(): {"last_read": null, "unread_count": 2, "total_messages": 2, "mention_count": 0,
                          "parent_channel": "forum"},
        })
    );
    let admin_view = admin.request(json!({"cmd": "unreads_get"})).await;
    assert_eq!(admin_view["unreads"]["secret"]["total_messages"], 1, "{admin_view}");
    assert!(admin_view["unreads"].get(format!("thread/{}", hidden.as_str().unwrap())).is_some());

    let r = bob.request(json!({"cmd": "unreads_ack", "thread_id": tid, "message_id": t1["id"]})).await;
    assert_eq!(r, json!({"cmd": "unreads_ack", "thread_id": tid, "last_read": t1["id"], "listener": r["listener"]}));
    assert_eq!(
        bob2.recv_cmd("unreads_update").await,
        json!({"cmd": "unreads_update", "thread_id": tid, "last_read": t1["id"]})
    );
    let r = bob.request(json!({"cmd": "unreads_count", "thread_id": tid, "channel": "general"})).await;
    assert_eq!(
        r,
        json!({"cmd": "unreads_count", "thread_id": tid, "unread_count": 1, "last_read": t1["id"],
               "total_messages": 2, "mention_count": 0, "listener": r["listener"]})
    );
    // Reading the thread with messages_get marks it read.
    bob.request(json!({"cmd": "messages_get", "thread_id": tid})).await;
    assert_eq!(bob.request(json!({"cmd": "unreads_count", "thread_id": tid})).await["unread_count"], 0);

    // Errors, for both commands.
    for cmd in ["unreads_ack", "unreads_count"] {
        refused(&mut bob, json!({"cmd": cmd}), "Channel or thread_id is required", "bad_request").await;
        refused(&mut bob, json!({"cmd": cmd, "channel": "nope"}), "Channel not found", "not_found").await;
        refused(&mut bob, json!({"cmd": cmd, "channel": "secret"}), "Access denied to this channel", "forbidden").await;
        refused(&mut bob, json!({"cmd": cmd, "channel": "forum"}), "Access denied to this channel", "forbidden").await;
        refused(&mut bob, json!({"cmd": cmd, "thread_id": "nope"}), "Thread not found", "not_found").await;
        let text = "You do not have permission to view this thread";
        refused(&mut bob, json!({"cmd": cmd, "thread_id": hidden}), text, "forbidden").await;
    }
    let ack = |id: &Value| json!({"cmd": "unreads_ack", "channel": "general", "message_id": id});
    refused(&mut bob, ack(&json!("nope")), "Message not found", "not_found").await;
    refused(&mut bob, ack(&m1["id"]), "Message not found", "not_found").await;
    refused(&mut bob, ack(&t1["id"]), "Message not found", "not_found").await;
    server.stop().await;
}

on_both! { unreads_scenario => unreads_sqlite, unreads_postgres; }

/// [ext] `mention_count`: unread messages that ping the account as `pings_get` counts them — a
/// mention, a mention of a role it holds, a reply to it — counted once each, never its own; reading
/// the channel resets it.
async fn unread_mentions_scenario(backend: Backend) {
    let server = spawn(backend).await;
    let mut admin = server.member("root", &["owner"]).await;
    let mut alice = server.register("alice").await;
    let r = admin.request(json!({"cmd": "role_create", "name": "crew"})).await;
    assert_eq!(r["cmd"], "role_create", "{r}");
    let mut bob = server.member("bob", &["user", "crew"]).await;
    channel(&mut admin, "forum", "forum", Some(open())).await;
    let tid = thread(&mut alice, "forum", "t").await;

    let question = send(&mut bob, general(), "a question").await;
    bob.request(json!({"cmd": "unreads_ack", "channel": "general"})).await;
    let mentions = |r: &Value, key: &str| r["unreads"][key]["mention_count"].clone();
    let all = bob.request(json!({"cmd": "unreads_get"})).await;
    assert_eq!(mentions(&all, "general"), 0, "{all}");

    send(&mut alice, general(), "hi @bob").await;
    send(&mut alice, general(), "@&crew meeting").await;
    send(&mut alice, json!({"channel": "general", "reply_to": question["id"]}), "answer, @bob").await;
    send(&mut alice, json!({"channel": "general", "reply_to": question["id"], "ping": false}), "quiet").await;
    send(&mut alice, general(), "@alice not bob").await;
    send(&mut bob, general(), "@bob talking to myself").await;
    send(&mut alice, json!({"thread_id": tid}), "in the thread, @bob").await;

    let all = bob.request(json!({"cmd": "unreads_get"})).await;
    assert_eq!(mentions(&all, "general"), 3, "{all}");
    assert_eq!(mentions(&all, &format!("thread/{}", tid.as_str().unwrap())), 1, "{all}");
    let count = json!({"cmd": "unreads_count", "channel": "general"});
    assert_eq!(bob.request(count.clone()).await["mention_count"], 3);
    // The same definition as pings_get: every ping counted here is a ping there.
    assert_eq!(bob.request(json!({"cmd": "pings_get"})).await["total"], 4);

    // Reading the channel resets it; a later mention counts again.
    bob.request(json!({"cmd": "messages_get", "channel": "general"})).await;
    assert_eq!(bob.request(count.clone()).await["mention_count"], 0);
    send(&mut alice, general(), "@bob again").await;
    assert_eq!(bob.request(count.clone()).await["mention_count"], 1);
    bob.request(json!({"cmd": "unreads_ack", "channel": "general"})).await;
    assert_eq!(bob.request(json!({"cmd": "unreads_get"})).await["unreads"]["general"]["mention_count"], 0);
    server.stop().await;
}

on_both! { unread_mentions_scenario => unread_mentions_sqlite, unread_mentions_postgres; }

// ---------------------------------------------------------------------------------------------
// Pings (PROTOCOL §6.1 `pings_get`)

async fn pings_scenario(backend: Backend) {
    let server = spawn(backend).await;
    let mut admin = server.member("root", &["owner"]).await;
    let mut alice = server.register("alice").await;
    let mut bob = server.register("bob").await;
    let mut carol = server.register("carol").await;
    channel(&mut admin, "forum", "forum", Some(open())).await;
    channel(&mut admin, "secret", "text", None).await;
    let tid = thread(&mut alice, "forum", "t").await;

    let question = send(&mut bob, general(), "a question").await;
    let p1 = send(&mut alice, general(), "hi @bob").await;
    let p2 = send(&mut alice, general(), "@&user everyone").await;
    let reply = json!({"channel": "general", "reply_to": question["id"]});
    let p3 = send(&mut alice, reply.clone(), "answer, @bob").await;
    let mut quiet = reply;
    quiet["ping"] = json!(false);
    send(&mut alice, quiet, "no ping").await;
    send(&mut bob, general(), "@bob talking to myself").await;
    let p4 = send(&mut alice, json!({"thread_id": tid}), "hello @BOB").await;
    send(&mut admin, json!({"channel": "secret"}), "@bob cannot see this").await;
    let plain = send(&mut alice, general(), "@nobody plain").await;

    let r = bob.request(json!({"cmd": "pings_get"})).await;
    assert_eq!(r["cmd"], "pings_get", "{r}");
    assert_eq!((r["total"].clone(), r["offset"].clone(), r["limit"].clone()), (json!(4), json!(0), json!(50)));
    assert_eq!(ids(&r["messages"]), [&p4, &p3, &p2, &p1].map(|m| m["id"].clone()));
    let first = &r["messages"][0];
    assert_eq!((first["channel"].clone(), first["thread_id"].clone()), (json!("forum"), tid.clone()));
    assert_eq!(first["content"], "hello @BOB");
    assert_eq!(r["messages"][1]["reply_to"]["id"], question["id"]);
    assert_eq!(r["messages"][3]["channel"], "general");
    assert!(r["messages"][3].get("thread_id").is_none(), "{r}");

    let r = bob.request(json!({"cmd": "pings_get", "limit": 2, "offset": 1})).await;
    assert_eq!(ids(&r["messages"]), [&p3, &p2].map(|m| m["id"].clone()));
    assert_eq!((r["total"].clone(), r["offset"].clone(), r["limit"].clone()), (json!(4), json!(1), json!(2)));
    let r = bob.request(json!({"cmd": "pings_get", "offset": 10})).await;
    assert_eq!((r["messages"].clone(), r["total"].clone()), (json!([]), json!(4)));
    // The role ping reaches every holder of the role (the owner here holds only `owner`); her own
    // messages never ping Alice.
    let r = carol.request(json!({"cmd": "pings_get"})).await;
    assert_eq!(ids(&r["messages"]), [p2["id"].clone()], "{r}");
    assert_eq!(admin.request(json!({"cmd": "pings_get"})).await["total"], 0);
    assert_eq!(alice.request(json!({"cmd": "pings_get"})).await["total"], 0);

    // Edits change who is pinged; deletions remove the ping.
    let edit = |m: &Value, content: &str| json!({"cmd": "message_edit", "channel": "general", "id": m["id"], "content": content});
    assert_eq!(alice.request(edit(&p1, "hi all")).await["cmd"], "message_edit");
    assert_eq!(alice.request(edit(&plain, "now @bob")).await["cmd"], "message_edit");
    assert_eq!(alice.request(edit(&p3, "answer")).await["cmd"], "message_edit");
    let r = alice.request(json!({"cmd": "message_delete", "channel": "general", "id": p2["id"]})).await;
    assert_eq!(r["cmd"], "message_delete");
    let r = bob.request(json!({"cmd": "pings_get"})).await;
    // p3 still replies to Bob; `plain` now mentions him (its time is its creation time).
    assert_eq!(ids(&r["messages"]), [&plain, &p4, &p3].map(|m| m["id"].clone()));
    assert_eq!(r["total"], 3);
    // Deleting the thread removes its pings.
    let r = admin.request(json!({"cmd": "thread_delete", "thread_id": tid})).await;
    assert_eq!(r["cmd"], "thread_delete", "{r}");
    assert_eq!(bob.request(json!({"cmd": "pings_get"})).await["total"], 2);

    for limit in [json!(0), json!(101), json!("5"), json!(2.5)] {
        let text = "Limit must be a number between 1 and 100";
        refused(&mut bob, json!({"cmd": "pings_get", "limit": limit}), text, "bad_request").await;
    }
    for offset in [json!(-1), json!("1"), json!(0.5)] {
        let text = "Offset must be a non-negative number";
        refused(&mut bob, json!({"cmd": "pings_get", "offset": offset}), text, "bad_request").await;
    }
    server.stop().await;
}

on_both! { pings_scenario => pings_sqlite, pings_postgres; }

// ---------------------------------------------------------------------------------------------
// Search (PROTOCOL §6.1 `messages_search`)

async fn search(c: &mut Client, query: &str) -> Vec<String> {
    let r = c.request(json!({"cmd": "messages_search", "channel": "general", "query": query})).await;
    assert_eq!(r["cmd"], "messages_search", "{query:?} → {r}");
    assert_eq!((r["channel"].as_str(), r["query"].as_str()), (Some("general"), Some(query)));
    r["results"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap().to_owned()).collect()
}

async fn search_scenario(backend: Backend) {
    let server = TestServer::spawn_with(backend, |c| {
        c.rate_limits.enabled = false;
        c.limits.search_results = 3;
    })
    .await;
    let mut admin = server.member("root", &["owner"]).await;
    let mut alice = server.register("alice").await;
    channel(&mut admin, "forum", "forum", Some(open())).await;
    channel(&mut admin, "secret", "text", None).await;
    let tid = thread(&mut alice, "forum", "t").await;
    send(&mut alice, json!({"thread_id": tid}), "hello from a thread").await;
    send(&mut admin, json!({"channel": "secret"}), "hello secret").await;

    let s1 = send(&mut alice, general(), "Hello World").await;
    let s2 = send(&mut alice, general(), "say HELLO again").await;
    for content in ["50% off_sale today", "under_score and more", "naïve café ÉCOLE", "ab", r#"she said "yes" OR no"#]
    {
        send(&mut alice, general(), content).await;
    }

    assert_eq!(search(&mut alice, "hello").await, ["say HELLO again", "Hello World"]);
    assert_eq!(search(&mut alice, "HELLO wor").await, ["Hello World"]);
    // LIKE wildcards and FTS syntax in the query match literally.
    assert_eq!(search(&mut alice, "%").await, ["50% off_sale today"]);
    assert_eq!(search(&mut alice, "0% o").await, ["50% off_sale today"]);
    assert_eq!(search(&mut alice, "_").await, ["under_score and more", "50% off_sale today"]);
    assert_eq!(search(&mut alice, "f_s").await, ["50% off_sale today"]);
    assert!(search(&mut alice, "o%e").await.is_empty());
    assert_eq!(search(&mut alice, r#""yes" OR"#).await, [r#"she said "yes" OR no"#]);
    assert!(search(&mut alice, "yes OR she").await.is_empty());
    assert!(search(&mut alice, "zzz").await.is_empty());
    // Case folding beyond ASCII, and queries too short for a trigram index.
    assert_eq!(search(&mut alice, "école").await, ["naïve café ÉCOLE"]);
    assert_eq!(search(&mut alice, "NAÏVE").await, ["naïve café ÉCOLE"]);
    assert_eq!(search(&mut alice, "Ab").await, ["ab"]);
    assert_eq!(search(&mut alice, "é").await, ["naïve café ÉCOLE"]);
    // At most limits.search_results, newest first.
    for i in 0..5 {
        send(&mut alice, general(), &format!("repeat {i}")).await;
    }
    assert_eq!(search(&mut alice, "repeat").await, ["repeat 4", "repeat 3", "repeat 2"]);
    assert_eq!(search(&mut alice, "re").await.len(), 3);

    // The index follows edits and deletions.
    let edit = json!({"cmd": "message_edit", "channel": "general", "id": s1["id"], "content": "Goodbye World"});
    assert_eq!(alice.request(edit).await["cmd"], "message_edit");
    assert_eq!(search(&mut alice, "hello").await, ["say HELLO again"]);
    assert_eq!(search(&mut alice, "goodbye").await, ["Goodbye World"]);
    alice.request(json!({"cmd": "message_delete", "channel": "general", "id": s2["id"]})).await;
    assert!(search(&mut alice, "hello").await.is_empty());

    let required = "Channel name and query are required";
    refused(&mut alice, json!({"cmd": "messages_search", "channel": "general"}), required, "bad_request").await;
    refused(&mut alice, json!({"cmd": "messages_search", "query": "x"}), required, "bad_request").await;
    let empty = json!({"cmd": "messages_search", "channel": "general", "query": ""});
    refused(&mut alice, empty, required, "bad_request").await;
    let long = json!({"cmd": "messages_search", "channel": "general", "query": "é".repeat(201)});
    refused(&mut alice, long, "Query too long (max 200 characters)", "too_long").await;
    let ok = alice.request(json!({"cmd": "messages_search", "channel": "general", "query": "é".repeat(200)})).await;
    assert_eq!(ok["results"], json!([]));
    let query = |channel: &str| json!({"cmd": "messages_search", "channel": channel, "query": "hello"});
    refused(&mut alice, query("nope"), "Channel not found", "not_found").await;
    refused(&mut alice, query("secret"), "Access denied to this channel", "forbidden").await;
    refused(&mut alice, query("forum"), "Access denied to this channel", "forbidden").await;
    let r = admin.request(query("secret")).await;
    assert_eq!(r["results"][0]["content"], "hello secret");
    server.stop().await;
}

on_both! { search_scenario => search_sqlite, search_postgres; }

/// Hits older than the newest `SCAN_WINDOW` messages are found through the trigram index, with the
/// same case folding and literal matching; queries too short for it only search the window.
async fn search_beyond_window(backend: Backend) {
    let server = spawn(backend).await;
    let mut alice = server.register("alice").await;
    let old = ["Needle in ÉCOLE", "needle: 50% off_sale", r#"needle "yes" OR no"#, "ß!"];
    for content in old {
        send(&mut alice, general(), content).await;
    }
    let window = usize::try_from(confab::store::search::SCAN_WINDOW).unwrap();
    let filler = (0..window + 10).map(|i| (format!("filler {i}"), Pinged::default()));
    append_many(&server.store, "general", "alice", filler).await;
    send(&mut alice, general(), "a newer needle").await;

    assert_eq!(
        search(&mut alice, "NEEDLE").await,
        ["a newer needle", r#"needle "yes" OR no"#, "needle: 50% off_sale", "Needle in ÉCOLE"]
    );
    assert_eq!(search(&mut alice, "école").await, ["Needle in ÉCOLE"]);
    assert_eq!(search(&mut alice, "0% o").await, ["needle: 50% off_sale"]);
    assert_eq!(search(&mut alice, "f_s").await, ["needle: 50% off_sale"]);
    assert!(search(&mut alice, "f%s").await.is_empty());
    assert_eq!(search(&mut alice, r#""yes" OR"#).await, [r#"needle "yes" OR no"#]);
    assert!(search(&mut alice, "needle OR").await.is_empty());
    // A common term fills the page from the window alone; a short one never looks further.
    assert_eq!(search(&mut alice, "filler").await.len(), 30);
    assert!(search(&mut alice, "ß!").await.is_empty());
    server.stop().await;
}

on_both! { search_beyond_window => search_beyond_window_sqlite, search_beyond_window_postgres; }

/// A SQLite database that predates the full-text index gets it, filled, at the next start.
#[tokio::test]
async fn search_index_is_built_for_existing_messages() {
    let server = spawn(Backend::Sqlite).await;
    let mut alice = server.register("alice").await;
    send(&mut alice, general(), "written before the index").await;
    let file = server.config.data_dir.join("confab.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", file.display())).await.unwrap();
    for drop in ["TRIGGER messages_fts_insert", "TRIGGER messages_fts_delete", "TRIGGER messages_fts_update"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP {drop}"))).execute(&pool).await.unwrap();
    }
    sqlx::query("DROP TABLE messages_fts").execute(&pool).await.unwrap();
    pool.close().await;
    let server = server.restart().await;
    let mut alice = server.login("alice", "correct horse").await;
    assert_eq!(search(&mut alice, "before the").await, ["written before the index"]);
    send(&mut alice, general(), "and after it").await;
    assert_eq!(search(&mut alice, "after it").await, ["and after it"]);
    server.stop().await;
}

/// A database whose insert trigger indexed every message in its own transaction (as Confab did
/// before the search queue) keeps its index and moves to the queue when opened.
#[tokio::test]
async fn search_index_of_an_older_database_moves_to_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let location = fresh_location(Backend::Sqlite, dir.path()).await;
    let store = open_location(&location).await;
    let user = confab::store::users::NewUser {
        username: "old",
        kind: confab::store::users::AccountKind::Local,
        password_hash: None,
        role_ids: Vec::new(),
    };
    store.user_create(user).await.unwrap();
    // More than a search reads directly, so that the index answers.
    let messages = std::iter::once(("from the old days".to_owned(), Pinged::default()))
        .chain((0..600).map(|i| (format!("filler {i}"), Pinged::default())));
    append_many(&store, "general", "old", messages).await;
    store.close().await;
    let confab::store::Location::SqliteFile(file) = &location else { unreachable!() };
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", file.display())).await.unwrap();
    for statement in [
        "DROP TRIGGER messages_fts_insert",
        "DROP TRIGGER messages_fts_delete",
        "DROP TRIGGER messages_fts_update",
        "DROP TABLE messages_fts_pending",
        "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN \
         INSERT INTO messages_fts (rowid, content) VALUES (new.rowid, new.content); END",
        "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN \
         INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.rowid, old.content); END",
        "INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')",
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    pool.close().await;

    // Indexing only in steps of 256, so that a new message stays queued.
    let options = StoreConfig { search_index_idle_ms: 3_600_000, ..Default::default() };
    let store = Store::open_with(&location, &options, Arc::new(Metrics::default())).await.unwrap();
    assert_eq!(store.search_backlog().await.unwrap(), 0, "the old index was complete");
    let general = store.channels().await.unwrap().into_iter().find(|c| c.name == "general").unwrap();
    let found =
        |rows: Vec<confab::store::messages::MessageRow>| rows.into_iter().map(|r| r.content).collect::<Vec<_>>();
    let old = store.messages_search(&general.id, "", "old days", 30).await.unwrap();
    assert_eq!(found(old), ["from the old days"]);
    let new = std::iter::once(("new days ahead".to_owned(), Pinged::default()));
    append_many(&store, "general", "old", new).await;
    assert_eq!(store.search_backlog().await.unwrap(), 1, "a new message waits in the queue");
    let days = store.messages_search(&general.id, "", "days", 30).await.unwrap();
    assert_eq!(found(days), ["new days ahead", "from the old days"]);
    store.close().await;
}

/// PostgreSQL gets a pg_trgm GIN index on the message content, and opening again is harmless.
#[tokio::test]
async fn search_index_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let location = fresh_location(Backend::Postgres, dir.path()).await;
    let store = open_location(&location).await;
    store.close().await;
    let store = open_location(&location).await;
    store.close().await;
    let confab::store::Location::Postgres { schema: Some(schema), .. } = &location else { unreachable!() };
    let pool = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
    let (def,): (String,) =
        sqlx::query_as("SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = 'messages_content_trgm'")
            .bind(schema)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(def.contains("gin") && def.contains("gin_trgm_ops"), "{def}");
    pool.close().await;
}

// ---------------------------------------------------------------------------------------------
// Server identity (PROTOCOL §6.9)

#[tokio::test]
async fn server_info_and_update() {
    let server = spawn(Backend::Sqlite).await;
    let mut admin = server.member("root", &["owner"]).await;
    let mut bob = server.register("bob").await;
    let default_name = server.config.server.name.clone();

    let r = bob.request(json!({"cmd": "server_info"})).await;
    assert_eq!(
        r,
        json!({"cmd": "server_info", "name": default_name, "icon": server.config.server.icon,
               "banner": server.config.server.banner, "listener": r["listener"]})
    );
    let denied = "Access denied: 'manage_server' permission required";
    refused(&mut bob, json!({"cmd": "server_update", "name": "x"}), denied, "forbidden").await;

    let errors = [
        (json!({}), "No updates provided"),
        (json!({"name": 5}), "Name must be a string or null"),
        (json!({"icon": true}), "Icon must be a string or null"),
        (json!({"banner": []}), "Banner must be a string or null"),
        (json!({"name": "  "}), "Name must be 1-100 characters"),
        (json!({"name": "n".repeat(101)}), "Name must be 1-100 characters"),
        (json!({"icon": "ftp://example.com/i.png"}), "Invalid URL format"),
        (json!({"icon": "not a url"}), "Invalid URL format"),
        (json!({"banner": format!("https://example.com/{}", "b".repeat(481))}), "Invalid URL format"),
    ];
    for (mut frame, text) in errors {
        frame["cmd"] = json!("server_update");
        refused(&mut admin, frame, text, "bad_request").await;
    }

    let update = json!({"cmd": "server_update", "name": "Confab Test", "icon": "https://example.com/i.png",
                        "banner": format!("https://example.com/{}", "b".repeat(480))});
    let r = admin.request(update.clone()).await;
    let banner = update["banner"].clone();
    assert_eq!(
        r,
        json!({"cmd": "server_update", "name": "Confab Test", "icon": "https://example.com/i.png",
               "banner": banner, "global": true, "listener": r["listener"]})
    );
    let copy = bob.recv_cmd("server_update").await;
    assert_eq!(
        copy,
        json!({"cmd": "server_update", "name": "Confab Test", "icon": "https://example.com/i.png",
               "banner": banner, "global": true})
    );
    // New handshakes see it at once.
    let fresh = server.connect().await;
    assert_eq!(fresh.handshake["val"]["server"]["name"], "Confab Test");
    assert_eq!(fresh.handshake["val"]["server"]["icon"], "https://example.com/i.png");

    // null clears icon and banner; a null name leaves the name.
    let r = admin.request(json!({"cmd": "server_update", "name": null, "icon": null, "banner": ""})).await;
    assert_eq!(
        (r["name"].clone(), r["icon"].clone(), r["banner"].clone()),
        (json!("Confab Test"), json!(""), json!(""))
    );
    let r = bob.request(json!({"cmd": "server_info"})).await;
    assert_eq!(
        (r["name"].clone(), r["icon"].clone(), r["banner"].clone()),
        (json!("Confab Test"), json!(""), json!(""))
    );

    let filter = AuditFilter { action: Some("server_update".into()), ..AuditFilter::default() };
    let (entries, total) = server.store.audit_list(&filter, 10, 0).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(entries[1].actor_name, "root");
    assert_eq!(entries[1].category, "server_management");
    let details: Value = serde_json::from_str(&entries[1].details).unwrap();
    assert_eq!(details["name"], "Confab Test");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Scale (issue: "Unreads, pings and search use indexed queries, never a scan of all messages")

/// Messages in the small and the large channel of `perf_reads_scale`.
const SMALL: usize = 1_000;
const LARGE: usize = 1_000_000;
/// Timed requests per operation (after [`WARMUP`] untimed ones); the median is reported.
const RUNS: usize = 31;
const WARMUP: usize = 3;
/// Messages of each channel that contain the rare search term, and that ping its reader.
const RARE: usize = 10;
const PINGS: usize = 100;
/// Unread messages left for each reader.
const UNREAD: usize = 50;

/// One channel of the measurement and the account that reads it.
struct Scale {
    name: &'static str,
    messages: usize,
    reader: Client,
}

/// New messages reach the SQLite search index in steps, off the commit path: a search finds a
/// message while it waits, after an edit while it waits, once it is indexed, and no more once it
/// is deleted, queued or indexed. The channel holds more messages than the search reads directly,
/// so every search here goes through the index (and the queue).
async fn search_queue_scenario(backend: Backend) {
    let sqlite = backend == Backend::Sqlite;
    // Index only in steps of 256, never because the writer is idle, so the queue is predictable.
    let server = TestServer::spawn_with(backend, |c| c.store.search_index_idle_ms = 3_600_000).await;
    let mut alice = server.register("alice").await;
    let fillers = (0..600).map(|i| (format!("filler {i}"), Pinged::default()));
    append_many(&server.store, "general", "alice", fillers).await;
    let needle = send(&mut alice, general(), "needle one").await;
    let waiting = server.store.search_backlog().await.unwrap();
    if sqlite {
        assert!((1..256).contains(&waiting), "{waiting} messages wait for the index");
    } else {
        assert_eq!(waiting, 0);
    }
    assert_eq!(search(&mut alice, "needle").await, ["needle one"]);

    let edit = json!({"cmd": "message_edit", "channel": "general", "id": needle["id"], "content": "needle uno"});
    assert_eq!(alice.request(edit).await["cmd"], "message_edit");
    assert_eq!(search(&mut alice, "needle").await, ["needle uno"]);
    assert!(search(&mut alice, "one").await.is_empty());

    // 256 more: the writer indexes the oldest 256 waiting, the needle among them.
    let more = (0..256).map(|i| (format!("more {i}"), Pinged::default()));
    let more = append_many(&server.store, "general", "alice", more).await;
    // The writer answers appends before it indexes: wait for the step.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.store.search_backlog().await.unwrap() != waiting {
        assert!(Instant::now() < deadline, "one step of 256 is indexed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(search(&mut alice, "needle").await, ["needle uno"]);
    assert!(search(&mut alice, "one").await.is_empty());

    // Deleting an indexed message and a waiting one (the newest) takes both out of the results.
    let newest = more.last().unwrap();
    for id in [needle["id"].as_str().unwrap(), newest.as_str()] {
        let r = alice.request(json!({"cmd": "message_delete", "channel": "general", "id": id})).await;
        assert_eq!(r["cmd"], "message_delete", "{r}");
    }
    assert!(search(&mut alice, "needle").await.is_empty());
    let others = search(&mut alice, "more 25").await;
    assert!(!others.is_empty() && others.iter().all(|c| c != "more 255"), "{others:?}");
    // The next message takes the deleted newest message's place (on SQLite, its rowid) and is found.
    send(&mut alice, general(), "needle two").await;
    assert_eq!(search(&mut alice, "needle").await, ["needle two"]);
    server.stop().await;
}

on_both! { search_queue_scenario => search_queue_sqlite, search_queue_postgres; }

/// Appends `messages` (content, who it pings) by `author` to `channel` through the group-commit
/// writer, many at once so that the writer commits full batches; they commit in no particular
/// order. Returns the message ids.
pub(crate) async fn append_many(
    store: &Store,
    channel: &str,
    author: &str,
    messages: impl Iterator<Item = (String, Pinged)>,
) -> Vec<String> {
    let channels = store.channels().await.unwrap();
    let channel = channels.iter().find(|c| c.name == channel).unwrap();
    let author = store.user_by_name(author).await.unwrap().unwrap();
    let mut ids = Vec::new();
    let mut pending = tokio::task::JoinSet::new();
    for (content, pinged) in messages {
        let message = NewMessage {
            id: uuid::Uuid::now_v7().to_string(),
            channel_id: channel.id.clone(),
            channel_name: channel.name.clone(),
            thread_id: None,
            user_id: Some(author.id.clone()),
            author_name: author.username.clone(),
            content,
            created_at: confab::store::now(),
            reply_to: None,
            ping: None,
            pings: json!({"users": [], "roles": [], "replies": []}),
            pinged,
            extra: None,
            nonce: None,
            nonce_window_s: 600.0,
        };
        ids.push(message.id.clone());
        let writer = store.writer().clone();
        pending.spawn(async move { writer.append(message, Box::new(|_, _| {})).await });
        if pending.len() >= 8192 {
            while let Some(done) = pending.join_next().await {
                done.unwrap().unwrap();
            }
        }
    }
    while let Some(done) = pending.join_next().await {
        done.unwrap().unwrap();
    }
    ids
}

/// Fills `channel` with `n` messages by `author`: every one contains "lorem"; [`RARE`] of them
/// contain "zebra" and [`PINGS`] of them mention `reader`. Returns the message ids.
async fn fill(store: &Store, channel: &str, author: &str, reader: &str, n: usize) -> Vec<String> {
    let reader = store.user_by_name(reader).await.unwrap().unwrap();
    let messages = (0..n).map(|i| {
        let mut content =
            format!("message {i} lorem ipsum dolor {:x} sit amet", i.wrapping_mul(2_654_435_761) % 65_521);
        if i % (n / RARE) == n / RARE / 2 {
            content.push_str(" zebra");
        }
        let mut pinged = Pinged::default();
        if i % (n / PINGS) == n / PINGS / 3 {
            content.push_str(&format!(" @{}", reader.username));
            pinged.users.push(reader.id.clone());
        }
        (content, pinged)
    });
    append_many(store, channel, author, messages).await
}

/// Median wall time of `RUNS` round trips of `frame` (after `WARMUP`), checking each reply.
async fn median(c: &mut Client, frame: Value, check: impl Fn(&Value)) -> Duration {
    let mut times = Vec::with_capacity(RUNS);
    for run in 0..WARMUP + RUNS {
        let started = Instant::now();
        let reply = c.request(frame.clone()).await;
        let took = started.elapsed();
        assert_ne!(reply["cmd"], "error", "{frame} → {reply}");
        check(&reply);
        if run >= WARMUP {
            times.push(took);
        }
    }
    times.sort();
    times[RUNS / 2]
}

/// Fills both channels on `backend` and returns `(operation, small median, large median)` rows.
async fn scale_on(backend: Backend) -> Vec<(String, Duration, Duration)> {
    let server = spawn(backend).await;
    let mut admin = server.member("root", &["owner"]).await;
    let mut filled = Vec::new();
    for (name, messages) in [("small", SMALL), ("large", LARGE)] {
        let r = admin.request(json!({"cmd": "role_create", "name": name})).await;
        assert_eq!(r["cmd"], "role_create", "{r}");
        let permissions = json!({"view": [name], "send": [name]});
        channel(&mut admin, name, "text", Some(permissions)).await;
        let reader = format!("reader_{name}");
        server.register(&reader).await.ws.close(None).await.ok();
        let user = server.store.user_by_name(&reader).await.unwrap().unwrap();
        let roles = server.store.roles().await.unwrap();
        let wanted: Vec<String> =
            roles.iter().filter(|r| r.name == name || r.name == "user").map(|r| r.id.clone()).collect();
        server.store.user_set_roles(&user.id, &wanted).await.unwrap();
        filled.push((name, messages, reader));
    }
    // Filling takes minutes; an idle socket would be closed as a dead peer meanwhile.
    admin.ws.close(None).await.ok();
    let mut scales = Vec::new();
    let mut probe = String::new();
    for (name, messages, reader) in filled {
        let started = Instant::now();
        let ids = fill(&server.store, name, "root", &reader, messages).await;
        eprintln!("{backend:?}: {messages} messages in #{name} in {:.1} s", started.elapsed().as_secs_f64());
        probe = ids[0].clone();
        scales.push((name, messages, reader));
    }
    if backend == Backend::Postgres {
        // As autovacuum would soon after a bulk load: without statistics the planner takes the
        // million-row channel for a handful of rows.
        let tables = ["messages", "mentions", "message_counts", "read_state", "users", "channels"];
        let analyze: Vec<String> = tables.iter().map(|t| format!("ANALYZE {{schema}}.{t};")).collect();
        in_schema_holding(&probe, &analyze.join(" ")).await;
    }
    let mut admin = server.login("root", "correct horse").await;
    let mut readers = Vec::new();
    for (name, messages, reader) in scales {
        let mut reader = server.login(&reader, "correct horse").await;
        // Concurrent appends commit in any order: find the read position by seq.
        let page = json!({"cmd": "messages_get", "channel": name, "start": UNREAD, "limit": 1});
        let last_read = reader.request(page).await["messages"][0]["id"].clone();
        let r = reader.request(json!({"cmd": "unreads_ack", "channel": name, "message_id": last_read})).await;
        assert_eq!(r["last_read"], last_read);
        readers.push(Scale { name, messages, reader });
    }
    let mut scales = readers;

    let mut rows = Vec::new();
    let mut medians: Vec<Vec<Duration>> = Vec::new();
    for scale in &mut scales {
        let (name, n) = (scale.name, scale.messages);
        let mut times = Vec::new();
        let get = json!({"cmd": "messages_get", "channel": name, "limit": 100});
        times.push(median(&mut admin, get, |r| assert_eq!(r["messages"].as_array().unwrap().len(), 100)).await);
        let rare = json!({"cmd": "messages_search", "channel": name, "query": "zebra"});
        times.push(median(&mut admin, rare, |r| assert_eq!(r["results"].as_array().unwrap().len(), RARE)).await);
        let common = json!({"cmd": "messages_search", "channel": name, "query": "lorem"});
        times.push(median(&mut admin, common, |r| assert_eq!(r["results"].as_array().unwrap().len(), 30)).await);
        let unreads = json!({"cmd": "unreads_get"});
        let check = |r: &Value| {
            assert_eq!(r["unreads"][name]["unread_count"], UNREAD, "{r}");
            assert_eq!(r["unreads"][name]["total_messages"], n, "{r}");
        };
        times.push(median(&mut scale.reader, unreads, check).await);
        let pings = json!({"cmd": "pings_get"});
        times.push(median(&mut scale.reader, pings, |r| assert_eq!(r["total"], PINGS, "{r}")).await);
        medians.push(times);
    }
    let ops = [
        "messages_get (limit 100)",
        "messages_search rare term",
        "messages_search common term",
        "unreads_get",
        "pings_get",
    ];
    for (i, op) in ops.iter().enumerate() {
        rows.push((op.to_string(), medians[0][i], medians[1][i]));
    }
    server.stop().await;
    if backend == Backend::Postgres {
        // A million rows are too many to leave behind in the shared test database.
        in_schema_holding(&probe, "DROP SCHEMA {schema} CASCADE").await;
    }
    rows
}

/// Runs `statement` (with `{schema}` replaced) in the test schema whose `messages` hold
/// `message_id`: the harness does not say which schema a PostgreSQL server uses.
async fn in_schema_holding(message_id: &str, statement: &str) {
    let pool = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
    let schemas: Vec<(String,)> = sqlx::query_as(
        "SELECT table_schema::text FROM information_schema.tables WHERE table_name = 'messages' \
         AND table_schema::text LIKE 't\\_%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (schema,) in schemas {
        let sql = format!("SELECT id FROM \"{schema}\".messages WHERE id = $1");
        let found: Option<(String,)> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(message_id).fetch_optional(&pool).await.unwrap();
        if found.is_some() {
            let sql = statement.replace("{schema}", &format!("\"{schema}\""));
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
        }
    }
    pool.close().await;
}

/// The issue's measurement: `messages_get` of 100 messages, `messages_search` (a rare and a common
/// term), `unreads_get` and `pings_get` over a real WebSocket client, on a channel of 1,000 and
/// one of 1,000,000 messages, on SQLite and PostgreSQL. Prints medians and the ratio; see
/// BENCHMARKS.md. Run with
/// `cargo test --release -p confab --test it perf_reads_scale -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fills a million messages per backend; run by hand in release mode"]
async fn perf_reads_scale() {
    let mut table =
        String::from("| backend | operation | 1k msgs (ms) | 1M msgs (ms) | 1M ÷ 1k |\n|---|---|---:|---:|---:|\n");
    for backend in [Backend::Sqlite, Backend::Postgres] {
        for (op, small, large) in scale_on(backend).await {
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            let ratio = ms(large) / ms(small);
            table.push_str(&format!("| {backend:?} | {op} | {:.2} | {:.2} | {ratio:.2} |\n", ms(small), ms(large)));
        }
    }
    println!("\n{table}");
}
