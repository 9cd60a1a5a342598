//! Message operations beyond `message_new` (PROTOCOL §6.1): edit, delete, reactions, pins, typing,
//! `messages_around`, `message_replies`, `embeds_list` — each checked from the actor, a second
//! viewer, and in history; every state change carries the next seq and is replayed by `resume`.

use serde_json::{Value, json};

use crate::support::{Backend, Client, TestServer, written};

async fn send(c: &mut Client, content: &str) -> Value {
    let echo = c.request(json!({"cmd": "message_new", "channel": "general", "content": content})).await;
    assert_eq!(echo["cmd"], "message_new", "{echo}");
    echo["message"].clone()
}

/// `general`'s history without the first start's welcome.
async fn history(c: &mut Client) -> Vec<Value> {
    written(&c.request(json!({"cmd": "messages_get", "channel": "general"})).await)
}

#[tokio::test]
async fn edit_and_delete_own_and_others() {
    let server = TestServer::spawn().await;
    let mut alice = server.register("alice").await;
    let mut bob = server.register("bob").await;
    let m = send(&mut alice, "first").await;
    let seen = bob.recv_cmd("message_new").await;
    assert_eq!(seen["message"]["id"], m["id"]);

    let edit =
        alice.request(json!({"cmd": "message_edit", "id": m["id"], "channel": "general", "content": "hi @bob"})).await;
    assert_eq!(edit["cmd"], "message_edit", "{edit}");
    assert_eq!(edit["content"], "hi @bob");
    assert_eq!(edit["message"]["edited"], true);
    assert_eq!(edit["message"]["pings"]["users"], json!(["bob"]));
    assert_eq!(edit["thread_id"], Value::Null);
    assert_eq!(edit["seq"], m["seq"].as_i64().unwrap() + 1);
    let copy = bob.recv_cmd("message_edit").await;
    assert_eq!(copy["seq"], edit["seq"]);
    assert!(copy.get("listener").is_none());
    let stored = &history(&mut bob).await[0];
    assert_eq!(stored["content"], "hi @bob");
    assert_eq!(stored["edited"], true);

    let err = bob.request(json!({"cmd": "message_edit", "id": m["id"], "channel": "general", "content": "x"})).await;
    assert_eq!(err["val"], "You do not have permission to edit this message");
    assert_eq!(err["code"], "forbidden");
    let err = alice.request(json!({"cmd": "message_edit", "id": m["id"], "channel": "general", "content": "  "})).await;
    assert_eq!(err["val"], "Invalid message edit format");
    let err = alice.request(json!({"cmd": "message_edit", "id": "nope", "channel": "general", "content": "x"})).await;
    assert_eq!(err["val"], "Message not found or cannot be edited");
    let long = "x".repeat(2001);
    let err = alice.request(json!({"cmd": "message_edit", "id": m["id"], "channel": "general", "content": long})).await;
    assert_eq!(err["val"], "Message too long. Maximum length is 2000 characters");
    assert_eq!(err["code"], "too_long");

    // Bob (role `user`) may not delete Alice's message in #general (delete: admin, moderator).
    let err = bob.request(json!({"cmd": "message_delete", "id": m["id"], "channel": "general"})).await;
    assert_eq!(err["val"], "You do not have permission to delete this message");
    let del = alice.request(json!({"cmd": "message_delete", "id": m["id"], "channel": "general"})).await;
    assert_eq!(del["cmd"], "message_delete", "{del}");
    assert_eq!(del["seq"], edit["seq"].as_i64().unwrap() + 1);
    assert_eq!(bob.recv_cmd("message_delete").await["id"], m["id"]);
    assert!(history(&mut alice).await.is_empty());
    let err = alice.request(json!({"cmd": "message_delete", "id": m["id"], "channel": "general"})).await;
    assert_eq!(err["val"], "Message not found or cannot be deleted");
    let err = alice.request(json!({"cmd": "message_delete", "channel": "general"})).await;
    assert_eq!(err["val"], "Invalid message delete format");
    server.stop().await;
}

