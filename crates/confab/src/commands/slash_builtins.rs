//! The built-in slash commands (PROTOCOL §6.8): `/help`, `/nick` and the moderation commands
//! `/ban`, `/unban`, `/mute`, `/unmute`.
//!
//! The moderation commands run the very code of `user_ban`, `user_unban` and `user_timeout`
//! (`commands::moderation`), so a slash command can do nothing the plain command could not. Each
//! returns the text of the message the server posts; errors are returned as `error` frames.

use serde_json::{Map, Value};

use super::{moderation, users};
use crate::{
    domain::slash::{OptionType, SlashCommand, SlashOption, check_roles},
    error::{Error, Result},
    state::{AppState, Identity},
    store::users::User,
};

/// What a moderation message says when the moderator gave no reason.
const NO_REASON: &str = "No reason provided";

fn option(name: &str, description: &str, kind: OptionType, required: bool) -> SlashOption {
    SlashOption { name: name.into(), description: description.into(), kind, choices: None, required }
}

fn command(name: &str, description: &str, options: Vec<SlashOption>, permission: Option<&'static str>) -> SlashCommand {
    SlashCommand {
        name: name.into(),
        description: description.into(),
        options,
        whitelist_roles: None,
        blacklist_roles: None,
        ephemeral: false,
        permission,
    }
}

/// Every built-in command, in `slash_list` order.
pub fn all() -> Vec<SlashCommand> {
    use OptionType::{Int, Str};
    let user = |what: &str| option("username", &format!("The user to {what}"), Str, true);
    let reason = |what: &str| option("reason", &format!("Reason for the {what}"), Str, false);
    let moderation = Some("manage_users");
    vec![
        command("help", "List all available slash commands", Vec::new(), None),
        command(
            "nick",
            "Set or clear your display nickname",
            vec![option("nickname", "Your new nickname (leave empty to clear)", Str, false)],
            None,
        ),
        command("ban", "Ban a user from the server", vec![user("ban"), reason("ban")], moderation),
        command("unban", "Unban a user from the server", vec![user("unban")], moderation),
        command(
            "mute",
            "Timeout a user (prevent them from sending messages)",
            vec![user("mute"), option("duration", "Duration in seconds", Int, true), reason("mute")],
            moderation,
        ),
        command("unmute", "Remove timeout from a user", vec![user("unmute")], moderation),
    ]
}

/// The built-in command called `name`.
pub fn find(name: &str) -> Option<SlashCommand> {
    all().into_iter().find(|c| c.name == name)
}

/// A string argument, absent when missing or not a string.
fn arg<'a>(args: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    args.get(key).and_then(Value::as_str)
}

/// The account named by the `username` argument: `"User '<name>' not found"` otherwise.
async fn target(state: &AppState, args: &Map<String, Value>) -> Result<User> {
    let name = arg(args, "username").unwrap_or_default();
    users::find_user(state, name).await?.ok_or_else(|| Error::not_found(format!("User '{name}' not found")))
}

/// The moderation message of originChats: `"<emoji> **<user>** has been <action>."`, with the
/// reason on a second line when there is one.
fn moderation_text(emoji: &str, username: &str, action: &str, reason: Option<&str>) -> String {
    match reason {
        Some(reason) => format!("{emoji} **{username}** has been {action}.\n**Reason:** {reason}"),
        None => format!("{emoji} **{username}** has been {action}."),
    }
}

/// Runs built-in `name` for `me` with `args` already checked against its options (and its
/// permission, when it has one); returns the text to post.
pub async fn run(state: &AppState, me: &Identity, name: &str, args: &Map<String, Value>) -> Result<String> {
    let reason = || Some(arg(args, "reason").filter(|r| !r.trim().is_empty()).unwrap_or(NO_REASON));
    match name {
        "help" => help(state, me).await,
        "nick" => nick(state, me, arg(args, "nickname")).await,
        "ban" => {
            let target = target(state, args).await?;
            if !moderation::ban(state, me, &target).await? {
                return Err(Error::conflict(format!("User '{}' is already banned", target.username)));
            }
            Ok(moderation_text("🚫", &target.username, "banned", reason()))
        }
        "unban" => {
            let target = target(state, args).await?;
            if !moderation::unban(state, me, &target).await? {
                return Err(Error::conflict(format!("User '{}' is not banned", target.username)));
            }
            Ok(moderation_text("✅", &target.username, "unbanned", None))
        }
        "mute" => {
            let seconds = args.get("duration").and_then(Value::as_i64).unwrap_or(0);
            let seconds = u64::try_from(seconds)
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| Error::bad_request("Duration must be a positive number"))?;
            moderation::check_timeout_max(seconds)?;
            let target = target(state, args).await?;
            moderation::timeout(state, me, &target, seconds).await?;
            Ok(moderation_text("🔇", &target.username, &format!("muted for {seconds} seconds"), reason()))
        }
        "unmute" => {
            let target = target(state, args).await?;
            moderation::clear_timeout(state, me, &target).await?;
            Ok(moderation_text("🔊", &target.username, "unmuted", None))
        }
        _ => Err(Error::not_found(format!("Unknown slash command: /{name}"))),
    }
}

/// `/help`: the commands `me` may use (built-in and registered), sorted by name.
async fn help(state: &AppState, me: &Identity) -> Result<String> {
    let registered = super::slash::registered(state).await?;
    let roles = me.role_names();
    let mut usable: Vec<(String, String)> = all()
        .into_iter()
        .chain(registered.into_iter().map(|(c, _)| c))
        .filter(|c| c.permission.is_none_or(|p| me.actor.has(p)) && check_roles(c, &roles).is_ok())
        .map(|c| (c.name, c.description))
        .collect();
    usable.sort();
    let mut lines = vec!["**Available Commands:**".to_owned()];
    lines.extend(usable.iter().map(|(name, description)| format!("• `/{name}` - {description}")));
    Ok(lines.join("\n"))
}

/// `/nick [nickname]`: sets the invoker's nickname, or clears it when none (or only spaces) is
/// given, and announces the change as `user_update` does.
async fn nick(state: &AppState, me: &Identity, nickname: Option<&str>) -> Result<String> {
    let Some(user) = state.store.user_by_id(&me.user.id).await? else {
        return Err(Error::not_found("User not found"));
    };
    let wanted = nickname.map(str::trim).filter(|n| !n.is_empty());
    // Every rule is checked before the change is stored and announced: a refused nickname changes
    // nothing.
    if let Some(n) = wanted {
        moderation::check_nickname(state, &user, n).await?;
    }
    if nickname.is_none_or(str::is_empty) && user.nickname.is_none() {
        return Ok("You don't have a nickname set. Use `/nick <name>` to set one.".to_owned());
    }
    state.store.user_set_nickname(&user.id, wanted).await?;
    users::account_changed(state, &User { nickname: wanted.map(str::to_owned), ..user.clone() });
    moderation::announce_nickname(state, &user.id, &user.username, wanted);
    Ok(match wanted {
        Some(n) => format!("Nickname set to **{n}**"),
        None => "Nickname cleared".to_owned(),
    })
}
