//! Cluster chaos rounds (docs/cluster.md, issue 16): the broker paused, one node cut off from the
//! broker, a node SIGKILLed, each under load, each ending in the verdict of `cluster::check`:
//! `0 acked lost, 0 duplicated, 0 gaps, 0 missing`.
//!
//! The short versions run in `cargo test`; `CONFAB_CLUSTER_LONG=1` runs the long ones (more
//! rounds, more messages).

use std::{
    collections::{BTreeSet, VecDeque},
    future::Future,
    time::Duration,
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::{oneshot, watch},
    task::JoinHandle,
    time::Instant,
};

use crate::{
    cli::Server,
    cluster::{Broker, Kind, SECRET, Seen, Sending, check, collect, long, nodes_on, send, three_nodes},
    support::{Client, TestServer, free_port, pg_schema, postgres_url, postgres_url_in},
};

/// The one channel every chaos round writes to.
const CHANNEL: &str = "general";
/// How long the broker stays paused, or a node cut off, at the least.
const OUTAGE: Duration = Duration::from_secs(3);
/// How long a node may take to notice the broker going or coming back (two probes a second apart,
/// on a slow shared machine).
const NOTICE: Duration = Duration::from_secs(20);

/// Whether `node` hears its own probes over the broker (`confab_cluster_broker_up`).
async fn broker_up(node: &TestServer) -> bool {
    node.metric("confab_cluster_broker_up").await == 1.0
}

