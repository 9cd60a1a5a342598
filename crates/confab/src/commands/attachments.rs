//! `attachment_get` and `attachment_delete` (PROTOCOL §6.9), and the `attachments` of
//! `message_new` (§6.1): only the sender's own, unused, unexpired uploads for the same channel.

use confab_proto::{ErrorCode, Frame};
use serde_json::{Value, json};

use crate::{
    attachments,
    error::{Error, Result},
    gateway::Session,
    state::{AppState, ChannelEntry, Identity},
    store::attachments::AttachmentRow,
};

/// Most attachments on one message.
const PER_MESSAGE: usize = 10;

fn disabled() -> Error {
    Error::new(ErrorCode::Disabled, "Attachments are disabled")
}

fn live(row: &AttachmentRow) -> bool {
    row.expires_at.is_none_or(|t| t > crate::store::now())
}

/// The id of an `attachment_*` command.
fn id_of(frame: &Frame) -> Result<&str> {
    frame
        .str("attachment_id")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Error::bad_request("Attachment ID is required"))
}

/// `attachment_get {attachment_id}` → `attachment_info`; needs `view` on the upload's channel.
pub async fn get(s: &mut Session, frame: &Frame) -> Result<()> {
    let state = s.state.clone();
    if !state.config.attachments.enabled {
        return Err(disabled());
    }
    let id = id_of(frame)?;
    let me = s.me()?;
    let missing = || Error::not_found("Attachment not found or expired");
    let row = state.store.attachment(id).await?.filter(live).ok_or_else(missing)?;
    let dir = state.directory();
    let channel = dir.channels.iter().find(|c| c.row.id == row.channel_id).ok_or_else(missing)?;
    if !me.actor.channel_allows(&channel.perms, "view") {
        return Err(missing());
    }
    s.reply(frame, "attachment_info", json!({"attachment": attachments::object(&row, &state.config.public_url)}));
    Ok(())
}

/// `attachment_delete {attachment_id}` by the uploader or `manage_messages` → `attachment_deleted`;
/// the file is gone at once. Messages that showed it keep their (now dead) link, as in originChats.
pub async fn delete(s: &mut Session, frame: &Frame) -> Result<()> {
    let state = s.state.clone();
    if !state.config.attachments.enabled {
        return Err(disabled());
    }
    let id = id_of(frame)?;
    let me = s.me()?;
    let row = state.store.attachment(id).await?.ok_or_else(|| Error::not_found("Attachment not found"))?;
    if row.user_id != me.user.id && !me.actor.has("manage_messages") {
        return Err(Error::forbidden("You can only delete your own attachments"));
    }
    if let Err(e) = attachments::sweeper::remove(&state, &row.id).await {
        tracing::error!(conn = s.conn_id, "deleting an attachment: {e}");
        return Err(Error::new(ErrorCode::Internal, "Failed to delete attachment"));
    }
    s.reply(frame, "attachment_deleted", json!({"attachment_id": row.id, "deleted": true}));
    Ok(())
}

/// The attachment objects of a `message_new` in `channel`, checked in PROTOCOL §6.1's order, and
/// their ids (to mark them used once the message is stored). `None` when the frame has none.
///
/// With a `nonce`, uploads already used are let through: the frame may be the retry of the very
/// message that used them, which the writer then answers as a duplicate (PROTOCOL §7.4).
pub async fn for_message(
    state: &AppState,
    me: &Identity,
    channel: &ChannelEntry,
    field: Option<&Value>,
    has_nonce: bool,
) -> Result<Option<(Vec<Value>, Vec<String>)>> {
    let Some(field) = field.filter(|f| !f.is_null()) else { return Ok(None) };
    if !state.config.attachments.enabled {
        return Err(disabled());
    }
    let list = field.as_array().ok_or_else(|| Error::bad_request("Attachments must be an array"))?;
    if list.is_empty() {
        return Ok(None);
    }
    let mut ids: Vec<String> = Vec::new();
    for item in list {
        let object = item.as_object().ok_or_else(|| Error::bad_request("Each attachment must be an object"))?;
        let id = object.get("id").and_then(Value::as_str).filter(|id| !id.is_empty());
        let id = id.ok_or_else(|| Error::bad_request("Attachment ID is required"))?;
        if !ids.iter().any(|known| known == id) {
            ids.push(id.to_owned());
        }
    }
    if ids.len() > PER_MESSAGE {
        return Err(Error::bad_request(format!("Cannot attach more than {PER_MESSAGE} files")));
    }
    if !me.actor.has_in(&channel.perms, "attach_files") {
        return Err(Error::forbidden("You do not have permission to attach files"));
    }
    let mut objects = Vec::with_capacity(ids.len());
    for id in &ids {
        let row = state.store.attachment(id).await?;
        let usable = row.filter(|r| live(r) && (has_nonce || r.message_id.is_none()) && r.channel_id == channel.row.id);
        let row = usable.ok_or_else(|| Error::not_found(format!("Attachment {id} not found or expired")))?;
        if row.user_id != me.user.id {
            return Err(Error::forbidden("You can only attach your own uploads"));
        }
        objects.push(attachments::object(&row, &state.config.public_url));
    }
    Ok(Some((objects, ids)))
}
