//! `confab chat` as scripts and people use it: `send` and `tail` as child processes against a real
//! server (across a restart of it), and the terminal UI in a real tmux.

use std::{
    io::BufRead,
    path::Path,
    process::{Child, Stdio},
};

use serde_json::{Value, json};

use crate::{
    cli::{command, confab},
    support::{TestServer, WAIT, free_port},
};

const PASSWORD: &str = "correct horse";

/// `confab chat …` as `user` against `server` (a URL), with the password from the environment.
fn chat(cwd: &Path, server: &str, user: &str, args: &[&str]) -> crate::cli::Run {
    let mut all = vec!["chat", "--server", server];
    all.extend_from_slice(args);
    confab(cwd, &all, &[("CONFAB_CHAT_USER", user), ("CONFAB_CHAT_PASSWORD", PASSWORD)], None)
}

/// `confab chat send` on a blocking thread (the server runs on this test's runtime).
async fn send(server: &str, user: &str, text: &str) -> Value {
    let (server, user, text) = (server.to_owned(), user.to_owned(), text.to_owned());
    let run = tokio::task::spawn_blocking(move || {
        let cwd = tempfile::tempdir().expect("tempdir");
        chat(cwd.path(), &server, &user, &["send", "--channel", "general", &text]).ok()
    })
    .await
    .expect("send thread");
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("send printed no JSON ({e}): {}", run.stdout))
}

/// A running `confab chat tail`, its lines collected by a thread.
struct Tail {
    child: Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    seen: Vec<Value>,
    _dir: tempfile::TempDir,
}

impl Tail {
    fn start(server: &str, args: &[&str]) -> Tail {
        let dir = tempfile::tempdir().expect("tempdir");
        let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
        let mut child = command(dir.path())
            .args(["chat", "--server", server, "tail", "--channel", "general"])
            .args(args)
            .env("CONFAB_CHAT_USER", "alice")
            .env("CONFAB_CHAT_PASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn tail");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Tail { child, lines, seen: Vec::new(), _dir: dir }
    }

