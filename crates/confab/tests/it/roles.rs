//! Roles (PROTOCOL §5.3–§5.5, §6.4 `user_roles_*`, §6.5): every command's reply and error texts,
//! the `can_manage_role` hierarchy, protected and system roles, self-assignment, renames carried
//! into channel lists, and channel lists evaluated highest role first — each seen both by the actor
//! and by other connected users, and checked in the audit log.

use confab::store::audit::{AuditFilter, AuditRow};
use serde_json::{Value, json};

use crate::support::{Backend, Client, TestServer};

const NO_SEND: &str = "You do not have permission to send messages in this channel";
const ABOVE: &str = "Cannot manage roles at or above your position";

on_both! {
    rename_is_reflected_everywhere => rename_is_reflected_everywhere_sqlite, rename_is_reflected_everywhere_postgres;
    delete_rules => delete_rules_sqlite, delete_rules_postgres;
    reorder_rules => reorder_rules_sqlite, reorder_rules_postgres;
    user_roles_set_live => user_roles_set_live_sqlite, user_roles_set_live_postgres;
}

/// A server whose command rate limits cannot interfere with long sequences of role commands.
async fn spawn(backend: Backend) -> TestServer {
    TestServer::spawn_with(backend, |c| c.rate_limits.enabled = false).await
}

async fn role_id(server: &TestServer, name: &str) -> String {
    server.store.roles().await.unwrap().into_iter().find(|r| r.name == name).unwrap().id
}

/// Sends `frame` and expects the reply `cmd`.
async fn ok(c: &mut Client, cmd: &str, frame: Value) -> Value {
    let r = c.request(frame).await;
    assert_eq!(r["cmd"], cmd, "{r}");
    r
}

/// Sends `frame` and expects an error with exactly `val` and `code`.
async fn refused(c: &mut Client, frame: Value, val: &str, code: &str) {
    let src = frame["cmd"].clone();
    let r = c.request(frame).await;
    assert_eq!(r["cmd"], "error", "{r}");
    assert_eq!(r["src"], src, "{r}");
    assert_eq!(r["val"], val, "{r}");
    assert_eq!(r["code"], code, "{r}");
}

/// What `c` has received since it last looked, up to the answer to a ping sent now. A connection's
/// frames are handled in order, so that answer comes only after everything `c`'s own previous
/// command sent anywhere was queued. Heartbeats and presence are left out.
async fn drain(c: &mut Client) -> Vec<Value> {
    c.send(json!({"cmd": "ping", "listener": "drain"})).await;
    let mut got = Vec::new();
    loop {
        let p = c.recv().await;
        if p["listener"] == "drain" {
            return got;
        }
        if !matches!(p["cmd"].as_str(), Some("ping" | "user_connect" | "user_disconnect" | "user_join" | "status_get"))
        {
            got.push(p);
        }
    }
}

/// What `observer` has received since it last looked, once `actor` has finished its last command
/// (what the actor itself received meanwhile is dropped).
async fn seen(actor: &mut Client, observer: &mut Client) -> Vec<Value> {
    drain(actor).await;
    drain(observer).await
}

fn kinds(packets: &[Value]) -> Vec<&str> {
    packets.iter().map(|p| p["cmd"].as_str().unwrap_or("?")).collect()
}

/// Channel names of a `channels_get` packet.
fn channel_names(packet: &Value) -> Vec<String> {
    packet["val"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect()
}

/// `name` → position in a `roles_list` packet, sorted by position.
fn positions(packet: &Value) -> Vec<(String, i64)> {
    let mut list: Vec<(String, i64)> = packet["roles"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v["position"].as_i64().unwrap()))
        .collect();
    list.sort_by_key(|(_, p)| *p);
    list
}

async fn audit(server: &TestServer, action: &str) -> Vec<AuditRow> {
    let filter = AuditFilter { action: Some(action.to_owned()), ..AuditFilter::default() };
    server.store.audit_list(&filter, 100, 0).await.unwrap().0
}

async fn create_channel(c: &mut Client, name: &str, permissions: Value) {
    ok(c, "channel_create", json!({"cmd": "channel_create", "name": name, "type": "text", "permissions": permissions}))
        .await;
}

async fn can_send(c: &mut Client, channel: &str) -> bool {
    let r = c.request(json!({"cmd": "message_new", "channel": channel, "content": "hi"})).await;
    match r["cmd"].as_str() {
        Some("message_new") => true,
        _ => {
            assert_eq!(r["val"], NO_SEND, "{r}");
            false
        }
    }
}

