//! The terminal client's state and how keys and session events change it. No terminal and no
//! socket here: [`App::on_key`] and [`App::on_event`] return [`Effect`]s that the loop in
//! [`super::tui`] carries out, so every behaviour is a unit test away.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use confab_client::{Event, Link};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::{Value, json};

/// How long "… is typing" stays after a `typing` event (clients send one every few seconds).
const TYPING_SHOWN: Duration = Duration::from_secs(5);
/// At most one `typing` frame per this interval while the user types.
const TYPING_EVERY: Duration = Duration::from_secs(3);
/// Lines scrolled by PageUp / PageDown.
pub const PAGE: usize = 10;
/// Messages per history request; a shorter page means the channel's beginning was reached.
const HISTORY_PAGE: usize = 100;

/// What the loop must do for the state's sake.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// `message_new` with these fields through the session's outbox; report the nonce back with
    /// [`App::sending`].
    SendMessage(Value),
    /// Any other frame.
    Request(Value),
    /// Leave the program.
    Quit,
}

/// A text channel in the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelEntry {
    pub name: String,
    pub unread: u64,
}

/// A stored message as the timeline shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub id: String,
    pub user: String,
    pub content: String,
    pub seq: u64,
    /// The replied-to message's id and author.
    pub reply_to: Option<(String, String)>,
    pub edited: bool,
}

impl Msg {
    fn from_wire(m: &Value) -> Option<Msg> {
        Some(Msg {
            id: m["id"].as_str()?.to_owned(),
            user: m["user"].as_str().unwrap_or("?").to_owned(),
            content: m["content"].as_str().unwrap_or_default().to_owned(),
            seq: m["seq"].as_u64().unwrap_or(0),
            reply_to: m["reply_to"]["id"]
                .as_str()
                .map(|id| (id.to_owned(), m["reply_to"]["user"].as_str().unwrap_or("?").to_owned())),
            edited: m["edited"] == json!(true),
        })
    }
}

/// A send the server has not acknowledged yet, shown greyed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMsg {
    pub nonce: String,
    pub channel: String,
    pub content: String,
}

/// What lies before a channel's oldest loaded message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Older {
    /// More history: the last page was full.
    More,
    /// The page before the oldest loaded message was asked for.
    Loading,
    /// The channel's first message is loaded.
    Beginning,
}

/// What Enter does with the input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compose {
    New,
    Reply { id: String, user: String },
    Edit { id: String },
}

/// Everything the screen shows.
#[derive(Debug)]
pub struct App {
    /// The server as the user named it, for the title bar.
    pub server: String,
    /// The account name (from `ready`).
    pub me: String,
    pub link: Link,
    pub channels: Vec<ChannelEntry>,
    pub current: usize,
    /// Per channel, ordered by seq, each id once.
    pub messages: HashMap<String, Vec<Msg>>,
    /// Per channel with history, whether older pages remain.
    older: HashMap<String, Older>,
    pub pending: Vec<PendingMsg>,
    /// (channel, user, shown until).
    pub typing: Vec<(String, String, Instant)>,
    pub input: String,
    pub compose: Compose,
    /// Index into the current channel's messages, for reply and edit.
    pub selected: Option<usize>,
    /// Lines scrolled up from the newest.
    pub scroll: usize,
    /// The last notice (a refused send, a stale channel), shown in the help line.
    pub notice: Option<String>,
    typing_sent: Option<Instant>,
}

impl App {
    pub fn new(server: &str) -> App {
        App {
            server: server.to_owned(),
            me: String::new(),
            link: Link::Connecting { attempt: 0 },
            channels: Vec::new(),
            current: 0,
            messages: HashMap::new(),
            older: HashMap::new(),
            pending: Vec::new(),
            typing: Vec::new(),
            input: String::new(),
            compose: Compose::New,
            selected: None,
            scroll: 0,
            notice: None,
            typing_sent: None,
        }
    }

    /// The channel on screen.
    pub fn channel(&self) -> Option<&str> {
        self.channels.get(self.current).map(|c| c.name.as_str())
    }

    /// The current channel's messages.
    pub fn timeline(&self) -> &[Msg] {
        self.channel().and_then(|c| self.messages.get(c)).map_or(&[], Vec::as_slice)
    }

    /// What lies before the current channel's oldest loaded message (`None`: no history yet).
    pub fn older(&self) -> Option<Older> {
        self.channel().and_then(|c| self.older.get(c)).copied()
    }

