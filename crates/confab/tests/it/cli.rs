//! The `confab` binary as an operator uses it: `user` administration, `config` layering and
//! redaction, and a zero-configuration `serve` in an empty folder that stops cleanly on SIGTERM.

use std::{
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::Duration,
};

use confab::store::Location;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, protocol::CloseFrame};

use crate::support::{Client, WAIT, free_port, open_location, pg_schema, postgres_url, postgres_url_in};

/// How long a started server may take to answer `/healthz` (migrations on a slow, shared machine).
const START_WAIT: Duration = Duration::from_secs(60);

const PASSWORD: &str = "correct horse battery";

/// What one run of the binary did.
pub(crate) struct Run {
    status: ExitStatus,
    pub(crate) stdout: String,
    stderr: String,
}

impl Run {
    /// The exit status's code (`None` when a signal ended the process).
    pub(crate) fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub(crate) fn ok(self) -> Run {
        assert!(
            self.status.success(),
            "expected success, got {}:\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts a non-zero exit whose standard error contains `text`.
    pub(crate) fn fails_with(self, text: &str) -> Run {
        assert!(
            !self.status.success(),
            "expected failure, got success:\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        assert!(self.status.code().is_some(), "exited by a signal: {}", self.status);
        assert!(self.stderr.contains(text), "stderr does not mention {text:?}:\n{}", self.stderr);
        self
    }
}

/// The binary with `cwd` as working folder and none of the caller's `CONFAB_*` variables (the
/// server refuses variables that name no key, `CONFAB_TEST_POSTGRES_URL` among them).
pub(crate) fn command(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_confab"));
    cmd.current_dir(cwd);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CONFAB_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("RUST_LOG", "warn").env("RUST_BACKTRACE", "0").env("RUST_LIB_BACKTRACE", "0");
    cmd
}

/// Runs `confab args…` in `cwd` with extra environment and `stdin` piped in (empty if `None`).
/// A run that does not end within [`START_WAIT`] is killed and fails the test.
pub(crate) fn confab(cwd: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    let out = tempfile::tempdir().expect("tempdir");
    let (stdout, stderr) = (out.path().join("stdout"), out.path().join("stderr"));
    let mut cmd = command(cwd);
    cmd.args(args)
        .envs(env.iter().copied())
        .stdout(std::fs::File::create(&stdout).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .stdin(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn confab");
    {
        let mut input = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            // The process may exit before reading (e.g. on a configuration error).
            let _ = input.write_all(text.as_bytes());
        }
    }
    let deadline = std::time::Instant::now() + START_WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for confab") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`confab {}` still running after {START_WAIT:?}\nstderr: {}",
                args.join(" "),
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        status,
        stdout: std::fs::read_to_string(&stdout).unwrap_or_default(),
        stderr: std::fs::read_to_string(&stderr).unwrap_or_default(),
    }
}

/// `user list` parsed into (name, id, kind, roles) rows.
fn user_rows(run: &Run) -> Vec<(String, String, String, String)> {
    run.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            assert!(cols.len() >= 4, "user list line has name, id, kind, roles: {line:?}");
            (cols[0].to_owned(), cols[1].to_owned(), cols[2].to_owned(), cols[3].to_owned())
        })
        .collect()
}

/// The `user` scenario with `db` (e.g. `--data-dir X` or `--database URL`) before each command.
fn user_admin(cwd: &Path, db: &[&str]) -> Vec<(String, String, String, String)> {
    fn join<'a>(db: &[&'a str], args: &[&'a str]) -> Vec<&'a str> {
        db.iter().chain(args).copied().collect()
    }
    let with = |args: &[&'static str]| join(db, args);

    let added =
        confab(cwd, &with(&["user", "add", "Alice", "--role", "owner"]), &[], Some(&format!("{PASSWORD}\n"))).ok();
    assert!(added.stdout.contains("Alice"), "{}", added.stdout);
    confab(cwd, &with(&["user", "add", "bob"]), &[], Some(PASSWORD)).ok();

    let list = confab(cwd, &with(&["user", "list"]), &[], None).ok();
    let rows = user_rows(&list);
    let summary: Vec<(&str, &str, &str)> = rows.iter().map(|r| (r.0.as_str(), r.2.as_str(), r.3.trim())).collect();
    assert_eq!(summary, [("Alice", "local", "owner"), ("bob", "local", "user")], "{}", list.stdout);
    assert!(uuid::Uuid::parse_str(&rows[0].1).is_ok(), "second column is the account id: {}", list.stdout);

    confab(cwd, &with(&["user", "set-role", "alice", "moderator", "user"]), &[], None).ok();
    let list = confab(cwd, &with(&["user", "list"]), &[], None).ok();
    let rows = user_rows(&list);
    assert_eq!(rows[0].0, "Alice");
    assert_eq!(rows[0].3.trim(), "moderator,user", "roles highest first: {}", list.stdout);

    // Errors: a non-zero exit and a readable message, and nothing changed.
    confab(cwd, &with(&["user", "add", "carol", "--role", "wizard"]), &[], Some(PASSWORD))
        .fails_with("Role 'wizard' does not exist");
    confab(cwd, &with(&["user", "add", "bad name"]), &[], Some(PASSWORD))
        .fails_with("Username can only contain letters, numbers, hyphens, and underscores");
    confab(cwd, &with(&["user", "add", "x"]), &[], Some(PASSWORD)).fails_with("Username must be 2-32 characters");
    confab(cwd, &with(&["user", "add", "ALICE"]), &[], Some(PASSWORD)).fails_with("Username already taken");
    confab(cwd, &with(&["user", "add", "originChats"]), &[], Some(PASSWORD)).fails_with("Username already taken");
    confab(cwd, &with(&["user", "add", "dave"]), &[], Some("short\n")).fails_with("Password must be 8-128 characters");
    confab(cwd, &with(&["user", "set-role", "bob", "wizard"]), &[], None).fails_with("Role 'wizard' does not exist");
    confab(cwd, &with(&["user", "set-role", "nobody", "user"]), &[], None).fails_with("User not found");

    let list = confab(cwd, &with(&["user", "list"]), &[], None).ok();
    let rows = user_rows(&list);
    let summary: Vec<(&str, &str)> = rows.iter().map(|r| (r.0.as_str(), r.3.trim())).collect();
    assert_eq!(summary, [("Alice", "moderator,user"), ("bob", "user")], "{}", list.stdout);
    rows
}

#[test]
fn user_admin_sqlite() {
    let cwd = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("data");
    let data_arg = data_dir.to_str().unwrap();
    user_admin(cwd.path(), &["--data-dir", data_arg]);
    assert!(data_dir.join("confab.db").is_file(), "the database is in --data-dir");
    assert!(!cwd.path().join("confab-data").exists(), "nothing in the default data folder");
}

#[tokio::test]
async fn user_admin_postgres() {
    let schema = pg_schema().await;
    let url = postgres_url_in(&schema);
    let cwd = tempfile::tempdir().unwrap();
    let rows = {
        let cwd = cwd.path().to_owned();
        let url = url.clone();
        tokio::task::spawn_blocking(move || user_admin(&cwd, &["--database", &url])).await.expect("scenario")
    };
    assert!(!cwd.path().join("confab-data").join("confab.db").exists(), "no SQLite database with --database");

    // The accounts are in the schema named by the URL.
    let store = open_location(&Location::Postgres { url: postgres_url(), schema: Some(schema) }).await;
    let alice = store.user_by_name("alice").await.unwrap().expect("Alice is in the schema from the URL");
    assert_eq!(alice.id, rows[0].1);
    let roles = store.roles().await.unwrap();
    let mut names: Vec<String> = store
        .user_role_ids(&alice.id)
        .await
        .unwrap()
        .iter()
        .map(|id| roles.iter().find(|r| &r.id == id).unwrap().name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["moderator", "user"]);
    store.close().await;
}

fn parse_toml(run: &Run) -> toml::Table {
    toml::from_str(&run.stdout).unwrap_or_else(|e| panic!("`confab config` prints TOML ({e}):\n{}", run.stdout))
}

#[test]
fn config_defaults_and_redaction() {
    let cwd = tempfile::tempdir().unwrap();
    let shown = parse_toml(&confab(cwd.path(), &["config"], &[], None).ok());
    assert_eq!(shown["listen"].as_str(), Some("127.0.0.1:5613"));
    assert_eq!(shown["data_dir"].as_str(), Some("./confab-data"));
    assert_eq!(shown["database_url"].as_str(), Some(""));
    assert_eq!(shown["auth"]["jwt_secret"].as_str(), Some(""), "no default secret");
    assert!(!cwd.path().join("confab-data").exists(), "`confab config` creates nothing");

    let secret = "s3cr3t-".repeat(8);
    let token = "metrics-token-value-that-is-secret";
    let run = confab(
        cwd.path(),
        &["config", "--database", "postgres://bob:hunter2@db.example/confab"],
        &[("CONFAB_AUTH__JWT_SECRET", &secret), ("CONFAB_METRICS__TOKEN", token)],
        None,
    )
    .ok();
    for hidden in [secret.as_str(), token, "hunter2"] {
        assert!(!run.stdout.contains(hidden), "{hidden:?} is shown:\n{}", run.stdout);
        assert!(!run.stderr.contains(hidden), "{hidden:?} is logged:\n{}", run.stderr);
    }
    let shown = parse_toml(&run);
    assert_eq!(shown["auth"]["jwt_secret"].as_str(), Some("[redacted]"));
    assert_eq!(shown["metrics"]["token"].as_str(), Some("[redacted]"));
    assert_eq!(shown["database_url"].as_str(), Some("postgres://bob:[redacted]@db.example/confab"));
}

#[test]
fn config_layers_in_order() {
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(
        cwd.path().join("confab.toml"),
        "data_dir = \"/from/file\"\n\
         [server]\nname = \"FromFile\"\n\
         [security]\nheartbeat_s = 20\ndead_peer_s = 60\n\
         [limits]\npost_content = 111\n",
    )
    .unwrap();

    // default < file
    let shown = parse_toml(&confab(cwd.path(), &["config"], &[], None).ok());
    assert_eq!(shown["server"]["name"].as_str(), Some("FromFile"));
    assert_eq!(shown["server"]["owner"].as_str(), Some("Admin"), "keys the file leaves out keep their defaults");
    assert_eq!(shown["security"]["heartbeat_s"].as_integer(), Some(20));
    assert_eq!(shown["limits"]["post_content"].as_integer(), Some(111));
    assert_eq!(shown["data_dir"].as_str(), Some("/from/file"));

    // file < environment (nested keys with __)
    let env = [("CONFAB_LIMITS__POST_CONTENT", "222"), ("CONFAB_DATA_DIR", "/from/env"), ("CONFAB_AUTH_MODE", "mixed")];
    let shown = parse_toml(&confab(cwd.path(), &["config"], &env, None).ok());
    assert_eq!(shown["limits"]["post_content"].as_integer(), Some(222));
    assert_eq!(shown["data_dir"].as_str(), Some("/from/env"));
    assert_eq!(shown["auth_mode"].as_str(), Some("mixed"));
    assert_eq!(shown["server"]["name"].as_str(), Some("FromFile"));

    // environment < flags
    let shown = parse_toml(&confab(cwd.path(), &["config", "--data-dir", "/from/flag"], &env, None).ok());
    assert_eq!(shown["data_dir"].as_str(), Some("/from/flag"));
    assert_eq!(shown["limits"]["post_content"].as_integer(), Some(222));

    // --config names another file instead of ./confab.toml
    let other = tempfile::tempdir().unwrap();
    let other_file = other.path().join("other.toml");
    std::fs::write(&other_file, "[server]\nname = \"FromOther\"\n").unwrap();
    let shown = parse_toml(&confab(cwd.path(), &["config", "--config", other_file.to_str().unwrap()], &[], None).ok());
    assert_eq!(shown["server"]["name"].as_str(), Some("FromOther"));
    assert_eq!(shown["limits"]["post_content"].as_integer(), Some(2000), "./confab.toml is not read then");
    confab(cwd.path(), &["config", "--config", "/no/such/confab.toml"], &[], None).fails_with("does not exist");
}

/// A key no configuration has, in the file or the environment, stops the start: the message
/// names the key, where it came from, and the known key closest to it (a typo changed nothing
/// and said nothing before).
#[test]
fn unknown_keys_are_refused_with_the_closest_known_one() {
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(cwd.path().join("confab.toml"), "[security]\nheartbeat = 20\n").unwrap();
    let run = confab(cwd.path(), &["config"], &[], None).fails_with("unknown key `security.heartbeat`");
    assert!(run.stderr.contains("did you mean `security.heartbeat_s`?"), "{}", run.stderr);
    assert!(run.stderr.contains("confab.toml"), "{}", run.stderr);
    confab(cwd.path(), &["serve", "--listen", "127.0.0.1:0"], &[], None).fails_with("security.heartbeat");
    assert!(!cwd.path().join("confab-data").exists());

    std::fs::write(cwd.path().join("confab.toml"), "public_ulr = \"https://chat.example\"\n").unwrap();
    confab(cwd.path(), &["config"], &[], None).fails_with("did you mean `public_url`?");
    std::fs::write(cwd.path().join("confab.toml"), "[[bots]]\nname = \"helper\"\ntoken_hsh = \"x\"\n").unwrap();
    confab(cwd.path(), &["config"], &[], None).fails_with("did you mean `bots.0.token_hash`?");
    std::fs::remove_file(cwd.path().join("confab.toml")).unwrap();

    let run = confab(cwd.path(), &["config"], &[("CONFAB_RATE_LIMIT__ENABLED", "false")], None)
        .fails_with("unknown key `rate_limit`");
    assert!(run.stderr.contains("environment variable CONFAB_RATE_LIMIT"), "{}", run.stderr);
    assert!(run.stderr.contains("did you mean `rate_limits`?"), "{}", run.stderr);
    confab(cwd.path(), &["config"], &[("CONFAB_SECURITY__HEARTBEAT", "20")], None)
        .fails_with("did you mean `security.heartbeat_s`?");
    // Known keys still load.
    confab(cwd.path(), &["config"], &[("CONFAB_RATE_LIMITS__ENABLED", "false")], None).ok();
    // The test suites' own variables are not configuration.
    confab(cwd.path(), &["config"], &[("CONFAB_TEST_POSTGRES_URL", "postgres://x")], None).ok();
    // `confab chat`'s own variables, exported in the shell a user also serves from.
    confab(cwd.path(), &["config"], &[("CONFAB_CHAT_USER", "alice"), ("CONFAB_CHAT_PASSWORD", "x")], None).ok();
}

/// `attachments.storage = "s3"`: a missing key stops `serve` before it creates anything and is
/// named; the keys come from the environment too, and the secret is never shown.
#[test]
fn s3_storage_keys_from_the_environment() {
    let cwd = tempfile::tempdir().unwrap();
    let storage = ("CONFAB_ATTACHMENTS__STORAGE", "s3");
    let bucket = ("CONFAB_ATTACHMENTS__S3__BUCKET", "files");
    confab(cwd.path(), &["serve", "--listen", "127.0.0.1:0"], &[storage], None).fails_with("attachments.s3.bucket");
    confab(cwd.path(), &["serve", "--listen", "127.0.0.1:0"], &[storage, bucket], None)
        .fails_with("attachments.s3.access_key_id");
    assert!(!cwd.path().join("confab-data").exists());
    let secret = "s3-secret-from-the-environment";
    let env = [
        storage,
        bucket,
        ("CONFAB_ATTACHMENTS__S3__ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("CONFAB_ATTACHMENTS__S3__SECRET_ACCESS_KEY", secret),
    ];
    let run = confab(cwd.path(), &["config"], &env, None).ok();
    assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret), "{}{}", run.stdout, run.stderr);
    let shown = parse_toml(&run);
    assert_eq!(shown["attachments"]["storage"].as_str(), Some("s3"));
    assert_eq!(shown["attachments"]["s3"]["access_key_id"].as_str(), Some("AKIDEXAMPLE"));
    assert_eq!(shown["attachments"]["s3"]["secret_access_key"].as_str(), Some("[redacted]"));
}

#[test]
fn bad_configuration_names_the_key() {
    let cwd = tempfile::tempdir().unwrap();
    confab(cwd.path(), &["config"], &[("CONFAB_SECURITY__DEAD_PEER_S", "1")], None).fails_with("security.dead_peer_s");
    // A type error from the environment names the key as the variable spells it.
    let run = confab(cwd.path(), &["config"], &[("CONFAB_SECURITY__HEARTBEAT_S", "often")], None).fails_with("often");
    assert!(run.stderr.to_ascii_lowercase().contains("security.heartbeat_s"), "{}", run.stderr);
    confab(cwd.path(), &["config"], &[("CONFAB_AUTH__JWT_SECRET", "too-short")], None).fails_with("auth.jwt_secret");
    confab(cwd.path(), &["config", "--database", "mysql://x"], &[], None).fails_with("database_url");
    // The same checks stop `serve` before it creates anything.
    confab(cwd.path(), &["serve", "--listen", "127.0.0.1:0"], &[("CONFAB_SECURITY__DEAD_PEER_S", "1")], None)
        .fails_with("security.dead_peer_s");
    assert!(!cwd.path().join("confab-data").exists());

    std::fs::write(cwd.path().join("confab.toml"), "listen = \"nope\"\n").unwrap();
    confab(cwd.path(), &["config"], &[], None).fails_with("listen");
    std::fs::write(cwd.path().join("confab.toml"), "[security]\nframe_max = 10\n").unwrap();
    confab(cwd.path(), &["config"], &[], None).fails_with("security.frame_max");
    confab(cwd.path(), &["user", "list"], &[], None).fails_with("security.frame_max");
}

/// A `confab serve` child process; killed if the test fails before it stops.
pub(crate) struct Server {
    child: Child,
    port: u16,
    logs: tempfile::TempDir,
}

impl Server {
    async fn start(cwd: &Path, port: u16) -> Server {
        Self::start_with(cwd, port, &[]).await
    }

