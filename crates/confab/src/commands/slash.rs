//! Slash commands (PROTOCOL §6.8): `slash_register`, `slash_list`, `slash_call`, `slash_response`,
//! and the `slash_add` / `slash_remove` broadcasts.
//!
//! Registrations live in [`crate::hub::slash`], per connection. A call to a built-in command runs
//! here and posts its answer as the system user; a call to a registered command is routed to the
//! connection that registered it, which answers with `slash_response`. Answers are stored and
//! published exactly like `message_new` (through [`super::messages::post`]), except the answers
//! of `ephemeral` commands, which only the invoker's connections see and which are never stored.
//! In cluster mode the commands of every node are known through [`crate::cluster::slash`], and a
//! call to another node's command goes there as [`Effect::SlashCall`].

use confab_proto::{ErrorCode, Frame};
use serde_json::{Map, Value, json};

use super::{
    messages::{self, Draft, channel_send_target},
    moderation::require,
    slash_builtins as builtins,
    target::Target,
};
use crate::{
    cluster::{self, control::Effect},
    domain::{
        embeds,
        slash::{SlashCommand, check_args, check_roles, parse_commands},
    },
    error::{Error, Result},
    gateway::Session,
    hub::{
        ConnId, Outbox, Packet, Pushed,
        slash::{CallQuery, Handler, PendingCall, Refused, Unmatched},
    },
    state::AppState,
    store::writer::render_unstored,
    wire,
};

/// S→A: `packet` to every authenticated connection.
fn to_all(state: &AppState, cmd: &str, fields: Value) {
    state.to_all(wire::packet(cmd, fields), None, false);
}

/// `slash_register {commands}`: replaces this connection's commands. The reply comes first, then
/// S→A `slash_remove` for names dropped from the set and `slash_add` for the new set.
pub async fn register(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?;
    let state = s.state.clone();
    let commands = parse_commands(frame.get("commands")).map_err(|e| Error::bad_request(e.text()))?;
    if let Some(reserved) = commands.iter().find(|c| builtins::find(&c.name).is_some()) {
        return Err(Error::conflict(format!("Slash command /{} is reserved", reserved.name)));
    }
    let count = commands.len();
    let added: Vec<Value> = commands.iter().map(|c| c.to_json(&me.user.username)).collect();
    let handler = Handler {
        conn_id: s.conn_id,
        user_id: me.user.id.clone(),
        username: me.user.username.clone(),
        outbox: s.outbox.clone(),
    };
    let refused = |refused| match refused {
        Refused::OtherSession => Error::conflict("You already have slash commands registered from another session"),
        Refused::Taken(name) => Error::conflict(format!("Slash command /{name} is already registered by another user")),
    };
    // In cluster mode the table judges clashes with every node first. Each connection of this node
    // is in it from before its registration reaches the registry until after it left it, so the
    // registry below then refuses nothing the table let through.
    if let Some(cluster) = &state.cluster {
        cluster::slash::claim(&state, cluster.node_id(), &handler, &commands).await?.map_err(refused)?;
    }
    let dropped = state.slash.register(handler, commands).map_err(refused)?;
    s.reply(frame, "slash_register", json!({"val": format!("{count} commands registered successfully")}));
    if !dropped.is_empty() {
        to_all(&state, "slash_remove", json!({"commands": dropped}));
    }
    if !added.is_empty() {
        to_all(&state, "slash_add", json!({"commands": added}));
    }
    Ok(())
}

/// After a connection closed: its commands are gone, S→A `slash_remove` (PROTOCOL §2.11); in
/// cluster mode once its row is gone from the cluster's table too.
pub fn connection_closed(state: &AppState, conn_id: ConnId) {
    let names = state.slash.release(conn_id);
    if names.is_empty() {
        return;
    }
    match &state.cluster {
        Some(cluster) => cluster::slash::release(state, cluster.node_id(), conn_id, names),
        None => to_all(state, "slash_remove", json!({"commands": names})),
    }
}

/// Every registered command with who registered it, sorted by name: this node's, and in cluster
/// mode every other node's.
pub async fn registered(state: &AppState) -> Result<Vec<(SlashCommand, String)>> {
    let mut all = state.slash.all();
    if let Some(cluster) = &state.cluster {
        all.extend(cluster::slash::elsewhere(state, cluster.node_id()).await?);
        all.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    }
    Ok(all)
}

/// `slash_list` → the built-in commands (registered by the system username) and every
/// registered command.
pub async fn list(s: &mut Session, frame: &Frame) -> Result<()> {
    let state = &s.state;
    let system = &state.config.system_username;
    let commands: Vec<Value> = builtins::all()
        .iter()
        .map(|c| c.to_json(system))
        .chain(registered(state).await?.iter().map(|(c, by)| c.to_json(by)))
        .collect();
    s.reply(frame, "slash_list", json!({"commands": commands}));
    Ok(())
}

