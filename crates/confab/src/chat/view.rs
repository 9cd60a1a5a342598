//! Drawing the [`App`]: title bar with the connection, channel list with unread counts, the timeline
//! with replies and edits, the typing line, the input box and the help line.

use std::time::Instant;

use confab_client::Link;
use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Paragraph},
};

use super::app::{App, Compose, Msg, Older};

/// The keys, always on screen.
pub const HELP: &str =
    "Enter send · ^R reply · ^E edit · ↑↓ select · PgUp/PgDn scroll · Tab channel · Esc cancel · ^C quit";

/// Width of the channel list.
const SIDEBAR: u16 = 22;

/// Draws the screen; returns how many lines the timeline can scroll up (for [`App::drawn`]).
pub fn render(app: &App, frame: &mut Frame, now: Instant) -> usize {
    let [title, main, help] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(3), Constraint::Length(1)]).areas(frame.area());
    let [sidebar, chat] = Layout::horizontal([Constraint::Length(SIDEBAR), Constraint::Min(10)]).areas(main);
    let [timeline, typing, input] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(1), Constraint::Length(3)]).areas(chat);

    frame.render_widget(title_bar(app, title.width), title);
    frame.render_widget(channel_list(app), sidebar);
    let (timeline_text, max_scroll) = timeline_view(app, timeline);
    frame.render_widget(timeline_text, timeline);
    let names = app.typing_here(now);
    let typing_text = match names.as_slice() {
        [] => String::new(),
        [one] => format!("{one} is typing…"),
        [a, b] => format!("{a} and {b} are typing…"),
        _ => "several people are typing…".to_owned(),
    };
    frame.render_widget(Paragraph::new(typing_text).style(Style::new().fg(Color::DarkGray)), typing);

    let channel = app.channel().unwrap_or("");
    let heading = match &app.compose {
        Compose::New => format!(" Message #{channel} "),
        Compose::Reply { user, .. } => format!(" Reply to {user} (Esc cancels) "),
        Compose::Edit { .. } => " Edit your message (Esc cancels) ".to_owned(),
    };
    // The end of the line stays visible when it is longer than the box.
    let room = usize::from(input.width.saturating_sub(2)).max(1);
    let chars: Vec<char> = app.input.chars().collect();
    let shown: String = chars[chars.len().saturating_sub(room - 1)..].iter().collect();
    frame.render_widget(Paragraph::new(shown.clone()).block(Block::bordered().title(heading)), input);
    let cursor_x = input.x + 1 + u16::try_from(shown.chars().count()).unwrap_or(0);
    frame.set_cursor_position((cursor_x.min(input.right().saturating_sub(2)), input.y + 1));

    let help_line = match &app.notice {
        Some(notice) => Line::styled(notice.clone(), Style::new().fg(Color::Red)),
        None => Line::styled(HELP, Style::new().fg(Color::DarkGray)),
    };
    frame.render_widget(Paragraph::new(help_line), help);
    max_scroll
}

fn title_bar(app: &App, width: u16) -> Paragraph<'static> {
    let who = if app.me.is_empty() { String::new() } else { format!("{} @ ", app.me) };
    let left = format!(" confab chat · {who}{}", app.server);
    let (state, color) = match &app.link {
        Link::Online => ("● online".to_owned(), Color::Green),
        Link::Connecting { attempt: 0 } => ("◌ connecting…".to_owned(), Color::Yellow),
        Link::Connecting { attempt } => (format!("◌ reconnecting (attempt {})…", attempt + 1), Color::Yellow),
        Link::Down { .. } => ("✕ offline, retrying".to_owned(), Color::Red),
    };
    let pad = usize::from(width).saturating_sub(left.chars().count() + state.chars().count() + 1);
    let style = Style::new().add_modifier(Modifier::REVERSED);
    Paragraph::new(Line::from(vec![
        Span::styled(left, style),
        Span::styled(" ".repeat(pad), style),
        Span::styled(state, style.fg(color)),
        Span::styled(" ", style),
    ]))
}

fn channel_list(app: &App) -> Paragraph<'static> {
    let lines: Vec<Line> = app
        .channels
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let unread = if c.unread > 0 { format!(" ({})", c.unread) } else { String::new() };
            let text = format!("# {}{unread}", c.name);
            let mut style = Style::new();
            if c.unread > 0 {
                style = style.add_modifier(Modifier::BOLD);
            }
            if i == app.current {
                style = style.add_modifier(Modifier::REVERSED);
            }
            Line::styled(text, style)
        })
        .collect();
    Paragraph::new(lines).block(Block::bordered().title(" Channels "))
}

