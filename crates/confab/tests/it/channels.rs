//! Channels and threads (PROTOCOL §6.2, §6.3): management by `manage_channels`, lists pushed to
//! every connection at once, audiences re-resolved without reconnecting, and forum threads whose
//! events share the parent's seq.

use serde_json::{Value, json};

use crate::support::TestServer;

/// Makes `name` an owner and returns a fresh logged-in client for them.
pub(crate) fn names(list: &Value) -> Vec<String> {
    list["val"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect()
}

const OPEN: &str = r#"{"view":["user"],"send":["user"],"create_thread":["user"]}"#;

pub(crate) fn open() -> Value {
    serde_json::from_str(OPEN).unwrap()
}

#[tokio::test]
async fn channel_management_reaches_everyone_at_once() {
    let server = TestServer::spawn().await;
    let mut admin = server.member("root", &["owner"]).await;
    let mut bob = server.register("bob").await;

    let r = bob.request(json!({"cmd": "channel_create", "name": "x", "type": "text"})).await;
    assert_eq!(r["val"], "Access denied: 'manage_channels' permission required");
    assert_eq!(r["code"], "forbidden");

    let r = admin.request(json!({"cmd": "channel_create", "name": "dev", "type": "text", "permissions": open()})).await;
    assert_eq!(r["cmd"], "channel_create", "{r}");
    assert_eq!(r["created"], true);
    assert_eq!(r["channel"]["name"], "dev");
    assert_eq!(names(&bob.recv_cmd("channels_get").await), ["general", "dev"]);

    // A channel created without permissions gets the owner-only defaults: Bob does not see it.
    admin.request(json!({"cmd": "channel_create", "name": "secret", "type": "text"})).await;
    assert_eq!(names(&bob.recv_cmd("channels_get").await), ["general", "dev"]);
    assert_eq!(names(&admin.recv_cmd("channels_get").await), ["general", "dev", "secret"]);

    let errors = [
        (json!({"cmd": "channel_create", "type": "text"}), "Channel name is required"),
        (json!({"cmd": "channel_create", "name": " padded", "type": "text"}), "Invalid channel name"),
        (json!({"cmd": "channel_create", "name": "x"}), "Channel type is required (text, voice, forum, or separator)"),
        (
            json!({"cmd": "channel_create", "name": "x", "type": "stage"}),
            "Invalid channel type, must be text, voice, forum, or separator",
        ),
        (json!({"cmd": "channel_create", "name": "DEV", "type": "text"}), "Channel already exists"),
        (
            json!({"cmd": "channel_create", "name": "x", "type": "text", "permissions": []}),
            "Invalid permissions object",
        ),
        (
            json!({"cmd": "channel_create", "name": "x", "type": "text", "permissions": {"view": ["ghosts"]}}),
            "Role 'ghosts' does not exist",
        ),
        (json!({"cmd": "channel_update", "updates": {}}), "current_name is required"),
        (json!({"cmd": "channel_update", "current_name": "dev"}), "updates object is required"),
        (json!({"cmd": "channel_update", "current_name": "nope", "updates": {}}), "Channel not found"),
        (
            json!({"cmd": "channel_update", "current_name": "dev", "updates": {"color": 1}}),
            "Cannot update field: color",
        ),
        (
            json!({"cmd": "channel_update", "current_name": "dev", "updates": {"name": "secret"}}),
            "Channel with new name already exists",
        ),
        (json!({"cmd": "channel_move", "position": 0}), "Channel name is required"),
        (json!({"cmd": "channel_move", "name": "dev"}), "Position is required"),
        (json!({"cmd": "channel_move", "name": "dev", "position": -1}), "Position must be a non-negative integer"),
        (json!({"cmd": "channel_move", "name": "nope", "position": 0}), "Channel not found"),
        (json!({"cmd": "channel_delete"}), "Channel name is required"),
        (json!({"cmd": "channel_delete", "name": "nope"}), "Channel not found"),
    ];
    for (frame, text) in errors {
        let r = admin.request(frame.clone()).await;
        assert_eq!(r["val"], text, "{frame}");
        assert_eq!(r["cmd"], "error");
    }

    let r = admin.request(json!({"cmd": "channel_move", "name": "dev", "position": 0})).await;
    assert_eq!(
        r,
        json!({"cmd": "channel_move", "name": "dev", "position": 0, "moved": true, "listener": r["listener"]})
    );
    assert_eq!(names(&bob.recv_cmd("channels_get").await), ["dev", "general"]);
    let r = admin.request(json!({"cmd": "channel_move", "name": "dev", "position": 99})).await;
    assert_eq!(r["position"], 2);

    // A message in #dev pins its type.
    bob.request(json!({"cmd": "message_new", "channel": "dev", "content": "hi"})).await;
    let r = admin.request(json!({"cmd": "channel_update", "current_name": "dev", "updates": {"type": "voice"}})).await;
    assert_eq!(r["val"], "Cannot change the type of a channel that has messages");
    assert_eq!(r["code"], "conflict");
    let r = admin
        .request(
            json!({"cmd": "channel_update", "current_name": "dev", "updates": {"name": "devel", "description": "d"}}),
        )
        .await;
    assert_eq!(r["cmd"], "channel_update", "{r}");
    assert_eq!(r["channel"]["name"], "devel");
    assert_eq!(r["channel"]["description"], "d");
    // History survives the rename.
    let h = bob.request(json!({"cmd": "messages_get", "channel": "devel"})).await;
    assert_eq!(h["messages"][0]["content"], "hi");

    let r = admin.request(json!({"cmd": "channel_delete", "name": "DEVEL"})).await;
    assert_eq!(r["cmd"], "channel_delete");
    assert_eq!(r["name"], "devel");
    assert_eq!(names(&bob.recv_cmd("channels_get").await), ["general"]);
    let r = bob.request(json!({"cmd": "messages_get", "channel": "devel"})).await;
    assert_eq!(r["val"], "Channel not found");

    let log = admin.request(json!({"cmd": "modlog_get", "category": "channel_management"})).await;
    if log["cmd"] == "modlog_get" {
        let actions: Vec<&str> =
            log["entries"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
        assert!(actions.contains(&"channel_delete") && actions.contains(&"channel_create"), "{log}");
    }
    server.stop().await;
}

#[tokio::test]
async fn losing_view_stops_events_without_reconnecting() {
    let server = TestServer::spawn().await;
    let mut admin = server.member("root", &["owner"]).await;
    let mut bob = server.register("bob").await;
    admin.request(json!({"cmd": "channel_create", "name": "ops", "type": "text", "permissions": open()})).await;
    bob.recv_cmd("channels_get").await;
    admin.request(json!({"cmd": "message_new", "channel": "ops", "content": "one"})).await;
    assert_eq!(bob.recv_cmd("message_new").await["message"]["content"], "one");

    let hidden = json!({"view": ["!user", "owner"], "send": ["user"]});
    admin.request(json!({"cmd": "channel_update", "current_name": "ops", "updates": {"permissions": hidden}})).await;
    assert_eq!(names(&bob.recv_cmd("channels_get").await), ["general"]);
    admin.request(json!({"cmd": "message_new", "channel": "ops", "content": "two"})).await;
    admin.request(json!({"cmd": "message_new", "channel": "general", "content": "marker"})).await;
    // The next message Bob gets is the one in #general: "two" never reached him.
    assert_eq!(bob.recv_cmd("message_new").await["message"]["content"], "marker");
    let r = bob.request(json!({"cmd": "messages_get", "channel": "ops"})).await;
    assert_eq!(r["val"], "Access denied to this channel");

    admin.request(json!({"cmd": "channel_update", "current_name": "ops", "updates": {"permissions": open()}})).await;
    assert_eq!(names(&bob.recv_cmd("channels_get").await), ["general", "ops"]);
    admin.request(json!({"cmd": "message_new", "channel": "ops", "content": "three"})).await;
    assert_eq!(bob.recv_cmd("message_new").await["message"]["content"], "three");
    server.stop().await;
}

#[tokio::test]
async fn forum_threads_end_to_end() {
    let server = TestServer::spawn().await;
    let mut admin = server.member("root", &["owner"]).await;
    let mut bob = server.register("bob").await;
    let r =
        admin.request(json!({"cmd": "channel_create", "name": "ideas", "type": "forum", "permissions": open()})).await;
    assert_eq!(r["channel"]["threads"], json!([]));
    bob.recv_cmd("channels_get").await;

    let errors = [
        (json!({"cmd": "thread_create", "channel": "ideas"}), "Channel and thread name are required"),
        (json!({"cmd": "thread_create", "channel": "nope", "name": "x"}), "Channel not found"),
        (
            json!({"cmd": "thread_create", "channel": "general", "name": "x"}),
            "Threads can only be created in forum channels",
        ),
        (json!({"cmd": "thread_create", "channel": "ideas", "name": "   "}), "Thread name cannot be empty"),
        (
            json!({"cmd": "thread_create", "channel": "ideas", "name": "x".repeat(101)}),
            "Thread name too long (max 100 characters)",
        ),
        (json!({"cmd": "thread_get"}), "Thread ID is required"),
        (json!({"cmd": "thread_get", "thread_id": "nope"}), "Thread not found"),
    ];
    for (frame, text) in errors {
        assert_eq!(bob.request(frame.clone()).await["val"], text, "{frame}");
    }

    let created = bob.request(json!({"cmd": "thread_create", "channel": "ideas", "name": " First "})).await;
    assert_eq!(created["cmd"], "thread_create", "{created}");
    let thread = created["thread"].clone();
    let tid = thread["id"].clone();
    assert_eq!(thread["name"], "First");
    assert_eq!(thread["parent_channel"], "ideas");
    assert_eq!(thread["created_by"], "bob");
    assert_eq!(thread["participants"], json!(["bob"]));
    assert_eq!(created["channel"], "ideas");
    assert_eq!(created["seq"], 1);
    assert_eq!(admin.recv_cmd("thread_create").await["thread"]["id"], tid);

    let m =
        bob.request(json!({"cmd": "message_new", "channel": "ideas", "thread_id": tid, "content": "in thread"})).await;
    assert_eq!(m["cmd"], "message_new", "{m}");
    assert_eq!(m["thread_id"], tid);
    assert_eq!(m["channel"], "ideas");
    assert_eq!(m["seq"], 2);
    let copy = admin.recv_cmd("message_new").await;
    assert_eq!(copy["thread_id"], tid);
    let h = admin.request(json!({"cmd": "messages_get", "thread_id": tid, "limit": 30})).await;
    assert_eq!(h["thread_id"], tid);
    assert_eq!(h["messages"][0]["content"], "in thread");
    let h = admin.request(json!({"cmd": "thread_messages", "thread_id": tid})).await;
    assert_eq!(h["channel"], "ideas");
    assert_eq!(h["messages"].as_array().unwrap().len(), 1);
    let list = admin.request(json!({"cmd": "channels_get"})).await;
    let forum = list["val"].as_array().unwrap().iter().find(|c| c["name"] == "ideas").unwrap().clone();
    assert_eq!(forum["threads"][0]["last_message_id"], m["message"]["id"]);

    let j = admin.request(json!({"cmd": "thread_join", "thread_id": tid})).await;
    assert_eq!(j["cmd"], "thread_join");
    assert_eq!(j["thread"]["participants"], json!(["bob", "root"]));
    assert_eq!(j["user"], "root");
    assert_eq!(bob.recv_cmd("thread_join").await["seq"], j["seq"]);
    let l = bob.request(json!({"cmd": "thread_leave", "thread_id": tid})).await;
    assert_eq!(l["cmd"], "thread_leave");
    assert_eq!(l["thread"]["participants"], json!(["bob", "root"]), "the creator stays");

    let r = bob.request(json!({"cmd": "thread_update", "thread_id": tid, "locked": true})).await;
    assert_eq!(r["val"], "Access denied: 'manage_threads' permission required");
    let r = admin.request(json!({"cmd": "thread_update", "thread_id": tid, "locked": true})).await;
    assert_eq!(r["cmd"], "thread_update", "{r}");
    assert_eq!(r["thread"]["locked"], true);
    let r = bob.request(json!({"cmd": "message_new", "thread_id": tid, "content": "x"})).await;
    assert_eq!(r["val"], "This thread is locked");
    assert_eq!(r["code"], "thread_locked");
    let r = admin.request(json!({"cmd": "message_new", "thread_id": tid, "content": "mods may"})).await;
    assert_eq!(r["cmd"], "message_new");
    admin.request(json!({"cmd": "thread_update", "thread_id": tid, "locked": false})).await;

    let r = bob.request(json!({"cmd": "thread_update", "thread_id": tid, "archived": true, "name": "Renamed"})).await;
    assert_eq!(r["thread"]["archived"], true);
    assert_eq!(r["thread"]["name"], "Renamed");
    let r = bob
        .request(json!({"cmd": "message_react_add", "thread_id": tid, "id": m["message"]["id"], "emoji": "x"}))
        .await;
    assert_eq!(r["val"], "This thread is archived");
    assert_eq!(r["code"], "thread_archived");
    // A new message brings the thread back.
    let r = bob.request(json!({"cmd": "message_new", "thread_id": tid, "content": "back"})).await;
    assert_eq!(r["cmd"], "message_new");
    assert_eq!(admin.recv_cmd("thread_update").await["thread"]["archived"], true, "bob's archive");
    let update = admin.recv_cmd("thread_update").await;
    assert_eq!(update["thread"]["archived"], false, "un-archived by the new message");

    let r = admin.request(json!({"cmd": "thread_delete", "thread_id": tid})).await;
    assert_eq!(r["cmd"], "thread_delete", "{r}");
    assert_eq!(r["thread_id"], tid);
    assert_eq!(bob.recv_cmd("thread_delete").await["seq"], r["seq"]);
    let r = bob.request(json!({"cmd": "thread_get", "thread_id": tid})).await;
    assert_eq!(r["val"], "Thread not found");

    // Resume from 0 replays the forum's thread events in seq order (deleted messages left out).
    let mut late = server.login("bob", "correct horse").await;
    late.send(json!({"cmd": "resume", "channels": {"ideas": 0}})).await;
    let mut kinds = Vec::new();
    loop {
        let p = late.recv().await;
        if p["cmd"] == "resumed" {
            break;
        }
        if p["replay"] == true {
            kinds.push(p["cmd"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(kinds.first().map(String::as_str), Some("thread_create"));
    assert_eq!(kinds.last().map(String::as_str), Some("thread_delete"));
    assert!(!kinds.contains(&"message_new".to_owned()), "{kinds:?}");
    server.stop().await;
}

#[tokio::test]
async fn threads_of_hidden_forums_stay_hidden() {
    let server = TestServer::spawn().await;
    let mut admin = server.member("root", &["owner"]).await;
    let mut bob = server.register("bob").await;
    admin.request(json!({"cmd": "channel_create", "name": "staff", "type": "forum"})).await;
    let t = admin.request(json!({"cmd": "thread_create", "channel": "staff", "name": "plans"})).await;
    let tid = t["thread"]["id"].clone();
    for frame in [
        json!({"cmd": "thread_get", "thread_id": tid}),
        json!({"cmd": "messages_get", "thread_id": tid}),
        json!({"cmd": "thread_join", "thread_id": tid}),
    ] {
        let r = bob.request(frame).await;
        assert_eq!(r["val"], "You do not have permission to view this thread");
    }
    let r = bob.request(json!({"cmd": "message_new", "thread_id": tid, "content": "x"})).await;
    assert_eq!(r["val"], "You do not have permission to send messages in this thread");
    let r = bob.request(json!({"cmd": "thread_create", "channel": "staff", "name": "mine"})).await;
    assert_eq!(r["val"], "You do not have permission to create threads in this channel");
    server.stop().await;
}
