//! Cluster mode (docs/cluster.md): several nodes on one PostgreSQL database, with committed
//! channel events fanned out between them over a broker (NATS or Redis).
//!
//! PostgreSQL stays the only source of truth. After its commit, each event is published once, by
//! the node that committed it, as an envelope with the packet already serialised; the writer only
//! puts it in a bounded queue ([`Cluster::committed`]) and never waits for the broker. Every node
//! hands events to its hub through the [`Sequencer`], which restores seq order per channel and
//! reads what the broker lost from the `events` table: after `gap_wait_ms` when a later seq shows
//! the gap, and at each tail sync (`sync_interval_ms`) for a lost tail. A node publishes a probe to
//! itself every `probe_interval_ms`; when two go missing the broker is down and the node polls the
//! database every `degraded_poll_ms` until the probes come back. In single-node mode none of this
//! exists (`AppState::cluster` is `None`): the writer hands events to the hub as it always did.
//!
//! Changes to live connections that are not channel events (closes, refreshes, server-wide
//! packets: [`control::Effect`]) take the same road under the key [`control::LOG`]: numbered in the
//! `cluster_events` log, published, ordered by the sequencer, filled from the log when lost.

// A build without either broker feature refuses `cluster.broker` at start: nothing here runs.
#[cfg_attr(not(any(feature = "nats", feature = "redis")), allow(dead_code, unused_variables))]
mod broker;
pub mod control;
pub mod envelope;
pub mod presence;
pub mod sequencer;
pub mod slash;

use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::Duration,
};

use bytes::Bytes;
use tokio::sync::mpsc;

use self::{
    broker::Incoming,
    control::{Effect, LOG},
    envelope::Kind,
    sequencer::{Item, Sequencer},
};
use crate::{
    config::ClusterConfig,
    hub::{Packet, Wakes},
    state::AppState,
};

/// Events read from the database per query when filling a gap.
const FILL_PAGE: i64 = 500;

/// The receiving ends of the queues the cluster tasks drain.
struct Ends {
    outgoing: mpsc::Receiver<Bytes>,
    gaps: mpsc::UnboundedReceiver<String>,
    effects: mpsc::UnboundedReceiver<String>,
}

/// This node's part of the cluster; `AppState::cluster`.
pub struct Cluster {
    config: ClusterConfig,
    sequencer: Sequencer,
    /// Envelopes for the publisher task; full → dropped and counted.
    outgoing: mpsc::Sender<Bytes>,
    /// Channels whose gap should be read after `gap_wait_ms`, for the cluster task.
    gaps: mpsc::UnboundedSender<String>,
    /// Durable effects made on this node, for the task that logs and publishes them in order.
    effects_out: mpsc::UnboundedSender<String>,
    /// The receiving ends, taken by [`Cluster::start`].
    ends: std::sync::Mutex<Option<Ends>>,
    /// Other nodes' effects, in log order, for the task that applies them here; taken once.
    effects_in: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Packet>>>,
    probes_sent: AtomicU64,
    probe_seen: AtomicU64,
    broker_up: AtomicBool,
}

impl Cluster {
    pub fn new(config: &ClusterConfig) -> Cluster {
        let (outgoing, out_rx) = mpsc::channel(config.publish_queue);
        let (gaps, gaps_rx) = mpsc::unbounded_channel();
        let (effects_out, effects_rx) = mpsc::unbounded_channel();
        let (applied, effects_in) = mpsc::unbounded_channel();
        Cluster {
            config: config.clone(),
            sequencer: Sequencer::new(applied),
            outgoing,
            gaps,
            effects_out,
            ends: std::sync::Mutex::new(Some(Ends { outgoing: out_rx, gaps: gaps_rx, effects: effects_rx })),
            effects_in: std::sync::Mutex::new(Some(effects_in)),
            probes_sent: AtomicU64::new(0),
            probe_seen: AtomicU64::new(0),
            broker_up: AtomicBool::new(false),
        }
    }

    /// This node's id on the broker.
    pub fn node_id(&self) -> &str {
        &self.config.node_id
    }

    /// Whether the broker delivered this node's recent probes.
    pub fn broker_up(&self) -> bool {
        self.broker_up.load(Ordering::Relaxed)
    }

