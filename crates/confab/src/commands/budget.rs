//! The byte budget of a reply that lists messages (history, search, pings): whatever a page asks
//! for, the reply stays well under the outbound queue's byte bound (PROTOCOL §1.6), so it is built
//! and queued whole for a reader that keeps up, and one request cannot hold megabytes. A reply cut
//! short carries `"truncated": true` [ext] (docs/protocol-details.md); the next page starts from
//! the last message it holds.

use serde_json::Value;

use crate::state::AppState;

/// An eighth of the outbound byte bound (128 KiB by default). Small, too, because a socket's write
/// buffer keeps the capacity the largest frame it wrote needed.
pub fn reply_budget(state: &AppState) -> usize {
    state.config.limits.queue_bytes / 8
}

/// The items of `items` that fit in `budget` bytes (serialised), taken from the front, or from
/// the back when `from_back` (history order, oldest first, keeps the newest). The first item taken
/// always fits, however large. Returns the kept items in their order and whether any was left out.
pub fn fit(mut items: Vec<Value>, budget: usize, from_back: bool) -> (Vec<Value>, bool) {
    if from_back {
        items.reverse();
    }
    let mut used = 0;
    let mut kept = 0;
    for item in &items {
        let size = serde_json::to_string(item).map_or(0, |s| s.len());
        if kept > 0 && used + size > budget {
            break;
        }
        used += size;
        kept += 1;
    }
    let truncated = kept < items.len();
    items.truncate(kept);
    if from_back {
        items.reverse();
    }
    (items, truncated)
}

/// Adds `"truncated": true` to `reply` when items were left out.
pub fn flag(reply: &mut Value, truncated: bool) {
    if truncated && let Some(reply) = reply.as_object_mut() {
        reply.insert("truncated".to_owned(), Value::Bool(true));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_what_fits_from_either_end() {
        let items: Vec<Value> = (0..5).map(|i| json!("x".repeat(8 + i))).collect();
        // Serialised sizes 10, 11, 12, 13, 14.
        assert_eq!(fit(items.clone(), 100, false), (items.clone(), false));
        assert_eq!(fit(items.clone(), 22, false), (items[..2].to_vec(), true));
        assert_eq!(fit(items.clone(), 27, true), (items[3..].to_vec(), true));
        // One item larger than the budget is still given.
        assert_eq!(fit(items.clone(), 1, true), (items[4..].to_vec(), true));
        assert_eq!(fit(Vec::new(), 1, false), (Vec::new(), false));
    }
}
