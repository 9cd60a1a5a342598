//! The writer's fast path on SQLite: a batch of appends committed synchronously on the writer's own
//! connection, with each channel's seq kept in memory.

use std::collections::HashMap;

use super::{
    change::{Appended, Change, appends_from},
    nonces::{Plan, Prior, keyed, nonce_lookup, originals, outcomes, plan},
    rows::append_rows,
};
use crate::{
    error::Result,
    store::{
        direct::Direct,
        script::{self, Script},
    },
};

/// The last seq of each channel as the SQLite writer committed it. Only the writer moves a
/// channel's seq, and a SQLite database belongs to one process, so the writer need not read it
/// back inside every transaction. A stale entry cannot do harm: a seq used twice breaks the
/// event log's primary key and a deleted channel its foreign key, the batch fails, the cache is
/// dropped and the changes are retried one by one the slow way. (PostgreSQL may be shared by
/// several nodes: it always reads the seq in the transaction.)
pub(super) type Seqs = HashMap<String, i64>;

/// A batch of appends on SQLite, on the writer's own thread: stored nonces read first (only the
/// writer writes them), seqs from [`Seqs`] (read once per channel), every row in one
/// transaction, then the packets that repeated nonces answer with. `None` when the batch does not
/// qualify (a channel event, or a channel that is gone): the caller takes the slow path.
pub(super) fn fast_appends(direct: &mut Direct, batch: &[&Change], seqs: &mut Seqs) -> Result<Option<Vec<Appended>>> {
    let msgs = appends_from(batch, 0);
    if msgs.len() != batch.len() {
        return Ok(None);
    }
    let mut missing: Vec<&str> =
        msgs.iter().map(|m| m.channel_id.as_str()).filter(|c| !seqs.contains_key(*c)).collect();
    missing.sort_unstable();
    missing.dedup();
    if !missing.is_empty() {
        let found = direct.channel_seqs(&missing)?;
        if found.len() < missing.len() {
            return Ok(None);
        }
        seqs.extend(found);
    }
    let keyed = keyed(&msgs);
    let prior: Prior = if keyed.is_empty() {
        Prior::new()
    } else {
        direct.rows(&nonce_lookup(true), &script::json_array(&keyed)?, |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
    };
    let plans = plan(&msgs, &prior);
    let mut last: Vec<(&str, i64)> = Vec::new();
    let mut assigned = vec![None; msgs.len()];
    for (i, m) in msgs.iter().enumerate().filter(|(i, _)| matches!(plans[*i], Plan::Fresh)) {
        let seq = match last.iter_mut().find(|(c, _)| *c == m.channel_id) {
            Some((_, s)) => {
                *s += 1;
                *s
            }
            None => {
                let s = seqs.get(&m.channel_id).copied().unwrap_or(0) + 1;
                last.push((m.channel_id.as_str(), s));
                s
            }
        };
        assigned[i] = Some(seq);
    }
    let packets: Vec<Option<String>> = msgs.iter().zip(&assigned).map(|(m, s)| s.map(|s| m.packet(s))).collect();
    let stored: Vec<usize> = (0..msgs.len()).filter(|i| assigned[*i].is_some()).collect();
    let mut script = Script::default();
    for (channel, seq) in &last {
        script.push("UPDATE channels SET seq = $2 WHERE id = $1", vec![(*channel).into(), (*seq).into()]);
    }
    append_rows(&mut script, &msgs, &stored, &assigned, &packets, true)?;
    if let Err(e) = direct.commit(&script) {
        seqs.clear();
        return Err(e);
    }
    for (channel, seq) in last {
        seqs.insert(channel.to_owned(), seq);
    }
    let originals = originals(&plans);
    let found: HashMap<String, String> = if originals.is_empty() {
        HashMap::new()
    } else {
        direct
            .rows(
                "SELECT e.message_id, e.payload FROM events e JOIN messages x ON x.id = e.message_id \
                 WHERE e.kind = 'message_new' AND e.message_id IN (SELECT value FROM json_each($1))",
                &script::json_array(&originals)?,
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
            .into_iter()
            .collect()
    };
    drop(script);
    Ok(Some(outcomes(&plans, &assigned, packets, &found)))
}
