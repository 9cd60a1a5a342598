//! Registration modes and invites (docs/protocol-details.md, "Registration modes and invites"):
//! `open | invite | closed`, `invite_create/list/revoke`, invites on `POST /auth/register` and the
//! WebSocket `register`, expiry, use limits under concurrent registrations, revocation.

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::support::{Backend, Client, TestServer};
use confab::{
    config::RegistrationMode,
    store::{audit::Audit, invites::NewInvite},
};

const PASSWORD: &str = "correct horse";

async fn invite_server(backend: Backend) -> TestServer {
    TestServer::spawn_with(backend, |c| c.auth.registration = Some(RegistrationMode::Invite)).await
}

/// Writes an invite straight into the store (how a test gets its first account in invite mode,
/// and an invite that has already expired).
async fn stored_invite(server: &TestServer, code: &str, expires_at: Option<f64>, max_uses: Option<i64>) {
    let new = NewInvite { code, created_by: None, created_by_name: "test", expires_at, max_uses };
    let audit = Audit {
        action: "invite_create",
        actor_id: None,
        actor_name: "test".into(),
        target_id: None,
        target_name: None,
        details: json!({}),
    };
    server.store.invite_create(&new, &audit).await.unwrap();
}

async fn register_with(server: &TestServer, name: &str, invite: Option<&str>) -> (u16, Value) {
    let mut body = json!({"username": name, "password": PASSWORD});
    if let Some(code) = invite {
        body["invite"] = json!(code);
    }
    server.post_json("/auth/register", body).await
}

/// An account holding `roles`, registered with a one-use invite from the store, logged in.
async fn invited_member(server: &TestServer, name: &str, roles: &[&str]) -> Client {
    let code = format!("boot{name}");
    stored_invite(server, &code, None, Some(1)).await;
    let (status, body) = register_with(server, name, Some(&code)).await;
    assert_eq!(status, 201, "{body}");
    server.set_roles(name, roles).await;
    server.login(name, PASSWORD).await
}

async fn modes_tell_the_client(backend: Backend) {
    for (mode, name) in
        [(RegistrationMode::Open, "open"), (RegistrationMode::Invite, "invite"), (RegistrationMode::Closed, "closed")]
    {
        let server = TestServer::spawn_with(backend, |c| c.auth.registration = Some(mode)).await;
        let info: Value = server.http.get(server.url("/info")).send().await.unwrap().json().await.unwrap();
        assert_eq!(info["registration"], name, "{info}");
        let c = server.connect().await;
        assert_eq!(c.handshake["val"]["registration"], name);
        let caps = c.handshake["val"]["capabilities"].as_array().unwrap().clone();
        for cmd in ["invite_create", "invite_list", "invite_revoke"] {
            assert!(caps.contains(&json!(cmd)), "{cmd} advertised in {name} mode");
        }
    }
}

async fn invite_mode_refuses_without_a_live_invite(backend: Backend) {
    let server = invite_server(backend).await;
    // No invite: HTTP 403 and the WebSocket auth_error, both invite_required.
    let (status, body) = register_with(&server, "eve", None).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("invite_required")), "{body}");
    assert_eq!(body["error"], "An invite is required to register on this server");
    let mut c = server.connect().await;
    c.send(json!({"cmd": "register", "username": "eve", "password": PASSWORD})).await;
    let err = c.recv_cmd("auth_error").await;
    assert_eq!(err["code"], "invite_required", "{err}");
    // A code nobody made.
    let (status, body) = register_with(&server, "eve", Some("NoSuchInviteCode000000")).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("invalid_invite")), "{body}");
    assert_eq!(body["error"], "Invalid or expired invite");
    // An expired one.
    stored_invite(&server, "expired", Some(confab::store::now() - 1.0), None).await;
    let (status, body) = register_with(&server, "eve", Some("expired")).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("invalid_invite")), "{body}");
    assert!(server.store.user_by_name("eve").await.unwrap().is_none(), "no account was made");
    assert_eq!(server.store.invite("expired").await.unwrap().unwrap().uses, 0);
}