    /// `confab serve` with more arguments (e.g. `--database`).
    async fn start_with(cwd: &Path, port: u16, args: &[&str]) -> Server {
        Self::start_env(cwd, port, args, &[]).await
    }

    /// `confab serve` with more arguments and `CONFAB_*` variables (a cluster node's settings).
    pub(crate) async fn start_env(cwd: &Path, port: u16, args: &[&str], env: &[(&str, &str)]) -> Server {
        let logs = tempfile::tempdir().unwrap();
        let mut cmd = command(cwd);
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(logs.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(logs.path().join("stderr")).unwrap());
        let child = cmd.spawn().expect("spawn confab serve");
        let mut server = Server { child, port, logs };
        server.wait_healthy().await;
        server
    }

    pub(crate) fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.logs.path().join(name)).unwrap_or_default();
        format!("stdout:\n{}\nstderr:\n{}", read("stdout"), read("stderr"))
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn wait_healthy(&mut self) {
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + START_WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("confab serve exited early with {status}\n{}", self.logs());
            }
            if let Ok(r) = http.get(self.url("/healthz")).send().await {
                assert_eq!(r.status().as_u16(), 200, "{}", self.logs());
                let body: Value = r.json().await.expect("healthz JSON");
                assert_eq!(body, json!({"status": "ok"}));
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "server did not answer /healthz\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The server's WebSocket URL.
    pub(crate) fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    async fn connect(&self) -> Client {
        Client::connect(&self.ws_url()).await
    }

    /// Whether the process still runs.
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL (a crash: no graceful shutdown, no flush), and wait until the process is gone.
    pub(crate) fn kill(&mut self) {
        self.child.kill().expect("SIGKILL confab serve");
        self.child.wait().expect("wait for confab serve");
    }

    /// Sends SIGTERM and waits for the process to end.
    async fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let kill = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
        assert!(kill.success(), "kill -TERM {pid}");
        let deadline = tokio::time::Instant::now() + START_WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(tokio::time::Instant::now() < deadline, "server did not exit after SIGTERM\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads packets until the socket closes; returns them and the close frame.
async fn until_close(client: &mut Client) -> (Vec<Value>, Option<(u16, String)>) {
    let mut packets = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, client.ws.next()).await.expect("timed out waiting for close") {
            Some(Ok(Message::Text(t))) => packets.push(serde_json::from_str(t.as_str()).expect("JSON")),
            Some(Ok(Message::Close(Some(CloseFrame { code, reason })))) => {
                return (packets, Some((code.into(), reason.to_string())));
            }
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return (packets, None),
            Some(Ok(_)) => {}
        }
    }
}

async fn channel_names(client: &mut Client) -> Vec<String> {
    let reply = client.request(json!({"cmd": "channels_get"})).await;
    let list = reply["val"].as_array().unwrap_or_else(|| panic!("channels_get: {reply}"));
    list.iter().map(|c| c["name"].as_str().unwrap_or_default().to_owned()).collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[tokio::test]
async fn zero_config_serve_restart_and_sigterm() {
    let cwd = tempfile::tempdir().unwrap();
    let data: PathBuf = cwd.path().join("confab-data");
    let port = free_port();

    // First start in an empty folder: everything is created with safe defaults.
    let server = Server::start(cwd.path(), port).await;
    assert!(data.join("confab.db").is_file(), "./confab-data/confab.db created\n{}", server.logs());
    let key_path = data.join("jwt.key");
    assert!(key_path.is_file(), "./confab-data/jwt.key created");
    assert_eq!(mode(&key_path), 0o600, "the signing key is private");
    let key = std::fs::read(&key_path).unwrap();
    assert!(key.len() >= 64, "at least 256 bits of key");

    let mut alice = server.connect().await;
    alice.send(json!({"cmd": "register", "username": "Alice", "password": PASSWORD})).await;
    alice.expect_auth().await;
    assert_eq!(channel_names(&mut alice).await, ["general"]);
    let http = reqwest::Client::new();
    let login = http
        .post(server.url("/auth/login"))
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status().as_u16(), 200);
    let tokens: Value = login.json().await.unwrap();
    let access = tokens["access_token"].as_str().expect("access token").to_owned();

    // SIGTERM: sockets are told and closed with 1001, then the process exits with 0.
    let status = server.terminate().await;
    let (packets, close) = until_close(&mut alice).await;
    assert_eq!(close.map(|c| c.0), Some(1001), "close code on shutdown; packets: {packets:?}");
    assert!(
        packets.iter().any(|p| p["cmd"] == "disconnect" && p["reason"] == "Server shutting down"),
        "a disconnect packet precedes the close: {packets:?}"
    );
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM: {status}");

    // An administrator adds an account while the server is stopped (same defaults, same folder).
    confab(cwd.path(), &["user", "add", "Root", "--role", "owner"], &[], Some(PASSWORD)).ok();

    // Second start: same key, same database, no second `general`.
    let server = Server::start(cwd.path(), port).await;
    assert_eq!(std::fs::read(&key_path).unwrap(), key, "the signing key is reused");
    assert_eq!(mode(&key_path), 0o600);
    let mut again = server.connect().await;
    again.send(json!({"cmd": "auth", "token": access})).await;
    again.expect_auth().await;
    assert_eq!(channel_names(&mut again).await, ["general"], "general is not duplicated");
    let mut root = server.connect().await;
    root.send(json!({"cmd": "login", "username": "root", "password": PASSWORD})).await;
    let ready = root.expect_auth().await;
    assert_eq!(ready["user"]["username"], "Root");
    assert_eq!(ready["user"]["roles"], json!(["owner"]));
    let status = server.terminate().await;
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM: {status}");
}

/// The database holds password and token hashes: like the signing key, it is readable by its owner only.
#[tokio::test]
async fn zero_config_data_files_are_private() {
    let cwd = tempfile::tempdir().unwrap();
    let server = Server::start(cwd.path(), free_port()).await;
    let data = cwd.path().join("confab-data");
    let mut files = vec![data.join("jwt.key"), data.join("confab.db")];
    files.extend(["confab.db-wal", "confab.db-shm"].map(|f| data.join(f)).into_iter().filter(|p| p.exists()));
    let modes: Vec<(String, String)> = files
        .iter()
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), format!("{:o}", mode(p))))
        .collect();
    let status = server.terminate().await;
    assert_eq!(status.code(), Some(0));
    for (file, mode) in &modes {
        assert_eq!(u32::from_str_radix(mode, 8).unwrap() & 0o077, 0, "{file} has mode {mode}; all modes: {modes:?}");
    }
}

