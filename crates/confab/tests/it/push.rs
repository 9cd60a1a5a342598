//! Web Push (PROTOCOL §6.1, §6.9; media-features checklist 20–22) against a fake push service the
//! test runs on 127.0.0.1: the test holds each subscriber's private key and auth secret, checks the
//! headers and the VAPID token against the key `push_get_vapid` gave, and decrypts every body.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use aes_gcm::{
    Aes128Gcm, Nonce,
    aead::{Aead, KeyInit},
};
use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::post,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use hkdf::Hkdf;
use p256::{
    PublicKey, SecretKey,
    ecdsa::{Signature, VerifyingKey, signature::Verifier},
    elliptic_curve::sec1::ToEncodedPoint,
};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::support::{Backend, Client, TestServer};

on_both! {
    offline_pinged_users_get_a_decryptable_push => offline_pinged_users_get_a_decryptable_push_sqlite, offline_pinged_users_get_a_decryptable_push_postgres;
    gone_subscriptions_are_deleted => gone_subscriptions_are_deleted_sqlite, gone_subscriptions_are_deleted_postgres;
    subscriptions_are_checked_and_keys_kept => subscriptions_are_checked_and_keys_kept_sqlite, subscriptions_are_checked_and_keys_kept_postgres;
}

/// One POST the fake push service received.
struct Received {
    name: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A push service on 127.0.0.1: `/push/<name>` answers with the status set for `name` (201 by
/// default) and hands every request to the test.
struct FakePushService {
    base: String,
    statuses: Arc<Mutex<HashMap<String, u16>>>,
    received: mpsc::UnboundedReceiver<Received>,
}

type Shared = (Arc<Mutex<HashMap<String, u16>>>, mpsc::UnboundedSender<Received>);

async fn receive(
    State((statuses, tx)): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let status = statuses.lock().unwrap().get(&name).copied().unwrap_or(201);
    tx.send(Received { name, headers, body }).ok();
    StatusCode::from_u16(status).unwrap()
}

impl FakePushService {
    async fn start() -> FakePushService {
        let statuses = Arc::new(Mutex::new(HashMap::new()));
        let (tx, received) = mpsc::unbounded_channel();
        let app = Router::new().route("/push/{name}", post(receive)).with_state((statuses.clone(), tx));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        FakePushService { base, statuses, received }
    }

    fn endpoint(&self, name: &str) -> String {
        format!("{}/push/{name}", self.base)
    }

    fn answer(&self, name: &str, status: u16) {
        self.statuses.lock().unwrap().insert(name.to_owned(), status);
    }

    async fn next(&mut self) -> Received {
        tokio::time::timeout(std::time::Duration::from_secs(10), self.received.recv())
            .await
            .expect("timed out waiting for a push")
            .expect("push service stopped")
    }

    /// Nothing more arrived.
    fn assert_quiet(&mut self) {
        if let Ok(r) = self.received.try_recv() {
            panic!("unexpected push to {}", r.name);
        }
    }
}

/// A browser's side of a subscription: the keys only it holds.
struct Browser {
    secret: SecretKey,
    auth: [u8; 16],
}

impl Browser {
    fn new(seed: u8) -> Browser {
        Browser { secret: SecretKey::from_slice(&[seed; 32]).unwrap(), auth: [seed.wrapping_mul(7); 16] }
    }

    fn p256dh(&self) -> String {
        B64.encode(self.secret.public_key().to_encoded_point(false).as_bytes())
    }

    fn subscription(&self, endpoint: &str) -> Value {
        json!({"endpoint": endpoint, "expirationTime": null, "keys": {"p256dh": self.p256dh(), "auth": B64.encode(self.auth)}})
    }

    /// RFC 8291 decryption, as the browser does it.
    fn decrypt(&self, body: &[u8]) -> Value {
        let (salt, rest) = body.split_at(16);
        assert_eq!(&rest[..4], &4096u32.to_be_bytes(), "record size");
        assert_eq!(rest[4], 65, "key id length");
        let sender = PublicKey::from_sec1_bytes(&rest[5..70]).unwrap();
        let sealed = &rest[70..];
        let shared = p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), sender.as_affine());
        let mut info = b"WebPush: info\0".to_vec();
        info.extend_from_slice(self.secret.public_key().to_encoded_point(false).as_bytes());
        info.extend_from_slice(&rest[5..70]);
        let mut ikm = [0u8; 32];
        Hkdf::<Sha256>::new(Some(&self.auth), shared.raw_secret_bytes()).expand(&info, &mut ikm).unwrap();
        let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
        let (mut cek, mut nonce) = ([0u8; 16], [0u8; 12]);
        prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek).unwrap();
        prk.expand(b"Content-Encoding: nonce\0", &mut nonce).unwrap();
        let mut plain = Aes128Gcm::new_from_slice(&cek).unwrap().decrypt(Nonce::from_slice(&nonce), sealed).unwrap();
        assert_eq!(plain.pop(), Some(2), "last-record delimiter");
        serde_json::from_slice(&plain).unwrap()
    }
}

