//! Server identity (PROTOCOL §6.9): `server_info` and `server_update`.
//!
//! The name, icon and banner live in the settings table (over the configured defaults), which
//! every handshake reads, so a change is visible to the next connection at once.

use confab_proto::Frame;
use serde_json::{Map, Value, json};

use crate::{
    domain::urls::http_url_ok,
    error::{Error, Result},
    gateway::Session,
    store::audit::Audit,
    wire,
};

/// Longest server name, in characters.
const NAME_MAX: usize = 100;
/// Longest icon or banner URL, in characters.
const URL_MAX: usize = 500;

/// The current `name`, `icon` and `banner`, as `server_info` and `server_update` show them.
async fn identity(s: &Session) -> Result<Value> {
    let info = s.state.server_info().await?;
    Ok(json!({"name": info["name"], "icon": info["icon"], "banner": info["banner"]}))
}

/// `server_info` → `{"name","icon","banner"}`.
pub async fn server_info(s: &mut Session, frame: &Frame) -> Result<()> {
    let reply = identity(s).await?;
    s.reply(frame, "server_info", reply);
    Ok(())
}

/// A field that may be absent (`None`), `null` (`Some(None)`) or a string.
fn nullable_str<'f>(frame: &'f Frame, key: &str, err: &str) -> Result<Option<Option<&'f str>>> {
    match frame.body.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(v)) => Ok(Some(Some(v))),
        Some(_) => Err(Error::bad_request(err)),
    }
}

/// `server_update {name?, icon?, banner?}` (`manage_server`): stores the change with its audit
/// entry, then sends the new identity to every connection (G S→A). A `null` name leaves the name
/// as it is; a `null` (or empty) icon or banner clears it.
pub async fn server_update(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?;
    if !me.actor.has("manage_server") {
        return Err(Error::missing_permission("manage_server"));
    }
    let name = nullable_str(frame, "name", "Name must be a string or null")?;
    let icon = nullable_str(frame, "icon", "Icon must be a string or null")?;
    let banner = nullable_str(frame, "banner", "Banner must be a string or null")?;
    if name.is_none() && icon.is_none() && banner.is_none() {
        return Err(Error::bad_request("No updates provided"));
    }
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    let mut details = Map::new();
    if let Some(Some(name)) = name {
        if name.trim().is_empty() || name.chars().count() > NAME_MAX {
            return Err(Error::bad_request(format!("Name must be 1-{NAME_MAX} characters")));
        }
        pairs.push(("server.name", name));
        details.insert("name".into(), json!(name));
    }
    for (key, field, value) in [("server.icon", "icon", icon), ("server.banner", "banner", banner)] {
        let Some(value) = value else { continue };
        let url = value.unwrap_or("");
        if !url.is_empty() && (url.chars().count() > URL_MAX || !http_url_ok(url)) {
            return Err(Error::bad_request("Invalid URL format"));
        }
        pairs.push((key, url));
        details.insert(field.into(), json!(url));
    }
    if !pairs.is_empty() {
        let audit = Audit {
            action: "server_update",
            actor_id: Some(me.user.id.clone()),
            actor_name: me.user.username.clone(),
            target_id: None,
            target_name: None,
            details: Value::Object(details),
        };
        s.state.store.set_settings_audited(&pairs, &audit).await?;
        s.state.reload_directory().await?;
    }
    let mut fields = identity(s).await?;
    fields["global"] = json!(true);
    let packet = wire::packet("server_update", fields);
    s.state.to_all(packet.clone(), Some(s.conn_id), false);
    s.send(wire::with_listener(&packet, frame.listener()));
    Ok(())
}
