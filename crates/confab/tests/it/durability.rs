//! Nothing lost, nothing missed: resume, graceful shutdown, restarts, idempotent send across a
//! restart, and the crash test that kills the real binary with SIGKILL (PROTOCOL §7, DESIGN §4).

use std::{
    collections::{BTreeMap, HashMap},
    process::{Child, Stdio},
    time::Duration,
};

use serde_json::{Value, json};

use crate::support::{Backend, Client, Closed, TestServer, WAIT, written};

/// Sends `content` to #general and returns the echo.
async fn send(c: &mut Client, content: &str) -> Value {
    let echo = c.request(json!({"cmd": "message_new", "channel": "general", "content": content})).await;
    assert_eq!(echo["cmd"], "message_new", "{echo}");
    echo
}

/// The channel's current seq, as `messages_get` reports it.
async fn current_seq(c: &mut Client) -> i64 {
    c.request(json!({"cmd": "messages_get", "channel": "general", "limit": 1})).await["seq"].as_i64().unwrap()
}

#[tokio::test]
async fn resume_replays_exactly_what_was_missed() {
    let server = TestServer::spawn().await;
    let mut alice = server.register("alice").await;
    let mut bob = server.register("bob").await;
    send(&mut alice, "before").await;
    let seen = current_seq(&mut alice).await;
    drop(alice);

    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(send(&mut bob, &format!("missed {i}")).await);
    }

    let mut alice = server.login("alice", "correct horse").await;
    alice.send(json!({"cmd": "resume", "channels": {"general": seen, "nope": 0}, "listener": "r"})).await;
    for expected in &sent {
        let p = alice.recv_cmd("message_new").await;
        assert_eq!(p["replay"], true);
        assert_eq!(p["seq"], expected["seq"]);
        assert_eq!(p["message"]["id"], expected["message"]["id"]);
        assert!(p.get("listener").is_none());
    }
    let resumed = alice.recv_cmd("resumed").await;
    assert_eq!(resumed["listener"], "r");
    assert_eq!(resumed["channels"]["general"], sent[2]["seq"]);
    assert_eq!(resumed["stale"], json!([]));
    assert_eq!(resumed["unknown"], json!(["nope"]));

    // A seq from the future is stale: nothing is replayed, the current seq is reported.
    let r = alice.request(json!({"cmd": "resume", "channels": {"general": 10_000}})).await;
    assert_eq!(r["cmd"], "resumed");
    assert_eq!(r["stale"], json!(["general"]));
    assert_eq!(r["channels"]["general"], sent[2]["seq"]);

    let bad = alice.request(json!({"cmd": "resume", "channels": {"general": -1}})).await;
    assert_eq!(bad["val"], "Invalid resume request");
    let bad = alice.request(json!({"cmd": "resume", "channels": []})).await;
    assert_eq!(bad["val"], "Invalid resume request");
    let many: serde_json::Map<String, Value> = (0..101).map(|i| (format!("c{i}"), json!(0))).collect();
    let bad = alice.request(json!({"cmd": "resume", "channels": many})).await;
    assert_eq!(bad["val"], "Too many channels in resume");
    assert_eq!(bad["code"], "bad_request");
    server.stop().await;
}

#[tokio::test]
async fn live_events_during_a_resume_are_neither_lost_nor_repeated() {
    let server = TestServer::spawn().await;
    let mut alice = server.register("alice").await;
    let mut bob = server.register("bob").await;
    let start = current_seq(&mut alice).await;
    drop(alice);
    for i in 0..20 {
        send(&mut bob, &format!("old {i}")).await;
    }
    let mut alice = server.login("alice", "correct horse").await;
    // Bob keeps sending while Alice resumes.
    let sender = tokio::spawn(async move {
        let mut last = 0;
        for i in 0..40 {
            last = send(&mut bob, &format!("live {i}")).await["seq"].as_i64().unwrap();
        }
        last
    });
    alice.send(json!({"cmd": "resume", "channels": {"general": start}})).await;
    let last = sender.await.unwrap();
    // As a resuming client does (§7.2): live events of #general are ignored until `resumed`.
    let mut seqs = Vec::new();
    let mut resumed = false;
    while seqs.last().copied() != Some(last) {
        let p = alice.recv().await;
        match p["cmd"].as_str() {
            Some("message_new") if resumed || p["replay"] == true => seqs.push(p["seq"].as_i64().unwrap()),
            Some("resumed") => resumed = true,
            _ => {}
        }
    }
    assert!(resumed);
    // Every event exactly once and in order: the replay, then what follows `resumed`.
    let expected: Vec<i64> = (start + 1..=last).collect();
    assert_eq!(seqs, expected, "every event exactly once, in order");
    server.stop().await;
}