#[tokio::test]
async fn roles_list_and_permissions_get() {
    let server = spawn(Backend::Sqlite).await;
    let mut bob = server.register("bob").await;
    let r = ok(&mut bob, "roles_list", json!({"cmd": "roles_list"})).await;
    let roles = r["roles"].as_object().unwrap();
    assert_eq!(roles.len(), 4);
    let owner = &roles["owner"];
    assert_eq!(owner["id"], role_id(&server, "owner").await);
    assert_eq!(owner["name"], "owner");
    assert_eq!(owner["position"], 0);
    assert_eq!(owner["color"], "#9400D3");
    assert_eq!(owner["permissions"], json!(["administrator"]));
    assert_eq!(owner["description"], "");
    assert_eq!(owner["hoisted"], false);
    assert_eq!(owner["self_assignable"], false);
    assert_eq!(owner["category"], Value::Null);
    assert_eq!(roles["admin"]["position"], 1);
    assert_eq!(roles["moderator"]["color"], "#FFFF00");
    assert_eq!(roles["moderator"]["permissions"], json!(["manage_messages", "manage_threads", "view_audit_log"]));
    assert_eq!(roles["user"]["position"], 3);
    assert_eq!(roles["user"]["color"], Value::Null);
    assert_eq!(roles["user"]["permissions"].as_array().unwrap().len(), 11);

    let by_name =
        ok(&mut bob, "role_permissions_get", json!({"cmd": "role_permissions_get", "name": "MODERATOR"})).await;
    assert_eq!(by_name["name"], "moderator");
    assert_eq!(by_name["id"], roles["moderator"]["id"]);
    assert_eq!(by_name["permissions"], roles["moderator"]["permissions"]);
    // `id` wins over `name`.
    let frame = json!({"cmd": "role_permissions_get", "id": roles["user"]["id"], "name": "owner"});
    assert_eq!(ok(&mut bob, "role_permissions_get", frame).await["name"], "user");

    let get = |f: Value| {
        let mut frame = json!({"cmd": "role_permissions_get"});
        frame.as_object_mut().unwrap().extend(f.as_object().unwrap().clone());
        frame
    };
    refused(&mut bob, get(json!({})), "Role id or name is required", "bad_request").await;
    refused(&mut bob, get(json!({"name": ""})), "Role id or name is required", "bad_request").await;
    refused(&mut bob, get(json!({"name": "ghost"})), "Role not found", "not_found").await;
    refused(&mut bob, get(json!({"id": "ghost", "name": "user"})), "Role not found", "not_found").await;
    server.stop().await;
}

#[tokio::test]
async fn role_create_validates_broadcasts_and_audits() {
    let server = spawn(Backend::Sqlite).await;
    let mut alice = server.member("alice", &["owner"]).await;
    let mut bob = server.register("bob").await;
    let mut stranger = server.connect().await;

    let create = |fields: Value| {
        let mut frame = json!({"cmd": "role_create"});
        frame.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
        frame
    };
    refused(&mut bob, create(json!({"name": "vip"})), "Access denied: 'manage_roles' permission required", "forbidden")
        .await;

    let full = json!({"name": "vip", "description": "Very important", "color": "#00aaFF", "hoisted": true,
                      "permissions": ["send_messages", "connect"], "self_assignable": true, "category": "perks"});
    let r = ok(&mut alice, "role_create", create(full)).await;
    assert_eq!(r["name"], "vip");
    let vip_id = r["id"].as_str().unwrap().to_owned();
    assert_eq!(vip_id, role_id(&server, "vip").await);

    let got = seen(&mut alice, &mut bob).await;
    assert_eq!(kinds(&got), ["roles_list"], "a create changes no channel list");
    let vip = &got[0]["roles"]["vip"];
    assert_eq!(vip["id"], vip_id.as_str());
    assert_eq!(vip["position"], 4, "a new role goes last");
    assert_eq!(vip["description"], "Very important");
    assert_eq!(vip["color"], "#00aaFF");
    assert_eq!(vip["hoisted"], true);
    assert_eq!(vip["permissions"], json!(["send_messages", "connect"]));
    assert_eq!(vip["self_assignable"], true);
    assert_eq!(vip["category"], "perks");
    // Only authenticated connections get `roles_list`: the broadcast is done, and the stranger's
    // next packet is its own pong.
    stranger.send(json!({"cmd": "ping", "listener": "p"})).await;
    let pong = stranger.recv().await;
    assert_eq!(pong["cmd"], "pong", "{pong}");

    for (fields, val, code) in [
        (json!({}), "Role name is required", "bad_request"),
        (json!({"name": ""}), "Role name is required", "bad_request"),
        (json!({"name": "has space"}), "Invalid role name", "bad_request"),
        (json!({"name": "!vip"}), "Invalid role name", "bad_request"),
        (json!({"name": "Banned"}), "Invalid role name", "bad_request"),
        (json!({"name": "r".repeat(33)}), "Invalid role name", "bad_request"),
        (json!({"name": 7}), "Invalid role name", "bad_request"),
        (
            json!({"name": "moderator", "self_assignable": true}),
            "Role 'moderator' cannot be made self-assignable",
            "forbidden",
        ),
        (json!({"name": "VIP"}), "Role already exists", "conflict"),
        (json!({"name": "gold", "color": "gold"}), "Invalid color", "bad_request"),
        (json!({"name": "gold", "color": "#12345G"}), "Invalid color", "bad_request"),
        (json!({"name": "gold", "permissions": ["send_messages", "fly"]}), "Unknown permission: fly", "bad_request"),
        (json!({"name": "gold", "permissions": "connect"}), "Permissions must be an array", "bad_request"),
        (json!({"name": "gold", "hoisted": "yes"}), "Invalid role field", "bad_request"),
    ] {
        refused(&mut alice, create(fields), val, code).await;
    }
    assert!(seen(&mut alice, &mut bob).await.is_empty(), "refused writes broadcast nothing");

    // A role manager without `administrator` cannot mint a role stronger than themselves.
    ok(&mut alice, "role_create", create(json!({"name": "manager", "permissions": ["manage_roles", "send_messages"]})))
        .await;
    let mut carol = server.member("carol", &["user", "manager"]).await;
    let stronger = create(json!({"name": "helper", "permissions": ["send_messages", "manage_server"]}));
    refused(&mut carol, stronger, "Cannot grant permissions you do not have", "forbidden").await;
    let r = ok(&mut carol, "role_create", create(json!({"name": "helper", "permissions": ["send_messages"]}))).await;
    assert_eq!(r["name"], "helper");
    let got = seen(&mut carol, &mut bob).await;
    assert_eq!(kinds(&got), ["roles_list", "roles_list"]);
    assert_eq!(got[1]["roles"]["helper"]["position"], 6);

    let entries = audit(&server, "role_create").await;
    assert_eq!(entries.len(), 3);
    let vip_entry = entries.iter().find(|e| e.target_name.as_deref() == Some("vip")).unwrap();
    assert_eq!(vip_entry.category, "role_management");
    assert_eq!(vip_entry.actor_name, "alice");
    assert_eq!(vip_entry.target_id.as_deref(), Some(vip_id.as_str()));
    assert!(entries.iter().any(|e| e.actor_name == "carol" && e.target_name.as_deref() == Some("helper")));
    server.stop().await;
}

