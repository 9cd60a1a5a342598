//! Custom emoji (PROTOCOL §5.8, §6.9): `emoji_add`, `emoji_update`, `emoji_delete` (with
//! `manage_server`, broadcast to every connection), `emoji_get_all`, `emoji_get_filename` and
//! `emoji_get_id`. Images come as `data:` URLs and are accepted only when their bytes are a GIF,
//! JPEG or PNG of the declared type; `GET /emojis/<id>` serves them ([`crate::http::emoji`]).

use base64::Engine;
use confab_proto::{ErrorCode, Frame};
use serde_json::{Map, Value, json};

use crate::{
    error::{Error, Result},
    gateway::Session,
    store::{
        audit::Audit,
        emoji::{EmojiImage, EmojiRow, EmojiWrite},
    },
    wire,
};

/// Largest image, in decoded bytes.
pub const IMAGE_MAX: usize = 262_144;
/// Longest name, in characters.
const NAME_MAX: usize = 64;

/// `emoji_add {name, image}`.
pub async fn add(s: &mut Session, frame: &Frame) -> Result<()> {
    let audit = manager_audit(s, "emoji_add")?;
    let scheme = |reason: &str| Error::bad_request(format!("Invalid emoji_add command scheme: {reason}"));
    let name = name(frame, &scheme)?.ok_or_else(|| scheme("name is required"))?;
    let image = image(frame.get("image"), &scheme)?.ok_or_else(|| scheme("Invalid image data URI"))?;
    let audit = Audit { target_name: Some(name.to_owned()), ..audit };
    match s.state.store.emoji_add(name, &image, audit).await {
        Ok(EmojiWrite::Done(row)) => {
            broadcast(s, frame, "emoji_add", &row, "added");
            Ok(())
        }
        Ok(EmojiWrite::NameTaken) => Err(Error::conflict("Emoji name already exists")),
        Ok(EmojiWrite::NotFound) | Err(_) => Err(Error::new(ErrorCode::Internal, "Error adding emoji")),
    }
}

/// `emoji_update {emoji_id, name?, image?}`.
pub async fn update(s: &mut Session, frame: &Frame) -> Result<()> {
    let audit = manager_audit(s, "emoji_update")?;
    let scheme = |reason: &str| Error::bad_request(format!("Invalid emoji_update command scheme: {reason}"));
    let id = emoji_id(frame, &scheme)?;
    let name = name(frame, &scheme)?;
    let image = image(frame.get("image"), &scheme)?;
    if name.is_none() && image.is_none() {
        return Err(Error::bad_request("At least one field to update is required (name or image)"));
    }
    let mut details = Map::new();
    if let Some(name) = name {
        details.insert("name".into(), json!(name));
    }
    details.insert("image".into(), json!(image.is_some()));
    let audit = Audit { target_id: Some(id.to_string()), details: Value::Object(details), ..audit };
    match s.state.store.emoji_update(id, name, image.as_ref(), &audit).await? {
        EmojiWrite::Done(row) => {
            broadcast(s, frame, "emoji_update", &row, "updated");
            Ok(())
        }
        EmojiWrite::NameTaken => Err(Error::conflict("Emoji name already exists")),
        EmojiWrite::NotFound => Err(Error::not_found("Emoji not found")),
    }
}

/// `emoji_delete {emoji_id}`.
pub async fn delete(s: &mut Session, frame: &Frame) -> Result<()> {
    let audit = manager_audit(s, "emoji_delete")?;
    let scheme = |reason: &str| Error::bad_request(format!("Invalid emoji_delete command scheme: {reason}"));
    let id = emoji_id(frame, &scheme)?;
    let audit = Audit { target_id: Some(id.to_string()), ..audit };
    if !s.state.store.emoji_delete(id, &audit).await? {
        return Err(Error::not_found("Emoji not found"));
    }
    let packet = wire::packet("emoji_delete", json!({"id": id, "deleted": true, "global": true}));
    s.state.to_all(packet.clone(), Some(s.conn_id), false);
    s.send(wire::with_listener(&packet, frame.listener()));
    Ok(())
}

/// `emoji_get_all`: id → `{name, fileName}`.
pub async fn get_all(s: &mut Session, frame: &Frame) -> Result<()> {
    let emojis: Map<String, Value> = s
        .state
        .store
        .emojis()
        .await?
        .into_iter()
        .map(|e| (e.id.to_string(), json!({"name": e.name, "fileName": e.file_name()})))
        .collect();
    s.reply(frame, "emoji_get_all", json!({"emojis": emojis}));
    Ok(())
}