/// Waits until every node of `nodes` reports the broker `up` (or down).
async fn until_broker(nodes: &[&TestServer], up: bool) {
    let deadline = Instant::now() + NOTICE;
    for node in nodes {
        while broker_up(node).await != up {
            assert!(
                Instant::now() < deadline,
                "node {} did not see the broker {}",
                node.addr,
                ["down", "up"][up as usize]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A viewer and a sender on every node, kept over rounds; what each viewer saw and every
/// acknowledged seq add up across rounds for the verdict.
struct Load {
    viewers: Vec<(Client, Seen)>,
    senders: Vec<Client>,
    acked: BTreeSet<i64>,
    rounds: usize,
}

impl Load {
    async fn on(nodes: &[TestServer]) -> Load {
        let mut load = Load { viewers: Vec::new(), senders: Vec::new(), acked: BTreeSet::new(), rounds: 0 };
        for (i, node) in nodes.iter().enumerate() {
            load.viewers.push((node.register(&format!("viewer{i}")).await, Seen::new()));
            load.senders.push(node.register(&format!("sender{i}")).await);
        }
        load
    }

    /// One round: every sender sends `count` messages while `chaos` runs, and every viewer waits
    /// until it has all of them. Returns what each sender did (refused messages were sent again).
    async fn round(&mut self, count: usize, chaos: impl Future<Output = ()>) -> Vec<Sending> {
        let channels = vec![CHANNEL.to_owned()];
        let want = count * self.senders.len();
        self.rounds += 1;
        let watching: Vec<JoinHandle<(Client, Seen)>> = self
            .viewers
            .drain(..)
            .map(|(client, mut seen)| {
                let channels = channels.clone();
                tokio::spawn(async move {
                    let (client, got) = collect(client, channels, want).await;
                    seen.extend(got.into_iter().flatten());
                    (client, seen)
                })
            })
            .collect();
        let round = self.rounds;
        let sending: Vec<_> = (self.senders.drain(..).enumerate())
            .map(|(i, c)| tokio::spawn(send(c, channels.clone(), count, format!("round {round} from node {i}"))))
            .collect();
        chaos.await;
        let mut sent = Vec::new();
        for s in sending {
            let (client, got) = s.await.expect("sender");
            self.acked.extend(got.acked.iter().flatten());
            self.senders.push(client);
            sent.push(got);
        }
        for w in watching {
            self.viewers.push(w.await.expect("viewer"));
        }
        sent
    }

    /// Every viewer has every acked message once, in seq order, and everything in the history;
    /// then the nodes stop.
    async fn verdict(self, nodes: Vec<TestServer>, name: &str) {
        let seen: Vec<Seen> = self.viewers.into_iter().map(|(_, seen)| seen).collect();
        let mut reader = nodes[0].register("reader").await;
        check(&mut reader, CHANNEL, &seen, &self.acked, name).await;
        for node in nodes {
            node.stop().await;
        }
    }
}

/// The broker is SIGSTOPped while every node's sender is sending: its TCP connections stay open
/// and silent, so only the missing probes tell. Every node must notice (`broker_up` 0), go on
/// committing and deliver from PostgreSQL while it is still paused, and after SIGCONT push again;
/// every viewer ends with every acked message once, in order.
async fn broker_paused(kind: Kind, name: &str) {
    let broker = Broker::start(kind).await;
    let nodes = three_nodes(&broker, &[]).await;
    let all: Vec<&TestServer> = nodes.iter().collect();
    let (rounds, count) = if long() { (5, 150) } else { (1, 20) };
    until_broker(&all, true).await;
    let mut load = Load::on(&nodes).await;
    for _ in 0..rounds {
        let paused = Instant::now();
        load.round(count, async {
            broker.signal("STOP");
            until_broker(&all, false).await;
        })
        .await;
        // Still paused: sent, committed and delivered with PostgreSQL alone.
        load.round(count, async {}).await;
        for node in &nodes {
            assert!(!broker_up(node).await, "{name}: a paused broker answered a probe");
        }
        tokio::time::sleep_until(paused + OUTAGE).await;
        broker.signal("CONT");
        load.round(count, until_broker(&all, true)).await;
    }
    for node in &nodes {
        assert!(node.metric("confab_cluster_degraded_polls_total").await > 0.0, "{name}: no degraded poll");
    }
    load.verdict(nodes, name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_paused_under_load_nats() {
    broker_paused(Kind::Nats, "paused-nats").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_paused_under_load_redis() {
    broker_paused(Kind::Redis, "paused-redis").await;
}

/// What a [`Proxy`] does with the bytes of its link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// Forwards them both ways.
    Open,
    /// Drops every connection it carried and closes new ones as soon as they are accepted.
    Cut,
    /// Forwards nothing and closes nothing: connections old and new stay open and silent (a
    /// network that loses every packet); opened again, they deliver what they held.
    Stalled,
}

/// A TCP proxy between one node and the broker or PostgreSQL (`upstream`, `host:port`): forwards
/// bytes both ways while its [`Link`] is open.
struct Proxy {
    port: u16,
    link: watch::Sender<Link>,
    task: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let (link, state) = watch::channel(Link::Open);
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if *state.borrow() == Link::Cut {
                    continue;
                }
                let (mut state, upstream) = (state.clone(), upstream.clone());
                tokio::spawn(async move {
                    if !open(&mut state).await {
                        return;
                    }
                    let Ok(outbound) = TcpStream::connect(upstream.as_str()).await else { return };
                    let ((from_in, to_in), (from_out, to_out)) = (inbound.into_split(), outbound.into_split());
                    tokio::join!(pump(from_in, to_out, state.clone()), pump(from_out, to_in, state));
                });
            }
        });
        Proxy { port, link, task }
    }

    fn set(&self, link: Link) {
        self.link.send_replace(link);
    }
}

/// Waits while the link is stalled: `true` once it is open, `false` once it is cut.
async fn open(state: &mut watch::Receiver<Link>) -> bool {
    state.wait_for(|l| *l != Link::Stalled).await.is_ok_and(|l| *l == Link::Open)
}

/// Forwards `from` to `to` while the link is open, holding what it read while it is stalled;
/// returns when either side closes or the link is cut (dropping `to` closes it).
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut state: watch::Receiver<Link>) {
    let mut buf = vec![0; 64 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buf) => read,
            _ = state.wait_for(|l| *l == Link::Cut) => return,
        };
        let Ok(n @ 1..) = read else { return };
        if !open(&mut state).await || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The third node reaches the broker through a [`Proxy`], which is cut while every node's sender
/// sends: that node alone sees the broker down and polls PostgreSQL, so it still delivers
/// everything; the other two stay up and read the cut-off node's messages (never published) from
/// PostgreSQL. When the link is back, the node pushes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_cut_off_from_broker() {
    let name = "cut-off";
    let broker = Broker::start(Kind::Nats).await;
    let proxy = Proxy::start(format!("127.0.0.1:{}", broker.port)).await;
    let direct = (broker.url(), postgres_url());
    let through = (format!("nats://127.0.0.1:{}", proxy.port), postgres_url());
    let nodes = nodes_on(&[direct.clone(), direct, through], &[], |_| {}).await;
    let (rounds, count) = if long() { (5, 150) } else { (1, 20) };
    let (others, cut_off) = (vec![&nodes[0], &nodes[1]], &nodes[2]);
    until_broker(&[&nodes[0], &nodes[1], cut_off], true).await;
    let mut load = Load::on(&nodes).await;
    for _ in 0..rounds {
        let cut = Instant::now();
        load.round(count, async {
            proxy.set(Link::Cut);
            until_broker(&[cut_off], false).await;
        })
        .await;
        load.round(count, async {}).await;
        assert!(!broker_up(cut_off).await, "{name}: the cut-off node heard its probes");
        until_broker(&others, true).await;
        tokio::time::sleep_until(cut + OUTAGE).await;
        proxy.set(Link::Open);
        load.round(count, until_broker(&[cut_off], true)).await;
    }
    assert!(cut_off.metric("confab_cluster_degraded_polls_total").await > 0.0, "{name}: no degraded poll");
    for node in &others {
        let filled = node.metric("confab_cluster_filled_total").await;
        assert!(filled > 0.0, "{name}: {} never read the cut-off node's messages from PostgreSQL", node.addr);
    }
    load.verdict(nodes, name).await;
}

