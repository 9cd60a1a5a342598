//! Slash commands across a cluster (issue 16, item 3): a command registered by a connection on one
//! node is listed, judged for name clashes, called and answered from every node; it disappears
//! everywhere, announced once, when its connection closes or its node stops beating; a node that
//! starts later knows it.

use serde_json::{Value, json};

use crate::{
    cluster::{Broker, Kind, three_nodes, three_nodes_tuned},
    support::{Client, TestServer},
};

fn roll() -> Value {
    json!({"name": "roll", "description": "Roll dice", "options": [{"name": "sides", "description": "Sides", "type": "int"}]})
}

fn secret() -> Value {
    json!({"name": "secret", "description": "Only you see this", "ephemeral": true})
}

/// The names in a `slash_add` (commands) or `slash_remove` (names) list.
fn names(commands: &Value) -> Vec<&str> {
    let list = commands.as_array().unwrap_or_else(|| panic!("{commands}"));
    list.iter().map(|c| c.as_str().or_else(|| c["name"].as_str()).unwrap_or_else(|| panic!("{commands}"))).collect()
}

/// The registered (not built-in) commands `c`'s `slash_list` shows, with who registered each.
async fn listed(c: &mut Client) -> Vec<(String, String)> {
    let list = c.request(json!({"cmd": "slash_list"})).await;
    assert_eq!(list["cmd"], "slash_list", "{list}");
    list["commands"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["registeredBy"] != "originChats")
        .map(|c| (c["name"].as_str().unwrap().to_owned(), c["registeredBy"].as_str().unwrap().to_owned()))
        .collect()
}

/// Reads `c`'s packets until the `user_join` of `barrier` (a later entry of the same control log,
/// so every broadcast before it has arrived) and returns the ones whose `cmd` is in `cmds`.
async fn until_joined(c: &mut Client, barrier: &str, cmds: &[&str]) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let p = c.recv().await;
        if p["cmd"] == "user_join" && p["user"]["username"] == barrier {
            return seen;
        }
        if cmds.iter().any(|cmd| p["cmd"] == *cmd) {
            seen.push(p);
        }
    }
}

/// After `first` has received one `cmd` broadcast: neither it nor `other` receives another before
/// the `user_join` of `barrier`, registered on `node` now, while `other` receives exactly one.
async fn once(first: &mut Client, other: &mut Client, node: &TestServer, barrier: &str, cmd: &str) {
    let _barrier = node.register(barrier).await;
    let more = until_joined(first, barrier, &[cmd]).await;
    assert!(more.is_empty(), "a second {cmd}: {more:?}");
    let seen = until_joined(other, barrier, &[cmd]).await;
    assert_eq!(seen.len(), 1, "one {cmd} per node: {seen:?}");
}

fn call(command: &str, args: Value) -> Value {
    json!({"cmd": "slash_call", "channel": "general", "command": command, "args": args})
}