/// `emoji_get_filename {name}` and `emoji_get_id {name}`.
pub async fn get_by_name(s: &mut Session, frame: &Frame, want_id: bool) -> Result<()> {
    let cmd = if want_id { "emoji_get_id" } else { "emoji_get_filename" };
    let Some(name) = frame.str("name").filter(|n| !n.is_empty()) else {
        return Err(Error::bad_request(format!("Invalid {cmd} command scheme: name is required")));
    };
    let row = s.state.store.emoji_by_name(name).await?.ok_or_else(|| Error::not_found("Emoji not found"))?;
    let found = if want_id { ("id", json!(row.id)) } else { ("filepath", json!(row.file_name())) };
    s.reply(frame, cmd, json!({"name": row.name, found.0: found.1}));
    Ok(())
}

/// The audit entry of an emoji write by the requester, who needs `manage_server`.
fn manager_audit(s: &Session, action: &'static str) -> Result<Audit> {
    let me = s.me()?;
    if !me.actor.has("manage_server") {
        return Err(Error::missing_permission("manage_server"));
    }
    Ok(Audit {
        action,
        actor_id: Some(me.user.id.clone()),
        actor_name: me.user.username.clone(),
        target_id: None,
        target_name: None,
        details: json!({}),
    })
}

/// Sends `{cmd, id, name, fileName, <flag>: true, global: true}` to every connection.
fn broadcast(s: &Session, frame: &Frame, cmd: &str, row: &EmojiRow, flag: &str) {
    let packet = wire::packet(
        cmd,
        json!({"id": row.id, "name": row.name, "fileName": row.file_name(), flag: true, "global": true}),
    );
    s.state.to_all(packet.clone(), Some(s.conn_id), false);
    s.send(wire::with_listener(&packet, frame.listener()));
}

/// `emoji_id` as an integer or a decimal string.
fn emoji_id(frame: &Frame, scheme: &dyn Fn(&str) -> Error) -> Result<i64> {
    let id = match frame.get("emoji_id") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        _ => None,
    };
    id.ok_or_else(|| scheme("emoji_id must be an integer"))
}

/// The trimmed `name`, when given: 1–64 characters from `[A-Za-z0-9_]`.
fn name<'f>(frame: &'f Frame, scheme: &dyn Fn(&str) -> Error) -> Result<Option<&'f str>> {
    match frame.get("name") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(n)) if n.trim().is_empty() => Err(scheme("name is required")),
        Some(Value::String(n)) => {
            let n = n.trim();
            let valid = n.chars().count() <= NAME_MAX && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if valid { Ok(Some(n)) } else { Err(scheme("invalid emoji name")) }
        }
        Some(_) => Err(scheme("invalid emoji name")),
    }
}

/// The `image` data URL, when given, decoded and checked: at most [`IMAGE_MAX`] bytes, and bytes
/// that really are the declared GIF, JPEG or PNG.
fn image(given: Option<&Value>, scheme: &dyn Fn(&str) -> Error) -> Result<Option<EmojiImage>> {
    let url = match given {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(url)) => url,
        Some(_) => return Err(scheme("Invalid image data URI")),
    };
    let (mime, data) = url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
        .ok_or_else(|| scheme("Invalid image data URI"))?;
    let declared = match mime.to_ascii_lowercase().as_str() {
        "image/png" => "png",
        "image/gif" => "gif",
        "image/jpeg" | "image/jpg" => "jpg",
        _ => return Err(scheme("image type not allowed")),
    };
    // Base64 is 4 characters per 3 bytes: refuse before decoding what cannot fit.
    let too_large = || Error::new(ErrorCode::TooLarge, format!("Emoji image too large (max {IMAGE_MAX} bytes)"));
    if data.len() > IMAGE_MAX.div_ceil(3) * 4 {
        return Err(too_large());
    }
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(data).map_err(|_| scheme("Invalid base64 image data"))?;
    if bytes.len() > IMAGE_MAX {
        return Err(too_large());
    }
    if sniff(&bytes) != Some(declared) {
        return Err(scheme("image type not allowed"));
    }
    Ok(Some(EmojiImage { ext: declared.to_owned(), base64: data.to_owned() }))
}

/// The image type the magic bytes show: `png`, `gif` or `jpg`.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("png")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("gif")
    } else if bytes.starts_with(b"\xFF\xD8\xFF") {
        Some("jpg")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_only_the_three_types() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), Some("png"));
        assert_eq!(sniff(b"GIF89a..."), Some("gif"));
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0"), Some("jpg"));
        assert_eq!(sniff(b"<svg xmlns="), None);
        assert_eq!(sniff(b"<html>"), None);
        assert_eq!(sniff(b""), None);
    }
}