/// The first-run link's token from a server's standard output, if it printed one.
fn setup_token(server: &Server) -> Option<String> {
    let logs = server.logs();
    let prefix = format!("open http://127.0.0.1:{}/#setup=", server.port);
    let start = logs.find(&prefix)? + prefix.len();
    Some(logs[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect())
}

async fn post_setup(server: &Server, token: &str, name: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(server.url("/auth/setup"))
        .json(&json!({"token": token, "username": name, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// A server without an owner prints a one-time link; it creates the owner once, and no link is
/// printed once an owner exists. `args` and `fresh` pick two empty databases.
async fn setup_link(args: &[&str], fresh: &[&str]) {
    let cwd = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Server::start_with(cwd.path(), port, args).await;
    let token = setup_token(&server).unwrap_or_else(|| panic!("no setup link printed\n{}", server.logs()));
    assert_eq!(token.len(), 43, "{token}");
    let logs = server.logs();
    let stdout = logs.split("\nstderr:\n").next().unwrap_or_default();
    assert!(stdout.contains("No owner yet: open "), "the link is on standard output\n{logs}");

    let (status, body) = post_setup(&server, "not-the-token", "Boss").await;
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_token")), "{body}");
    // A refused name does not spend the link.
    let (status, body) = post_setup(&server, &token, "x").await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_username")), "{body}");
    let (status, body) = post_setup(&server, &token, "Boss").await;
    assert_eq!(status, 201, "{body}");
    assert!(body["access_token"].is_string() && body["refresh_token"].is_string(), "{body}");
    let mut boss = server.connect().await;
    boss.send(json!({"cmd": "auth", "token": body["access_token"]})).await;
    let ready = boss.expect_auth().await;
    assert_eq!((ready["user"]["username"].as_str(), &ready["user"]["roles"]), (Some("Boss"), &json!(["owner"])));
    // Spent: a second use is refused.
    let (status, body) = post_setup(&server, &token, "Other").await;
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_token")), "{body}");
    assert_eq!(server.terminate().await.code(), Some(0));

    // With an owner, a restart prints no link.
    let server = Server::start_with(cwd.path(), port, args).await;
    assert_eq!(setup_token(&server), None, "{}", server.logs());
    server.terminate().await;

    // An owner made with the CLI while the server runs voids the printed link.
    let cwd = tempfile::tempdir().unwrap();
    let server = Server::start_with(cwd.path(), port, fresh).await;
    let token = setup_token(&server).expect("a link on a fresh server");
    let mut cli = vec!["user", "add", "root", "--role", "owner"];
    cli.extend_from_slice(fresh);
    let dir = cwd.path().to_owned();
    let cli: Vec<String> = cli.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let cli: Vec<&str> = cli.iter().map(String::as_str).collect();
        confab(&dir, &cli, &[], Some(PASSWORD)).ok();
    })
    .await
    .unwrap();
    let (status, body) = post_setup(&server, &token, "Boss").await;
    assert_eq!((status, body["code"].as_str()), (409, Some("conflict")), "{body}");
    server.terminate().await;
}

#[tokio::test]
async fn setup_link_sqlite() {
    setup_link(&[], &[]).await;
}

#[tokio::test]
async fn setup_link_postgres() {
    let first = postgres_url_in(&pg_schema().await);
    let fresh = postgres_url_in(&pg_schema().await);
    setup_link(&["--database", &first], &["--database", &fresh]).await;
}

/// The first-run link creates the owner whatever the registration mode, while registering is
/// refused as the mode says.
#[tokio::test]
async fn setup_link_in_invite_and_closed_modes() {
    for (mode, refusal) in [("invite", "invite_required"), ("closed", "registration_disabled")] {
        let cwd = tempfile::tempdir().unwrap();
        std::fs::write(cwd.path().join("confab.toml"), format!("[auth]\nregistration = \"{mode}\"\n")).unwrap();
        let server = Server::start(cwd.path(), free_port()).await;
        let token = setup_token(&server).unwrap_or_else(|| panic!("no setup link printed\n{}", server.logs()));
        let r = reqwest::Client::new()
            .post(server.url("/auth/register"))
            .json(&json!({"username": "Eve", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "{mode}");
        assert_eq!(r.json::<Value>().await.unwrap()["code"], refusal, "{mode}");
        let (status, body) = post_setup(&server, &token, "Boss").await;
        assert_eq!(status, 201, "{mode}: {body}");
        let mut boss = server.connect().await;
        assert_eq!(boss.handshake["val"]["registration"], mode);
        boss.send(json!({"cmd": "auth", "token": body["access_token"]})).await;
        let ready = boss.expect_auth().await;
        assert_eq!(ready["user"]["roles"], json!(["owner"]), "{mode}");
        assert_eq!(server.terminate().await.code(), Some(0));
    }
}