    /// Reads lines until one holds `content`; every line must be a JSON object.
    async fn until(&mut self, content: &str) {
        let deadline = tokio::time::Instant::now() + WAIT * 3;
        while !self.seen.iter().any(|e| e["message"]["content"] == content) {
            let line = tokio::time::timeout_at(deadline, self.lines.recv()).await;
            let Ok(Some(line)) = line else {
                let stderr = std::fs::read_to_string(self._dir.path().join("stderr")).unwrap_or_default();
                panic!("tail did not print {content:?}; printed {:#?}\nstderr: {stderr}", self.seen);
            };
            self.seen.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")));
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_every_message_once_in_order_across_a_server_restart() {
    let server = TestServer::spawn().await;
    server.http_register("alice").await;
    server.http_register("bob").await;
    let url = server.url("");
    // Tail from the channel's seq now (the welcome message is before it), so no message sent
    // below can fall before the tail's start, however long the process takes to connect.
    let mut reader = server.login("alice", PASSWORD).await;
    let page = reader.request(json!({"cmd": "messages_get", "channel": "general"})).await;
    let start = page["seq"].as_u64().expect("seq").to_string();
    drop(reader);
    let mut tail = Tail::start(&url, &["--since-seq", &start]);

    let mut sent = Vec::new();
    for i in 1..=3 {
        sent.push(send(&url, "bob", &format!("before restart {i}")).await);
    }
    tail.until("before restart 3").await;

    let server = server.restart_in_place().await;
    for i in 1..=3 {
        sent.push(send(&url, "bob", &format!("after restart {i}")).await);
    }
    // The last message is a marker: anything repeated by the resume would have come before it.
    sent.push(send(&url, "bob", "marker").await);
    tail.until("marker").await;

    let contents: Vec<&str> = tail.seen.iter().map(|e| e["message"]["content"].as_str().unwrap()).collect();
    let expected: Vec<&str> = sent.iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(contents, expected, "every message once, in order");
    let seqs: Vec<u64> = tail.seen.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq increases: {seqs:?}");
    assert!(seqs[0] > start.parse::<u64>().unwrap());
    for (event, message) in tail.seen.iter().zip(&sent) {
        assert_eq!(event["cmd"], "message_new");
        assert_eq!(event["message"]["id"], message["id"], "send printed the stored message");
        assert!(event.get("replay").is_none(), "replayed and live events print alike: {event}");
    }
    drop(tail);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_with_a_state_file_continues_where_the_last_one_stopped() {
    let server = TestServer::spawn().await;
    server.http_register("alice").await;
    let url = server.url("");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("general.seq");
    std::fs::write(&state, "0\n").unwrap();
    let state_arg = state.to_str().unwrap();
    send(&url, "alice", "one").await;
    let mut first = Tail::start(&url, &["--state", state_arg]);
    first.until("one").await;
    assert!(first.seen.iter().any(|e| e["message"]["user"] == "originChats"), "from seq 0: the welcome too");
    let last = first.seen.last().unwrap()["seq"].as_u64().unwrap();
    // A line is printed, then its seq stored: wait for the file before stopping the tail.
    let deadline = std::time::Instant::now() + WAIT;
    while std::fs::read_to_string(&state).unwrap().trim() != last.to_string() {
        assert!(std::time::Instant::now() < deadline, "the state file never reached seq {last}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    drop(first);
    send(&url, "alice", "two").await;
    let mut second = Tail::start(&url, &["--state", state_arg]);
    second.until("two").await;
    let contents: Vec<&Value> = second.seen.iter().map(|e| &e["message"]["content"]).collect();
    assert_eq!(contents, vec!["two"], "only what came after the stored seq");
    drop(second);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_fails_clearly_on_bad_credentials_a_dead_server_and_an_unknown_channel() {
    let server = TestServer::spawn().await;
    server.http_register("alice").await;
    let url = server.url("");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let runs = tokio::task::spawn_blocking(move || {
        let cwd = tempfile::tempdir().unwrap();
        let cwd = cwd.path();
        let wrong = confab(
            cwd,
            &["chat", "--server", &url, "send", "hi"],
            &[("CONFAB_CHAT_USER", "alice"), ("CONFAB_CHAT_PASSWORD", "wrong password")],
            None,
        );
        let nobody = confab(cwd, &["chat", "--server", &url, "send", "hi"], &[], None);
        let down = chat(cwd, &dead, "alice", &["send", "hi"]);
        let unknown = chat(cwd, &url, "alice", &["send", "--channel", "nope", "hi"]);
        let unknown_tail = chat(cwd, &url, "alice", &["tail", "--channel", "nope"]);
        let first = chat(cwd, &url, "alice", &["send", "--nonce", "retry-1", "once"]).ok();
        let again = chat(cwd, &url, "alice", &["send", "--nonce", "retry-1", "once"]).ok();
        (wrong, nobody, down, unknown, unknown_tail, first, again)
    })
    .await
    .unwrap();
    let (wrong, nobody, down, unknown, unknown_tail, first, again) = runs;
    assert_eq!(wrong.fails_with("Invalid username or password").code(), Some(2));
    assert_eq!(nobody.fails_with("no credentials").code(), Some(2));
    assert_eq!(down.fails_with("cannot reach").code(), Some(4));
    assert_eq!(unknown.fails_with("Channel not found").code(), Some(3));
    assert_eq!(unknown_tail.fails_with("Channel not found").code(), Some(3));
    let (first, again): (Value, Value) =
        (serde_json::from_str(&first.stdout).unwrap(), serde_json::from_str(&again.stdout).unwrap());
    assert_eq!(first["id"], again["id"], "the same nonce stores the message once");
    server.stop().await;
}

/// A tmux server of the test's own (its own socket and configuration folder), ended on drop.
struct Tmux {
    socket: String,
    home: tempfile::TempDir,
}

impl Tmux {
    /// Starts a detached 100×30 session running `sh`.
    fn start() -> Tmux {
        let version = std::process::Command::new("tmux").arg("-V").output();
        assert!(
            version.is_ok_and(|o| o.status.success()),
            "tmux is required for the terminal tests (apt-get install tmux; .ci/run installs it)"
        );
        let tmux = Tmux {
            socket: format!("confab-test-{}", uuid::Uuid::now_v7().simple()),
            home: tempfile::tempdir().unwrap(),
        };
        tmux.run(&["-f", "/dev/null", "new-session", "-d", "-s", "chat", "-x", "100", "-y", "30", "sh"]);
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let mut cmd = std::process::Command::new("tmux");
        cmd.arg("-L").arg(&self.socket).args(args);
        // The pane's programs see a home of their own (the token file goes there) and none of the
        // test's CONFAB_* variables.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CONFAB_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("HOME", self.home.path()).env("XDG_CONFIG_HOME", self.home.path().join("config"));
        let out = cmd.output().expect("run tmux");
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "chat"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Types `text` literally.
    fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", "chat", "-l", text]);
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "chat"])
    }

    /// Polls the pane until `ready` holds for its text.
    async fn wait_until(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT * 2;
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(tokio::time::Instant::now() < deadline, "the pane never showed {what}:\n{screen}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    async fn wait_for(&self, text: &str) -> String {
        self.wait_until(text, |s| s.contains(text)).await
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux").args(["-L", &self.socket, "kill-server"]).output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_client_chats_live_and_gives_the_terminal_back() {
    let server = TestServer::spawn().await;
    server.http_register("alice").await;
    server.http_register("bob").await;
    let mut bob = server.login("bob", PASSWORD).await;
    let tmux = Tmux::start();
    let chat =
        format!("{} chat --server {} --user alice; echo \"exit=$?\"", env!("CARGO_BIN_EXE_confab"), server.url(""));
    tmux.type_text(&chat);
    tmux.keys(&["Enter"]);
    tmux.wait_for("Password for alice:").await;
    tmux.type_text(PASSWORD);
    tmux.keys(&["Enter"]);
    let screen =
        tmux.wait_until("#general, online", |s| s.contains("● online") && s.contains("Message #general")).await;
    assert!(screen.contains("│# general"), "{screen}");
    assert!(screen.contains("^C quit"), "the keys are shown: {screen}");
    assert_eq!(tmux.run(&["display", "-p", "-t", "chat", "#{alternate_on}"]).trim(), "1");

    // Alice types; bob's socket receives it and the pane shows it stored (no longer "sending…").
    tmux.type_text("hello from tmux");
    tmux.keys(&["Enter"]);
    let echo = bob.recv_cmd("message_new").await;
    assert_eq!(echo["message"]["content"], "hello from tmux");
    assert_eq!(echo["message"]["user"], "alice");
    tmux.wait_until("alice's stored message", |s| s.contains("alice: hello from tmux") && !s.contains("sending…"))
        .await;

    // Bob types and writes; the pane shows both live.
    bob.send(json!({"cmd": "typing", "channel": "general"})).await;
    tmux.wait_for("bob is typing…").await;
    bob.request(json!({"cmd": "message_new", "channel": "general", "content": "hi from bob"})).await;
    let screen = tmux.wait_for("bob: hi from bob").await;
    assert!(!screen.contains("bob is typing…"), "a message ends the typing notice: {screen}");

    // The quit key ends the program with 0 and leaves the alternate screen: the shell is back.
    tmux.keys(&["C-c"]);
    let screen = tmux.wait_for("exit=0").await;
    assert!(!screen.contains("● online"), "the chat screen is gone: {screen}");
    assert_eq!(tmux.run(&["display", "-p", "-t", "chat", "#{alternate_on}"]).trim(), "0");

    // The login was stored privately, so the next start asks nothing.
    let file = tmux.home.path().join("config/confab/chat.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    tmux.keys(&["clear", "Enter"]);
    tmux.wait_until("a cleared shell", |s| !s.contains("exit=0")).await;
    let again = format!("{} chat; echo \"exit=$?\"", env!("CARGO_BIN_EXE_confab"));
    tmux.type_text(&again);
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("alice: hello from tmux").await;
    assert!(!screen.contains("Password"), "{screen}");
    tmux.type_text("/quit");
    tmux.keys(&["Enter"]);
    tmux.wait_for("exit=0").await;

    // `logout` revokes the stored login at the server, then forgets it: the refresh token it held
    // no longer refreshes, and the next start asks for the password again.
    let stored: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let refresh = stored["servers"][server.url("")]["refresh_token"].as_str().expect("a stored login").to_owned();
    tmux.keys(&["clear", "Enter"]);
    tmux.wait_until("a cleared shell", |s| !s.contains("exit=0")).await;
    tmux.type_text(&format!("{} chat logout; echo \"exit=$?\"", env!("CARGO_BIN_EXE_confab")));
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("exit=0").await;
    assert!(screen.contains(&format!("Logged alice out of {}", server.url(""))), "{screen}");
    let (status, body) = server.post_json("/auth/refresh", json!({"refresh_token": refresh})).await;
    assert_eq!(status, 401, "the stored refresh token was revoked: {body}");
    let stored: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(stored["servers"].as_object().is_some_and(serde_json::Map::is_empty), "forgotten: {stored}");
    server.stop().await;
}

/// PgUp past the oldest loaded message reads the page before it from the server, page after page,
/// until the channel's first message (the welcome) and the beginning marker are on screen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_client_scrolls_back_to_the_beginning_of_a_long_channel() {
    let server = TestServer::spawn().await;
    server.http_register("alice").await;
    server.http_register("bob").await;
    let old = (0..250).map(|i| (format!("old message {i}"), Default::default()));
    crate::reads::append_many(&server.store, "general", "bob", old).await;
    let tmux = Tmux::start();
    let chat = format!(
        "CONFAB_CHAT_PASSWORD='{PASSWORD}' {} chat --server {} --user alice; echo \"exit=$?\"",
        env!("CARGO_BIN_EXE_confab"),
        server.url("")
    );
    tmux.type_text(&chat);
    tmux.keys(&["Enter"]);
    tmux.wait_until("the newest page", |s| s.contains("● online") && s.contains("old message")).await;
    // 251 one-line messages and 23 timeline rows: about 25 pages of 10 lines, two older requests.
    let mut presses = 0;
    let screen = loop {
        let screen = tmux.screen();
        if screen.contains("· the beginning of #general ·") {
            break screen;
        }
        assert!(presses < 60, "never reached the beginning:\n{screen}");
        tmux.keys(&["PPage"]);
        presses += 1;
        tmux.wait_until("the scroll to move or a page to load", |s| s != screen).await;
    };
    assert!(screen.contains(confab::store::bootstrap::WELCOME), "the first message is on screen:\n{screen}");
    assert!(presses >= 20, "the whole channel was scrolled through ({presses} presses)");
    tmux.keys(&["C-c"]);
    tmux.wait_for("exit=0").await;
    server.stop().await;
}