#[tokio::test]
async fn reactions_in_order_with_limits() {
    let server = TestServer::spawn().await;
    let mut alice = server.register("alice").await;
    let mut bob = server.register("bob").await;
    let m = send(&mut alice, "react to me").await;
    let add = |emoji: &str| json!({"cmd": "message_react_add", "id": m["id"], "channel": "general", "emoji": emoji});

    let r = bob.request(add("👍")).await;
    assert_eq!(r["cmd"], "message_react_add", "{r}");
    assert_eq!(r["from"], "bob");
    assert_eq!(r["emoji"], "👍");
    assert_eq!(alice.recv_cmd("message_react_add").await["seq"], r["seq"]);
    alice.request(add("👍")).await;
    let again = bob.request(add("👍")).await;
    assert_eq!(again["val"], "Failed to add reaction");
    assert_eq!(again["code"], "conflict");
    assert_eq!(history(&mut bob).await[0]["reactions"], json!({"👍": ["bob", "alice"]}));

    let remove = json!({"cmd": "message_react_remove", "id": m["id"], "channel": "general", "emoji": "👍"});
    let r = bob.request(remove.clone()).await;
    assert_eq!(r["cmd"], "message_react_remove");
    let r = bob.request(remove).await;
    assert_eq!(r["val"], "Failed to remove reaction");
    assert_eq!(r["code"], "not_found");
    assert_eq!(history(&mut bob).await[0]["reactions"], json!({"👍": ["alice"]}));

    for bad in ["", "a\u{7}b"] {
        assert_eq!(bob.request(add(bad)).await["val"], "Invalid emoji");
    }
    for i in 0..19 {
        let r = bob.request(add(&format!("e{i}"))).await;
        assert_eq!(r["cmd"], "message_react_add", "{r}");
    }
    let r = bob.request(add("one-too-many")).await;
    assert_eq!(r["val"], "Too many reactions on this message");
    // An emoji already on the message is still fine.
    assert_eq!(bob.request(add("👍")).await["cmd"], "message_react_add");
    let r = bob.request(json!({"cmd": "message_react_add", "id": "nope", "channel": "general", "emoji": "x"})).await;
    assert_eq!(r["val"], "Message not found");
    server.stop().await;
}

#[tokio::test]
async fn pins_need_permission_and_report_real_state() {
    let server = TestServer::spawn().await;
    let mut alice = server.register("alice").await;
    let m = send(&mut alice, "pin me").await;
    let pin = json!({"cmd": "message_pin", "id": m["id"], "channel": "general"});
    // #general's pin list is owner-only.
    assert_eq!(alice.request(pin.clone()).await["val"], "You do not have permission to pin messages in this channel");
    let owner = server.store.user_by_name("alice").await.unwrap().unwrap();
    let roles = server.store.roles().await.unwrap();
    let owner_role = roles.iter().find(|r| r.name == "owner").unwrap().id.clone();
    server.store.user_set_roles(&owner.id, &[owner_role]).await.unwrap();
    let mut alice = server.login("alice", "correct horse").await;
    let mut bob = server.register("bob").await;

    let r = alice.request(pin.clone()).await;
    assert_eq!(r["cmd"], "message_pin", "{r}");
    assert_eq!(r["pinned"], true);
    assert_eq!(r["global"], true);
    assert_eq!(bob.recv_cmd("message_pin").await["seq"], r["seq"]);
    let again = alice.request(pin).await;
    assert_eq!(again["pinned"], true);
    assert!(again.get("seq").is_none() && again.get("global").is_none(), "{again}");
    let pinned = bob.request(json!({"cmd": "messages_pinned", "channel": "general"})).await;
    assert_eq!(pinned["messages"][0]["id"], m["id"]);
    assert_eq!(pinned["messages"][0]["pinned"], true);

    let r = alice.request(json!({"cmd": "message_unpin", "id": m["id"], "channel": "general"})).await;
    assert_eq!(r["cmd"], "message_unpin");
    assert_eq!(r["pinned"], false);
    let pinned = bob.request(json!({"cmd": "messages_pinned", "channel": "general"})).await;
    assert_eq!(pinned["messages"], json!([]));
    let r = alice.request(json!({"cmd": "message_pin", "id": "nope", "channel": "general"})).await;
    assert_eq!(r["val"], "Message not found");
    let r = alice.request(json!({"cmd": "message_pin", "id": m["id"]})).await;
    assert_eq!(r["val"], "Channel name not provided");
    server.stop().await;
}