/// A bot's commands registered on node 1: announced once on every node, listed there, refused to
/// others on any node, called from node 2 and answered on node 1 (stored and ephemeral answers
/// reach the invoker on node 2), known to a node started afterwards, and gone everywhere, announced
/// once, when the bot's connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_registered_on_one_node_work_from_every_node() {
    let broker = Broker::start(Kind::Nats).await;
    let nodes = three_nodes(&broker, &[]).await;
    let mut alice = nodes[1].register("alice").await;
    let mut carol = nodes[2].register("carol").await;
    let mut dice = nodes[0].register("dice").await;

    let r = dice.request(json!({"cmd": "slash_register", "commands": [roll(), secret()]})).await;
    assert_eq!(r["val"], "2 commands registered successfully", "{r}");
    let added = alice.recv_cmd("slash_add").await;
    assert_eq!(names(&added["commands"]), ["roll", "secret"]);
    assert_eq!(added["commands"][0]["registeredBy"], "dice");
    once(&mut alice, &mut carol, &nodes[0], "barrier1", "slash_add").await;
    let by_dice = vec![("roll".to_owned(), "dice".to_owned()), ("secret".to_owned(), "dice".to_owned())];
    assert_eq!(listed(&mut alice).await, by_dice);
    assert_eq!(listed(&mut carol).await, by_dice);

    // Clashes are judged against every node's registrations.
    let mut mallory = nodes[2].register("mallory").await;
    let r = mallory.request(json!({"cmd": "slash_register", "commands": [roll()]})).await;
    assert_eq!(r["val"], "Slash command /roll is already registered by another user", "{r}");
    let mut dice_phone = nodes[1].login("dice", "correct horse").await;
    let other = json!({"name": "other", "description": ""});
    let r = dice_phone.request(json!({"cmd": "slash_register", "commands": [other]})).await;
    assert_eq!(r["val"], "You already have slash commands registered from another session", "{r}");

    // A call on node 2 reaches the handler on node 1; its stored answer reaches node 2 and 3.
    let reply = alice.request(call("roll", json!({"sides": 6}))).await;
    assert_eq!(reply["cmd"], "slash_call", "{reply}");
    assert_eq!(reply["val"]["commander"], "dice");
    let routed = dice.recv_cmd("slash_call").await;
    assert_eq!(routed["call_id"], reply["call_id"]);
    assert_eq!((routed["invokerUsername"].as_str(), routed["channel"].as_str()), (Some("alice"), Some("general")));
    let answer = dice
        .request(json!({"cmd": "slash_response", "channel": "general", "command": "roll", "response": "4",
            "call_id": reply["call_id"]}))
        .await;
    assert_eq!(answer["cmd"], "message_new", "{answer}");
    for c in [&mut alice, &mut carol] {
        let seen = c.recv_cmd("message_new").await;
        assert_eq!(seen["message"]["id"], answer["message"]["id"]);
        assert_eq!(seen["message"]["interaction"], json!({"command": "roll", "username": "alice"}));
    }
    // Answered once: a second response matches nothing.
    let again = dice
        .request(json!({"cmd": "slash_response", "channel": "general", "command": "roll", "response": "5",
            "call_id": reply["call_id"]}))
        .await;
    assert_eq!(again["val"], "No pending call matches this slash response", "{again}");

    // An ephemeral answer reaches the invoker on node 2, and nobody else.
    let reply = alice.request(call("secret", json!({}))).await;
    assert_eq!(dice.recv_cmd("slash_call").await["call_id"], reply["call_id"]);
    let ack = dice
        .request(json!({"cmd": "slash_response", "channel": "general", "command": "secret", "response": "psst",
            "call_id": reply["call_id"]}))
        .await;
    assert_eq!(ack["cmd"], "message_new", "{ack}");
    let seen = alice.recv_cmd("message_new").await;
    assert_eq!((seen["message"]["content"].as_str(), seen["ephemeral"].as_bool()), (Some("psst"), Some(true)));
    assert!(seen.get("seq").is_none(), "{seen}");
    // `/help` on node 3 lists node 1's commands; carol never got the ephemeral answer.
    let help = carol.request(call("help", json!({}))).await;
    let text = help["message"]["content"].as_str().unwrap_or_default();
    assert!(text.contains("/roll") && text.contains("/secret"), "{help}");
    let _barrier = nodes[0].register("barrier2").await;
    let messages = until_joined(&mut carol, "barrier2", &["message_new"]).await;
    assert!(messages.iter().all(|m| m["message"]["content"] != "psst"), "carol saw an ephemeral answer: {messages:?}");

    // A node started now knows the commands and routes its calls to node 1.
    let node4 = nodes[0].sibling("node4").await;
    let mut dave = node4.register("dave").await;
    assert_eq!(listed(&mut dave).await, by_dice);
    let reply = dave.request(call("roll", json!({"sides": 20}))).await;
    assert_eq!(dice.recv_cmd("slash_call").await["call_id"], reply["call_id"]);

    // The handler's connection closes: removed everywhere, announced once per node.
    drop(dice);
    let removed = alice.recv_cmd("slash_remove").await;
    let mut gone = names(&removed["commands"]);
    gone.sort_unstable();
    assert_eq!(gone, ["roll", "secret"]);
    once(&mut alice, &mut carol, &nodes[0], "barrier3", "slash_remove").await;
    assert_eq!(until_joined(&mut dave, "barrier3", &["slash_remove"]).await.len(), 1);
    for c in [&mut alice, &mut carol, &mut dave] {
        assert_eq!(listed(c).await, vec![]);
    }
    let refused = alice.request(call("roll", json!({"sides": 6}))).await;
    assert_eq!(refused["val"], "Unknown slash command: /roll", "{refused}");
    // The name is free again, on any node.
    let r = mallory.request(json!({"cmd": "slash_register", "commands": [roll()]})).await;
    assert_eq!(r["val"], "1 commands registered successfully", "{r}");
    drop(dice_phone);
    node4.stop().await;
    for node in nodes {
        node.stop().await;
    }
}

/// A node that stops beating takes its connections' commands with it: another node deletes them
/// and announces `slash_remove` once, and the names are free again. A call routed to a connection
/// that is gone gets an error from the handler's node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_commands_are_removed_everywhere() {
    let broker = Broker::start(Kind::Redis).await;
    let mut nodes = three_nodes_tuned(&broker, &[], |c| {
        c.cluster.heartbeat_ms = 100;
        c.cluster.node_ttl_ms = 1000;
    })
    .await;
    let mut alice = nodes[0].register("alice").await;
    let mut carol = nodes[2].register("carol").await;
    let mut dice = nodes[1].register("dice").await;
    let r = dice.request(json!({"cmd": "slash_register", "commands": [roll()]})).await;
    assert_eq!(r["val"], "1 commands registered successfully", "{r}");
    assert_eq!(names(&carol.recv_cmd("slash_add").await["commands"]), ["roll"]);

    // Node 2 stops: during shutdown its rows stay, until it is declared dead.
    nodes.remove(1).stop().await;
    dice.closed().await;
    let removed = alice.recv_cmd("slash_remove").await;
    assert_eq!(names(&removed["commands"]), ["roll"]);
    once(&mut alice, &mut carol, &nodes[0], "barrier", "slash_remove").await;
    for c in [&mut alice, &mut carol] {
        assert_eq!(listed(c).await, vec![]);
    }
    let mut mallory = nodes[1].register("mallory").await;
    let r = mallory.request(json!({"cmd": "slash_register", "commands": [roll()]})).await;
    assert_eq!(r["val"], "1 commands registered successfully", "{r}");

    // A registration whose connection on node 1 is gone (as between its close and its row's
    // removal): node 1 answers the call from node 3 with the error a single node gives.
    nodes[0]
        .raw_sql(
            "INSERT INTO cluster_slash (node_id, conn_id, user_id, username, commands) \
             VALUES ('node1', 999999, 'nobody', 'ghostbot', '[{\"name\": \"ghost\", \"description\": \"\"}]')",
        )
        .await;
    let reply = carol.request(call("ghost", json!({}))).await;
    assert_eq!((reply["cmd"].as_str(), reply["val"]["commander"].as_str()), (Some("slash_call"), Some("ghostbot")));
    let error = carol.recv_cmd("error").await;
    assert_eq!(error["val"], "Command handler for /ghost is not currently connected", "{error}");
    assert_eq!((error["src"].as_str(), error["code"].as_str()), (Some("slash_call"), Some("unavailable")));
    for node in nodes {
        node.stop().await;
    }
}
