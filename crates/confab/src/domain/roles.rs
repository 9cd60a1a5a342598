//! Role rules (PROTOCOL §5.3, §5.4): system and protected roles, the `can_manage_role` hierarchy,
//! role permission lists, colours, and how a role name appears inside channel permission lists.
//!
//! Pure functions over names, positions and [`Actor`]s, so every role command and the store apply
//! the same rules and the rules can be tested without a server.

use super::permissions::{Actor, ChannelPermissions};

/// Roles that can never be self-assignable.
const PROTECTED: [&str; 3] = ["owner", "admin", "moderator"];
/// Roles whose names are fixed: clients, configuration and channel defaults refer to them by name.
const FIXED_NAMES: [&str; 4] = ["owner", "admin", "moderator", "user"];
/// Roles that cannot be deleted: the server needs them to exist.
const UNDELETABLE: [&str; 3] = ["owner", "admin", "user"];
/// Roles only an owner may manage, wherever they sit in the order.
const OWNER_ONLY: [&str; 2] = ["owner", "admin"];

fn listed(list: &[&str], name: &str) -> bool {
    list.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// Whether the role may be made self-assignable (`owner`, `admin` and `moderator` never).
pub fn may_self_assign(name: &str) -> bool {
    !listed(&PROTECTED, name)
}

/// Whether the role keeps its name forever.
pub fn is_fixed_name(name: &str) -> bool {
    listed(&FIXED_NAMES, name)
}

/// Whether the role may be deleted.
pub fn is_deletable(name: &str) -> bool {
    !listed(&UNDELETABLE, name)
}

/// `can_manage_role` (PROTOCOL §5.3): whether `actor`, whose highest role is at `actor_top`, may
/// change the role `name` at `position`. Owners manage every role; anyone else only roles strictly
/// below their highest one, and never `owner` or `admin`. The error is the exact wire text.
pub fn can_manage_role(actor: &Actor, actor_top: Option<i64>, name: &str, position: i64) -> Result<(), String> {
    if !actor.has("manage_roles") {
        return Err("Missing 'manage_roles' permission".to_owned());
    }
    if actor.is_owner() {
        return Ok(());
    }
    if actor_top.is_none_or(|top| position <= top) {
        return Err("Cannot manage roles at or above your position".to_owned());
    }
    if listed(&OWNER_ONLY, name) {
        return Err(format!("Cannot manage protected role '{name}'"));
    }
    Ok(())
}

/// Why a role `permissions` value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermissionListError {
    /// Not an array of strings: "Permissions must be an array".
    NotArray,
    /// A name outside the 20 of PROTOCOL §5.4: "Unknown permission: <name>".
    Unknown(String),
}

impl PermissionListError {
    /// The exact wire text.
    pub fn text(&self) -> String {
        match self {
            PermissionListError::NotArray => "Permissions must be an array".to_owned(),
            PermissionListError::Unknown(name) => format!("Unknown permission: {name}"),
        }
    }
}

/// Validates a role's `permissions` array; duplicates are dropped, first occurrence kept.
pub fn parse_permission_list(value: &serde_json::Value) -> Result<Vec<String>, PermissionListError> {
    let serde_json::Value::Array(items) = value else { return Err(PermissionListError::NotArray) };
    let mut list: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let Some(name) = item.as_str() else { return Err(PermissionListError::NotArray) };
        if !confab_proto::PERMISSIONS.contains(&name) {
            return Err(PermissionListError::Unknown(name.to_owned()));
        }
        if !list.iter().any(|p| p == name) {
            list.push(name.to_owned());
        }
    }
    Ok(list)
}

/// Whether `actor` may give a role the permissions `new` when it had `old`: a permission the role
/// gains must be one the actor holds, so nobody can mint a role stronger than themselves
/// ("Cannot grant permissions you do not have"). Administrators hold every permission.
pub fn may_grant(actor: &Actor, old: &[String], new: &[String]) -> bool {
    new.iter().filter(|p| !old.contains(p)).all(|p| actor.has(p))
}