async fn rename_is_reflected_everywhere(backend: Backend) {
    let server = spawn(backend).await;
    let mut alice = server.member("alice", &["owner"]).await;
    ok(&mut alice, "role_create", json!({"cmd": "role_create", "name": "vip"})).await;
    let vip_id = role_id(&server, "vip").await;
    create_channel(&mut alice, "lounge", json!({"view": ["vip"], "send": ["!vip", "user"], "deny": ["add_reactions"]}))
        .await;
    let mut bob = server.member("bob", &["user", "vip"]).await;
    let mut carol = server.register("carol").await;

    refused(
        &mut bob,
        json!({"cmd": "role_update", "name": "vip"}),
        "Access denied: 'manage_roles' permission required",
        "forbidden",
    )
    .await;
    let r =
        ok(&mut alice, "role_update", json!({"cmd": "role_update", "id": vip_id, "name": "gold", "color": "#112233"}))
            .await;
    assert_eq!(
        r,
        json!({"cmd": "role_update", "id": vip_id, "name": "gold", "updated": true, "listener": r["listener"]})
    );

    let got = seen(&mut alice, &mut bob).await;
    assert_eq!(kinds(&got), ["roles_list", "channels_get"]);
    let roles = got[0]["roles"].as_object().unwrap();
    assert!(roles.get("vip").is_none());
    assert_eq!(roles["gold"]["id"], vip_id.as_str());
    assert_eq!(roles["gold"]["color"], "#112233");
    let lounge =
        got[1]["val"].as_array().unwrap().iter().find(|c| c["name"] == "lounge").expect("bob still sees lounge");
    assert_eq!(lounge["permissions"]["view"], json!(["gold"]));
    assert_eq!(lounge["permissions"]["send"], json!(["!gold", "user"]));
    assert_eq!(lounge["permissions"]["deny"], json!(["add_reactions"]));
    // Carol lacks the role: her pushed list still has no lounge.
    let got = seen(&mut alice, &mut carol).await;
    assert_eq!(kinds(&got), ["roles_list", "channels_get"]);
    assert!(!channel_names(&got[1]).contains(&"lounge".to_owned()));

    let mine = ok(&mut bob, "user_roles_get", json!({"cmd": "user_roles_get", "user": "bob"})).await;
    assert_eq!(mine["roles"], json!(["user", "gold"]));
    assert_eq!(mine["color"], "#112233");
    let stored = server.store.channels().await.unwrap().into_iter().find(|c| c.name == "lounge").unwrap();
    assert!(!stored.permissions.contains("vip") && stored.permissions.contains("!gold"), "{}", stored.permissions);
    // Bob's live identity carries the new name: the channel still judges him by it.
    assert!(can_send(&mut bob, "lounge").await);

    // A change of case only is a rename too; other edits leave the channel lists alone.
    let r = ok(&mut alice, "role_update", json!({"cmd": "role_update", "id": vip_id, "name": "Gold"})).await;
    assert_eq!(r["name"], "Gold");
    let got = seen(&mut alice, &mut bob).await;
    assert_eq!(kinds(&got), ["roles_list", "channels_get"]);
    let r = ok(&mut alice, "role_update", json!({"cmd": "role_update", "name": "gold", "description": "shiny"})).await;
    assert_eq!(r["name"], "Gold");
    let got = seen(&mut alice, &mut bob).await;
    assert_eq!(kinds(&got), ["roles_list"], "a description changes no channel list");
    assert_eq!(got[0]["roles"]["Gold"]["description"], "shiny");

    let user_id = role_id(&server, "user").await;
    let update = |fields: Value| {
        let mut frame = json!({"cmd": "role_update"});
        frame.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
        frame
    };
    for (fields, val, code) in [
        (json!({}), "Role id or name is required", "bad_request"),
        (json!({"name": "ghost"}), "Role not found", "not_found"),
        (json!({"id": "ghost", "name": "x"}), "Role not found", "not_found"),
        (json!({"id": user_id, "name": "members"}), "Cannot rename system roles", "forbidden"),
        (json!({"id": role_id(&server, "moderator").await, "name": "mods"}), "Cannot rename system roles", "forbidden"),
        (json!({"id": vip_id, "name": "Admin"}), "Role already exists", "conflict"),
        (json!({"id": vip_id, "name": "bad name"}), "Invalid role name", "bad_request"),
        (json!({"id": vip_id, "name": "banned"}), "Invalid role name", "bad_request"),
        (json!({"name": "gold", "color": "blue"}), "Invalid color", "bad_request"),
        (json!({"name": "gold", "permissions": ["fly"]}), "Unknown permission: fly", "bad_request"),
        (json!({"name": "admin", "self_assignable": true}), "Role 'admin' cannot be made self-assignable", "forbidden"),
        (json!({"name": "gold", "self_assignable": "yes"}), "Invalid role field", "bad_request"),
    ] {
        refused(&mut alice, update(fields), val, code).await;
    }

    // role_set: the same edits inside `data`.
    let set = |fields: Value| {
        let mut frame = json!({"cmd": "role_set"});
        frame.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
        frame
    };
    refused(
        &mut bob,
        set(json!({"name": "gold", "data": {}})),
        "Access denied: 'manage_roles' permission required",
        "forbidden",
    )
    .await;
    for (fields, val, code) in [
        (json!({"data": {"color": "#000000"}}), "Role id or name is required", "bad_request"),
        (json!({"name": "gold"}), "Role data is required", "bad_request"),
        (json!({"name": "gold", "data": "x"}), "Role data is required", "bad_request"),
        (json!({"name": "ghost", "data": {}}), "Role not found", "not_found"),
        (json!({"name": "gold", "data": {"position": 0}}), "Cannot update field: position", "bad_request"),
        (json!({"name": "user", "data": {"name": "people"}}), "Cannot rename system roles", "forbidden"),
        (json!({"name": "gold", "data": {"name": "owner"}}), "Role already exists", "conflict"),
        (json!({"name": "gold", "data": {"color": "#1234"}}), "Invalid color", "bad_request"),
    ] {
        refused(&mut alice, set(fields), val, code).await;
    }
    assert!(kinds(&seen(&mut alice, &mut bob).await).is_empty(), "refused writes broadcast nothing");
    let r = ok(&mut alice, "role_set", set(json!({"name": "gold", "data": {"name": "silver", "hoisted": true}}))).await;
    assert_eq!(r["id"], vip_id.as_str());
    assert_eq!(r["name"], "silver");
    assert_eq!(r["updated"], true);
    let got = seen(&mut alice, &mut bob).await;
    assert_eq!(kinds(&got), ["roles_list", "channels_get"]);
    assert_eq!(got[0]["roles"]["silver"]["hoisted"], true);
    let lounge = got[1]["val"].as_array().unwrap().iter().find(|c| c["name"] == "lounge").unwrap();
    assert_eq!(lounge["permissions"]["view"], json!(["silver"]));

    let entries = audit(&server, "role_update").await;
    assert_eq!(entries.len(), 4);
    assert!(entries.iter().all(|e| e.category == "role_management" && e.target_id.as_deref() == Some(vip_id.as_str())));
    let first = entries.iter().find(|e| e.details.contains("\"old_name\":\"vip\"")).expect("rename recorded");
    assert!(first.details.contains("\"name\"") && first.details.contains("\"color\""), "{}", first.details);
    server.stop().await;
}

