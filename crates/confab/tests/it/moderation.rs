//! Users, presence and moderation (PROTOCOL §6.4) and the audit log (§6.9): status transitions and
//! who hears them, avatars, renames, bans that close sockets and refuse every login, timeouts that
//! refuse limited commands, leaving and deleting accounts, and `modlog_get` / `modlog_summary`.
//!
//! "Did not receive" is checked without waiting: a connection's packets arrive in the order the
//! server produced them, and one connection's frames are handled one after another, so once a later
//! reply has arrived, anything an earlier command sent to that connection has arrived before it.

use confab::store::{
    roles::Role,
    users::{AccountKind, NewUser},
};
use serde_json::{Value, json};

use crate::support::{Backend, Client, Closed, TestServer, written};

const PASSWORD: &str = "correct horse";

// ---------------------------------------------------------------------------------------------
// helpers

/// Sends `frame` and asserts the answer is exactly the `error` with `val` and `code`.
async fn expect_error(c: &mut Client, frame: Value, val: &str, code: &str) {
    let r = c.request(frame.clone()).await;
    assert_eq!(r["cmd"], "error", "{frame} -> {r}");
    assert_eq!(r["src"], frame["cmd"], "{frame} -> {r}");
    assert_eq!(r["val"], val, "{frame} -> {r}");
    assert_eq!(r["code"], code, "{frame} -> {r}");
}

/// A reply without its `listener`, after checking that it carried one.
fn unlisten(mut reply: Value) -> Value {
    let listener = reply.as_object_mut().unwrap().remove("listener");
    assert!(listener.is_some_and(|l| l.is_string()), "a reply carries its listener: {reply}");
    reply
}

/// Packets up to and including the first `cmd` (heartbeat pings left out).
async fn until(c: &mut Client, cmd: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let p = c.recv().await;
        let done = p["cmd"] == cmd;
        if p["cmd"] != "ping" {
            seen.push(p);
        }
        if done {
            return seen;
        }
    }
}

fn cmds(packets: &[Value]) -> Vec<&str> {
    packets.iter().map(|p| p["cmd"].as_str().unwrap_or("?")).collect()
}

/// Expects the server's `disconnect` packet with `reason` as the next packet that is not a
/// broadcast, then a close frame with `code`.
async fn expect_kicked(c: &mut Client, reason: &str, code: u16) {
    let d = c.recv_cmd("disconnect").await;
    assert_eq!(d, json!({"cmd": "disconnect", "reason": reason}));
    match c.closed().await {
        Closed::Frame(got, _) => assert_eq!(got, code, "{reason}"),
        Closed::Dropped => panic!("expected close {code}, the connection was dropped"),
    }
}

/// A WebSocket password login that must fail with `auth_error` `val` / `code`.
async fn expect_login_refused(server: &TestServer, name: &str, val: &str, code: &str) {
    let mut c = server.connect().await;
    let r = c.request(json!({"cmd": "login", "username": name, "password": PASSWORD})).await;
    assert_eq!(r["cmd"], "auth_error", "{r}");
    assert_eq!((r["val"].as_str(), r["code"].as_str()), (Some(val), Some(code)), "{r}");
}

/// Audit entries with `action`, newest first, as an owner sees them.
async fn modlog(c: &mut Client, filter: Value) -> Value {
    let mut frame = json!({"cmd": "modlog_get"});
    for (k, v) in filter.as_object().unwrap() {
        frame[k] = v.clone();
    }
    let r = c.request(frame).await;
    assert_eq!(r["cmd"], "modlog_get", "{r}");
    r
}

// ---------------------------------------------------------------------------------------------
// status and presence

#[tokio::test]
async fn status_set_transitions_reach_the_right_audiences() {
    let server = TestServer::spawn().await;
    let mut a1 = server.register("alice").await;
    let mut a2 = server.login("alice", PASSWORD).await;
    let mut bob = server.register("bob").await;
    let status_get = |status: &str, text: &str| json!({"cmd": "status_get", "username": "alice", "status": {"status": status, "text": text}, "global": true});
    let status_set =
        |status: &str, text: &str| json!({"cmd": "status_set", "status": {"status": status, "text": text}});

    // visible → visible: G S→A status_get, the requester's copy with its listener.
    let r = a1.request(json!({"cmd": "status_set", "status": "idle", "text": "brb"})).await;
    assert_eq!(unlisten(r), status_get("idle", "brb"));
    assert_eq!(bob.recv_cmd("status_get").await, status_get("idle", "brb"));
    assert_eq!(a2.recv_cmd("status_get").await, status_get("idle", "brb"));

    // visible → invisible: others see a disconnect; only the user's own connections see status_set.
    let r = a1.request(json!({"cmd": "status_set", "status": "invisible"})).await;
    assert_eq!(unlisten(r), status_set("invisible", ""));
    let seen = until(&mut a2, "status_set").await;
    assert_eq!(seen.last().unwrap(), &status_set("invisible", ""));
    assert!(!cmds(&seen).contains(&"user_disconnect"), "{seen:?}");
    let seen = until(&mut bob, "user_disconnect").await;
    assert_eq!(seen, [json!({"cmd": "user_disconnect", "username": "alice"})]);
    let (online, before) = bob.request_seeing(json!({"cmd": "users_online"})).await;
    assert!(before.is_empty(), "bob hears nothing else: {before:?}");
    let names: Vec<&Value> = online["users"].as_array().unwrap().iter().map(|u| &u["username"]).collect();
    assert_eq!(names, [&json!("bob")], "{online}");
    let list = bob.request(json!({"cmd": "users_list"})).await;
    let alice = list["users"].as_array().unwrap().iter().find(|u| u["username"] == "alice").unwrap();
    assert_eq!(alice["status"], json!({"status": "offline", "text": ""}));
    let seen_by_bob = bob.request(json!({"cmd": "status_get", "user": "alice"})).await;
    assert_eq!(seen_by_bob["status"], json!({"status": "offline", "text": ""}));
    let own = a1.request(json!({"cmd": "status_get", "user": "Alice"})).await;
    assert_eq!(
        unlisten(own),
        json!({"cmd": "status_get", "username": "alice", "status": {"status": "invisible", "text": ""}})
    );

    // invisible → invisible with new text: only the user's connections.
    let r = a1.request(json!({"cmd": "status_set", "status": "invisible", "text": "away"})).await;
    assert_eq!(unlisten(r), status_set("invisible", "away"));
    assert_eq!(until(&mut a2, "status_set").await.last().unwrap(), &status_set("invisible", "away"));
    assert!(bob.drain().await.is_empty());

    // invisible → visible: others see user_connect, then everyone the status.
    let r = a1.request(json!({"cmd": "status_set", "status": "dnd", "text": "focus"})).await;
    assert_eq!(unlisten(r), status_get("dnd", "focus"));
    let connect = json!({"cmd": "user_connect", "user": {"username": "alice", "roles": ["user"], "color": null}});
    assert_eq!(until(&mut bob, "status_get").await, [connect, status_get("dnd", "focus")]);
    let seen = until(&mut a2, "status_get").await;
    assert!(!cmds(&seen).contains(&"user_connect"), "{seen:?}");
    assert_eq!(seen.last().unwrap(), &status_get("dnd", "focus"));
    let online = bob.request(json!({"cmd": "users_online"})).await;
    let alice = online["users"].as_array().unwrap().iter().find(|u| u["username"] == "alice").unwrap();
    assert_eq!(alice["status"], json!({"status": "dnd", "text": "focus"}));

    // The status is stored: a new connection starts with it.
    a1.request(json!({"cmd": "status_set", "status": "invisible"})).await;
    assert_eq!(until(&mut bob, "user_disconnect").await.len(), 1);
    let mut a3 = server.connect().await;
    a3.send(json!({"cmd": "login", "username": "alice", "password": PASSWORD})).await;
    let ready = a3.expect_auth().await;
    assert_eq!(ready["user"]["status"], json!({"status": "invisible", "text": ""}));
    a3.drain().await;
    assert!(bob.drain().await.is_empty(), "an invisible login is not announced");
    server.stop().await;
}