/// The official client unpins by sending `message_pin` with `pinned: false`: that is an unpin,
/// answered and broadcast as `message_unpin`, and stored.
async fn message_pin_with_pinned_false_unpins(backend: Backend) {
    let server = TestServer::spawn_with(backend, |_| {}).await;
    let mut alice = server.member("alice", &["owner"]).await;
    let mut bob = server.register("bob").await;
    let m = send(&mut alice, "pin me").await;
    let pin = |pinned: Value| json!({"cmd": "message_pin", "id": m["id"], "channel": "general", "pinned": pinned});
    let pinned_ids = |r: &Value| r["messages"].as_array().unwrap().iter().map(|m| m["id"].clone()).collect::<Vec<_>>();

    let r = alice.request(pin(json!(true))).await;
    assert_eq!((r["cmd"].as_str(), r["pinned"].as_bool()), (Some("message_pin"), Some(true)), "{r}");
    let r = alice.request(pin(json!(false))).await;
    assert_eq!(r["cmd"], "message_unpin", "{r}");
    assert_eq!(r["pinned"], false);
    assert_eq!(r["global"], true);
    assert_eq!(bob.recv_cmd("message_unpin").await["seq"], r["seq"]);
    let listed = bob.request(json!({"cmd": "messages_pinned", "channel": "general"})).await;
    assert_eq!(pinned_ids(&listed), Vec::<Value>::new());
    // Already unpinned: only the requester hears, as for `message_unpin`.
    let again = alice.request(pin(json!(false))).await;
    assert_eq!(again["cmd"], "message_unpin", "{again}");
    assert!(again.get("seq").is_none(), "{again}");
    // `pinned: null` is absent: a pin.
    assert_eq!(alice.request(pin(Value::Null)).await["pinned"], true);
    let listed = bob.request(json!({"cmd": "messages_pinned", "channel": "general"})).await;
    assert_eq!(pinned_ids(&listed), vec![m["id"].clone()]);
    server.stop().await;
}

on_both! { message_pin_with_pinned_false_unpins => message_pin_with_pinned_false_unpins_sqlite, message_pin_with_pinned_false_unpins_postgres; }

#[tokio::test]
async fn typing_reaches_viewers_without_seq() {
    let server = TestServer::spawn().await;
    let mut alice = server.register("alice").await;
    let mut bob = server.register("bob").await;
    let r = alice.request(json!({"cmd": "typing", "channel": "general"})).await;
    assert_eq!(r["cmd"], "typing");
    let seen = bob.recv_cmd("typing").await;
    assert_eq!(seen["user"], "alice");
    assert_eq!(seen["channel"], "general");
    assert_eq!(seen["thread_id"], Value::Null);
    assert!(seen.get("seq").is_none());
    let r = alice.request(json!({"cmd": "typing"})).await;
    assert_eq!(r["val"], "Channel name or thread_id not provided");
    let r = alice.request(json!({"cmd": "typing", "channel": "nowhere"})).await;
    assert_eq!(r["val"], "Channel not found");
    server.stop().await;
}

#[tokio::test]
async fn around_replies_and_embeds() {
    let server = TestServer::spawn().await;
    let mut alice = server.register("alice").await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(send(&mut alice, &format!("m{i}")).await["id"].clone());
    }
    // Older history the way the official client loads it: above 0, below 3 around m5.
    let r = alice
        .request(json!({"cmd": "messages_around", "channel": "general", "around": ids[5], "bounds": {"above": 0, "below": 3}}))
        .await;
    let got: Vec<Value> = r["messages"].as_array().unwrap().iter().map(|m| m["id"].clone()).collect();
    assert_eq!(got, ids[2..=5].to_vec());
    // History indexes count the first start's welcome (index 0), so m2 is at 3.
    assert_eq!(r["range"], json!({"start": 3, "end": 7}));
    let r = alice
        .request(json!({"cmd": "messages_around", "channel": "general", "around": ids[5], "bounds": {"above": 2, "below": 1}}))
        .await;
    let got: Vec<Value> = r["messages"].as_array().unwrap().iter().map(|m| m["id"].clone()).collect();
    assert_eq!(got, ids[4..=7].to_vec());
    let r = alice.request(json!({"cmd": "messages_around", "channel": "general", "around": "nope"})).await;
    assert_eq!(r["val"], "Message not found");
    let r = alice.request(json!({"cmd": "messages_around", "channel": "general"})).await;
    assert_eq!(r["val"], "around (message ID) is required");

    let reply = alice
        .request(json!({"cmd": "message_new", "channel": "general", "content": "re", "reply_to": ids[0], "embeds": [{"title": "t"}]}))
        .await;
    assert_eq!(reply["message"]["reply_to"], json!({"id": ids[0], "user": "alice"}));
    let r = alice.request(json!({"cmd": "message_replies", "channel": "general", "id": ids[0]})).await;
    assert_eq!(r["message_id"], ids[0]);
    assert_eq!(r["replies"][0]["id"], reply["message"]["id"]);
    let r = alice.request(json!({"cmd": "message_replies", "channel": "general"})).await;
    assert_eq!(r["val"], "Channel name and message ID are required");

    let r = alice.request(json!({"cmd": "embeds_list", "channel": "general", "id": reply["message"]["id"]})).await;
    assert_eq!(r["embeds"], json!([{"title": "t"}]));
    let r = alice.request(json!({"cmd": "embeds_list", "channel": "general", "id": ids[1]})).await;
    assert_eq!(r["embeds"], json!([]));
    let r = alice.request(json!({"cmd": "embeds_list", "channel": "general"})).await;
    assert_eq!(r["val"], "Message ID is required");
    server.stop().await;
}