/// A colour per name, stable across runs, so a person is recognised at a glance.
fn name_color(name: &str) -> Color {
    const COLORS: [Color; 6] = [Color::Cyan, Color::Magenta, Color::Green, Color::Yellow, Color::Blue, Color::Red];
    let hash = name.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(usize::from(b)));
    COLORS[hash % COLORS.len()]
}

/// Splits `text` into rows of at most `width` characters (line breaks kept); continuation rows are
/// indented by two spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(4);
    let mut rows = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let mut start = 0;
        let mut first = n == 0;
        loop {
            let room = if first { width } else { width - 2 };
            let end = (start + room).min(chars.len());
            let piece: String = chars[start..end].iter().collect();
            rows.push(if first { piece } else { format!("  {piece}") });
            first = false;
            start = end;
            if start >= chars.len() {
                break;
            }
        }
    }
    rows
}

fn message_lines(m: &Msg, all: &[Msg], width: usize, selected: bool) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    if let Some((id, user)) = &m.reply_to {
        let quoted = all.iter().find(|x| &x.id == id).map(|x| x.content.as_str()).unwrap_or("…");
        let snippet: String = quoted.chars().take(width.saturating_sub(user.len() + 16)).collect();
        lines.push(Line::styled(format!("  ↳ reply to {user}: {snippet}"), Style::new().fg(Color::DarkGray)));
    }
    let edited = if m.edited { " (edited)" } else { "" };
    let text = format!("{}: {}{edited}", m.user, m.content);
    let name_len = m.user.chars().count() + 1;
    let base = if selected { Style::new().add_modifier(Modifier::REVERSED) } else { Style::new() };
    for (i, row) in wrap(&text, width).into_iter().enumerate() {
        if i == 0 {
            let (name, rest) = row.split_at(row.char_indices().nth(name_len).map_or(row.len(), |(b, _)| b));
            lines.push(Line::from(vec![
                Span::styled(name.to_owned(), base.fg(name_color(&m.user)).add_modifier(Modifier::BOLD)),
                Span::styled(rest.to_owned(), base),
            ]));
        } else {
            lines.push(Line::styled(row, base));
        }
    }
    lines
}

