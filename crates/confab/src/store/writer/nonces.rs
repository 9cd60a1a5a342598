//! Idempotent send (PROTOCOL §7.4) inside a batch: which appends repeat a nonce stored earlier or
//! used earlier in the same batch, decided before anything is written, and what each append then
//! answers.

use std::collections::HashMap;

use super::change::{Append, Appended};
use crate::store::script;

/// What the batch does with one append, decided before anything is written.
#[derive(Clone)]
pub(super) enum Plan {
    Fresh,
    /// Repeat of a nonce stored earlier: the original message's id.
    DuplicateOf(String),
    /// Repeat of a nonce used earlier in this same batch: that append's index.
    DuplicateInBatch(usize),
    Conflict,
}

/// Stored nonces of a batch's senders, as read: user, nonce, message id, content fingerprint, time.
pub(super) type Prior = Vec<(String, String, String, String, f64)>;

/// The `(user, nonce)` of each append that has one.
pub(super) fn keyed<'a>(msgs: &[&'a Append]) -> Vec<(&'a str, &'a str)> {
    msgs.iter().filter_map(|m| Some((m.user_id.as_deref()?, m.nonce.as_deref()?))).collect()
}

/// The query for the stored nonces of `$1`, a JSON array of [`keyed`] pairs: one text whatever
/// the batch size.
pub(super) fn nonce_lookup(sqlite: bool) -> String {
    format!(
        "SELECT n.user_id, n.nonce, n.message_id, n.content_hash, n.created_at FROM {} \
         JOIN nonces n ON n.user_id = r.value->>0 AND n.nonce = r.value->>1",
        script::json_rows(sqlite)
    )
}

/// What to do with each append, in arrival order, given the nonces already stored.
pub(super) fn plan(msgs: &[&Append], prior: &Prior) -> Vec<Plan> {
    let prior: HashMap<(&str, &str), (&str, &str, f64)> = prior
        .iter()
        .map(|(user, nonce, id, hash, at)| ((user.as_str(), nonce.as_str()), (id.as_str(), hash.as_str(), *at)))
        .collect();
    let mut plans = Vec::with_capacity(msgs.len());
    let mut in_batch: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, m) in msgs.iter().enumerate() {
        let key = m.user_id.as_deref().zip(m.nonce.as_deref());
        let plan = match (key, &m.hash) {
            (Some(k), Some(hash)) => {
                if let Some(&j) = in_batch.get(&k) {
                    if msgs[j].hash.as_ref() == Some(hash) { Plan::DuplicateInBatch(j) } else { Plan::Conflict }
                } else {
                    match prior.get(&k).filter(|(_, _, at)| *at > m.created_at - m.nonce_window_s) {
                        Some((id, h, _)) if h == hash => Plan::DuplicateOf((*id).to_owned()),
                        Some(_) => Plan::Conflict,
                        None => {
                            in_batch.insert(k, i);
                            Plan::Fresh
                        }
                    }
                }
            }
            _ => Plan::Fresh,
        };
        plans.push(plan);
    }
    plans
}

/// The stored messages that repeated nonces point to.
pub(super) fn originals(plans: &[Plan]) -> Vec<&str> {
    plans
        .iter()
        .filter_map(|p| match p {
            Plan::DuplicateOf(id) => Some(id.as_str()),
            _ => None,
        })
        .collect()
}

/// Each append's outcome: its seq and packet if stored, else what its plan found; `found` holds
/// the packets of [`originals`] that still exist. Repeats copy their packets first, so a stored
/// append's packet then moves into its outcome instead of being copied (once per message).
pub(super) fn outcomes(
    plans: &[Plan],
    seqs: &[Option<i64>],
    mut packets: Vec<Option<String>>,
    found: &HashMap<String, String>,
) -> Vec<Appended> {
    let repeats: Vec<Option<Appended>> = plans
        .iter()
        .map(|plan| match plan {
            Plan::Fresh => None,
            Plan::DuplicateOf(id) => Some(match found.get(id) {
                Some(packet) => Appended::Duplicate { packet: packet.clone() },
                None => Appended::OriginalDeleted,
            }),
            Plan::DuplicateInBatch(j) => Some(match &packets[*j] {
                Some(packet) => Appended::Duplicate { packet: packet.clone() },
                None => Appended::ChannelGone,
            }),
            Plan::Conflict => Some(Appended::NonceConflict),
        })
        .collect();
    repeats
        .into_iter()
        .zip(seqs)
        .zip(packets.iter_mut())
        .map(|((repeat, seq), packet)| {
            repeat.unwrap_or_else(|| match (seq, packet.take()) {
                (Some(seq), Some(packet)) => Appended::New { seq: *seq, packet },
                _ => Appended::ChannelGone,
            })
        })
        .collect()
}
