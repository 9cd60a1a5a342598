//! The member list behind `users_list` and `users_online` (PROTOCOL §6.4), serialised once per
//! change instead of once per request.
//!
//! A restart makes every client ask for the member list at once (the official client's start-up
//! sequence): building it per request read every account and role assignment and serialised
//! them again for each of thousands of requests. Here each account is serialised once, in the
//! forms the two listings show (offline and online in `users_list`, its `users_online` entry),
//! and a request only picks forms by the live presence set and joins them. The cache is keyed
//! by the store's member generation ([`crate::store::Store::members_generation`]), which every
//! account, role and role-assignment write and every directory reload moves on.

use std::{collections::HashSet, sync::Arc};

use crate::error::Result;

/// One account, serialised in every form a listing shows it.
#[derive(Debug)]
pub struct Member {
    /// Account id, matched against the presence set.
    pub id: String,
    /// Its `users_list` entry while offline (or invisible) and while online.
    pub listed: [Box<str>; 2],
    /// Its `users_online` entry; `None` for an invisible account, which that list leaves out.
    pub present: Option<Box<str>>,
}

/// Every listed account (not banned), in name order, as of one member generation.
#[derive(Debug)]
pub struct Members {
    generation: u64,
    members: Vec<Member>,
    /// Bytes of the longer forms, so a listing is joined into one allocation.
    bytes: usize,
}

impl Members {
    /// Wraps the accounts read at `generation` (which must be read before the accounts were).
    pub fn new(generation: u64, members: Vec<Member>) -> Members {
        let bytes = members.iter().map(|m| m.listed[0].len().max(m.listed[1].len()) + 1).sum();
        Members { generation, members, bytes }
    }

    /// The `users` array of `users_list`: every account, online ones with their status.
    pub fn listed(&self, online: &HashSet<String>) -> String {
        join(self.bytes, self.members.iter().map(|m| &*m.listed[usize::from(online.contains(&m.id))]))
    }

    /// The `users` array of `users_online`: the visible accounts with a live connection.
    pub fn present(&self, online: &HashSet<String>) -> String {
        let entries = self.members.iter().filter(|m| online.contains(&m.id)).filter_map(|m| m.present.as_deref());
        join(online.len() * 128, entries)
    }
}

/// `[a,b,…]` from serialised JSON values.
fn join<'a>(capacity: usize, entries: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::with_capacity(capacity + 2);
    out.push('[');
    for (i, entry) in entries.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(entry);
    }
    out.push(']');
    out
}

/// The last member list built, rebuilt when the generation moved on.
#[derive(Debug, Default)]
pub struct MemberCache {
    built: tokio::sync::Mutex<Option<Arc<Members>>>,
}

impl MemberCache {
    /// The member list for `generation`: the cached one when it is that generation's, else the
    /// one `build` makes (and caches). Requests that arrive while it is being built wait for it
    /// rather than build it again, so a reconnect storm builds it once.
    pub async fn get<F>(&self, generation: u64, build: impl FnOnce() -> F) -> Result<Arc<Members>>
    where
        F: Future<Output = Result<Vec<Member>>>,
    {
        let mut built = self.built.lock().await;
        if let Some(members) = built.as_ref().filter(|m| m.generation == generation) {
            return Ok(members.clone());
        }
        let members = Arc::new(Members::new(generation, build().await?));
        *built = Some(members.clone());
        Ok(members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, present: Option<&str>) -> Member {
        Member {
            id: id.into(),
            listed: [format!("\"{id} off\"").into(), format!("\"{id} on\"").into()],
            present: present.map(Into::into),
        }
    }

    #[test]
    fn listings_pick_each_accounts_form_by_presence() {
        let members = Members::new(1, vec![member("a", Some("\"a\"")), member("b", None), member("c", Some("\"c\""))]);
        let online: HashSet<String> = ["b".to_owned(), "c".to_owned()].into();
        assert_eq!(members.listed(&online), r#"["a off","b on","c on"]"#);
        // b is invisible: online, but not in users_online.
        assert_eq!(members.present(&online), r#"["c"]"#);
        assert_eq!(members.present(&HashSet::new()), "[]");
    }

    #[tokio::test]
    async fn the_cache_builds_once_per_generation() {
        let cache = MemberCache::default();
        let builds = std::sync::atomic::AtomicUsize::new(0);
        let build = || async {
            builds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(vec![member("a", None)])
        };
        cache.get(1, build).await.unwrap();
        cache.get(1, build).await.unwrap();
        assert_eq!(builds.load(std::sync::atomic::Ordering::SeqCst), 1);
        cache.get(2, build).await.unwrap();
        assert_eq!(builds.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
