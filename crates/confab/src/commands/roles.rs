//! Roles (PROTOCOL §6.5) and an account's roles (§6.4 `user_roles_get`, `user_roles_set`):
//! listing, creating, editing, deleting and reordering roles under the hierarchy of §5.3, and
//! self-assignment.
//!
//! Role names, permissions and positions are part of every connection's identity, so after each
//! role write every live identity is rebuilt and everyone gets the new `roles_list`; writes that can
//! change what someone may view (renames, permission changes, deletes, reorders) also re-resolve
//! channel audiences and push `channels_get`.

use std::sync::Arc;

use confab_proto::Frame;
use serde_json::{Map, Value, json};

use super::{
    channels,
    users::{check_hierarchy, target_user},
};
use crate::{
    cluster::control::Effect,
    domain::{
        names::role_name_ok,
        roles::{
            can_manage_role, color_ok, is_deletable, is_fixed_name, may_grant, may_self_assign, parse_permission_list,
        },
    },
    error::{Error, Result},
    gateway::Session,
    hub::Packet,
    state::{AppState, Directory, Identity},
    store::{audit::Audit, roles::Role},
    wire,
};

/// The fields `role_set`'s `data` (and `role_update`) may change.
const EDITABLE: [&str; 7] = ["name", "description", "color", "hoisted", "permissions", "self_assignable", "category"];

/// A role as `roles_list` shows it (PROTOCOL §5.3).
fn role_json(role: &Role) -> Value {
    json!({
        "id": role.id, "name": role.name, "description": role.description, "color": role.color,
        "hoisted": role.hoisted, "permissions": role.permission_list(), "self_assignable": role.self_assignable,
        "category": role.category, "position": role.position,
    })
}

/// The `roles` object of `roles_list`: name → role.
fn roles_map(dir: &Directory) -> Value {
    Value::Object(dir.roles.iter().map(|r| (r.name.clone(), role_json(r))).collect())
}

fn names(roles: &[Role]) -> Vec<String> {
    roles.iter().map(|r| r.name.clone()).collect()
}

/// After a role write: [`roles_refresh`] on every node.
async fn roles_changed(state: &AppState, visibility: bool) -> Result<()> {
    state.everywhere(Effect::Roles { visibility }, None);
    roles_refresh(state, visibility).await
}

/// Reloads the directory, rebuilds every live identity of this node from the stored assignments
/// (names, colours, permissions and positions may all have changed, and the hub judges visibility
/// by identity), and sends everyone the new `roles_list`. With `visibility`, also re-resolves
/// channel audiences and pushes fresh `channels_get` lists.
pub async fn roles_refresh(state: &AppState, visibility: bool) -> Result<()> {
    state.reload_directory().await?;
    let dir = state.directory();
    let assigned = state.roles_by_user().await?;
    for conn in state.hub.connections() {
        let current = conn.identity();
        let roles = assigned.get(&conn.user_id).cloned().unwrap_or_default();
        let actor = dir.actor(&roles);
        conn.set_identity(Arc::new(Identity { roles, actor, ..(*current).clone() }));
    }
    let packet = wire::packet("roles_list", json!({"roles": roles_map(&dir)}));
    state.hub.to_all(&Packet::from(packet), None, false);
    if visibility {
        channels::directory_refresh(state).await?;
    }
    Ok(())
}

/// The requester, if they hold `manage_roles` (every role write needs it, PROTOCOL §5.4); checked
/// before anything else so a user without it learns nothing about roles from the errors.
fn require_manage_roles(s: &Session) -> Result<Arc<Identity>> {
    let me = s.me()?;
    if !me.actor.has("manage_roles") {
        return Err(Error::missing_permission("manage_roles"));
    }
    Ok(me)
}

/// A non-empty string field, treating `""` like a missing one.
fn given(value: Option<&Value>) -> Option<&Value> {
    value.filter(|v| v.as_str() != Some(""))
}

/// The role named by `id|name` (`id` when present, else `name`; names case-insensitively).
fn target_role<'d>(frame: &Frame, dir: &'d Directory) -> Result<&'d Role> {
    let found = match (given(frame.get("id")), given(frame.get("name"))) {
        (Some(id), _) => dir.roles.iter().find(|r| Some(r.id.as_str()) == id.as_str()),
        (None, Some(name)) => name.as_str().and_then(|n| dir.role(n)),
        (None, None) => return Err(Error::bad_request("Role id or name is required")),
    };
    found.ok_or_else(|| Error::not_found("Role not found"))
}

