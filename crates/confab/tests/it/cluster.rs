//! Cluster mode (docs/cluster.md): three nodes on one fresh PostgreSQL schema and a private broker
//! of their own on a free port (never the machine's shared NATS on 4222 or Redis on 6379). Clients
//! on every node, senders on every node; every check ends in `0 acked lost, 0 duplicated, 0 gaps`.
//!
//! The short versions run in `cargo test`; `CONFAB_CLUSTER_LONG=1` runs the long ones (more
//! senders, more messages, more broker restarts): see the README.

use std::{collections::BTreeSet, process::Stdio, time::Duration};

use tokio::time::Instant;

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use confab::store::Location;

use crate::support::{Client, TestServer, free_port, pg_schema, postgres_url};

/// A long run was asked for (`CONFAB_CLUSTER_LONG=1`).
pub(crate) fn long() -> bool {
    std::env::var("CONFAB_CLUSTER_LONG").is_ok_and(|v| v == "1")
}

/// The shared secret every node signs and checks tokens with.
pub(crate) const SECRET: &str = "cluster-test-secret-of-at-least-32-chars";

#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Nats,
    Redis,
}

/// A private broker process on its own port, killed when dropped.
pub(crate) struct Broker {
    kind: Kind,
    pub(crate) port: u16,
    child: Option<Child>,
}

impl Broker {
    pub(crate) async fn start(kind: Kind) -> Broker {
        let mut broker = Broker { kind, port: free_port(), child: None };
        broker.up().await;
        broker
    }

