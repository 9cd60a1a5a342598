//! Taking over the terminal and always giving it back: raw mode and the alternate screen are undone
//! when the guard is dropped (a normal exit or an error) and by a panic hook (a panic), so the shell
//! is never left in raw mode.

use std::io::Write;

use crossterm::{
    cursor::Show,
    event::{DisableBracketedPaste, EnableBracketedPaste},
    execute,
    terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode},
};

/// The terminal in raw mode on the alternate screen, for as long as this lives.
pub struct Guard(());

impl Guard {
    pub fn enter() -> std::io::Result<Guard> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        enable_raw_mode()?;
        let guard = Guard(());
        execute!(std::io::stdout(), EnterAlternateScreen, EnableBracketedPaste)?;
        Ok(guard)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves the alternate screen and raw mode; harmless when they were not entered.
fn restore() {
    let mut out = std::io::stdout();
    let _ = execute!(out, DisableBracketedPaste, LeaveAlternateScreen, Show);
    let _ = disable_raw_mode();
    let _ = out.flush();
}

/// Reads a line with nothing echoed (a password), in raw mode for the time of the prompt.
/// `None` when the user pressed Ctrl-C or Esc.
pub fn read_secret(prompt: &str) -> std::io::Result<Option<String>> {
    use crossterm::event::{Event, KeyCode, KeyEventKind, KeyModifiers, read};
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    enable_raw_mode()?;
    let mut secret = String::new();
    let result = loop {
        match read() {
            Ok(Event::Key(k)) if k.kind == KeyEventKind::Press => match k.code {
                KeyCode::Enter => break Ok(Some(secret)),
                KeyCode::Esc => break Ok(None),
                KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => break Ok(None),
                KeyCode::Char(c) => secret.push(c),
                KeyCode::Backspace => {
                    secret.pop();
                }
                _ => {}
            },
            Ok(Event::Paste(text)) => secret.push_str(text.trim_end_matches(['\r', '\n'])),
            Ok(_) => {}
            Err(e) => break Err(e),
        }
    };
    let _ = disable_raw_mode();
    eprintln!();
    result
}