    /// Called after every draw with how far the timeline can scroll: keeps the scroll inside it,
    /// and when the oldest loaded message is on screen asks once for the page before it, so that
    /// scrolling up reads the whole channel. New lines above do not move what is on screen (the
    /// scroll counts from the newest line).
    pub fn drawn(&mut self, max_scroll: usize) -> Vec<Effect> {
        self.scroll = self.scroll.min(max_scroll);
        let Some(channel) = self.channel().map(str::to_owned) else { return Vec::new() };
        if self.scroll < max_scroll || self.older.get(&channel) != Some(&Older::More) {
            return Vec::new();
        }
        let Some(oldest) = self.messages.get(&channel).and_then(|l| l.first()).map(|m| m.id.clone()) else {
            return Vec::new();
        };
        self.older.insert(channel.clone(), Older::Loading);
        vec![Effect::Request(
            json!({"cmd": "messages_get", "channel": channel, "start": oldest, "limit": HISTORY_PAGE}),
        )]
    }

    /// Who is typing in the current channel now.
    pub fn typing_here(&self, now: Instant) -> Vec<&str> {
        let Some(channel) = self.channel() else { return Vec::new() };
        self.typing.iter().filter(|(c, _, until)| c == channel && *until > now).map(|(_, u, _)| u.as_str()).collect()
    }

    /// The session took a send under `nonce`.
    pub fn sending(&mut self, nonce: String, fields: &Value) {
        let channel = fields["channel"].as_str().unwrap_or_default().to_owned();
        let content = fields["content"].as_str().unwrap_or_default().to_owned();
        self.pending.push(PendingMsg { nonce, channel, content });
    }

    /// Forgets typing notices that ran out.
    pub fn tick(&mut self, now: Instant) {
        self.typing.retain(|(_, _, until)| *until > now);
    }

    pub fn on_event(&mut self, event: Event, now: Instant) -> Vec<Effect> {
        match event {
            Event::Link(link) => self.link = link,
            Event::Ready { user } => {
                self.me = user["username"].as_str().unwrap_or_default().to_owned();
                // What resume does not replay (PROTOCOL §7.2): the channel list and unread counts.
                return vec![
                    Effect::Request(json!({"cmd": "channels_get"})),
                    Effect::Request(json!({"cmd": "unreads_get"})),
                ];
            }
            Event::Packet(p) => return self.on_packet(&p, now),
            Event::Resumed { stale, .. } => {
                // Too far behind to replay: read the newest history again.
                return stale
                    .into_iter()
                    .filter_map(|c| self.messages.remove(&c).map(|_| c))
                    .inspect(|c| {
                        self.older.remove(c);
                    })
                    .map(|c| history(&c))
                    .collect();
            }
            Event::Acked { nonce, .. } => self.pending.retain(|p| p.nonce != nonce),
            Event::Failed { nonce, error } => {
                self.pending.retain(|p| p.nonce != nonce);
                self.notice = Some(format!("not sent: {error}"));
            }
            Event::Tokens(_) | Event::Closed(_) => {}
        }
        Vec::new()
    }

