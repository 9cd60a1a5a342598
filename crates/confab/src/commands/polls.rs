//! Polls (PROTOCOL §5.8, §6.9): `poll_create`, `poll_vote`, `poll_end`, `poll_get`,
//! `poll_results`, the poll state that history reads add to poll embeds, and the task that ends
//! polls when they expire.
//!
//! A poll is shown by a message whose first embed is `{type:"poll", poll:{id,…}}`. Votes and
//! endings are channel events through the writer, so they take a seq, land in the event log and
//! are replayed by `resume`; each broadcast carries the counts its own change produced.

use std::time::Duration;

use confab_proto::{ErrorCode, Frame};
use serde_json::{Map, Value, json};

use super::{
    messages::{Draft, prepare, send_target},
    target::{broadcaster, check_thread_writable, has_target},
};
use crate::{
    error::{Error, Result},
    gateway::Session,
    state::{AppState, ChannelEntry},
    store::{
        now,
        polls::{PollRow, Tally, Vote},
        writer::{Appended, ChannelEvent, Step},
    },
    wire,
};

/// Longest question, in characters.
const QUESTION_MAX: usize = 300;
/// Longest option text and option id, in characters.
const OPTION_TEXT_MAX: usize = 100;
const OPTION_ID_MAX: usize = 50;
/// Longest option emoji, in characters (what the official client allows).
const OPTION_EMOJI_MAX: usize = 10;
/// Longest poll, in hours.
const DURATION_MAX_H: f64 = 720.0;
/// Longest the expiry task sleeps without looking again (a clock step, a missed wake-up).
const EXPIRY_IDLE: Duration = Duration::from_secs(600);

/// `poll_create`: validates, stores the poll, then appends its message through the writer, which
/// broadcasts it to every viewer (the requester included) before the reply.
pub async fn create(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?.clone();
    let state = s.state.clone();
    if !has_target(frame) {
        return Err(Error::bad_request("Channel or thread_id is required"));
    }
    let question = frame.str("question").map(str::trim).unwrap_or("");
    if question.is_empty() {
        return Err(Error::bad_request("Question is required"));
    }
    if question.chars().count() > QUESTION_MAX {
        return Err(Error::new(ErrorCode::TooLong, format!("Question too long (max {QUESTION_MAX} characters)")));
    }
    super::messages::refuse_nul(question)?;
    let options = options(frame.get("options"))?;
    let allow_multiselect = match frame.get("allow_multiselect") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(Error::bad_request("allow_multiselect must be a boolean")),
    };
    let created_at = now();
    let expires_at = expiry(frame, created_at)?;
    let dir = state.directory();
    let target = send_target(s, frame, &dir).await?;
    check_thread_writable(s, &target)?;
    let poll_id = uuid::Uuid::now_v7().to_string();
    let definition = json!({"id": poll_id, "question": question, "options": options,
                            "allow_multiselect": allow_multiselect, "expires_at": expires_at});
    let extra = json!({"poll_id": poll_id, "embeds": [{"type": "poll", "title": question, "poll": definition}]});
    let draft = Draft {
        user_id: Some(me.user.id.clone()),
        author_name: me.user.username.clone(),
        extra: Some(extra),
        ..Draft::default()
    };
    let message = prepare(&state, &target, draft).await?;
    let poll = PollRow {
        id: poll_id.clone(),
        message_id: message.id.clone(),
        channel_id: target.channel.row.id.clone(),
        thread_id: target.key().to_owned(),
        question: question.to_owned(),
        options: options.to_string(),
        allow_multiselect,
        expires_at,
        created_by: me.user.id.clone(),
        created_at,
        ended: false,
        ended_at: None,
    };
    state.store.poll_insert(&poll).await?;
    let message_id = message.id.clone();
    let stored = state.store.writer().append(message, broadcaster(&state, &poll.channel_id)).await;
    if !matches!(stored, Ok(Appended::New { .. })) {
        state.store.poll_delete_orphan(&poll_id).await?;
    }
    match stored? {
        Appended::New { .. } => {}
        _ => return Err(Error::not_found("Channel not found")),
    }
    if expires_at.is_some() {
        state.poll_wake.notify_one();
    }
    s.reply(
        frame,
        "poll_create",
        json!({"poll_id": poll_id, "message_id": message_id, "channel": target.channel.row.name,
               "thread_id": target.thread_json(), "question": question, "options": options,
               "allow_multiselect": allow_multiselect, "expires_at": expires_at}),
    );
    Ok(())
}