async fn delete_rules(backend: Backend) {
    let server = spawn(backend).await;
    let mut alice = server.member("alice", &["owner"]).await;
    for name in ["temp", "listed", "denied"] {
        ok(&mut alice, "role_create", json!({"cmd": "role_create", "name": name})).await;
    }
    create_channel(&mut alice, "club", json!({"send": ["listed"]})).await;
    create_channel(&mut alice, "den", json!({"view": ["!DENIED", "user"]})).await;
    let mut bob = server.member("bob", &["user", "temp"]).await;

    let delete = |key: &str, value: &str| json!({"cmd": "role_delete", key: value});
    refused(&mut bob, delete("name", "temp"), "Access denied: 'manage_roles' permission required", "forbidden").await;
    refused(&mut alice, json!({"cmd": "role_delete"}), "Role id or name is required", "bad_request").await;
    refused(&mut alice, delete("name", "ghost"), "Role not found", "not_found").await;
    refused(&mut alice, delete("id", "ghost"), "Role not found", "not_found").await;
    for name in ["owner", "admin", "user"] {
        refused(&mut alice, delete("name", name), "Cannot delete system roles", "forbidden").await;
    }
    refused(&mut alice, delete("name", "listed"), "Role is used in channel 'club' permissions", "conflict").await;
    refused(&mut alice, delete("name", "denied"), "Role is used in channel 'den' permissions", "conflict").await;
    assert!(kinds(&seen(&mut alice, &mut bob).await).is_empty(), "refused writes broadcast nothing");

    let temp_id = role_id(&server, "temp").await;
    let r = ok(&mut alice, "role_delete", delete("id", &temp_id)).await;
    assert_eq!(r["id"], temp_id.as_str());
    assert_eq!(r["name"], "temp");
    assert_eq!(r["deleted"], true);
    let got = seen(&mut alice, &mut bob).await;
    assert_eq!(kinds(&got), ["roles_list", "channels_get"]);
    let expected: Vec<(String, i64)> = ["owner", "admin", "moderator", "user", "listed", "denied"]
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), i as i64))
        .collect();
    assert_eq!(positions(&got[0]), expected, "positions stay dense");
    let mine = ok(&mut bob, "user_roles_get", json!({"cmd": "user_roles_get", "user": "bob"})).await;
    assert_eq!(mine["roles"], json!(["user"]), "the role is taken from every account");
    assert_eq!(server.store.user_role_ids(&server.user_id("bob").await).await.unwrap().len(), 1);

    // `moderator` is a system role that may go once #general's delete list no longer names it; its
    // name is then free again.
    refused(&mut alice, delete("name", "moderator"), "Role is used in channel 'general' permissions", "conflict").await;
    let unlist = json!({"cmd": "channel_update", "current_name": "general",
                        "updates": {"permissions": {"view": ["user"], "send": ["user"], "delete": ["admin"]}}});
    ok(&mut alice, "channel_update", unlist).await;
    drain(&mut bob).await;
    ok(&mut alice, "role_delete", delete("name", "moderator")).await;
    let got = seen(&mut alice, &mut bob).await;
    assert_eq!(positions(&got[0]).iter().map(|(_, p)| *p).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    ok(&mut alice, "role_create", json!({"cmd": "role_create", "name": "moderator"})).await;

    let entries = audit(&server, "role_delete").await;
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().any(|e| e.target_name.as_deref() == Some("temp") && e.category == "role_management"));
    server.stop().await;
}

