//! The newcomer's path: register, open #general, send, see the echo, find it after a reload.

use serde_json::json;

use crate::support::{Backend, TestServer, is_welcome};

async fn register_send_reload(backend: Backend) {
    let server = TestServer::spawn_with(backend, |_| {}).await;
    let mut alice = server.register("Alice").await;
    let channels = alice.request(json!({"cmd": "channels_get"})).await;
    assert_eq!(channels["val"][0]["name"], "general");
    let echo = alice.request(json!({"cmd": "message_new", "channel": "general", "content": "hello"})).await;
    assert_eq!(echo["cmd"], "message_new");
    assert_eq!(echo["message"]["user"], "Alice");
    assert_eq!(echo["message"]["content"], "hello");
    // Seq 1 is the first start's welcome.
    assert_eq!(echo["seq"], 2);
    drop(alice);
    let mut again = server.login("alice", "correct horse").await;
    let history = again.request(json!({"cmd": "messages_get", "channel": "general", "limit": 100})).await;
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert!(is_welcome(&messages[0]), "{history}");
    assert_eq!(messages[1]["content"], "hello");
    assert_eq!(messages[1]["id"], echo["message"]["id"]);
    server.stop().await;
}

on_both! { register_send_reload => register_send_reload_sqlite, register_send_reload_postgres; }