/// The `channel` of a slash frame: "Channel parameter is required for slash commands".
fn channel_field(frame: &Frame) -> Result<&str> {
    frame
        .str("channel")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Error::bad_request("Channel parameter is required for slash commands"))
}

/// `slash_call {channel, command, args?}` (`use_slash_commands`; `view` and `send` on a text
/// channel). A built-in runs here; a registered command is routed to its connection with a
/// `call_id`, and the invoker gets the same packet as its reply.
pub async fn call(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?;
    require(&me, "use_slash_commands")?;
    let state = s.state.clone();
    let channel = channel_field(frame)?;
    let Some(name) = frame.str("command") else {
        return Err(Error::bad_request("Command name must be a string"));
    };
    let args: Map<String, Value> = match frame.get("args") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(args)) => args.clone(),
        Some(_) => return Err(Error::bad_request("Command args must be an object")),
    };
    let dir = state.directory();
    let target = channel_send_target(&me, &dir, channel)?;

    if let Some(builtin) = builtins::find(name) {
        if let Some(permission) = builtin.permission {
            require(&me, permission)?;
        }
        check_args(&builtin, &args).map_err(Error::bad_request)?;
        let text = builtins::run(&state, &me, name, &args).await?;
        let draft = Draft {
            author_name: state.config.system_username.clone(),
            content: text,
            extra: Some(json!({"interaction": {"command": name, "username": me.user.username}})),
            ..Draft::default()
        };
        return answer(s, frame, &target, draft, builtin.ephemeral, &me.user.id).await;
    }

    let (command, route) = match state.slash.find(name) {
        Some((command, handler)) => (command, Route::Here(handler)),
        None => match &state.cluster {
            Some(cluster) => match cluster::slash::find(&state, cluster.node_id(), name).await? {
                Some(remote) => (remote.command.clone(), Route::Node(remote)),
                None => return Err(unknown(name)),
            },
            None => return Err(unknown(name)),
        },
    };
    check_roles(&command, &me.role_names()).map_err(Error::forbidden)?;
    check_args(&command, &args).map_err(Error::bad_request)?;
    let call_id = uuid::Uuid::now_v7().to_string();
    let commander = match &route {
        Route::Here(handler) => &handler.username,
        Route::Node(remote) => &remote.username,
    };
    let packet = wire::packet(
        "slash_call",
        json!({
            "val": {"command": name, "args": args, "commander": commander},
            "invoker": me.user.id, "invokerUsername": me.user.username,
            "channel": target.channel.row.name, "call_id": call_id,
        }),
    );
    let pending = PendingCall {
        call_id,
        invoker_id: me.user.id.clone(),
        invoker_name: me.user.username.clone(),
        channel_id: target.channel.row.id.clone(),
        command: name.to_owned(),
    };
    match route {
        Route::Here(handler) => {
            state.slash.call_routed(handler.conn_id, pending);
            if handler.conn_id != s.conn_id && !push_call(&state, &handler.outbox, &packet) {
                return Err(handler_gone(name));
            }
        }
        Route::Node(remote) => {
            let from_node = state.cluster.as_ref().map(|c| c.node_id().to_owned()).unwrap_or_default();
            let (node, conn, packet, from) = (remote.node, remote.conn, packet.clone(), s.conn_id);
            state.everywhere(Effect::SlashCall { node, conn, call: pending, packet, from_node, from }, None);
        }
    }
    s.send(wire::with_listener(&packet, frame.listener()));
    Ok(())
}

/// Where a call to a registered command goes.
enum Route {
    /// A connection of this node.
    Here(Handler),
    /// A connection of another node (cluster mode).
    Node(cluster::slash::Remote),
}

fn unknown(name: &str) -> Error {
    Error::not_found(format!("Unknown slash command: /{name}"))
}

fn handler_gone(name: &str) -> Error {
    Error::new(ErrorCode::Unavailable, format!("Command handler for /{name} is not currently connected"))
}

/// Sends a routed call to its handler's connection; `false` when that connection is closing.
fn push_call(state: &AppState, outbox: &Outbox, packet: &str) -> bool {
    let pushed = outbox.push(&Packet::from(packet), false);
    if pushed == Pushed::Closed {
        return false;
    }
    state.hub.account(outbox, pushed);
    true
}