/// The options of `poll_create` as stored: strings get ids `"0"`, `"1"`, …; objects keep a given
/// `id` and an `emoji`.
fn options(given: Option<&Value>) -> Result<Value> {
    let list = given.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    if list.len() < 2 {
        return Err(Error::bad_request("At least 2 options are required"));
    }
    if list.len() > 10 {
        return Err(Error::bad_request("Cannot have more than 10 options"));
    }
    let mut out: Vec<Value> = Vec::with_capacity(list.len());
    for (i, option) in list.iter().enumerate() {
        let text = option.as_str().or_else(|| option.get("text").and_then(Value::as_str)).map(str::trim);
        let text =
            text.filter(|t| !t.is_empty()).ok_or_else(|| Error::bad_request(format!("Option {i} must have 'text'")))?;
        if text.chars().count() > OPTION_TEXT_MAX {
            return Err(Error::new(
                ErrorCode::TooLong,
                format!("Option {i} text too long (max {OPTION_TEXT_MAX} characters)"),
            ));
        }
        super::messages::refuse_nul(text)?;
        let id = match option.get("id") {
            None | Some(Value::Null) => i.to_string(),
            Some(Value::String(id)) if (1..=OPTION_ID_MAX).contains(&id.chars().count()) => id.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return Err(Error::bad_request(format!("Option {i} has an invalid id"))),
        };
        if out.iter().any(|o| o["id"] == id.as_str()) {
            return Err(Error::bad_request("Duplicate option id"));
        }
        let mut entry = json!({"id": id, "text": text});
        match option.get("emoji") {
            None | Some(Value::Null) => {}
            Some(Value::String(e)) if e.is_empty() => {}
            Some(Value::String(e)) if e.chars().count() <= OPTION_EMOJI_MAX && !e.contains('\0') => {
                entry["emoji"] = json!(e);
            }
            Some(_) => return Err(Error::bad_request(format!("Option {i} has an invalid emoji"))),
        }
        out.push(entry);
    }
    Ok(Value::Array(out))
}

/// When a new poll expires: `expires_at` (seconds, in the future) or `duration_hours` in
/// (0, 720] from `at`; neither means never.
fn expiry(frame: &Frame, at: f64) -> Result<Option<f64>> {
    if let Some(v) = frame.get("expires_at").filter(|v| !v.is_null()) {
        return match v.as_f64() {
            Some(t) if t > at && t <= at + DURATION_MAX_H * 3600.0 => Ok(Some(t)),
            _ => Err(Error::bad_request("expires_at must be a time in the next 720 hours")),
        };
    }
    match frame.get("duration_hours").filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(h) if h > 0.0 && h <= DURATION_MAX_H => Ok(Some(at + h * 3600.0)),
            _ => Err(Error::bad_request("duration_hours must be a number in (0, 720]")),
        },
    }
}

/// A poll a frame names, with where it is.
struct Found {
    poll: PollRow,
    channel: ChannelEntry,
}

impl Found {
    /// `thread_id` as the wire shows it.
    fn thread_json(&self) -> Value {
        if self.poll.thread_id.is_empty() { Value::Null } else { json!(self.poll.thread_id) }
    }
}

/// The poll a frame names by `poll_id` or `message_id`, if the requester may view its channel.
async fn find(s: &Session, frame: &Frame) -> Result<Found> {
    let (poll_id, message_id) = (frame.str("poll_id"), frame.str("message_id"));
    if poll_id.is_none() && message_id.is_none() {
        return Err(Error::bad_request("poll_id or message_id is required"));
    }
    let poll = s.state.store.poll_find(poll_id, message_id).await?;
    let poll = poll.ok_or_else(|| Error::not_found("Poll not found"))?;
    let dir = s.state.directory();
    let channel = dir.channels.iter().find(|c| c.row.id == poll.channel_id).cloned();
    let channel = channel.ok_or_else(|| Error::not_found("Poll not found"))?;
    if !s.me()?.actor.channel_allows(&channel.perms, "view") {
        return Err(Error::forbidden("You do not have permission to view this poll"));
    }
    Ok(Found { poll, channel })
}