    /// A channel event committed on this node (called by the writer, in seq order): published to
    /// the other nodes, and handed to the local hub through the sequencer with the requester's
    /// own reply (`item.own`), so that each connection still sees the channel in seq order.
    pub fn committed(&self, state: &AppState, channel: &str, seq: i64, packet: &str, item: Item, wakes: &mut Wakes) {
        let envelope = envelope::encode(&self.config.node_id, Kind::Channel { c: channel.to_owned(), s: seq }, packet);
        if self.outgoing.try_send(envelope).is_err() {
            state.metrics.inc("confab_cluster_publish_dropped_total", String::new());
        }
        self.offer(state, channel, seq, item, wakes);
    }

    /// An effect this node has just applied to its own connections, for every other node: a
    /// durable one is logged and published in order by the effects task, an ephemeral one is
    /// published now.
    pub fn tell(&self, state: &AppState, effect: &Effect) {
        let Ok(body) = serde_json::to_string(effect) else { return };
        if effect.durable() {
            let _ = self.effects_out.send(body);
        } else if self.outgoing.try_send(envelope::encode(&self.config.node_id, Kind::Ephemeral, &body)).is_err() {
            state.metrics.inc("confab_cluster_publish_dropped_total", String::new());
        }
    }

    /// Has this node's effects task apply `effect` here only, in turn with the other nodes'
    /// (what this node finds out for itself, such as another node's death).
    pub fn apply_here(&self, effect: &Effect) {
        if let Ok(body) = serde_json::to_string(effect) {
            self.sequencer.apply(Packet::from(body));
        }
    }

    /// The other nodes' effects as they are to be applied here, in order; `None` after the first
    /// call (one task applies them).
    pub fn take_effects(&self) -> Option<mpsc::UnboundedReceiver<Packet>> {
        self.effects_in.lock().ok().and_then(|mut e| e.take())
    }

    fn offer(&self, state: &AppState, channel: &str, seq: i64, item: Item, wakes: &mut Wakes) {
        if self.sequencer.offer(&state.hub, channel, seq, item, wakes) {
            state.metrics.inc("confab_cluster_gaps_total", String::new());
            let _ = self.gaps.send(channel.to_owned());
        }
    }

    /// Reads every channel's position, connects to the broker and starts the node's cluster tasks:
    /// publisher, receiver and the timer of probes and tail syncs. Called before the node serves.
    pub async fn start(state: &AppState) -> anyhow::Result<()> {
        let Some(cluster) = state.cluster.clone() else { return Ok(()) };
        let Some(ends) = cluster.ends.lock().ok().and_then(|mut e| e.take()) else { return Ok(()) };
        let seqs = positions(state).await.map_err(|e| anyhow::anyhow!("reading channel seqs: {e}"))?;
        cluster.sequencer.start_at(seqs);
        presence::start(state, cluster.node_id()).await.map_err(|e| anyhow::anyhow!("joining the cluster: {e}"))?;
        // Voice members live in memory: the others forget those of an earlier run under this
        // node's id (its connections are gone), and tell this node theirs.
        cluster.tell(state, &Effect::NodeGone { node: cluster.node_id().to_owned() });
        cluster.tell(state, &Effect::VoiceSync);
        state.metrics.gauge("confab_cluster_broker_up", String::new(), 0);
        let (incoming_tx, incoming) = mpsc::unbounded_channel();
        let (url, name) = (cluster.config.broker.clone(), cluster.config.name.clone());
        tracing::info!(node = %cluster.config.node_id, broker = %url.split('@').next_back().unwrap_or(""), "cluster mode");
        let publisher_state = state.clone();
        tokio::spawn(async move {
            match broker::connect(&url, &name, incoming_tx).await {
                Ok(publisher) => publish(publisher_state, publisher, ends.outgoing).await,
                Err(e) => tracing::error!(error = %e, "cluster broker: giving up; this node polls the database"),
            }
        });
        tokio::spawn(receive(state.clone(), incoming));
        tokio::spawn(gap_reads(state.clone(), ends.gaps));
        tokio::spawn(log_effects(state.clone(), ends.effects));
        tokio::spawn(timer(state.clone()));
        tokio::spawn(presence::heartbeat(state.clone(), cluster.node_id().to_owned()));
        Ok(())
    }
}

/// Every channel's last seq, and the control log's.
async fn positions(state: &AppState) -> crate::error::Result<Vec<(String, i64)>> {
    let mut seqs = state.store.channel_seqs().await?;
    seqs.push((LOG.to_owned(), state.store.control_head().await?));
    Ok(seqs)
}

