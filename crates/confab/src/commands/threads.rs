//! Threads of forum channels (PROTOCOL §5.7, §6.3): `thread_create`, `thread_get`,
//! `thread_update`, `thread_delete`, `thread_join`, `thread_leave` (`thread_messages` lives with
//! the other history reads). Every thread event takes the parent channel's next seq and reaches
//! only viewers of the parent.

use confab_proto::{ErrorCode, Frame};
use serde_json::{Value, json};

use super::target::{Target, publisher, resolve};
use crate::{
    error::{Error, Result},
    gateway::Session,
    state::AppState,
    store::{
        threads::ThreadRow,
        writer::{Appended, ChannelEvent, OnCommit, Step},
    },
    wire,
};

/// Longest thread name, in characters after trimming.
const NAME_MAX: usize = 100;

/// The thread object of PROTOCOL §5.7, as it is now.
pub async fn render(state: &AppState, t: &ThreadRow) -> Result<Value> {
    let participants: Vec<String> = state.store.thread_participants(&t.id).await?.into_iter().map(|p| p.1).collect();
    let latest = state.store.message_latest(&t.channel_id, &t.id).await?;
    let parent = state.directory().channels.iter().find(|c| c.row.id == t.channel_id).map(|c| c.row.name.clone());
    Ok(json!({
        "id": t.id, "name": t.name, "parent_channel": parent, "created_by": t.creator, "created_at": t.created_at,
        "locked": t.locked, "archived": t.archived, "participants": participants,
        "last_message": latest.as_ref().map(|l| l.2), "last_message_id": latest.as_ref().map(|l| l.0.clone()),
    }))
}

/// The forum's threads, rendered, for `channels_get`.
pub async fn list(state: &AppState, channel_id: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for t in state.store.threads_in(channel_id).await? {
        out.push(render(state, &t).await?);
    }
    Ok(out)
}

fn thread_name(raw: Option<&str>) -> Result<String> {
    let name = raw.unwrap_or("").trim();
    if name.is_empty() {
        return Err(Error::bad_request("Thread name cannot be empty"));
    }
    if name.chars().count() > NAME_MAX {
        return Err(Error::new(ErrorCode::TooLong, "Thread name too long (max 100 characters)"));
    }
    if crate::domain::names::has_hidden(name) {
        return Err(Error::bad_request("Thread name contains invalid characters"));
    }
    Ok(name.to_owned())
}

/// Resolves `thread_id` (required) with the common thread errors.
async fn target<'d>(s: &Session, frame: &Frame, dir: &'d crate::state::Directory) -> Result<Target<'d>> {
    if frame.str("thread_id").is_none() {
        return Err(Error::bad_request("Thread ID is required"));
    }
    resolve(s, frame, dir).await
}

/// Commits a thread event whose packet is `cmd` + `fields` + `channel`, `seq`, `global`.
async fn commit(
    state: &AppState,
    target: &Target<'_>,
    cmd: &'static str,
    step: Step,
    fields: Value,
    on_commit: OnCommit,
) -> Result<Appended> {
    let channel_name = target.channel.row.name.clone();
    let event = ChannelEvent {
        channel_id: target.channel.row.id.clone(),
        message_id: None,
        kind: cmd,
        step,
        render: Box::new(move |seq| {
            let mut packet = fields.clone();
            packet["channel"] = json!(channel_name);
            packet["seq"] = json!(seq);
            packet["global"] = json!(true);
            wire::packet(cmd, packet)
        }),
    };
    state.store.writer().event(event, on_commit).await
}

/// `thread_create {channel, name}` (the channel's `create_thread` list).
pub async fn create(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?;
    let state = s.state.clone();
    let (Some(channel), Some(name)) = (frame.str("channel"), frame.get("name")) else {
        return Err(Error::bad_request("Channel and thread name are required"));
    };
    let dir = state.directory();
    let entry = dir.channel(channel).ok_or_else(|| Error::not_found("Channel not found"))?;
    if entry.row.kind != "forum" {
        return Err(Error::bad_request("Threads can only be created in forum channels"));
    }
    if !me.actor.channel_allows(&entry.perms, "view") || !me.actor.channel_allows(&entry.perms, "create_thread") {
        return Err(Error::forbidden("You do not have permission to create threads in this channel"));
    }
    let name = thread_name(name.as_str())?;
    let now = crate::store::now();
    let row = ThreadRow {
        id: uuid::Uuid::now_v7().to_string(),
        channel_id: entry.row.id.clone(),
        name: name.clone(),
        created_by: me.user.id.clone(),
        creator: me.user.username.clone(),
        created_at: now,
        locked: false,
        archived: false,
    };
    let mut thread = render(&state, &row).await?;
    thread["participants"] = json!([me.user.username]);
    let step = Step::ThreadCreate {
        thread_id: row.id.clone(),
        name,
        user_id: me.user.id.clone(),
        user_name: me.user.username.clone(),
        at: now,
    };
    let target = Target { channel: entry, thread: None };
    let outcome = commit(
        &state,
        &target,
        "thread_create",
        step,
        json!({"thread": thread}),
        publisher(s, frame.listener(), &entry.row.id),
    )
    .await?;
    ensure_committed(outcome)
}

fn ensure_committed(outcome: Appended) -> Result<()> {
    match outcome {
        Appended::Event { .. } | Appended::Unchanged => Ok(()),
        _ => Err(Error::not_found("Thread not found")),
    }
}