/// `poll_vote {poll_id|message_id, option_id|option_ids}`: the voter's choices become exactly the
/// given options (a re-vote replaces them, in multi-select polls too).
pub async fn vote(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?.clone();
    let state = s.state.clone();
    let found = find(s, frame).await?;
    let chosen = chosen(frame)?;
    let poll = &found.poll;
    let at = now();
    if poll.ended {
        return Err(Error::conflict("Poll has ended"));
    }
    if poll.expires_at.is_some_and(|t| t <= at) {
        return Err(Error::conflict("Poll has expired"));
    }
    let defined = option_list(poll);
    if let Some(bad) = chosen.iter().find(|c| !defined.iter().any(|o| o["id"] == c.as_str())) {
        return Err(Error::bad_request(format!("Invalid option: {bad}")));
    }
    if !poll.allow_multiselect && chosen.len() > 1 {
        return Err(Error::bad_request("Only one option may be chosen in this poll"));
    }
    let tally = Tally::default();
    let step = Step::PollVote {
        poll_id: poll.id.clone(),
        user_id: me.user.id.clone(),
        option_ids: chosen.clone(),
        at,
        tally: tally.clone(),
    };
    let (fields, render_tally) = (
        json!({"poll_id": poll.id, "message_id": poll.message_id, "channel": found.channel.row.name,
               "thread_id": found.thread_json(), "user": me.user.username, "option_ids": chosen}),
        tally.clone(),
    );
    let shown = poll.clone();
    let event = ChannelEvent {
        channel_id: poll.channel_id.clone(),
        message_id: Some(poll.message_id.clone()),
        kind: "poll_vote_update",
        step,
        render: Box::new(move |seq| {
            let results = results(&shown, &votes_of(&render_tally), false, None);
            let mut packet = fields.clone();
            packet["results"] = results;
            packet["seq"] = json!(seq);
            wire::packet("poll_vote_update", packet)
        }),
    };
    match state.store.writer().event(event, broadcaster(&state, &poll.channel_id)).await? {
        Appended::Event { .. } => {}
        _ => return Err(refused(&state, poll).await?),
    }
    let results = results(poll, &votes_of(&tally), false, None);
    s.reply(frame, "poll_vote", json!({"poll_id": poll.id, "option_ids": chosen, "results": results}));
    Ok(())
}