    pub(crate) fn url(&self) -> String {
        match self.kind {
            Kind::Nats => format!("nats://127.0.0.1:{}", self.port),
            Kind::Redis => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Starts the process (again) on the same port and waits until it accepts connections.
    async fn up(&mut self) {
        let port = self.port.to_string();
        let mut command = match self.kind {
            Kind::Nats => {
                let mut c = Command::new("nats-server");
                c.args(["-a", "127.0.0.1", "-p", &port]);
                c
            }
            Kind::Redis => {
                let mut c = Command::new("redis-server");
                c.args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
                c
            }
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{:?} is required for the cluster tests: {e}", self.kind));
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "{:?} did not start", self.kind);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the running process.
    pub(crate) fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().and_then(Child::id).expect("the broker runs").to_string();
        let status = std::process::Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// SIGKILL, and wait until it is gone.
    pub(crate) async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill broker");
        }
    }
}

/// Three nodes of one cluster on a fresh schema, with the channels `extra` created before they
/// start (each node reads the channel list at its start).
pub(crate) async fn three_nodes(broker: &Broker, extra: &[&str]) -> Vec<TestServer> {
    three_nodes_tuned(broker, extra, |_| {}).await
}

/// [`three_nodes`] with `tune` applied to every node's configuration.
pub(crate) async fn three_nodes_tuned(
    broker: &Broker,
    extra: &[&str],
    tune: fn(&mut confab::config::Config),
) -> Vec<TestServer> {
    let route = (broker.url(), postgres_url());
    nodes_on(&[route.clone(), route.clone(), route], extra, tune).await
}

/// One node per (broker URL, PostgreSQL URL) of `routes` (one broker and one PostgreSQL server,
/// each reached directly or through a proxy), on a fresh schema, with the channels `extra` created
/// before the second starts and `tune` applied to every node's configuration.
pub(crate) async fn nodes_on(
    routes: &[(String, String)],
    extra: &[&str],
    tune: fn(&mut confab::config::Config),
) -> Vec<TestServer> {
    let schema = Some(pg_schema().await);
    let location = |i: usize| Location::Postgres { url: routes[i - 1].1.clone(), schema: schema.clone() };
    let node = |i: usize| {
        let (url, database) = routes[i - 1].clone();
        move |c: &mut confab::config::Config| {
            c.database_url = database;
            c.auth.jwt_secret = SECRET.to_owned();
            c.public_url = "http://cluster.test".to_owned();
            c.cluster.broker = url;
            c.cluster.node_id = format!("node{i}");
            c.cluster.name = "test".to_owned();
            tune(c);
        }
    };
    let first = TestServer::spawn_on(&location(1), node(1)).await;
    for name in extra {
        let mut owner = first.member(&format!("owner_{name}"), &["owner"]).await;
        let reply = owner
            .request(
                json!({"cmd": "channel_create", "name": name, "type": "text", "permissions": crate::channels::open()}),
            )
            .await;
        assert_eq!(reply["cmd"], "channel_create", "{reply}");
    }
    let mut nodes = vec![first];
    for i in 2..=routes.len() {
        nodes.push(TestServer::spawn_on(&location(i), node(i)).await);
    }
    nodes
}

/// What one client saw of one channel: seqs of `message_new` in arrival order.
pub(crate) type Seen = Vec<i64>;

/// Reads `client`'s packets until it has seen `want` messages in every channel of `channels`
/// (or `WAIT` passes with nothing new), returning the seqs per channel.
pub(crate) async fn collect(mut client: Client, channels: Vec<String>, want: usize) -> (Client, Vec<Seen>) {
    let mut seen: Vec<Seen> = vec![Vec::new(); channels.len()];
    while seen.iter().any(|s| s.len() < want) {
        let p = client.recv().await;
        if p["cmd"] != "message_new" {
            continue;
        }
        let Some(i) = channels.iter().position(|c| p["channel"] == c.as_str()) else { continue };
        seen[i].push(p["seq"].as_i64().unwrap_or_else(|| panic!("no seq in {p}")));
    }
    (client, seen)
}

/// Checks what every client saw against the channel's history: strictly increasing, the same list
/// everywhere, nothing missing. Returns the last line of the check.
pub(crate) async fn check(
    reader: &mut Client,
    channel: &str,
    seen: &[Seen],
    acked: &BTreeSet<i64>,
    name: &str,
) -> String {
    let mut history: Vec<i64> = Vec::new();
    loop {
        let frame = json!({"cmd": "messages_get", "channel": channel, "limit": 200, "start": history.len()});
        let page = reader.request(frame).await;
        let messages = page["messages"].as_array().unwrap_or_else(|| panic!("{page}")).clone();
        history.extend(messages.iter().filter(|m| !crate::support::is_welcome(m)).filter_map(|m| m["seq"].as_i64()));
        if messages.len() < 200 {
            break;
        }
    }
    history.sort_unstable();
    history.dedup();
    let (mut lost, mut duplicated, mut gaps) = (0, 0, 0);
    for s in seen {
        let set: BTreeSet<i64> = s.iter().copied().collect();
        duplicated += s.len() - set.len();
        gaps += s.windows(2).filter(|w| w[1] <= w[0]).count();
        lost += acked.iter().filter(|a| !set.contains(a)).count();
        assert_eq!(s, &seen[0], "{name}: two clients saw {channel} differently");
    }
    let written: BTreeSet<i64> = history.iter().copied().collect();
    let missing = written.iter().filter(|h| !seen.iter().all(|s| s.contains(h))).count();
    let line = format!(
        "cluster-{name} {channel}: {} messages, {lost} acked lost, {duplicated} duplicated, {gaps} gaps, {missing} missing",
        acked.len()
    );
    println!("{line}");
    assert_eq!((lost, duplicated, gaps, missing), (0, 0, 0, 0), "{line}");
    // Every ack names a stored message (nothing acknowledged that is not committed), and every send
    // was acknowledged: a message stored that no ack names was stored twice (a resent nonce the
    // cluster did not recognise).
    let (unstored, unacked) = (acked.difference(&written).count(), written.difference(acked).count());
    assert_eq!((unstored, unacked), (0, 0), "{line}: (acked but not stored, stored but not acked)");
    line
}

/// A reply refusing a message because the node's database was out of reach (`unavailable`).
pub(crate) struct Refusal {
    /// When it came.
    pub(crate) at: Instant,
    /// How long after the send.
    pub(crate) after: Duration,
    pub(crate) reply: Value,
}

/// What one sender of [`send`] did.
pub(crate) struct Sending {
    /// The acked seqs per channel.
    pub(crate) acked: Vec<BTreeSet<i64>>,
    /// The replies that refused a message, each sent again with its nonce.
    pub(crate) refused: Vec<Refusal>,
    /// The slowest reply, acknowledgement or refusal.
    pub(crate) slowest: Duration,
    /// Acknowledgements that were the original of a message sent again: refused, yet committed.
    pub(crate) duplicates: usize,
    /// When the first acknowledgement after the last refusal came.
    pub(crate) back: Option<Instant>,
}

/// How long a sender waits before it sends a refused message again.
const RESEND: Duration = Duration::from_millis(100);

/// One sender: `count` messages to each of `channels` in turn, each with a nonce, waiting for
/// every acknowledgement; a message refused as `unavailable` is sent again with the same nonce
/// (PROTOCOL §7.4) until it is acknowledged.
pub(crate) async fn send(mut client: Client, channels: Vec<String>, count: usize, tag: String) -> (Client, Sending) {
    let mut sending = Sending {
        acked: vec![BTreeSet::new(); channels.len()],
        refused: Vec::new(),
        slowest: Duration::ZERO,
        duplicates: 0,
        back: None,
    };
    for i in 0..count {
        for (k, channel) in channels.iter().enumerate() {
            let frame = json!({"cmd": "message_new", "channel": channel, "content": format!("{tag} {i}"), "nonce": format!("{tag} {i} {k}")});
            loop {
                let sent = Instant::now();
                let reply = client.request(frame.clone()).await;
                let after = sent.elapsed();
                sending.slowest = sending.slowest.max(after);
                if reply["cmd"] == "error" && reply["code"] == "unavailable" {
                    sending.refused.push(Refusal { at: Instant::now(), after, reply });
                    tokio::time::sleep(RESEND).await;
                    continue;
                }
                assert_eq!(reply["cmd"], "message_new", "{reply}");
                sending.duplicates += usize::from(reply["duplicate"] == true);
                if sending.refused.last().is_some_and(|r| sending.back.is_none_or(|b| b < r.at)) {
                    sending.back = Some(Instant::now());
                }
                sending.acked[k].insert(reply["message"]["seq"].as_i64().expect("acked seq"));
                break;
            }
        }
    }
    (client, sending)
}

/// Viewers (`per_node` on every node) collecting `count` messages from each sender, and one sender
/// on every node sending `count` messages to each of `channels`, all started at once.
#[allow(clippy::type_complexity)]
async fn start_load(
    nodes: &[TestServer],
    channels: &[String],
    per_node: usize,
    count: usize,
) -> (Vec<tokio::task::JoinHandle<(Client, Vec<Seen>)>>, Vec<tokio::task::JoinHandle<(Client, Sending)>>) {
    let mut viewers = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for k in 0..per_node {
            viewers.push(node.register(&format!("viewer{i}x{k}")).await);
        }
    }
    let want = count * nodes.len();
    let watching = viewers.into_iter().map(|c| tokio::spawn(collect(c, channels.to_vec(), want))).collect();
    let mut senders = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let client = node.register(&format!("sender{i}")).await;
        senders.push(tokio::spawn(send(client, channels.to_vec(), count, format!("from node {i}"))));
    }
    (watching, senders)
}

