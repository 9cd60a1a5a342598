//! Authorization and identity hardening (issue 13, items 1–6): the role hierarchy on every command
//! that acts on another account, slash responses bound to routed calls, the reserved system name
//! on every naming path, look-alike and invisible names, `view` for `webhook_create`, and the
//! claims an access token must carry.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use confab::auth::jwt::sign_raw;
use serde_json::{Value, json};

use crate::support::{Backend, Client, TestServer};

/// Sends `frame` and asserts the answer is exactly the `error` with `val` and `code`.
async fn expect_error(c: &mut Client, frame: Value, val: &str, code: &str) {
    let r = c.request(frame.clone()).await;
    assert_eq!(r["cmd"], "error", "{frame} -> {r}");
    assert_eq!(r["val"], val, "{frame} -> {r}");
    assert_eq!(r["code"], code, "{frame} -> {r}");
}

/// Sends `frame` and asserts the reply has the command's own `cmd`.
async fn expect_ok(c: &mut Client, frame: Value) -> Value {
    let cmd = frame["cmd"].as_str().unwrap().to_owned();
    expect_ok_as(c, frame, &cmd).await
}

/// Sends `frame` and asserts the reply is a `cmd` packet.
async fn expect_ok_as(c: &mut Client, frame: Value, cmd: &str) -> Value {
    let r = c.request(frame.clone()).await;
    assert_eq!(r["cmd"], cmd, "{frame} -> {r}");
    r
}

// ---------------------------------------------------------------------------------------------
// 1. the role hierarchy on every command that acts on another account

async fn hierarchy_guards_every_account_action(backend: Backend) {
    let server = TestServer::spawn_with(backend, |_| {}).await;
    let mut root = server.member("root", &["owner"]).await;
    let mut admin = server.member("boss", &["admin"]).await;
    server.member("peer", &["admin"]).await;
    server.member("carol", &["user"]).await;
    let position = "Cannot moderate users at or above your position";

    // An administrator mints no generic token for the owner (that would be the owner's login),
    // nor for a peer; below them it works.
    let create = |user: &str| json!({"cmd": "sauth_token_create", "user": user});
    expect_error(&mut admin, create("root"), "Cannot issue tokens for the server owner", "forbidden").await;
    expect_error(&mut admin, create("peer"), position, "forbidden").await;
    expect_ok(&mut admin, create("carol")).await;
    expect_ok(&mut admin, create("newcomer")).await;
    assert!(server.store.user_by_name("newcomer").await.unwrap().is_some());
    let peer_token = expect_ok(&mut root, create("peer")).await["token"].as_str().unwrap().to_owned();
    let revoke = |user: &str| json!({"cmd": "sauth_token_revoke", "user": user});
    expect_error(&mut admin, revoke("root"), "Cannot revoke tokens of the server owner", "forbidden").await;
    expect_error(&mut admin, revoke("peer"), position, "forbidden").await;
    let r = expect_ok(&mut admin, revoke("carol")).await;
    assert_eq!(r["revoked"], 1, "{r}");
    // The peer's token survived the refused revocation.
    let mut web = server.connect().await;
    let r = web.request(json!({"cmd": "auth", "username": "peer", "token": peer_token})).await;
    assert_eq!(r["cmd"], "authmsg", "{r}");

    // Role changes: not on a peer, even with roles the actor could manage.
    let set = |user: &str, roles: Value| json!({"cmd": "user_roles_set", "user": user, "roles": roles});
    expect_error(&mut admin, set("peer", json!(["admin", "moderator"])), position, "forbidden").await;
    let r = admin.request(set("carol", json!(["user", "moderator"]))).await;
    assert_eq!(r["cmd"], "user_roles_get", "{r}");

    // A bot holding a role at the actor's level keeps its token.
    let r = expect_ok(&mut root, json!({"cmd": "bot_create", "botusername": "helper", "roles": ["admin"]})).await;
    let token = r["bottoken"].as_str().unwrap().to_owned();
    let regenerate = json!({"cmd": "bot_token_regenerate", "botusername": "helper"});
    expect_error(&mut admin, regenerate.clone(), position, "forbidden").await;
    let mut bot = server.connect().await;
    bot.send(json!({"cmd": "botauth", "botusername": "helper", "bottoken": token})).await;
    bot.expect_auth().await;
    expect_ok(&mut root, regenerate).await;

    // The owner's ban of a peer is not lifted by another administrator.
    expect_ok(&mut root, json!({"cmd": "user_ban", "user": "peer"})).await;
    expect_error(&mut admin, json!({"cmd": "user_unban", "user": "peer"}), position, "forbidden").await;
    assert!(server.store.user_by_name("peer").await.unwrap().unwrap().banned);
    expect_ok(&mut root, json!({"cmd": "user_unban", "user": "peer"})).await;
    server.stop().await;
}