/// How long the stores of the database rounds wait for PostgreSQL (`store.timeout_ms`).
const STORE_TIMEOUT: Duration = Duration::from_millis(1000);
/// The longest a refusal or a `/readyz` answer may take: a wait for PostgreSQL that times out
/// behind another that does, and a slow shared machine.
const BOUND: Duration = Duration::from_millis(3000);
/// What a message refused for want of PostgreSQL says.
const UNAVAILABLE: &str = "Database unavailable, try again";

/// `node`'s `/readyz` status (0: no answer within [`NOTICE`]) and how long it took.
async fn readyz(node: &TestServer) -> (u16, Duration) {
    let asked = Instant::now();
    let answer = node.http.get(node.url("/readyz")).timeout(NOTICE).send().await;
    (answer.map_or(0, |r| r.status().as_u16()), asked.elapsed())
}

/// Polls `node`'s `/readyz` until it answers `status`, each answer within [`BOUND`]; returns when.
async fn until_ready(node: &TestServer, status: u16, name: &str) -> Instant {
    let deadline = Instant::now() + NOTICE;
    loop {
        let (got, took) = readyz(node).await;
        assert!(took <= BOUND, "{name}: /readyz of {} took {took:?}", node.addr);
        if got == status {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "{name}: /readyz of {} never answered {status} (last {got})", node.addr);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `node` refused `sending` at least once while cut off, each time as `unavailable` within
/// [`BOUND`], and counts such refusals where an operator looks (the counter was once kept but never
/// shown in `/metrics`).
async fn refused_as_unavailable(node: &TestServer, sending: &Sending, name: &str) {
    assert!(!sending.refused.is_empty(), "{name}: {} refused nothing while cut off", node.addr);
    for r in &sending.refused {
        assert_eq!(
            (r.reply["code"].as_str(), r.reply["val"].as_str()),
            (Some("unavailable"), Some(UNAVAILABLE)),
            "{name}: {}",
            r.reply
        );
        assert!(r.after <= BOUND, "{name}: refused after {:?}", r.after);
    }
    let counted = node.metric("confab_db_unavailable_total").await;
    assert!(counted >= 1.0, "{name}: {} counts {counted} commits refused as unavailable", node.addr);
}

/// A [`Proxy`] to the test PostgreSQL, and the database URL that goes through it.
async fn proxied_postgres() -> (Proxy, String) {
    let direct = postgres_url();
    let mut through = reqwest::Url::parse(&direct).expect("the PostgreSQL URL");
    let upstream = format!("{}:{}", through.host_str().unwrap_or("127.0.0.1"), through.port().unwrap_or(5432));
    let proxy = Proxy::start(upstream).await;
    through.set_host(Some("127.0.0.1")).expect("a host");
    through.set_port(Some(proxy.port)).expect("a port");
    (proxy, through.to_string())
}

/// What one outage of [`node_cut_off_from_database_by`] looked like, in the order it happened.
struct Outage {
    cut: Instant,
    not_ready: Instant,
    restored: Instant,
    ready: Instant,
}

/// The third node reaches PostgreSQL through a [`Proxy`], whose link is cut (or stalled) for at
/// least [`OUTAGE`] while every node's sender sends. That node refuses messages with
/// `unavailable` within [`BOUND`] of each send and its `/readyz` answers 503, while the other two
/// stay ready, answer every message within [`BOUND`] (acknowledging all of them when the link was
/// reset) and the cut-off node still delivers theirs. Once the link is back the node is ready again by itself, the refused messages sent
/// again with their nonces are acknowledged (as the original where a refused one had committed
/// after all), and every viewer ends with every acked message once, in order.
async fn node_cut_off_from_database_by(link: Link, name: &str) {
    let broker = Broker::start(Kind::Nats).await;
    let (proxy, through) = proxied_postgres().await;
    let direct = postgres_url();
    let routes = [(broker.url(), direct.clone()), (broker.url(), direct), (broker.url(), through)];
    let nodes = nodes_on(&routes, &["random"], |c| c.store.timeout_ms = STORE_TIMEOUT.as_millis() as u64).await;
    let (rounds, count) = if long() { (5, 150) } else { (1, 20) };
    let cut_off = &nodes[2];
    // Witnesses: one on each other node writes to another channel while the link is down, one on
    // the cut-off node sees each message arrive.
    let mut writers = [nodes[0].register("witness0").await, nodes[1].register("witness1").await];
    let mut watcher = cut_off.register("watcher").await;
    let mut load = Load::on(&nodes).await;
    for round in 0..rounds {
        let mut outage = None;
        let sent = load
            .round(count, async {
                let cut = Instant::now();
                proxy.set(link);
                let not_ready = until_ready(cut_off, 503, name).await;
                let mut k = 0;
                while cut.elapsed() < OUTAGE {
                    for (node, writer) in nodes.iter().zip(&mut writers) {
                        assert_eq!(readyz(node).await.0, 200, "{name}: {} not ready", node.addr);
                        let content = format!("witness {round} {k}");
                        let asked = Instant::now();
                        let reply = writer
                            .request(json!({"cmd": "message_new", "channel": "random", "content": content}))
                            .await;
                        assert_eq!(reply["cmd"], "message_new", "{name}: {reply}");
                        assert!(
                            asked.elapsed() <= BOUND,
                            "{name}: {} acknowledged after {:?}",
                            node.addr,
                            asked.elapsed()
                        );
                        while watcher.recv_cmd("message_new").await["message"]["content"] != content.as_str() {}
                        k += 1;
                    }
                    assert_eq!(readyz(cut_off).await.0, 503, "{name}: the cut-off node said it was ready");
                }
                proxy.set(Link::Open);
                let restored = Instant::now();
                let ready = until_ready(cut_off, 200, name).await;
                outage = Some(Outage { cut, not_ready, restored, ready });
            })
            .await;
        let caught_up = Instant::now();
        let Outage { cut, not_ready, restored, ready } = outage.expect("the outage ran");
        let [first, second, mine] = &sent[..] else { unreachable!("three senders") };
        // A silent link that catches the cut-off node in the middle of a statement of its commit
        // leaves its session holding the channel's counter row (PostgreSQL's idle-in-transaction
        // time-out runs only between statements): the others' commits to that channel wait and are
        // refused until the link answers (docs/cluster.md, "Faults"). A reset link frees it at once.
        let elsewhere_refused = first.refused.len() + second.refused.len();
        for other in [first, second] {
            if link == Link::Cut {
                assert!(
                    other.refused.is_empty(),
                    "{name}: a node with its database refused {}",
                    other.refused[0].reply
                );
            }
            assert!(other.slowest <= BOUND, "{name}: a reply took {:?}", other.slowest);
        }
        refused_as_unavailable(cut_off, mine, name).await;
        let refused = mine.refused[0].at.saturating_duration_since(cut);
        assert!(refused <= BOUND, "{name}: first refusal {refused:?} after the cut");
        let back = mine.back.expect("acknowledged again").saturating_duration_since(restored);
        let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
        let elsewhere = first.slowest.max(second.slowest);
        println!(
            "cluster-{name}: first refusal {} after the cut, /readyz 503 after {}; link back: ready after {}, first ack after {}, every viewer caught up after {}; {} refusals, {} committed after all, slowest refusal {}, slowest reply on the other nodes {} ({} refusals there)",
            secs(refused),
            secs(not_ready - cut),
            secs(ready - restored),
            secs(back),
            secs(caught_up - restored),
            mine.refused.len(),
            mine.duplicates,
            secs(mine.refused.iter().map(|r| r.after).max().unwrap_or_default()),
            secs(elsewhere),
            elsewhere_refused,
        );
        let after = load.round(count, async {}).await;
        assert!(after.iter().all(|s| s.refused.is_empty()), "{name}: refused after the link came back");
    }
    load.verdict(nodes, name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_cut_off_from_database() {
    node_cut_off_from_database_by(Link::Cut, "db-cut").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_stalled_from_database() {
    node_cut_off_from_database_by(Link::Stalled, "db-stalled").await;
}

/// PostgreSQL out of reach for every node at once: the one link all three go through is cut
/// before a round and stays cut for at least [`OUTAGE`] while every node's sender sends. Every
/// node refuses messages with `unavailable` within [`BOUND`] of each send, counts the refusals in
/// `/metrics` and says it is not ready; none goes down or acknowledges a message it could not
/// commit. Once the link is back every node is ready again by itself, the refused messages sent
/// again with their nonces are acknowledged, and every viewer ends with every acked message once,
/// in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_out_of_reach_for_every_node() {
    let name = "db-down";
    let broker = Broker::start(Kind::Nats).await;
    let (proxy, through) = proxied_postgres().await;
    let route = (broker.url(), through);
    let routes = [route.clone(), route.clone(), route];
    let nodes = nodes_on(&routes, &[], |c| c.store.timeout_ms = STORE_TIMEOUT.as_millis() as u64).await;
    let count = if long() { 150 } else { 20 };
    let mut load = Load::on(&nodes).await;
    load.round(count, async {}).await;
    let cut = Instant::now();
    proxy.set(Link::Cut);
    let mut restored = None;
    let sent = load
        .round(count, async {
            for node in &nodes {
                until_ready(node, 503, name).await;
            }
            tokio::time::sleep_until(cut + OUTAGE).await;
            proxy.set(Link::Open);
            restored = Some(Instant::now());
            for node in &nodes {
                until_ready(node, 200, name).await;
            }
        })
        .await;
    let restored = restored.expect("the outage ran");
    for (node, sending) in nodes.iter().zip(&sent) {
        refused_as_unavailable(node, sending, name).await;
        let back = sending.back.expect("acknowledged again once the link was back");
        assert!(back >= restored, "{name}: {} acknowledged a message while cut off", node.addr);
    }
    println!(
        "cluster-{name}: {} refusals over {:.2} s cut off, {} committed after all",
        sent.iter().map(|s| s.refused.len()).sum::<usize>(),
        (restored - cut).as_secs_f64(),
        sent.iter().map(|s| s.duplicates).sum::<usize>(),
    );
    let after = load.round(count, async {}).await;
    assert!(after.iter().all(|s| s.refused.is_empty()), "{name}: refused after the link came back");
    load.verdict(nodes, name).await;
}

/// A `confab serve` process of the cluster, with its working folder (its data folder is in it).
struct Node {
    server: Server,
    _cwd: tempfile::TempDir,
}

/// Three `confab serve` processes on a fresh schema and `broker`, configured as an operator would
/// (docs/cluster.md: environment variables), on free ports.
async fn three_processes(broker: &Broker) -> Vec<Node> {
    let database = postgres_url_in(&pg_schema().await);
    let url = broker.url();
    let mut nodes = Vec::new();
    for i in 1..=3 {
        let cwd = tempfile::tempdir().expect("tempdir");
        let id = format!("node{i}");
        let env = [
            ("CONFAB_DATABASE_URL", database.as_str()),
            ("CONFAB_AUTH__JWT_SECRET", SECRET),
            ("CONFAB_PUBLIC_URL", "http://cluster.test"),
            ("CONFAB_CLUSTER__BROKER", url.as_str()),
            ("CONFAB_CLUSTER__NAME", "test"),
            ("CONFAB_CLUSTER__NODE_ID", id.as_str()),
            // Every test client comes from 127.0.0.1.
            ("CONFAB_RATE_LIMITS__ENABLED", "false"),
        ];
        let server = Server::start_env(cwd.path(), free_port(), &[], &env).await;
        nodes.push(Node { server, _cwd: cwd });
    }
    nodes
}

/// What a client does when its node is gone: log in on the next node of `urls`.
async fn fail_over(urls: &[String], node: &mut usize, name: &str) -> Client {
    for _ in 1..urls.len() {
        *node = (*node + 1) % urls.len();
        // A killed node refuses the connection: on to the next.
        if Client::open(&urls[*node], &[]).await.is_ok() {
            return Client::login(&urls[*node], name, "correct horse").await;
        }
    }
    panic!("{name}: no node left to move to")
}

/// A viewer that survives its node: collects the seqs of `want` messages of [`CHANNEL`]; when
/// the connection is gone, logs in on the next node and `resume`s from the last seq it saw
/// (PROTOCOL §7.2: the replay, then `resumed`, then live events; live events before `resumed`
/// are replayed anyway, so they are left out). `start` is the channel's seq when the viewer
/// joined. Returns the seqs and how many times the viewer moved.
async fn watch_across(
    urls: Vec<String>,
    home: usize,
    name: String,
    mut client: Client,
    start: i64,
    want: usize,
) -> (Seen, usize) {
    let (mut seen, mut failovers) = (Seen::new(), 0);
    let mut node = home;
    while seen.len() < want {
        let Some(p) = client.recv_or_gone().await else {
            client = fail_over(&urls, &mut node, &name).await;
            failovers += 1;
            let last = seen.last().copied().unwrap_or(start);
            let (resumed, before) = client.request_seeing(json!({"cmd": "resume", "channels": {CHANNEL: last}})).await;
            assert_eq!(resumed["cmd"], "resumed", "{resumed}");
            assert_eq!(resumed["stale"], json!([]), "{name}: {resumed}");
            seen.extend(before.iter().filter(|p| p["replay"] == true).filter_map(message_seq));
            continue;
        };
        seen.extend(message_seq(&p));
    }
    (seen, failovers)
}

/// The seq of a `message_new` of [`CHANNEL`].
fn message_seq(p: &Value) -> Option<i64> {
    (p["cmd"] == "message_new" && p["channel"] == CHANNEL).then(|| p["seq"].as_i64().expect("seq"))
}

/// Messages a sender keeps unacknowledged at once.
const WINDOW: usize = 4;

/// Where the victim's sender stops reading, so that its node dies with messages committed and
/// their acknowledgements unread (the acks a crash loses in flight).
struct Stall {
    /// Stop once this many messages are acked and the window is sent again.
    at: usize,
    /// The content of the last message sent before stopping, for the test to wait until it is
    /// committed.
    stalled: oneshot::Sender<String>,
    /// The node is dead: whatever it still sent is treated as lost.
    release: oneshot::Receiver<()>,
}

/// A sender that survives its node: `count` messages to [`CHANNEL`], each with a nonce, up to
/// [`WINDOW`] unacknowledged; when the connection is gone it logs in on the next node and sends
/// the unacknowledged ones again with the same nonces (PROTOCOL §7.4: one that was committed
/// comes back as the original, `duplicate`).
async fn send_across(
    urls: Vec<String>,
    home: usize,
    name: String,
    mut client: Client,
    count: usize,
    mut stall: Option<Stall>,
) -> Sent {
    let mut unacked: VecDeque<Value> = VecDeque::new();
    let mut sent = Sent::default();
    let (mut next, mut node) = (0, home);
    while sent.acked.len() < count {
        while unacked.len() < WINDOW && next < count {
            let nonce = format!("{name}-{next}");
            let frame = json!({"cmd": "message_new", "channel": CHANNEL, "content": format!("{name} {next}"), "nonce": nonce, "listener": nonce});
            next += 1;
            unacked.push_back(frame.clone());
            // A send into a dead connection is noticed by the read below.
            client.send_or_gone(frame).await;
        }
        let stalled = match stall.take_if(|s| sent.acked.len() >= s.at) {
            Some(Stall { stalled, release, .. }) => {
                let last = unacked.back().map(|f| f["content"].as_str().unwrap_or_default().to_owned());
                stalled.send(last.unwrap_or_default()).expect("the test waits");
                release.await.expect("the test releases");
                true
            }
            None => false,
        };
        // After the stall the connection counts as gone, with whatever it still holds unread.
        let p = if stalled { None } else { client.recv_or_gone().await };
        let Some(p) = p else {
            client = fail_over(&urls, &mut node, &name).await;
            sent.failovers += 1;
            sent.resent += unacked.len();
            for frame in &unacked {
                assert!(client.send_or_gone(frame.clone()).await, "{name}: the new node is gone too");
            }
            continue;
        };
        let Some(at) = unacked.iter().position(|f| f["listener"] == p["listener"]) else { continue };
        assert_eq!(p["cmd"], "message_new", "{name}: {p}");
        unacked.remove(at);
        sent.acked.insert(p["message"]["seq"].as_i64().unwrap_or_else(|| panic!("no seq in {p}")));
        sent.duplicates += usize::from(p["duplicate"] == true);
    }
    sent
}

/// What [`send_across`] did.
#[derive(Default)]
struct Sent {
    /// The seqs of the acknowledged messages.
    acked: BTreeSet<i64>,
    /// Times the connection was gone and the sender moved to another node.
    failovers: usize,
    /// Unacknowledged messages sent again after a move.
    resent: usize,
    /// Replies that were the original of a message sent again (committed before the kill).
    duplicates: usize,
}

/// Three `confab serve` processes, a viewer and a sender on each, all sending; the third is
/// SIGKILLed once its sender has a third of its messages acked and a window of them committed,
/// unacknowledged. Its viewer and sender log in on another node; the viewer resumes, the sender
/// sends its unacknowledged messages again with the same nonces. Every viewer ends with every
/// acked message once, in order, and nothing is stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sigkilled_under_load() {
    nodes_sigkilled("sigkill", 1, false).await;
}

/// Two of the three SIGKILLed at once, each with a window of its sender's messages committed and
/// unacknowledged: both viewers and senders end on the last node, which alone carries the rest.
/// The verdict is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_sigkilled_under_load() {
    nodes_sigkilled("sigkill-two", 2, false).await;
}

/// The same kill with the broker SIGSTOPped just before it, and continued only once every sender
/// and viewer is done: the failover, the resent messages and every delivery after the kill happen
/// with PostgreSQL alone (degraded polling). The verdict is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sigkilled_while_the_broker_is_stopped() {
    nodes_sigkilled("sigkill-broker-stopped", 1, true).await;
}

/// [`node_sigkilled_under_load`] with the last `killed` nodes of three, and the broker stopped
/// around the kill when `broker_stopped`.
async fn nodes_sigkilled(name: &str, killed: usize, broker_stopped: bool) {
    let broker = Broker::start(Kind::Nats).await;
    let mut nodes = three_processes(&broker).await;
    let urls: Vec<String> = nodes.iter().map(|n| n.server.ws_url()).collect();
    let count = if long() { 400 } else { 40 };
    let want = count * nodes.len();
    let victims = nodes.len() - killed..nodes.len();
    let mut viewers = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let viewer = format!("viewer{i}");
        let mut client = Client::register(url, &viewer).await;
        let page = client.request(json!({"cmd": "messages_get", "channel": CHANNEL, "limit": 1})).await;
        let start = page["seq"].as_i64().unwrap_or_else(|| panic!("no seq in {page}"));
        viewers.push(tokio::spawn(watch_across(urls.clone(), i, viewer, client, start, want)));
    }
    let (mut stalls, mut last_sent, mut releases) = (Vec::new(), Vec::new(), Vec::new());
    for _ in victims.clone() {
        let (stalled, last) = oneshot::channel();
        let (release, stall_release) = oneshot::channel();
        stalls.push(Stall { at: count / 3, stalled, release: stall_release });
        last_sent.push(last);
        releases.push(release);
    }
    let mut reader = Client::register(&urls[0], "reader").await;
    let mut senders = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let sender = format!("sender{i}");
        let client = Client::register(url, &sender).await;
        let stall = if victims.contains(&i) { stalls.pop() } else { None };
        senders.push(tokio::spawn(send_across(urls.clone(), i, sender, client, count, stall)));
    }
    for last_sent in last_sent {
        let last_sent = last_sent.await.expect("a victim's sender stalls");
        let deadline = Instant::now() + NOTICE;
        loop {
            let page = reader.request(json!({"cmd": "messages_get", "channel": CHANNEL, "limit": 40})).await;
            if page["messages"].as_array().expect("messages").iter().any(|m| m["content"] == last_sent.as_str()) {
                break;
            }
            assert!(Instant::now() < deadline, "{name}: {last_sent:?} never committed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    if broker_stopped {
        broker.signal("STOP");
    }
    // The last first: a client moving off an earlier victim goes to the next node, which must
    // already be dead (or alive for good), or it would move twice.
    for victim in victims.clone().rev() {
        nodes[victim].server.kill();
    }
    let killed_at = Instant::now();
    for release in releases {
        release.send(()).expect("a victim's sender waits");
    }
    let mut acked = BTreeSet::new();
    let (mut resent, mut duplicates) = (0, 0);
    for (i, s) in senders.into_iter().enumerate() {
        let sent = s.await.expect("sender");
        assert_eq!(sent.acked.len(), count, "{name}: one seq per message");
        let moved = usize::from(victims.contains(&i));
        assert_eq!(sent.failovers, moved, "{name}: sender {i} moved {} times", sent.failovers);
        acked.extend(sent.acked);
        (resent, duplicates) = (resent + sent.resent, duplicates + sent.duplicates);
    }
    let mut seen = Vec::new();
    for (i, v) in viewers.into_iter().enumerate() {
        let (got, failovers) = v.await.expect("viewer");
        let moved = usize::from(victims.contains(&i));
        assert_eq!(failovers, moved, "{name}: viewer {i} moved {failovers} times");
        seen.push(got);
    }
    if broker_stopped {
        let secs = killed_at.elapsed().as_secs_f64();
        println!(
            "cluster-{name}: everything sent, acknowledged and delivered {secs:.2} s after the kill, broker stopped"
        );
        broker.signal("CONT");
    }
    assert!(duplicates > 0, "{name}: the message committed before the kill was not recognised");
    assert_eq!(acked.len(), want, "{name}: every message stored once");
    check(&mut reader, CHANNEL, &seen, &acked, name).await;
    println!("cluster-{name}: {resent} messages sent again after the kill, {duplicates} of them committed before it");
    drop(broker);
    for mut node in nodes.drain(..victims.start) {
        assert!(node.server.alive(), "{name}: a surviving node died\n{}", node.server.logs());
    }
}