/// Effects logged in one statement at most.
const LOG_BATCH: usize = 256;

/// The effects task: logs the durable effects made on this node — whatever has queued up, in one
/// statement — then publishes each with its seq and moves the sequencer past it (this node applied
/// it already). The change itself committed before, so the database is normally there; while it
/// is not, the effects wait and are retried (the other nodes see them late, never twice).
async fn log_effects(state: AppState, mut effects: mpsc::UnboundedReceiver<String>) {
    let Some(cluster) = state.cluster.clone() else { return };
    let retry = Duration::from_millis(cluster.config.degraded_poll_ms);
    let mut batch = Vec::new();
    while effects.recv_many(&mut batch, LOG_BATCH).await > 0 {
        let first = loop {
            match state.store.control_append(&cluster.config.node_id, &batch).await {
                Ok(first) => break first,
                Err(e) if !state.shutdown.is_cancelled() => {
                    tracing::warn!(error = %e, "logging cluster effects; retrying");
                    tokio::time::sleep(retry).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, effects = batch.len(), "cluster effects not logged at shutdown");
                    return;
                }
            }
        };
        let mut wakes = Wakes::default();
        for (seq, body) in (first..).zip(batch.drain(..)) {
            let envelope = envelope::encode(&cluster.config.node_id, Kind::Control { s: seq }, &body);
            if cluster.outgoing.try_send(envelope).is_err() {
                state.metrics.inc("confab_cluster_publish_dropped_total", String::new());
            }
            cluster.offer(&state, LOG, seq, Item::shared(None), &mut wakes);
        }
        wakes.wake();
    }
}

/// The publisher task: one envelope after another on one connection, so this node's events leave
/// in commit order. A failed publish is counted and forgotten.
async fn publish(state: AppState, mut publisher: broker::Publisher, mut outgoing: mpsc::Receiver<Bytes>) {
    loop {
        let next = tokio::select! {
            next = outgoing.recv() => next,
            () = state.shutdown.cancelled() => None,
        };
        let Some(envelope) = next else { break };
        if let Err(e) = publisher.publish(envelope).await {
            tracing::debug!(error = %e, "cluster publish failed");
            state.metrics.inc("confab_cluster_publish_dropped_total", String::new());
        }
    }
}

/// The receiver task: envelopes of other nodes go through the sequencer; this node's probes mark
/// the broker as delivering; a new subscription means something may have been lost meanwhile.
async fn receive(state: AppState, mut incoming: mpsc::UnboundedReceiver<Incoming>) {
    let Some(cluster) = state.cluster.clone() else { return };
    loop {
        let next = tokio::select! {
            next = incoming.recv() => next,
            () = state.shutdown.cancelled() => None,
        };
        let Some(next) = next else { break };
        let bytes = match next {
            Incoming::Envelope(bytes) => bytes,
            Incoming::Subscribed => {
                sync(&state, true).await;
                continue;
            }
        };
        let Some((header, packet)) = envelope::decode(&bytes) else { continue };
        match header.kind {
            Kind::Probe { p } if header.n == cluster.config.node_id => {
                cluster.probe_seen.fetch_max(p, Ordering::Relaxed);
            }
            Kind::Channel { c, s } if header.n != cluster.config.node_id => {
                let mut wakes = Wakes::default();
                cluster.offer(&state, &c, s, Item::shared(Some(Packet::from(packet))), &mut wakes);
                wakes.wake();
            }
            Kind::Control { s } if header.n != cluster.config.node_id => {
                let mut wakes = Wakes::default();
                cluster.offer(&state, LOG, s, Item::shared(Some(Packet::from(packet))), &mut wakes);
                wakes.wake();
            }
            Kind::Ephemeral if header.n != cluster.config.node_id => cluster.sequencer.apply(Packet::from(packet)),
            _ => {}
        }
    }
}

/// Reads each channel's gap from the database `gap_wait_ms` after it showed, unless the missing
/// events arrived meanwhile.
async fn gap_reads(state: AppState, mut gaps: mpsc::UnboundedReceiver<String>) {
    let Some(cluster) = state.cluster.clone() else { return };
    let wait = Duration::from_millis(cluster.config.gap_wait_ms);
    while let Some(channel) = gaps.recv().await {
        let state = state.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            fill(&state, &channel, 0).await;
        });
    }
}

