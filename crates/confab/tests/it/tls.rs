//! TLS on the one listener: `wss://` and `https://` with a self-signed certificate made by the
//! `openssl` CLI, verified by a rustls client (ring provider) that trusts only that certificate.

use std::path::{Path, PathBuf};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::{WebSocketStream, tungstenite::Message};

use crate::{
    cli::confab,
    support::{Backend, TestServer, WAIT, http_get_raw, tls_connect},
};

/// A self-signed P-256 end-entity certificate for `localhost` and 127.0.0.1: (cert.pem, key.pem).
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        // openssl marks self-signed certificates as CAs by default, which webpki refuses as a server certificate.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .output()
        .expect("the openssl CLI is required for the TLS tests");
    assert!(out.status.success(), "openssl failed: {}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

async fn tls_server(dir: &Path) -> (TestServer, PathBuf) {
    let (cert, key) = self_signed(dir);
    let server = TestServer::spawn_with(Backend::Sqlite, |c| {
        c.tls.cert_file = Some(cert.clone());
        c.tls.key_file = Some(key.clone());
    })
    .await;
    (server, cert)
}

async fn recv<S>(ws: &mut WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("timed out waiting for a packet") {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).expect("server sent JSON"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a packet, got {other:?}"),
        }
    }
}

/// The next packet that is not presence noise.
async fn recv_skip_presence<S>(ws: &mut WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let p = recv(ws).await;
        if !matches!(p["cmd"].as_str(), Some("user_connect" | "user_join" | "user_disconnect" | "ping")) {
            return p;
        }
    }
}

async fn send<S>(ws: &mut WebSocketStream<S>, v: Value)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(Message::text(v.to_string())).await.expect("send");
}

#[tokio::test]
async fn wss_handshake_register_and_send() {
    let dir = tempfile::tempdir().unwrap();
    let (server, cert) = tls_server(dir.path()).await;
    assert_eq!(server.config.public_url, format!("https://{}", server.addr), "public_url follows TLS");

    let tls = tls_connect(server.addr, "localhost", &cert).await.expect("TLS handshake");
    let url = format!("wss://localhost:{}/", server.addr.port());
    let (mut ws, response) = tokio_tungstenite::client_async(url, tls).await.expect("WebSocket upgrade over TLS");
    assert_eq!(response.status().as_u16(), 101);

    let handshake = recv(&mut ws).await;
    assert_eq!(handshake["cmd"], "handshake", "{handshake}");
    send(&mut ws, json!({"cmd": "register", "username": "Alice", "password": "correct horse"})).await;
    let first = recv_skip_presence(&mut ws).await;
    assert_eq!(first["cmd"], "auth_success", "{first}");
    let ready = recv_skip_presence(&mut ws).await;
    assert_eq!(ready["cmd"], "ready", "{ready}");
    assert_eq!(ready["user"]["username"], "Alice");

    send(&mut ws, json!({"cmd": "message_new", "channel": "general", "content": "over tls", "listener": "m1"})).await;
    let echo = loop {
        let p = recv(&mut ws).await;
        if p["listener"] == "m1" {
            break p;
        }
    };
    assert_eq!(echo["cmd"], "message_new", "{echo}");
    assert_eq!(echo["message"]["content"], "over tls");
    assert_eq!(echo["seq"], 2, "after the first start's welcome");
    ws.close(None).await.expect("close");
    server.stop().await;
}

#[tokio::test]
async fn https_healthz_and_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let (server, cert) = tls_server(dir.path()).await;

    let mut tls = tls_connect(server.addr, "127.0.0.1", &cert).await.expect("TLS handshake by IP address");
    let (status, body) = http_get_raw(&mut tls, "127.0.0.1", "/healthz").await.expect("HTTPS GET");
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("healthz body {body:?}: {e}"));
    assert_eq!(body, json!({"status": "ok"}));

    // Plain HTTP on the TLS port is not served.
    let mut plain = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, plain.read_to_end(&mut answer)).await.expect("the server ends the connection");
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "plaintext was served: {}", String::from_utf8_lossy(&answer));
    server.stop().await;
}

#[test]
fn tls_misconfiguration_stops_the_start() {
    let cwd = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(cwd.path());
    let listen = format!("127.0.0.1:{}", crate::support::free_port());
    let serve = ["serve", "--listen", listen.as_str()];
    confab(cwd.path(), &serve, &[("CONFAB_TLS__CERT_FILE", cert.to_str().unwrap())], None)
        .fails_with("set both tls.cert_file and tls.key_file");
    confab(cwd.path(), &serve, &[("CONFAB_TLS__KEY_FILE", key.to_str().unwrap())], None)
        .fails_with("set both tls.cert_file and tls.key_file");
    let missing = cwd.path().join("missing.pem");
    confab(
        cwd.path(),
        &serve,
        &[("CONFAB_TLS__CERT_FILE", missing.to_str().unwrap()), ("CONFAB_TLS__KEY_FILE", key.to_str().unwrap())],
        None,
    )
    .fails_with("missing.pem");
    // A key that does not belong to the certificate is refused too.
    let other = tempfile::tempdir().unwrap();
    let (_, other_key) = self_signed(other.path());
    confab(
        cwd.path(),
        &serve,
        &[("CONFAB_TLS__CERT_FILE", cert.to_str().unwrap()), ("CONFAB_TLS__KEY_FILE", other_key.to_str().unwrap())],
        None,
    )
    .fails_with("loading the TLS certificate");
}

/// `confab chat` over `https://` / `wss://`: refused with the certificate named when the server's
/// certificate chains to nothing it trusts, accepted once `--ca-cert` names it; the login (HTTP)
/// and the socket (WebSocket) trust the same roots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_client_speaks_tls_and_trusts_only_what_it_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let (server, cert) = tls_server(dir.path()).await;
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let pem = std::fs::read(&cert).unwrap();
    let https =
        reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap()).build().unwrap();
    let r = https
        .post(format!("{url}/auth/register"))
        .json(&json!({"username": "alice", "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);

    let cert = cert.to_str().unwrap().to_owned();
    let (untrusted, trusted) = tokio::task::spawn_blocking(move || {
        let cwd = tempfile::tempdir().unwrap();
        let env = [("CONFAB_CHAT_USER", "alice"), ("CONFAB_CHAT_PASSWORD", "correct horse")];
        let untrusted = confab(cwd.path(), &["chat", "--server", &url, "send", "nope"], &env, None);
        let wss = url.replace("https://", "wss://");
        let args = ["chat", "--server", &wss, "--ca-cert", &cert, "send", "over tls from the terminal"];
        (untrusted, confab(cwd.path(), &args, &env, None).ok())
    })
    .await
    .unwrap();
    assert_eq!(untrusted.fails_with("certificate").code(), Some(4), "an unknown issuer is a network failure");
    let sent: Value = serde_json::from_str(trusted.stdout.trim()).expect("the stored message as JSON");
    assert_eq!(sent["content"], "over tls from the terminal");
    assert_eq!(sent["user"], "alice");
    server.stop().await;
}
