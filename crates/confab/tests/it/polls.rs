//! Polls (PROTOCOL §5.8, §6.9; media-features checklist 15–18): creation, votes and re-votes,
//! ending by the creator, a moderator or expiry (also across a restart), and history showing
//! the real counts.

use serde_json::{Value, json};

use crate::support::{Backend, Client, TestServer};

on_both! {
    create_vote_revote_and_history => create_vote_revote_and_history_sqlite, create_vote_revote_and_history_postgres;
    ending_by_creator_moderator_not_others => ending_by_creator_moderator_not_others_sqlite, ending_by_creator_moderator_not_others_postgres;
    expiry_ends_a_poll_also_after_a_restart => expiry_ends_a_poll_also_after_a_restart_sqlite, expiry_ends_a_poll_also_after_a_restart_postgres;
    bad_poll_input_gets_clear_errors => bad_poll_input_gets_clear_errors_sqlite, bad_poll_input_gets_clear_errors_postgres;
}

/// Creates a poll in `general`; returns the `message_new` broadcast the creator got and the reply.
async fn create(c: &mut Client, extra: Value) -> (Value, Value) {
    let mut frame = json!({"cmd": "poll_create", "channel": "general", "question": "Lunch?",
                           "options": [{"text": "Pizza", "emoji": "🍕"}, {"text": "Soup"}, "Salad"]});
    for (k, v) in extra.as_object().unwrap() {
        frame[k] = v.clone();
    }
    let (reply, before) = c.request_seeing(frame).await;
    assert_eq!(reply["cmd"], "poll_create", "{reply}");
    let new = before.into_iter().find(|p| p["cmd"] == "message_new").expect("message_new before the reply");
    (new, reply)
}

/// Votes per option id of a results object.
fn counts(results: &Value) -> Vec<(String, i64)> {
    results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["id"].as_str().unwrap().to_owned(), o["votes"].as_i64().unwrap()))
        .collect()
}

fn c3(a: i64, b: i64, c: i64) -> Vec<(String, i64)> {
    vec![("0".into(), a), ("1".into(), b), ("2".into(), c)]
}

async fn history_poll(c: &mut Client) -> Value {
    let page = c.request(json!({"cmd": "messages_get", "channel": "general"})).await;
    crate::support::written(&page)[0]["embeds"][0]["poll"].clone()
}

async fn create_vote_revote_and_history(backend: Backend) {
    let server = TestServer::spawn_with(backend, |_| {}).await;
    let mut alice = server.register("alice").await;
    let mut bob = server.register("bob").await;
    let (new, reply) = create(&mut alice, json!({"allow_multiselect": true, "duration_hours": 24})).await;
    let message = &new["message"];
    let poll = &message["embeds"][0]["poll"];
    assert_eq!(message["embeds"][0]["type"], "poll");
    assert_eq!(message["content"], "");
    assert_eq!(message["poll_id"], poll["id"]);
    assert_eq!(reply["poll_id"], poll["id"]);
    assert_eq!(reply["message_id"], message["id"]);
    assert_eq!(
        poll["options"],
        json!([{"id": "0", "text": "Pizza", "emoji": "🍕"}, {"id": "1", "text": "Soup"}, {"id": "2", "text": "Salad"}])
    );
    assert_eq!(poll["allow_multiselect"], true);
    let expires = poll["expires_at"].as_f64().unwrap();
    let created = message["timestamp"].as_f64().unwrap();
    assert!((expires - created - 86_400.0).abs() < 5.0, "{expires} {created}");
    // Bob sees the same message.
    let seen = bob.recv_cmd("message_new").await;
    assert_eq!(seen["message"]["embeds"][0]["poll"]["id"], poll["id"]);

    // Bob votes for two options; both see the update with the counts.
    let vote = json!({"cmd": "poll_vote", "message_id": message["id"], "option_ids": ["0", "2"]});
    let (r, before) = bob.request_seeing(vote).await;
    assert_eq!(r["cmd"], "poll_vote", "{r}");
    assert_eq!(counts(&r["results"]), c3(1, 0, 1));
    let update = before.iter().find(|p| p["cmd"] == "poll_vote_update").expect("update to the voter");
    assert_eq!(update["poll_id"], poll["id"]);
    assert_eq!(update["message_id"], message["id"]);
    assert_eq!(update["user"], "bob");
    assert!(update["seq"].as_i64().unwrap() > new["seq"].as_i64().unwrap());
    let update = alice.recv_cmd("poll_vote_update").await;
    assert_eq!(counts(&update["results"]), c3(1, 0, 1));
    assert_eq!(update["results"]["total_votes"], 1);
    assert_eq!(update["results"]["results"][0]["voters"], json!([]), "no voters before the end");

    // A re-vote with fewer options lowers the dropped one.
    let revote = json!({"cmd": "poll_vote", "poll_id": poll["id"], "option_ids": ["2"]});
    assert_eq!(counts(&bob.request(revote).await["results"]), c3(0, 0, 1));
    let r = alice.request(json!({"cmd": "poll_vote", "message_id": message["id"], "option_id": "2"})).await;
    assert_eq!(counts(&r["results"]), c3(0, 0, 2));
    assert_eq!(r["results"]["total_votes"], 2);

    // History shows the real counts and the reader's own choices.
    let shown = history_poll(&mut bob).await;
    assert_eq!(counts(&shown), c3(0, 0, 2));
    assert_eq!(shown["total_votes"], 2);
    assert_eq!(shown["ended"], false);
    assert_eq!(shown["user_votes"], json!(["2"]));
    let r = bob.request(json!({"cmd": "poll_results", "poll_id": poll["id"]})).await;
    assert_eq!(r["results"]["results"][2]["voted"], true);
    assert_eq!(r["results"]["results"][0]["voted"], false);
    let r = bob.request(json!({"cmd": "poll_get", "message_id": message["id"]})).await;
    assert_eq!(r["poll"]["user_votes"], json!(["2"]));
    assert_eq!(r["poll"]["question"], "Lunch?");

    // A single-select poll takes one option; a re-vote moves it.
    let (new, _) = create(&mut alice, json!({})).await;
    let id = new["message"]["id"].clone();
    let r = bob.request(json!({"cmd": "poll_vote", "message_id": id, "option_ids": ["0", "1"]})).await;
    assert_eq!(r["val"], "Only one option may be chosen in this poll");
    bob.request(json!({"cmd": "poll_vote", "message_id": id, "option_id": "0"})).await;
    let r = bob.request(json!({"cmd": "poll_vote", "message_id": id, "option_id": "1"})).await;
    assert_eq!(counts(&r["results"]), c3(0, 1, 0));
    assert_eq!(r["results"]["allow_multiselect"], false);

    // Votes are channel events: a resume from before them replays them.
    let mut carol = server.register("carol").await;
    let (r, replayed) = carol.request_seeing(json!({"cmd": "resume", "channels": {"general": new["seq"]}})).await;
    assert_eq!(r["cmd"], "resumed", "{r}");
    assert_eq!(replayed.iter().filter(|p| p["cmd"] == "poll_vote_update").count(), 2, "{replayed:?}");
    server.stop().await;
}

