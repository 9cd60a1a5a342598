//! Webhooks (PROTOCOL §3.5, §5.8, §6.9): the `manage_server` commands with their reply shapes,
//! errors and audit entries; tokens shown once and stored hashed; `POST /webhooks` with plain and
//! GitHub payloads reaching viewers as `message_new` and landing in history; the HTTP errors in
//! protocol order; per-webhook rate limits; channel deletion taking its webhooks along.

use serde_json::{Value, json};

use crate::{
    channels::open,
    support::{Backend, Client, TestServer},
};

/// `webhook_create` that must succeed; returns the webhook object (with its token).
async fn create(admin: &mut Client, channel: &str, name: &str) -> Value {
    let r = admin.request(json!({"cmd": "webhook_create", "channel": channel, "name": name})).await;
    assert_eq!(r["cmd"], "webhook_create", "{r}");
    r["webhook"].clone()
}

fn token(hook: &Value) -> String {
    hook["token"].as_str().expect("token in create/regenerate replies").to_owned()
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

/// Sends `frame` and asserts an `error` with exactly `val` and `code`.
async fn expect_error(c: &mut Client, frame: Value, val: &str, code: &str) {
    let r = c.request(frame.clone()).await;
    assert_eq!(r["cmd"], "error", "{frame} -> {r}");
    assert_eq!(r["src"], frame["cmd"], "{frame} -> {r}");
    assert_eq!((r["val"].as_str(), r["code"].as_str()), (Some(val), Some(code)), "{frame} -> {r}");
}

/// `POST path` with a JSON body and optional extra headers; returns status, headers and body.
async fn post(
    server: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    post_raw(server, path, headers, Some("application/json"), body.to_string().into_bytes()).await
}

async fn post_raw(
    server: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = server.http.post(server.url(path)).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("http");
    let status = r.status().as_u16();
    let h = r.headers().clone();
    (status, h, r.json().await.unwrap_or(Value::Null))
}

/// Posts `body` with the token in the query string.
async fn post_with(server: &TestServer, token: &str, body: Value) -> (u16, Value) {
    let (status, _, body) = post(server, &format!("/webhooks?token={token}"), &[], body).await;
    (status, body)
}

/// The newest `message_new` in `channel` that `c` receives.
async fn next_message(c: &mut Client) -> Value {
    c.recv_cmd("message_new").await
}

/// The stored webhook rows' columns, read straight from the SQLite file.
async fn stored_webhook_columns(server: &TestServer) -> Vec<String> {
    let url = format!("sqlite://{}", server.config.data_dir.join("confab.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT id, name, token_hash FROM webhooks").fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows.into_iter().flat_map(|(a, b, c)| [a, b, c]).collect()
}

// ---------------------------------------------------------------------------------------------
// commands

async fn commands_round_trip(backend: Backend) {
    let server = TestServer::spawn_with(backend, |_| {}).await;
    let mut admin = server.member("root", &["owner"]).await;
    let caps = admin.handshake["val"]["capabilities"].as_array().unwrap().clone();
    for cmd in
        ["webhook_create", "webhook_delete", "webhook_get", "webhook_list", "webhook_regenerate", "webhook_update"]
    {
        assert!(caps.contains(&json!(cmd)), "{cmd} not advertised");
    }
    let r = admin.request(json!({"cmd": "channel_create", "name": "dev", "type": "text", "permissions": open()})).await;
    assert_eq!(r["cmd"], "channel_create", "{r}");

    let hook = create(&mut admin, "general", "  Deploys  ").await;
    assert_eq!(keys(&hook), ["avatar", "channel", "created_at", "created_by", "id", "name", "token"], "{hook}");
    assert_eq!(hook["channel"], "general");
    assert_eq!(hook["name"], "Deploys", "names are trimmed");
    assert_eq!(hook["created_by"], "root");
    assert_eq!(hook["avatar"], Value::Null);
    assert!(hook["created_at"].as_f64().unwrap() > 1.7e9, "{hook}");
    let first_token = token(&hook);
    assert_eq!(first_token.len(), 43);
    assert!(first_token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let id = hook["id"].as_str().unwrap().to_owned();
    let other = create(&mut admin, "dev", "CI").await;

    let mut expected = hook.clone();
    expected.as_object_mut().unwrap().remove("token");
    let r = admin.request(json!({"cmd": "webhook_get", "id": id})).await;
    assert_eq!(r["cmd"], "webhook_get", "{r}");
    assert_eq!(r["webhook"], expected, "get shows no token");

    let r = admin.request(json!({"cmd": "webhook_list"})).await;
    assert_eq!(r["cmd"], "webhook_list", "{r}");
    let list = r["webhooks"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{r}");
    assert_eq!(list[0], expected);
    assert!(list.iter().all(|w| w.get("token").is_none()), "{r}");
    let r = admin.request(json!({"cmd": "webhook_list", "channel": "dev"})).await;
    assert_eq!(r["webhooks"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["webhooks"][0]["id"], other["id"]);

    let r = admin
        .request(json!({"cmd": "webhook_update", "id": id, "name": "Releases", "avatar": "https://example.com/a.png"}))
        .await;
    assert_eq!(r["cmd"], "webhook_update", "{r}");
    assert_eq!(keys(&r["webhook"]), ["avatar", "channel", "created_at", "created_by", "id", "name"], "{r}");
    assert_eq!(r["webhook"]["name"], "Releases");
    assert_eq!(r["webhook"]["avatar"], "https://example.com/a.png");
    let r = admin.request(json!({"cmd": "webhook_update", "id": id, "avatar": null})).await;
    assert_eq!(r["webhook"]["avatar"], Value::Null, "null clears the avatar: {r}");
    assert_eq!(r["webhook"]["name"], "Releases", "an absent name is kept");

    let r = admin.request(json!({"cmd": "webhook_regenerate", "id": id})).await;
    assert_eq!(r["cmd"], "webhook_regenerate", "{r}");
    assert_eq!(r["webhook"]["id"], id.as_str());
    let second_token = token(&r["webhook"]);
    assert_eq!(second_token.len(), 43);
    assert_ne!(second_token, first_token);

    let r = admin.request(json!({"cmd": "webhook_delete", "id": id})).await;
    assert_eq!(r, json!({"cmd": "webhook_delete", "id": id, "deleted": true, "listener": r["listener"]}));
    expect_error(&mut admin, json!({"cmd": "webhook_get", "id": id}), "Webhook not found", "not_found").await;
    let (status, body) = post_with(&server, &second_token, json!({"content": "gone"})).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("Invalid webhook token")));

    // Every change is audited as server_management, without any token.
    let log = admin.request(json!({"cmd": "modlog_get", "category": "server_management"})).await;
    assert_eq!(log["cmd"], "modlog_get", "{log}");
    let entries = log["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries.iter().filter_map(|e| e["action"].as_str()).collect();
    for action in ["webhook_create", "webhook_update", "webhook_regenerate", "webhook_delete"] {
        assert!(actions.contains(&action), "{action} missing: {log}");
    }
    assert!(entries.iter().all(|e| e["category"] == "server_management"));
    let text = log.to_string();
    assert!(!text.contains(&first_token) && !text.contains(&second_token), "{log}");
    let create_entry = entries.iter().find(|e| e["action"] == "webhook_create" && e["target_id"] == id.as_str());
    assert_eq!(create_entry.unwrap()["actor_name"], "root");
    server.stop().await;
}

on_both! { commands_round_trip => commands_round_trip_sqlite, commands_round_trip_postgres; }

#[tokio::test]
async fn tokens_are_stored_hashed() {
    let server = TestServer::spawn().await;
    let mut admin = server.member("root", &["owner"]).await;
    let hook = create(&mut admin, "general", "Deploys").await;
    let plain = token(&hook);
    let columns = stored_webhook_columns(&server).await;
    assert_eq!(columns.len(), 3);
    assert!(!columns.iter().any(|c| c.contains(&plain)), "the token must not be stored");
    assert!(columns.contains(&confab::auth::tokens::hash_token(&plain)), "its SHA-256 digest is");
}

#[tokio::test]
async fn command_errors_and_permissions() {
    let server = TestServer::spawn().await;
    let mut admin = server.member("root", &["owner"]).await;
    let r = admin.request(json!({"cmd": "channel_create", "name": "talk", "type": "voice"})).await;
    assert_eq!(r["cmd"], "channel_create", "{r}");
    let hook = create(&mut admin, "general", "Deploys").await;
    let id = hook["id"].as_str().unwrap();
    let long = "x".repeat(81);
    let bad = "bad_request";
    let cases = [
        (json!({"cmd": "webhook_create", "name": "n"}), "Channel is required", bad),
        (json!({"cmd": "webhook_create", "channel": "", "name": "n"}), "Channel is required", bad),
        (json!({"cmd": "webhook_create", "channel": "general"}), "Webhook name is required", bad),
        (json!({"cmd": "webhook_create", "channel": "general", "name": "   "}), "Webhook name is required", bad),
        (
            json!({"cmd": "webhook_create", "channel": "general", "name": long}),
            "Webhook name too long (max 80 characters)",
            bad,
        ),
        (json!({"cmd": "webhook_create", "channel": "nowhere", "name": "n"}), "Channel not found", "not_found"),
        (
            json!({"cmd": "webhook_create", "channel": "talk", "name": "n"}),
            "Webhooks can only be created for text channels",
            bad,
        ),
        (json!({"cmd": "webhook_get"}), "Webhook ID is required", bad),
        (json!({"cmd": "webhook_get", "id": "nope"}), "Webhook not found", "not_found"),
        (json!({"cmd": "webhook_list", "channel": "nowhere"}), "Channel not found", "not_found"),
        (json!({"cmd": "webhook_update", "name": "n"}), "Webhook ID is required", bad),
        (json!({"cmd": "webhook_update", "id": "nope", "name": "n"}), "Webhook not found", "not_found"),
        (json!({"cmd": "webhook_update", "id": id}), "No updates provided", bad),
        (json!({"cmd": "webhook_update", "id": id, "name": ""}), "Webhook name must be a non-empty string", bad),
        (json!({"cmd": "webhook_update", "id": id, "name": 5}), "Webhook name must be a non-empty string", bad),
        (json!({"cmd": "webhook_update", "id": id, "name": long}), "Webhook name too long (max 80 characters)", bad),
        (json!({"cmd": "webhook_update", "id": id, "avatar": "ftp://x/a.png"}), "Invalid URL format", bad),
        (json!({"cmd": "webhook_update", "id": id, "avatar": 3}), "Invalid URL format", bad),
        (json!({"cmd": "webhook_delete"}), "Webhook ID is required", bad),
        (json!({"cmd": "webhook_delete", "id": "nope"}), "Webhook not found", "not_found"),
        (json!({"cmd": "webhook_regenerate"}), "Webhook ID is required", bad),
        (json!({"cmd": "webhook_regenerate", "id": "nope"}), "Webhook not found", "not_found"),
    ];
    for (frame, val, code) in cases {
        expect_error(&mut admin, frame, val, code).await;
    }
    // Nothing above changed the webhook.
    let r = admin.request(json!({"cmd": "webhook_get", "id": id})).await;
    assert_eq!(r["webhook"]["name"], "Deploys");
    assert_eq!(r["webhook"]["avatar"], Value::Null);

    // Without manage_server every command is refused, listing included (Δ originChats).
    let mut bob = server.register("bob").await;
    let denied = "Access denied: 'manage_server' permission required";
    for frame in [
        json!({"cmd": "webhook_create", "channel": "general", "name": "n"}),
        json!({"cmd": "webhook_get", "id": id}),
        json!({"cmd": "webhook_list"}),
        json!({"cmd": "webhook_update", "id": id, "name": "n"}),
        json!({"cmd": "webhook_delete", "id": id}),
        json!({"cmd": "webhook_regenerate", "id": id}),
    ] {
        expect_error(&mut bob, frame, denied, "forbidden").await;
    }
    // The refused regenerate did not kill the token.
    let (status, body) = post_with(&server, &token(&hook), json!({"content": "still works"})).await;
    assert_eq!(status, 204, "{body}");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// POST /webhooks

async fn post_reaches_viewers_and_history(backend: Backend) {
    let server = TestServer::spawn_with(backend, |_| {}).await;
    let mut admin = server.member("root", &["owner"]).await;
    let hook = create(&mut admin, "general", "Deploys").await;
    let tok = token(&hook);
    let mut bob = server.register("bob").await;

    let (status, body) = post_with(&server, &tok, json!({"content": "hello @bob"})).await;
    assert_eq!(status, 204, "{body}");
    let live = next_message(&mut bob).await;
    assert_eq!(live["channel"], "general", "{live}");
    assert_eq!(live["thread_id"], Value::Null);
    assert_eq!(live["global"], true);
    assert!(live.get("listener").is_none(), "{live}");
    let seq = live["seq"].as_i64().unwrap();
    let m = &live["message"];
    assert_eq!(m["user"], "originChats", "the author is the system username: {m}");
    assert_eq!(m["content"], "hello @bob");
    assert_eq!(m["type"], "message");
    assert_eq!(m["seq"], seq);
    assert_eq!(m["webhook"], json!({"id": hook["id"], "name": "Deploys", "avatar": null}));
    assert_eq!(m["pings"], json!({"users": ["bob"], "roles": [], "replies": []}));
    // The poster's own admin connection sees it too: nobody is the requester.
    let admin_copy = next_message(&mut admin).await;
    assert_eq!(admin_copy["message"]["id"], m["id"]);

    // Stored: history shows the same author and webhook object.
    let h = bob.request(json!({"cmd": "messages_get", "channel": "general"})).await;
    assert_eq!(h["cmd"], "messages_get", "{h}");
    let stored = h["messages"].as_array().unwrap().iter().find(|x| x["id"] == m["id"]).expect("stored").clone();
    assert_eq!(stored["user"], "originChats");
    assert_eq!(stored["webhook"], m["webhook"]);
    assert_eq!(stored["content"], "hello @bob");

    // `text` and `message` stand in for `content`; the body names and avatar override the
    // webhook's; `/webhooks/<anything>` and a bearer token work the same.
    let (status, _, body) = post(
        &server,
        "/webhooks/anything/at/all",
        &[("authorization", &format!("Bearer {tok}"))],
        json!({"content": "", "text": "from text", "message": "not this", "username": "Bot", "avatar_url": "https://example.com/b.png",
               "embeds": [{"title": "Build", "description": "green"}]}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let m = next_message(&mut bob).await["message"].clone();
    assert_eq!(m["content"], "from text");
    assert_eq!(m["webhook"], json!({"id": hook["id"], "name": "Bot", "avatar": "https://example.com/b.png"}));
    assert_eq!(m["embeds"][0]["title"], "Build", "{m}");
    let (status, _, body) = post(&server, &format!("/webhooks/?token={tok}"), &[], json!({"content": "slash"})).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(next_message(&mut bob).await["message"]["content"], "slash");
    let (status, body) = post_with(&server, &tok, json!({"message": "from message"})).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(next_message(&mut bob).await["message"]["content"], "from message");
    // Embeds alone are enough.
    let (status, body) = post_with(&server, &tok, json!({"embeds": [{"title": "only"}]})).await;
    assert_eq!(status, 204, "{body}");
    let m = next_message(&mut bob).await["message"].clone();
    assert_eq!((m["content"].as_str(), m["embeds"][0]["title"].as_str()), (Some(""), Some("only")));
    server.stop().await;
}

on_both! { post_reaches_viewers_and_history => post_reaches_viewers_and_history_sqlite, post_reaches_viewers_and_history_postgres; }

#[tokio::test]
async fn post_formats_github_events() {
    let server = TestServer::spawn_with(Backend::Sqlite, |cfg| cfg.system_username = "Confab".to_owned()).await;
    let mut admin = server.member("root", &["owner"]).await;
    let tok = token(&create(&mut admin, "general", "GitHub").await);
    let mut bob = server.register("bob").await;
    let push = json!({
        "ref": "refs/heads/main",
        "repository": {"full_name": "acme/widgets"},
        "pusher": {"name": "alice"},
        "commits": [{"id": "abcdef0123456789", "message": "Add sprockets\n\ndetails", "author": {"name": "Alice"}}]
    });
    let (status, _, body) =
        post(&server, &format!("/webhooks?token={tok}"), &[("x-github-event", "push")], push.clone()).await;
    assert_eq!(status, 204, "{body}");
    let m = next_message(&mut bob).await["message"].clone();
    assert_eq!(m["content"], "[acme/widgets] alice pushed 1 commit to `main`\n`abcdef0` Add sprockets — Alice");
    assert_eq!(m["user"], "Confab", "the configured system username");
    assert_eq!(m["webhook"]["name"], "GitHub");

    // Without the header the same payload has no content.
    let (status, body) = post_with(&server, &tok, push).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("No content provided")), "{body}");
    // With the header but without repository and ref, the plain fields are used.
    let (status, _, body) = post(
        &server,
        &format!("/webhooks?token={tok}"),
        &[("x-github-event", "ping")],
        json!({"zen": "Keep it simple", "content": "plain"}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(next_message(&mut bob).await["message"]["content"], "plain");
    let (status, _, body) = post(
        &server,
        &format!("/webhooks?token={tok}"),
        &[("x-github-event", "create")],
        json!({"ref": "v2.0", "ref_type": "tag", "repository": {"full_name": "acme/widgets"}, "sender": {"login": "carol"}}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(next_message(&mut bob).await["message"]["content"], "[acme/widgets] carol created tag `v2.0`");
}

#[tokio::test]
async fn post_errors_in_protocol_order() {
    let server = TestServer::spawn().await;
    let mut admin = server.member("root", &["owner"]).await;
    let hook = create(&mut admin, "general", "Deploys").await;
    let tok = token(&hook);
    let with_token = format!("/webhooks?token={tok}");

    // No token at all; an unknown token is refused before the body is looked at.
    let (status, _, body) = post(&server, "/webhooks", &[], json!({"content": "x"})).await;
    assert_eq!((status, body), (401, json!({"error": "Webhook token required", "code": "unauthenticated"})));
    let (status, _, body) = post(&server, "/webhooks?token=", &[], json!({"content": "x"})).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("Webhook token required")));
    let (status, _, body) = post_raw(&server, "/webhooks?token=wrong", &[], Some("text/plain"), b"{{{".to_vec()).await;
    assert_eq!((status, body), (401, json!({"error": "Invalid webhook token", "code": "invalid_token"})));
    let (status, _, body) =
        post(&server, "/webhooks", &[("authorization", "Bearer wrong")], json!({"content": "x"})).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("Invalid webhook token")));

    // Then the body: 415, 413, 400.
    let (status, _, body) = post_raw(&server, &with_token, &[], Some("text/plain"), b"hi".to_vec()).await;
    assert_eq!((status, body), (415, json!({"error": "Content-Type must be application/json", "code": "bad_request"})));
    let (status, _, body) = post_raw(&server, &with_token, &[], None, b"{}".to_vec()).await;
    assert_eq!(status, 415, "{body}");
    let big = format!("{{\"content\":\"{}\"}}", "x".repeat(10 * 1024 * 1024));
    let (status, _, body) = post_raw(&server, &with_token, &[], Some("application/json"), big.into_bytes()).await;
    assert_eq!((status, body), (413, json!({"error": "Request body too large (max 10MB)", "code": "too_large"})));
    for raw in [&b"{not json"[..], b"[1,2]", b"\"text\""] {
        let (status, _, body) = post_raw(&server, &with_token, &[], Some("application/json"), raw.to_vec()).await;
        assert_eq!((status, body), (400, json!({"error": "Invalid JSON body", "code": "bad_request"})));
    }
    // A body just under the limit is read (and then refused for its length, not its size).
    let under = format!("{{\"content\":\"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let (status, _, body) = post_raw(&server, &with_token, &[], Some("application/json"), under.into_bytes()).await;
    assert_eq!(status, 400, "{body}");

    // Then the content.
    for empty in [json!({}), json!({"content": "   ", "text": ""}), json!({"content": 5}), json!({"embeds": []})] {
        let (status, body) = post_with(&server, &tok, empty.clone()).await;
        assert_eq!((status, body), (400, json!({"error": "No content provided", "code": "bad_request"})), "{empty}");
    }
    let (status, body) = post_with(&server, &tok, json!({"content": "x", "embeds": "no"})).await;
    assert_eq!((status, body), (400, json!({"error": "Embeds must be an array", "code": "bad_request"})));
    let (status, body) = post_with(&server, &tok, json!({"content": "x", "embeds": [{"url": "ftp://x"}]})).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("Embed 0: url must be an http(s) URL")), "{body}");
    let (status, body) = post_with(&server, &tok, json!({"content": "x".repeat(2001)})).await;
    assert_eq!(
        (status, body),
        (400, json!({"error": "Message too long. Maximum length is 2000 characters", "code": "too_long"}))
    );
    let (status, body) = post_with(&server, &tok, json!({"content": "x".repeat(2000)})).await;
    assert_eq!(status, 204, "exactly the limit is fine: {body}");
    let (status, body) = post_with(&server, &tok, json!({"content": "nul\u{0}here"})).await;
    assert_eq!(
        (status, body),
        (400, json!({"error": "Message content cannot contain NUL characters", "code": "bad_request"}))
    );
    let (status, body) = post_with(&server, &tok, json!({"content": "x", "avatar_url": "javascript:alert(1)"})).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("Invalid URL format")));

    // Other methods and paths.
    let r = server.http.get(server.url("/webhooks")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let (status, _, body) = post(&server, "/webhookz", &[], json!({})).await;
    assert_eq!((status, body), (404, json!({"error": "Not found", "code": "not_found"})));

    // A regenerated token replaces the old one at once.
    let r = admin.request(json!({"cmd": "webhook_regenerate", "id": hook["id"]})).await;
    let fresh = token(&r["webhook"]);
    let (status, body) = post_with(&server, &tok, json!({"content": "old"})).await;
    assert_eq!((status, body), (401, json!({"error": "Invalid webhook token", "code": "invalid_token"})));
    let (status, body) = post_with(&server, &fresh, json!({"content": "new"})).await;
    assert_eq!(status, 204, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn channel_changes_reach_webhooks() {
    let server = TestServer::spawn().await;
    let mut admin = server.member("root", &["owner"]).await;
    for name in ["dev", "ops"] {
        let r =
            admin.request(json!({"cmd": "channel_create", "name": name, "type": "text", "permissions": open()})).await;
        assert_eq!(r["cmd"], "channel_create", "{r}");
    }
    let dev = create(&mut admin, "dev", "Dev").await;
    let ops = create(&mut admin, "ops", "Ops").await;

    // A channel that stopped being a text channel takes no webhook messages.
    let r = admin.request(json!({"cmd": "channel_update", "current_name": "dev", "updates": {"type": "voice"}})).await;
    assert_eq!(r["cmd"], "channel_update", "{r}");
    let (status, body) = post_with(&server, &token(&dev), json!({"content": "x"})).await;
    assert_eq!((status, body), (404, json!({"error": "Channel not found", "code": "not_found"})));

    // A renamed channel shows its new name; a deleted one takes its webhooks along.
    let r =
        admin.request(json!({"cmd": "channel_update", "current_name": "ops", "updates": {"name": "operations"}})).await;
    assert_eq!(r["cmd"], "channel_update", "{r}");
    let r = admin.request(json!({"cmd": "webhook_get", "id": ops["id"]})).await;
    assert_eq!(r["webhook"]["channel"], "operations", "{r}");
    let r = admin.request(json!({"cmd": "channel_delete", "name": "operations"})).await;
    assert_eq!(r["cmd"], "channel_delete", "{r}");
    expect_error(&mut admin, json!({"cmd": "webhook_get", "id": ops["id"]}), "Webhook not found", "not_found").await;
    let (status, body) = post_with(&server, &token(&ops), json!({"content": "x"})).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("Invalid webhook token")));
    let r = admin.request(json!({"cmd": "webhook_list"})).await;
    assert_eq!(r["webhooks"].as_array().unwrap().len(), 1, "{r}");
}

#[tokio::test]
async fn each_webhook_has_its_own_messages_bucket() {
    let server = TestServer::spawn_with(Backend::Sqlite, |cfg| cfg.rate_limits.enabled = true).await;
    let mut admin = server.member("root", &["owner"]).await;
    let a = token(&create(&mut admin, "general", "A").await);
    let b = token(&create(&mut admin, "general", "B").await);

    // The `messages` rules refuse within the first 61 posts (burst of 10 or 60 a minute).
    let mut accepted = 0;
    let refused = loop {
        let (status, headers, body) =
            post(&server, &format!("/webhooks?token={a}"), &[], json!({"content": "x"})).await;
        match status {
            204 => accepted += 1,
            429 => break (headers, body),
            other => panic!("unexpected {other}: {body}"),
        }
        assert!(accepted <= 60, "the messages class never refused");
    };
    assert!(accepted >= 10, "refused after only {accepted}");
    let (headers, body) = refused;
    assert_eq!(body["code"], "rate_limited", "{body}");
    let secs: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(secs >= 1);
    assert_eq!(body["error"], format!("Too many requests. Try again in {secs} seconds"));
    // Another webhook is not affected.
    let (status, body) = post_with(&server, &b, json!({"content": "y"})).await;
    assert_eq!(status, 204, "{body}");

    // Guessing tokens costs the caller's IP its auth bucket, like failed logins.
    let mut guesses = 0;
    loop {
        let (status, body) = post_with(&server, "guess", json!({"content": "x"})).await;
        guesses += 1;
        if status == 429 {
            assert_eq!(body["code"], "rate_limited", "{body}");
            break;
        }
        assert_eq!(status, 401, "{body}");
        assert!(guesses <= 11, "wrong webhook tokens are not throttled");
    }
    let (status, _) = post_with(&server, &b, json!({"content": "z"})).await;
    assert_eq!(status, 429, "while the IP bucket is empty even a good token waits");
}
