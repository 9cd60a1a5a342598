//! Per-class rate limits (PROTOCOL §4.4–4.7): the `messages` burst rule and cooldown, token
//! buckets, the `rate_limit` packet, status and reset, the hard limit, and the off switch.

use serde_json::{Value, json};

use crate::support::{Backend, Client, Closed, TestServer, written};

async fn limited_server() -> TestServer {
    TestServer::spawn_with(Backend::Sqlite, |cfg| cfg.rate_limits.enabled = true).await
}

fn msg(content: &str) -> Value {
    json!({"cmd": "message_new", "channel": "general", "content": content})
}

async fn count_messages(c: &mut Client) -> usize {
    written(&c.request(json!({"cmd": "messages_get", "channel": "general"})).await).len()
}

#[tokio::test]
async fn burst_starts_a_cooldown_and_costs_nothing_when_refused() {
    let server = limited_server().await;
    let mut alice = server.register("alice").await;
    // Invalid messages are refused before the limiter and cost nothing.
    for _ in 0..15 {
        let r = alice.request(json!({"cmd": "message_new", "channel": "general", "content": "  "})).await;
        assert_eq!(r["val"], "Message content or attachments cannot be empty");
    }
    for i in 0..10 {
        assert_eq!(alice.request(msg(&format!("m{i}"))).await["cmd"], "message_new");
    }
    let r = alice.request(msg("eleventh")).await;
    assert_eq!(r["cmd"], "rate_limit", "{r}");
    assert_eq!(r["reason"], "Burst limit exceeded. You're in cooldown for 30 seconds");
    assert_eq!(r["length"], 30_000);
    assert_eq!(r["src"], "message_new");
    assert_eq!(r["class"], "messages");
    let r = alice.request(msg("twelfth")).await;
    assert!(r["reason"].as_str().unwrap().starts_with("You are in cooldown for "), "{r}");
    assert!(r["length"].as_u64().unwrap() <= 30_000);
    // Other classes are unaffected, and nothing refused was stored.
    assert_eq!(count_messages(&mut alice).await, 10);
    server.stop().await;
}

#[tokio::test]
async fn nonce_repeats_use_no_tokens() {
    let server = limited_server().await;
    let mut alice = server.register("alice").await;
    let first = json!({"cmd": "message_new", "channel": "general", "content": "once", "nonce": "n"});
    alice.request(first.clone()).await;
    for _ in 0..20 {
        assert_eq!(alice.request(first.clone()).await["duplicate"], true);
    }
    for i in 0..9 {
        assert_eq!(alice.request(msg(&format!("m{i}"))).await["cmd"], "message_new", "message {i}");
    }
    server.stop().await;
}

#[tokio::test]
async fn buckets_per_class_and_per_account() {
    let server = limited_server().await;
    let mut alice = server.register("alice").await;
    let mut alice2 = server.login("alice", "correct horse").await;
    for _ in 0..5 {
        assert_eq!(alice.request(json!({"cmd": "typing", "channel": "general"})).await["cmd"], "typing");
    }
    // The bucket is the account's, shared by its connections.
    let r = alice2.request(json!({"cmd": "typing", "channel": "general"})).await;
    assert_eq!(r["cmd"], "rate_limit");
    assert_eq!(r["class"], "typing");
    assert!(r["reason"].as_str().unwrap().starts_with("Rate limit exceeded. Wait "), "{r}");
    // users_list costs 5 of the 60 read tokens: 12 pass, the 13th is refused.
    for i in 0..12 {
        assert_eq!(alice.request(json!({"cmd": "users_list"})).await["cmd"], "users_list", "read {i}");
    }
    let r = alice.request(json!({"cmd": "users_list"})).await;
    assert_eq!(r["class"], "reads");
    // Another account has its own buckets.
    let mut bob = server.register("bob").await;
    assert_eq!(bob.request(json!({"cmd": "users_list"})).await["cmd"], "users_list");
    // ping is never limited.
    assert_eq!(alice.request(json!({"cmd": "ping"})).await["cmd"], "pong");
    server.stop().await;
}