async fn reorder_rules(backend: Backend) {
    let server = spawn(backend).await;
    let mut alice = server.member("alice", &["owner"]).await;
    for name in ["a", "b"] {
        ok(&mut alice, "role_create", json!({"cmd": "role_create", "name": name})).await;
    }
    let mut bob = server.register("bob").await;
    let reorder = |roles: Value| json!({"cmd": "role_reorder", "roles": roles});
    let once = "Roles array must list every role exactly once";
    refused(&mut bob, reorder(json!(["owner"])), "Access denied: 'manage_roles' permission required", "forbidden")
        .await;
    refused(&mut alice, json!({"cmd": "role_reorder"}), "Roles array is required", "bad_request").await;
    refused(&mut alice, reorder(json!("owner")), "Roles array is required", "bad_request").await;
    refused(&mut alice, reorder(json!([])), once, "bad_request").await;
    refused(&mut alice, reorder(json!(["owner", "admin", "moderator", "user", "a"])), once, "bad_request").await;
    refused(&mut alice, reorder(json!(["owner", "admin", "moderator", "user", "a", "b", "A"])), once, "bad_request")
        .await;
    refused(&mut alice, reorder(json!(["owner", "admin", "moderator", "user", "a", "ghost"])), once, "bad_request")
        .await;
    refused(&mut alice, reorder(json!(["owner", "admin", "moderator", "user", "a", 5])), once, "bad_request").await;
    refused(
        &mut alice,
        reorder(json!(["admin", "owner", "moderator", "user", "a", "b"])),
        "The owner role must stay first",
        "bad_request",
    )
    .await;
    assert!(kinds(&seen(&mut alice, &mut bob).await).is_empty(), "refused writes broadcast nothing");

    let b_id = role_id(&server, "b").await;
    let r = ok(&mut alice, "role_reorder", reorder(json!(["OWNER", "admin", b_id, "moderator", "user", "a"]))).await;
    assert_eq!(r["roles"], json!(["owner", "admin", "b", "moderator", "user", "a"]));
    let got = seen(&mut alice, &mut bob).await;
    assert_eq!(kinds(&got), ["roles_list", "channels_get"]);
    let expected: Vec<(String, i64)> = ["owner", "admin", "b", "moderator", "user", "a"]
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), i as i64))
        .collect();
    assert_eq!(positions(&got[0]), expected);
    let stored: Vec<String> = server.store.roles().await.unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(stored, ["owner", "admin", "b", "moderator", "user", "a"]);

    let entries = audit(&server, "role_reorder").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].category, "role_management");
    assert!(entries[0].details.contains("\"b\",\"moderator\""), "{}", entries[0].details);
    assert_eq!(entries[0].actor_name, "alice");
    assert_eq!(entries[0].target_id, None, "a reorder has no single target");
    server.stop().await;
}

#[tokio::test]
async fn hierarchy_limits_everyone_but_owners() {
    let server = spawn(Backend::Sqlite).await;
    let mut alice = server.member("alice", &["owner"]).await;
    for (name, perms) in
        [("manager", json!(["manage_roles", "send_messages"])), ("low", json!([])), ("lower", json!([]))]
    {
        ok(&mut alice, "role_create", json!({"cmd": "role_create", "name": name, "permissions": perms})).await;
    }
    let order = json!(["owner", "admin", "manager", "moderator", "user", "low", "lower"]);
    ok(&mut alice, "role_reorder", json!({"cmd": "role_reorder", "roles": order})).await;
    let mut dave = server.member("dave", &["admin"]).await;
    let mut carol = server.member("carol", &["manager", "user"]).await;
    server.http_register("bob").await;

    // An administrator (position 1) below the owner.
    let color = |role: &str| json!({"cmd": "role_update", "name": role, "color": "#010203"});
    refused(&mut dave, color("owner"), ABOVE, "forbidden").await;
    refused(&mut dave, color("admin"), ABOVE, "forbidden").await;
    refused(&mut dave, json!({"cmd": "role_delete", "name": "owner"}), ABOVE, "forbidden").await;
    refused(&mut dave, json!({"cmd": "role_permissions_set", "name": "admin", "permissions": []}), ABOVE, "forbidden")
        .await;
    ok(&mut dave, "role_update", color("manager")).await;
    let grant = json!({"cmd": "role_permissions_set", "name": "low", "permissions": ["manage_server"]});
    ok(&mut dave, "role_permissions_set", grant).await;
    let set = |user: &str, roles: Value| json!({"cmd": "user_roles_set", "user": user, "roles": roles});
    refused(&mut dave, set("alice", json!(["owner", "user"])), "Cannot modify roles of the server owner", "forbidden")
        .await;
    refused(&mut dave, set("bob", json!(["user", "owner"])), ABOVE, "forbidden").await;
    refused(&mut dave, set("bob", json!(["user", "admin"])), ABOVE, "forbidden").await;
    ok(&mut dave, "user_roles_get", set("bob", json!(["user", "moderator"]))).await;
    refused(
        &mut dave,
        json!({"cmd": "role_reorder", "roles": ["owner", "manager", "admin", "moderator", "user", "low", "lower"]}),
        ABOVE,
        "forbidden",
    )
    .await;

    // A role manager without `administrator` (position 2).
    refused(&mut carol, color("manager"), ABOVE, "forbidden").await;
    refused(&mut carol, color("admin"), ABOVE, "forbidden").await;
    ok(&mut carol, "role_update", color("moderator")).await;
    let stronger = json!({"cmd": "role_permissions_set", "name": "lower", "permissions": ["manage_users"]});
    refused(&mut carol, stronger, "Cannot grant permissions you do not have", "forbidden").await;
    // Keeping a permission the role already had is not granting it.
    let keep = json!({"cmd": "role_permissions_set", "name": "low", "permissions": ["manage_server", "send_messages"]});
    ok(&mut carol, "role_permissions_set", keep).await;
    refused(&mut carol, set("bob", json!(["user", "manager"])), ABOVE, "forbidden").await;
    ok(&mut carol, "user_roles_get", set("bob", json!(["user", "low"]))).await;
    let below = json!(["owner", "admin", "manager", "user", "lower", "moderator", "low"]);
    let r = ok(&mut carol, "role_reorder", json!({"cmd": "role_reorder", "roles": below})).await;
    assert_eq!(r["roles"], below);
    let raise = json!(["owner", "admin", "moderator", "manager", "user", "lower", "low"]);
    refused(&mut carol, json!({"cmd": "role_reorder", "roles": raise}), ABOVE, "forbidden").await;

    // `admin` below a role manager is still out of their reach; the owner may move and edit it.
    let admin_low = json!(["owner", "manager", "admin", "user", "lower", "moderator", "low"]);
    ok(&mut alice, "role_reorder", json!({"cmd": "role_reorder", "roles": admin_low})).await;
    refused(&mut carol, color("admin"), "Cannot manage protected role 'admin'", "forbidden").await;
    let swap = json!(["owner", "manager", "user", "admin", "lower", "moderator", "low"]);
    refused(
        &mut carol,
        json!({"cmd": "role_reorder", "roles": swap}),
        "Cannot manage protected role 'admin'",
        "forbidden",
    )
    .await;
    ok(&mut alice, "role_update", color("admin")).await;
    ok(&mut alice, "role_update", color("owner")).await;
    // Only an owner hands out `owner`; the new owner may then manage every role.
    ok(&mut alice, "user_roles_get", set("dave", json!(["owner", "admin"]))).await;
    ok(&mut dave, "role_update", color("owner")).await;
    ok(&mut dave, "user_roles_get", set("alice", json!(["owner", "user"]))).await;
    server.stop().await;
}