async fn ending_by_creator_moderator_not_others(backend: Backend) {
    let server = TestServer::spawn_with(backend, |_| {}).await;
    let mut alice = server.register("alice").await;
    let mut bob = server.register("bob").await;
    let mut mo = server.member("mo", &["user", "moderator"]).await;
    let (new, reply) = create(&mut alice, json!({})).await;
    bob.request(json!({"cmd": "poll_vote", "poll_id": reply["poll_id"], "option_id": "1"})).await;
    let r = bob.request(json!({"cmd": "poll_end", "message_id": new["message"]["id"]})).await;
    assert_eq!(r["cmd"], "error");
    assert_eq!(r["code"], "forbidden", "{r}");
    let (r, before) = alice.request_seeing(json!({"cmd": "poll_end", "poll_id": reply["poll_id"]})).await;
    assert_eq!(r["cmd"], "poll_end", "{r}");
    assert_eq!(r["results"]["ended"], true);
    assert!(before.iter().any(|p| p["cmd"] == "poll_end" && p["message_id"] == new["message"]["id"]));
    let ended = bob.recv_cmd("poll_end").await;
    assert_eq!(ended["results"]["ended"], true);
    assert_eq!(ended["results"]["results"][1]["voters"], json!(["bob"]));
    assert!(ended["results"]["ended_at"].as_f64().is_some());
    let r = bob.request(json!({"cmd": "poll_vote", "poll_id": reply["poll_id"], "option_id": "0"})).await;
    assert_eq!(r["val"], "Poll has ended");
    let r = alice.request(json!({"cmd": "poll_end", "poll_id": reply["poll_id"]})).await;
    assert_eq!(r["val"], "Poll has already ended");
    assert_eq!(history_poll(&mut bob).await["ended"], true);
    // A moderator ends someone else's poll.
    let (_, reply) = create(&mut alice, json!({})).await;
    let r = mo.request(json!({"cmd": "poll_end", "poll_id": reply["poll_id"]})).await;
    assert_eq!(r["cmd"], "poll_end", "{r}");
    server.stop().await;
}