/// Reads the events of `channel` this node is missing — up to its first early event, or up to
/// `upto` — from the database and hands them to the sequencer.
async fn fill(state: &AppState, channel: &str, upto: i64) {
    let Some(cluster) = state.cluster.as_ref() else { return };
    while let Some((next, until)) = cluster.sequencer.missing(channel, upto) {
        let limit = (until - next + 1).min(FILL_PAGE);
        let rows = if channel == LOG {
            // This node's own effects are applied already: stepped over, like deleted messages.
            let mine = &cluster.config.node_id;
            state.store.control_after(next - 1, limit).await.map(|rows| {
                rows.into_iter().map(|(seq, node, body)| (seq, (node != *mine).then_some(body))).collect::<Vec<_>>()
            })
        } else {
            state.store.events_after(channel, next - 1, limit).await
        };
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, channel, "reading missed events; retrying");
                tokio::time::sleep(Duration::from_millis(cluster.config.gap_wait_ms)).await;
                continue;
            }
        };
        let mut wakes = Wakes::default();
        match rows.first() {
            // Pruned from the log, or the channel is gone: nothing to read, step over.
            None => cluster.sequencer.skip_to(&state.hub, channel, until + 1, &mut wakes),
            Some((first, _)) if *first > next => {
                tracing::warn!(channel, from = next, to = first - 1, "events pruned before this node read them");
                cluster.sequencer.skip_to(&state.hub, channel, *first, &mut wakes);
            }
            Some(_) => {}
        }
        state.metrics.add("confab_cluster_filled_total", String::new(), rows.len() as u64);
        for (seq, payload) in rows.into_iter().filter(|(seq, _)| *seq <= until) {
            cluster.offer(state, channel, seq, Item::shared(payload.map(Packet::from)), &mut wakes);
        }
        wakes.wake();
    }
}

/// Tail sync: reads the channels this node is behind on (see [`Sequencer::behind`]).
async fn sync(state: &AppState, now: bool) {
    let Some(cluster) = state.cluster.as_ref() else { return };
    let seqs = match positions(state).await {
        Ok(seqs) => seqs,
        Err(e) => {
            tracing::warn!(error = %e, "cluster tail sync");
            return;
        }
    };
    for (channel, upto) in cluster.sequencer.behind(seqs, now) {
        fill(state, &channel, upto).await;
    }
    let early = cluster.sequencer.early() as i64;
    state.metrics.gauge_set("confab_cluster_sequencer_early", String::new(), early);
}

/// Probes and tail syncs. Two probes not back = the broker is down: poll the database every
/// `degraded_poll_ms`; back = one full sync, then tail syncs every `sync_interval_ms`.
async fn timer(state: AppState) {
    let Some(cluster) = state.cluster.clone() else { return };
    let config = &cluster.config;
    let mut probe = tokio::time::interval(Duration::from_millis(config.probe_interval_ms));
    let mut last_sync = tokio::time::Instant::now();
    let mut poll = tokio::time::interval(Duration::from_millis(config.degraded_poll_ms.min(config.sync_interval_ms)));
    loop {
        tokio::select! {
            _ = probe.tick() => {
                let sent = cluster.probes_sent.fetch_add(1, Ordering::Relaxed) + 1;
                let seen = cluster.probe_seen.load(Ordering::Relaxed);
                let up = sent.saturating_sub(seen) <= 2;
                if up != cluster.broker_up.swap(up, Ordering::Relaxed) {
                    tracing::info!(up, "cluster broker");
                    state.metrics.gauge("confab_cluster_broker_up", String::new(), if up { 1 } else { -1 });
                    if up {
                        sync(&state, true).await;
                        last_sync = tokio::time::Instant::now();
                    }
                }
                let probe = envelope::encode(&config.node_id, Kind::Probe { p: sent }, "");
                if cluster.outgoing.try_send(probe).is_err() {
                    state.metrics.inc("confab_cluster_publish_dropped_total", String::new());
                }
            }
            _ = poll.tick() => {
                let up = cluster.broker_up();
                if !up {
                    state.metrics.add("confab_cluster_degraded_polls_total", String::new(), 1);
                }
                if !up || last_sync.elapsed() >= Duration::from_millis(config.sync_interval_ms) {
                    sync(&state, !up).await;
                    last_sync = tokio::time::Instant::now();
                }
            }
            () = state.shutdown.cancelled() => break,
        }
    }
}