async fn admins_create_list_and_revoke(backend: Backend) {
    let server = invite_server(backend).await;
    let mut boss = invited_member(&server, "boss", &["admin"]).await;
    let mut plain = invited_member(&server, "plain", &["user"]).await;

    // Only manage_server may touch invites.
    for frame in
        [json!({"cmd": "invite_create"}), json!({"cmd": "invite_list"}), json!({"cmd": "invite_revoke", "code": "x"})]
    {
        let r = plain.request(frame.clone()).await;
        assert_eq!((r["cmd"].as_str(), r["code"].as_str()), (Some("error"), Some("forbidden")), "{frame}: {r}");
        assert_eq!(r["val"], "Access denied: 'manage_server' permission required");
    }
    for (frame, text) in [
        (json!({"cmd": "invite_create", "max_uses": 0}), "max_uses must be an integer between 1 and 1000000"),
        (json!({"cmd": "invite_create", "expires_in": "soon"}), "expires_in must be an integer between 1 and 31536000"),
        (json!({"cmd": "invite_revoke"}), "Invite code is required"),
        (json!({"cmd": "invite_revoke", "code": 5}), "Field 'code' must be a string"),
    ] {
        let r = boss.request(frame.clone()).await;
        assert_eq!((r["code"].as_str(), r["val"].as_str()), (Some("bad_request"), Some(text)), "{frame}: {r}");
    }
    let r = boss.request(json!({"cmd": "invite_revoke", "code": "nope"})).await;
    assert_eq!((r["code"].as_str(), r["val"].as_str()), (Some("not_found"), Some("Invite not found")), "{r}");

    // Two uses, a day to live.
    let r = boss.request(json!({"cmd": "invite_create", "max_uses": 2, "expires_in": 86400})).await;
    assert_eq!(r["cmd"], "invite_create", "{r}");
    let invite = &r["invite"];
    let code = invite["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 22, "{invite}");
    assert!(code.chars().all(|c| c.is_ascii_alphanumeric()), "{code}");
    assert_eq!(invite["url"], format!("{}/invite/{code}", server.config.public_url));
    assert_eq!((invite["max_uses"].as_i64(), invite["uses"].as_i64()), (Some(2), Some(0)));
    assert_eq!(
        (&invite["created_by"], &invite["revoked"], &invite["usable"]),
        (&json!("boss"), &json!(false), &json!(true))
    );
    let expires = invite["expires_at"].as_f64().unwrap() - invite["created_at"].as_f64().unwrap();
    assert!((86_399.0..86_401.0).contains(&expires), "{invite}");

    // The link serves the app.
    let page = server.http.get(server.url(&format!("/invite/{code}"))).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("<confab-app>"));

    // A taken name does not spend a use.
    let (status, body) = register_with(&server, "PLAIN", Some(&code)).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("username_taken")), "{body}");
    // Use 1 over HTTP, use 2 over the socket; the third is refused.
    let (status, body) = register_with(&server, "carol", Some(&code)).await;
    assert_eq!(status, 201, "{body}");
    let mut dave = server.connect().await;
    dave.send(json!({"cmd": "register", "username": "dave", "password": PASSWORD, "invite": code})).await;
    let ready = dave.expect_auth().await;
    assert_eq!(ready["user"]["roles"], json!(["user"]), "invited accounts get the default roles");
    let (status, body) = register_with(&server, "erin", Some(&code)).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("invalid_invite")), "{body}");

    let list = boss.request(json!({"cmd": "invite_list"})).await;
    let listed = list["invites"].as_array().unwrap().iter().find(|i| i["code"] == code.as_str()).unwrap().clone();
    assert_eq!((listed["uses"].as_i64(), &listed["usable"]), (Some(2), &json!(false)), "{listed}");

    // Revoked: refused from then on, still listed.
    let r = boss.request(json!({"cmd": "invite_create"})).await;
    let open_code = r["invite"]["code"].as_str().unwrap().to_owned();
    assert_eq!((&r["invite"]["max_uses"], &r["invite"]["expires_at"]), (&Value::Null, &Value::Null), "{r}");
    let r = boss.request(json!({"cmd": "invite_revoke", "code": open_code})).await;
    assert_eq!(r, json!({"cmd": "invite_revoke", "code": open_code, "revoked": true, "listener": r["listener"]}));
    let (status, body) = register_with(&server, "erin", Some(&open_code)).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("invalid_invite")), "{body}");
    let list = boss.request(json!({"cmd": "invite_list"})).await;
    let codes: Vec<(&str, bool)> = list["invites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["code"].as_str().unwrap(), i["revoked"].as_bool().unwrap()))
        .collect();
    assert!(codes.contains(&(open_code.as_str(), true)) && codes.contains(&(code.as_str(), false)), "{codes:?}");

    // Both changes are in the audit log.
    let log = boss.request(json!({"cmd": "modlog_get", "category": "server_management"})).await;
    let actions: Vec<&str> = log["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"invite_create") && actions.contains(&"invite_revoke"), "{actions:?}");
}

/// Many registrations racing for an invite's last uses: exactly `max_uses` accounts are made.
async fn concurrent_registrations_never_exceed_max_uses(backend: Backend) {
    let server = invite_server(backend).await;
    let mut boss = invited_member(&server, "boss", &["admin"]).await;
    let r = boss.request(json!({"cmd": "invite_create", "max_uses": 2})).await;
    let code = r["invite"]["code"].as_str().unwrap().to_owned();
    let attempts = (0..10).map(|i| {
        let (server, code) = (&server, code.clone());
        async move { register_with(server, &format!("racer{i}"), Some(&code)).await }
    });
    let results = join_all(attempts).await;
    let made = results.iter().filter(|(s, _)| *s == 201).count();
    let refused = results.iter().filter(|(s, b)| *s == 403 && b["code"] == "invalid_invite").count();
    assert_eq!((made, refused), (2, 8), "{results:?}");
    assert_eq!(server.store.invite(&code).await.unwrap().unwrap().uses, 2);
    let mut accounts = 0;
    for i in 0..10 {
        accounts += usize::from(server.store.user_by_name(&format!("racer{i}")).await.unwrap().is_some());
    }
    assert_eq!(accounts, 2, "accounts made");
}

async fn closed_refuses_everyone(backend: Backend) {
    for tweak in [
        (|c: &mut confab::config::Config| c.auth.registration = Some(RegistrationMode::Closed)) as fn(&mut _),
        |c: &mut confab::config::Config| c.auth.allow_registration = false,
    ] {
        let server = TestServer::spawn_with(backend, tweak).await;
        stored_invite(&server, "valid", None, None).await;
        for invite in [None, Some("valid")] {
            let (status, body) = register_with(&server, "eve", invite).await;
            assert_eq!(
                (status, &body),
                (403, &json!({"error": "Registration is disabled", "code": "registration_disabled"}))
            );
        }
        let mut c = server.connect().await;
        c.send(json!({"cmd": "register", "username": "eve", "password": PASSWORD, "invite": "valid"})).await;
        let err = c.recv_cmd("auth_error").await;
        assert_eq!(
            (err["val"].as_str(), err["code"].as_str()),
            (Some("Registration is disabled"), Some("registration_disabled"))
        );
        assert_eq!(server.store.invite("valid").await.unwrap().unwrap().uses, 0);
    }
}

/// In open mode an invite is not needed and not spent; a bad one is ignored.
async fn open_mode_ignores_invites(backend: Backend) {
    let server = TestServer::spawn_with(backend, |_| {}).await;
    let (status, body) = register_with(&server, "amy", None).await;
    assert_eq!(status, 201, "{body}");
    stored_invite(&server, "once", None, Some(1)).await;
    for name in ["bea", "cal"] {
        let (status, body) = register_with(&server, name, Some("once")).await;
        assert_eq!(status, 201, "{body}");
    }
    assert_eq!(server.store.invite("once").await.unwrap().unwrap().uses, 0);
}

on_both! {
    modes_tell_the_client => modes_tell_the_client_sqlite, modes_tell_the_client_postgres;
    invite_mode_refuses_without_a_live_invite => invite_mode_refuses_sqlite, invite_mode_refuses_postgres;
    admins_create_list_and_revoke => invites_create_list_revoke_sqlite, invites_create_list_revoke_postgres;
    concurrent_registrations_never_exceed_max_uses => invite_race_sqlite, invite_race_postgres;
    closed_refuses_everyone => closed_refuses_sqlite, closed_refuses_postgres;
    open_mode_ignores_invites => open_mode_ignores_invites_sqlite, open_mode_ignores_invites_postgres;
}