/// Clients on every node and a sender on every node, all on `channels`: every client sees the
/// same strictly increasing seqs, and every acked message.
async fn delivery(kind: Kind, channels: &[&str], name: &str) {
    let broker = Broker::start(kind).await;
    let extra: Vec<&str> = channels.iter().copied().filter(|c| *c != "general").collect();
    let nodes = three_nodes(&broker, &extra).await;
    let count = if long() { 300 } else { 15 };
    let channels: Vec<String> = channels.iter().map(|c| (*c).to_owned()).collect();
    let want = count * nodes.len();
    let (watching, senders) = start_load(&nodes, &channels, 2, count).await;
    let mut acked = vec![BTreeSet::new(); channels.len()];
    for s in senders {
        let (_, got) = s.await.expect("sender");
        assert!(got.refused.is_empty(), "{name}: a message refused");
        for (k, set) in got.acked.into_iter().enumerate() {
            acked[k].extend(set);
        }
    }
    let mut seen: Vec<Vec<Seen>> = vec![Vec::new(); channels.len()];
    for w in watching {
        let (_, per_channel) = w.await.expect("viewer");
        for (k, s) in per_channel.into_iter().enumerate() {
            seen[k].push(s);
        }
    }
    let mut reader = nodes[0].register("reader").await;
    for (k, channel) in channels.iter().enumerate() {
        assert_eq!(acked[k].len(), want, "every send acked once");
        check(&mut reader, channel, &seen[k], &acked[k], name).await;
    }
    // No batch failed and was retried alone (a deadlock would have been).
    for node in &nodes {
        let retries = node.metric("confab_db_batch_retries_total").await;
        assert_eq!(retries, 0.0, "{name}: {retries} batches retried change by change");
    }
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_node_delivery_in_order_nats() {
    delivery(Kind::Nats, &["general"], "delivery-nats").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_node_delivery_in_order_redis() {
    delivery(Kind::Redis, &["general"], "delivery-redis").await;
}

/// Senders on three nodes each write to two channels in turn, so batches hold both: every
/// channel's seqs are 1..n in PostgreSQL without a hole, and no batch deadlocked (each would
/// have been retried alone, which the metric counts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contention_on_two_channels_from_three_nodes() {
    delivery(Kind::Nats, &["general", "random"], "contention").await;
}

/// The same user sends one message with one nonce to two nodes at once: one message is stored and
/// both replies carry its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonce_race_across_nodes() {
    let broker = Broker::start(Kind::Nats).await;
    let nodes = three_nodes(&broker, &[]).await;
    let trials = if long() { 200 } else { 20 };
    nodes[0].http_register("racer").await;
    let mut a = nodes[0].login("racer", "correct horse").await;
    let mut b = nodes[1].login("racer", "correct horse").await;
    for t in 0..trials {
        let frame = json!({"cmd": "message_new", "channel": "general", "content": format!("race {t}"), "nonce": format!("n{t}")});
        let (ra, rb) = tokio::join!(a.request(frame.clone()), b.request(frame));
        let id = |r: &Value| r["message"]["id"].as_str().unwrap_or_else(|| panic!("no message in {r}")).to_owned();
        assert_eq!(id(&ra), id(&rb), "trial {t}: two messages for one nonce");
    }
    let history = a.request(json!({"cmd": "messages_get", "channel": "general", "limit": 200})).await;
    let races = history["messages"].as_array().unwrap().iter().filter(|m| m["user"] == "racer").count();
    assert_eq!(races, trials);
    println!("cluster-nonce-race: {trials} trials, 0 duplicated");
    for node in nodes {
        node.stop().await;
    }
}