    fn on_packet(&mut self, p: &Value, now: Instant) -> Vec<Effect> {
        let channel = p["channel"].as_str().unwrap_or_default().to_owned();
        match p["cmd"].as_str().unwrap_or_default() {
            "channels_get" => {
                let before = self.channel().map(str::to_owned);
                let unread: HashMap<String, u64> = self.channels.iter().map(|c| (c.name.clone(), c.unread)).collect();
                self.channels = p["val"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|c| c["type"] == "text")
                    .filter_map(|c| c["name"].as_str())
                    .map(|name| ChannelEntry { name: name.to_owned(), unread: unread.get(name).copied().unwrap_or(0) })
                    .collect();
                self.current = before
                    .and_then(|b| self.channels.iter().position(|c| c.name == b))
                    .or_else(|| self.channels.iter().position(|c| c.name == "general"))
                    .unwrap_or(0);
                return self.load_current();
            }
            "unreads_get" => {
                let here = self.channel().map(str::to_owned);
                for c in &mut self.channels {
                    if Some(&c.name) != here.as_ref() {
                        c.unread = p["unreads"][&c.name]["unread_count"].as_u64().unwrap_or(c.unread);
                    }
                }
            }
            "messages_get" if p.get("thread_id").is_none() => {
                let page: Vec<Msg> =
                    p["messages"].as_array().into_iter().flatten().filter_map(Msg::from_wire).collect();
                let older = if page.len() < HISTORY_PAGE { Older::Beginning } else { Older::More };
                self.older.insert(channel.clone(), older);
                let list = self.messages.entry(channel).or_default();
                for m in page {
                    insert(list, m);
                }
            }
            "message_new" if p["thread_id"].is_null() => {
                let Some(m) = Msg::from_wire(&p["message"]) else { return Vec::new() };
                self.typing.retain(|(c, u, _)| !(c == &channel && u == &m.user));
                if self.channel() != Some(channel.as_str())
                    && m.user != self.me
                    && let Some(c) = self.channels.iter_mut().find(|c| c.name == channel)
                {
                    c.unread += 1;
                }
                if let Some(list) = self.messages.get_mut(&channel) {
                    insert(list, m);
                }
            }
            "message_edit" => {
                let id = p["id"].as_str().unwrap_or_default();
                if let Some(m) = self.messages.get_mut(&channel).and_then(|l| l.iter_mut().find(|m| m.id == id)) {
                    m.content = p["content"].as_str().unwrap_or_default().to_owned();
                    m.edited = true;
                }
            }
            "message_delete" => {
                let id = p["id"].as_str().unwrap_or_default();
                if let Some(list) = self.messages.get_mut(&channel) {
                    list.retain(|m| m.id != id);
                }
                self.selected = None;
            }
            "typing" if p["thread_id"].is_null() => {
                let user = p["user"].as_str().unwrap_or_default().to_owned();
                if user != self.me {
                    self.typing.retain(|(c, u, _)| !(c == &channel && u == &user));
                    self.typing.push((channel, user, now + TYPING_SHOWN));
                }
            }
            _ => {}
        }
        Vec::new()
    }

    /// Loads the current channel's history once, and marks it read.
    fn load_current(&mut self) -> Vec<Effect> {
        let Some(channel) = self.channel().map(str::to_owned) else { return Vec::new() };
        if let Some(c) = self.channels.get_mut(self.current) {
            c.unread = 0;
        }
        if self.messages.contains_key(&channel) {
            vec![Effect::Request(json!({"cmd": "unreads_ack", "channel": channel}))]
        } else {
            self.messages.insert(channel.clone(), Vec::new());
            // `messages_get` from the newest also marks the channel read (PROTOCOL §6.1).
            vec![history(&channel)]
        }
    }

