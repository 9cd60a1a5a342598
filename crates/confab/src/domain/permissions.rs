//! Server permissions and channel permission lists (PROTOCOL §5.4, §5.5).
//!
//! Resolved once per session and re-resolved on role or channel changes, never per message.

use std::collections::BTreeMap;

/// The channel permission keys and their defaults when a channel's map omits them.
pub const CHANNEL_KEYS: [(&str, &str); 8] = [
    ("view", "owner"),
    ("send", "owner"),
    ("delete", "owner"),
    ("delete_own", "user"),
    ("edit_own", "user"),
    ("react", "user"),
    ("pin", "owner"),
    ("create_thread", "owner"),
];

/// A channel's permission map: key → role names, `!role` denies.
pub type ChannelPermissions = BTreeMap<String, Vec<String>>;

/// The defaults a channel created without `permissions` gets (PROTOCOL §5.5).
pub fn default_channel_permissions() -> ChannelPermissions {
    CHANNEL_KEYS.iter().map(|(k, role)| ((*k).to_owned(), vec![(*role).to_owned()])).collect()
}

/// Who is acting: role names from highest position to lowest, and their combined server permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    /// Role names, highest position first.
    pub roles: Vec<String>,
    /// Union of the roles' server permissions.
    pub permissions: Vec<String>,
}

impl Actor {
    /// The `owner` role implies every permission and passes every list.
    pub fn is_owner(&self) -> bool {
        self.roles.iter().any(|r| r.eq_ignore_ascii_case("owner"))
    }

    /// Owners and holders of `administrator` bypass permission checks and channel lists.
    pub fn is_admin(&self) -> bool {
        self.is_owner() || self.permissions.iter().any(|p| p == "administrator")
    }

    /// Whether the actor holds server permission `perm`.
    pub fn has(&self, perm: &str) -> bool {
        self.is_admin() || self.permissions.iter().any(|p| p == perm)
    }

    /// Whether the actor holds server permission `perm` inside a channel whose `deny` list may
    /// remove it (owners and administrators are exempt).
    pub fn has_in(&self, perms: &ChannelPermissions, perm: &str) -> bool {
        if self.is_admin() {
            return true;
        }
        let denied = perms.get("deny").is_some_and(|d| d.iter().any(|p| p == perm));
        !denied && self.has(perm)
    }

    /// Whether channel list `key` allows the actor, evaluated in the order of PROTOCOL §5.5.
    pub fn channel_allows(&self, perms: &ChannelPermissions, key: &str) -> bool {
        if self.is_admin() {
            return true;
        }
        let default;
        let list: &[String] = match perms.get(key) {
            Some(list) => list,
            None => {
                let role = CHANNEL_KEYS.iter().find(|(k, _)| *k == key).map_or("owner", |(_, r)| r);
                default = [role.to_owned()];
                &default
            }
        };
        for role in &self.roles {
            for entry in list {
                if let Some(denied) = entry.strip_prefix('!') {
                    if denied.eq_ignore_ascii_case(role) {
                        return false;
                    }
                } else if entry.eq_ignore_ascii_case(role) {
                    return true;
                }
            }
        }
        false
    }
}

/// Why a channel permission object was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermissionsError {
    /// Not an object of known keys mapping to lists of strings: "Invalid permissions object".
    Invalid,
    /// A list names a role that does not exist: "Role '<name>' does not exist".
    UnknownRole(String),
}