#[tokio::test]
async fn resume_replays_every_kind_of_event_and_skips_deleted_messages() {
    let server = TestServer::spawn().await;
    let mut alice = server.register("alice").await;
    let mut bob = server.register("bob").await;
    let start =
        bob.request(json!({"cmd": "messages_get", "channel": "general", "limit": 1})).await["seq"].as_i64().unwrap();
    drop(bob);
    let keep = send(&mut alice, "keep").await;
    let doomed = send(&mut alice, "doomed").await;
    alice.request(json!({"cmd": "message_edit", "id": keep["id"], "channel": "general", "content": "kept"})).await;
    alice.request(json!({"cmd": "message_react_add", "id": keep["id"], "channel": "general", "emoji": "x"})).await;
    alice.request(json!({"cmd": "message_react_add", "id": doomed["id"], "channel": "general", "emoji": "x"})).await;
    let del = alice.request(json!({"cmd": "message_delete", "id": doomed["id"], "channel": "general"})).await;

    let mut bob = server.login("bob", "correct horse").await;
    bob.send(json!({"cmd": "resume", "channels": {"general": start}})).await;
    let mut replayed = Vec::new();
    loop {
        let p = bob.recv().await;
        if p["cmd"] == "resumed" {
            assert_eq!(p["channels"]["general"], del["seq"]);
            break;
        }
        if p["replay"] == true {
            replayed.push((p["cmd"].as_str().unwrap().to_owned(), p["seq"].as_i64().unwrap()));
        }
    }
    let kinds: Vec<&str> = replayed.iter().map(|(k, _)| k.as_str()).collect();
    // The doomed message's creation and reaction are left out; its deletion is kept.
    assert_eq!(kinds, ["message_new", "message_edit", "message_react_add", "message_delete"]);
    assert!(replayed.windows(2).all(|w| w[0].1 < w[1].1), "{replayed:?}");
    server.stop().await;
}

#[tokio::test]
async fn restricted_role_mentions_need_mention_everyone() {
    let server = TestServer::spawn_with(crate::support::Backend::Sqlite, |cfg| {
        cfg.mentions.restricted_roles = vec!["moderator".into()];
    })
    .await;
    let mut bob = server.register("bob").await;
    let mut root = server.member("root", &["owner"]).await;
    let r = bob.request(json!({"cmd": "message_new", "channel": "general", "content": "hey @&Moderator"})).await;
    assert_eq!(r["val"], "You do not have permission to mention the '@&moderator' role");
    assert_eq!(r["code"], "forbidden");
    let ok = bob.request(json!({"cmd": "message_new", "channel": "general", "content": "hey @&user"})).await;
    assert_eq!(ok["message"]["pings"]["roles"], json!(["user"]));
    let r = bob
        .request(
            json!({"cmd": "message_edit", "id": ok["message"]["id"], "channel": "general", "content": "@&moderator"}),
        )
        .await;
    assert_eq!(r["val"], "You do not have permission to mention the '@&moderator' role");
    let r = root.request(json!({"cmd": "message_new", "channel": "general", "content": "@&moderator look"})).await;
    assert_eq!(r["message"]["pings"]["roles"], json!(["moderator"]));
    server.stop().await;
}
