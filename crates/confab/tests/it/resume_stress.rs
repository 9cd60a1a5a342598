//! `resume` under load (PROTOCOL §7.2): senders post to #general without pause while one client
//! reconnects again and again, lets some live events arrive after `ready`, resumes from the last
//! seq it holds, and checks after every trial that it holds exactly the stored sequence — no hole,
//! no repeat, in order. Short by default (CI); `CONFAB_RESUME_TRIALS=200` makes a long run.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use serde_json::{Value, json};

use crate::support::{Backend, Client, TestServer};

on_both! {
    resume_under_load => resume_under_load_sqlite, resume_under_load_postgres;
}

/// How many reconnects one run makes.
fn trials() -> usize {
    std::env::var("CONFAB_RESUME_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(15)
}

/// Logs `name` in on a new socket. Live events may already arrive before `ready`: they are
/// returned with the client, as early live events.
async fn login(server: &TestServer, name: &str) -> (Client, Vec<Value>) {
    let mut c = server.connect().await;
    c.send(json!({"cmd": "login", "username": name, "password": "correct horse"})).await;
    let mut early = Vec::new();
    loop {
        let p = c.recv().await;
        match p["cmd"].as_str() {
            Some("message_new") => early.push(p),
            Some("ready") => return (c, early),
            Some("auth_error") => panic!("login refused: {p}"),
            _ => {}
        }
    }
}

/// The next `message_new` on `c`, skipping everything else.
async fn next_message(c: &mut Client) -> Value {
    c.recv_cmd("message_new").await
}

fn seq(p: &Value) -> i64 {
    p["seq"].as_i64().expect("event carries seq")
}

/// Posts to #general until told to stop; returns every acknowledged message by seq.
async fn sender(server: &TestServer, name: String, stop: Arc<AtomicBool>) -> BTreeMap<i64, String> {
    let mut c = server.register(&name).await;
    let mut acked = BTreeMap::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let echo =
            c.request(json!({"cmd": "message_new", "channel": "general", "content": format!("{name} {i}")})).await;
        assert_eq!(echo["cmd"], "message_new", "{echo}");
        acked.insert(seq(&echo), echo["message"]["id"].as_str().expect("id").to_owned());
        i += 1;
    }
    acked
}

async fn resume_under_load(backend: Backend) {
    let server = Arc::new(TestServer::spawn_with(backend, |_| {}).await);
    let reader = server.register("reader").await;
    drop(reader);
    let mut last = server.store.channel_seq(&general_id(&server).await).await.expect("seq");
    let start = last;

    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..3)
        .map(|i| {
            let (server, stop) = (server.clone(), stop.clone());
            tokio::spawn(async move { sender(&server, format!("sender{i}"), stop).await })
        })
        .collect();

    // What the strict client holds: seq → message id, from replays and from live events after
    // `resumed` only.
    let mut held: BTreeMap<i64, String> = BTreeMap::new();
    let mut replayed_early = 0;
    for trial in 0..trials() {
        let (mut c, mut everything) = login(&server, "reader").await;
        // Let some live events arrive after `ready` (none on every third trial).
        for _ in 0..trial % 3 {
            everything.push(next_message(&mut c).await);
        }
        let early: BTreeSet<i64> = everything.iter().map(seq).collect();
        c.send(json!({"cmd": "resume", "channels": {"general": last}, "listener": "r"})).await;
        let mut stream = Vec::new();
        let resumed = loop {
            let p = c.recv().await;
            match p["cmd"].as_str() {
                // A live event before `resumed` is ignored by the strict client (§7.2).
                Some("message_new") if p["replay"] == true => stream.push(p),
                Some("message_new") => everything.push(p),
                Some("resumed") => break p,
                _ => {}
            }
        };
        assert_eq!(resumed["stale"], json!([]), "trial {trial}: {resumed}");
        let cut = resumed["channels"]["general"].as_i64().expect("covered seq");
        assert_eq!(stream.last().map_or(last, seq), cut, "trial {trial}: resumed reports the last replayed seq");
        replayed_early += stream.iter().filter(|p| early.contains(&seq(p))).count();
        // Then a few live events, and the connection drops with more on their way.
        for _ in 0..1 + trial % 4 {
            let p = next_message(&mut c).await;
            assert!(p.get("replay").is_none(), "trial {trial}: a live event after resumed: {p}");
            stream.push(p);
        }
        everything.extend(stream.iter().cloned());
        drop(c);

        let seqs: Vec<i64> = stream.iter().map(seq).collect();
        let expected: Vec<i64> = (last + 1..=last + seqs.len() as i64).collect();
        assert_eq!(
            seqs, expected,
            "trial {trial}: replay, resumed, live must continue from {last} without hole or repeat"
        );
        // A client that keeps everything and deduplicates by seq has no hole either.
        let deduplicated: BTreeSet<i64> = everything.iter().map(seq).filter(|s| *s > last).collect();
        let top = *deduplicated.last().expect("events");
        assert_eq!(
            deduplicated.into_iter().collect::<Vec<_>>(),
            (last + 1..=top).collect::<Vec<_>>(),
            "trial {trial}: a deduplicating client has a hole"
        );
        for p in &stream {
            held.insert(seq(p), p["message"]["id"].as_str().expect("id").to_owned());
        }
        last = *seqs.last().expect("at least one live event");
    }
    assert!(replayed_early > 0, "no trial replayed an early live event; the test did not exercise race 1");

    stop.store(true, Ordering::Relaxed);
    let mut stored = BTreeMap::new();
    for s in senders {
        stored.extend(s.await.expect("sender"));
    }
    // Exactly the stored sequence: every seq the reader holds is the message stored at that seq.
    let expected: BTreeMap<i64, String> = stored.range(start + 1..=last).map(|(s, id)| (*s, id.clone())).collect();
    assert_eq!(held, expected, "the reader's copy of #general differs from what was stored");
    eprintln!(
        "resume stress ({backend:?}): {} trials, {} events held, {replayed_early} early live events replayed",
        trials(),
        held.len()
    );
    Arc::into_inner(server).expect("senders finished").stop().await;
}

async fn general_id(server: &TestServer) -> String {
    server.store.channels().await.expect("channels").into_iter().find(|c| c.name == "general").expect("general").id
}
