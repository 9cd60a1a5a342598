//! Bots and slash commands (PROTOCOL §2.8, §6.8, §7.7, §8.3, §8.5): bots from the configuration
//! file, `bot_create` and the CLI; `botauth` and its throttles; token regeneration and deletion
//! closing live sockets; registration, listing, routing and answering of slash commands, the
//! built-in commands, ephemeral answers and `slash_remove` when a handler goes away.
//!
//! "Did not receive" is checked without waiting: one connection's packets arrive in the order the
//! server produced them, so once a later reply has arrived, anything produced before it has too.

use confab::{
    auth::tokens::hash_token,
    config::{BotConfig, Config},
};
use serde_json::{Value, json};

use crate::support::{Backend, Client, Closed, TestServer, written};

const PASSWORD: &str = "correct horse";
/// A configured bot's plain token (at least 43 characters).
const NOTIFIER_TOKEN: &str = "notifier-0123456789-abcdefghijklmnopqrstuvwxyz";
/// A configured bot given by digest only.
const HASHED_TOKEN: &str = "hashed-bot-token-0123456789-abcdefghijklmnopqrst";

// ---------------------------------------------------------------------------------------------
// helpers

/// The configuration of most tests: `notifier` with a plain token and `hashed` with a digest.
fn with_bots(cfg: &mut Config) {
    cfg.bots = vec![
        BotConfig { name: "notifier".into(), token: NOTIFIER_TOKEN.into(), ..BotConfig::default() },
        BotConfig {
            name: "hashed".into(),
            token_hash: hash_token(HASHED_TOKEN),
            roles: vec!["moderator".into(), "user".into()],
            ..BotConfig::default()
        },
    ];
}

async fn spawn() -> TestServer {
    TestServer::spawn_with(Backend::Sqlite, with_bots).await
}

/// `botauth` on `c`; returns the first answer (`auth_success` or `auth_error`).
async fn botauth(c: &mut Client, name: &str, token: &str) -> Value {
    c.request(json!({"cmd": "botauth", "botusername": name, "bottoken": token})).await
}

/// Asserts that `botauth` on a new socket fails with `val` / `code`.
async fn botauth_refused(server: &TestServer, name: &str, token: &str, val: &str, code: &str) {
    let mut c = server.connect().await;
    let r = botauth(&mut c, name, token).await;
    assert_eq!(r, json!({"cmd": "auth_error", "val": val, "code": code, "listener": r["listener"]}), "{name}");
}

/// A bot logged in over a new socket; returns the client and its `ready`.
async fn bot(server: &TestServer, name: &str, token: &str) -> (Client, Value) {
    let mut c = server.connect().await;
    c.send(json!({"cmd": "botauth", "botusername": name, "bottoken": token})).await;
    let ready = c.expect_auth().await;
    (c, ready)
}

/// Sends `frame` and asserts the answer is exactly the `error` with `val` and `code`.
async fn expect_error(c: &mut Client, frame: Value, val: &str, code: &str) {
    let r = c.request(frame.clone()).await;
    assert_eq!(r["cmd"], "error", "{frame} -> {r}");
    assert_eq!(r["src"], frame["cmd"], "{frame} -> {r}");
    assert_eq!(r["val"], val, "{frame} -> {r}");
    assert_eq!(r["code"], code, "{frame} -> {r}");
}

fn cmds(packets: &[Value]) -> Vec<&str> {
    packets.iter().map(|p| p["cmd"].as_str().unwrap_or("?")).collect()
}

/// The next presence event (`user_join` or `user_connect`) about account `name` on `c`.
async fn next_presence(c: &mut Client, name: &str) -> Value {
    loop {
        let p = c.recv().await;
        if matches!(p["cmd"].as_str(), Some("user_join" | "user_connect")) && p["user"]["username"] == name {
            return p;
        }
    }
}

/// Expects `disconnect` with `reason`, then a close frame with `code`.
async fn expect_kicked(c: &mut Client, reason: &str, code: u16) {
    let d = c.recv_cmd("disconnect").await;
    assert_eq!(d, json!({"cmd": "disconnect", "reason": reason}));
    match c.closed().await {
        Closed::Frame(got, _) => assert_eq!(got, code, "{reason}"),
        Closed::Dropped => panic!("expected close {code}, the connection was dropped"),
    }
}