#[tokio::test]
async fn self_assignable_roles() {
    let server = spawn(Backend::Sqlite).await;
    let mut alice = server.member("alice", &["owner"]).await;
    let perks = json!({"cmd": "role_create", "name": "pingme", "self_assignable": true, "color": "#00FF00"});
    ok(&mut alice, "role_create", perks).await;
    ok(&mut alice, "role_create", json!({"cmd": "role_create", "name": "staffonly"})).await;
    create_channel(&mut alice, "pings", json!({"view": ["pingme"]})).await;
    drain(&mut alice).await;
    let mut bob = server.register("bob").await;
    let mut carol = server.register("carol").await;

    let list = ok(&mut bob, "self_roles_list", json!({"cmd": "self_roles_list"})).await;
    let roles = list["roles"].as_array().unwrap();
    assert_eq!(roles.len(), 1, "{list}");
    assert_eq!(roles[0]["name"], "pingme");
    assert_eq!(roles[0]["assigned"], false);
    assert_eq!(roles[0]["color"], "#00FF00");
    assert_eq!(roles[0]["self_assignable"], true);
    assert_eq!(roles[0]["position"], 4);

    let r = ok(&mut bob, "self_role_add", json!({"cmd": "self_role_add", "role": "PingMe"})).await;
    assert_eq!(r["role"], "pingme");
    assert_eq!(r["success"], true);
    assert_eq!(r["roles"], json!(["user", "pingme"]));
    // The requester's own connections get the broadcast (without listener) and a fresh channel list.
    let own = drain(&mut bob).await;
    assert_eq!(kinds(&own), ["user_roles_get", "channels_get"]);
    assert_eq!(
        own[0],
        json!({"cmd": "user_roles_get", "user": "bob", "roles": ["user", "pingme"], "color": "#00FF00"})
    );
    assert!(channel_names(&own[1]).contains(&"pings".to_owned()));
    // Everyone else gets the broadcast alone.
    assert_eq!(drain(&mut alice).await, vec![own[0].clone()]);
    assert_eq!(drain(&mut carol).await, vec![own[0].clone()]);

    let list = ok(&mut bob, "self_roles_list", json!({"cmd": "self_roles_list"})).await;
    assert_eq!(list["roles"][0]["assigned"], true);
    refused(&mut bob, json!({"cmd": "self_role_add", "role": "pingme"}), "You already have this role", "conflict")
        .await;
    for role in ["staffonly", "owner", "moderator"] {
        refused(
            &mut bob,
            json!({"cmd": "self_role_add", "role": role}),
            "This role is not self-assignable",
            "forbidden",
        )
        .await;
    }
    refused(
        &mut bob,
        json!({"cmd": "self_role_remove", "role": "user"}),
        "This role is not self-assignable",
        "forbidden",
    )
    .await;
    for cmd in ["self_role_add", "self_role_remove"] {
        refused(&mut bob, json!({"cmd": cmd}), "Role name is required", "bad_request").await;
        refused(&mut bob, json!({"cmd": cmd, "role": ""}), "Role name is required", "bad_request").await;
        refused(&mut bob, json!({"cmd": cmd, "role": "ghost"}), "Role not found", "not_found").await;
    }

    let r = ok(&mut bob, "self_role_remove", json!({"cmd": "self_role_remove", "role": "pingme"})).await;
    assert_eq!(r["roles"], json!(["user"]));
    assert_eq!(r["success"], true);
    let own = seen(&mut alice, &mut bob).await;
    assert_eq!(kinds(&own), ["user_roles_get", "channels_get"]);
    assert_eq!(own[0]["roles"], json!(["user"]));
    assert_eq!(own[0]["color"], Value::Null);
    assert!(!channel_names(&own[1]).contains(&"pings".to_owned()));
    refused(&mut bob, json!({"cmd": "self_role_remove", "role": "pingme"}), "You don't have this role", "conflict")
        .await;

    for action in ["self_role_add", "self_role_remove"] {
        let entries = audit(&server, action).await;
        assert_eq!(entries.len(), 1, "{action}");
        assert_eq!(entries[0].category, "role_management");
        assert_eq!(entries[0].actor_name, "bob");
        assert_eq!(entries[0].target_name.as_deref(), Some("bob"));
        assert_eq!(entries[0].details, r#"{"role":"pingme"}"#);
    }
    server.stop().await;
}

async fn user_roles_set_live(backend: Backend) {
    let server = spawn(backend).await;
    let mut alice = server.member("alice", &["owner"]).await;
    ok(&mut alice, "role_create", json!({"cmd": "role_create", "name": "vip", "color": "#ABCDEF"})).await;
    let mut bob = server.register("bob").await;
    let mut carol = server.register("carol").await;
    create_channel(&mut alice, "vault", json!({"view": ["vip"], "send": ["vip"]})).await;
    let got = seen(&mut alice, &mut bob).await;
    assert_eq!(kinds(&got), ["channels_get"]);
    assert!(!channel_names(&got[0]).contains(&"vault".to_owned()));
    assert_eq!(kinds(&drain(&mut carol).await), ["channels_get"]);
    assert!(!can_send(&mut bob, "vault").await);

    let r = alice.request(json!({"cmd": "user_roles_set", "user": "BOB", "roles": ["vip", "user", "VIP"]})).await;
    assert_eq!(r["cmd"], "user_roles_get", "{r}");
    assert_eq!(r["user"], "bob");
    assert_eq!(r["roles"], json!(["user", "vip"]), "highest position first");
    assert_eq!(r["color"], "#ABCDEF");
    assert_eq!(r["global"], true);
    let broadcast =
        json!({"cmd": "user_roles_get", "user": "bob", "roles": ["user", "vip"], "color": "#ABCDEF", "global": true});
    assert_eq!(seen(&mut alice, &mut carol).await, vec![broadcast.clone()], "others get it once, without listener");
    let got = seen(&mut alice, &mut bob).await;
    assert_eq!(kinds(&got), ["user_roles_get", "channels_get"]);
    assert_eq!(got[0], broadcast);
    assert!(channel_names(&got[1]).contains(&"vault".to_owned()), "visible without reconnecting");
    // Bob's connection now belongs to the channel's audience and may write there.
    assert!(can_send(&mut bob, "vault").await);
    assert_eq!(seen(&mut bob, &mut alice).await.iter().filter(|p| p["cmd"] == "message_new").count(), 1);
    ok(&mut alice, "message_new", json!({"cmd": "message_new", "channel": "vault", "content": "for vips"})).await;
    assert_eq!(kinds(&seen(&mut alice, &mut bob).await), ["message_new"]);
    assert!(kinds(&seen(&mut alice, &mut carol).await).is_empty(), "carol is not in the audience");

    let by_id =
        ok(&mut carol, "user_roles_get", json!({"cmd": "user_roles_get", "user": server.user_id("bob").await})).await;
    let mut expected = broadcast.clone();
    expected.as_object_mut().unwrap().remove("global");
    expected["listener"] = by_id["listener"].clone();
    assert_eq!(by_id, expected);

    // Taking the role away removes the channel and the audience membership at once.
    ok(&mut alice, "user_roles_get", json!({"cmd": "user_roles_set", "user": "bob", "roles": ["user"]})).await;
    let got = seen(&mut alice, &mut bob).await;
    assert_eq!(kinds(&got), ["user_roles_get", "channels_get"]);
    assert!(!channel_names(&got[1]).contains(&"vault".to_owned()));
    assert_eq!(kinds(&seen(&mut alice, &mut carol).await), ["user_roles_get"]);
    ok(&mut alice, "message_new", json!({"cmd": "message_new", "channel": "vault", "content": "secret"})).await;
    assert!(kinds(&seen(&mut alice, &mut bob).await).is_empty(), "bob left the audience");
    assert!(!can_send(&mut bob, "vault").await);

    refused(&mut carol, json!({"cmd": "user_roles_get"}), "User parameter is required", "bad_request").await;
    refused(&mut carol, json!({"cmd": "user_roles_get", "user": "ghost"}), "User not found", "not_found").await;
    let set = |fields: Value| {
        let mut frame = json!({"cmd": "user_roles_set"});
        frame.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
        frame
    };
    let denied = "Access denied: 'manage_roles' permission required";
    refused(&mut carol, set(json!({"user": "bob", "roles": ["user"]})), denied, "forbidden").await;
    for (fields, val, code) in [
        (json!({"roles": ["user"]}), "User parameter is required", "bad_request"),
        (json!({"user": "bob"}), "Roles list is required", "bad_request"),
        (json!({"user": "bob", "roles": []}), "Roles list is required", "bad_request"),
        (json!({"user": "bob", "roles": "user"}), "Roles list is required", "bad_request"),
        (json!({"user": "ghost", "roles": ["user"]}), "User not found", "not_found"),
        (json!({"user": "bob", "roles": ["user", "ghost"]}), "Role 'ghost' does not exist", "not_found"),
    ] {
        refused(&mut alice, set(fields), val, code).await;
    }
    assert!(kinds(&seen(&mut alice, &mut carol).await).is_empty(), "refused writes broadcast nothing");

    let entries = audit(&server, "user_roles_set").await;
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e.category == "user_moderation" && e.target_name.as_deref() == Some("bob")));
    assert!(entries.iter().any(|e| e.details == r#"{"added":["vip"],"removed":[]}"#), "{entries:?}");
    assert!(entries.iter().any(|e| e.details == r#"{"added":[],"removed":["vip"]}"#), "{entries:?}");
    server.stop().await;
}

/// Channel lists evaluated per PROTOCOL §5.5 through real sends: the first of the user's roles,
/// from the highest position down, that a list names decides; `!role` denies; owners and
/// `administrator` pass every list. Reordering roles or changing a role's permissions takes effect
/// on live connections at once.
#[tokio::test]
async fn permission_matrix_highest_role_first() {
    let server = spawn(Backend::Sqlite).await;
    let mut alice = server.member("alice", &["owner"]).await;
    for name in ["vip", "muted"] {
        ok(&mut alice, "role_create", json!({"cmd": "role_create", "name": name})).await;
    }
    let order_a = json!(["owner", "admin", "moderator", "vip", "muted", "user"]);
    ok(&mut alice, "role_reorder", json!({"cmd": "role_reorder", "roles": order_a})).await;
    let channels = [
        ("open", json!(["user"])),
        ("quiet", json!(["!muted", "user"])),
        ("vips", json!(["vip", "!user"])),
        ("novip", json!(["!vip", "user"])),
        ("mixed", json!(["!muted", "vip"])),
        ("staff", json!(["moderator"])),
    ];
    for (name, send) in &channels {
        create_channel(&mut alice, name, json!({"view": ["user"], "send": send})).await;
    }
    let mut users = vec![
        ("plain", server.member("plain", &["user"]).await),
        ("hushed", server.member("hushed", &["user", "muted"]).await),
        ("starred", server.member("starred", &["user", "vip"]).await),
        ("both", server.member("both", &["user", "vip", "muted"]).await),
        ("boss", server.member("boss", &["admin"]).await),
    ];

    async fn matrix(users: &mut [(&str, Client)], channels: &[(&str, Value)]) -> Vec<(String, Vec<bool>)> {
        let mut rows = Vec::new();
        for (name, client) in users.iter_mut() {
            let mut row = Vec::new();
            for (channel, _) in channels {
                row.push(can_send(client, channel).await);
            }
            rows.push((name.to_string(), row));
        }
        rows
    }
    let row = |name: &str, cells: [u8; 6]| (name.to_owned(), cells.iter().map(|c| *c == 1).collect::<Vec<bool>>());
    //                      open quiet vips novip mixed staff
    let expected_a = vec![
        row("plain", [1, 1, 0, 1, 0, 0]),
        row("hushed", [1, 0, 0, 1, 0, 0]),
        row("starred", [1, 1, 1, 0, 1, 0]),
        row("both", [1, 0, 1, 0, 1, 0]),
        row("boss", [1, 1, 1, 1, 1, 1]),
    ];
    assert_eq!(matrix(&mut users, &channels).await, expected_a);

    // `muted` above `vip`: for an account holding both, the lists that name both now deny.
    let order_b = json!(["owner", "admin", "moderator", "muted", "vip", "user"]);
    ok(&mut alice, "role_reorder", json!({"cmd": "role_reorder", "roles": order_b})).await;
    let mut expected_b = expected_a.clone();
    expected_b[3] = row("both", [1, 0, 1, 0, 0, 0]);
    assert_eq!(matrix(&mut users, &channels).await, expected_b);

    // Giving `vip` the `administrator` permission lets its holders pass every list at once, and
    // shows them channels they could not see before.
    create_channel(&mut alice, "secret", json!({})).await;
    let starred = &mut users[2].1;
    let got = seen(&mut alice, starred).await;
    let pushed = got.iter().rfind(|p| p["cmd"] == "channels_get").expect("channel_create pushes lists");
    assert!(!channel_names(pushed).contains(&"secret".to_owned()));
    let grant = json!({"cmd": "role_permissions_set", "name": "vip", "permissions": ["administrator"]});
    let r = ok(&mut alice, "role_permissions_set", grant).await;
    assert_eq!(r["permissions"], json!(["administrator"]));
    assert_eq!(r["updated"], true);
    assert_eq!(r["id"], role_id(&server, "vip").await);
    let got = seen(&mut alice, starred).await;
    assert_eq!(kinds(&got), ["roles_list", "channels_get"]);
    assert_eq!(got[0]["roles"]["vip"]["permissions"], json!(["administrator"]));
    assert!(channel_names(&got[1]).contains(&"secret".to_owned()));
    let mut expected_c = vec![
        row("plain", [1, 1, 0, 1, 0, 0]),
        row("hushed", [1, 0, 0, 1, 0, 0]),
        row("starred", [1, 1, 1, 1, 1, 1]),
        row("both", [1, 1, 1, 1, 1, 1]),
        row("boss", [1, 1, 1, 1, 1, 1]),
    ];
    assert_eq!(matrix(&mut users, &channels).await, expected_c);

    let bad = json!({"cmd": "role_permissions_set", "name": "vip"});
    refused(&mut alice, bad, "Permissions must be an array", "bad_request").await;
    for (frame, val, code) in [
        (json!({"permissions": []}), "Role id or name is required", "bad_request"),
        (json!({"name": "ghost", "permissions": []}), "Role not found", "not_found"),
        (json!({"name": "vip", "permissions": {"send": true}}), "Permissions must be an array", "bad_request"),
        (json!({"name": "vip", "permissions": ["fly"]}), "Unknown permission: fly", "bad_request"),
    ] {
        let mut f = json!({"cmd": "role_permissions_set"});
        f.as_object_mut().unwrap().extend(frame.as_object().unwrap().clone());
        refused(&mut alice, f, val, code).await;
    }
    let plain = &mut users[0].1;
    let denied = json!({"cmd": "role_permissions_set", "name": "vip", "permissions": []});
    refused(plain, denied, "Access denied: 'manage_roles' permission required", "forbidden").await;

    // And taking it back applies at once as well.
    ok(
        &mut alice,
        "role_permissions_set",
        json!({"cmd": "role_permissions_set", "id": role_id(&server, "vip").await, "permissions": []}),
    )
    .await;
    expected_c[2] = row("starred", [1, 1, 1, 0, 1, 0]);
    expected_c[3] = row("both", [1, 0, 1, 0, 0, 0]);
    assert_eq!(matrix(&mut users, &channels).await, expected_c);
    let entries = audit(&server, "role_permissions_set").await;
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e.category == "role_management" && e.target_name.as_deref() == Some("vip")));
    server.stop().await;
}
