//! Voice channels (PROTOCOL §6.6; media-features checklist 24–25) and the signalling relay
//! extension (docs/voice.md): membership, moves between connections, mute, cleanup on close,
//! `voice_state` in `channels_get`, `peer_id` only to participants, `voice_signal`, ICE servers.

use serde_json::{Value, json};

use crate::support::{Backend, Client, TestServer};

on_both! {
    voice_membership_moves_mute_and_cleanup => voice_membership_moves_mute_and_cleanup_sqlite, voice_membership_moves_mute_and_cleanup_postgres;
    voice_signalling_is_relayed_within_a_channel_only => voice_signalling_is_relayed_within_a_channel_only_sqlite, voice_signalling_is_relayed_within_a_channel_only_postgres;
    bad_voice_input_gets_clear_errors => bad_voice_input_gets_clear_errors_sqlite, bad_voice_input_gets_clear_errors_postgres;
    simultaneous_joiners_learn_each_others_peer_ids => simultaneous_joiners_learn_each_others_peer_ids_sqlite, simultaneous_joiners_learn_each_others_peer_ids_postgres;
    joining_a_full_channel_fits_the_signal_rate_limit => joining_a_full_channel_fits_the_signal_rate_limit_sqlite, joining_a_full_channel_fits_the_signal_rate_limit_postgres;
}

/// A voice channel `lounge` that the `user` role may view and connect to.
async fn lounge(root: &mut Client) {
    let perms = json!({"view": ["user"], "send": ["user"]});
    let r =
        root.request(json!({"cmd": "channel_create", "name": "lounge", "type": "voice", "permissions": perms})).await;
    assert_eq!(r["cmd"], "channel_create", "{r}");
}

async fn join(c: &mut Client, peer: &str) -> Value {
    let r = c.request(json!({"cmd": "voice_join", "channel": "lounge", "peer_id": peer})).await;
    assert_eq!(r["cmd"], "voice_join", "{r}");
    r
}

fn voice_state_of(channels: &Value) -> Value {
    channels["val"].as_array().unwrap().iter().find(|c| c["name"] == "lounge").unwrap()["voice_state"].clone()
}

async fn voice_membership_moves_mute_and_cleanup(backend: Backend) {
    let server = TestServer::spawn_with(backend, |c| {
        c.voice.ice_servers = vec![confab::config::IceServer {
            urls: vec!["stun:127.0.0.1:3478".into()],
            username: None,
            credential: None,
        }];
    })
    .await;
    let mut root = server.member("root", &["owner", "user"]).await;
    lounge(&mut root).await;
    let mut alice = server.member("alice", &["user"]).await;
    let mut alice2 = server.login("alice", "correct horse").await;
    let mut bob = server.member("bob", &["user"]).await;

    let r = join(&mut bob, "peer-b").await;
    assert_eq!(r["participants"], json!([]));
    assert_eq!(r["ice_servers"], json!([{"urls": ["stun:127.0.0.1:3478"]}]));
    let r = join(&mut alice, "peer-a").await;
    assert_eq!(r["participants"], json!([{"username": "bob", "peer_id": "peer-b", "muted": false}]));
    // A participant sees the joiner's peer id; a viewer outside the channel does not; the
    // joining connection gets no event of its own.
    let seen = bob.recv_cmd("voice_user_joined").await;
    assert_eq!(seen["user"]["peer_id"], "peer-a");
    assert_eq!(seen["channel"], "lounge");
    for name in ["bob", "alice"] {
        let seen = root.recv_cmd("voice_user_joined").await;
        assert_eq!(seen["user"]["username"], name);
        assert!(seen["user"].get("peer_id").is_none(), "{seen}");
    }
    assert!(alice.drain().await.iter().all(|p| p["cmd"] != "voice_user_joined"));

    let channels = root.request(json!({"cmd": "channels_get"})).await;
    assert_eq!(
        voice_state_of(&channels),
        json!([{"username": "alice", "muted": false}, {"username": "bob", "muted": false}])
    );
    let outside = root.request(json!({"cmd": "voice_state", "channel": "lounge"})).await;
    assert!(outside["participants"].as_array().unwrap().iter().all(|p| p.get("peer_id").is_none()), "{outside}");
    let inside = bob.request(json!({"cmd": "voice_state", "channel": "lounge"})).await;
    assert_eq!(inside["participants"][0]["peer_id"], "peer-a");

    // Mute and unmute without a channel.
    let r = alice.request(json!({"cmd": "voice_mute"})).await;
    assert_eq!(r, json!({"cmd": "voice_mute", "channel": "lounge", "muted": true, "listener": r["listener"]}));
    let seen = bob.recv_cmd("voice_user_updated").await;
    assert_eq!(seen["user"]["muted"], true);
    assert_eq!(seen["user"]["peer_id"], "peer-a");
    assert_eq!(voice_state_of(&root.request(json!({"cmd": "channels_get"})).await)[0]["muted"], true);
    let r = alice.request(json!({"cmd": "voice_unmute"})).await;
    assert_eq!(r["muted"], false);

    // Joining from another connection moves the membership.
    join(&mut alice2, "peer-a2").await;
    let moved = alice.recv_cmd("voice_leave").await;
    assert_eq!(moved["channel"], "lounge");
    assert_eq!(bob.recv_cmd("voice_user_left").await["username"], "alice");
    assert_eq!(bob.recv_cmd("voice_user_joined").await["user"]["peer_id"], "peer-a2");
    let r = alice.request(json!({"cmd": "voice_signal", "to": "bob", "data": {"type": "offer"}})).await;
    assert_eq!(r["val"], "You are not in a voice channel", "the old connection no longer holds it");

    // Leaving, and a closed socket.
    let r = alice2.request(json!({"cmd": "voice_leave"})).await;
    assert_eq!(r["cmd"], "voice_leave");
    assert_eq!(r["channel"], "lounge");
    assert_eq!(bob.recv_cmd("voice_user_left").await["username"], "alice");
    root.drain().await;
    drop(bob);
    let left = root.recv_cmd("voice_user_left").await;
    assert_eq!(left["username"], "bob");
    assert_eq!(voice_state_of(&root.request(json!({"cmd": "channels_get"})).await), json!([]));
    server.stop().await;
}

