//! Attachments (PROTOCOL §3.6, §6.9, §6.1): uploads with each credential form, hostile uploads,
//! downloads that cannot run script, attaching to messages, and the lifecycle (expiry, unused
//! uploads, deleted messages and channels, restarts), on both databases and both file storages
//! (a local folder, and an S3 bucket of the test binary's private moto server).

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use confab::config::Config;

use crate::{
    channels::open,
    support::{Backend, Client, TestServer},
};

/// Where a test server keeps attachment files.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Files {
    Local,
    S3,
}

/// A server on `backend` storing files in `files`, with `tweak` applied after the storage
/// settings.
async fn spawn_on(backend: Backend, files: Files, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let moto = match files {
        Files::Local => None,
        Files::S3 => Some(crate::moto::moto().await),
    };
    TestServer::spawn_with(backend, |cfg| {
        if let Some(moto) = moto {
            moto.configure(cfg);
        }
        tweak(cfg);
    })
    .await
}

/// Generates one test per (database, file storage) pair listed for each `async fn name(Backend,
/// Files)`.
macro_rules! on_storages {
    ($($test:ident => $($name:ident($backend:ident, $files:ident)),+;)*) => {$($(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $test(Backend::$backend, Files::$files).await;
        }
    )+)*};
}

/// A `w`×`h` image encoded as `format`.
fn encoded(w: u32, h: u32, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::new_rgb8(w, h).write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn png(w: u32, h: u32) -> Vec<u8> {
    encoded(w, h, image::ImageFormat::Png)
}

/// The size in pixels of an image file.
fn pixels(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(bytes).unwrap();
    (img.width(), img.height())
}

fn data_url(mime: &str, bytes: &[u8]) -> String {
    format!("data:{mime};base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The official client's body for `file`.
fn body(mime: &str, bytes: &[u8], name: &str, channel: &str) -> Value {
    json!({"file": data_url(mime, bytes), "name": name, "mime_type": mime, "channel": channel})
}

async fn spawn(backend: Backend, files: Files) -> TestServer {
    spawn_on(backend, files, |cfg| cfg.attachments.sweep_interval_ms = 50).await
}

/// `POST /attachments/upload` with an optional bearer token → (status, body).
async fn upload(server: &TestServer, bearer: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = server.http.post(server.url("/attachments/upload")).json(body);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// An account with a bearer token and a logged-in socket.
async fn account(server: &TestServer, name: &str) -> (String, Client) {
    let set = server.http_register(name).await;
    let token = set["access_token"].as_str().unwrap().to_owned();
    (token, server.login(name, "correct horse").await)
}

async fn uploaded(server: &TestServer, token: &str, body: &Value) -> Value {
    let (status, r) = upload(server, Some(token), body).await;
    assert_eq!(status, 201, "{r}");
    r["attachment"].clone()
}

/// Waits until `GET` of attachment `a` answers 404 and its file is gone (the sweeper runs
/// every 50 ms).
async fn gone(server: &TestServer, a: &Value) {
    let url = server.url(&format!("/attachments/{}", a["id"].as_str().unwrap()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if server.http.get(&url).send().await.unwrap().status() == 404 && !is_stored(server, a).await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{a} was not removed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The files `server` keeps, seen from outside the server: the local folder's entries, or the
/// objects under the server's prefix as moto lists them.
async fn files_of(server: &TestServer) -> Vec<String> {
    let cfg = &server.config.attachments;
    match cfg.storage {
        confab::attachments::storage::StorageKind::Local => {
            let dir = if cfg.dir.as_os_str().is_empty() {
                server.config.data_dir.join("attachments")
            } else {
                cfg.dir.clone()
            };
            match std::fs::read_dir(&dir) {
                Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
                // Never created, or (the failing-storage test) a plain file in its way.
                Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {
                    Vec::new()
                }
                Err(e) => panic!("{}: {e}", dir.display()),
            }
        }
        confab::attachments::storage::StorageKind::S3 => {
            let prefix = &cfg.s3.prefix;
            let objects = crate::moto::moto().await.objects(prefix).await;
            objects.iter().map(|k| k[prefix.len()..].to_owned()).collect()
        }
    }
}

/// Whether the file of attachment `a` is stored.
async fn is_stored(server: &TestServer, a: &Value) -> bool {
    files_of(server).await.iter().any(|f| f == a["id"].as_str().unwrap())
}

async fn upload_and_attach_end_to_end(backend: Backend, files: Files) {
    let server = spawn(backend, files).await;
    let (token, mut alice) = account(&server, "alice").await;
    let (bob_token, mut bob) = account(&server, "bob").await;

    // The handshake advertises uploads exactly as PROTOCOL §2.1 says.
    let val = &alice.handshake["val"];
    let caps: Vec<&str> = val["capabilities"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    for c in ["attachment_delete", "attachment_get", "attachment_upload"] {
        assert!(caps.contains(&c), "{c}");
    }
    assert!(caps.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        val["attachments"],
        json!({"enabled": true, "max_size": 104857600, "allowed_types": ["image/*", "video/*", "audio/*", "application/pdf"],
               "max_attachments_per_user": -1, "permanent_tiers": ["pro", "max"]})
    );

    // CORS preflight from an allowed origin (the server's own).
    let origin = server.config.public_url.clone();
    let pre = server
        .http
        .request(reqwest::Method::OPTIONS, server.url("/attachments/upload"))
        .header("Origin", &origin)
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert_eq!(pre.headers()["access-control-allow-origin"], origin.as_str());
    assert!(pre.headers()["access-control-allow-methods"].to_str().unwrap().contains("POST"));
    assert!(pre.headers()["access-control-allow-headers"].to_str().unwrap().to_lowercase().contains("content-type"));

    // Form 1: a bearer token. The name loses its path.
    let image = png(640, 480);
    let r = server
        .http
        .post(server.url("/attachments/upload"))
        .header("Origin", &origin)
        .bearer_auth(&token)
        .json(&body("image/png", &image, "../../../etc/cat.png", "general"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["access-control-allow-origin"], origin.as_str());
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["permanent"], false);
    let a = r["attachment"].clone();
    let id = a["id"].as_str().unwrap().to_owned();
    assert_eq!(a["name"], "cat.png");
    assert_eq!(a["mime_type"], "image/png");
    assert!(a["size"].as_u64().unwrap() > 0);
    assert_eq!(a["url"], format!("{}/attachments/{id}", server.config.public_url));
    assert_eq!((a["width"].clone(), a["height"].clone()), (json!(640), json!(480)));
    assert_eq!(a["permanent"], false);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let expires = a["expires_at"].as_i64().unwrap();
    assert!((expires - (now + 7 * 86_400)).abs() < 60, "a small file is kept 7 days: {expires}");
    assert!(is_stored(&server, &a).await);

    // Form 2: this connection's key and its ready.validator (the socket is authenticated).
    let mut carol = server.connect().await;
    carol.send(json!({"cmd": "register", "username": "carol", "password": "correct horse"})).await;
    let ready = carol.expect_auth().await;
    let mut form2 = body("application/pdf", b"%PDF-1.4 hello", "notes.pdf", "general");
    form2["validator_key"] = carol.handshake["val"]["validator_key"].clone();
    form2["validator"] = ready["validator"].clone();
    let (status, r) = upload(&server, None, &form2).await;
    assert_eq!(status, 201, "{r}");
    let pdf = r["attachment"].clone();
    assert!(pdf.get("width").is_none());
    // Another connection's validator with this key does not count; nor after the socket closes.
    form2["validator"] = json!("not-the-validator");
    let (status, r) = upload(&server, None, &form2).await;
    assert_eq!((status, r["error"].clone()), (401, json!("Invalid credentials")));
    form2["validator"] = ready["validator"].clone();
    carol.ws.close(None).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = upload(&server, None, &form2).await;
        if status == 401 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the key outlived its connection");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Download: stored type, nosniff, inline for images, CORS *, cache, sandbox, no CORP.
    let r = server.http.get(server.url(&format!("/attachments/{id}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["content-disposition"], "inline; filename=\"cat.png\"");
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(h["cache-control"], "public, max-age=3600");
    assert_eq!(h["content-security-policy"], "default-src 'none'; sandbox");
    assert!(h.get("cross-origin-resource-policy").is_none());
    let stored = r.bytes().await.unwrap();
    assert_eq!(stored.len() as u64, a["size"].as_u64().unwrap());
    assert_eq!(pixels(&stored), (640, 480));
    let r = server.http.get(pdf["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(r.headers()["content-disposition"], "attachment; filename=\"notes.pdf\"");
    // Range → 206 with Content-Range; past the end → 416.
    let r =
        server.http.get(server.url(&format!("/attachments/{id}"))).header("Range", "bytes=0-1").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], format!("bytes 0-1/{}", stored.len()).as_str());
    assert_eq!(r.bytes().await.unwrap().as_ref(), &stored[..2]);
    let r =
        server.http.get(server.url(&format!("/attachments/{id}"))).header("Range", "bytes=9999-").send().await.unwrap();
    assert_eq!(r.status(), 416);

    // Someone else's upload cannot be attached.
    let r = bob
        .request(json!({"cmd": "message_new", "channel": "general", "content": "", "attachments": [{"id": id}]}))
        .await;
    assert_eq!(
        (r["val"].clone(), r["code"].clone()),
        (json!("You can only attach your own uploads"), json!("forbidden"))
    );
    let r = bob
        .request(json!({"cmd": "message_new", "channel": "general", "content": "x", "attachments": [{"id": "nope"}]}))
        .await;
    assert_eq!(r["val"], "Attachment nope not found or expired");
    for (attachments, text) in [
        (json!("x"), "Attachments must be an array"),
        (json!(["x"]), "Each attachment must be an object"),
        (json!([{}]), "Attachment ID is required"),
        (json!((0..11).map(|i| json!({"id": i.to_string()})).collect::<Vec<_>>()), "Cannot attach more than 10 files"),
    ] {
        let r = bob
            .request(json!({"cmd": "message_new", "channel": "general", "content": "x", "attachments": attachments}))
            .await;
        assert_eq!(r["val"], text);
    }

    // The uploader posts it with empty content: echoed and stored with the upload object.
    let r = alice
        .request(json!({"cmd": "message_new", "channel": "general", "content": "", "attachments": [{"id": id}]}))
        .await;
    assert_eq!(r["cmd"], "message_new", "{r}");
    assert_eq!(r["message"]["content"], "");
    assert_eq!(r["message"]["attachments"], json!([a.clone()]));
    let seen = bob.recv_cmd("message_new").await;
    assert_eq!(seen["message"]["attachments"][0]["id"], json!(id));
    let history = bob.request(json!({"cmd": "messages_get", "channel": "general"})).await;
    let last = history["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["attachments"], json!([a.clone()]));
    // It is used now: a second message cannot take it again.
    let r = alice
        .request(json!({"cmd": "message_new", "channel": "general", "content": "again", "attachments": [{"id": id}]}))
        .await;
    assert_eq!(r["val"], format!("Attachment {id} not found or expired"));

    // A retried send (same nonce) is answered as the duplicate it is, attachments and all.
    let other = uploaded(&server, &token, &body("image/png", &png(3, 3), "n.png", "general")).await;
    let frame = json!({"cmd": "message_new", "channel": "general", "content": "", "nonce": "n-1", "attachments": [{"id": other["id"]}]});
    let first = alice.request(frame.clone()).await;
    assert_eq!(first["message"]["attachments"], json!([other.clone()]), "{first}");
    let again = alice.request(frame).await;
    assert_eq!(
        (again["duplicate"].clone(), again["message"]["id"].clone()),
        (json!(true), first["message"]["id"].clone()),
        "{again}"
    );

    // attachment_get → attachment_info.
    let r = bob.request(json!({"cmd": "attachment_get", "attachment_id": id})).await;
    assert_eq!((r["cmd"].clone(), r["attachment"].clone()), (json!("attachment_info"), a.clone()));
    let r = bob.request(json!({"cmd": "attachment_get"})).await;
    assert_eq!(r["val"], "Attachment ID is required");
    let r = bob.request(json!({"cmd": "attachment_get", "attachment_id": "nope"})).await;
    assert_eq!(r["val"], "Attachment not found or expired");

    // attachment_delete: not bob's; alice may; then the file is gone.
    let r = bob.request(json!({"cmd": "attachment_delete", "attachment_id": id})).await;
    assert_eq!(
        (r["val"].clone(), r["code"].clone()),
        (json!("You can only delete your own attachments"), json!("forbidden"))
    );
    let r = bob.request(json!({"cmd": "attachment_delete", "attachment_id": "nope"})).await;
    assert_eq!(r["val"], "Attachment not found");
    let r = alice.request(json!({"cmd": "attachment_delete", "attachment_id": id})).await;
    assert_eq!(
        r,
        json!({"cmd": "attachment_deleted", "attachment_id": id, "deleted": true, "listener": r["listener"]})
    );
    let r = server.http.get(server.url(&format!("/attachments/{id}"))).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "Attachment not found or expired");
    assert!(!is_stored(&server, &a).await);

    // A moderator may delete anyone's upload.
    let other = uploaded(&server, &bob_token, &body("image/png", &png(1, 1), "b.png", "general")).await;
    let mut moderator = server.member("mod", &["user", "moderator"]).await;
    let r = moderator.request(json!({"cmd": "attachment_delete", "attachment_id": other["id"]})).await;
    assert_eq!(r["deleted"], true, "{r}");

    // A file lost behind the server's back (a bucket emptied by hand) is a 404, not an error.
    let lost = uploaded(&server, &token, &body("image/png", &png(1, 1), "l.png", "general")).await;
    let cfg = &server.config;
    let storage = confab::attachments::storage::Storage::new(&cfg.attachments, &cfg.data_dir).unwrap();
    storage.delete(lost["id"].as_str().unwrap()).await.unwrap();
    assert!(!is_stored(&server, &lost).await);
    let r = server.http.get(lost["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(r.status(), 404);
    server.stop().await;
}

async fn hostile_uploads_are_refused(backend: Backend, files: Files) {
    let server = spawn_on(backend, files, |cfg| cfg.attachments.max_size = 1000).await;
    let (token, mut alice) = account(&server, "alice").await;
    let t = Some(token.as_str());
    let ok = body("image/png", &png(2, 2), "a.png", "general");

    let cases: Vec<(Option<&str>, Value, u16, String)> = vec![
        (None, ok.clone(), 401, "validator_key and validator are required for authentication".into()),
        (Some("garbage"), ok.clone(), 401, "Invalid credentials".into()),
        (
            None,
            json!({"validator_key": "originChats-x-y", "validator": "v", "file": "x"}),
            401,
            "Invalid credentials".into(),
        ),
        (t, json!({"file": "x", "name": "a"}), 400, "Missing required fields: file, name, mime_type, channel".into()),
        (
            t,
            json!({"file": "data:image/png;base64,@@@@", "name": "a", "mime_type": "image/png", "channel": "general"}),
            400,
            "Invalid file data".into(),
        ),
        (
            t,
            json!({"file": "data:image/png,abc", "name": "a", "mime_type": "image/png", "channel": "general"}),
            400,
            "Invalid file data".into(),
        ),
        (
            t,
            body("image/png", b"\x89PNG\r\n\x1a\n but not a picture", "x.png", "general"),
            400,
            "Invalid file data".into(),
        ),
        (
            t,
            body("image/png", b"<html><script>alert(1)</script></html>", "x.png", "general"),
            415,
            "File type not allowed".into(),
        ),
        (
            t,
            body(
                "image/svg+xml",
                b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
                "x.svg",
                "general",
            ),
            415,
            "File type not allowed".into(),
        ),
        (t, body("text/html", b"<html></html>", "x.html", "general"), 415, "File type not allowed".into()),
        (t, body("application/pdf", &png(2, 2), "x.pdf", "general"), 415, "File type not allowed".into()),
        (t, body("imagepng", &png(2, 2), "x.png", "general"), 415, "File type not allowed".into()),
        (
            t,
            body("image/png", &[png(2, 2), vec![0; 1000]].concat(), "big.png", "general"),
            413,
            "File too large (max 1000 bytes)".into(),
        ),
        (t, body("image/png", &png(2, 2), "a.png", "nowhere"), 404, "Channel does not exist".into()),
        (t, body("image/png", &png(2, 2), "/", "general"), 400, "Invalid file name".into()),
    ];
    for (bearer, b, status, text) in cases {
        let (got, r) = upload(&server, bearer, &b).await;
        assert_eq!((got, r["error"].as_str().unwrap_or("")), (status, text.as_str()), "{b}");
    }
    // A body past max_size × 4/3 + 64 KiB is cut off with the protocol's 413 text.
    let huge = json!({"file": "A".repeat(80_000), "name": "a", "mime_type": "image/png", "channel": "general"});
    let (status, r) = upload(&server, t, &huge).await;
    assert_eq!(status, 413);
    let text = r["error"].as_str().unwrap();
    assert!(text.starts_with("Request body too large (max ") && text.ends_with(" bytes)"), "{text}");
    // Not JSON.
    let r = server.http.post(server.url("/attachments/upload")).body("x").send().await.unwrap();
    assert_eq!(r.status(), 415);

    // Path tricks on download reach nothing.
    for path in
        ["/attachments/..%2Fconfab.db", "/attachments/confab.db", "/attachments/00000000-0000-0000-0000-000000000000"]
    {
        let r = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }

    let r = server.http.get(server.url("/attachments/")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "Attachment ID required");

    // Without attach_files: no upload and no attaching.
    let r = alice.request(json!({"cmd": "ping"})).await;
    assert_eq!(r["cmd"], "pong");
    let mut admin = server.member("root", &["owner"]).await;
    let r = admin.request(json!({"cmd": "role_create", "name": "guest", "permissions": ["send_messages"]})).await;
    assert_eq!(r["cmd"], "role_create", "{r}");
    let perms = json!({"view": ["guest", "user"], "send": ["guest", "user"]});
    let r =
        admin.request(json!({"cmd": "channel_create", "name": "lobby", "type": "text", "permissions": perms})).await;
    assert_eq!(r["cmd"], "channel_create", "{r}");
    let set = server.http_register("gus").await;
    server.set_roles("gus", &["guest"]).await;
    let mut gus = server.login("gus", "correct horse").await;
    let (status, r) =
        upload(&server, set["access_token"].as_str(), &body("image/png", &png(2, 2), "a.png", "lobby")).await;
    assert_eq!((status, r["error"].clone()), (403, json!("You don't have permission to send in this channel")));
    let r = gus
        .request(json!({"cmd": "message_new", "channel": "lobby", "content": "", "attachments": [{"id": "x"}]}))
        .await;
    assert_eq!(
        (r["val"].clone(), r["code"].clone()),
        (json!("You do not have permission to attach files"), json!("forbidden"))
    );
    server.stop().await;
}

async fn uploads_into_forum_threads(backend: Backend, files: Files) {
    let server = spawn(backend, files).await;
    let mut admin = server.member("root", &["owner"]).await;
    let r =
        admin.request(json!({"cmd": "channel_create", "name": "ideas", "type": "forum", "permissions": open()})).await;
    assert_eq!(r["cmd"], "channel_create", "{r}");
    let (token, mut alice) = account(&server, "alice").await;
    let created = alice.request(json!({"cmd": "thread_create", "channel": "ideas", "name": "First"})).await;
    let tid = created["thread"]["id"].clone();
    // The official client names the forum when uploading inside one of its threads.
    let a =
        uploaded(&server, &token, &body("image/gif", &encoded(3, 2, image::ImageFormat::Gif), "a.gif", "ideas")).await;
    assert_eq!((a["width"].clone(), a["height"].clone()), (json!(3), json!(2)));
    let r = alice
        .request(json!({"cmd": "message_new", "thread_id": tid, "channel": "ideas", "content": "", "attachments": [{"id": a["id"]}]}))
        .await;
    assert_eq!(r["cmd"], "message_new", "{r}");
    assert_eq!(r["message"]["attachments"], json!([a]));
    let history = alice.request(json!({"cmd": "thread_messages", "thread_id": tid})).await;
    assert_eq!(history["messages"][0]["attachments"], json!([a]), "{history}");

    // A large image is shrunk to fit 1920×1920 and reports its new size.
    let wide = uploaded(&server, &token, &body("image/png", &png(2500, 100), "wide.png", "ideas")).await;
    assert_eq!(wide["width"], 1920);
    let height = wide["height"].as_u64().unwrap();
    assert!((76..=77).contains(&height), "{wide}");
    let stored = server.http.get(wide["url"].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(pixels(&stored), (1920, height as u32));
    assert_eq!(stored.len() as u64, wide["size"].as_u64().unwrap());
    server.stop().await;
}

async fn lifecycle_frees_files(backend: Backend, files: Files) {
    let mut server = spawn(backend, files).await;
    let (token, mut alice) = account(&server, "alice").await;
    let mut admin = server.member("root", &["owner"]).await;
    let r =
        admin.request(json!({"cmd": "channel_create", "name": "temp", "type": "text", "permissions": open()})).await;
    assert_eq!(r["cmd"], "channel_create", "{r}");
    let up = |name: &str, channel: &str| body("image/png", &png(4, 4), name, channel);
    let post = |channel: &str, a: &Value| json!({"cmd": "message_new", "channel": channel, "content": "", "attachments": [{"id": a["id"]}]});

    let unused = uploaded(&server, &token, &up("unused.png", "general")).await;
    let kept = uploaded(&server, &token, &up("kept.png", "general")).await;
    assert_eq!(alice.request(post("general", &kept)).await["cmd"], "message_new");
    let in_temp = uploaded(&server, &token, &up("temp.png", "temp")).await;
    assert_eq!(alice.request(post("temp", &in_temp)).await["cmd"], "message_new");
    let in_deleted = uploaded(&server, &token, &up("deleted.png", "general")).await;
    let m = alice.request(post("general", &in_deleted)).await;
    let mut short = up("short.png", "general");
    short["expires_in_days"] = json!(0.00001);
    let short = uploaded(&server, &token, &short).await;
    assert_eq!(alice.request(post("general", &short)).await["cmd"], "message_new");

    // Deleting a message frees its files; so does deleting a channel; an expiry passing too.
    let r = alice.request(json!({"cmd": "message_delete", "id": m["message"]["id"], "channel": "general"})).await;
    assert_eq!(r["cmd"], "message_delete", "{r}");
    gone(&server, &in_deleted).await;
    let r = admin.request(json!({"cmd": "channel_delete", "name": "temp"})).await;
    assert_eq!(r["cmd"], "channel_delete", "{r}");
    gone(&server, &in_temp).await;
    gone(&server, &short).await;
    // Younger than the unused limit: still there.
    assert_eq!(server.http.get(unused["url"].as_str().unwrap()).send().await.unwrap().status(), 200);

    // After a restart with a zero unused limit, the sweeper removes the unused upload only.
    drop((alice, admin));
    server.config.attachments.unused_ttl_s = 0;
    let server = server.restart().await;
    let at = |a: &Value| server.url(&format!("/attachments/{}", a["id"].as_str().unwrap()));
    gone(&server, &unused).await;
    assert_eq!(server.http.get(at(&kept)).send().await.unwrap().status(), 200);
    server.stop().await;
}

async fn upload_rate_and_switch(backend: Backend, files: Files) {
    let server = spawn_on(backend, files, |cfg| {
        cfg.rate_limits.enabled = true;
        cfg.attachments.uploads_per_minute = 2;
    })
    .await;
    let (token, _alice) = account(&server, "alice").await;
    let b = body("image/png", &png(1, 1), "a.png", "general");
    for _ in 0..2 {
        assert_eq!(upload(&server, Some(&token), &b).await.0, 201);
    }
    let r = server.http.post(server.url("/attachments/upload")).bearer_auth(&token).json(&b).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "rate_limited");
    server.stop().await;

    // Switched off: not advertised, and every entry point says so.
    let server = spawn_on(backend, files, |cfg| cfg.attachments.enabled = false).await;
    let (token, mut alice) = account(&server, "alice").await;
    let val = &alice.handshake["val"];
    assert_eq!(val["attachments"]["enabled"], false);
    assert!(!val["capabilities"].as_array().unwrap().iter().any(|c| c.as_str().unwrap().starts_with("attachment")));
    let (status, r) = upload(&server, Some(&token), &b).await;
    assert_eq!((status, r["error"].clone()), (503, json!("Attachments are disabled")));
    let r = server.http.get(server.url("/attachments/00000000-0000-0000-0000-000000000000")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let r = alice
        .request(json!({"cmd": "message_new", "channel": "general", "content": "", "attachments": [{"id": "x"}]}))
        .await;
    assert_eq!((r["val"].clone(), r["code"].clone()), (json!("Attachments are disabled"), json!("disabled")));
    server.stop().await;
}

/// Form 3: a Rotur validator for the connection's key, even the very one `auth` consumed, from
/// the account that connection is logged in as.
async fn rotur_validator_uploads(backend: Backend, files: Files) {
    let (url, _fake) = crate::rotur::fake_rotur(&[("r-1", "Bob"), ("r-2", "Eve")]).await;
    let server = spawn_on(backend, files, move |cfg| {
        cfg.auth_mode = confab::config::AuthMode::Rotur;
        cfg.rotur.base_url = url;
    })
    .await;
    let mut bob = server.connect().await;
    let key = bob.handshake["val"]["validator_key"].as_str().unwrap().to_owned();
    let v = crate::rotur::validator("r-1", &key);
    bob.send(json!({"cmd": "auth", "validator": v})).await;
    bob.expect_auth().await;
    let mut b = body("audio/mpeg", b"ID3\x03\x00rest", "song.mp3", "general");
    b["validator_key"] = json!(key);
    b["validator"] = json!(v);
    let (status, r) = upload(&server, None, &b).await;
    assert_eq!(status, 201, "{r}");
    let a = r["attachment"].clone();
    let ranged = server.http.get(a["url"].as_str().unwrap()).header("Range", "bytes=1-").send().await.unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.headers()["content-disposition"], "inline; filename=\"song.mp3\"");
    // Another Rotur account's validator for this key is refused.
    b["validator"] = json!(crate::rotur::validator("r-2", &key));
    let (status, r) = upload(&server, None, &b).await;
    assert_eq!((status, r["error"].clone()), (401, json!("Invalid credentials")));
    server.stop().await;
}

/// A failed file write leaves no row, and a failed row write leaves no file: nothing the sweeper
/// could not find. With S3, the wrong secret is refused (moto checks signatures here), which is
/// also what shows that every other S3 test's requests were really verified.
async fn failed_writes_leave_nothing(backend: Backend, files: Files) {
    let blocker = tempfile::NamedTempFile::new().unwrap();
    let server = spawn_on(backend, files, |cfg| match files {
        // A folder under a plain file cannot be created.
        Files::Local => cfg.attachments.dir = blocker.path().join("attachments"),
        Files::S3 => cfg.attachments.s3.secret_access_key = "not-the-secret".into(),
    })
    .await;
    let (token, _alice) = account(&server, "alice").await;
    let b = body("image/png", &png(2, 2), "a.png", "general");
    let (status, r) = upload(&server, Some(&token), &b).await;
    assert_eq!((status, r["error"].clone()), (500, json!("Failed to save attachment")));
    let later = 1e12;
    assert_eq!(server.store.attachments_due(later, later, 10).await.unwrap(), Vec::<String>::new(), "a row is left");
    assert_eq!(files_of(&server).await, Vec::<String>::new());
    server.stop().await;

    // Now the storage works and the database refuses the row.
    let server = spawn(backend, files).await;
    let (token, _alice) = account(&server, "alice").await;
    assert_eq!(upload(&server, Some(&token), &b).await.0, 201, "uploads work before the trigger");
    let before = files_of(&server).await;
    assert_eq!(before.len(), 1);
    server
        .raw_sql(match backend {
            Backend::Sqlite => {
                "CREATE TRIGGER refuse_uploads BEFORE INSERT ON attachments BEGIN SELECT RAISE(ABORT, 'refused'); END"
            }
            Backend::Postgres => {
                "CREATE FUNCTION refuse_uploads() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'refused'; END $$; \
                 CREATE TRIGGER refuse_uploads BEFORE INSERT ON attachments FOR EACH ROW EXECUTE FUNCTION refuse_uploads()"
            }
        })
        .await;
    let (status, r) = upload(&server, Some(&token), &b).await;
    assert_eq!((status, r["error"].clone()), (500, json!("Failed to save attachment")));
    assert_eq!(files_of(&server).await, before, "a file without a row was stored");
    server.stop().await;
}

on_storages! {
    upload_and_attach_end_to_end => upload_and_attach_end_to_end_sqlite(Sqlite, Local),
        upload_and_attach_end_to_end_postgres(Postgres, Local), upload_and_attach_end_to_end_sqlite_s3(Sqlite, S3),
        upload_and_attach_end_to_end_postgres_s3(Postgres, S3);
    hostile_uploads_are_refused => hostile_uploads_are_refused_sqlite(Sqlite, Local),
        hostile_uploads_are_refused_postgres(Postgres, Local), hostile_uploads_are_refused_sqlite_s3(Sqlite, S3);
    uploads_into_forum_threads => uploads_into_forum_threads_sqlite(Sqlite, Local),
        uploads_into_forum_threads_postgres(Postgres, Local), uploads_into_forum_threads_postgres_s3(Postgres, S3);
    lifecycle_frees_files => lifecycle_frees_files_sqlite(Sqlite, Local), lifecycle_frees_files_postgres(Postgres, Local),
        lifecycle_frees_files_sqlite_s3(Sqlite, S3), lifecycle_frees_files_postgres_s3(Postgres, S3);
    upload_rate_and_switch => upload_rate_and_switch_sqlite(Sqlite, Local),
        upload_rate_and_switch_postgres(Postgres, Local), upload_rate_and_switch_sqlite_s3(Sqlite, S3);
    rotur_validator_uploads => rotur_validator_uploads_sqlite(Sqlite, Local),
        rotur_validator_uploads_postgres(Postgres, Local), rotur_validator_uploads_sqlite_s3(Sqlite, S3);
    failed_writes_leave_nothing => failed_writes_leave_nothing_sqlite(Sqlite, Local),
        failed_writes_leave_nothing_sqlite_s3(Sqlite, S3), failed_writes_leave_nothing_postgres_s3(Postgres, S3);
    per_user_limit_removes_the_oldest => per_user_limit_removes_the_oldest_sqlite(Sqlite, Local),
        per_user_limit_removes_the_oldest_postgres(Postgres, Local), per_user_limit_removes_the_oldest_sqlite_s3(Sqlite, S3);
}

/// `attachments.max_attachments_per_user` (PROTOCOL §2.1): advertised, and at the limit an upload
/// removes the uploader's oldest one — even one a message shows — and nobody else's.
async fn per_user_limit_removes_the_oldest(backend: Backend, files: Files) {
    let server = spawn_on(backend, files, |cfg| cfg.attachments.max_attachments_per_user = 2).await;
    let (token, mut alice) = account(&server, "alice").await;
    let (bob_token, _bob) = account(&server, "bob").await;
    assert_eq!(alice.handshake["val"]["attachments"]["max_attachments_per_user"], 2);
    let bobs = uploaded(&server, &bob_token, &body("image/png", &png(2, 2), "b.png", "general")).await;
    let first = uploaded(&server, &token, &body("image/png", &png(2, 2), "1.png", "general")).await;
    let attach =
        json!({"cmd": "message_new", "channel": "general", "content": "", "attachments": [{"id": first["id"]}]});
    assert_eq!(alice.request(attach).await["cmd"], "message_new");
    let second = uploaded(&server, &token, &body("image/png", &png(2, 2), "2.png", "general")).await;
    let third = uploaded(&server, &token, &body("image/png", &png(2, 2), "3.png", "general")).await;
    gone(&server, &first).await;
    for kept in [&second, &third, &bobs] {
        let url = server.url(&format!("/attachments/{}", kept["id"].as_str().unwrap()));
        assert_eq!(server.http.get(&url).send().await.unwrap().status(), 200, "{kept}");
    }
    let fourth = uploaded(&server, &token, &body("image/png", &png(2, 2), "4.png", "general")).await;
    gone(&server, &second).await;
    assert!(is_stored(&server, &fourth).await && is_stored(&server, &third).await);
    server.stop().await;
}
