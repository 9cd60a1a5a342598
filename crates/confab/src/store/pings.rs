//! Pings (PROTOCOL §6.1 `pings_get`): messages that mention an account or one of its roles, or reply
//! to it, read from the `mentions` index the writer fills in each message's own transaction — never
//! from a scan of the messages, so the cost follows the number of pings, not of messages.

use super::{
    Store, dispatch,
    messages::{Bind, MessageRow, bind_all},
};
use crate::error::Result;

impl Store {
    /// One page of the messages that ping `user_id` — a mention or a reply ping of the account, or
    /// a mention of one of `role_ids` — in `channel_ids`, not written by the account; newest first,
    /// with how many there are in all.
    pub async fn pings_page(
        &self,
        user_id: &str,
        role_ids: &[String],
        channel_ids: &[String],
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<MessageRow>, i64)> {
        if channel_ids.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let mut binds = vec![Bind::Text(user_id)];
        let pinged = pinged(&mut binds, role_ids);
        let channels = placeholders(&mut binds, channel_ids);
        let filter = format!("FROM mentions WHERE {pinged} AND channel_id IN ({channels})");
        let count = format!("SELECT COUNT(DISTINCT message_id) {filter}");
        let total: (i64,) = dispatch!(self, pool => {
            bind_all!(sqlx::query_as(sqlx::AssertSqlSafe(count.as_str())), &binds).fetch_one(pool).await?
        });
        let n = binds.len();
        let tail = format!(
            "WHERE m.id IN (SELECT message_id {filter} GROUP BY message_id \
             ORDER BY MAX(created_at) DESC, message_id DESC LIMIT ${} OFFSET ${}) \
             ORDER BY m.created_at DESC, m.id DESC",
            n + 1,
            n + 2
        );
        binds.extend([Bind::Int(limit), Bind::Int(offset)]);
        Ok((self.select_messages(&tail, &binds).await?, total.0))
    }
}

/// The condition on `mentions` rows (unqualified `target_kind`, `target_id`, `author_id`) that a
/// message pings the account bound as `$1` — a mention or reply ping of it, or a mention of one of
/// `role_ids`, appended to `binds` — and was not written by it. `pings_get` and the unread mention
/// counts ([`crate::store::read_state`]) share it, so both count the same messages.
pub(super) fn pinged<'a>(binds: &mut Vec<Bind<'a>>, role_ids: &'a [String]) -> String {
    let roles = placeholders(binds, role_ids);
    let by_role = if role_ids.is_empty() {
        String::new()
    } else {
        format!(" OR (target_kind = 'role' AND target_id IN ({roles}))")
    };
    format!(
        "((target_kind IN ('user', 'reply') AND target_id = $1){by_role}) AND (author_id IS NULL OR author_id <> $1)"
    )
}

/// Appends `values` to `binds` and returns their `$n` placeholders, comma-separated.
fn placeholders<'a>(binds: &mut Vec<Bind<'a>>, values: &'a [String]) -> String {
    let first = binds.len() + 1;
    binds.extend(values.iter().map(|v| Bind::Text(v)));
    (first..first + values.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}