/// The option ids of `poll_vote`: `option_ids` (a non-empty list) or `option_id`, ids given as
/// strings or numbers, without repeats.
fn chosen(frame: &Frame) -> Result<Vec<String>> {
    let id_text = |v: &Value| match v {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(Error::bad_request(format!("Invalid option: {other}"))),
    };
    let given: Vec<String> = match (frame.get("option_ids"), frame.get("option_id")) {
        (Some(Value::Array(ids)), _) if !ids.is_empty() => ids.iter().map(id_text).collect::<Result<_>>()?,
        (None | Some(Value::Null), Some(id)) if !id.is_null() => vec![id_text(id)?],
        _ => return Err(Error::bad_request("option_id or option_ids is required")),
    };
    let mut out: Vec<String> = Vec::with_capacity(given.len());
    for id in given {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// Why a poll change the writer left unchanged was refused: the poll has ended or expired since
/// it was read, or its message is gone.
async fn refused(state: &AppState, poll: &PollRow) -> Result<Error> {
    Ok(match state.store.poll_find(Some(&poll.id), None).await? {
        None => Error::not_found("Poll not found"),
        Some(p) if p.ended => Error::conflict("Poll has ended"),
        Some(_) => Error::conflict("Poll has expired"),
    })
}

/// `poll_end {poll_id|message_id}`: by the poll's creator or a holder of `manage_messages` in its
/// channel.
pub async fn end(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?.clone();
    let found = find(s, frame).await?;
    let poll = &found.poll;
    if poll.created_by != me.user.id && !me.actor.has_in(&found.channel.perms, "manage_messages") {
        return Err(Error::forbidden("Only the poll creator or a moderator can end this poll"));
    }
    if poll.ended {
        return Err(Error::conflict("Poll has already ended"));
    }
    let channel_name = found.channel.row.name.clone();
    match finish(&s.state, poll, &channel_name).await? {
        Some(results) => {
            s.reply(frame, "poll_end", json!({"poll_id": poll.id, "results": results}));
            Ok(())
        }
        None => match s.state.store.poll_find(Some(&poll.id), None).await? {
            None => Err(Error::not_found("Poll not found")),
            Some(_) => Err(Error::conflict("Poll has already ended")),
        },
    }
}

/// Ends `poll` through the writer and broadcasts `poll_end` to every viewer of its channel; the
/// final results, or `None` when it had ended already or its message is gone.
async fn finish(state: &AppState, poll: &PollRow, channel_name: &str) -> Result<Option<Value>> {
    let at = now();
    let tally = Tally::default();
    let ended = PollRow { ended: true, ended_at: Some(at), ..poll.clone() };
    let (shown, render_tally) = (ended.clone(), tally.clone());
    let thread_id = if poll.thread_id.is_empty() { Value::Null } else { json!(poll.thread_id) };
    let fields = json!({"poll_id": poll.id, "message_id": poll.message_id, "channel": channel_name,
                        "thread_id": thread_id});
    let event = ChannelEvent {
        channel_id: poll.channel_id.clone(),
        message_id: Some(poll.message_id.clone()),
        kind: "poll_end",
        step: Step::PollEnd { poll_id: poll.id.clone(), at, tally: tally.clone() },
        render: Box::new(move |seq| {
            let mut packet = fields.clone();
            packet["results"] = results(&shown, &votes_of(&render_tally), false, None);
            packet["seq"] = json!(seq);
            wire::packet("poll_end", packet)
        }),
    };
    Ok(match state.store.writer().event(event, broadcaster(state, &poll.channel_id)).await? {
        Appended::Event { .. } => Some(results(&ended, &votes_of(&tally), false, None)),
        _ => None,
    })
}

/// `poll_get`: the poll (§5.8) with the requester's choices.
pub async fn get(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?.clone();
    let found = find(s, frame).await?;
    let votes = s.state.store.poll_votes(&found.poll.id).await?;
    let mut poll = definition(&found.poll);
    poll.insert("message_id".into(), json!(found.poll.message_id));
    poll.insert("channel".into(), json!(found.channel.row.name));
    poll.insert("thread_id".into(), found.thread_json());
    poll.insert("created_by".into(), json!(found.poll.created_by));
    poll.insert("created_at".into(), json!(found.poll.created_at));
    poll.insert("ended".into(), json!(found.poll.ended));
    poll.insert("ended_at".into(), json!(found.poll.ended_at));
    poll.insert("user_votes".into(), json!(user_votes(&votes, &me.user.id)));
    s.reply(frame, "poll_get", json!({"poll": poll}));
    Ok(())
}

/// `poll_results`: the results with the requester's `voted` marks.
pub async fn results_cmd(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?.clone();
    let found = find(s, frame).await?;
    let votes = s.state.store.poll_votes(&found.poll.id).await?;
    let results = results(&found.poll, &votes, true, Some(&me.user.id));
    s.reply(
        frame,
        "poll_results",
        json!({"poll_id": found.poll.id, "message_id": found.poll.message_id, "results": results}),
    );
    Ok(())
}

/// The stored options as a list of `{id, text, emoji?}`.
fn option_list(poll: &PollRow) -> Vec<Value> {
    match serde_json::from_str(&poll.options) {
        Ok(Value::Array(options)) => options,
        _ => Vec::new(),
    }
}

/// The poll's definition as its embed shows it.
fn definition(poll: &PollRow) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), json!(poll.id));
    m.insert("question".into(), json!(poll.question));
    m.insert("options".into(), Value::Array(option_list(poll)));
    m.insert("allow_multiselect".into(), json!(poll.allow_multiselect));
    m.insert("expires_at".into(), json!(poll.expires_at));
    m
}

/// A copy of the votes a writer change left.
fn votes_of(tally: &Tally) -> Vec<Vote> {
    tally.lock().map(|v| v.clone()).unwrap_or_default()
}

/// The option ids `user_id` chose.
fn user_votes(votes: &[Vote], user_id: &str) -> Vec<String> {
    votes.iter().filter(|v| v.user_id == user_id).map(|v| v.option_id.clone()).collect()
}

