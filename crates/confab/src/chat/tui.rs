//! The interactive client: finds the server and credentials (flags, environment, the token file, or
//! prompts), waits for the first `ready` on the plain terminal (so a wrong password is a prompt again,
//! not a broken screen), then runs the screen: keys and session events go through [`App`], the
//! effects go to the session, and the screen is redrawn after each.

use std::{
    io::{BufRead, IsTerminal, Write},
    path::PathBuf,
    time::{Duration, Instant},
};

use confab_client::{
    ClientError, Event, Link, Server, Session,
    auth::{self, Credentials, Tokens},
};
use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use futures_util::StreamExt;
use ratatui::{Terminal, backend::CrosstermBackend};
use tokio::sync::mpsc::UnboundedReceiver;

use super::{
    LoginArgs,
    app::{App, Effect},
    credentials::{self, DEFAULT_SERVER},
    stored::{self, Stored},
    terminal, view,
};

/// Wrong passwords allowed before giving up.
const ATTEMPTS: usize = 3;

/// Where the token file is and what it holds.
struct TokenFile {
    path: Option<PathBuf>,
    stored: Stored,
    server: String,
}

impl TokenFile {
    /// Keeps the newest refresh token of this server (the previous one is spent).
    fn remember(&mut self, tokens: &Tokens, fallback_user: &str) {
        let (Some(path), Some(refresh)) = (&self.path, &tokens.refresh_token) else { return };
        let username = tokens.username.clone().unwrap_or_else(|| fallback_user.to_owned());
        let login = stored::Login { username, refresh_token: refresh.clone() };
        self.stored.servers.insert(self.server.clone(), login);
        self.stored.last = Some(self.server.clone());
        // Not being able to store the token only means asking again next time.
        let _ = stored::save(path, &self.stored);
    }

    fn forget(&mut self) {
        if let Some(path) = &self.path
            && self.stored.servers.remove(&self.server).is_some()
        {
            let _ = stored::save(path, &self.stored);
        }
    }
}

/// `confab chat logout`: revokes the server's stored login at the server (so the token file, if
/// copied, is worth nothing) and then forgets it. A server that cannot be reached keeps the login
/// here, so that running it again later still revokes it.
pub fn logout(runtime: &tokio::runtime::Runtime, login: &LoginArgs) -> Result<(), ClientError> {
    let path = stored::default_path();
    let stored = path.as_deref().map(stored::load).unwrap_or_default();
    let url = login.server.clone().or_else(|| stored.last.clone()).unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let server = credentials::server_at(&url, login)?;
    let mut file = TokenFile { path, stored, server: server.http.clone() };
    let Some(saved) = file.stored.servers.get(&server.http).cloned() else {
        return Err(ClientError::Invalid(format!("no stored login for {}", server.http)));
    };
    runtime.block_on(auth::logout(&server.http_client()?, &server, &saved.refresh_token))?;
    file.forget();
    println!("Logged {} out of {}", saved.username, server.http);
    Ok(())
}

pub fn run(runtime: &tokio::runtime::Runtime, login: &LoginArgs) -> Result<(), ClientError> {
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        return Err(ClientError::Invalid(
            "the interactive client needs a terminal; scripts use `confab chat send` and `confab chat tail`".into(),
        ));
    }
    let path = stored::default_path();
    let stored = path.as_deref().map(stored::load).unwrap_or_default();
    let url = match (&login.server, &stored.last) {
        (Some(url), _) => url.clone(),
        (None, Some(last)) => last.clone(),
        (None, None) => prompt_line("Server", Some(DEFAULT_SERVER))?,
    };
    let server = credentials::server_at(&url, login)?;
    let mut file = TokenFile { path, stored, server: server.http.clone() };
    // Flags and environment first (a user without a password is asked for it), then the token file.
    let given = match (&login.user, &login.password, &login.token) {
        (Some(user), None, None) => Some(ask_password(user.clone())?),
        _ => credentials::given(login)?,
    };
    let (mut creds, mut from_file) = match given {
        Some(creds) => (creds, false),
        None => match file.stored.servers.get(&server.http) {
            Some(saved) => (Credentials::Token(saved.refresh_token.clone()), true),
            None => (ask_password(prompt_line("Username", None)?)?, false),
        },
    };
    runtime.block_on(async {
        let mut attempt = 1;
        loop {
            let (session, mut events) = Session::start(server.clone(), creds.clone())?;
            match first_ready(&mut events, &mut file, &server).await {
                Ok(ready) => return chat(&session, events, ready, &mut file, &url).await,
                Err(ClientError::Credentials(why)) if attempt < ATTEMPTS => {
                    if from_file {
                        eprintln!("The stored login for {} no longer works ({why}).", server.http);
                        file.forget();
                        from_file = false;
                    } else {
                        eprintln!("{why}");
                        attempt += 1;
                    }
                    let user = match &creds {
                        Credentials::Password { username, .. } => username.clone(),
                        Credentials::Token(_) => prompt_line("Username", None)?,
                    };
                    creds = ask_password(user)?;
                }
                Err(e) => return Err(e),
            }
        }
    })
}