async fn expiry_ends_a_poll_also_after_a_restart(backend: Backend) {
    let server = TestServer::spawn_with(backend, |_| {}).await;
    let mut alice = server.register("alice").await;
    // Ends about a second from now, while the server runs.
    let (new, _) = create(&mut alice, json!({"duration_hours": 0.0003})).await;
    let ended = alice.recv_cmd("poll_end").await;
    assert_eq!(ended["message_id"], new["message"]["id"]);
    assert_eq!(ended["results"]["ended"], true);
    // Expires while the server is down: ends right after the restart.
    let at = new["message"]["timestamp"].as_f64().unwrap();
    let (late, reply) = create(&mut alice, json!({"expires_at": at + 3.0})).await;
    drop(alice);
    let server = server.restart_after(std::time::Duration::from_secs(4)).await;
    let mut alice = server.login("alice", "correct horse").await;
    let poll = loop {
        let r = alice.request(json!({"cmd": "poll_get", "poll_id": reply["poll_id"]})).await;
        if r["poll"]["ended"] == true {
            break r["poll"].clone();
        }
        // The expiry task runs beside the first connection; wait for its broadcast.
        let ended = alice.recv_cmd("poll_end").await;
        assert_eq!(ended["message_id"], late["message"]["id"]);
    };
    assert!(poll["ended_at"].as_f64().unwrap() >= at + 3.0);
    let r = alice.request(json!({"cmd": "poll_vote", "poll_id": reply["poll_id"], "option_id": "0"})).await;
    assert_eq!(r["val"], "Poll has ended");
    server.stop().await;
}

async fn bad_poll_input_gets_clear_errors(backend: Backend) {
    let server = TestServer::spawn_with(backend, |_| {}).await;
    let mut alice = server.register("alice").await;
    let base = json!({"cmd": "poll_create", "channel": "general", "question": "Q", "options": ["a", "b"]});
    let with = |k: &str, v: Value| {
        let mut f = base.clone();
        if v.is_null() {
            f.as_object_mut().unwrap().remove(k);
        } else {
            f[k] = v;
        }
        f
    };
    let cases = [
        (with("channel", Value::Null), "Channel or thread_id is required"),
        (with("question", json!("  ")), "Question is required"),
        (with("question", json!("x".repeat(301))), "Question too long (max 300 characters)"),
        (with("options", json!(["a"])), "At least 2 options are required"),
        (with("options", json!("ab")), "At least 2 options are required"),
        (with("options", json!(vec!["a"; 11])), "Cannot have more than 10 options"),
        (with("options", json!(["a", {"emoji": "x"}])), "Option 1 must have 'text'"),
        (with("options", json!([{"text": "a", "id": "x"}, {"text": "b", "id": "x"}])), "Duplicate option id"),
        (with("channel", json!("nope")), "Channel not found"),
        (with("duration_hours", json!(0)), "duration_hours must be a number in (0, 720]"),
        (with("duration_hours", json!("soon")), "duration_hours must be a number in (0, 720]"),
        (with("allow_multiselect", json!("yes")), "allow_multiselect must be a boolean"),
    ];
    for (frame, text) in cases {
        let r = alice.request(frame.clone()).await;
        assert_eq!(r["cmd"], "error", "{frame}: {r}");
        assert_eq!(r["val"], text, "{frame}");
    }
    let (_, reply) = create(&mut alice, json!({})).await;
    let id = &reply["poll_id"];
    let votes = [
        (json!({"option_id": "0"}), "poll_id or message_id is required"),
        (json!({"poll_id": "nope", "option_id": "0"}), "Poll not found"),
        (json!({"poll_id": id}), "option_id or option_ids is required"),
        (json!({"poll_id": id, "option_ids": []}), "option_id or option_ids is required"),
        (json!({"poll_id": id, "option_id": "9"}), "Invalid option: 9"),
        (json!({"poll_id": id, "option_ids": [{"x": 1}]}), "Invalid option: {\"x\":1}"),
    ];
    for (fields, text) in votes {
        let mut frame = fields.clone();
        frame["cmd"] = json!("poll_vote");
        let r = alice.request(frame).await;
        assert_eq!(r["val"], text, "{fields}: {r}");
    }
    // Someone who cannot view the channel cannot vote.
    let mut eve = server.member("eve", &[]).await;
    let r = eve.request(json!({"cmd": "poll_vote", "poll_id": id, "option_id": "0"})).await;
    assert_eq!(r["val"], "You do not have permission to view this poll", "{r}");
    let r =
        eve.request(json!({"cmd": "poll_create", "channel": "general", "question": "Q", "options": ["a", "b"]})).await;
    assert_eq!(r["val"], "You do not have permission to send messages in this channel", "{r}");
    // Deleting the message removes the poll.
    let r = alice.request(json!({"cmd": "message_delete", "channel": "general", "id": reply["message_id"]})).await;
    assert_eq!(r["cmd"], "message_delete", "{r}");
    let r = alice.request(json!({"cmd": "poll_vote", "poll_id": id, "option_id": "0"})).await;
    assert_eq!(r["val"], "Poll not found");
    server.stop().await;
}
