//! Web Push subscriptions (PROTOCOL §6.9): one row per browser endpoint, owned by the account that
//! subscribed it last, read when a message pings someone who is offline.

use super::{Store, dispatch, script};
use crate::error::Result;

/// One browser's push subscription, with its keys as the browser gave them (base64url).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PushSubscription {
    pub endpoint: String,
    pub user_id: String,
    pub p256dh: String,
    pub auth: String,
}

const COLUMNS: &str = "s.endpoint, s.user_id, s.p256dh, s.auth";

impl Store {
    /// Saves a subscription. An endpoint already known (the same browser, perhaps under another
    /// account now) is replaced: a browser has one subscription, so the latest owner gets it.
    pub async fn push_subscribe(&self, sub: &PushSubscription, now: f64) -> Result<()> {
        let sql = "INSERT INTO push_subscriptions (endpoint, user_id, p256dh, auth, created_at, used_at) \
                   VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (endpoint) DO UPDATE SET \
                   user_id = excluded.user_id, p256dh = excluded.p256dh, auth = excluded.auth, \
                   created_at = excluded.created_at, used_at = excluded.used_at";
        dispatch!(self, pool => {
            sqlx::query(sql)
                .bind(&sub.endpoint)
                .bind(&sub.user_id)
                .bind(&sub.p256dh)
                .bind(&sub.auth)
                .bind(now)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Removes `user_id`'s subscription at `endpoint`; whether there was one.
    pub async fn push_unsubscribe(&self, user_id: &str, endpoint: &str) -> Result<bool> {
        let sql = "DELETE FROM push_subscriptions WHERE endpoint = $1 AND user_id = $2";
        let done = dispatch!(self, pool => {
            sqlx::query(sql).bind(endpoint).bind(user_id).execute(pool).await?.rows_affected()
        });
        Ok(done > 0)
    }

    /// Removes the subscription at `endpoint`, whoever owns it (the push service said it is gone).
    pub async fn push_forget(&self, endpoint: &str) -> Result<bool> {
        let done = dispatch!(self, pool => {
            sqlx::query("DELETE FROM push_subscriptions WHERE endpoint = $1").bind(endpoint).execute(pool).await?
                .rows_affected()
        });
        Ok(done > 0)
    }

    /// Records that the push service accepted a message for `endpoint` at `now`.
    pub async fn push_used(&self, endpoint: &str, now: f64) -> Result<()> {
        dispatch!(self, pool => {
            sqlx::query("UPDATE push_subscriptions SET used_at = $1 WHERE endpoint = $2")
                .bind(now)
                .bind(endpoint)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Removes subscriptions unused since `before`; how many.
    pub async fn push_prune(&self, before: f64) -> Result<u64> {
        Ok(dispatch!(self, pool => {
            sqlx::query("DELETE FROM push_subscriptions WHERE used_at < $1").bind(before).execute(pool).await?
                .rows_affected()
        }))
    }

    /// The subscriptions of unbanned accounts among `users` or holding one of `roles`, and the role
    /// ids of each of those accounts (to judge whether they may see the channel), in two queries
    /// whatever the numbers: a role every account holds must not cost a query per member.
    pub async fn push_audience(
        &self,
        users: &[String],
        roles: &[String],
    ) -> Result<(Vec<PushSubscription>, Vec<(String, String)>)> {
        if users.is_empty() && roles.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let sqlite = matches!(self.backend(), super::Backend::Sqlite(_));
        let rows = script::json_rows(sqlite);
        let wanted: Vec<(&str, &String)> =
            users.iter().map(|u| ("u", u)).chain(roles.iter().map(|r| ("r", r))).collect();
        let wanted = script::json_array(&wanted)?;
        let sql = format!(
            "SELECT {COLUMNS} FROM push_subscriptions s JOIN users u ON u.id = s.user_id WHERE u.banned = FALSE \
             AND (s.user_id IN (SELECT r.value->>1 FROM {rows} WHERE r.value->>0 = 'u') \
             OR s.user_id IN (SELECT ur.user_id FROM user_roles ur WHERE ur.role_id IN \
             (SELECT r.value->>1 FROM {rows} WHERE r.value->>0 = 'r'))) ORDER BY s.user_id, s.endpoint"
        );
        let subs: Vec<PushSubscription> = dispatch!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(&wanted).fetch_all(pool).await?
        });
        let mut owners: Vec<(&String,)> = subs.iter().map(|s| (&s.user_id,)).collect();
        owners.dedup();
        if owners.is_empty() {
            return Ok((subs, Vec::new()));
        }
        let owners = script::json_array(&owners)?;
        let sql = format!("SELECT user_id, role_id FROM user_roles WHERE user_id IN (SELECT r.value->>0 FROM {rows})");
        let held: Vec<(String, String)> = dispatch!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(&owners).fetch_all(pool).await?
        });
        Ok((subs, held))
    }
}