/// Waits for the first `ready`, storing the token set on the way. A first connection that fails is an
/// error (the server is down or the URL wrong), not a retry loop behind a blank screen.
async fn first_ready(
    events: &mut UnboundedReceiver<Event>,
    file: &mut TokenFile,
    server: &Server,
) -> Result<Event, ClientError> {
    while let Some(event) = events.recv().await {
        match event {
            Event::Ready { .. } => return Ok(event),
            Event::Tokens(t) => file.remember(&t, ""),
            Event::Link(Link::Down { reason }) => {
                return Err(ClientError::Unreachable { url: server.http.clone(), detail: reason });
            }
            Event::Closed(e) => return Err(e.unwrap_or_else(|| ClientError::Invalid("the session ended".into()))),
            _ => {}
        }
    }
    Err(ClientError::Invalid("the session ended".into()))
}

fn io_error(e: std::io::Error) -> ClientError {
    ClientError::Invalid(format!("terminal: {e}"))
}

/// The screen, until the quit key or the end of the session.
async fn chat(
    session: &Session,
    mut events: UnboundedReceiver<Event>,
    ready: Event,
    file: &mut TokenFile,
    url: &str,
) -> Result<(), ClientError> {
    let mut app = App::new(url);
    let mut pending = app.on_event(ready, Instant::now());
    app.link = Link::Online;
    let _guard = terminal::Guard::enter().map_err(io_error)?;
    let mut screen = Terminal::new(CrosstermBackend::new(std::io::stdout())).map_err(io_error)?;
    screen.clear().map_err(io_error)?;
    let mut keys = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        for effect in pending.drain(..) {
            match effect {
                Effect::SendMessage(fields) => {
                    let nonce = session.send_message(fields.clone());
                    app.sending(nonce, &fields);
                }
                Effect::Request(frame) => session.request(frame),
                Effect::Quit => {
                    session.close();
                    // Let the close frame go out; the server then sees a clean goodbye.
                    let closed = async { while !matches!(events.recv().await, Some(Event::Closed(_)) | None) {} };
                    let _ = tokio::time::timeout(Duration::from_secs(1), closed).await;
                    return Ok(());
                }
            }
        }
        let mut max_scroll = 0;
        screen.draw(|f| max_scroll = view::render(&app, f, Instant::now())).map_err(io_error)?;
        pending = app.drawn(max_scroll);
        if !pending.is_empty() {
            continue;
        }
        pending = tokio::select! {
            key = keys.next() => match key {
                Some(Ok(TermEvent::Key(k))) if k.kind == KeyEventKind::Press => app.on_key(k, Instant::now()),
                Some(Ok(TermEvent::Paste(text))) => {
                    app.input.push_str(&text.replace(['\r', '\n'], " "));
                    Vec::new()
                }
                Some(Ok(_)) => Vec::new(),
                Some(Err(e)) => return Err(io_error(e)),
                None => return Ok(()),
            },
            event = events.recv() => match event {
                Some(Event::Tokens(t)) => {
                    file.remember(&t, &app.me);
                    Vec::new()
                }
                Some(Event::Closed(e)) => return e.map_or(Ok(()), Err),
                Some(event) => app.on_event(event, Instant::now()),
                None => return Ok(()),
            },
            _ = tick.tick() => {
                app.tick(Instant::now());
                Vec::new()
            }
        };
    }
}

/// Asks for one line on the terminal; an empty answer takes the default.
fn prompt_line(label: &str, default: Option<&str>) -> Result<String, ClientError> {
    loop {
        match default {
            Some(d) => eprint!("{label} [{d}]: "),
            None => eprint!("{label}: "),
        }
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line).map_err(io_error)?;
        if read == 0 {
            return Err(ClientError::Invalid("no answer on standard input".into()));
        }
        match (line.trim(), default) {
            ("", Some(d)) => return Ok(d.to_owned()),
            ("", None) => {}
            (answer, _) => return Ok(answer.to_owned()),
        }
    }
}

fn ask_password(username: String) -> Result<Credentials, ClientError> {
    match terminal::read_secret(&format!("Password for {username}: ")).map_err(io_error)? {
        Some(password) => Ok(Credentials::Password { username, password }),
        None => Err(ClientError::Invalid("login cancelled".into())),
    }
}