/// Validates a channel `permissions` object: known keys only, each a list of role names (with an
/// optional `!`), and `deny` a list of server permissions. Missing keys keep their defaults.
pub fn parse_channel_permissions(
    value: &serde_json::Value,
    role_exists: impl Fn(&str) -> bool,
) -> Result<ChannelPermissions, PermissionsError> {
    let serde_json::Value::Object(map) = value else { return Err(PermissionsError::Invalid) };
    let mut perms = ChannelPermissions::new();
    for (key, list) in map {
        let serde_json::Value::Array(items) = list else { return Err(PermissionsError::Invalid) };
        if key != "deny" && !CHANNEL_KEYS.iter().any(|(k, _)| k == key) {
            return Err(PermissionsError::Invalid);
        }
        let mut names = Vec::with_capacity(items.len());
        for item in items {
            let Some(name) = item.as_str() else { return Err(PermissionsError::Invalid) };
            if key == "deny" {
                if !confab_proto::PERMISSIONS.contains(&name) {
                    return Err(PermissionsError::Invalid);
                }
            } else if !role_exists(name.strip_prefix('!').unwrap_or(name)) {
                return Err(PermissionsError::UnknownRole(name.strip_prefix('!').unwrap_or(name).to_owned()));
            }
            names.push(name.to_owned());
        }
        perms.insert(key.clone(), names);
    }
    Ok(perms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(roles: &[&str], perms: &[&str]) -> Actor {
        Actor {
            roles: roles.iter().map(|s| s.to_string()).collect(),
            permissions: perms.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn perms(pairs: &[(&str, &[&str])]) -> ChannelPermissions {
        pairs.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect()
    }

    #[test]
    fn first_named_role_decides_from_the_top() {
        let p = perms(&[("view", &["!muted", "user"])]);
        assert!(actor(&["user"], &[]).channel_allows(&p, "view"));
        // muted ranks above user, so the denial wins
        assert!(!actor(&["muted", "user"], &[]).channel_allows(&p, "view"));
        // a higher role that is allowed wins over a lower denied one
        let p = perms(&[("view", &["vip", "!user"])]);
        assert!(actor(&["vip", "user"], &[]).channel_allows(&p, "view"));
        assert!(!actor(&["user"], &[]).channel_allows(&p, "view"));
    }

    #[test]
    fn defaults_and_bypass() {
        let empty = ChannelPermissions::new();
        assert!(!actor(&["user"], &[]).channel_allows(&empty, "view"));
        assert!(actor(&["user"], &[]).channel_allows(&empty, "react"));
        assert!(actor(&["owner"], &[]).channel_allows(&perms(&[("view", &["!owner"])]), "view"));
        assert!(actor(&["staff"], &["administrator"]).channel_allows(&empty, "send"));
        assert!(!actor(&["nobody"], &[]).channel_allows(&empty, "react"));
    }

    #[test]
    fn parses_channel_permission_objects() {
        let exists = |r: &str| r == "user" || r == "mods";
        let ok = parse_channel_permissions(
            &serde_json::json!({"view": ["user", "!mods"], "deny": ["add_reactions"]}),
            exists,
        );
        assert_eq!(ok.unwrap()["view"], vec!["user".to_string(), "!mods".to_string()]);
        assert_eq!(parse_channel_permissions(&serde_json::json!([]), exists), Err(PermissionsError::Invalid));
        assert_eq!(parse_channel_permissions(&serde_json::json!({"fly": []}), exists), Err(PermissionsError::Invalid));
        assert_eq!(
            parse_channel_permissions(&serde_json::json!({"view": [1]}), exists),
            Err(PermissionsError::Invalid)
        );
        assert_eq!(
            parse_channel_permissions(&serde_json::json!({"deny": ["nonsense"]}), exists),
            Err(PermissionsError::Invalid)
        );
        assert_eq!(
            parse_channel_permissions(&serde_json::json!({"send": ["ghost"]}), exists),
            Err(PermissionsError::UnknownRole("ghost".into()))
        );
    }

    #[test]
    fn deny_list_removes_server_permissions_in_a_channel() {
        let p = perms(&[("deny", &["add_reactions"])]);
        assert!(!actor(&["user"], &["add_reactions"]).has_in(&p, "add_reactions"));
        assert!(actor(&["user"], &["add_reactions"]).has_in(&ChannelPermissions::new(), "add_reactions"));
        assert!(actor(&["admin"], &["administrator"]).has_in(&p, "add_reactions"));
    }

    #[test]
    fn server_permissions() {
        assert!(actor(&["owner"], &[]).has("manage_roles"));
        assert!(actor(&["x"], &["administrator"]).has("manage_roles"));
        assert!(actor(&["x"], &["manage_roles"]).has("manage_roles"));
        assert!(!actor(&["user"], &["send_messages"]).has("manage_roles"));
    }
}