/// `thread_get {thread_id}`.
pub async fn get(s: &mut Session, frame: &Frame) -> Result<()> {
    let dir = s.state.directory();
    let target = target(s, frame, &dir).await?;
    let Some(thread) = &target.thread else { return Err(Error::not_found("Thread not found")) };
    let thread = render(&s.state, thread).await?;
    s.reply(frame, "thread_get", json!({"thread": thread}));
    Ok(())
}

/// Whether the user created the thread or may manage threads in its channel.
fn may_modify(s: &Session, target: &Target<'_>) -> Result<bool> {
    let me = s.me()?;
    let creator = target.thread.as_ref().is_some_and(|t| t.created_by == me.user.id);
    Ok(creator || me.actor.has_in(&target.channel.perms, "manage_threads"))
}

/// `thread_update {thread_id, name?, locked?, archived?}`.
pub async fn update(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?;
    let state = s.state.clone();
    let dir = state.directory();
    let target = target(s, frame, &dir).await?;
    let Some(thread) = target.thread.clone() else { return Err(Error::not_found("Thread not found")) };
    if !may_modify(s, &target)? {
        return Err(Error::forbidden("You do not have permission to modify this thread"));
    }
    let name = match frame.get("name") {
        Some(n) => thread_name(n.as_str())?,
        None => thread.name.clone(),
    };
    let locked = frame.get("locked").and_then(Value::as_bool).unwrap_or(thread.locked);
    if locked != thread.locked && !me.actor.has_in(&target.channel.perms, "manage_threads") {
        return Err(Error::missing_permission("manage_threads"));
    }
    let archived = frame.get("archived").and_then(Value::as_bool).unwrap_or(thread.archived);
    set_state(s, frame, &target, ThreadRow { name, locked, archived, ..thread }).await
}

/// Commits new thread state and broadcasts `thread_update` (also used to un-archive on a new message).
pub async fn set_state(s: &Session, frame: &Frame, target: &Target<'_>, new: ThreadRow) -> Result<()> {
    let state = s.state.clone();
    let thread = render(&state, &new).await?;
    let step = Step::ThreadUpdate {
        thread_id: new.id.clone(),
        name: new.name.clone(),
        locked: new.locked,
        archived: new.archived,
    };
    // Only a `thread_update` request carries its listener; an un-archive by a new message does not.
    let listener = if frame.cmd == "thread_update" { frame.listener() } else { None };
    let on_commit = publisher(s, listener, &target.channel.row.id);
    match commit(&state, target, "thread_update", step, json!({"thread": thread}), on_commit).await? {
        Appended::Unchanged if frame.cmd == "thread_update" => {
            // Nothing changed: the requester still gets the thread as it is.
            s.reply(frame, "thread_update", json!({"thread": thread, "channel": target.channel.row.name}));
            Ok(())
        }
        outcome => ensure_committed(outcome),
    }
}

/// `thread_delete {thread_id}` (creator or `manage_threads`).
pub async fn delete(s: &mut Session, frame: &Frame) -> Result<()> {
    let state = s.state.clone();
    let dir = state.directory();
    let target = target(s, frame, &dir).await?;
    let Some(thread) = target.thread.clone() else { return Err(Error::not_found("Thread not found")) };
    if !may_modify(s, &target)? {
        return Err(Error::forbidden("You do not have permission to modify this thread"));
    }
    let on_commit = publisher(s, frame.listener(), &target.channel.row.id);
    let step = Step::ThreadDelete { thread_id: thread.id.clone() };
    let outcome = commit(&state, &target, "thread_delete", step, json!({"thread_id": thread.id}), on_commit).await?;
    ensure_committed(outcome)
}

/// `thread_join` / `thread_leave {thread_id}`: idempotent; the creator cannot leave.
pub async fn membership(s: &mut Session, frame: &Frame, join: bool) -> Result<()> {
    let me = s.me()?;
    let state = s.state.clone();
    let cmd = if join { "thread_join" } else { "thread_leave" };
    let dir = state.directory();
    let target = target(s, frame, &dir).await?;
    let Some(thread) = target.thread.clone() else { return Err(Error::not_found("Thread not found")) };
    if join && thread.locked && !me.actor.has_in(&target.channel.perms, "manage_threads") {
        return Err(Error::new(ErrorCode::ThreadLocked, "This thread is locked"));
    }
    let mut rendered = render(&state, &thread).await?;
    let mut names: Vec<String> = rendered["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let creator_stays = !join && thread.created_by == me.user.id;
    if join && !names.contains(&me.user.username) {
        names.push(me.user.username.clone());
    } else if !join && !creator_stays {
        names.retain(|n| *n != me.user.username);
    }
    rendered["participants"] = json!(names);
    let fields = json!({"thread": rendered, "thread_id": thread.id, "user": me.user.username});
    let step = if creator_stays {
        None
    } else if join {
        Some(Step::ThreadJoin { thread_id: thread.id.clone(), user_id: me.user.id.clone(), at: crate::store::now() })
    } else {
        Some(Step::ThreadLeave { thread_id: thread.id.clone(), user_id: me.user.id.clone() })
    };
    let outcome = match step {
        Some(step) => {
            commit(&state, &target, cmd, step, fields.clone(), publisher(s, frame.listener(), &target.channel.row.id))
                .await?
        }
        None => Appended::Unchanged,
    };
    if outcome == Appended::Unchanged {
        // Already in that state (or the creator leaving): the requester gets the thread as it is.
        let mut reply = fields;
        reply["channel"] = json!(target.channel.row.name);
        s.reply(frame, cmd, reply);
        return Ok(());
    }
    ensure_committed(outcome)
}