    pub fn on_key(&mut self, key: KeyEvent, now: Instant) -> Vec<Effect> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c' | 'q') if ctrl => return vec![Effect::Quit],
            KeyCode::Char('n') if ctrl => return self.switch(1),
            KeyCode::Char('p') if ctrl => return self.switch(self.channels.len().saturating_sub(1)),
            KeyCode::Tab => return self.switch(1),
            KeyCode::BackTab => return self.switch(self.channels.len().saturating_sub(1)),
            KeyCode::Char('r') if ctrl => self.start_reply(),
            KeyCode::Char('e') if ctrl => self.start_edit(),
            KeyCode::Char(c) if !ctrl && !key.modifiers.contains(KeyModifiers::ALT) => {
                self.input.push(c);
                return self.typed(now);
            }
            KeyCode::Backspace => {
                self.input.pop();
            }
            KeyCode::Enter => return self.submit(),
            KeyCode::Esc => {
                if self.compose != Compose::New {
                    self.input.clear();
                }
                self.compose = Compose::New;
                self.selected = None;
                self.notice = None;
            }
            KeyCode::Up => self.select(-1),
            KeyCode::Down => self.select(1),
            KeyCode::PageUp => self.scroll += PAGE,
            KeyCode::PageDown => self.scroll = self.scroll.saturating_sub(PAGE),
            _ => {}
        }
        Vec::new()
    }

    /// Moves `by` places (modulo the list) to another channel.
    fn switch(&mut self, by: usize) -> Vec<Effect> {
        if self.channels.is_empty() {
            return Vec::new();
        }
        self.current = (self.current + by) % self.channels.len();
        self.scroll = 0;
        self.selected = None;
        self.compose = Compose::New;
        self.load_current()
    }

    /// Moves the selection up or down the timeline; past the newest it ends.
    fn select(&mut self, step: isize) {
        let len = self.timeline().len();
        if len == 0 {
            return;
        }
        self.selected = match (self.selected, step < 0) {
            (None, true) => Some(len - 1),
            (None, false) => None,
            (Some(i), true) => Some(i.saturating_sub(1)),
            (Some(i), false) if i + 1 < len => Some(i + 1),
            (Some(_), false) => None,
        };
    }

    fn start_reply(&mut self) {
        let target = self.selected.and_then(|i| self.timeline().get(i)).or_else(|| self.timeline().last());
        if let Some(m) = target {
            self.compose = Compose::Reply { id: m.id.clone(), user: m.user.clone() };
        }
    }

    fn start_edit(&mut self) {
        let mine = |m: &&Msg| m.user == self.me;
        let selected = self.selected.and_then(|i| self.timeline().get(i)).filter(mine);
        let target = selected.or_else(|| self.timeline().iter().rev().find(mine)).cloned();
        match target {
            Some(m) => {
                self.compose = Compose::Edit { id: m.id };
                self.input = m.content;
            }
            None => self.notice = Some("no message of yours to edit here".into()),
        }
    }

    fn typed(&mut self, now: Instant) -> Vec<Effect> {
        let Some(channel) = self.channel() else { return Vec::new() };
        if self.typing_sent.is_some_and(|at| now < at + TYPING_EVERY) || self.input.starts_with('/') {
            return Vec::new();
        }
        let frame = json!({"cmd": "typing", "channel": channel});
        self.typing_sent = Some(now);
        vec![Effect::Request(frame)]
    }

    fn submit(&mut self) -> Vec<Effect> {
        let text = std::mem::take(&mut self.input);
        if text.trim() == "/quit" {
            return vec![Effect::Quit];
        }
        let Some(channel) = self.channel().map(str::to_owned) else { return Vec::new() };
        if text.trim().is_empty() {
            self.input = text;
            return Vec::new();
        }
        self.scroll = 0;
        self.selected = None;
        self.typing_sent = None;
        let effect = match std::mem::replace(&mut self.compose, Compose::New) {
            Compose::New => Effect::SendMessage(json!({"channel": channel, "content": text})),
            Compose::Reply { id, .. } => {
                Effect::SendMessage(json!({"channel": channel, "content": text, "reply_to": id}))
            }
            Compose::Edit { id } => {
                Effect::Request(json!({"cmd": "message_edit", "id": id, "channel": channel, "content": text}))
            }
        };
        vec![effect]
    }
}

/// The newest page of a channel's history.
fn history(channel: &str) -> Effect {
    Effect::Request(json!({"cmd": "messages_get", "channel": channel, "limit": HISTORY_PAGE}))
}