#[tokio::test]
async fn a_gap_older_than_retention_is_stale() {
    let server = TestServer::spawn_with(crate::support::Backend::Sqlite, |cfg| cfg.limits.event_retention = 5).await;
    let mut alice = server.register("alice").await;
    // Seq 1 is the first start's welcome: these are 2..=11.
    for i in 0..10 {
        send(&mut alice, &format!("m{i}")).await;
    }
    // The log is pruned at start (and hourly): a restart keeps only the newest 5 events.
    let server = server.restart().await;
    let mut alice = server.login("alice", "correct horse").await;
    let r = alice.request(json!({"cmd": "resume", "channels": {"general": 2}})).await;
    assert_eq!(r["cmd"], "resumed", "nothing is replayed for a stale channel: {r}");
    assert_eq!(r["stale"], json!(["general"]));
    assert_eq!(r["channels"]["general"], 11);
    // Within retention, resume still works.
    alice.send(json!({"cmd": "resume", "channels": {"general": 9}})).await;
    assert_eq!(alice.recv().await["seq"], 10);
    assert_eq!(alice.recv().await["seq"], 11);
    assert_eq!(alice.recv().await["cmd"], "resumed");
    server.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_says_goodbye_and_keeps_everything() {
    let server = TestServer::spawn().await;
    let mut alice = server.register("alice").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(send(&mut alice, &format!("m{i}")).await["message"]["id"].clone());
    }
    let seq = current_seq(&mut alice).await;
    let server = server.restart().await;
    let goodbye = alice.recv_cmd("disconnect").await;
    assert_eq!(goodbye["reason"], "Server shutting down");
    assert!(matches!(alice.closed().await, Closed::Frame(1001, _)));

    let mut alice = server.login("alice", "correct horse").await;
    let history = alice.request(json!({"cmd": "messages_get", "channel": "general"})).await;
    let got: Vec<Value> = written(&history).iter().map(|m| m["id"].clone()).collect();
    assert_eq!(got, ids);
    // Resume works across the restart: nothing new since `seq`, and seq survived.
    alice.send(json!({"cmd": "resume", "channels": {"general": seq - 2}})).await;
    for expected in [seq - 1, seq] {
        let r = alice.recv().await;
        assert_eq!(r["cmd"], "message_new", "{r}");
        assert_eq!(r["replay"], true);
        assert_eq!(r["seq"], expected);
    }
    let next = alice.recv().await;
    assert_eq!(next["cmd"], "resumed");
    assert_eq!(next["channels"]["general"], seq);
    assert_eq!(send(&mut alice, "after").await["seq"], seq + 1);
    server.stop().await;
}

#[tokio::test]
async fn nonce_survives_a_restart() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let server = TestServer::spawn_with(backend, |_| {}).await;
        let mut alice = server.register("alice").await;
        let frame = json!({"cmd": "message_new", "channel": "general", "content": "once", "nonce": "n-1"});
        let first = alice.request(frame.clone()).await;
        let server = server.restart().await;
        let mut alice = server.login("alice", "correct horse").await;
        let again = alice.request(frame).await;
        assert_eq!(again["duplicate"], true, "{backend:?}: {again}");
        assert_eq!(again["message"]["id"], first["message"]["id"]);
        assert_eq!(again["seq"], first["seq"]);
        let history = alice.request(json!({"cmd": "messages_get", "channel": "general"})).await;
        assert_eq!(written(&history).len(), 1);
        server.stop().await;
    }
}

/// A tiny deterministic generator so a failing crash run can be replayed from its printed seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

struct Child9(Child);