/// Poll results (PROTOCOL §5.8): per option its count, and its voters' names once the poll has
/// ended; `total_votes` counts voters. `voted` marks the options of `viewer` when `with_voted`.
fn results(poll: &PollRow, votes: &[Vote], with_voted: bool, viewer: Option<&str>) -> Value {
    let per_option: Vec<Value> = option_list(poll)
        .into_iter()
        .map(|option| {
            let id = option["id"].as_str().unwrap_or_default().to_owned();
            let of_option: Vec<&Vote> = votes.iter().filter(|v| v.option_id == id).collect();
            let voters: Vec<&str> =
                if poll.ended { of_option.iter().map(|v| v.username.as_str()).collect() } else { Vec::new() };
            let mut entry = json!({"id": id, "text": option["text"], "emoji": option.get("emoji"),
                                   "votes": of_option.len(), "voters": voters});
            if with_voted {
                entry["voted"] = json!(of_option.iter().any(|v| Some(v.user_id.as_str()) == viewer));
            }
            entry
        })
        .collect();
    let mut voters: Vec<&str> = votes.iter().map(|v| v.user_id.as_str()).collect();
    voters.sort_unstable();
    voters.dedup();
    json!({"poll_id": poll.id, "question": poll.question, "allow_multiselect": poll.allow_multiselect,
           "ended": poll.ended, "ended_at": poll.ended_at, "total_votes": voters.len(), "results": per_option})
}

/// Adds each poll's current state to the poll embeds of history `messages`, as seen by `viewer`:
/// `results`, `total_votes`, `ended`, `ended_at` and `user_votes`, so a reload shows the real
/// counts.
pub async fn enrich(state: &AppState, viewer: &str, messages: &mut [Value]) -> Result<()> {
    for message in messages.iter_mut() {
        let Some(poll_id) = message.get("poll_id").and_then(Value::as_str).map(str::to_owned) else { continue };
        let Some(poll) = state.store.poll_find(Some(&poll_id), None).await? else { continue };
        let votes = state.store.poll_votes(&poll.id).await?;
        let results = results(&poll, &votes, false, None);
        let Some(embeds) = message.get_mut("embeds").and_then(Value::as_array_mut) else { continue };
        for embed in embeds.iter_mut().filter(|e| e["type"] == "poll") {
            if let Some(shown) = embed.get_mut("poll").and_then(Value::as_object_mut) {
                shown.insert("results".into(), results["results"].clone());
                shown.insert("total_votes".into(), results["total_votes"].clone());
                shown.insert("ended".into(), json!(poll.ended));
                shown.insert("ended_at".into(), json!(poll.ended_at));
                shown.insert("user_votes".into(), json!(user_votes(&votes, viewer)));
            }
        }
    }
    Ok(())
}

/// Ends polls as they expire, with the same broadcast as `poll_end`, until shutdown. Driven by
/// the stored expiry times, so polls that expired while the server was down end at start;
/// `poll_create` wakes it for a poll that expires sooner than any other.
pub async fn expire(state: AppState) {
    loop {
        let wait = match expire_due(&state).await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!("ending expired polls: {e}");
                Duration::from_secs(5)
            }
        };
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            () = state.poll_wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Ends every poll due now; how long until the next one is due.
async fn expire_due(state: &AppState) -> Result<Duration> {
    let at = now();
    for poll in state.store.polls_due(at).await? {
        let channel =
            state.directory().channels.iter().find(|c| c.row.id == poll.channel_id).map(|c| c.row.name.clone());
        let ended = match channel {
            Some(name) => finish(state, &poll, &name).await?.is_some(),
            None => false,
        };
        if !ended && poll.created_at < at - 60.0 {
            // Its message is gone (or was never stored): nothing shows it any more.
            state.store.poll_delete_orphan(&poll.id).await?;
        }
    }
    Ok(match state.store.poll_next_expiry().await? {
        // Still due: a poll whose message is being stored right now; look again shortly.
        Some(next) if next <= at => Duration::from_secs(1),
        Some(next) => Duration::from_secs_f64(next - at).min(EXPIRY_IDLE),
        None => EXPIRY_IDLE,
    })
}