/// The position of the actor's highest role, read from the current directory.
fn top_position(me: &Identity, dir: &Directory) -> Option<i64> {
    let ids: Vec<String> = me.roles.iter().map(|r| r.id.clone()).collect();
    dir.roles_of(&ids).first().map(|r| r.position)
}

/// `can_manage_role` for the role `name` at `position` (PROTOCOL §5.3).
fn check_manage(me: &Identity, dir: &Directory, name: &str, position: i64) -> Result<()> {
    can_manage_role(&me.actor, top_position(me, dir), name, position).map_err(Error::forbidden)
}

/// An audit entry by `me` about the role or account `target` (id, name), if the action has one.
fn audit(me: &Identity, action: &'static str, target: Option<(&str, &str)>, details: Value) -> Audit {
    Audit {
        action,
        actor_id: Some(me.user.id.clone()),
        actor_name: me.user.username.clone(),
        target_id: target.map(|t| t.0.to_owned()),
        target_name: target.map(|t| t.1.to_owned()),
        details,
    }
}

/// A role field of the wrong JSON type (PROTOCOL names no text for this case).
fn bad_field() -> Error {
    Error::bad_request("Invalid role field")
}

/// "Role '<name>' cannot be made self-assignable" when `fields` asks it of a protected role.
fn check_self_assignable(name: &str, fields: &Map<String, Value>) -> Result<()> {
    if fields.get("self_assignable") == Some(&Value::Bool(true)) && !may_self_assign(name) {
        return Err(Error::forbidden(format!("Role '{name}' cannot be made self-assignable")));
    }
    Ok(())
}

/// Applies the editable `fields` to `role`, checking each against PROTOCOL §5.3 and §5.4; `rename`
/// is the requested new name, if any. `null` leaves a field as it is (PROTOCOL §1.2).
fn apply(
    me: &Identity,
    dir: &Directory,
    role: &mut Role,
    fields: &Map<String, Value>,
    rename: Option<&Value>,
) -> Result<()> {
    if let Some(new) = rename.filter(|v| !v.is_null()) {
        let new = new.as_str().ok_or_else(|| Error::bad_request("Invalid role name"))?;
        if new != role.name {
            if is_fixed_name(&role.name) {
                return Err(Error::forbidden("Cannot rename system roles"));
            }
            if !role_name_ok(new) {
                return Err(Error::bad_request("Invalid role name"));
            }
            if dir.roles.iter().any(|r| r.id != role.id && r.name.eq_ignore_ascii_case(new)) {
                return Err(Error::conflict("Role already exists"));
            }
            role.name = new.to_owned();
        }
    }
    let field = |key: &str| fields.get(key).filter(|v| !v.is_null());
    if let Some(d) = field("description") {
        role.description = d.as_str().ok_or_else(bad_field)?.to_owned();
    }
    if let Some(c) = field("color") {
        let c = c.as_str().filter(|c| color_ok(c)).ok_or_else(|| Error::bad_request("Invalid color"))?;
        role.color = Some(c.to_owned());
    }
    if let Some(h) = field("hoisted") {
        role.hoisted = h.as_bool().ok_or_else(bad_field)?;
    }
    if let Some(p) = field("permissions") {
        let list = parse_permission_list(p).map_err(|e| Error::bad_request(e.text()))?;
        if !may_grant(&me.actor, &role.permission_list(), &list) {
            return Err(Error::forbidden("Cannot grant permissions you do not have"));
        }
        role.permissions = json!(list).to_string();
    }
    if let Some(a) = field("self_assignable") {
        check_self_assignable(&role.name, fields)?;
        role.self_assignable = a.as_bool().ok_or_else(bad_field)?;
    }
    if let Some(c) = field("category") {
        role.category = Some(c.as_str().ok_or_else(bad_field)?.to_owned());
    }
    Ok(())
}