/// The timeline's visible lines and how far it can scroll up.
fn timeline_view(app: &App, area: Rect) -> (Paragraph<'static>, usize) {
    let width = usize::from(area.width);
    let timeline = app.timeline();
    let channel = app.channel().unwrap_or_default();
    let mut lines: Vec<Line> = Vec::new();
    // One line above the history in every state, so that a change of state moves nothing.
    let above = app.older().map(|older| match older {
        Older::More => "· older messages above ·".to_owned(),
        Older::Loading => "· loading older messages… ·".to_owned(),
        Older::Beginning => format!("· the beginning of #{channel} ·"),
    });
    if let Some(above) = above {
        lines.push(Line::styled(above, Style::new().fg(Color::DarkGray)));
    }
    for (i, m) in timeline.iter().enumerate() {
        lines.extend(message_lines(m, timeline, width, app.selected == Some(i)));
    }
    for p in app.pending.iter().filter(|p| p.channel == channel) {
        for row in wrap(&format!("{}: {} (sending…)", app.me, p.content), width) {
            lines.push(Line::styled(row, Style::new().fg(Color::DarkGray)));
        }
    }
    let height = usize::from(area.height);
    let max_scroll = lines.len().saturating_sub(height);
    let scroll = app.scroll.min(max_scroll);
    let end = lines.len() - scroll;
    let start = end.saturating_sub(height);
    let mut shown: Vec<Line> = lines.drain(start..end).collect();
    if scroll > 0
        && let Some(last) = shown.last_mut()
    {
        *last = Line::styled(format!("↓ {scroll} more lines below · PgDn"), Style::new().fg(Color::DarkGray));
    }
    (Paragraph::new(shown), max_scroll)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use crossterm::event::KeyCode;
    use ratatui::{Terminal, backend::TestBackend};
    use serde_json::json;

    use super::*;
    use crate::chat::app::tests::{ctrl, key, long_channel, message, signed_in};

    /// The screen as text rows.
    fn draw(app: &App, width: u16, height: u16, now: Instant) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal
            .draw(|f| {
                render(app, f, now);
            })
            .unwrap();
        let buffer = terminal.backend().buffer().clone();
        (0..height).map(|y| (0..width).map(|x| buffer[(x, y)].symbol()).collect::<String>()).collect()
    }

    fn row_with<'a>(rows: &'a [String], text: &str) -> &'a str {
        rows.iter().find(|r| r.contains(text)).unwrap_or_else(|| panic!("no row with {text:?}:\n{}", rows.join("\n")))
    }

    #[test]
    fn the_screen_shows_the_connection_channels_with_unreads_the_timeline_and_the_help() {
        let now = Instant::now();
        let mut app = signed_in(now);
        app.on_event(message("dev", 1, "d1", "bob", "in dev"), now);
        let rows = draw(&app, 100, 14, now);
        assert!(rows[0].starts_with(" confab chat · alice @ http://127.0.0.1:5613"), "{}", rows[0]);
        assert!(rows[0].trim_end().ends_with("● online"), "{}", rows[0]);
        assert!(row_with(&rows, "# general").starts_with("│# general"));
        assert!(row_with(&rows, "# dev").contains("# dev (1)"));
        // The newest message sits just above the typing line and the input box.
        let bob = rows.iter().position(|r| r.contains("bob: hello alice")).unwrap();
        assert_eq!(rows[bob + 1][..].split('│').nth(2).unwrap().trim_end(), "alice: hi bob");
        assert!(row_with(&rows, "Message #general").contains('┌'));
        row_with(&rows, "· the beginning of #general ·");
        assert_eq!(rows[13].trim_end(), HELP);
    }

    #[test]
    fn replies_edits_pending_sends_typing_and_reconnects_are_drawn() {
        let now = Instant::now();
        let mut app = signed_in(now);
        let reply = json!({"cmd":"message_new","channel":"general","thread_id":null,"seq":3,
            "message":{"id":"m3","user":"bob","content":"sure","seq":3,"reply_to":{"id":"m2","user":"alice"}}});
        app.on_event(confab_client::Event::Packet(reply), now);
        let edit = json!({"cmd":"message_edit","id":"m1","channel":"general","content":"hello again","seq":4});
        app.on_event(confab_client::Event::Packet(edit), now);
        app.sending("n".into(), &json!({"channel":"general","content":"on its way"}));
        let typing = json!({"cmd":"typing","channel":"general","user":"carol","thread_id":null});
        app.on_event(confab_client::Event::Packet(typing), now);
        app.on_event(confab_client::Event::Link(Link::Connecting { attempt: 2 }), now);
        app.on_key(ctrl('r'), now);
        let rows = draw(&app, 100, 16, now);
        row_with(&rows, "bob: hello again (edited)");
        row_with(&rows, "↳ reply to alice: hi bob");
        row_with(&rows, "alice: on its way (sending…)");
        row_with(&rows, "carol is typing…");
        row_with(&rows, "◌ reconnecting (attempt 3)…");
        row_with(&rows, "Reply to bob (Esc cancels)");
    }

    #[test]
    fn long_messages_wrap_and_page_up_shows_older_lines() {
        let now = Instant::now();
        let mut app = signed_in(now);
        for i in 0..30u64 {
            app.on_event(message("general", 10 + i, &format!("x{i}"), "bob", &format!("line {i}")), now);
        }
        app.on_event(message("general", 50, "long", "bob", &"word ".repeat(40)), now);
        let rows = draw(&app, 60, 14, now);
        assert!(!rows.iter().any(|r| r.contains("line 20")), "older lines are above the screen");
        let wrapped = rows.iter().filter(|r| r.contains("word")).count();
        assert!(wrapped >= 4, "a 200-character message takes several rows:\n{}", rows.join("\n"));
        app.on_key(key(KeyCode::PageUp), now);
        let rows = draw(&app, 60, 14, now);
        row_with(&rows, "line 20");
        assert!(row_with(&rows, "more lines below").contains("↓ 10 more lines below"), "{}", rows.join("\n"));
    }

    #[test]
    fn scrolled_to_the_top_the_timeline_says_it_is_loading_older_messages() {
        let now = Instant::now();
        let mut app = long_channel(now, 101, 200);
        let mut terminal = Terminal::new(TestBackend::new(80, 20)).unwrap();
        let mut max_scroll = 0;
        terminal.draw(|f| max_scroll = render(&app, f, now)).unwrap();
        assert_eq!(max_scroll, 101 - 14, "100 one-line messages and the line above them in a 14-line timeline");
        app.scroll = 1000;
        assert_eq!(app.drawn(max_scroll).len(), 1, "the page before is asked for");
        let rows = draw(&app, 80, 20, now);
        row_with(&rows, "· loading older messages… ·");
        row_with(&rows, "bob: #101");
    }

    #[test]
    fn a_refused_send_replaces_the_help_line_until_escape() {
        let now = Instant::now();
        let mut app = signed_in(now);
        app.notice = Some("not sent: Message too long".into());
        let rows = draw(&app, 80, 10, now);
        assert_eq!(rows[9].trim_end(), "not sent: Message too long");
        app.on_key(key(KeyCode::Esc), now);
        let rows = draw(&app, 80, 10, now);
        assert!(rows[9].starts_with("Enter send"));
    }

    #[test]
    fn wrapping_keeps_every_character() {
        let rows = wrap("abcdefghij\nkl", 4);
        assert_eq!(rows, ["abcd", "  ef", "  gh", "  ij", "  kl"]);
    }
}