/// A role colour: `#RRGGBB` with hexadecimal digits in either case.
pub fn color_ok(color: &str) -> bool {
    color.strip_prefix('#').is_some_and(|hex| hex.len() == 6 && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Whether a channel permission key holds role names: every key but `deny`, which names server
/// permissions (a role may well be called `manage_messages`).
fn holds_roles(key: &str) -> bool {
    key != "deny"
}

/// Whether any role list of a channel names `role`, allowed or denied (`"!role"`).
pub fn channel_uses_role(perms: &ChannelPermissions, role: &str) -> bool {
    perms
        .iter()
        .filter(|(key, _)| holds_roles(key))
        .flat_map(|(_, list)| list)
        .any(|entry| entry.strip_prefix('!').unwrap_or(entry).eq_ignore_ascii_case(role))
}

/// Renames `old` to `new` in every role list of a channel, keeping `!` denials; returns whether
/// anything changed.
pub fn rename_in_channel(perms: &mut ChannelPermissions, old: &str, new: &str) -> bool {
    let mut changed = false;
    for (_, list) in perms.iter_mut().filter(|(key, _)| holds_roles(key)) {
        for entry in list.iter_mut() {
            let (bang, name) = match entry.strip_prefix('!') {
                Some(name) => ("!", name),
                None => ("", entry.as_str()),
            };
            if name.eq_ignore_ascii_case(old) {
                *entry = format!("{bang}{new}");
                changed = true;
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn actor(roles: &[&str], perms: &[&str]) -> Actor {
        Actor {
            roles: roles.iter().map(|s| s.to_string()).collect(),
            permissions: perms.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn hierarchy() {
        let owner = actor(&["owner"], &["administrator"]);
        assert_eq!(can_manage_role(&owner, Some(0), "owner", 0), Ok(()));
        assert_eq!(can_manage_role(&owner, Some(0), "admin", 1), Ok(()));

        let admin = actor(&["admin"], &["administrator"]);
        let above = Err("Cannot manage roles at or above your position".to_owned());
        assert_eq!(can_manage_role(&admin, Some(1), "owner", 0), above);
        assert_eq!(can_manage_role(&admin, Some(1), "admin", 1), above);
        assert_eq!(can_manage_role(&admin, Some(1), "moderator", 2), Ok(()));
        // `admin` moved below the actor is still out of reach.
        let manager = actor(&["manager"], &["manage_roles"]);
        assert_eq!(can_manage_role(&manager, Some(1), "Admin", 2), Err("Cannot manage protected role 'Admin'".into()));
        assert_eq!(can_manage_role(&manager, Some(1), "vip", 3), Ok(()));
        assert_eq!(can_manage_role(&manager, None, "vip", 3), above);

        let user = actor(&["user"], &["send_messages"]);
        assert_eq!(can_manage_role(&user, Some(3), "vip", 4), Err("Missing 'manage_roles' permission".into()));
    }

    #[test]
    fn system_roles() {
        assert!(!may_self_assign("Moderator"));
        assert!(may_self_assign("user"));
        assert!(is_fixed_name("user") && is_fixed_name("moderator") && !is_fixed_name("vip"));
        assert!(!is_deletable("owner") && !is_deletable("USER") && is_deletable("moderator"));
    }

    #[test]
    fn permission_lists() {
        let ok = parse_permission_list(&json!(["send_messages", "connect", "send_messages"]));
        assert_eq!(ok, Ok(vec!["send_messages".to_owned(), "connect".to_owned()]));
        assert_eq!(parse_permission_list(&json!("connect")), Err(PermissionListError::NotArray));
        assert_eq!(parse_permission_list(&json!([1])), Err(PermissionListError::NotArray));
        let unknown = parse_permission_list(&json!(["fly"])).unwrap_err();
        assert_eq!(unknown.text(), "Unknown permission: fly");

        let manager = actor(&["manager"], &["manage_roles", "connect"]);
        let had = vec!["manage_server".to_owned()];
        assert!(may_grant(&manager, &had, &["connect".to_owned(), "manage_server".to_owned()]));
        assert!(!may_grant(&manager, &[], &["manage_server".to_owned()]));
        assert!(may_grant(&actor(&["x"], &["administrator"]), &[], &["manage_server".to_owned()]));
    }

    #[test]
    fn colours() {
        assert!(color_ok("#00ffAA"));
        for bad in ["", "red", "#12345", "#1234567", "#12345G", "123456#"] {
            assert!(!color_ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn channel_lists() {
        let mut perms: ChannelPermissions = [
            ("view".to_owned(), vec!["VIP".to_owned(), "user".to_owned()]),
            ("send".to_owned(), vec!["!vip".to_owned()]),
            ("deny".to_owned(), vec!["vip".to_owned()]),
        ]
        .into_iter()
        .collect();
        assert!(channel_uses_role(&perms, "vip"));
        assert!(!channel_uses_role(&perms, "gold"));
        assert!(rename_in_channel(&mut perms, "vip", "gold"));
        assert_eq!(perms["view"], vec!["gold".to_owned(), "user".to_owned()]);
        assert_eq!(perms["send"], vec!["!gold".to_owned()]);
        // `deny` names server permissions, never roles.
        assert_eq!(perms["deny"], vec!["vip".to_owned()]);
        assert!(!channel_uses_role(&perms, "vip"));
        assert!(!rename_in_channel(&mut perms, "vip", "x"));
    }
}