/// The fields that differ between two versions of a role, for the audit entry.
fn changed_fields(before: &Role, after: &Role) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut note = |differs: bool, key| {
        if differs {
            changed.push(key);
        }
    };
    note(before.name != after.name, "name");
    note(before.description != after.description, "description");
    note(before.color != after.color, "color");
    note(before.hoisted != after.hoisted, "hoisted");
    note(before.permission_list() != after.permission_list(), "permissions");
    note(before.self_assignable != after.self_assignable, "self_assignable");
    note(before.category != after.category, "category");
    changed
}

/// Stores an edited role with its audit entry and returns whether the change can alter what
/// someone may view (a rename rewrites channel lists; permissions include `administrator`).
async fn save(state: &AppState, me: &Identity, action: &'static str, before: &Role, after: &Role) -> Result<bool> {
    let changed = changed_fields(before, after);
    let mut details = json!({"fields": changed});
    if before.name != after.name {
        details["old_name"] = json!(before.name);
    }
    state.store.role_save(after, &before.name, &audit(me, action, Some((&after.id, &after.name)), details)).await?;
    Ok(changed.contains(&"name") || changed.contains(&"permissions"))
}

/// `roles_list` → every role by name.
pub async fn list(s: &mut Session, frame: &Frame) -> Result<()> {
    s.reply(frame, "roles_list", json!({"roles": roles_map(&s.state.directory())}));
    Ok(())
}

/// `role_permissions_get {id|name}`.
pub async fn permissions_get(s: &mut Session, frame: &Frame) -> Result<()> {
    let dir = s.state.directory();
    let role = target_role(frame, &dir)?;
    s.reply(
        frame,
        "role_permissions_get",
        json!({"id": role.id, "name": role.name, "permissions": role.permission_list()}),
    );
    Ok(())
}

/// `role_create {name, description?, color?, permissions?, hoisted?, self_assignable?, category?}`:
/// the new role goes last.
pub async fn create(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = require_manage_roles(s)?;
    let state = s.state.clone();
    let Some(name) = given(frame.get("name")) else { return Err(Error::bad_request("Role name is required")) };
    let name = name.as_str().filter(|n| role_name_ok(n)).ok_or_else(|| Error::bad_request("Invalid role name"))?;
    check_self_assignable(name, &frame.body)?;
    let dir = state.directory();
    if dir.role(name).is_some() {
        return Err(Error::conflict("Role already exists"));
    }
    let mut role = Role {
        id: uuid::Uuid::now_v7().to_string(),
        name: name.to_owned(),
        description: String::new(),
        color: None,
        hoisted: false,
        permissions: "[]".to_owned(),
        self_assignable: false,
        category: None,
        position: 0,
    };
    apply(&me, &dir, &mut role, &frame.body, None)?;
    let details = json!({"permissions": role.permission_list()});
    state
        .store
        .role_create_last(&role, Some(&audit(&me, "role_create", Some((&role.id, &role.name)), details)))
        .await?;
    s.reply(frame, "role_create", json!({"id": role.id, "name": role.name}));
    roles_changed(&state, false).await
}

/// `role_update {id|name, …fields}`: with `id`, `name` is the new name.
pub async fn update(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = require_manage_roles(s)?;
    let state = s.state.clone();
    let dir = state.directory();
    let before = target_role(frame, &dir)?;
    check_manage(&me, &dir, &before.name, before.position)?;
    let rename = if given(frame.get("id")).is_some() { frame.get("name") } else { None };
    let mut after = before.clone();
    apply(&me, &dir, &mut after, &frame.body, rename)?;
    let visibility = save(&state, &me, "role_update", before, &after).await?;
    s.reply(frame, "role_update", json!({"id": after.id, "name": after.name, "updated": true}));
    roles_changed(&state, visibility).await
}

/// `role_set {id|name, data:{…fields}}`: like `role_update` with the fields in `data`.
pub async fn set(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = require_manage_roles(s)?;
    let state = s.state.clone();
    let dir = state.directory();
    let before = target_role(frame, &dir)?;
    check_manage(&me, &dir, &before.name, before.position)?;
    let Some(Value::Object(data)) = frame.get("data") else { return Err(Error::bad_request("Role data is required")) };
    if let Some(key) = data.keys().find(|k| !EDITABLE.contains(&k.as_str())) {
        return Err(Error::bad_request(format!("Cannot update field: {key}")));
    }
    let mut after = before.clone();
    apply(&me, &dir, &mut after, data, data.get("name"))?;
    let visibility = save(&state, &me, "role_update", before, &after).await?;
    s.reply(frame, "role_set", json!({"id": after.id, "name": after.name, "updated": true}));
    roles_changed(&state, visibility).await
}