/// Checks the request's headers and VAPID token (against `vapid_key`, for the fake's origin) and
/// returns the decrypted notification.
fn open(push: &Received, browser: &Browser, vapid_key: &str, origin: &str) -> Value {
    let h = &push.headers;
    assert_eq!(h["content-encoding"], "aes128gcm");
    assert_eq!(h["ttl"], "86400");
    assert_eq!(h["urgency"], "high");
    let auth = h["authorization"].to_str().unwrap();
    let (token, key) = auth.strip_prefix("vapid t=").unwrap().split_once(", k=").unwrap();
    assert_eq!(key, vapid_key);
    let (input, signature) = token.rsplit_once('.').unwrap();
    let signature = Signature::from_slice(&B64.decode(signature).unwrap()).unwrap();
    let verifier = VerifyingKey::from_sec1_bytes(&B64.decode(vapid_key).unwrap()).unwrap();
    verifier.verify(input.as_bytes(), &signature).expect("VAPID signature");
    let (header, claims) = input.split_once('.').unwrap();
    let header: Value = serde_json::from_slice(&B64.decode(header).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    let claims: Value = serde_json::from_slice(&B64.decode(claims).unwrap()).unwrap();
    assert_eq!(claims["aud"], origin);
    let left = claims["exp"].as_f64().unwrap() - confab::store::now();
    assert!(left > 0.0 && left <= 86_400.0, "exp {left} s away");
    assert!(claims["sub"].as_str().unwrap().starts_with("mailto:"), "{claims}");
    browser.decrypt(&push.body)
}

async fn vapid_key(c: &mut Client) -> String {
    let r = c.request(json!({"cmd": "push_get_vapid"})).await;
    assert_eq!(r["cmd"], "push_vapid", "{r}");
    r["key"].as_str().unwrap().to_owned()
}

async fn subscribe(c: &mut Client, browser: &Browser, endpoint: &str) {
    let key = vapid_key(c).await;
    let r = c
        .request(
            json!({"cmd": "push_subscribe", "subscription": browser.subscription(endpoint), "vapid_public_key": key}),
        )
        .await;
    assert_eq!(r["cmd"], "push_subscribed", "{r}");
    assert_eq!(r["success"], true);
    assert!(r["device_fingerprint"].is_string());
}

async fn spawn(backend: Backend) -> TestServer {
    TestServer::spawn_with(backend, |c| c.push.unsafe_allow_local_endpoints = true).await
}

/// Closes `c` and waits until `observer` sees the account go offline (the hub has forgotten it).
async fn go_offline(c: Client, name: &str, observer: &mut Client) {
    let mut c = c;
    c.ws.close(None).await.ok();
    loop {
        let p = observer.recv_cmd("user_disconnect").await;
        if p["username"] == name {
            return;
        }
    }
}

async fn offline_pinged_users_get_a_decryptable_push(backend: Backend) {
    let server = spawn(backend).await;
    let mut fake = FakePushService::start().await;
    let mut alice = server.register("alice").await;
    let mut bob = server.register("bob").await;
    let mut carol = server.member("carol", &["user", "moderator"]).await;
    let mut dave = server.member("dave", &["user", "moderator"]).await;
    let (a, b, c, d) = (Browser::new(1), Browser::new(2), Browser::new(3), Browser::new(4));
    subscribe(&mut alice, &a, &fake.endpoint("alice")).await;
    subscribe(&mut bob, &b, &fake.endpoint("bob")).await;
    subscribe(&mut carol, &c, &fake.endpoint("carol")).await;
    subscribe(&mut dave, &d, &fake.endpoint("dave")).await;
    let key = vapid_key(&mut alice).await;
    let first = bob.request(json!({"cmd": "message_new", "channel": "general", "content": "ping me"})).await;
    let bobs = first["message"]["id"].as_str().unwrap().to_owned();
    go_offline(bob, "bob", &mut alice).await;
    go_offline(dave, "dave", &mut alice).await;

    // Mentioned: bob is offline and gets it; carol is online and the author never does.
    let text = format!("@bob @carol @alice {}", "x".repeat(200));
    alice.request(json!({"cmd": "message_new", "channel": "general", "content": text})).await;
    let push = fake.next().await;
    assert_eq!(push.name, "bob");
    let note = open(&push, &b, &key, &fake.base);
    assert_eq!(note["title"], "#general — alice");
    assert_eq!(note["channelName"], "general");
    assert_eq!(note["body"].as_str().unwrap(), text.chars().take(120).collect::<String>());

    // A mentioned role: its offline member.
    alice.request(json!({"cmd": "message_new", "channel": "general", "content": "@&moderator look"})).await;
    let push = fake.next().await;
    assert_eq!(push.name, "dave");
    assert_eq!(open(&push, &d, &key, &fake.base)["title"], "#general — alice mentioned @moderator");

    // A reply pings the replied-to author unless `ping` is false.
    let reply =
        json!({"cmd": "message_new", "channel": "general", "content": "no ping", "reply_to": bobs, "ping": false});
    carol.request(reply).await;
    let reply = json!({"cmd": "message_new", "channel": "general", "content": "sure", "reply_to": bobs});
    carol.request(reply).await;
    let push = fake.next().await;
    assert_eq!(push.name, "bob");
    let note = open(&push, &b, &key, &fake.base);
    assert_eq!((note["title"].as_str().unwrap(), note["body"].as_str().unwrap()), ("#general — carol replied", "sure"));
    // Nothing for the online users, the author or the unpinged reply (each would have been queued,
    // and so sent, before the last push).
    fake.assert_quiet();
}

async fn gone_subscriptions_are_deleted(backend: Backend) {
    let server = spawn(backend).await;
    let mut fake = FakePushService::start().await;
    let mut alice = server.register("alice").await;
    let mut bob = server.register("bob").await;
    let mut carol = server.register("carol").await;
    let mut dave = server.register("dave").await;
    let (b, c, d) = (Browser::new(2), Browser::new(3), Browser::new(4));
    subscribe(&mut bob, &b, &fake.endpoint("bob")).await;
    subscribe(&mut carol, &c, &fake.endpoint("carol")).await;
    subscribe(&mut dave, &d, &fake.endpoint("dave")).await;
    let key = vapid_key(&mut alice).await;
    for (client, name) in [(bob, "bob"), (carol, "carol"), (dave, "dave")] {
        go_offline(client, name, &mut alice).await;
    }
    fake.answer("bob", 410);
    fake.answer("dave", 404);
    let ids = [server.user_id("bob").await, server.user_id("dave").await];
    for (name, id) in [("bob", &ids[0]), ("dave", &ids[1])] {
        alice.request(json!({"cmd": "message_new", "channel": "general", "content": format!("hey @{name}")})).await;
        assert_eq!(fake.next().await.name, name);
        // The subscription goes once the answer is in.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !server.store.push_audience(std::slice::from_ref(id), &[]).await.unwrap().0.is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "{name}'s subscription was not deleted");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    // The next mention sends nothing to them; carol's push shows the queue has moved past it.
    alice.request(json!({"cmd": "message_new", "channel": "general", "content": "@bob @dave again"})).await;
    alice.request(json!({"cmd": "message_new", "channel": "general", "content": "@carol"})).await;
    let push = fake.next().await;
    assert_eq!(push.name, "carol");
    assert_eq!(open(&push, &c, &key, &fake.base)["body"], "@carol");
    fake.assert_quiet();
    // Unsubscribing what the push service already dropped still succeeds.
    let mut bob = server.login("bob", "correct horse").await;
    let r = bob.request(json!({"cmd": "push_unsubscribe", "endpoint": fake.endpoint("bob")})).await;
    assert_eq!((r["cmd"].as_str(), &r["success"]), (Some("push_unsubscribed"), &json!(true)), "{r}");
}

fn assert_error(r: &Value, text: &str, code: &str) {
    assert_eq!(
        (r["cmd"].as_str(), r["val"].as_str(), r["code"].as_str()),
        (Some("error"), Some(text), Some(code)),
        "{r}"
    );
}

async fn subscriptions_are_checked_and_keys_kept(backend: Backend) {
    let server = TestServer::spawn_with(backend, |_| {}).await;
    let mut alice = server.register("alice").await;
    let caps = alice.handshake["val"]["capabilities"].as_array().unwrap().clone();
    for cmd in ["push_get_vapid", "push_subscribe", "push_unsubscribe"] {
        assert!(caps.contains(&json!(cmd)), "{cmd}");
    }
    let key = vapid_key(&mut alice).await;
    let point = B64.decode(&key).unwrap();
    assert_eq!((point.len(), point[0]), (65, 4));
    let browser = Browser::new(9);
    let sub = |endpoint: &str| json!({"cmd": "push_subscribe", "subscription": browser.subscription(endpoint)});
    let incomplete = "subscription must include endpoint, keys.p256dh and keys.auth";
    let cases = [
        (json!({"cmd": "push_subscribe"}), "Missing subscription object"),
        (json!({"cmd": "push_subscribe", "subscription": "x"}), "Missing subscription object"),
        (json!({"cmd": "push_subscribe", "subscription": {"endpoint": "https://8.8.8.8/p"}}), incomplete),
        (
            json!({"cmd": "push_subscribe", "subscription": {"endpoint": "https://8.8.8.8/p", "keys": {"p256dh": "", "auth": "x"}}}),
            incomplete,
        ),
        (
            json!({"cmd": "push_subscribe", "subscription": {"endpoint": "https://8.8.8.8/p",
                   "keys": {"p256dh": B64.encode([4u8; 65]), "auth": B64.encode([1u8; 16])}}}),
            incomplete,
        ),
        (
            json!({"cmd": "push_subscribe", "subscription": {"endpoint": "https://8.8.8.8/p",
                   "keys": {"p256dh": browser.p256dh(), "auth": B64.encode([1u8; 15])}}}),
            incomplete,
        ),
        (sub("http://push.example/p"), "Invalid push endpoint"),
        (sub("not a url"), "Invalid push endpoint"),
        (sub(&format!("https://push.example/{}", "a".repeat(2048))), "Invalid push endpoint"),
    ];
    for (frame, text) in cases {
        assert_error(&alice.request(frame.clone()).await, text, "bad_request");
    }
    // No SSRF: loopback, private, link-local, CGNAT and mapped addresses, by literal or by name.
    for endpoint in [
        "https://127.0.0.1/p",
        "https://localhost/p",
        "https://[::1]/p",
        "https://10.1.2.3/p",
        "https://192.168.0.10:8443/p",
        "https://169.254.169.254/latest",
        "https://100.64.0.1/p",
        "https://[::ffff:127.0.0.1]/p",
        "https://0x7f000001/p",
    ] {
        assert_error(&alice.request(sub(endpoint)).await, "Invalid push endpoint", "bad_request");
    }
    // A public address (given literally, so no lookup is needed) is accepted.
    let r = alice.request(sub("https://8.8.8.8/push/alice")).await;
    assert_eq!(r["cmd"], "push_subscribed", "{r}");
    let r = alice.request(json!({"cmd": "push_unsubscribe"})).await;
    assert_error(&r, "Missing endpoint", "bad_request");
    let r = alice.request(json!({"cmd": "push_unsubscribe", "endpoint": "https://8.8.8.8/push/alice"})).await;
    assert_eq!(r["success"], true, "{r}");
    let alice_id = server.user_id("alice").await;
    assert!(server.store.push_audience(&[alice_id], &[]).await.unwrap().0.is_empty());

    // The key survives a restart: browsers subscribed with it never ask again.
    let server = server.restart().await;
    let mut alice = server.login("alice", "correct horse").await;
    assert_eq!(vapid_key(&mut alice).await, key);
    server.stop().await;

    // Switched off: not advertised, and the commands say so.
    let server = TestServer::spawn_with(backend, |c| c.push.enabled = false).await;
    let mut alice = server.register("alice").await;
    let caps = alice.handshake["val"]["capabilities"].as_array().unwrap().clone();
    assert!(!caps.iter().any(|c| c.as_str().unwrap().starts_with("push_")), "{caps:?}");
    for frame in [
        json!({"cmd": "push_get_vapid"}),
        sub("https://8.8.8.8/p"),
        json!({"cmd": "push_unsubscribe", "endpoint": "x"}),
    ] {
        assert_error(&alice.request(frame).await, "VAPID keys not configured on this server", "disabled");
    }
}
