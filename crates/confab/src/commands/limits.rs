//! `rate_limit_status` and `rate_limit_reset` (PROTOCOL §4.5, §6.9).

use confab_proto::{ErrorCode, Frame};
use serde_json::json;

use super::{timeout, users::target_user};
use crate::{
    error::{Error, Result},
    gateway::Session,
};

fn ensure_enabled(s: &Session) -> Result<()> {
    if s.state.limiter.enabled() {
        Ok(())
    } else {
        Err(Error::new(ErrorCode::Disabled, "Rate limiter not available or disabled"))
    }
}

/// `rate_limit_status {user?}`: one's own, or anyone's with `manage_server`.
pub async fn status(s: &mut Session, frame: &Frame) -> Result<()> {
    ensure_enabled(s)?;
    let me = s.me()?;
    let user = if frame.get("user").is_some() { target_user(&s.state, frame).await? } else { me.user.clone() };
    if user.id != me.user.id && !me.actor.has("manage_server") {
        return Err(Error::forbidden("Access denied: can only check your own rate limit status"));
    }
    let mut status = s.state.limiter.status(&user.id);
    let left = timeout::remaining(user.timeout_until, crate::store::now()).unwrap_or(0.0);
    status["timeout_remaining"] = json!((left * 10.0).ceil() / 10.0);
    s.reply(frame, "rate_limit_status", json!({"user": user.username, "status": status}));
    Ok(())
}

/// `rate_limit_reset {user}` (`manage_server`): clears buckets and cooldowns, not a timeout.
pub async fn reset(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?;
    if !me.actor.has("manage_server") {
        return Err(Error::missing_permission("manage_server"));
    }
    let user = target_user(&s.state, frame).await?;
    ensure_enabled(s)?;
    s.state.limiter.reset(&user.id);
    let val = format!("Rate limit reset for user {}", user.username);
    s.reply(frame, "rate_limit_reset", json!({"user": user.username, "val": val}));
    Ok(())
}