/// `role_permissions_set {id|name, permissions}`.
pub async fn permissions_set(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = require_manage_roles(s)?;
    let state = s.state.clone();
    let dir = state.directory();
    let before = target_role(frame, &dir)?;
    check_manage(&me, &dir, &before.name, before.position)?;
    let Some(permissions) = frame.get("permissions") else {
        return Err(Error::bad_request("Permissions must be an array"));
    };
    let fields: Map<String, Value> = [("permissions".to_owned(), permissions.clone())].into_iter().collect();
    let mut after = before.clone();
    apply(&me, &dir, &mut after, &fields, None)?;
    let visibility = save(&state, &me, "role_permissions_set", before, &after).await?;
    s.reply(
        frame,
        "role_permissions_set",
        json!({"id": after.id, "name": after.name, "permissions": after.permission_list(), "updated": true}),
    );
    roles_changed(&state, visibility).await
}

/// `role_delete {id|name}`: the role is taken from every account.
pub async fn delete(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = require_manage_roles(s)?;
    let state = s.state.clone();
    let dir = state.directory();
    let role = target_role(frame, &dir)?;
    check_manage(&me, &dir, &role.name, role.position)?;
    if !is_deletable(&role.name) {
        return Err(Error::forbidden("Cannot delete system roles"));
    }
    state.store.role_delete(role, &audit(&me, "role_delete", Some((&role.id, &role.name)), json!({}))).await?;
    s.reply(frame, "role_delete", json!({"id": role.id, "name": role.name, "deleted": true}));
    roles_changed(&state, true).await
}

/// `role_reorder {roles:[name|id, …]}`: the complete new order, `owner` first. A non-owner may
/// only move roles that stay strictly below their own highest role.
pub async fn reorder(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = require_manage_roles(s)?;
    let state = s.state.clone();
    let Some(Value::Array(keys)) = frame.get("roles") else {
        return Err(Error::bad_request("Roles array is required"));
    };
    let dir = state.directory();
    let every_role_once = || Error::bad_request("Roles array must list every role exactly once");
    let mut order: Vec<&Role> = Vec::with_capacity(keys.len());
    for key in keys {
        let role = key.as_str().and_then(|k| dir.roles.iter().find(|r| r.id == k).or_else(|| dir.role(k)));
        match role {
            Some(role) if !order.iter().any(|r| r.id == role.id) => order.push(role),
            _ => return Err(every_role_once()),
        }
    }
    if order.len() != dir.roles.len() {
        return Err(every_role_once());
    }
    if !order.first().is_some_and(|r| r.name.eq_ignore_ascii_case("owner")) {
        return Err(Error::bad_request("The owner role must stay first"));
    }
    for (position, role) in order.iter().enumerate() {
        let position = position as i64;
        if position != role.position {
            // Both where the role was and where it goes must be below the actor.
            check_manage(&me, &dir, &role.name, position.min(role.position))?;
        }
    }
    let ids: Vec<String> = order.iter().map(|r| r.id.clone()).collect();
    let names: Vec<&str> = order.iter().map(|r| r.name.as_str()).collect();
    // The whole order changes, so the entry names no single target.
    let entry = audit(&me, "role_reorder", None, json!({"roles": names}));
    state.store.roles_reorder(&ids, &entry).await?;
    s.reply(frame, "role_reorder", json!({"roles": names}));
    roles_changed(&state, true).await
}

/// `self_role_add {role}` (`add`) and `self_role_remove {role}`: only self-assignable roles.
pub async fn self_role(s: &mut Session, frame: &Frame, add: bool) -> Result<()> {
    let me = s.me()?;
    let state = s.state.clone();
    let Some(name) = frame.str("role").filter(|n| !n.is_empty()) else {
        return Err(Error::bad_request("Role name is required"));
    };
    let dir = state.directory();
    let role = dir.role(name).ok_or_else(|| Error::not_found("Role not found"))?;
    if !role.self_assignable || !may_self_assign(&role.name) {
        return Err(Error::forbidden("This role is not self-assignable"));
    }
    let (action, refused) = if add {
        ("self_role_add", "You already have this role")
    } else {
        ("self_role_remove", "You don't have this role")
    };
    let entry = audit(&me, action, Some((&me.user.id, &me.user.username)), json!({"role": role.name}));
    let done = if add {
        state.store.user_role_add(&me.user.id, &role.id, &entry).await?
    } else {
        state.store.user_role_remove(&me.user.id, &role.id, &entry).await?
    };
    if !done {
        return Err(Error::conflict(refused));
    }
    let roles = dir.roles_of(&state.store.user_role_ids(&me.user.id).await?);
    s.reply(frame, action, json!({"role": role.name, "success": true, "roles": names(&roles)}));
    let fields = json!({"user": me.user.username, "roles": names(&roles), "color": wire::color_of(&roles)});
    state.to_all(wire::packet("user_roles_get", fields), None, false);
    channels::user_changed(&state, &me.user.id).await
}