async fn voice_signalling_is_relayed_within_a_channel_only(backend: Backend) {
    let server = TestServer::spawn_with(backend, |_| {}).await;
    let mut root = server.member("root", &["owner", "user"]).await;
    lounge(&mut root).await;
    let mut alice = server.member("alice", &["user"]).await;
    let mut bob = server.member("bob", &["user"]).await;
    join(&mut alice, "peer-a").await;
    join(&mut bob, "peer-b").await;
    let offer = json!({"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"});
    let r = alice.request(json!({"cmd": "voice_signal", "to": "bob", "data": offer})).await;
    assert_eq!(r["delivered"], true, "{r}");
    let got = bob.recv_cmd("voice_signal").await;
    assert_eq!(got["from"], "alice");
    assert_eq!(got["from_peer_id"], "peer-a");
    assert_eq!(got["channel"], "lounge");
    assert_eq!(got["data"], offer);
    let candidate = json!({"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0"});
    bob.request(json!({"cmd": "voice_signal", "to": "alice", "data": candidate})).await;
    assert_eq!(alice.recv_cmd("voice_signal").await["data"], candidate);
    // Nobody outside the channel sends or receives.
    let r = root.request(json!({"cmd": "voice_signal", "to": "bob", "data": offer})).await;
    assert_eq!(r["val"], "You are not in a voice channel");
    let r = alice.request(json!({"cmd": "voice_signal", "to": "root", "data": offer})).await;
    assert_eq!(r["val"], "Recipient is not in your voice channel");
    let r = alice.request(json!({"cmd": "voice_signal", "to": "alice", "data": offer})).await;
    assert_eq!(r["val"], "Recipient is not in your voice channel");
    let r = alice.request(json!({"cmd": "voice_signal", "to": "bob"})).await;
    assert_eq!(r["val"], "Signal data is required");
    let r = alice.request(json!({"cmd": "voice_signal", "data": offer})).await;
    assert_eq!(r["val"], "Recipient (to) is required");
    assert!(root.drain().await.iter().all(|p| p["cmd"] != "voice_signal"));
    server.stop().await;
}

async fn bad_voice_input_gets_clear_errors(backend: Backend) {
    let server = TestServer::spawn_with(backend, |_| {}).await;
    let mut root = server.member("root", &["owner", "user"]).await;
    lounge(&mut root).await;
    let mut alice = server.member("alice", &["user"]).await;
    let mut eve = server.member("eve", &[]).await;
    let cases = [
        (json!({"channel": "lounge"}), "Peer ID is required"),
        (json!({"channel": "lounge", "peer_id": ["x"]}), "Peer ID is required"),
        (json!({"channel": "lounge", "peer_id": "x".repeat(129)}), "Peer ID is required"),
        (json!({"peer_id": "p"}), "Channel name is required"),
        (json!({"channel": "general", "peer_id": "p"}), "This is not a voice channel"),
        (json!({"channel": "nope", "peer_id": "p"}), "You do not have permission to access this voice channel"),
    ];
    for (fields, text) in cases {
        let mut frame = fields.clone();
        frame["cmd"] = json!("voice_join");
        let r = alice.request(frame).await;
        assert_eq!(r["cmd"], "error", "{r}");
        assert_eq!(r["val"], text, "{fields}");
    }
    let r = eve.request(json!({"cmd": "voice_join", "channel": "lounge", "peer_id": "p"})).await;
    assert_eq!(r["val"], "You do not have permission to access this voice channel");
    for cmd in ["voice_leave", "voice_mute", "voice_unmute"] {
        let r = alice.request(json!({"cmd": cmd})).await;
        assert_eq!(r["val"], "You are not in a voice channel", "{cmd}");
        assert_eq!(r["code"], "not_found");
    }
    join(&mut alice, "peer-a").await;
    let r = alice.request(json!({"cmd": "voice_mute", "channel": "other"})).await;
    assert_eq!(r["val"], "You are not in this voice channel");
    let r = root.request(json!({"cmd": "channel_delete", "name": "lounge"})).await;
    assert_eq!(r["cmd"], "channel_delete", "{r}");
    let r = alice.request(json!({"cmd": "voice_mute"})).await;
    assert_eq!(r["val"], "Voice channel no longer exists");
    let r = alice.request(json!({"cmd": "voice_state", "channel": "general"})).await;
    assert_eq!(r["val"], "This is not a voice channel");
    server.stop().await;
}