on_both! { hierarchy_guards_every_account_action => hierarchy_guards_every_account_action_sqlite, hierarchy_guards_every_account_action_postgres; }

// ---------------------------------------------------------------------------------------------
// 5. `webhook_create` needs `view` on the channel

async fn webhook_create_needs_view(backend: Backend) {
    let server = TestServer::spawn_with(backend, |_| {}).await;
    let mut root = server.member("root", &["owner"]).await;
    let role = json!({"cmd": "role_create", "name": "ops", "permissions": ["manage_server"]});
    expect_ok(&mut root, role).await;
    let secret = json!({"cmd": "channel_create", "name": "secret", "type": "text", "permissions": {"view": ["owner"]}});
    expect_ok(&mut root, secret).await;
    let mut ops = server.member("ops1", &["ops", "user"]).await;

    let create = |channel: &str| json!({"cmd": "webhook_create", "channel": channel, "name": "Deploys"});
    expect_error(&mut ops, create("secret"), "Access denied to this channel", "forbidden").await;
    expect_ok(&mut ops, create("general")).await;
    let list = expect_ok(&mut root, json!({"cmd": "webhook_list"})).await;
    let channels: Vec<&str> =
        list["webhooks"].as_array().unwrap().iter().map(|w| w["channel"].as_str().unwrap()).collect();
    assert_eq!(channels, ["general"], "{list}");
    server.stop().await;
}

on_both! { webhook_create_needs_view => webhook_create_needs_view_sqlite, webhook_create_needs_view_postgres; }

// ---------------------------------------------------------------------------------------------
// 6. access tokens carry `iat` and `jti` and claim no more than the configured lifetime

const SECRET: &str = "a-test-signing-secret-of-at-least-32-bytes";