impl Drop for Child9 {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real binary on `port`, keeping its data in `dir` and in `database` when given.
fn spawn_binary(dir: &std::path::Path, port: u16, database: Option<&str>) -> Child9 {
    let mut command = crate::cli::command(dir);
    command.args(["serve", "--listen", &format!("127.0.0.1:{port}")]).arg("--data-dir").arg(dir);
    if let Some(url) = database {
        command.args(["--database", url]);
    }
    let child = command
        .env("CONFAB_RATE_LIMITS__ENABLED", "false")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn confab");
    Child9(child)
}

async fn wait_listening(port: u16) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn connect_auth(port: u16, name: &str, register: bool) -> Client {
    let mut c = Client::open(&format!("ws://127.0.0.1:{port}/"), &[]).await.expect("connect");
    c.recv_cmd("handshake").await;
    let cmd = if register { "register" } else { "login" };
    c.send(json!({"cmd": cmd, "username": name, "password": "correct horse"})).await;
    c.expect_auth().await;
    c
}

/// One writer: sends until its connection dies, recording every acknowledged message id.
/// `pending` is a message that may or may not have committed; it is retried with its nonce.
async fn writer_round(
    mut c: Client,
    who: usize,
    round: usize,
    acked: &mut Vec<(String, String)>,
    pending: &mut Option<(String, String)>,
) {
    let mut i = 0;
    loop {
        let (nonce, content) = pending.clone().unwrap_or_else(|| {
            let content = format!("w{who}-r{round}-{i}");
            (content.clone(), content)
        });
        *pending = Some((nonce.clone(), content.clone()));
        let frame =
            json!({"cmd": "message_new", "channel": "general", "content": content, "nonce": nonce, "listener": nonce});
        if futures_util::SinkExt::send(&mut c.ws, tokio_tungstenite::tungstenite::Message::text(frame.to_string()))
            .await
            .is_err()
        {
            return;
        }
        loop {
            let msg = match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut c.ws)).await {
                Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))) => t,
                Ok(Some(Ok(_))) => continue,
                _ => return,
            };
            let p: Value = serde_json::from_str(msg.as_str()).unwrap();
            if p["listener"] == nonce.as_str() {
                assert_eq!(p["cmd"], "message_new", "{p}");
                acked.push((p["message"]["id"].as_str().unwrap().to_owned(), content.clone()));
                *pending = None;
                break;
            }
        }
        i += 1;
    }
}

/// One resuming reader's round: resumes #general from `last`, then reads until the connection dies,
/// ignoring live events until `resumed` as PROTOCOL §7.2 allows. Every event it keeps must be the
/// one right after the last it holds. `Some(resumed)` once `resumed` arrived.
async fn resumer_round(mut c: Client, last: &mut i64, held: &mut BTreeMap<i64, String>) -> Option<Value> {
    let frame = json!({"cmd": "resume", "channels": {"general": *last}});
    if futures_util::SinkExt::send(&mut c.ws, tokio_tungstenite::tungstenite::Message::text(frame.to_string()))
        .await
        .is_err()
    {
        return None;
    }
    let mut resumed = None;
    loop {
        let msg = match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut c.ws)).await {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))) => t,
            Ok(Some(Ok(_))) => continue,
            _ => return resumed,
        };
        let p: Value = serde_json::from_str(msg.as_str()).unwrap();
        match p["cmd"].as_str() {
            Some("resumed") => {
                assert_eq!(p["stale"], json!([]), "{p}");
                assert_eq!(p["channels"]["general"], json!(*last), "resumed covers what was replayed");
                resumed = Some(p);
            }
            Some("message_new") if resumed.is_some() || p["replay"] == true => {
                let seq = p["seq"].as_i64().unwrap();
                assert_eq!(seq, *last + 1, "the resuming reader's stream has a hole or a repeat: {p}");
                *last = seq;
                held.insert(seq, p["message"]["id"].as_str().unwrap().to_owned());
            }
            _ => {}
        }
    }
}

on_both! {
    sigkill_never_loses_an_acknowledged_message => sigkill_sqlite, sigkill_postgres;
}