/// `self_roles_list` → the self-assignable roles, each with whether the requester has it.
pub async fn self_list(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = s.me()?;
    let mine = s.state.store.user_role_ids(&me.user.id).await?;
    let dir = s.state.directory();
    let roles: Vec<Value> = dir
        .roles
        .iter()
        .filter(|r| r.self_assignable && may_self_assign(&r.name))
        .map(|r| {
            let mut v = role_json(r);
            v["assigned"] = json!(mine.contains(&r.id));
            v
        })
        .collect();
    s.reply(frame, "self_roles_list", json!({"roles": roles}));
    Ok(())
}

/// `user_roles_get {user}` → the account's roles, highest first, and its colour.
pub async fn user_roles_get(s: &mut Session, frame: &Frame) -> Result<()> {
    let user = target_user(&s.state, frame).await?;
    let roles = s.state.directory().roles_of(&s.state.store.user_role_ids(&user.id).await?);
    s.reply(
        frame,
        "user_roles_get",
        json!({"user": user.username, "roles": names(&roles), "color": wire::color_of(&roles)}),
    );
    Ok(())
}

/// `user_roles_set {user, roles}`: replaces an account's roles. The actor must be able to manage
/// every role added or removed, only an owner may change an owner's roles, and nobody else changes
/// the roles of an account ranked at or above their own (MH). Everyone gets the
/// new list (as `user_roles_get`), and the account's connections a fresh `channels_get`.
pub async fn user_roles_set(s: &mut Session, frame: &Frame) -> Result<()> {
    let me = require_manage_roles(s)?;
    let state = s.state.clone();
    let user = target_user(&state, frame).await?;
    let required = || Error::bad_request("Roles list is required");
    let Some(Value::Array(requested)) = frame.get("roles") else { return Err(required()) };
    if requested.is_empty() {
        return Err(required());
    }
    let dir = state.directory();
    let mut wanted: Vec<String> = Vec::with_capacity(requested.len());
    for name in requested {
        let name = name.as_str().ok_or_else(required)?;
        let role = dir.role(name).ok_or_else(|| Error::not_found(format!("Role '{name}' does not exist")))?;
        if !wanted.contains(&role.id) {
            wanted.push(role.id.clone());
        }
    }
    let current = state.store.user_role_ids(&user.id).await?;
    if !me.actor.is_owner() && dir.roles_of(&current).iter().any(|r| r.name.eq_ignore_ascii_case("owner")) {
        return Err(Error::forbidden("Cannot modify roles of the server owner"));
    }
    check_hierarchy(&state, &me, &user, "change roles of").await?;
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    for role in &dir.roles {
        match (current.contains(&role.id), wanted.contains(&role.id)) {
            (false, true) => added.push(role.name.as_str()),
            (true, false) => removed.push(role.name.as_str()),
            _ => continue,
        }
        check_manage(&me, &dir, &role.name, role.position)?;
    }
    let entry =
        audit(&me, "user_roles_set", Some((&user.id, &user.username)), json!({"added": added, "removed": removed}));
    state.store.user_set_roles_audited(&user.id, &wanted, Some(&entry)).await?;
    let roles = dir.roles_of(&wanted);
    let packet = wire::packet(
        "user_roles_get",
        json!({"user": user.username, "roles": names(&roles), "color": wire::color_of(&roles), "global": true}),
    );
    s.send(wire::with_listener(&packet, frame.listener()));
    state.to_all(packet, Some(s.conn_id), false);
    channels::user_changed(&state, &user.id).await
}