/// Audit actions, newest first, as an administrator sees them.
async fn audit_actions(admin: &mut Client) -> Vec<String> {
    let r = admin.request(json!({"cmd": "modlog_get"})).await;
    assert_eq!(r["cmd"], "modlog_get", "{r}");
    r["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect()
}

fn names(commands: &Value) -> Vec<&str> {
    commands.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect()
}

/// The registration used by most slash tests: `/roll` with an int and an enum option.
fn roll() -> Value {
    json!({"name": "roll", "description": "Roll dice", "options": [
        {"name": "sides", "description": "Sides", "type": "int"},
        {"name": "mode", "description": "Mode", "type": "enum", "choices": ["fair", "loaded"], "required": false},
    ]})
}

async fn register_commands(c: &mut Client, commands: Value) -> Value {
    c.request(json!({"cmd": "slash_register", "commands": commands})).await
}

// ---------------------------------------------------------------------------------------------
// botauth

#[tokio::test]
async fn configured_bots_log_in_and_are_announced_once() {
    let server = spawn().await;
    let mut alice = server.register("alice").await;
    let caps = strings(&alice.handshake["val"]["capabilities"]);
    for cap in ["botauth", "bot_create", "bot_delete", "bot_token_regenerate", "slash_call", "slash_response"] {
        assert!(caps.contains(&cap), "{cap} missing");
    }
    assert!(strings(&alice.handshake["val"]["extensions"]).contains(&"bots"));

    let (mut notifier, ready) = bot(&server, "Notifier", NOTIFIER_TOKEN).await;
    let user = &ready["user"];
    assert_eq!(user["username"], "notifier");
    assert_eq!(user["id"], server.user_id("notifier").await);
    assert_eq!((user["bot"].as_bool(), user["cracked"].as_bool()), (Some(true), Some(true)));
    assert_eq!(user["roles"], json!(["user"]), "a bot without roles gets auth.default_roles");
    // The first login announces the bot, then its connection.
    let join = next_presence(&mut alice, "notifier").await;
    assert_eq!(join, json!({"cmd": "user_join", "user": {"username": "notifier", "roles": ["user"], "color": null}}));
    assert_eq!(next_presence(&mut alice, "notifier").await["cmd"], "user_connect");
    let r = notifier.request(json!({"cmd": "message_new", "channel": "general", "content": "beep"})).await;
    assert_eq!(r["message"]["user"], "notifier", "{r}");

    // A second login is only a connection.
    notifier.ws.close(None).await.ok();
    alice.recv_cmd("user_disconnect").await;
    let (_again, _) = bot(&server, "notifier", NOTIFIER_TOKEN).await;
    assert_eq!(next_presence(&mut alice, "notifier").await["cmd"], "user_connect");

    // A bot configured by digest, with roles.
    let (_hashed, ready) = bot(&server, "hashed", HASHED_TOKEN).await;
    assert_eq!(ready["user"]["roles"], json!(["moderator", "user"]));
    let users = alice.request(json!({"cmd": "users_list"})).await;
    let listed = users["users"].as_array().unwrap().iter().find(|u| u["username"] == "hashed").unwrap().clone();
    assert_eq!(listed["bot"], true);

    for (name, token) in [("notifier", "wrong"), ("notifier", HASHED_TOKEN), ("ghost", NOTIFIER_TOKEN), ("alice", "x")]
    {
        botauth_refused(&server, name, token, "Invalid bot credentials", "invalid_bot_credentials").await;
    }
    let mut c = server.connect().await;
    let r = c.request(json!({"cmd": "botauth", "botusername": "notifier"})).await;
    assert_eq!(r["val"], "Invalid bot credentials");
    // After auth_success, botauth is an unknown command.
    let (mut bot_again, _) = bot(&server, "hashed", HASHED_TOKEN).await;
    let r = botauth(&mut bot_again, "hashed", HASHED_TOKEN).await;
    assert_eq!(
        (r["val"].as_str(), r["code"].as_str()),
        (Some("Unknown command: botauth"), Some("already_authenticated"))
    );
    server.stop().await;
}

#[tokio::test]
async fn bots_disabled() {
    let server = TestServer::spawn_with(Backend::Sqlite, |cfg| {
        with_bots(cfg);
        cfg.bots_enabled = false;
    })
    .await;
    let mut root = server.member("root", &["owner"]).await;
    let caps = strings(&root.handshake["val"]["capabilities"]);
    for cap in ["botauth", "bot_create", "bot_delete", "bot_token_regenerate"] {
        assert!(!caps.contains(&cap), "{cap} advertised with bots disabled");
    }
    for cap in ["slash_call", "slash_list", "slash_register", "slash_response"] {
        assert!(caps.contains(&cap), "{cap} missing");
    }
    assert!(!strings(&root.handshake["val"]["extensions"]).contains(&"bots"));
    botauth_refused(&server, "notifier", NOTIFIER_TOKEN, "Bot authentication is disabled", "bots_disabled").await;
    for cmd in ["bot_create", "bot_delete", "bot_token_regenerate"] {
        expect_error(
            &mut root,
            json!({"cmd": cmd, "botusername": "notifier"}),
            "Bot authentication is disabled",
            "disabled",
        )
        .await;
    }
    server.stop().await;
}

#[tokio::test]
async fn bots_cannot_use_passwords_jwts_or_sauth() {
    let server = spawn().await;
    let mut root = server.member("root", &["owner"]).await;
    let mut c = server.connect().await;
    let r = c.request(json!({"cmd": "login", "username": "notifier", "password": NOTIFIER_TOKEN})).await;
    assert_eq!((r["val"].as_str(), r["code"].as_str()), (Some("Invalid password"), Some("invalid_credentials")));
    let r = c.request(json!({"cmd": "register", "username": "Notifier", "password": PASSWORD})).await;
    assert_eq!(r["val"], "Username already taken");
    // No password means no JWT from the HTTP login either.
    let (status, body) =
        server.post_json("/auth/login", json!({"username": "notifier", "password": NOTIFIER_TOKEN})).await;
    assert_eq!(status, 401, "{body}");
    // SAUTH2 generic tokens are for local accounts only.
    let r = root.request(json!({"cmd": "sauth_token_create", "user": "notifier"})).await;
    assert_eq!(r["cmd"], "error", "{r}");
    let r = c.request(json!({"cmd": "auth", "username": "notifier", "token": NOTIFIER_TOKEN})).await;
    assert_eq!((r["val"].as_str(), r["code"].as_str()), (Some("Invalid username or token"), Some("invalid_token")));
    server.stop().await;
}

#[tokio::test]
async fn failed_bot_logins_are_throttled_per_name_and_per_ip() {
    let server = TestServer::spawn_with(Backend::Sqlite, |cfg| {
        with_bots(cfg);
        cfg.rate_limits.enabled = true;
    })
    .await;
    let mut c = server.connect().await;
    for _ in 0..5 {
        assert_eq!(botauth(&mut c, "notifier", "wrong").await["code"], "invalid_bot_credentials");
    }
    // The name is locked now: even the right token is refused.
    let r = botauth(&mut c, "NOTIFIER", NOTIFIER_TOKEN).await;
    assert_eq!(r["code"], "auth_rate_limited", "{r}");
    let text = r["val"].as_str().unwrap();
    assert!(
        text.starts_with("Too many authentication attempts. Try again in ") && text.ends_with(" seconds"),
        "{text}"
    );
    // Five more failures (other names) empty this address's bucket of ten.
    for i in 0..5 {
        assert_eq!(botauth(&mut c, &format!("ghost{i}"), "x").await["code"], "invalid_bot_credentials");
    }
    assert_eq!(botauth(&mut c, "hashed", HASHED_TOKEN).await["code"], "auth_rate_limited");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// administration

#[tokio::test]
async fn bot_create_announces_and_the_token_logs_in() {
    let server = spawn().await;
    let mut root = server.member("root", &["owner"]).await;
    let mut alice = server.register("alice").await;
    let r = root.request(json!({"cmd": "bot_create", "botusername": " Helper ", "roles": ["moderator"]})).await;
    assert_eq!(r["cmd"], "bot_create", "{r}");
    let id = server.user_id("helper").await;
    assert_eq!(r["bot"], json!({"id": id, "username": "Helper"}));
    let token = r["bottoken"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 43);
    let join = next_presence(&mut alice, "Helper").await;
    assert_eq!(join["cmd"], "user_join");
    assert_eq!(join["user"]["roles"], json!(["moderator"]));

    let (_helper, ready) = bot(&server, "helper", &token).await;
    assert_eq!(ready["user"]["bot"], true);
    assert_eq!(ready["user"]["cracked"], true);
    assert_eq!(ready["user"]["roles"], json!(["moderator"]));
    // bot_create announced it already: its first login is only a connection.
    assert_eq!(next_presence(&mut alice, "Helper").await, json!({"cmd": "user_connect", "user": join["user"]}));
    // Without roles: the default roles.
    let r = root.request(json!({"cmd": "bot_create", "botusername": "plain"})).await;
    let (_plain, ready) = bot(&server, "plain", r["bottoken"].as_str().unwrap()).await;
    assert_eq!(ready["user"]["roles"], json!(["user"]));

    expect_error(&mut root, json!({"cmd": "bot_create"}), "User parameter is required", "bad_request").await;
    expect_error(
        &mut root,
        json!({"cmd": "bot_create", "botusername": "x"}),
        "Username must be 2-32 characters",
        "bad_request",
    )
    .await;
    expect_error(
        &mut root,
        json!({"cmd": "bot_create", "botusername": "no spaces"}),
        "Username can only contain letters, numbers, hyphens, and underscores",
        "bad_request",
    )
    .await;
    for taken in ["ALICE", "notifier", "originChats"] {
        expect_error(
            &mut root,
            json!({"cmd": "bot_create", "botusername": taken}),
            "Username already taken",
            "conflict",
        )
        .await;
    }
    expect_error(
        &mut root,
        json!({"cmd": "bot_create", "botusername": "rolebot", "roles": ["nope"]}),
        "Role 'nope' does not exist",
        "not_found",
    )
    .await;
    expect_error(
        &mut alice,
        json!({"cmd": "bot_create", "botusername": "mine"}),
        "Access denied: 'administrator' permission required",
        "forbidden",
    )
    .await;
    // An administrator who is not an owner cannot hand out the owner role.
    let mut ada = server.member("ada", &["admin"]).await;
    expect_error(
        &mut ada,
        json!({"cmd": "bot_create", "botusername": "boss", "roles": ["owner"]}),
        "Cannot manage roles at or above your position",
        "forbidden",
    )
    .await;
    assert!(server.store.user_by_name("boss").await.unwrap().is_none());
    assert_eq!(audit_actions(&mut root).await.iter().filter(|a| *a == "bot_create").count(), 2);
    server.stop().await;
}

#[tokio::test]
async fn regenerating_a_token_closes_the_bot_and_the_old_token_never_works_again() {
    let server = spawn().await;
    let mut root = server.member("root", &["owner"]).await;
    let (mut notifier, _) = bot(&server, "notifier", NOTIFIER_TOKEN).await;
    let r = root.request(json!({"cmd": "bot_token_regenerate", "botusername": "Notifier"})).await;
    assert_eq!(r["cmd"], "bot_token_regenerate", "{r}");
    assert_eq!(r["botusername"], "notifier");
    let fresh = r["bottoken"].as_str().unwrap().to_owned();
    assert_eq!(fresh.len(), 43);
    expect_kicked(&mut notifier, "Session revoked", 4004).await;
    botauth_refused(&server, "notifier", NOTIFIER_TOKEN, "Invalid bot credentials", "invalid_bot_credentials").await;
    bot(&server, "notifier", &fresh).await;
    assert_eq!(audit_actions(&mut root).await[0], "bot_token_regenerate");

    expect_error(&mut root, json!({"cmd": "bot_token_regenerate"}), "User parameter is required", "bad_request").await;
    for name in ["ghost", "root"] {
        expect_error(
            &mut root,
            json!({"cmd": "bot_token_regenerate", "botusername": name}),
            "Bot not found",
            "not_found",
        )
        .await;
    }
    // The configuration file still names the replaced token: a restart does not bring it back.
    let server = server.restart().await;
    botauth_refused(&server, "notifier", NOTIFIER_TOKEN, "Invalid bot credentials", "invalid_bot_credentials").await;
    bot(&server, "notifier", &fresh).await;
    server.stop().await;
}

#[tokio::test]
async fn bot_delete_acts_as_user_delete() {
    let server = spawn().await;
    let mut root = server.member("root", &["owner"]).await;
    let mut alice = server.register("alice").await;
    let (mut notifier, _) = bot(&server, "notifier", NOTIFIER_TOKEN).await;
    expect_error(
        &mut alice,
        json!({"cmd": "bot_delete", "botusername": "notifier"}),
        "Access denied: 'administrator' permission required",
        "forbidden",
    )
    .await;
    expect_error(&mut root, json!({"cmd": "bot_delete", "botusername": "alice"}), "Bot not found", "not_found").await;
    let r = root.request(json!({"cmd": "bot_delete", "botusername": "notifier"})).await;
    assert_eq!(r, json!({"cmd": "bot_delete", "botusername": "notifier", "deleted": true, "listener": r["listener"]}));
    expect_kicked(&mut notifier, "Account deleted", 4003).await;
    assert_eq!(alice.recv_cmd("user_leave").await, json!({"cmd": "user_leave", "username": "notifier"}));
    assert!(server.store.user_by_name("notifier").await.unwrap().is_none());
    botauth_refused(&server, "notifier", NOTIFIER_TOKEN, "Invalid bot credentials", "invalid_bot_credentials").await;
    expect_error(&mut root, json!({"cmd": "bot_delete", "botusername": "notifier"}), "Bot not found", "not_found")
        .await;
    assert_eq!(audit_actions(&mut root).await[0], "bot_delete");
    server.stop().await;
}

#[tokio::test]
async fn the_cli_adds_bots_and_prints_the_token_once() {
    let server = TestServer::spawn().await;
    let mut alice = server.register("alice").await;
    let run = |args: &[&str]| {
        crate::cli::command(&server.config.data_dir)
            .args(args)
            .arg("--data-dir")
            .arg(&server.config.data_dir)
            .output()
            .unwrap()
    };
    let out = run(&["bot", "add", "clibot", "--role", "moderator"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(token.len(), 43, "stdout is the token alone");
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&token));
    let stored = server.store.user_by_name("clibot").await.unwrap().unwrap();
    assert!(stored.is_bot());
    assert_eq!(server.store.bot_token_hash(&stored.id).await.unwrap(), Some(hash_token(&token)));

    let (_clibot, ready) = bot(&server, "clibot", &token).await;
    assert_eq!(ready["user"]["roles"], json!(["moderator"]));
    // Created outside the server: announced by its first login.
    assert_eq!(next_presence(&mut alice, "clibot").await["cmd"], "user_join");

    let out = run(&["bot", "add", "other", "--role", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Role 'nope' does not exist"));
    let out = run(&["bot", "add", "alice"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Username already taken"));
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// slash commands

#[tokio::test]
async fn registered_commands_are_listed_routed_and_answered() {
    let server = spawn().await;
    let mut alice = server.register("alice").await;
    let mut bob = server.register("bob").await;
    let (mut notifier, _) = bot(&server, "notifier", NOTIFIER_TOKEN).await;

    let r = register_commands(&mut notifier, json!([roll()])).await;
    assert_eq!(
        r,
        json!({"cmd": "slash_register", "val": "1 commands registered successfully", "listener": r["listener"]})
    );
    let added = alice.recv_cmd("slash_add").await;
    let entry = &added["commands"][0];
    assert_eq!(entry["name"], "roll");
    assert_eq!(entry["registeredBy"], "notifier");
    assert_eq!(entry["ephemeral"], false);
    assert_eq!(
        entry["options"][0],
        json!({"name": "sides", "description": "Sides", "type": "int", "choices": null, "required": true})
    );
    assert_eq!(notifier.recv_cmd("slash_add").await, added, "the registering connection hears slash_add too");

    let list = alice.request(json!({"cmd": "slash_list"})).await;
    assert_eq!(names(&list["commands"]), ["help", "nick", "ban", "unban", "mute", "unmute", "roll"]);
    let builtin = |name: &str| list["commands"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap().clone();
    assert_eq!(builtin("help")["registeredBy"], "originChats");
    assert_eq!(builtin("ban")["permission"], "manage_users");
    assert!(builtin("nick").get("permission").is_none());

    // A call goes to the handler; the invoker gets the same packet as its reply.
    let call = json!({"cmd": "slash_call", "channel": "general", "command": "roll", "args": {"sides": 6}});
    let reply = alice.request(call).await;
    assert_eq!(reply["cmd"], "slash_call", "{reply}");
    assert_eq!(reply["val"], json!({"command": "roll", "args": {"sides": 6}, "commander": "notifier"}));
    assert_eq!(reply["invoker"], server.user_id("alice").await);
    assert_eq!(reply["invokerUsername"], "alice");
    assert_eq!(reply["channel"], "general");
    let call_id = reply["call_id"].as_str().unwrap().to_owned();
    let routed = notifier.recv_cmd("slash_call").await;
    let mut expected = reply.clone();
    expected.as_object_mut().unwrap().remove("listener");
    assert_eq!(routed, expected);

    // The answer names the call; its invoker comes from it.
    let answer = notifier
        .request(json!({"cmd": "slash_response", "channel": "general", "command": "roll", "response": "4", "call_id": call_id}))
        .await;
    assert_eq!(answer["cmd"], "message_new", "{answer}");
    assert_eq!(answer["global"], true);
    assert!(answer["seq"].as_i64().unwrap() > 0);
    let message = &answer["message"];
    assert_eq!((message["user"].as_str(), message["content"].as_str()), (Some("notifier"), Some("4")));
    assert_eq!(message["interaction"], json!({"command": "roll", "username": "alice"}));
    let seen = bob.recv_cmd("message_new").await;
    assert_eq!(seen["message"]["id"], message["id"]);
    assert!(seen.get("listener").is_none());
    // `invoker` by id (no `call_id`) answers that invoker's call, with embeds; stored like any message.
    let bob_id = server.user_id("bob").await;
    bob.request(json!({"cmd": "slash_call", "channel": "general", "command": "roll", "args": {"sides": 6}})).await;
    notifier.recv_cmd("slash_call").await;
    let answer = notifier
        .request(json!({"cmd": "slash_response", "channel": "general", "command": "roll", "embeds": [{"title": "six"}], "invoker": bob_id}))
        .await;
    assert_eq!(answer["message"]["interaction"], json!({"command": "roll", "username": "bob"}));
    assert_eq!(answer["message"]["embeds"][0]["title"], "six");
    let history = alice.request(json!({"cmd": "messages_get", "channel": "general"})).await;
    let stored = history["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(stored["id"], answer["message"]["id"]);
    assert_eq!(stored["interaction"], json!({"command": "roll", "username": "bob"}));
    // Every call is answered: a further response answers nothing.
    let answer = notifier
        .request(json!({"cmd": "slash_response", "channel": "general", "command": "roll", "response": "x"}))
        .await;
    assert_eq!(answer["val"], "No pending call matches this slash response", "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn slash_call_checks_the_channel_the_command_and_its_arguments() {
    let server = spawn().await;
    let mut root = server.member("root", &["owner"]).await;
    let mut alice = server.register("alice").await;
    let (mut notifier, _) = bot(&server, "notifier", NOTIFIER_TOKEN).await;
    let vip = json!({"name": "vip", "description": "", "whitelistRoles": ["vip"]});
    let nousers = json!({"name": "nousers", "description": "", "blacklistRoles": ["moderator", "user"]});
    register_commands(&mut notifier, json!([roll(), vip, nousers])).await;
    let r = root
        .request(json!({"cmd": "channel_create", "name": "news", "type": "text",
        "permissions": {"view": ["user"], "send": ["owner"]}}))
        .await;
    assert_eq!(r["cmd"], "channel_create", "{r}");

    let call = |args: Value| json!({"cmd": "slash_call", "channel": "general", "command": "roll", "args": args});
    let bad = "bad_request";
    expect_error(
        &mut alice,
        json!({"cmd": "slash_call", "command": "roll"}),
        "Channel parameter is required for slash commands",
        bad,
    )
    .await;
    expect_error(
        &mut alice,
        json!({"cmd": "slash_call", "channel": "general", "command": 5}),
        "Command name must be a string",
        bad,
    )
    .await;
    expect_error(
        &mut alice,
        json!({"cmd": "slash_call", "channel": "general", "command": "roll", "args": [1]}),
        "Command args must be an object",
        bad,
    )
    .await;
    expect_error(
        &mut alice,
        json!({"cmd": "slash_call", "channel": "nowhere", "command": "roll"}),
        "Channel not found",
        "not_found",
    )
    .await;
    expect_error(
        &mut alice,
        json!({"cmd": "slash_call", "channel": "news", "command": "roll"}),
        "You do not have permission to send messages in this channel",
        "forbidden",
    )
    .await;
    expect_error(
        &mut alice,
        json!({"cmd": "slash_call", "channel": "general", "command": "nope"}),
        "Unknown slash command: /nope",
        "not_found",
    )
    .await;
    expect_error(&mut alice, call(json!({"sides": 6, "colour": "red"})), "Unknown argument: colour", bad).await;
    expect_error(&mut alice, call(json!({})), "Missing required argument: sides", bad).await;
    expect_error(&mut alice, call(json!({"sides": "six"})), "Invalid value for 'sides': expected int", bad).await;
    expect_error(
        &mut alice,
        call(json!({"sides": 6, "mode": "odd"})),
        "Invalid value for 'mode': must be one of fair, loaded",
        bad,
    )
    .await;
    expect_error(
        &mut alice,
        json!({"cmd": "slash_call", "channel": "general", "command": "vip"}),
        "Access denied: 'vip' role required",
        "forbidden",
    )
    .await;
    expect_error(
        &mut alice,
        json!({"cmd": "slash_call", "channel": "general", "command": "nousers"}),
        "Access denied: 'user' role is forbidden",
        "forbidden",
    )
    .await;
    // None of the refused calls reached the handler: its next slash_call is this one.
    let ok = alice.request(call(json!({"sides": 6, "mode": "fair"}))).await;
    assert_eq!(ok["cmd"], "slash_call", "{ok}");
    assert_eq!(notifier.recv_cmd("slash_call").await["call_id"], ok["call_id"]);

    // use_slash_commands is needed at all.
    server.http_register("silent").await;
    server.set_roles("silent", &[]).await;
    let mut silent = server.login("silent", PASSWORD).await;
    expect_error(
        &mut silent,
        call(json!({"sides": 6})),
        "Access denied: 'use_slash_commands' permission required",
        "forbidden",
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn registrations_are_checked_replaced_and_removed_with_their_connection() {
    let server = spawn().await;
    let mut alice = server.register("alice").await;
    let (mut notifier, _) = bot(&server, "notifier", NOTIFIER_TOKEN).await;
    let (mut hashed, _) = bot(&server, "hashed", HASHED_TOKEN).await;

    let bad = "bad_request";
    expect_error(&mut notifier, json!({"cmd": "slash_register"}), "Commands must be provided as a list", bad).await;
    expect_error(
        &mut notifier,
        json!({"cmd": "slash_register", "commands": {"name": "x"}}),
        "Commands must be provided as a list",
        bad,
    )
    .await;
    for schema in [
        json!([{"name": "Roll", "description": ""}]),
        json!([{"name": "roll"}]),
        json!([{"name": "roll", "description": "", "options": [{"name": "e", "description": "", "type": "enum"}]}]),
    ] {
        let r = register_commands(&mut notifier, schema.clone()).await;
        assert_eq!(r["code"], bad, "{schema} -> {r}");
        assert!(r["val"].as_str().unwrap().starts_with("Invalid command schema: "), "{r}");
    }
    expect_error(
        &mut notifier,
        json!({"cmd": "slash_register", "commands": [{"name": "ban", "description": ""}]}),
        "Slash command /ban is reserved",
        "conflict",
    )
    .await;

    let flip = json!({"name": "flip", "description": "Flip a coin"});
    let r = register_commands(&mut notifier, json!([roll(), flip])).await;
    assert_eq!(r["val"], "2 commands registered successfully");
    assert_eq!(names(&alice.recv_cmd("slash_add").await["commands"]), ["roll", "flip"]);
    expect_error(
        &mut hashed,
        json!({"cmd": "slash_register", "commands": [roll()]}),
        "Slash command /roll is already registered by another user",
        "conflict",
    )
    .await;
    let (mut second, _) = bot(&server, "notifier", NOTIFIER_TOKEN).await;
    expect_error(
        &mut second,
        json!({"cmd": "slash_register", "commands": [{"name": "other", "description": ""}]}),
        "You already have slash commands registered from another session",
        "conflict",
    )
    .await;

    // Registering again replaces the set: dropped names are removed, then the new set is added.
    let r = register_commands(&mut notifier, json!([roll()])).await;
    assert_eq!(r["val"], "1 commands registered successfully");
    let events: Vec<Value> =
        alice.drain().await.into_iter().filter(|p| p["cmd"].as_str().unwrap().starts_with("slash_")).collect();
    assert_eq!(cmds(&events), ["slash_remove", "slash_add"]);
    assert_eq!(events[0], json!({"cmd": "slash_remove", "commands": ["flip"]}));
    assert_eq!(names(&events[1]["commands"]), ["roll"]);

    // When the connection closes, its commands go with it.
    notifier.ws.close(None).await.ok();
    assert_eq!(alice.recv_cmd("slash_remove").await, json!({"cmd": "slash_remove", "commands": ["roll"]}));
    expect_error(
        &mut alice,
        json!({"cmd": "slash_call", "channel": "general", "command": "roll", "args": {"sides": 2}}),
        "Unknown slash command: /roll",
        "not_found",
    )
    .await;
    let list = alice.request(json!({"cmd": "slash_list"})).await;
    assert!(!names(&list["commands"]).contains(&"roll"));
    // The name is free again, and the bot's other connection may register now.
    let r = register_commands(&mut hashed, json!([roll()])).await;
    assert_eq!(r["val"], "1 commands registered successfully");
    let r = register_commands(&mut second, json!([{"name": "other", "description": ""}])).await;
    assert_eq!(r["val"], "1 commands registered successfully");
    server.stop().await;
}

#[tokio::test]
async fn a_bot_answers_only_where_it_can_post() {
    let server = spawn().await;
    let mut root = server.member("root", &["owner"]).await;
    let (mut notifier, _) = bot(&server, "notifier", NOTIFIER_TOKEN).await;
    register_commands(&mut notifier, json!([roll()])).await;
    for (name, kind, send) in [("news", "text", "owner"), ("lounge", "voice", "user"), ("hidden", "text", "user")] {
        let view = if name == "hidden" { "owner" } else { "user" };
        let r = root
            .request(json!({"cmd": "channel_create", "name": name, "type": kind,
                "permissions": {"view": [view], "send": [send]}}))
            .await;
        assert_eq!(r["cmd"], "channel_create", "{r}");
    }
    let respond =
        |channel: &str| json!({"cmd": "slash_response", "channel": channel, "command": "roll", "response": "4"});
    let forbidden = "You do not have permission to send messages in this channel";
    expect_error(&mut notifier, respond("news"), forbidden, "forbidden").await;
    expect_error(&mut notifier, respond("hidden"), forbidden, "forbidden").await;
    expect_error(&mut notifier, respond("lounge"), "Cannot send messages in this channel type", "bad_request").await;
    expect_error(&mut notifier, respond("nowhere"), "Channel not found", "not_found").await;
    let bad = "bad_request";
    expect_error(
        &mut notifier,
        json!({"cmd": "slash_response", "command": "roll", "response": "4"}),
        "Channel parameter is required for slash commands",
        bad,
    )
    .await;
    expect_error(
        &mut notifier,
        json!({"cmd": "slash_response", "channel": "general", "command": "roll"}),
        "Slash response must have content or embeds",
        bad,
    )
    .await;
    expect_error(
        &mut notifier,
        json!({"cmd": "slash_response", "channel": "general", "command": "roll", "response": 4}),
        "Slash response must be a string",
        bad,
    )
    .await;
    expect_error(
        &mut notifier,
        json!({"cmd": "slash_response", "channel": "general", "response": "4"}),
        "Command parameter is required for slash responses",
        bad,
    )
    .await;
    expect_error(
        &mut notifier,
        json!({"cmd": "slash_response", "channel": "general", "command": "roll", "embeds": {}}),
        "Embeds must be an array",
        bad,
    )
    .await;
    expect_error(
        &mut notifier,
        json!({"cmd": "slash_response", "channel": "general", "command": "roll", "response": "y".repeat(2001)}),
        "Message too long. Maximum length is 2000 characters",
        "too_long",
    )
    .await;
    expect_error(
        &mut notifier,
        json!({"cmd": "slash_response", "channel": "general", "command": "flip", "response": "4"}),
        "You did not register this command",
        "forbidden",
    )
    .await;
    // The owner may post in `news`, but did not register /roll.
    expect_error(&mut root, respond("news"), "You did not register this command", "forbidden").await;
    // Nothing refused was stored.
    let history = root.request(json!({"cmd": "messages_get", "channel": "news"})).await;
    assert_eq!(history["messages"], json!([]));
    server.stop().await;
}

#[tokio::test]
async fn ephemeral_answers_reach_only_the_invoker_and_are_not_stored() {
    let server = spawn().await;
    let mut alice = server.register("alice").await;
    let mut alice_phone = server.login("alice", PASSWORD).await;
    let mut bob = server.register("bob").await;
    let (mut notifier, _) = bot(&server, "notifier", NOTIFIER_TOKEN).await;
    let secret = json!({"name": "secret", "description": "Only you see this", "ephemeral": true});
    register_commands(&mut notifier, json!([secret])).await;
    let call = alice.request(json!({"cmd": "slash_call", "channel": "general", "command": "secret"})).await;
    let call_id = call["call_id"].as_str().unwrap();
    notifier.recv_cmd("slash_call").await;
    let ack = notifier
        .request(json!({"cmd": "slash_response", "channel": "general", "command": "secret", "response": "psst", "call_id": call_id}))
        .await;
    assert_eq!(ack["cmd"], "message_new", "{ack}");
    for c in [&mut alice, &mut alice_phone] {
        let p = c.recv_cmd("message_new").await;
        assert_eq!(p["message"]["content"], "psst");
        assert_eq!(p["message"]["user"], "notifier");
        assert_eq!(p["message"]["interaction"], json!({"command": "secret", "username": "alice"}));
        assert_eq!(p["ephemeral"], true);
        assert!(p.get("seq").is_none() && p["message"].get("seq").is_none(), "{p}");
        assert!(p.get("global").is_none(), "{p}");
    }
    assert!(!cmds(&bob.drain().await).contains(&"message_new"), "bob saw an ephemeral answer");
    let history = bob.request(json!({"cmd": "messages_get", "channel": "general"})).await;
    assert_eq!(written(&history), Vec::<Value>::new(), "ephemeral answers are not stored");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// built-in commands

/// `slash_call` of a built-in; returns the reply.
async fn builtin(c: &mut Client, command: &str, args: Value) -> Value {
    c.request(json!({"cmd": "slash_call", "channel": "general", "command": command, "args": args})).await
}

/// A built-in's answer must be a stored `message_new` from the system user; returns its content.
fn posted(reply: &Value, command: &str, invoker: &str) -> String {
    assert_eq!(reply["cmd"], "message_new", "{reply}");
    assert_eq!(reply["channel"], "general");
    assert!(reply["seq"].as_i64().is_some_and(|s| s > 0), "{reply}");
    let message = &reply["message"];
    assert_eq!(message["user"], "originChats");
    assert_eq!(message["interaction"], json!({"command": command, "username": invoker}));
    message["content"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn help_and_nick() {
    let server = spawn().await;
    let mut alice = server.register("alice").await;
    let mut bob = server.register("bob").await;
    let mut root = server.member("root", &["owner"]).await;
    let (mut notifier, _) = bot(&server, "notifier", NOTIFIER_TOKEN).await;
    register_commands(
        &mut notifier,
        json!([roll(), {"name": "vip", "description": "VIPs only", "whitelistRoles": ["vip"]}]),
    )
    .await;

    let help = posted(&builtin(&mut alice, "help", json!({})).await, "help", "alice");
    assert_eq!(
        help,
        "**Available Commands:**\n• `/help` - List all available slash commands\n\
         • `/nick` - Set or clear your display nickname\n• `/roll` - Roll dice"
    );
    let seen = bob.recv_cmd("message_new").await;
    assert_eq!(seen["message"]["content"], help);
    let help = posted(&builtin(&mut root, "help", json!({})).await, "help", "root");
    assert!(help.contains("• `/ban` - Ban a user from the server\n"), "{help}");
    assert!(!help.contains("/vip"), "{help}");
    let history = bob.request(json!({"cmd": "messages_get", "channel": "general"})).await;
    let stored = written(&history);
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0]["interaction"], json!({"command": "help", "username": "alice"}));

    let alice_id = server.user_id("alice").await;
    let text = posted(&builtin(&mut alice, "nick", json!({"nickname": "  Ali  "})).await, "nick", "alice");
    assert_eq!(text, "Nickname set to **Ali**");
    let update = bob.recv_cmd("nickname_update").await;
    assert_eq!(update, json!({"cmd": "nickname_update", "user": alice_id, "username": "alice", "nickname": "Ali"}));
    let users = bob.request(json!({"cmd": "users_list"})).await;
    assert_eq!(
        users["users"].as_array().unwrap().iter().find(|u| u["username"] == "alice").unwrap()["nickname"],
        "Ali"
    );
    expect_error(
        &mut alice,
        json!({"cmd": "slash_call", "channel": "general", "command": "nick", "args": {"nickname": "n".repeat(21)}}),
        "Nickname too long (max 20 characters)",
        "too_long",
    )
    .await;
    let text = posted(&builtin(&mut alice, "nick", json!({})).await, "nick", "alice");
    assert_eq!(text, "Nickname cleared");
    assert_eq!(
        bob.recv_cmd("nickname_remove").await,
        json!({"cmd": "nickname_remove", "user": alice_id, "username": "alice"})
    );
    let text = posted(&builtin(&mut alice, "nick", json!({"nickname": ""})).await, "nick", "alice");
    assert_eq!(text, "You don't have a nickname set. Use `/nick <name>` to set one.");
    expect_error(
        &mut alice,
        json!({"cmd": "slash_call", "channel": "general", "command": "nick", "args": {"nickname": 5}}),
        "Invalid value for 'nickname': expected str",
        "bad_request",
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn moderation_builtins_act_like_the_moderation_commands() {
    let server = spawn().await;
    let mut root = server.member("root", &["owner"]).await;
    let mut ada = server.member("ada", &["admin"]).await;
    let mut alice = server.register("alice").await;
    let mut bob = server.register("bob").await;

    let denied = "Access denied: 'manage_users' permission required";
    for command in ["ban", "unban", "mute", "unmute"] {
        expect_error(
            &mut alice,
            json!({"cmd": "slash_call", "channel": "general", "command": command, "args": {"username": "bob"}}),
            denied,
            "forbidden",
        )
        .await;
    }
    let call = |command: &str, args: Value| json!({"cmd": "slash_call", "channel": "general", "command": command, "args": args});
    expect_error(&mut root, call("ban", json!({})), "Missing required argument: username", "bad_request").await;
    expect_error(&mut root, call("ban", json!({"username": "ghost"})), "User 'ghost' not found", "not_found").await;
    expect_error(&mut root, call("ban", json!({"username": "root"})), "You cannot ban yourself", "forbidden").await;
    expect_error(&mut ada, call("ban", json!({"username": "root"})), "Cannot ban the server owner", "forbidden").await;
    expect_error(
        &mut ada,
        call("mute", json!({"username": "root", "duration": 5})),
        "Cannot timeout the server owner",
        "forbidden",
    )
    .await;

    // /mute: the same timeout, the same notice to the target.
    expect_error(
        &mut root,
        call("mute", json!({"username": "bob", "duration": 0})),
        "Duration must be a positive number",
        "bad_request",
    )
    .await;
    expect_error(
        &mut root,
        call("mute", json!({"username": "bob", "duration": "x"})),
        "Invalid value for 'duration': expected int",
        "bad_request",
    )
    .await;
    expect_error(
        &mut root,
        call("mute", json!({"username": "bob", "duration": 2_419_201})),
        "Timeout cannot exceed 2419200 seconds",
        "bad_request",
    )
    .await;
    let text = posted(
        &root.request(call("mute", json!({"username": "BOB", "duration": 60, "reason": "spam"}))).await,
        "mute",
        "root",
    );
    assert_eq!(text, "🔇 **bob** has been muted for 60 seconds.\n**Reason:** spam");
    assert_eq!(
        bob.recv_cmd("rate_limit").await,
        json!({"cmd": "rate_limit", "reason": "User timeout set", "length": 60000})
    );
    let r = bob.request(json!({"cmd": "message_new", "channel": "general", "content": "hi"})).await;
    assert_eq!(r["cmd"], "rate_limit", "{r}");
    let text = posted(&root.request(call("unmute", json!({"username": "bob"}))).await, "unmute", "root");
    assert_eq!(text, "🔊 **bob** has been unmuted.");
    let r = bob.request(json!({"cmd": "message_new", "channel": "general", "content": "free"})).await;
    assert_eq!(r["cmd"], "message_new", "{r}");

    // /ban: the same ban, the same kick.
    let text = posted(&root.request(call("ban", json!({"username": "bob"}))).await, "ban", "root");
    assert_eq!(text, "🚫 **bob** has been banned.\n**Reason:** No reason provided");
    expect_kicked(&mut bob, "You have been banned", 4003).await;
    let mut again = server.connect().await;
    let r = again.request(json!({"cmd": "login", "username": "bob", "password": PASSWORD})).await;
    assert_eq!(r["code"], "banned", "{r}");
    expect_error(&mut root, call("ban", json!({"username": "bob"})), "User 'bob' is already banned", "conflict").await;
    let banned = root.request(json!({"cmd": "users_banned_list"})).await;
    assert_eq!(banned["users"], json!(["bob"]));
    let text = posted(&root.request(call("unban", json!({"username": "bob"}))).await, "unban", "root");
    assert_eq!(text, "✅ **bob** has been unbanned.");
    expect_error(&mut root, call("unban", json!({"username": "bob"})), "User 'bob' is not banned", "conflict").await;
    server.login("bob", PASSWORD).await;

    let actions = audit_actions(&mut root).await;
    assert_eq!(actions[..4], ["user_unban", "user_ban", "user_timeout", "user_timeout"]);
    server.stop().await;
}

#[tokio::test]
async fn bots_and_slash_answers_on_postgres() {
    let server = TestServer::spawn_with(Backend::Postgres, with_bots).await;
    let mut root = server.member("root", &["owner"]).await;
    let (mut notifier, ready) = bot(&server, "notifier", NOTIFIER_TOKEN).await;
    assert_eq!(ready["user"]["bot"], true);
    let r = root.request(json!({"cmd": "bot_create", "botusername": "pgbot"})).await;
    let token = r["bottoken"].as_str().unwrap().to_owned();
    bot(&server, "pgbot", &token).await;
    let r = root.request(json!({"cmd": "bot_token_regenerate", "botusername": "pgbot"})).await;
    assert_eq!(r["cmd"], "bot_token_regenerate", "{r}");
    botauth_refused(&server, "pgbot", &token, "Invalid bot credentials", "invalid_bot_credentials").await;

    register_commands(&mut notifier, json!([roll()])).await;
    let call =
        root.request(json!({"cmd": "slash_call", "channel": "general", "command": "roll", "args": {"sides": 2}})).await;
    let answer = notifier
        .request(json!({"cmd": "slash_response", "channel": "general", "command": "roll", "response": "1",
            "call_id": call["call_id"]}))
        .await;
    assert_eq!(answer["message"]["interaction"], json!({"command": "roll", "username": "root"}));
    let help = posted(&builtin(&mut root, "help", json!({})).await, "help", "root");
    assert!(help.contains("/roll"), "{help}");
    let history = root.request(json!({"cmd": "messages_get", "channel": "general"})).await;
    assert_eq!(written(&history).len(), 2);
    server.stop().await;
}