/// The broker is SIGKILLed and restarted while senders on every node keep sending: nodes go on
/// committing and acknowledging, read from the database while it is down, and every client ends
/// with every acked message once, in order.
async fn broker_restart(kind: Kind, name: &str) {
    let mut broker = Broker::start(kind).await;
    let nodes = three_nodes(&broker, &[]).await;
    let rounds = if long() { 5 } else { 1 };
    let count = if long() { 200 } else { 30 };
    let channels = vec!["general".to_owned()];
    let want = count * nodes.len();
    let (watching, senders) = start_load(&nodes, &channels, 1, count).await;
    for _ in 0..rounds {
        tokio::time::sleep(Duration::from_millis(300)).await;
        broker.kill().await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        broker.up().await;
    }
    let mut acked = BTreeSet::new();
    for s in senders {
        let (_, got) = s.await.expect("sender");
        assert!(got.refused.is_empty(), "{name}: a message refused");
        acked.extend(got.acked.into_iter().flatten());
    }
    let mut seen = Vec::new();
    for w in watching {
        let (_, mut per_channel) = w.await.expect("viewer");
        seen.push(per_channel.remove(0));
    }
    let mut reader = nodes[0].register("reader").await;
    assert_eq!(acked.len(), want);
    check(&mut reader, "general", &seen, &acked, name).await;
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_and_restarted_under_load_nats() {
    broker_restart(Kind::Nats, "chaos-nats").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_and_restarted_under_load_redis() {
    broker_restart(Kind::Redis, "chaos-redis").await;
}

/// Cluster mode needs what every node must share: `confab serve` with a broker and no
/// `public_url`, a SQLite database, or no `auth.jwt_secret` stops before serving with a message
/// naming the key.
#[test]
fn cluster_mode_refuses_sqlite_and_a_missing_jwt_secret_or_public_url() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let serve = ["serve", "--listen", "127.0.0.1:0"];
    let broker = ("CONFAB_CLUSTER__BROKER", "nats://127.0.0.1:1");
    let secret = ("CONFAB_AUTH__JWT_SECRET", SECRET);
    let url = ("CONFAB_PUBLIC_URL", "http://chat.example");
    let pg = ("CONFAB_DATABASE_URL", "postgres://root@127.0.0.1:1/none");
    crate::cli::confab(cwd.path(), &serve, &[broker, secret, pg], None)
        .fails_with("key `public_url`: cluster mode needs one public_url (the load balancer's address) on every node");
    crate::cli::confab(cwd.path(), &serve, &[broker, secret, url], None)
        .fails_with("key `database_url`: cluster mode needs database_url = postgres://");
    crate::cli::confab(cwd.path(), &serve, &[broker, pg, url], None)
        .fails_with("key `auth.jwt_secret`: cluster mode needs one auth.jwt_secret shared by every node");
    crate::cli::confab(cwd.path(), &serve, &[("CONFAB_CLUSTER__BROKER", "kafka://x"), pg, secret, url], None)
        .fails_with("key `cluster.broker`");
}
