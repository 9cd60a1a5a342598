//! The web app served at `/`: a plain `GET /` gets the page while `/` and `/ws` still upgrade;
//! every file has its type, a strict CSP, an ETag that answers 304, and gzip when asked for.

use std::io::Read;

use serde_json::json;

use crate::support::{Client, TestServer};

/// Fetches `path` with extra request headers; returns status, headers and the raw body.
async fn get(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = server.http.get(server.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("http");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.expect("body").to_vec())
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The relative imports of a module (`from './x.mjs'` and `import './x.mjs'`).
fn imports(source: &str) -> Vec<String> {
    source
        .split(['\'', '"'])
        .filter(|s| s.starts_with("./") && s.ends_with(".mjs"))
        .map(|s| s.trim_start_matches("./").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_root_serves_the_app_and_still_upgrades() {
    let server = TestServer::spawn().await;
    let (status, h, body) = get(&server, "/", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-type"), "text/html; charset=utf-8");
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains(r#"<script type="module" src="/static/js/main.mjs"></script>"#), "{page}");
    let csp = header(&h, "content-security-policy");
    assert!(csp.contains("script-src 'self'") && csp.contains("style-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    assert!(!page.contains("style=") && !page.contains("<style"), "inline style in {page}");
    assert_eq!(page.matches("<script").count(), page.matches("<script type=\"module\" src=").count(), "{page}");
    assert_eq!(header(&h, "x-content-type-options"), "nosniff");

    // The official client dials `/`, bots often `/ws`: both still get the handshake and chat.
    let mut a = server.register("alice").await;
    let mut b = Client::open(&server.ws_url("/ws"), &[]).await.expect("upgrade on /ws");
    b.handshake = b.recv_cmd("handshake").await;
    b.send(json!({"cmd": "login", "username": "alice", "password": "correct horse"})).await;
    b.expect_auth().await;
    let echo = a.request(json!({"cmd": "message_new", "channel": "general", "content": "hi"})).await;
    assert_eq!(echo["message"]["content"], "hi");
    assert_eq!(b.recv_cmd("message_new").await["message"]["id"], echo["message"]["id"]);
    // `/ws` without an upgrade keeps its one-line description.
    let (status, h, _) = get(&server, "/ws", &[]).await;
    assert_eq!((status, header(&h, "content-type")), (200, "text/plain; charset=utf-8"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_files_have_types_etags_and_answer_304() {
    let server = TestServer::spawn().await;
    // Walk the module graph from main.mjs: every import is served, as JavaScript.
    let mut todo = vec!["js/main.mjs".to_string()];
    let mut seen = Vec::new();
    while let Some(path) = todo.pop() {
        if seen.contains(&path) {
            continue;
        }
        let (status, h, body) = get(&server, &format!("/static/{path}"), &[]).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(header(&h, "content-type"), "text/javascript; charset=utf-8", "{path}");
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        todo.extend(imports(std::str::from_utf8(&body).unwrap()).into_iter().map(|m| format!("{dir}/{m}")));
        seen.push(path);
    }
    assert!(seen.len() >= 5, "{seen:?}");
    for (path, kind) in [("/", "text/html"), ("/static/app.css", "text/css"), ("/static/icon.svg", "image/svg+xml")] {
        let (status, h, body) = get(&server, path, &[]).await;
        assert_eq!(status, 200, "{path}");
        assert!(header(&h, "content-type").starts_with(kind), "{path}");
        assert_eq!(header(&h, "cache-control"), "no-cache");
        let etag = header(&h, "etag").to_string();
        assert!(etag.starts_with('"') && etag.len() > 8, "{path}: {etag}");
        let (status, h2, body2) = get(&server, path, &[("if-none-match", &format!("\"other\", {etag}"))]).await;
        assert_eq!(status, 304, "{path}");
        assert!(body2.is_empty());
        assert_eq!(header(&h2, "etag"), etag);
        let (status, _, again) = get(&server, path, &[("if-none-match", "\"other\"")]).await;
        assert_eq!((status, again), (200, body));
    }
    let (_, h_css, _) = get(&server, "/static/app.css", &[]).await;
    let (_, h_js, _) = get(&server, "/static/js/main.mjs", &[]).await;
    assert_ne!(header(&h_css, "etag"), header(&h_js, "etag"));
    let (status, _, body) = get(&server, "/static/js/nope.mjs", &[]).await;
    assert_eq!(status, 404);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["code"], "not_found");
    let (status, _, _) = get(&server, "/static/../Cargo.toml", &[]).await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_files_are_gzipped_when_the_client_accepts_it() {
    let server = TestServer::spawn().await;
    for path in ["/", "/static/js/state.mjs", "/static/app.css"] {
        let (_, plain_h, plain) = get(&server, path, &[]).await;
        assert_eq!(header(&plain_h, "content-encoding"), "", "{path}");
        assert_eq!(header(&plain_h, "vary"), "Accept-Encoding");
        let (status, h, zipped) = get(&server, path, &[("accept-encoding", "br, gzip;q=0.8")]).await;
        assert_eq!(status, 200);
        assert_eq!(header(&h, "content-encoding"), "gzip", "{path}");
        assert_eq!(header(&h, "etag"), header(&plain_h, "etag"));
        assert!(zipped.len() < plain.len(), "{path}: {} >= {}", zipped.len(), plain.len());
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&zipped[..]).read_to_end(&mut unzipped).unwrap();
        assert_eq!(unzipped, plain, "{path}");
        // The second compressed answer is the same bytes (made once, not per request).
        let (_, _, again) = get(&server, path, &[("accept-encoding", "gzip")]).await;
        assert_eq!(again, zipped);
        let (_, h, _) = get(&server, path, &[("accept-encoding", "gzip;q=0, br")]).await;
        assert_eq!(header(&h, "content-encoding"), "", "{path}");
    }
    server.stop().await;
}
