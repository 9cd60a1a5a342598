//! The `confab` binary: `serve`, `config`, `migrate`, the `user`, `token` and `bot` administration
//! commands, and `chat`, the terminal client.

mod chat;

use std::{
    io::{IsTerminal, Read, Write},
    path::PathBuf,
    sync::Arc,
};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use confab::config::{Config, Overrides};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "confab", version, about = "originChats-compatible chat server")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// The server's commands, and the client.
#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Server(ServerCommand),
    /// Chat in the terminal; `chat send` and `chat tail` for scripts.
    Chat(chat::ChatArgs),
}

#[derive(Args)]
struct Global {
    /// Configuration file (default: ./confab.toml if it exists).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data folder (SQLite database, signing key).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Database URL: empty for SQLite in the data folder, or postgres://…
    #[arg(long = "database", global = true)]
    database_url: Option<String>,
}

#[derive(Subcommand)]
enum ServerCommand {
    /// Run the server.
    Serve {
        /// Listen address, e.g. 127.0.0.1:5613.
        #[arg(long)]
        listen: Option<String>,
        /// Public base URL, e.g. https://chat.example.com.
        #[arg(long)]
        public_url: Option<String>,
        /// Development mode: conveniences that must never run in production.
        #[arg(long)]
        dev: bool,
    },
    /// Print the effective configuration, secrets redacted.
    Config,
    /// Apply database migrations and create the default roles and channel, then exit.
    Migrate,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage SAUTH2 generic tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage bot accounts.
    #[command(subcommand)]
    Bot(BotCommand),
}

#[derive(Subcommand)]
enum BotCommand {
    /// Create a bot account. Its token is printed once; only its digest is stored.
    Add {
        name: String,
        /// A role to give (repeatable); default: auth.default_roles.
        #[arg(long = "role")]
        roles: Vec<String>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Issue a generic token for USER (created as a local account without a password if needed).
    /// The token is printed once; only its digest is stored.
    Issue { user: String },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a local account. The password is read from standard input when it is not a terminal.
    Add {
        name: String,
        /// A role to give (repeatable); default: auth.default_roles.
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// List accounts: name, id, kind, roles.
    List,
    /// Set an account's roles to exactly the given ones.
    SetRole {
        name: String,
        #[arg(required = true)]
        roles: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let Cli { global, command } = Cli::parse();
    let command = match command {
        // The client reads no server configuration and logs nothing (its screen is the terminal).
        Command::Chat(args) => std::process::exit(chat::main(args)),
        Command::Server(command) => command,
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(main_async(global, command))
}

async fn main_async(global: Global, command: ServerCommand) -> anyhow::Result<()> {
    let mut overrides = Overrides {
        data_dir: global.data_dir.clone(),
        database_url: global.database_url.clone(),
        ..Overrides::default()
    };
    let mut dev = false;
    if let ServerCommand::Serve { listen, public_url, dev: d } = &command {
        overrides.listen = listen.clone();
        overrides.public_url = public_url.clone();
        dev = *d;
    }
    let mut config = Config::load(global.config.as_deref(), &overrides)?;
    config.dev = dev;
    match command {
        ServerCommand::Serve { .. } => serve(config).await,
        ServerCommand::Config => {
            print!("{}", config.redacted_toml());
            Ok(())
        }
        ServerCommand::Migrate => {
            let store = confab::open_store(&config, Arc::default()).await?;
            store.close().await;
            println!("database is migrated");
            Ok(())
        }
        ServerCommand::Token(TokenCommand::Issue { user }) => {
            let store = confab::open_store(&config, Arc::default()).await?;
            let out = confab::admin::token_issue(&store, &config, &user, None).await;
            store.close().await;
            let (name, token) = out.map_err(|e| anyhow::anyhow!("{}", e.text()))?;
            eprintln!("generic token for {name} (shown once):");
            println!("{token}");
            Ok(())
        }
        ServerCommand::Bot(BotCommand::Add { name, roles }) => {
            let store = confab::open_store(&config, Arc::default()).await?;
            let out = confab::admin::bot_add(&store, &config, &name, &roles).await;
            store.close().await;
            let (bot, token) = out.map_err(|e| anyhow::anyhow!("{}", e.text()))?;
            eprintln!("bot {} ({}) created; its token (shown once):", bot.username, bot.id);
            println!("{token}");
            Ok(())
        }
        ServerCommand::User(cmd) => {
            let store = confab::open_store(&config, Arc::default()).await?;
            let out = match cmd {
                UserCommand::Add { name, roles } => {
                    let password = read_password()?;
                    confab::admin::user_add(&store, &config, &name, &roles, &password).await
                }
                UserCommand::List => confab::admin::user_list(&store).await,
                UserCommand::SetRole { name, roles } => confab::admin::user_set_roles(&store, &name, &roles).await,
            };
            store.close().await;
            let out = out.map_err(|e| anyhow::anyhow!("{}", e.text()))?;
            println!("{}", out.trim_end());
            Ok(())
        }
    }
}

/// The password for `user add`: a prompt on a terminal, otherwise all of standard input
/// without its final line break.
fn read_password() -> anyhow::Result<String> {
    let mut input = String::new();
    if std::io::stdin().is_terminal() {
        eprint!("Password (shown as typed): ");
        std::io::stderr().flush()?;
        std::io::stdin().read_line(&mut input)?;
    } else {
        std::io::stdin().read_to_string(&mut input)?;
    }
    let trimmed = input.strip_suffix('\n').unwrap_or(&input);
    Ok(trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    if config.dev {
        eprintln!(
            "WARNING: --dev is on. Development conveniences are enabled, including GET /test-token, which hands \
             out a ten-year access token for the account 'user' (password 'password'); never use this in production."
        );
    }
    let listener =
        tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal as unix_signal};
        let (Ok(mut term), Ok(mut int)) = (unix_signal(SignalKind::terminate()), unix_signal(SignalKind::interrupt()))
        else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutting down");
        signal.cancel();
    });
    confab::run(listener, config, shutdown).await
}