/// Inserts in seq order; a message already there (by id) is replaced, never doubled.
fn insert(list: &mut Vec<Msg>, m: Msg) {
    if let Some(old) = list.iter_mut().find(|x| x.id == m.id) {
        *old = m;
        return;
    }
    let at = list.partition_point(|x| x.seq <= m.seq);
    list.insert(at, m);
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    pub fn ctrl(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
    }

    pub fn message(channel: &str, seq: u64, id: &str, user: &str, content: &str) -> Event {
        Event::Packet(json!({"cmd":"message_new","channel":channel,"thread_id":null,"seq":seq,
            "message":{"id":id,"user":user,"content":content,"seq":seq}}))
    }

    /// Alice, online, in #general (history loaded) with #dev beside it.
    pub fn signed_in(now: Instant) -> App {
        let mut app = App::new("http://127.0.0.1:5613");
        app.on_event(Event::Ready { user: json!({"username": "alice"}) }, now);
        app.on_event(Event::Link(Link::Online), now);
        let list = json!({"cmd":"channels_get","val":[{"name":"general","type":"text","seq":2},
            {"name":"lobby","type":"voice"},{"name":"dev","type":"text","seq":0}]});
        let effects = app.on_event(Event::Packet(list), now);
        assert_eq!(effects, vec![history("general")]);
        let page = json!({"cmd":"messages_get","channel":"general","seq":2,"messages":[
            {"id":"m1","user":"bob","content":"hello alice","seq":1},
            {"id":"m2","user":"alice","content":"hi bob","seq":2}]});
        app.on_event(Event::Packet(page), now);
        app
    }

    /// Alice in #general whose newest page is full: messages `m{first}`..=`m{last}`, seq = number.
    pub fn long_channel(now: Instant, first: u64, last: u64) -> App {
        let mut app = App::new("http://127.0.0.1:5613");
        app.on_event(Event::Ready { user: json!({"username": "alice"}) }, now);
        let list = json!({"cmd":"channels_get","val":[{"name":"general","type":"text","seq":last}]});
        app.on_event(Event::Packet(list), now);
        app.on_event(Event::Packet(page(first, last, json!(0))), now);
        app
    }

    /// A `messages_get` answer holding `m{first}`..=`m{last}`.
    pub fn page(first: u64, last: u64, start: Value) -> Value {
        let messages: Vec<Value> = (first..=last)
            .map(|n| json!({"id":format!("m{n}"),"user":"bob","content":format!("#{n}"),"seq":n}))
            .collect();
        json!({"cmd":"messages_get","channel":"general","messages":messages,"range":{"start":start}})
    }

    fn type_text(app: &mut App, text: &str, now: Instant) -> Vec<Effect> {
        text.chars().flat_map(|c| app.on_key(key(KeyCode::Char(c)), now)).collect()
    }

    #[test]
    fn ready_asks_for_what_resume_does_not_replay_and_the_list_keeps_text_channels() {
        let now = Instant::now();
        let mut app = App::new("s");
        let effects = app.on_event(Event::Ready { user: json!({"username": "alice"}) }, now);
        assert_eq!(effects.len(), 2);
        let app = signed_in(now);
        assert_eq!(app.channels.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["general", "dev"]);
        assert_eq!(app.timeline().len(), 2);
    }

    #[test]
    fn typing_sends_at_most_one_typing_frame_per_interval_and_enter_sends_the_message() {
        let now = Instant::now();
        let mut app = signed_in(now);
        let effects = type_text(&mut app, "hey", now);
        assert_eq!(effects, vec![Effect::Request(json!({"cmd":"typing","channel":"general"}))]);
        assert!(type_text(&mut app, "!", now + Duration::from_secs(1)).is_empty());
        assert_eq!(type_text(&mut app, "!", now + Duration::from_secs(4)).len(), 1);
        let effects = app.on_key(key(KeyCode::Enter), now);
        assert_eq!(effects, vec![Effect::SendMessage(json!({"channel":"general","content":"hey!!"}))]);
        assert!(app.input.is_empty());
        assert!(app.on_key(key(KeyCode::Enter), now).is_empty(), "an empty line sends nothing");
    }

    #[test]
    fn a_pending_send_shows_until_acknowledged_and_a_refusal_becomes_a_notice() {
        let now = Instant::now();
        let mut app = signed_in(now);
        app.sending("n1".into(), &json!({"channel":"general","content":"one"}));
        app.sending("n2".into(), &json!({"channel":"general","content":"two"}));
        assert_eq!(app.pending.len(), 2);
        app.on_event(Event::Acked { nonce: "n1".into(), packet: json!({}) }, now);
        let error = confab_client::ClientError::Refused { code: "too_long".into(), text: "Message too long".into() };
        app.on_event(Event::Failed { nonce: "n2".into(), error }, now);
        assert!(app.pending.is_empty());
        assert!(app.notice.as_deref().unwrap().contains("Message too long"));
    }

    #[test]
    fn live_messages_count_as_unread_elsewhere_and_never_appear_twice() {
        let now = Instant::now();
        let mut app = signed_in(now);
        app.on_event(message("general", 3, "m3", "bob", "new"), now);
        app.on_event(message("general", 3, "m3", "bob", "new"), now);
        assert_eq!(app.timeline().iter().filter(|m| m.id == "m3").count(), 1);
        app.on_event(message("dev", 1, "d1", "bob", "in dev"), now);
        app.on_event(message("dev", 2, "d2", "alice", "mine"), now);
        assert_eq!(app.channels[1].unread, 1, "own messages are not unread");
        // Switching reads the channel's history and clears its count.
        let effects = app.on_key(ctrl('n'), now);
        assert_eq!(app.channel(), Some("dev"));
        assert_eq!(app.channels[1].unread, 0);
        assert_eq!(effects, vec![history("dev")]);
        let effects = app.on_key(key(KeyCode::BackTab), now);
        assert_eq!(effects, vec![Effect::Request(json!({"cmd":"unreads_ack","channel":"general"}))]);
    }

    #[test]
    fn reply_and_edit_target_the_selection_or_the_newest_fitting_message() {
        let now = Instant::now();
        let mut app = signed_in(now);
        app.on_key(ctrl('r'), now);
        assert_eq!(app.compose, Compose::Reply { id: "m2".into(), user: "alice".into() });
        app.on_key(key(KeyCode::Esc), now);
        app.on_key(key(KeyCode::Up), now);
        app.on_key(key(KeyCode::Up), now);
        assert_eq!(app.selected, Some(0));
        app.on_key(ctrl('r'), now);
        type_text(&mut app, "yes", now);
        let effects = app.on_key(key(KeyCode::Enter), now);
        assert_eq!(effects, vec![Effect::SendMessage(json!({"channel":"general","content":"yes","reply_to":"m1"}))]);
        // Edit: bob's selected message is not ours, so the newest own one is taken.
        app.on_key(key(KeyCode::Up), now);
        app.on_key(key(KeyCode::Up), now);
        app.on_key(ctrl('e'), now);
        assert_eq!(app.compose, Compose::Edit { id: "m2".into() });
        assert_eq!(app.input, "hi bob");
        type_text(&mut app, "!", now);
        let effects = app.on_key(key(KeyCode::Enter), now);
        assert_eq!(
            effects,
            vec![Effect::Request(json!({"cmd":"message_edit","id":"m2","channel":"general","content":"hi bob!"}))]
        );
        let edit = json!({"cmd":"message_edit","id":"m2","channel":"general","content":"hi bob!","seq":3});
        app.on_event(Event::Packet(edit), now);
        assert!(app.timeline()[1].edited);
        app.on_event(Event::Packet(json!({"cmd":"message_delete","id":"m1","channel":"general","seq":4})), now);
        assert_eq!(app.timeline().len(), 1);
    }

    #[test]
    fn typing_notices_expire_and_a_message_ends_them() {
        let now = Instant::now();
        let mut app = signed_in(now);
        let typing = json!({"cmd":"typing","channel":"general","user":"bob","thread_id":null});
        app.on_event(Event::Packet(typing.clone()), now);
        assert_eq!(app.typing_here(now), ["bob"]);
        assert!(app.typing_here(now + TYPING_SHOWN).is_empty());
        app.on_event(Event::Packet(typing), now);
        app.on_event(message("general", 3, "m3", "bob", "done"), now);
        assert!(app.typing_here(now).is_empty());
    }

    #[test]
    fn a_stale_resume_refetches_the_history_and_quit_keys_quit() {
        let now = Instant::now();
        let mut app = signed_in(now);
        let effects = app.on_event(Event::Resumed { stale: vec!["general".into()], unknown: vec![] }, now);
        assert_eq!(effects, vec![history("general")]);
        assert_eq!(app.on_key(ctrl('c'), now), vec![Effect::Quit]);
        assert_eq!(app.on_key(ctrl('q'), now), vec![Effect::Quit]);
        type_text(&mut app, "/quit", now);
        assert_eq!(app.on_key(key(KeyCode::Enter), now), vec![Effect::Quit]);
    }

    #[test]
    fn page_keys_scroll_and_sending_returns_to_the_newest() {
        let now = Instant::now();
        let mut app = signed_in(now);
        app.on_key(key(KeyCode::PageUp), now);
        app.on_key(key(KeyCode::PageUp), now);
        assert_eq!(app.scroll, 2 * PAGE);
        app.on_key(key(KeyCode::PageDown), now);
        assert_eq!(app.scroll, PAGE);
        type_text(&mut app, "x", now);
        app.on_key(key(KeyCode::Enter), now);
        assert_eq!(app.scroll, 0);
    }

    #[test]
    fn scrolling_back_reads_the_channel_page_by_page_until_its_beginning() {
        let now = Instant::now();
        let mut app = long_channel(now, 101, 200);
        assert_eq!(app.older(), Some(Older::More));
        assert!(app.drawn(50).is_empty(), "the newest lines are on screen: nothing to load");
        for _ in 0..6 {
            app.on_key(key(KeyCode::PageUp), now);
        }
        let effects = app.drawn(50);
        assert_eq!(app.scroll, 50, "the scroll stays inside the timeline");
        let before = json!({"cmd":"messages_get","channel":"general","start":"m101","limit":HISTORY_PAGE});
        assert_eq!(effects, vec![Effect::Request(before)]);
        assert_eq!(app.older(), Some(Older::Loading));
        assert!(app.drawn(50).is_empty(), "asked once");

        // A short page: the beginning. Both pages form one timeline, oldest first, each id once.
        app.on_event(Event::Packet(page(61, 100, json!("m101"))), now);
        app.on_event(Event::Packet(page(150, 150, json!("m151"))), now);
        assert_eq!(app.older(), Some(Older::Beginning));
        let seqs: Vec<u64> = app.timeline().iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (61..=200).collect::<Vec<_>>());
        assert!(app.drawn(50).is_empty(), "nothing before the beginning");
    }
}