async fn access_tokens_need_iat_jti_and_a_bounded_lifetime(backend: Backend) {
    let server = TestServer::spawn_with(backend, |cfg| {
        cfg.auth.jwt_secret = SECRET.to_owned();
        cfg.auth.access_ttl_s = 600;
    })
    .await;
    let set = server.http_register("alice").await;
    let access = set["access_token"].as_str().unwrap();
    let payload = access.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let (iat, exp) = (claims["iat"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
    assert_eq!(exp - iat, 600, "{claims}");
    let with = |changes: Value| {
        let mut c = claims.clone();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        sign_raw(&json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"}), &c, SECRET.as_bytes())
    };
    let auth = |token: &str| json!({"cmd": "auth", "token": token});
    let mut c = server.connect().await;
    let refused = [
        ("no iat", with(json!({"iat": null}))),
        ("iat in the future", with(json!({"iat": iat + 3600, "exp": iat + 3600 + 600}))),
        ("no jti", with(json!({"jti": null}))),
        ("empty jti", with(json!({"jti": ""}))),
        ("ten years", with(json!({"exp": iat + 10 * 365 * 86_400}))),
        ("one second too long", with(json!({"exp": iat + 601}))),
    ];
    for (why, token) in refused {
        let r = c.request(auth(&token)).await;
        assert_eq!(
            (r["cmd"].as_str(), r["val"].as_str()),
            (Some("auth_error"), Some("Invalid or expired token")),
            "{why}: {r}"
        );
    }
    // The refused attempts changed nothing: the same claims re-signed within the rules still work.
    c.send(auth(&with(json!({"jti": "another"})))).await;
    c.expect_auth().await;
    server.stop().await;
}

on_both! { access_tokens_need_iat_jti_and_a_bounded_lifetime => access_tokens_need_iat_jti_and_a_bounded_lifetime_sqlite, access_tokens_need_iat_jti_and_a_bounded_lifetime_postgres; }

// ---------------------------------------------------------------------------------------------
// 4. look-alike and invisible names; a refused change changes nothing

/// `/nick` through `slash_call`.
fn nick(nickname: &str) -> Value {
    json!({"cmd": "slash_call", "channel": "general", "command": "nick", "args": {"nickname": nickname}})
}

async fn names_refuse_lookalikes_and_hidden_characters(backend: Backend) {
    let server = TestServer::spawn_with(backend, |_| {}).await;
    let mut root = server.member("root", &["owner"]).await;
    let mut alice = server.register("alice").await;
    server.http_register("carol").await;
    let mut observer = server.register("watcher").await;

    // A refused `/nick` is neither stored nor announced (a NUL used to be both, then refused).
    let invalid = "Nickname contains invalid characters";
    for hidden in ["a\0b", "\0", "\u{202E}nimda", "ca\u{200B}rol", "x\u{2066}y", "\u{FEFF}bob", "a\u{7}"] {
        expect_error(&mut alice, nick(hidden), invalid, "bad_request").await;
    }
    // Another account's name, in any case or compatibility form, and the system name.
    let taken = "Nickname cannot be another user's username";
    for lookalike in ["carol", "CAROL", "ｃａｒｏｌ", "Root", "originchats", "ORIGINCHATS"] {
        expect_error(&mut alice, nick(lookalike), taken, "conflict").await;
    }
    assert_eq!(server.store.user_by_name("alice").await.unwrap().unwrap().nickname, None);
    let seen = observer.drain().await;
    assert!(!seen.iter().any(|p| p["cmd"] == "nickname_update" || p["cmd"] == "message_new"), "{seen:?}");
    // One's own name, and names nobody holds, are fine.
    let ok = alice.request(nick("ALICE")).await;
    assert_eq!(ok["cmd"], "message_new", "{ok}");
    let ok = alice.request(nick("Ali ✨")).await;
    assert_eq!(ok["cmd"], "message_new", "{ok}");
    assert_eq!(observer.recv_cmd("nickname_update").await["nickname"], "ALICE");

    // `user_update` applies the same rules, before anything is stored.
    let update = |nickname: &str| json!({"cmd": "user_update", "user": "alice", "updates": {"nickname": nickname}});
    expect_error(&mut root, update("n\0l"), invalid, "bad_request").await;
    expect_error(&mut root, update("\u{202D}x"), invalid, "bad_request").await;
    expect_error(&mut root, update("Ｃarol"), taken, "conflict").await;
    assert_eq!(server.store.user_by_name("alice").await.unwrap().unwrap().nickname.as_deref(), Some("Ali ✨"));
    let renamed = json!({"cmd": "user_update", "user": "alice", "updates": {"username": "originChats"}});
    expect_error(&mut root, renamed, "Username already taken", "conflict").await;

    // Channel and thread names: no format or control characters.
    let channel = |name: &str, kind: &str| json!({"cmd": "channel_create", "name": name, "type": kind});
    for hidden in ["gen\u{200B}eral", "\u{202E}lareneg", "a\u{2060}b", "a\u{AD}b"] {
        expect_error(&mut root, channel(hidden, "text"), "Invalid channel name", "bad_request").await;
    }
    expect_ok(&mut root, channel("forum", "forum")).await;
    let rename = json!({"cmd": "channel_update", "current_name": "forum", "updates": {"name": "fo\u{200D}rum"}});
    expect_error(&mut root, rename, "Invalid channel name", "bad_request").await;
    let thread = |name: &str| json!({"cmd": "thread_create", "channel": "forum", "name": name});
    let bad_thread = "Thread name contains invalid characters";
    for hidden in ["Q\u{202E}A", "a\0b", "x\u{200B}"] {
        expect_error(&mut root, thread(hidden), bad_thread, "bad_request").await;
    }
    let channels = expect_ok(&mut root, json!({"cmd": "channels_get"})).await;
    let names: Vec<&str> = channels["val"].as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
    assert!(names.iter().all(|n| n.chars().all(|c| c.is_alphanumeric() || c == '-')), "{names:?}");
    expect_ok(&mut root, thread("Q and A")).await;
    server.stop().await;
}

on_both! { names_refuse_lookalikes_and_hidden_characters => names_refuse_lookalikes_and_hidden_characters_sqlite, names_refuse_lookalikes_and_hidden_characters_postgres; }

// ---------------------------------------------------------------------------------------------
// 2. a slash response answers a call routed to that connection, once

async fn slash_responses_answer_routed_calls_once(backend: Backend) {
    let server = TestServer::spawn_with(backend, |_| {}).await;
    let mut root = server.member("root", &["owner"]).await;
    let r = expect_ok(&mut root, json!({"cmd": "bot_create", "botusername": "dice"})).await;
    let token = r["bottoken"].as_str().unwrap().to_owned();
    let botauth = json!({"cmd": "botauth", "botusername": "dice", "bottoken": token});
    let mut dice = server.connect().await;
    dice.send(botauth.clone()).await;
    dice.expect_auth().await;
    let mut dice_too = server.connect().await;
    dice_too.send(botauth).await;
    dice_too.expect_auth().await;
    let commands =
        json!([{"name": "roll", "description": "Roll"}, {"name": "whisper", "description": "Psst", "ephemeral": true}]);
    expect_ok(&mut dice, json!({"cmd": "slash_register", "commands": commands})).await;
    let other = json!({"cmd": "channel_create", "name": "other", "type": "text",
        "permissions": {"view": ["user"], "send": ["user"]}});
    expect_ok(&mut root, other).await;
    let mut alice = server.register("alice").await;
    let mut bob = server.register("bob").await;
    let (alice_id, bob_id) = (server.user_id("alice").await, server.user_id("bob").await);
    let respond = |extra: Value| {
        let mut frame = json!({"cmd": "slash_response", "channel": "general", "command": "roll", "response": "6"});
        for (k, v) in extra.as_object().unwrap() {
            frame[k] = v.clone();
        }
        frame
    };
    let none = "No pending call matches this slash response";

    // Nobody called: no attribution to bob, no unasked ephemeral message for him.
    expect_error(&mut dice, respond(json!({"invoker": bob_id})), none, "forbidden").await;
    let whisper = respond(json!({"command": "whisper", "invoker": bob_id, "response": "click this"}));
    expect_error(&mut dice, whisper, none, "forbidden").await;
    expect_error(&mut dice, respond(json!({})), none, "forbidden").await;

    // Alice calls: the answer must name her call (not bob, not another channel, not another
    // connection of the bot), and it is taken once.
    let call = alice.request(json!({"cmd": "slash_call", "channel": "general", "command": "roll"})).await;
    let call_id = call["call_id"].as_str().unwrap().to_owned();
    dice.recv_cmd("slash_call").await;
    expect_error(&mut dice, respond(json!({"invoker": bob_id})), none, "forbidden").await;
    expect_error(&mut dice, respond(json!({"call_id": call_id, "channel": "other"})), none, "forbidden").await;
    expect_error(&mut dice_too, respond(json!({"call_id": call_id})), none, "forbidden").await;
    let answer = expect_ok_as(&mut dice, respond(json!({"call_id": call_id})), "message_new").await;
    assert_eq!(answer["message"]["interaction"], json!({"command": "roll", "username": "alice"}));
    expect_error(&mut dice, respond(json!({"call_id": call_id})), none, "forbidden").await;
    expect_error(&mut dice, respond(json!({"invoker": alice_id})), none, "forbidden").await;

    // Without `command` (older bot libraries): the invoker's only call in that channel.
    alice.request(json!({"cmd": "slash_call", "channel": "general", "command": "whisper"})).await;
    dice.recv_cmd("slash_call").await;
    let older = json!({"cmd": "slash_response", "channel": "general", "invoker": alice_id, "response": "psst"});
    let answer = expect_ok_as(&mut dice, older.clone(), "message_new").await;
    assert_eq!(answer["message"]["interaction"], json!({"command": "whisper", "username": "alice"}));
    assert_eq!(alice.recv_cmd("message_new").await["message"]["content"], "psst");
    for _ in 0..2 {
        alice.request(json!({"cmd": "slash_call", "channel": "general", "command": "roll"})).await;
        dice.recv_cmd("slash_call").await;
    }
    let ambiguous = "More than one pending call matches this slash response: send its call_id";
    expect_error(&mut dice, older, ambiguous, "bad_request").await;
    // With the command named, the two calls are interchangeable: each is answered once.
    for _ in 0..2 {
        expect_ok_as(&mut dice, respond(json!({"invoker": alice_id})), "message_new").await;
    }
    expect_error(&mut dice, respond(json!({"invoker": alice_id})), none, "forbidden").await;

    // Bob saw exactly the two stored answers to alice's /roll calls and the first one, nothing else.
    let seen: Vec<Value> = bob.drain().await.into_iter().filter(|p| p["cmd"] == "message_new").collect();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|p| p["message"]["interaction"]["username"] == "alice"), "{seen:?}");
    server.stop().await;
}

on_both! { slash_responses_answer_routed_calls_once => slash_responses_answer_routed_calls_once_sqlite, slash_responses_answer_routed_calls_once_postgres; }
