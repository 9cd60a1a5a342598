//! `push_get_vapid`, `push_subscribe` and `push_unsubscribe` (PROTOCOL §6.9): the server's VAPID
//! key, and storing a browser's subscription once its endpoint and keys have been checked.

use confab_proto::{ErrorCode, Frame};
use p256::PublicKey;
use serde_json::{Value, json};

use crate::{
    error::{Error, Result},
    gateway::Session,
    push::{b64, endpoint, vapid::Vapid},
    store::push::PushSubscription,
};

/// The VAPID key, or the `disabled` error every push command gives when push is off.
fn vapid(s: &Session) -> Result<&Vapid> {
    s.state.push.vapid().ok_or_else(|| Error::new(ErrorCode::Disabled, "VAPID keys not configured on this server"))
}

/// `push_get_vapid` → `{"cmd":"push_vapid","key"}`.
pub async fn get_vapid(s: &mut Session, frame: &Frame) -> Result<()> {
    let key = vapid(s)?.public_key().to_owned();
    s.reply(frame, "push_vapid", json!({"key": key}));
    Ok(())
}

/// `push_subscribe {subscription:{endpoint, keys:{p256dh, auth}}}` → `push_subscribed`. The
/// endpoint must be an https URL whose every address is public; the keys a P-256 point and a
/// 16-byte secret, without which nothing could be encrypted for the browser.
pub async fn subscribe(s: &mut Session, frame: &Frame) -> Result<()> {
    vapid(s)?;
    let allow_local = s.state.config.push.unsafe_allow_local_endpoints;
    let sub = frame.get("subscription").filter(|v| v.is_object());
    let sub = sub.ok_or_else(|| Error::bad_request("Missing subscription object"))?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).filter(|t| !t.is_empty()).map(str::to_owned);
    let keys = sub.get("keys");
    let fields =
        (text(sub.get("endpoint")), text(keys.and_then(|k| k.get("p256dh"))), text(keys.and_then(|k| k.get("auth"))));
    let incomplete = || Error::bad_request("subscription must include endpoint, keys.p256dh and keys.auth");
    let (Some(endpoint), Some(p256dh), Some(auth)) = fields else { return Err(incomplete()) };
    let invalid = || Error::bad_request("Invalid push endpoint");
    let url = endpoint::parse(&endpoint, allow_local).map_err(|_| invalid())?;
    let point_ok = b64::decode(&p256dh).is_some_and(|k| k.len() == 65 && PublicKey::from_sec1_bytes(&k).is_ok());
    let auth_ok = b64::decode(&auth).is_some_and(|a| a.len() == 16);
    if !point_ok || !auth_ok {
        return Err(incomplete());
    }
    if let Err(e) = endpoint::vet(&url, allow_local).await {
        tracing::info!(conn = s.conn_id, "push endpoint refused: {e}");
        return Err(invalid());
    }
    let me = s.me()?;
    let row = PushSubscription { endpoint, user_id: me.user.id.clone(), p256dh, auth };
    if let Err(e) = s.state.store.push_subscribe(&row, crate::store::now()).await {
        tracing::error!(conn = s.conn_id, "saving a push subscription: {e}");
        return Err(Error::new(ErrorCode::Internal, "Failed to save subscription"));
    }
    // Opaque and stable per browser: the same endpoint always gives the same value.
    let fingerprint = crate::auth::tokens::hash_token(&row.endpoint)[..16].to_owned();
    s.reply(frame, "push_subscribed", json!({"success": true, "device_fingerprint": fingerprint}));
    Ok(())
}

/// `push_unsubscribe {endpoint}` → `push_unsubscribed`. Removing a subscription that is already
/// gone (the push service reported it, or it was never this account's) succeeds too: the browser
/// ends up unsubscribed either way.
pub async fn unsubscribe(s: &mut Session, frame: &Frame) -> Result<()> {
    vapid(s)?;
    let endpoint = frame.str("endpoint").filter(|e| !e.is_empty());
    let endpoint = endpoint.ok_or_else(|| Error::bad_request("Missing endpoint"))?.to_owned();
    let user_id = s.me()?.user.id.clone();
    if let Err(e) = s.state.store.push_unsubscribe(&user_id, &endpoint).await {
        tracing::error!(conn = s.conn_id, "removing a push subscription: {e}");
        return Err(Error::new(ErrorCode::Internal, "Failed to remove subscription"));
    }
    s.reply(frame, "push_unsubscribed", json!({"success": true}));
    Ok(())
}
