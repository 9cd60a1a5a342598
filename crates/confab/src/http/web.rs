//! Confab's own web app: the files under `crates/confab/web/`, embedded in the binary so a fresh
//! clone, `cargo install` and a release build all serve the same bytes and nobody needs node to run
//! Confab. `GET /` without a WebSocket upgrade gets `index.html`; the rest lives under `/static/`.
//!
//! Every response carries a strong `ETag` (a hash of the file) with `Cache-Control: no-cache`, so a
//! browser revalidates cheaply (304) instead of running stale code after an upgrade, and a strict
//! Content-Security-Policy: scripts and styles only from this origin, no inline code at all.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, OnceLock},
};

use axum::{
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::{gateway, state::AppState};

/// Embeds the named files of `web/` as `(path, bytes)` pairs.
macro_rules! web_files {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $name)) as &'static [u8])),*]
    };
}

/// Every file of the app; a unit test checks that this list and the folder agree.
const FILES: [(&str, &[u8]); 23] = web_files![
    "index.html",
    "app.css",
    "admin.css",
    "icon.svg",
    "js/admin-model.mjs",
    "js/admin.mjs",
    "js/auth.mjs",
    "js/composer.mjs",
    "js/conn.mjs",
    "js/dom.mjs",
    "js/forum.mjs",
    "js/main.mjs",
    "js/markdown.mjs",
    "js/message.mjs",
    "js/notify.mjs",
    "js/panel.mjs",
    "js/render.mjs",
    "js/state.mjs",
    "js/threads.mjs",
    "js/vault.mjs",
    "js/views.mjs",
    "js/voice-view.mjs",
    "js/voice.mjs",
];

/// The policy sent with every file. `connect-src 'self'` covers the same-origin `ws:`/`wss:` socket
/// (CSP level 3); nothing inline is needed, so neither scripts nor styles get `'unsafe-inline'`.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   media-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

/// One embedded file with what its responses need, worked out once.
struct Asset {
    path: &'static str,
    body: Bytes,
    content_type: &'static str,
    etag: HeaderValue,
    /// Compressed on first request that accepts gzip, then reused for every later one.
    gzip: OnceLock<Option<Bytes>>,
}

/// The app's files, built once per server.
pub struct Site {
    assets: Vec<Asset>,
}

impl Default for Site {
    fn default() -> Self {
        Self::new()
    }
}

impl Site {
    /// Hashes every embedded file; compression waits for the first request that wants it.
    pub fn new() -> Site {
        let assets = FILES
            .iter()
            .map(|(path, body)| {
                let hash = Sha256::digest(body);
                let hex: String = hash.iter().take(12).map(|b| format!("{b:02x}")).collect();
                Asset {
                    path,
                    body: Bytes::from_static(body),
                    content_type: content_type(path),
                    etag: HeaderValue::from_str(&format!("\"{hex}\"")).unwrap_or(HeaderValue::from_static("\"0\"")),
                    gzip: OnceLock::new(),
                }
            })
            .collect();
        Site { assets }
    }

    /// The response for `path` (relative to `web/`), or `None` when no such file is embedded.
    fn serve(&self, path: &str, headers: &HeaderMap) -> Option<Response> {
        self.assets.iter().find(|a| a.path == path).map(|asset| asset.respond(headers))
    }
}

impl Asset {
    fn respond(&self, request: &HeaderMap) -> Response {
        let not_modified = request
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| etag_matches(v, self.etag.to_str().unwrap_or("")));
        let gzip = if accepts_gzip(request) { self.gzipped() } else { None };
        let (status, body) = match (not_modified, &gzip) {
            (true, _) => (StatusCode::NOT_MODIFIED, Body::empty()),
            (false, Some(z)) => (StatusCode::OK, Body::from(z.clone())),
            (false, None) => (StatusCode::OK, Body::from(self.body.clone())),
        };
        let mut response = (status, body).into_response();
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        h.insert(header::ETAG, self.etag.clone());
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        if gzip.is_some() {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        response
    }

    /// The gzip form, made once; `None` when compressing does not make the file smaller.
    fn gzipped(&self) -> Option<Bytes> {
        self.gzip
            .get_or_init(|| {
                use std::io::Write;
                let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                z.write_all(&self.body).ok()?;
                let out = z.finish().ok()?;
                (out.len() < self.body.len()).then(|| Bytes::from(out))
            })
            .clone()
    }
}

/// `GET /static/{*path}`: an embedded file, or the JSON 404 of every unknown route.
pub async fn asset(State(site): State<Arc<Site>>, Path(path): Path<String>, headers: HeaderMap) -> Response {
    match site.serve(&path, &headers) {
        Some(r) => r,
        None => super::not_found().await,
    }
}

/// `GET /invite/{code}`: the app's page, which reads the code from its own address and offers the
/// sign-up form with it filled in (a link that looks like what it is, rather than `/?invite=`).
pub async fn app_page(State(site): State<Arc<Site>>, headers: HeaderMap) -> Response {
    match site.serve("index.html", &headers) {
        Some(r) => r,
        None => super::not_found().await,
    }
}

/// `GET /`: a WebSocket upgrade goes to the gateway exactly as on `/ws`; any other request gets the
/// app's page, so a browser pointed at the server finds something to chat with.
pub async fn root(
    site: Arc<Site>,
    state: AppState,
    peer: SocketAddr,
    headers: HeaderMap,
    query: HashMap<String, String>,
    ws: Result<gateway::upgrade::WsRequest, gateway::upgrade::NotUpgrade>,
) -> Response {
    match ws {
        Ok(ws) => gateway::upgrade::upgrade(state, peer, headers, query, ws),
        Err(_) => match site.serve("index.html", &headers) {
            Some(r) => r,
            None => super::not_found().await,
        },
    }
}

/// The MIME type by extension; the table above holds only these kinds.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("mjs" | "js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// Whether an `If-None-Match` value names `etag` (a list, weak forms, or `*`).
fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

/// Whether `Accept-Encoding` allows gzip (`gzip;q=0` refuses it).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    accept.split(',').any(|part| {
        let mut it = part.split(';').map(str::trim);
        let coding = it.next().unwrap_or("");
        let zero = it.any(|p| p.strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()) == Some(0.0));
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !zero
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file under `web/` is embedded and every embedded file exists, so nothing is
    /// forgotten in the table and nothing in the folder is dead.
    #[test]
    fn table_matches_folder() {
        fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, root, out);
                } else {
                    out.push(path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/"));
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let mut on_disk = Vec::new();
        walk(&root, &root, &mut on_disk);
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
        assert!(FILES.iter().all(|(p, _)| content_type(p) != "application/octet-stream"), "unknown extension");
    }

    #[test]
    fn gzip_acceptance() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            accepts_gzip(&m)
        };
        assert!(h("gzip, deflate, br"));
        assert!(h("br;q=1.0, gzip;q=0.8"));
        assert!(!h("gzip;q=0"));
        assert!(!h("br"));
        assert!(!h("identity"));
    }

    #[test]
    fn etag_lists() {
        assert!(etag_matches("\"a\", \"b\"", "\"b\""));
        assert!(etag_matches("W/\"b\"", "\"b\""));
        assert!(etag_matches("*", "\"b\""));
        assert!(!etag_matches("\"c\"", "\"b\""));
    }
}