#[tokio::test]
async fn status_and_reset() {
    let server = limited_server().await;
    let mut alice = server.register("alice").await;
    let mut bob = server.register("bob").await;
    for i in 0..3 {
        alice.request(msg(&format!("m{i}"))).await;
    }
    let st = alice.request(json!({"cmd": "rate_limit_status"})).await;
    assert_eq!(st["cmd"], "rate_limit_status", "{st}");
    assert_eq!(st["user"], "alice");
    let status = &st["status"];
    assert_eq!(status["messages_this_minute"], 3);
    assert_eq!(status["messages_per_minute_limit"], 60);
    assert_eq!(status["recent_messages"], 3);
    assert_eq!(status["burst_limit"], 10);
    assert_eq!(status["cooldown_remaining"], 0.0);
    assert_eq!(status["timeout_remaining"], 0.0);
    assert_eq!(status["classes"]["typing"]["capacity"], 5);

    let r = bob.request(json!({"cmd": "rate_limit_status", "user": "alice"})).await;
    assert_eq!(r["val"], "Access denied: can only check your own rate limit status");
    let r = bob.request(json!({"cmd": "rate_limit_reset", "user": "alice"})).await;
    assert_eq!(r["val"], "Access denied: 'manage_server' permission required");

    // An owner may look at and reset anyone.
    let root = server.store.user_by_name("bob").await.unwrap().unwrap();
    let roles = server.store.roles().await.unwrap();
    let owner = roles.iter().find(|r| r.name == "owner").unwrap().id.clone();
    server.store.user_set_roles(&root.id, &[owner]).await.unwrap();
    let mut bob = server.login("bob", "correct horse").await;
    for i in 3..11 {
        alice.request(msg(&format!("m{i}"))).await;
    }
    let r = bob.request(json!({"cmd": "rate_limit_status", "user": "alice"})).await;
    assert!(r["status"]["cooldown_remaining"].as_f64().unwrap() > 0.0, "{r}");
    let r = bob.request(json!({"cmd": "rate_limit_reset", "user": "ALICE"})).await;
    assert_eq!(
        r,
        json!({"cmd": "rate_limit_reset", "user": "alice", "val": "Rate limit reset for user alice", "listener": r["listener"]})
    );
    assert_eq!(alice.request(msg("after reset")).await["cmd"], "message_new");
    let r = bob.request(json!({"cmd": "rate_limit_reset"})).await;
    assert_eq!(r["val"], "User parameter is required");
    let r = bob.request(json!({"cmd": "rate_limit_reset", "user": "nobody"})).await;
    assert_eq!(r["val"], "User not found");
    server.stop().await;
}

#[tokio::test]
async fn hard_limit_closes_with_4008() {
    let server = limited_server().await;
    let mut alice = server.register("alice").await;
    for _ in 0..5 {
        alice.request(json!({"cmd": "typing", "channel": "general"})).await;
    }
    for _ in 0..51 {
        alice.send(json!({"cmd": "typing", "channel": "general"})).await;
    }
    assert!(matches!(alice.closed().await, Closed::Frame(4008, _)));
    server.stop().await;
}

#[tokio::test]
async fn switched_off_refuses_nothing() {
    let server = TestServer::spawn_with(Backend::Sqlite, |cfg| cfg.rate_limits.enabled = false).await;
    let mut alice = server.register("alice").await;
    for i in 0..25 {
        assert_eq!(alice.request(msg(&format!("m{i}"))).await["cmd"], "message_new");
    }
    let r = alice.request(json!({"cmd": "rate_limit_status"})).await;
    assert_eq!(r["val"], "Rate limiter not available or disabled");
    assert_eq!(r["code"], "disabled");
    server.stop().await;
}