/// Another node's call of a command registered by connection `conn` of this one
/// ([`Effect::SlashCall`]): recorded as pending there and sent. When that connection closed after
/// the caller's node read its registration, the invoker's connection `from` of node `from_node`
/// gets the error a call on one node gets (after its `slash_call` reply, so without a listener).
pub fn routed_here(state: &AppState, conn: ConnId, call: PendingCall, packet: &str, from_node: String, from: ConnId) {
    let name = call.command.clone();
    if state.slash.call_routed(conn, call).is_some_and(|outbox| push_call(state, &outbox, packet)) {
        return;
    }
    let err = handler_gone(&name);
    let packet = wire::packet("error", json!({"src": "slash_call", "val": err.text(), "code": err.code().as_str()}));
    state.everywhere(Effect::ToConn { node: from_node, conn: from, packet }, None);
}

/// `slash_response {channel, command?, response?, embeds?, invoker?, call_id?}` from the connection a
/// call was routed to: its answer, posted in `channel` as that account with `interaction`. It must
/// answer a pending call of that connection in that channel — named by `call_id`, else by
/// `invoker` and `command`, else the only one that fits what is given — and answers it once, so
/// nobody can attribute a command to someone who never called it or push unasked "ephemeral"
/// messages to anyone.
pub async fn respond(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?;
    let state = s.state.clone();
    let channel = channel_field(frame)?;
    let response = match frame.get("response") {
        None | Some(Value::Null) => "",
        Some(Value::String(r)) => r.as_str(),
        Some(_) => return Err(Error::bad_request("Slash response must be a string")),
    };
    let has_embeds = frame.get("embeds").is_some_and(|e| e.as_array().is_none_or(|e| !e.is_empty()));
    if response.trim().is_empty() && !has_embeds {
        return Err(Error::bad_request("Slash response must have content or embeds"));
    }
    let embeds = embeds::validate(frame.get("embeds")).map_err(Error::bad_request)?;
    let given = |key: &str| frame.str(key).filter(|v| !v.is_empty());
    let (name, call_id, invoker) = (given("command"), given("call_id"), given("invoker"));
    // Without a command, the invoker or the call must say which call this answers.
    if name.is_none() && call_id.is_none() && invoker.is_none() {
        return Err(Error::bad_request("Command parameter is required for slash responses"));
    }
    let max = state.config.limits.post_content;
    if response.chars().count() > max {
        return Err(Error::new(ErrorCode::TooLong, format!("Message too long. Maximum length is {max} characters")));
    }
    let dir = state.directory();
    let target = channel_send_target(&me, &dir, channel)?;
    let registered = |name: &str| {
        state
            .slash
            .registered_by(&me.user.id, name)
            .ok_or_else(|| Error::forbidden("You did not register this command"))
    };
    let named = name.map(registered).transpose()?;
    let query = CallQuery { call_id, invoker, channel_id: &target.channel.row.id, command: name };
    let call = state.slash.take_call(s.conn_id, &query).map_err(|unmatched| match unmatched {
        Unmatched::None => Error::forbidden("No pending call matches this slash response"),
        Unmatched::Ambiguous => {
            Error::bad_request("More than one pending call matches this slash response: send its call_id")
        }
    })?;
    let command = match named {
        Some(command) => command,
        None => registered(&call.command)?,
    };
    let invoker = state.store.user_by_id(&call.invoker_id).await?.ok_or_else(|| Error::not_found("User not found"))?;
    let mut extra = json!({"interaction": {"command": call.command, "username": invoker.username}});
    if let Some(embeds) = embeds.filter(|e| !e.is_empty()) {
        extra["embeds"] = json!(embeds);
    }
    let draft = Draft {
        user_id: Some(me.user.id.clone()),
        author_name: me.user.username.clone(),
        content: response.to_owned(),
        extra: Some(extra),
        ..Draft::default()
    };
    answer(s, frame, &target, draft, command.ephemeral, &invoker.id).await
}

/// Posts a slash command's answer: stored and published like `message_new` (S→V(ch)), or, for an
/// `ephemeral` command, sent as an unstored `message_new` without seq only to the invoker's
/// connections. The requesting connection gets it as its reply either way.
async fn answer(
    s: &Session,
    frame: &Frame,
    target: &Target<'_>,
    draft: Draft,
    ephemeral: bool,
    invoker_id: &str,
) -> Result<()> {
    if !ephemeral {
        return messages::post(s, frame, target, draft).await;
    }
    let state = &s.state;
    let packet = render_unstored(&messages::prepare(state, target, draft).await?);
    // On every node: the invoker may be connected to another one than the handler.
    state.everywhere(Effect::ToUser { user: invoker_id.to_owned(), packet: packet.clone() }, Some(s.conn_id));
    s.send(wire::with_listener(&packet, frame.listener()));
    Ok(())
}