#[tokio::test]
async fn status_errors_and_status_get() {
    let server = TestServer::spawn().await;
    let mut alice = server.register("alice").await;
    server.http_register("carol").await;
    let set = |status: Value| json!({"cmd": "status_set", "status": status});
    expect_error(&mut alice, json!({"cmd": "status_set"}), "Status is required", "bad_request").await;
    expect_error(&mut alice, set(json!(null)), "Status is required", "bad_request").await;
    expect_error(&mut alice, set(json!("")), "Status is required", "bad_request").await;
    let invalid = "Invalid status. Must be one of: online, idle, dnd, offline, invisible";
    expect_error(&mut alice, set(json!("busy")), invalid, "bad_request").await;
    expect_error(&mut alice, set(json!(5)), invalid, "bad_request").await;
    let long = json!({"cmd": "status_set", "status": "online", "text": "x".repeat(101)});
    expect_error(&mut alice, long, "Status text too long (max 100 characters)", "too_long").await;
    let at_limit = alice.request(json!({"cmd": "status_set", "status": "offline", "text": "é".repeat(100)})).await;
    assert_eq!(at_limit["status"], json!({"status": "offline", "text": "é".repeat(100)}), "{at_limit}");

    expect_error(&mut alice, json!({"cmd": "status_get"}), "User parameter is required", "bad_request").await;
    expect_error(&mut alice, json!({"cmd": "status_get", "user": ""}), "User parameter is required", "bad_request")
        .await;
    expect_error(&mut alice, json!({"cmd": "status_get", "user": "ghost"}), "User not found", "not_found").await;
    // Never connected: offline, by name or by id.
    let carol = alice.request(json!({"cmd": "status_get", "user": "CAROL"})).await;
    assert_eq!(
        unlisten(carol),
        json!({"cmd": "status_get", "username": "carol", "status": {"status": "offline", "text": ""}})
    );
    let id = server.user_id("carol").await;
    let by_id = alice.request(json!({"cmd": "status_get", "user": id})).await;
    assert_eq!(by_id["username"], "carol");
    // An online user with the stored `offline` status shows it to others as it is.
    let mut bob = server.register("bob").await;
    let seen = bob.request(json!({"cmd": "status_get", "user": "alice"})).await;
    assert_eq!(seen["status"], json!({"status": "offline", "text": "é".repeat(100)}));
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// avatars

#[tokio::test]
async fn pfp_set_and_get() {
    let server = TestServer::spawn().await;
    let mut alice = server.register("alice").await;
    let mut bob = server.register("bob").await;
    let url = "https://cdn.example.com/a.png?size=64";
    let r = alice.request(json!({"cmd": "pfp_set", "url": url})).await;
    assert_eq!(unlisten(r), json!({"cmd": "pfp_set", "val": url}));
    let got = bob.request(json!({"cmd": "pfp_get", "username": "ALICE"})).await;
    assert_eq!(unlisten(got), json!({"cmd": "pfp_get", "val": url, "username": "alice"}));
    let none = alice.request(json!({"cmd": "pfp_get", "username": "bob"})).await;
    assert_eq!(unlisten(none), json!({"cmd": "pfp_get", "val": null, "username": "bob"}));
    let list = bob.request(json!({"cmd": "users_list"})).await;
    let entry = list["users"].as_array().unwrap().iter().find(|u| u["username"] == "alice").unwrap().clone();
    assert_eq!(entry["pfp"], url);
    assert_eq!(server.store.user_by_name("alice").await.unwrap().unwrap().pfp_url.as_deref(), Some(url));

    let set = |url: Value| json!({"cmd": "pfp_set", "url": url});
    expect_error(&mut alice, json!({"cmd": "pfp_set"}), "URL required", "bad_request").await;
    expect_error(&mut alice, set(json!("")), "URL required", "bad_request").await;
    for bad in ["ftp://example.com/a.png", "https://", "example.com/a.png", "javascript:alert(1)"] {
        expect_error(&mut alice, set(json!(bad)), "Invalid URL format", "bad_request").await;
    }
    let long = format!("https://example.com/{}", "a".repeat(481));
    expect_error(&mut alice, set(json!(long)), "URL too long (max 500 characters)", "too_long").await;
    let exactly = format!("https://example.com/{}", "a".repeat(480));
    assert_eq!(alice.request(set(json!(exactly))).await["val"], exactly);

    expect_error(&mut bob, json!({"cmd": "pfp_get"}), "Username required", "bad_request").await;
    expect_error(&mut bob, json!({"cmd": "pfp_get", "username": "ghost"}), "User not found", "not_found").await;

    // A Rotur account (authenticated here with an access token) may not set its own picture.
    let user_role = server.store.roles().await.unwrap().into_iter().find(|r| r.name == "user").unwrap().id;
    let rotur = server
        .store
        .user_create(NewUser {
            username: "rot",
            kind: AccountKind::Rotur,
            password_hash: None,
            role_ids: vec![user_role],
        })
        .await
        .unwrap();
    let now = confab::store::now();
    let sid = server.store.session_create(&rotur.id, "test", now + 3600.0).await.unwrap();
    let token = confab::keys::load(&server.config).unwrap().issue(&rotur.id, &sid, now);
    let mut r = server.connect().await;
    r.send(json!({"cmd": "auth", "token": token})).await;
    assert_eq!(r.expect_auth().await["user"]["cracked"], false);
    let forbidden = "Profile pictures are managed by Rotur for this account";
    expect_error(&mut r, set(json!(url)), forbidden, "forbidden").await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// user_update

#[tokio::test]
async fn user_update_renames_and_sets_nicknames() {
    let server = TestServer::spawn().await;
    let mut admin = server.member("admin1", &["admin"]).await;
    let mut bob = server.register("bob").await;
    let mut carol = server.register("carol").await;
    let bob_id = server.user_id("bob").await;
    let before = bob.request(json!({"cmd": "message_new", "channel": "general", "content": "before"})).await;
    assert_eq!(before["message"]["user"], "bob");

    let r = admin
        .request(json!({"cmd": "user_update", "user": "BOB", "updates": {"username": "robert", "nickname": "Bobby"}}))
        .await;
    assert_eq!(unlisten(r), json!({"cmd": "user_update", "user": "bob", "username": "robert", "nickname": "Bobby"}));
    let updated = json!({"cmd": "user_updated", "user_id": bob_id, "username": "robert", "nickname": "Bobby", "old_username": "bob"});
    let nick = json!({"cmd": "nickname_update", "user": bob_id, "username": "robert", "nickname": "Bobby"});
    let seen = until(&mut carol, "nickname_update").await;
    assert_eq!(&seen[seen.len() - 2..], [updated.clone(), nick.clone()]);
    let seen = until(&mut admin, "nickname_update").await;
    assert_eq!(&seen[seen.len() - 2..], [updated, nick]);

    // The renamed account's live connection speaks under its new name at once; history follows.
    let after = bob.request(json!({"cmd": "message_new", "channel": "general", "content": "after"})).await;
    assert_eq!(after["message"]["user"], "robert", "{after}");
    let history = carol.request(json!({"cmd": "messages_get", "channel": "general"})).await;
    let authors: Vec<Value> = written(&history).iter().map(|m| m["user"].clone()).collect();
    assert_eq!(authors, [json!("robert"), json!("robert")]);
    expect_login_refused(&server, "bob", "Invalid password", "invalid_credentials").await;
    let ready = server.login("Robert", PASSWORD).await.request(json!({"cmd": "ping"})).await;
    assert_eq!(ready["cmd"], "pong");

    // Only the username: no nickname event (checked against the next update, which sends one).
    let r = admin.request(json!({"cmd": "user_update", "user": bob_id, "updates": {"username": "Robert"}})).await;
    assert_eq!(unlisten(r), json!({"cmd": "user_update", "user": "robert", "username": "Robert", "nickname": "Bobby"}));
    let r = admin.request(json!({"cmd": "user_update", "user": "robert", "updates": {"nickname": null}})).await;
    assert_eq!(unlisten(r), json!({"cmd": "user_update", "user": "Robert", "username": "Robert", "nickname": null}));
    let seen: Vec<Value> = until(&mut carol, "nickname_remove").await;
    let tail: Vec<&str> =
        cmds(&seen).into_iter().filter(|c| c.starts_with("user_updated") || c.starts_with("nickname")).collect();
    assert_eq!(tail, ["user_updated", "user_updated", "nickname_remove"], "{seen:?}");
    assert_eq!(seen.last().unwrap(), &json!({"cmd": "nickname_remove", "user": bob_id, "username": "Robert"}));
    // An empty nickname clears it too, and setting the same value again announces no change.
    admin.request(json!({"cmd": "user_update", "user": "robert", "updates": {"nickname": "R"}})).await;
    let r = admin.request(json!({"cmd": "user_update", "user": "robert", "updates": {"nickname": ""}})).await;
    assert_eq!(r["nickname"], Value::Null);
    let stored = server.store.user_by_id(&bob_id).await.unwrap().unwrap();
    assert_eq!((stored.username.as_str(), stored.nickname), ("Robert", None));

    let entries = modlog(&mut admin, json!({"action": "user_update"})).await;
    assert_eq!(entries["total"], 5, "{entries}");
    let first = &entries["entries"][4];
    assert_eq!(first["category"], "user_moderation");
    assert_eq!(first["actor_name"], "admin1");
    assert_eq!(first["target_id"], bob_id);
    assert_eq!(first["target_name"], "bob");
    assert_eq!(first["details"]["username"], "robert");
    server.stop().await;
}

#[tokio::test]
async fn user_update_errors_and_hierarchy() {
    let server = TestServer::spawn().await;
    let mut owner = server.member("boss", &["owner"]).await;
    let mut admin = server.member("admin1", &["admin"]).await;
    server.member("admin2", &["admin"]).await;
    let mut bob = server.register("bob").await;
    server.http_register("carol").await;
    let update = |user: &str, updates: Value| json!({"cmd": "user_update", "user": user, "updates": updates});

    let denied = "Access denied: 'manage_users' permission required";
    expect_error(&mut bob, update("carol", json!({"nickname": "c"})), denied, "forbidden").await;
    expect_error(&mut admin, json!({"cmd": "user_update", "updates": {}}), "User parameter is required", "bad_request")
        .await;
    expect_error(&mut admin, update("ghost", json!({"nickname": "g"})), "User not found", "not_found").await;
    for updates in [json!(null), json!("x"), json!([]), json!({})] {
        expect_error(&mut admin, update("bob", updates), "Updates must be an object", "bad_request").await;
    }
    expect_error(&mut admin, json!({"cmd": "user_update", "user": "bob"}), "Updates must be an object", "bad_request")
        .await;
    expect_error(&mut admin, update("bob", json!({"roles": []})), "Cannot update field: roles", "bad_request").await;
    for name in [json!(""), json!("   "), json!(5), json!(null)] {
        let frame = update("bob", json!({"username": name}));
        expect_error(&mut admin, frame, "Username must be a non-empty string", "bad_request").await;
    }
    expect_error(
        &mut admin,
        update("bob", json!({"username": "b"})),
        "Username must be 2-32 characters",
        "bad_request",
    )
    .await;
    let chars = "Username can only contain letters, numbers, hyphens, and underscores";
    expect_error(&mut admin, update("bob", json!({"username": "bad name"})), chars, "bad_request").await;
    expect_error(&mut admin, update("bob", json!({"username": "Carol"})), "Username already taken", "conflict").await;
    expect_error(&mut admin, update("bob", json!({"username": "originChats"})), "Username already taken", "conflict")
        .await;
    let nick = "Nickname must be a string or null";
    expect_error(&mut admin, update("bob", json!({"nickname": 7})), nick, "bad_request").await;
    let long = "Nickname too long (max 20 characters)";
    expect_error(&mut admin, update("bob", json!({"nickname": "n".repeat(21)})), long, "too_long").await;
    let ok = admin.request(update("bob", json!({"nickname": "ñ".repeat(20)}))).await;
    assert_eq!(ok["cmd"], "user_update", "{ok}");

    // MH: not on an owner, not at or above one's own position (also oneself); an owner may.
    let owner_err = "Cannot update the server owner";
    expect_error(&mut admin, update("boss", json!({"nickname": "x"})), owner_err, "forbidden").await;
    let position = "Cannot moderate users at or above your position";
    expect_error(&mut admin, update("admin2", json!({"nickname": "x"})), position, "forbidden").await;
    expect_error(&mut admin, update("admin1", json!({"nickname": "x"})), position, "forbidden").await;
    let ok = owner.request(update("admin2", json!({"nickname": "x"}))).await;
    assert_eq!(ok["cmd"], "user_update", "{ok}");
    let ok = owner.request(update("boss", json!({"nickname": "me"}))).await;
    assert_eq!(ok["cmd"], "user_update", "{ok}");
    // Nothing refused above was changed.
    let bob_row = server.store.user_by_name("bob").await.unwrap().unwrap();
    assert_eq!((bob_row.username.as_str(), bob_row.nickname.as_deref()), ("bob", Some("ñ".repeat(20).as_str())));
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// bans

#[tokio::test]
async fn ban_closes_every_socket_and_refuses_every_login() {
    let server = TestServer::spawn().await;
    let mut admin = server.member("admin1", &["admin"]).await;
    let set = server.http_register("bob").await;
    let mut b1 = server.login("bob", PASSWORD).await;
    let mut b2 = server.login("bob", PASSWORD).await;
    let mut carol = server.register("carol").await;
    let bob_id = server.user_id("bob").await;

    let r = admin.request(json!({"cmd": "user_ban", "user": "Bob"})).await;
    assert_eq!(unlisten(r), json!({"cmd": "user_ban", "user": "bob", "banned": true}));
    expect_kicked(&mut b1, "You have been banned", 4003).await;
    expect_kicked(&mut b2, "You have been banned", 4003).await;
    let gone = until(&mut carol, "user_disconnect").await;
    assert_eq!(gone.last().unwrap(), &json!({"cmd": "user_disconnect", "username": "bob"}));

    // No way back in: password over the socket and HTTP, the earlier access and refresh tokens.
    let banned = "Access denied: You are banned from this server";
    expect_login_refused(&server, "bob", banned, "banned").await;
    let (status, body) = server.post_json("/auth/login", json!({"username": "bob", "password": PASSWORD})).await;
    assert_eq!((status, body), (403, json!({"error": banned, "code": "banned"})));
    let mut c = server.connect().await;
    let r = c.request(json!({"cmd": "auth", "token": set["access_token"]})).await;
    assert_eq!((r["cmd"].as_str(), r["code"].as_str()), (Some("auth_error"), Some("invalid_token")), "{r}");
    let (status, _) = server.post_json("/auth/refresh", json!({"refresh_token": set["refresh_token"]})).await;
    assert_eq!(status, 401);

    // Banned accounts leave the user list and show in the ban list; banning again changes nothing.
    let list = carol.request(json!({"cmd": "users_list"})).await;
    assert!(list["users"].as_array().unwrap().iter().all(|u| u["username"] != "bob"), "{list}");
    let again = admin.request(json!({"cmd": "user_ban", "user": bob_id})).await;
    assert_eq!(unlisten(again), json!({"cmd": "user_ban", "user": "bob", "banned": false}));
    let banned_list = admin.request(json!({"cmd": "users_banned_list"})).await;
    assert_eq!(unlisten(banned_list), json!({"cmd": "users_banned_list", "users": ["bob"]}));

    // Unban: logins work again (with fresh credentials; the old sessions stay revoked).
    let r = admin.request(json!({"cmd": "user_unban", "user": "bob"})).await;
    assert_eq!(unlisten(r), json!({"cmd": "user_unban", "user": "bob", "unbanned": true}));
    let r = admin.request(json!({"cmd": "user_unban", "user": "bob"})).await;
    assert_eq!(r["unbanned"], false);
    assert_eq!(admin.request(json!({"cmd": "users_banned_list"})).await["users"], json!([]));
    let ready = server.login("bob", PASSWORD).await.request(json!({"cmd": "ping"})).await;
    assert_eq!(ready["cmd"], "pong");
    let mut c = server.connect().await;
    let r = c.request(json!({"cmd": "auth", "token": set["access_token"]})).await;
    assert_eq!(r["cmd"], "auth_error", "{r}");

    // Each change has one audit entry: ban, unban (not the no-op repeats).
    let log = modlog(&mut admin, json!({"target": "bob"})).await;
    let actions: Vec<&Value> = log["entries"].as_array().unwrap().iter().map(|e| &e["action"]).collect();
    assert_eq!(actions, [&json!("user_unban"), &json!("user_ban")], "{log}");
    server.stop().await;
}

#[tokio::test]
async fn ban_unban_and_banned_list_errors_and_hierarchy() {
    let server = TestServer::spawn().await;
    let mut owner = server.member("boss", &["owner"]).await;
    let mut admin = server.member("admin1", &["admin"]).await;
    let mut admin2 = server.member("admin2", &["admin"]).await;
    let mut bob = server.register("bob").await;
    let mut moderator = server.member("mod", &["moderator"]).await;
    let ban = |user: &str| json!({"cmd": "user_ban", "user": user});

    let denied = "Access denied: 'manage_users' permission required";
    expect_error(&mut bob, ban("admin1"), denied, "forbidden").await;
    expect_error(&mut moderator, ban("bob"), denied, "forbidden").await;
    expect_error(&mut bob, json!({"cmd": "user_unban", "user": "bob"}), denied, "forbidden").await;
    expect_error(&mut moderator, json!({"cmd": "users_banned_list"}), denied, "forbidden").await;
    for cmd in ["user_ban", "user_unban"] {
        expect_error(&mut admin, json!({"cmd": cmd}), "User parameter is required", "bad_request").await;
        let mistyped = "Field 'user' must be a string";
        expect_error(&mut admin, json!({"cmd": cmd, "user": 3}), mistyped, "bad_request").await;
        expect_error(&mut admin, json!({"cmd": cmd, "user": "ghost"}), "User not found", "not_found").await;
    }
    expect_error(&mut admin, ban("admin1"), "You cannot ban yourself", "forbidden").await;
    expect_error(&mut owner, ban("boss"), "You cannot ban yourself", "forbidden").await;
    expect_error(&mut admin, ban("boss"), "Cannot ban the server owner", "forbidden").await;
    let position = "Cannot moderate users at or above your position";
    expect_error(&mut admin, ban("admin2"), position, "forbidden").await;
    assert!(server.store.users_banned().await.unwrap().is_empty(), "nothing refused was applied");

    // An owner may ban at any position; an admin may ban below its own.
    let r = owner.request(ban("admin2")).await;
    assert_eq!(r["banned"], true, "{r}");
    expect_kicked(&mut admin2, "You have been banned", 4003).await;
    let r = admin.request(ban("mod")).await;
    assert_eq!(r["banned"], true, "{r}");
    expect_kicked(&mut moderator, "You have been banned", 4003).await;
    let list = owner.request(json!({"cmd": "users_banned_list"})).await;
    assert_eq!(list["users"], json!(["admin2", "mod"]));
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// timeouts

/// Asserts `r` is the timeout refusal of PROTOCOL §4.5 for `src` / `class`; returns its length.
fn assert_timeout_refusal(r: &Value, src: &str, class: &str, max_ms: u64) -> u64 {
    assert_eq!(r["cmd"], "rate_limit", "{r}");
    assert_eq!((r["src"].as_str(), r["class"].as_str()), (Some(src), Some(class)), "{r}");
    let length = r["length"].as_u64().unwrap();
    assert!(length > 0 && length <= max_ms, "{r}");
    let reason = r["reason"].as_str().unwrap();
    let secs = reason.strip_prefix("You are in timeout for ").and_then(|s| s.strip_suffix(" more seconds")).unwrap();
    let (whole, tenth) = secs.split_once('.').unwrap();
    assert!(whole.bytes().all(|b| b.is_ascii_digit()) && tenth.len() == 1, "{reason}");
    let shown: f64 = secs.parse().unwrap();
    assert!((shown * 1000.0 - length as f64).abs() <= 100.0, "{reason} vs {length}");
    length
}

#[tokio::test]
async fn timeout_refuses_limited_commands_with_rate_limit() {
    let server = TestServer::spawn().await;
    let mut admin = server.member("admin1", &["admin"]).await;
    let mut b1 = server.register("bob").await;
    let mut b2 = server.login("bob", PASSWORD).await;
    let mut carol = server.register("carol").await;
    let own = b1.request(json!({"cmd": "message_new", "channel": "general", "content": "mine"})).await;
    let theirs = carol.request(json!({"cmd": "message_new", "channel": "general", "content": "theirs"})).await;
    let (own_id, their_id) = (own["message"]["id"].clone(), theirs["message"]["id"].clone());

    let r = admin.request(json!({"cmd": "user_timeout", "user": "bob", "timeout": 60})).await;
    assert_eq!(unlisten(r), json!({"cmd": "user_timeout", "user": "bob", "timeout": 60}));
    let notice = json!({"cmd": "rate_limit", "reason": "User timeout set", "length": 60_000});
    assert_eq!(b1.recv_cmd("rate_limit").await, notice);
    assert_eq!(b2.recv_cmd("rate_limit").await, notice);

    let limited = [
        (json!({"cmd": "message_new", "channel": "general", "content": "let me speak"}), "messages"),
        (json!({"cmd": "message_edit", "id": own_id, "channel": "general", "content": "edited"}), "messages"),
        (json!({"cmd": "typing", "channel": "general"}), "typing"),
        (json!({"cmd": "message_react_add", "id": their_id, "channel": "general", "emoji": "👍"}), "reactions"),
        (json!({"cmd": "message_react_remove", "id": their_id, "channel": "general", "emoji": "👍"}), "reactions"),
    ];
    for (frame, class) in &limited {
        let r = b2.request(frame.clone()).await;
        assert_timeout_refusal(&r, frame["cmd"].as_str().unwrap(), class, 60_000);
        // No other reply, and nothing for anyone else.
        let rest = b2.drain().await;
        assert!(rest.is_empty(), "{frame}: {rest:?}");
    }
    assert!(carol.drain().await.is_empty(), "carol saw nothing of bob's refused commands");
    let history = carol.request(json!({"cmd": "messages_get", "channel": "general"})).await;
    let written = written(&history);
    let mut contents: Vec<&str> = written.iter().map(|m| m["content"].as_str().unwrap()).collect();
    contents.sort_unstable();
    assert_eq!(contents, ["mine", "theirs"]);
    assert!(history["messages"].as_array().unwrap().iter().all(|m| m.get("reactions").is_none()), "{history}");
    // Reads still work while timed out.
    assert_eq!(b1.request(json!({"cmd": "messages_get", "channel": "general"})).await["cmd"], "messages_get");

    // The timeout is stored: a new connection is refused too.
    let mut b3 = server.login("bob", PASSWORD).await;
    let r = b3.request(json!({"cmd": "message_new", "channel": "general", "content": "again"})).await;
    assert_timeout_refusal(&r, "message_new", "messages", 60_000);
    // A longer timeout replaces it.
    admin.request(json!({"cmd": "user_timeout", "user": "bob", "timeout": 3600})).await;
    assert_eq!(b3.recv_cmd("rate_limit").await["length"], 3_600_000);
    let r = b3.request(json!({"cmd": "typing", "channel": "general"})).await;
    assert!(assert_timeout_refusal(&r, "typing", "typing", 3_600_000) > 60_000);

    let log = modlog(&mut admin, json!({"action": "user_timeout"})).await;
    assert_eq!(log["total"], 2);
    assert_eq!(log["entries"][0]["details"]["seconds"], 3600);
    assert_eq!(log["entries"][0]["target_name"], "bob");
    server.stop().await;
}

#[tokio::test]
async fn timeout_errors_and_hierarchy() {
    let server = TestServer::spawn().await;
    server.member("boss", &["owner"]).await;
    let mut admin = server.member("admin1", &["admin"]).await;
    server.member("admin2", &["admin"]).await;
    let mut bob = server.register("bob").await;
    let timeout = |user: &str, t: Value| json!({"cmd": "user_timeout", "user": user, "timeout": t});

    let denied = "Access denied: 'manage_users' permission required";
    expect_error(&mut bob, timeout("admin1", json!(60)), denied, "forbidden").await;
    let positive = "Timeout must be a positive integer";
    for bad in [json!(0), json!(-5), json!(1.5), json!("60"), json!(null), json!(true)] {
        expect_error(&mut admin, timeout("bob", bad), positive, "bad_request").await;
    }
    expect_error(&mut admin, json!({"cmd": "user_timeout", "user": "bob"}), positive, "bad_request").await;
    let max = "Timeout cannot exceed 2419200 seconds";
    expect_error(&mut admin, timeout("bob", json!(2_419_201)), max, "bad_request").await;
    expect_error(&mut admin, timeout("bob", json!(u64::MAX)), max, "bad_request").await;
    let missing = json!({"cmd": "user_timeout", "timeout": 60});
    expect_error(&mut admin, missing, "User parameter is required", "bad_request").await;
    expect_error(&mut admin, timeout("ghost", json!(60)), "User not found", "not_found").await;
    expect_error(&mut admin, timeout("admin1", json!(60)), "You cannot timeout yourself", "forbidden").await;
    expect_error(&mut admin, timeout("boss", json!(60)), "Cannot timeout the server owner", "forbidden").await;
    let position = "Cannot moderate users at or above your position";
    expect_error(&mut admin, timeout("admin2", json!(60)), position, "forbidden").await;
    // None of that touched bob, who can still post.
    let r = bob.request(json!({"cmd": "message_new", "channel": "general", "content": "free"})).await;
    assert_eq!(r["cmd"], "message_new", "{r}");
    let ok = admin.request(timeout("bob", json!(2_419_200))).await;
    assert_eq!(ok["timeout"], 2_419_200);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// leaving and deleting accounts

#[tokio::test]
async fn user_leave_deletes_the_account_and_closes_with_1000() {
    let server = TestServer::spawn().await;
    let mut admin = server.member("admin1", &["admin"]).await;
    let mut b1 = server.register("bob").await;
    let mut b2 = server.login("bob", PASSWORD).await;
    let mut carol = server.register("carol").await;
    b1.request(json!({"cmd": "message_new", "channel": "general", "content": "hello"})).await;
    // Renamed before leaving: history keeps the last name.
    admin.request(json!({"cmd": "user_update", "user": "bob", "updates": {"username": "robert"}})).await;

    // S→A first (the requester included), then the reply, then the close.
    let leave = json!({"cmd": "user_leave", "username": "robert"});
    b1.send(json!({"cmd": "user_leave", "listener": "bye"})).await;
    let first = b1.recv_cmd("user_leave").await;
    assert_eq!(first, leave);
    let reply = b1.recv().await;
    assert_eq!(reply, json!({"cmd": "user_leave", "user": "robert", "val": "User left server", "listener": "bye"}));
    assert_eq!(b1.closed().await, Closed::Frame(1000, "User left server".into()));
    assert_eq!(b2.recv_cmd("user_leave").await, leave);
    assert_eq!(b2.closed().await, Closed::Frame(1000, "User left server".into()));
    assert_eq!(carol.recv_cmd("user_leave").await, leave);

    assert!(server.store.user_by_name("robert").await.unwrap().is_none());
    expect_login_refused(&server, "robert", "Invalid password", "invalid_credentials").await;
    let history = carol.request(json!({"cmd": "messages_get", "channel": "general"})).await;
    assert_eq!(written(&history)[0]["user"], "robert", "{history}");
    let list = carol.request(json!({"cmd": "users_list"})).await;
    assert!(list["users"].as_array().unwrap().iter().all(|u| u["username"] != "robert"));
    // The name is free again.
    server.http_register("robert").await;
    server.stop().await;
}

#[tokio::test]
async fn user_delete_by_an_administrator() {
    let server = TestServer::spawn().await;
    let mut owner = server.member("boss", &["owner"]).await;
    let mut admin = server.member("admin1", &["admin"]).await;
    server.member("admin2", &["admin"]).await;
    let mut moderator = server.member("mod", &["moderator"]).await;
    let mut bob = server.register("bob").await;
    let mut carol = server.register("carol").await;
    let bob_id = server.user_id("bob").await;
    let delete = |user: &str| json!({"cmd": "user_delete", "user": user});

    let denied = "Access denied: 'administrator' permission required";
    expect_error(&mut moderator, delete("bob"), denied, "forbidden").await;
    expect_error(&mut bob, delete("carol"), denied, "forbidden").await;
    expect_error(&mut admin, json!({"cmd": "user_delete"}), "User parameter is required", "bad_request").await;
    expect_error(&mut admin, delete("ghost"), "User not found", "not_found").await;
    expect_error(&mut admin, delete("admin1"), "You cannot delete yourself", "forbidden").await;
    expect_error(&mut admin, delete("boss"), "Cannot delete the server owner", "forbidden").await;
    let position = "Cannot moderate users at or above your position";
    expect_error(&mut admin, delete("admin2"), position, "forbidden").await;
    assert_eq!(server.store.user_count().await.unwrap(), 6);

    let r = admin.request(delete(&bob_id)).await;
    assert_eq!(unlisten(r), json!({"cmd": "user_delete", "user": "bob", "deleted": true}));
    expect_kicked(&mut bob, "Account deleted", 4003).await;
    let leave = json!({"cmd": "user_leave", "username": "bob"});
    assert_eq!(carol.recv_cmd("user_leave").await, leave);
    assert_eq!(admin.recv_cmd("user_leave").await, leave);
    assert!(server.store.user_by_id(&bob_id).await.unwrap().is_none());
    expect_login_refused(&server, "bob", "Invalid password", "invalid_credentials").await;
    let r = owner.request(delete("admin2")).await;
    assert_eq!(r["deleted"], true, "{r}");

    let log = modlog(&mut owner, json!({"action": "user_delete"})).await;
    let targets: Vec<&Value> = log["entries"].as_array().unwrap().iter().map(|e| &e["target_name"]).collect();
    assert_eq!(targets, [&json!("admin2"), &json!("bob")]);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// audit log

#[tokio::test]
async fn modlog_filters_paging_summary_and_errors() {
    let server = TestServer::spawn().await;
    let mut owner = server.member("boss", &["owner"]).await;
    let mut admin = server.member("admin1", &["admin"]).await;
    let mut moderator = server.member("mod", &["moderator"]).await;
    let mut bob = server.register("bob").await;
    server.http_register("carol").await;
    let admin_id = server.user_id("admin1").await;

    let r = admin.request(json!({"cmd": "user_timeout", "user": "bob", "timeout": 30})).await;
    assert_eq!(r["cmd"], "user_timeout", "{r}");
    let r = admin.request(json!({"cmd": "user_ban", "user": "carol"})).await;
    assert_eq!(r["banned"], true, "{r}");
    let r = owner.request(json!({"cmd": "user_unban", "user": "carol"})).await;
    assert_eq!(r["unbanned"], true, "{r}");
    let r = owner.request(json!({"cmd": "user_update", "user": "carol", "updates": {"nickname": "C"}})).await;
    assert_eq!(r["cmd"], "user_update", "{r}");
    let all = modlog(&mut moderator, json!({})).await;
    assert_eq!((all["total"].as_i64(), all["offset"].as_i64(), all["limit"].as_i64()), (Some(4), Some(0), Some(100)));
    let actions: Vec<&str> = all["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["user_update", "user_unban", "user_ban", "user_timeout"]);
    let entry = &all["entries"][2];
    let mut keys: Vec<&str> = entry.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["action", "actor_id", "actor_name", "category", "details", "id", "target_id", "target_name", "timestamp"]
    );
    assert_eq!(entry["actor_id"], admin_id);
    assert_eq!(entry["target_name"], "carol");
    assert!(entry["details"].is_object() && entry["timestamp"].is_f64(), "{entry}");

    // Filters: actor by name or id, target, action, category, after; paging.
    assert_eq!(modlog(&mut moderator, json!({"actor": "ADMIN1"})).await["total"], 2);
    assert_eq!(modlog(&mut moderator, json!({"actor": admin_id})).await["total"], 2);
    assert_eq!(modlog(&mut moderator, json!({"target": "carol"})).await["total"], 3);
    assert_eq!(modlog(&mut moderator, json!({"action": "user_ban"})).await["total"], 1);
    assert_eq!(modlog(&mut moderator, json!({"category": "user_moderation"})).await["total"], 4);
    assert_eq!(modlog(&mut moderator, json!({"category": "role_management"})).await["total"], 0);
    // Just past the ban (entries are separate commits, far more than 10 µs apart; the margin
    // absorbs float parsing).
    let t = all["entries"][2]["timestamp"].as_f64().unwrap() + 1e-5;
    let after = modlog(&mut moderator, json!({"after": t})).await;
    assert_eq!(after["total"], 2, "{after}");
    let after_text = modlog(&mut moderator, json!({"after": t.to_string()})).await;
    assert_eq!(after_text["total"], 2);
    let page = modlog(&mut moderator, json!({"limit": 1, "offset": 1, "actor": null})).await;
    assert_eq!((page["total"].as_i64(), page["offset"].as_i64(), page["limit"].as_i64()), (Some(4), Some(1), Some(1)));
    assert_eq!(page["entries"].as_array().unwrap().len(), 1);
    assert_eq!(page["entries"][0]["action"], "user_unban");
    assert_eq!(modlog(&mut moderator, json!({"limit": 200, "offset": 10})).await["entries"], json!([]));

    let get = |extra: Value| {
        let mut f = json!({"cmd": "modlog_get"});
        for (k, v) in extra.as_object().unwrap() {
            f[k] = v.clone();
        }
        f
    };
    let limit = "Limit must be between 1 and 200";
    for bad in [json!(0), json!(201), json!("5"), json!(1.5), json!(-1)] {
        expect_error(&mut moderator, get(json!({"limit": bad})), limit, "bad_request").await;
    }
    let offset = "Offset must be a non-negative integer";
    for bad in [json!(-1), json!(2.5), json!("0")] {
        expect_error(&mut moderator, get(json!({"offset": bad})), offset, "bad_request").await;
    }
    let after_err = "After must be a valid Unix timestamp";
    for bad in [json!("yesterday"), json!(true), json!([1])] {
        expect_error(&mut moderator, get(json!({"after": bad})), after_err, "bad_request").await;
    }

    let summary = moderator.request(json!({"cmd": "modlog_summary"})).await;
    assert_eq!(
        unlisten(summary),
        json!({"cmd": "modlog_summary", "total": 4, "category_totals": {"user_moderation": 4}, "action_counts": {
            "user_moderation.user_timeout": 1, "user_moderation.user_ban": 1,
            "user_moderation.user_unban": 1, "user_moderation.user_update": 1}})
    );

    let denied = "Access denied: 'view_audit_log' or 'manage_users' permission required";
    expect_error(&mut bob, json!({"cmd": "modlog_get"}), denied, "forbidden").await;
    expect_error(&mut bob, json!({"cmd": "modlog_summary"}), denied, "forbidden").await;
    assert_eq!(admin.request(json!({"cmd": "modlog_summary"})).await["total"], 4);
    server.stop().await;
}

#[tokio::test]
async fn manage_users_alone_moderates_below_and_reads_the_log() {
    let server = TestServer::spawn().await;
    // A role with only `manage_users`, below `user`; the directory is loaded at start.
    let warden = Role {
        id: uuid::Uuid::now_v7().to_string(),
        name: "warden".into(),
        description: String::new(),
        color: None,
        hoisted: false,
        permissions: json!(["manage_users"]).to_string(),
        self_assignable: false,
        category: None,
        position: 4,
    };
    server.store.role_create_last(&warden, None).await.unwrap();
    let server = server.restart().await;
    let mut w = server.member("keeper", &["warden"]).await;
    server.member("drifter", &[]).await;
    server.http_register("bob").await;

    assert_eq!(w.request(json!({"cmd": "modlog_get"})).await["total"], 0);
    assert_eq!(w.request(json!({"cmd": "modlog_summary"})).await["total"], 0);
    let position = "Cannot moderate users at or above your position";
    expect_error(&mut w, json!({"cmd": "user_ban", "user": "bob"}), position, "forbidden").await;
    let r = w.request(json!({"cmd": "user_ban", "user": "drifter"})).await;
    assert_eq!(r["banned"], true, "{r}");
    let denied = "Access denied: 'administrator' permission required";
    expect_error(&mut w, json!({"cmd": "user_delete", "user": "drifter"}), denied, "forbidden").await;
    assert_eq!(w.request(json!({"cmd": "users_banned_list"})).await["users"], json!(["drifter"]));
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// the same writes on PostgreSQL

#[tokio::test]
async fn moderation_writes_on_postgres() {
    let server = TestServer::spawn_with(Backend::Postgres, |_| {}).await;
    let mut owner = server.member("boss", &["owner"]).await;
    let mut bob = server.register("bob").await;
    let mut carol = server.register("carol").await;
    server.http_register("dave").await;
    bob.request(json!({"cmd": "message_new", "channel": "general", "content": "hi"})).await;

    let r = bob.request(json!({"cmd": "status_set", "status": "invisible", "text": "shh"})).await;
    assert_eq!(r["cmd"], "status_set", "{r}");
    assert_eq!(until(&mut carol, "user_disconnect").await.last().unwrap()["username"], "bob");
    let r = bob.request(json!({"cmd": "pfp_set", "url": "https://example.com/b.png"})).await;
    assert_eq!(r["val"], "https://example.com/b.png");
    let r = owner.request(json!({"cmd": "user_update", "user": "bob", "updates": {"username": "carol"}})).await;
    assert_eq!(r["val"], "Username already taken", "{r}");
    let r = owner
        .request(json!({"cmd": "user_update", "user": "bob", "updates": {"username": "rob", "nickname": "R"}}))
        .await;
    assert_eq!(r["username"], "rob", "{r}");
    let r = owner.request(json!({"cmd": "user_timeout", "user": "carol", "timeout": 60})).await;
    assert_eq!(r["timeout"], 60);
    let r = carol.request(json!({"cmd": "typing", "channel": "general"})).await;
    assert_eq!(r["cmd"], "rate_limit", "{r}");
    let r = owner.request(json!({"cmd": "user_ban", "user": "carol"})).await;
    assert_eq!(r["banned"], true, "{r}");
    expect_kicked(&mut carol, "You have been banned", 4003).await;
    assert_eq!(owner.request(json!({"cmd": "users_banned_list"})).await["users"], json!(["carol"]));
    assert_eq!(owner.request(json!({"cmd": "user_unban", "user": "carol"})).await["unbanned"], true);
    assert_eq!(owner.request(json!({"cmd": "user_delete", "user": "dave"})).await["deleted"], true);
    bob.send(json!({"cmd": "user_leave"})).await;
    assert_eq!(bob.closed().await, Closed::Frame(1000, "User left server".into()));
    let stored = server.store.user_by_name("carol").await.unwrap().unwrap();
    assert!(!stored.banned && stored.timeout_until.is_some_and(|t| t > confab::store::now()));

    let log = modlog(&mut owner, json!({"target": "carol"})).await;
    assert_eq!(log["total"], 3, "{log}");
    let t = log["entries"][1]["timestamp"].as_f64().unwrap() + 1e-5;
    assert_eq!(modlog(&mut owner, json!({"target": "carol", "after": t})).await["total"], 1);
    let summary = owner.request(json!({"cmd": "modlog_summary"})).await;
    assert_eq!(summary["total"], 5, "{summary}");
    assert_eq!(summary["category_totals"]["user_moderation"], 5);
    let history = owner.request(json!({"cmd": "messages_get", "channel": "general"})).await;
    assert_eq!(written(&history)[0]["user"], "rob");
    server.stop().await;
}