async fn sigkill_never_loses_an_acknowledged_message(backend: Backend) {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("crash test ({backend:?}) seed: {seed}");
    let mut rng = XorShift(seed);
    let dir = tempfile::tempdir().unwrap();
    // PostgreSQL: a fresh schema of the test server, named in the URL the binary is given.
    let database = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(format!(
            "{}?options[search_path]={}",
            crate::support::postgres_url(),
            crate::support::pg_schema().await
        )),
    };
    const WRITERS: usize = 3;
    const ROUNDS: usize = 4;
    let mut acked: Vec<Vec<(String, String)>> = vec![Vec::new(); WRITERS];
    let mut pending: Vec<Option<(String, String)>> = vec![None; WRITERS];
    // A reader that reconnects and resumes after every restart, from the last seq it holds.
    let mut reader_last = 0;
    let mut held = BTreeMap::new();
    for round in 0..ROUNDS {
        let port = crate::support::free_port();
        let mut child = spawn_binary(dir.path(), port, database.as_deref());
        wait_listening(port).await;
        let reader = connect_auth(port, "reader", round == 0).await;
        let resumer = tokio::spawn(async move {
            resumer_round(reader, &mut reader_last, &mut held).await;
            (reader_last, held)
        });
        let mut tasks = Vec::new();
        for (who, (mut mine, mut pend)) in acked.drain(..).zip(pending.drain(..)).enumerate() {
            let c = connect_auth(port, &format!("writer{who}"), round == 0).await;
            tasks.push(tokio::spawn(async move {
                writer_round(c, who, round, &mut mine, &mut pend).await;
                (mine, pend)
            }));
        }
        // Let some traffic through, then kill at a random moment.
        tokio::time::sleep(Duration::from_millis(100 + rng.next(400))).await;
        child.0.kill().expect("SIGKILL");
        child.0.wait().expect("wait");
        for t in tasks {
            let (mine, pend) = t.await.unwrap();
            acked.push(mine);
            pending.push(pend);
        }
        (reader_last, held) = resumer.await.unwrap();
    }

    let port = crate::support::free_port();
    let _child = spawn_binary(dir.path(), port, database.as_deref());
    wait_listening(port).await;
    // The reader catches up once more: then it must hold every stored message, each once.
    let mut reader = connect_auth(port, "reader", false).await;
    reader.send(json!({"cmd": "resume", "channels": {"general": reader_last}})).await;
    loop {
        let p = reader.recv().await;
        match p["cmd"].as_str() {
            Some("message_new") => {
                let seq = p["seq"].as_i64().unwrap();
                assert_eq!(seq, reader_last + 1, "hole or repeat in the final replay: {p}");
                reader_last = seq;
                held.insert(seq, p["message"]["id"].as_str().unwrap().to_owned());
            }
            Some("resumed") => break,
            _ => {}
        }
    }
    let mut reader = connect_auth(port, "writer0", false).await;
    let mut stored: HashMap<String, usize> = HashMap::new();
    let mut contents: HashMap<String, usize> = HashMap::new();
    let mut before: Option<String> = None;
    loop {
        let mut frame = json!({"cmd": "messages_get", "channel": "general", "limit": 200});
        if let Some(id) = &before {
            frame["start"] = json!(id);
        }
        let page = reader.request(frame).await;
        let messages = page["messages"].as_array().unwrap().clone();
        if messages.is_empty() {
            break;
        }
        before = Some(messages[0]["id"].as_str().unwrap().to_owned());
        for m in messages {
            *stored.entry(m["id"].as_str().unwrap().to_owned()).or_default() += 1;
            *contents.entry(m["content"].as_str().unwrap().to_owned()).or_default() += 1;
        }
    }
    let total_acked: usize = acked.iter().map(Vec::len).sum();
    assert!(total_acked > 0, "no message was acknowledged; the test proved nothing");
    for (id, content) in acked.iter().flatten() {
        assert_eq!(stored.get(id), Some(&1), "acknowledged message {id} ({content}) must be stored exactly once");
    }
    for (content, n) in &contents {
        assert_eq!(*n, 1, "content {content} stored {n} times (nonce retries must not duplicate)");
    }
    let held_ids: std::collections::HashSet<&String> = held.values().collect();
    let stored_ids: std::collections::HashSet<&String> = stored.keys().collect();
    assert_eq!(held.len(), held_ids.len(), "the resuming reader holds a message twice");
    assert_eq!(held_ids, stored_ids, "the resuming reader's copy differs from what is stored");
    eprintln!(
        "crash test: {total_acked} acknowledged messages over {ROUNDS} SIGKILLs, all present once; \
         the resuming reader holds all {} events",
        held.len()
    );
}

on_both! {
    a_replay_larger_than_the_queue_reaches_a_fast_reader => replay_larger_than_queue_sqlite, replay_larger_than_queue_postgres;
}

/// A resume's replay is the answer to the reader's own command: far more events and bytes than the
/// outbound queue's bounds (16 packets, 16 KiB here) reach a reader that keeps up, without 4009.
async fn a_replay_larger_than_the_queue_reaches_a_fast_reader(backend: Backend) {
    let server = TestServer::spawn_with(backend, |cfg| {
        cfg.limits.queue_packets = 16;
        cfg.limits.queue_bytes = 16 * 1024;
    })
    .await;
    let mut alice = server.register("alice").await;
    let seen = current_seq(&mut alice).await;
    drop(alice);
    let mut bob = server.register("bob").await;
    let mut sent = Vec::new();
    for i in 0..300 {
        sent.push(send(&mut bob, &format!("missed {i} {}", "x".repeat(200))).await["seq"].as_i64().unwrap());
    }
    let mut alice = server.login("alice", "correct horse").await;
    alice.send(json!({"cmd": "resume", "channels": {"general": seen}})).await;
    let mut replayed = Vec::new();
    loop {
        let p = alice.recv().await;
        match p["cmd"].as_str() {
            Some("message_new") if p["replay"] == true => replayed.push(p["seq"].as_i64().unwrap()),
            Some("resumed") => {
                assert_eq!(p["stale"], json!([]), "{p}");
                break;
            }
            _ => {}
        }
    }
    assert_eq!(replayed, sent, "the whole replay, in order");
    assert_eq!(alice.request(json!({"cmd": "ping"})).await["cmd"], "pong", "the reader is still connected");
    server.stop().await;
}