/// Accounts that join one voice channel at the same instant must still each learn every other's
/// peer id, from the `voice_join` reply or from a `voice_user_joined` that carries it: a client
/// can only set up (or wait for) a WebRTC connection to a peer it knows. Reading the others and
/// adding the joiner used to be two steps, so two joins in between each other saw neither.
async fn simultaneous_joiners_learn_each_others_peer_ids(backend: Backend) {
    const USERS: usize = 6;
    const ROUNDS: usize = 15;
    let server = TestServer::spawn_with(backend, |_| {}).await;
    let mut root = server.member("root", &["owner", "user"]).await;
    lounge(&mut root).await;
    let names: Vec<String> = (0..USERS).map(|i| format!("u{i}")).collect();
    let mut clients = Vec::new();
    for name in &names {
        clients.push((name.clone(), server.member(name, &["user"]).await));
    }
    for round in 0..ROUNDS {
        let joins = clients.iter_mut().map(|(name, c)| async move {
            let frame = json!({"cmd": "voice_join", "channel": "lounge", "peer_id": format!("{name}-{round}")});
            let (reply, before) = c.request_seeing(frame).await;
            assert_eq!(reply["cmd"], "voice_join", "{reply}");
            (reply, before)
        });
        let replies = futures_util::future::join_all(joins).await;
        // Every join has been answered, so every announcement is queued: a ping flushes them.
        for ((name, c), (reply, before)) in clients.iter_mut().zip(replies) {
            let mut known: Vec<String> = reply["participants"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["peer_id"].as_str().unwrap().to_owned())
                .collect();
            for p in before.into_iter().chain(c.drain().await) {
                if p["cmd"] == "voice_user_joined" {
                    known.extend(p["user"]["peer_id"].as_str().map(str::to_owned));
                }
            }
            known.sort();
            known.dedup();
            let others: Vec<String> = names.iter().filter(|n| *n != name).map(|n| format!("{n}-{round}")).collect();
            assert_eq!(known, others, "round {round}: what {name} learnt");
        }
        for (_, c) in clients.iter_mut() {
            assert_eq!(c.request(json!({"cmd": "voice_leave"})).await["cmd"], "voice_leave");
        }
        for (_, c) in clients.iter_mut() {
            c.drain().await;
        }
    }
}

/// Joining a channel of five sends each an offer and its ICE candidates in one burst (a browser
/// finds several per peer: one per address and transport): with rate limits on, all of them go
/// through, and a flood far beyond that is still refused.
async fn joining_a_full_channel_fits_the_signal_rate_limit(backend: Backend) {
    const CANDIDATES: usize = 8;
    let server = TestServer::spawn_with(backend, |c| c.rate_limits.enabled = true).await;
    let mut root = server.member("root", &["owner", "user"]).await;
    lounge(&mut root).await;
    let mut others = Vec::new();
    for i in 0..5 {
        let mut c = server.member(&format!("p{i}"), &["user"]).await;
        join(&mut c, &format!("peer-{i}")).await;
        others.push(c);
    }
    let mut alice = server.member("alice", &["user"]).await;
    join(&mut alice, "peer-a").await;
    for i in 0..others.len() {
        let to = format!("p{i}");
        let r = alice.request(json!({"cmd": "voice_signal", "to": to, "data": {"type": "offer", "sdp": "v=0"}})).await;
        assert_eq!(r["delivered"], true, "{r}");
        for n in 0..CANDIDATES {
            let data = json!({"type": "candidate", "candidate": {"candidate": format!("candidate:{n}")}});
            let r = alice.request(json!({"cmd": "voice_signal", "to": to, "data": data})).await;
            assert_eq!(r["delivered"], true, "signal {n} to {to}: {r}");
        }
    }
    for (i, c) in others.iter_mut().enumerate() {
        let got = c.drain().await.into_iter().filter(|p| p["cmd"] == "voice_signal").count();
        assert_eq!(got, 1 + CANDIDATES, "p{i} got every signal");
    }
    // Still a limit: a flood of signals is refused before long.
    let mut refused = None;
    for n in 0..1000 {
        let r = alice.request(json!({"cmd": "voice_signal", "to": "p0", "data": {"n": n}})).await;
        if r["cmd"] == "rate_limit" {
            refused = Some(n);
            break;
        }
    }
    assert!(refused.is_some_and(|n| n < 400), "refused at {refused:?}");
    server.stop().await;
}
