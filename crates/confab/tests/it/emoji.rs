//! Custom emoji (PROTOCOL §3.7, §5.8, §6.9; media-features checklist 11–14): add, rename and
//! delete with `manage_server`, broadcast to everyone, served over HTTP by id with and without
//! extension, and used in reactions and content as the official client writes them.

use base64::Engine;
use serde_json::{Value, json};

use crate::support::{Backend, TestServer};

on_both! {
    emoji_lifecycle_and_http => emoji_lifecycle_and_http_sqlite, emoji_lifecycle_and_http_postgres;
    bad_emoji_input_and_permissions => bad_emoji_input_and_permissions_sqlite, bad_emoji_input_and_permissions_postgres;
}

const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
const JPEG: &[u8] = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR";

fn data_url(mime: &str, bytes: &[u8]) -> String {
    format!("data:{mime};base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

async fn get(server: &TestServer, path: &str) -> reqwest::Response {
    server.http.get(server.url(path)).send().await.unwrap()
}

async fn emoji_lifecycle_and_http(backend: Backend) {
    let server = TestServer::spawn_with(backend, |_| {}).await;
    let mut root = server.member("root", &["owner"]).await;
    let mut alice = server.register("alice").await;
    let add = json!({"cmd": "emoji_add", "name": " party ", "image": data_url("image/gif", GIF)});
    let r = root.request(add).await;
    assert_eq!(
        r,
        json!({"cmd": "emoji_add", "id": 1, "name": "party", "fileName": "1.gif", "added": true,
                         "global": true, "listener": r["listener"]})
    );
    let seen = alice.recv_cmd("emoji_add").await;
    assert_eq!(seen["fileName"], "1.gif");
    let r = root.request(json!({"cmd": "emoji_add", "name": "cat", "image": data_url("image/jpeg", JPEG)})).await;
    assert_eq!(r["fileName"], "2.jpg", "{r}");
    let r = root.request(json!({"cmd": "emoji_add", "name": "dog", "image": data_url("image/png", PNG)})).await;
    assert_eq!(r["fileName"], "3.png", "{r}");
    let all = alice.request(json!({"cmd": "emoji_get_all"})).await;
    assert_eq!(
        all["emojis"],
        json!({"1": {"name": "party", "fileName": "1.gif"}, "2": {"name": "cat", "fileName": "2.jpg"},
               "3": {"name": "dog", "fileName": "3.png"}})
    );
    let r = alice.request(json!({"cmd": "emoji_get_id", "name": "PARTY"})).await;
    assert_eq!(r["id"], 1);
    let r = alice.request(json!({"cmd": "emoji_get_filename", "name": "cat"})).await;
    assert_eq!(r["filepath"], "2.jpg");

    // Served by id, with and without its extension.
    for path in ["/emojis/1", "/emojis/1.gif"] {
        let r = get(&server, path).await;
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers().clone();
        assert_eq!(h["content-type"], "image/gif");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["cache-control"], "public, max-age=3600");
        assert_eq!(h["access-control-allow-origin"], "*");
        assert_eq!(r.bytes().await.unwrap().as_ref(), GIF);
    }
    assert_eq!(get(&server, "/emojis/2").await.headers()["content-type"], "image/jpeg");
    for path in ["/emojis/1.png", "/emojis/9", "/emojis/x", "/emojis/-1", "/emojis/..%2Fetc"] {
        let r = get(&server, path).await;
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(r.text().await.unwrap(), "Emoji not found", "{path}");
    }

    // As the official client writes them: a reaction by URL, and the content form.
    let host = server.addr.to_string();
    let content = format!("hi <emoji>//{host}/1");
    let content = content.replace("<emoji>", "originChats:<emoji>");
    let echo = alice.request(json!({"cmd": "message_new", "channel": "general", "content": content})).await;
    assert_eq!(echo["message"]["content"], content.as_str());
    let reaction = format!("originChats://{host}/emojis/1");
    let r = alice
        .request(
            json!({"cmd": "message_react_add", "channel": "general", "id": echo["message"]["id"], "emoji": reaction}),
        )
        .await;
    assert_eq!(r["emoji"], reaction.as_str(), "{r}");
    let page = alice.request(json!({"cmd": "messages_get", "channel": "general"})).await;
    let stored = &crate::support::written(&page)[0];
    assert_eq!(stored["content"], content.as_str());
    assert_eq!(stored["reactions"][&reaction], json!(["alice"]));

    // Rename, replace, delete.
    let r = root.request(json!({"cmd": "emoji_update", "emoji_id": 1, "name": "fiesta"})).await;
    assert_eq!(r["updated"], true, "{r}");
    assert_eq!(alice.recv_cmd("emoji_update").await["name"], "fiesta");
    let r = root.request(json!({"cmd": "emoji_update", "emoji_id": "1", "image": data_url("image/png", PNG)})).await;
    assert_eq!(r["fileName"], "1.png", "{r}");
    assert_eq!(get(&server, "/emojis/1.png").await.bytes().await.unwrap().as_ref(), PNG);
    let r = root.request(json!({"cmd": "emoji_update", "emoji_id": 2, "name": "Fiesta"})).await;
    assert_eq!(r["val"], "Emoji name already exists");
    let r = root.request(json!({"cmd": "emoji_delete", "emoji_id": 1})).await;
    assert_eq!(r, json!({"cmd": "emoji_delete", "id": 1, "deleted": true, "global": true, "listener": r["listener"]}));
    assert_eq!(alice.recv_cmd("emoji_delete").await["id"], 1);
    assert_eq!(get(&server, "/emojis/1").await.status(), 404);
    let r = root.request(json!({"cmd": "emoji_delete", "emoji_id": 1})).await;
    assert_eq!(r["val"], "Emoji not found");
    let r = root.request(json!({"cmd": "emoji_update", "emoji_id": 1, "name": "x"})).await;
    assert_eq!(r["val"], "Emoji not found");
    let log = root.request(json!({"cmd": "modlog_get", "category": "server_management"})).await;
    let actions: Vec<&str> = log["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["emoji_delete", "emoji_update", "emoji_update", "emoji_add", "emoji_add", "emoji_add"]);
    server.stop().await;
}

async fn bad_emoji_input_and_permissions(backend: Backend) {
    let server = TestServer::spawn_with(backend, |c| c.security.frame_max = 1 << 20).await;
    let mut root = server.member("root", &["owner"]).await;
    let mut alice = server.register("alice").await;
    let gif = data_url("image/gif", GIF);
    let r = alice.request(json!({"cmd": "emoji_add", "name": "x", "image": gif})).await;
    assert_eq!(r["val"], "Access denied: 'manage_server' permission required");
    let r = alice.request(json!({"cmd": "emoji_delete", "emoji_id": 1})).await;
    assert_eq!(r["code"], "forbidden");
    let big = {
        let mut bytes = GIF.to_vec();
        bytes.resize(262_145, 0);
        data_url("image/gif", &bytes)
    };
    let scheme = |reason: &str| format!("Invalid emoji_add command scheme: {reason}");
    let cases: Vec<(Value, String)> = vec![
        (json!({"image": gif}), scheme("name is required")),
        (json!({"name": "", "image": gif}), scheme("name is required")),
        (json!({"name": "no spaces", "image": gif}), scheme("invalid emoji name")),
        (json!({"name": "x".repeat(65), "image": gif}), scheme("invalid emoji name")),
        (json!({"name": ["x"], "image": gif}), scheme("invalid emoji name")),
        (json!({"name": "x"}), scheme("Invalid image data URI")),
        (json!({"name": "x", "image": "https://example.com/x.gif"}), scheme("Invalid image data URI")),
        (json!({"name": "x", "image": "data:image/gif;base64,@@@"}), scheme("Invalid base64 image data")),
        (json!({"name": "x", "image": data_url("image/svg+xml", b"<svg/>")}), scheme("image type not allowed")),
        (json!({"name": "x", "image": data_url("image/gif", PNG)}), scheme("image type not allowed")),
        (json!({"name": "x", "image": data_url("image/png", b"<html>")}), scheme("image type not allowed")),
        (json!({"name": "x", "image": big}), "Emoji image too large (max 262144 bytes)".to_owned()),
    ];
    for (fields, text) in cases {
        let mut frame = fields.clone();
        frame["cmd"] = json!("emoji_add");
        let r = root.request(frame).await;
        assert_eq!(r["cmd"], "error", "{r}");
        assert_eq!(r["val"], text.as_str(), "{}", fields["name"]);
    }
    let r = root.request(json!({"cmd": "emoji_update", "emoji_id": "abc", "name": "x"})).await;
    assert_eq!(r["val"], "Invalid emoji_update command scheme: emoji_id must be an integer");
    let r = root.request(json!({"cmd": "emoji_update", "emoji_id": 1})).await;
    assert_eq!(r["val"], "At least one field to update is required (name or image)");
    let r = root.request(json!({"cmd": "emoji_add", "name": "ok", "image": gif})).await;
    assert_eq!(r["added"], true);
    let r = root.request(json!({"cmd": "emoji_add", "name": "OK", "image": gif})).await;
    assert_eq!(r["val"], "Emoji name already exists");
    assert_eq!(r["code"], "conflict");
    server.stop().await;
}
