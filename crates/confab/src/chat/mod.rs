//! `confab chat`: the terminal client (interactive, [`tui`]) and its script mode (`send`, `tail`,
//! [`script`]), both on the `confab-client` session. The server's configuration plays no part here:
//! a client reads only its flags, `CONFAB_CHAT_*` variables (which the server's configuration loader
//! leaves alone) and its stored token file ([`stored`]).

mod app;
mod credentials;
mod script;
mod stored;
mod terminal;
mod tui;
mod view;

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// Options of `confab chat`.
#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    login: LoginArgs,
    #[command(subcommand)]
    mode: Option<Mode>,
}

/// Where to connect and as whom. Flags win over the environment.
#[derive(Args, Clone)]
pub struct LoginArgs {
    /// Server URL, e.g. http://127.0.0.1:5613 or https://chat.example.com.
    #[arg(long, env = "CONFAB_CHAT_SERVER", global = true)]
    server: Option<String>,
    /// PEM file of a CA (or a self-signed certificate) to trust for an https:// server, beside the
    /// usual public roots.
    #[arg(long, env = "CONFAB_CHAT_CA_CERT", global = true)]
    ca_cert: Option<PathBuf>,
    /// Account name (the password is asked for, or read from CONFAB_CHAT_PASSWORD).
    #[arg(long, env = "CONFAB_CHAT_USER", global = true)]
    user: Option<String>,
    /// Password; prefer the environment variable (a flag is visible to other local users).
    #[arg(long, env = "CONFAB_CHAT_PASSWORD", hide_env_values = true, global = true)]
    password: Option<String>,
    /// An access token (JWT) or a refresh token instead of a password.
    #[arg(long, env = "CONFAB_CHAT_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum Mode {
    /// Send one message; exits 0 once the server has stored it, and prints it as a JSON line.
    Send {
        /// Channel to send to.
        #[arg(long, default_value = "general")]
        channel: String,
        /// Id of the message to reply to.
        #[arg(long)]
        reply_to: Option<String>,
        /// Idempotency key: running the same send again with the same nonce (within ten minutes)
        /// stores the message once.
        #[arg(long)]
        nonce: Option<String>,
        /// The text; `-` reads standard input.
        text: String,
    },
    /// Print a channel's events as JSON Lines (one event a line), following it across reconnects.
    Tail {
        /// Channel to follow.
        #[arg(long, default_value = "general")]
        channel: String,
        /// Start after this seq (0: everything still kept); default: from now on.
        #[arg(long, conflicts_with = "state")]
        since_seq: Option<u64>,
        /// File holding the last printed seq: read at start, rewritten after every line, so a
        /// restarted tail continues where the last one stopped.
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Sign out of the server: revoke the stored login at the server (its refresh token and the
    /// whole rotation family) and forget it here.
    Logout,
}

/// Runs `confab chat`; returns the process exit status (0 ok, 1 other, 2 credentials, 3 refused
/// by the server, 4 server unreachable).
pub fn main(args: ChatArgs) -> i32 {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("confab chat: starting the runtime: {e}");
            return 1;
        }
    };
    let (name, result) = match args.mode {
        Some(Mode::Send { channel, reply_to, nonce, text }) => {
            ("send", runtime.block_on(script::send(&args.login, &channel, reply_to, nonce, &text)))
        }
        Some(Mode::Tail { channel, since_seq, state }) => {
            ("tail", runtime.block_on(script::tail(&args.login, &channel, since_seq, state.as_deref())))
        }
        Some(Mode::Logout) => ("logout", tui::logout(&runtime, &args.login)),
        None => ("chat", tui::run(&runtime, &args.login)),
    };
    // Pending tasks (a session's socket) end with the runtime, without waiting for them.
    runtime.shutdown_background();
    match result {
        Ok(()) => 0,
        Err(e) => {
            let prefix = if name == "chat" { "confab chat".to_owned() } else { format!("confab chat {name}") };
            eprintln!("{prefix}: {e}");
            e.exit_code()
        }
    }
}
