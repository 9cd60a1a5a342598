//! GitHub webhook payloads turned into chat text (PROTOCOL §3.5).
//!
//! Used when a `POST /webhooks` carries `X-GitHub-Event` and a payload with `repository` and
//! `ref`, so a repository can point its GitHub webhook straight at a channel. Only fields GitHub
//! documents are read; anything missing degrades to a shorter line instead of failing.

use serde_json::{Map, Value};

/// Commits listed for one push; the rest are summarised in one line.
const MAX_COMMITS: usize = 5;
/// Longest commit title shown, in characters.
const MAX_TITLE: usize = 100;

/// Whether a payload is one this module formats: it names a repository and a ref.
pub fn applies(payload: &Map<String, Value>) -> bool {
    payload.contains_key("repository") && payload.contains_key("ref")
}

/// The message text for GitHub event `event`, at most `max` characters (longer text is cut and
/// ends with `…`).
pub fn format(event: &str, payload: &Map<String, Value>, max: usize) -> String {
    let repo = text(payload.get("repository"), &["full_name"])
        .or_else(|| text(payload.get("repository"), &["name"]))
        .unwrap_or("repository");
    let git_ref = payload.get("ref").and_then(Value::as_str).unwrap_or("");
    let short_ref =
        git_ref.strip_prefix("refs/heads/").or_else(|| git_ref.strip_prefix("refs/tags/")).unwrap_or(git_ref);
    let who =
        text(payload.get("pusher"), &["name"]).or_else(|| text(payload.get("sender"), &["login"])).unwrap_or("someone");
    let body = match event {
        "push" => push(payload, repo, short_ref, who),
        "create" | "delete" => {
            let kind = payload.get("ref_type").and_then(Value::as_str).unwrap_or("ref");
            let verb = if event == "create" { "created" } else { "deleted" };
            format!("[{repo}] {who} {verb} {kind} `{short_ref}`")
        }
        other => format!("[{repo}] {other} event on `{short_ref}` by {who}"),
    };
    truncate(&body, max)
}

fn push(payload: &Map<String, Value>, repo: &str, short_ref: &str, who: &str) -> String {
    let commits: &[Value] = payload.get("commits").and_then(Value::as_array).map_or(&[], Vec::as_slice);
    let n = commits.len();
    let mut out = if payload.get("deleted").and_then(Value::as_bool) == Some(true) {
        format!("[{repo}] {who} deleted `{short_ref}`")
    } else if n == 0 && payload.get("forced").and_then(Value::as_bool) == Some(true) {
        format!("[{repo}] {who} force-pushed `{short_ref}`")
    } else {
        let noun = if n == 1 { "commit" } else { "commits" };
        format!("[{repo}] {who} pushed {n} {noun} to `{short_ref}`")
    };
    for commit in commits.iter().take(MAX_COMMITS) {
        let id: String = commit.get("id").and_then(Value::as_str).unwrap_or("").chars().take(7).collect();
        let title = commit.get("message").and_then(Value::as_str).unwrap_or("").lines().next().unwrap_or("");
        let author = text(Some(commit), &["author", "name"]).unwrap_or("unknown");
        out.push_str(&format!("\n`{id}` {} — {author}", truncate(title, MAX_TITLE)));
    }
    if n > MAX_COMMITS {
        out.push_str(&format!("\n… and {} more", n - MAX_COMMITS));
    }
    if let Some(compare) = payload.get("compare").and_then(Value::as_str).filter(|c| c.starts_with("https://")) {
        out.push('\n');
        out.push_str(compare);
    }
    out
}

/// The string at `path` inside `value`, if every step exists.
fn text<'a>(value: Option<&'a Value>, path: &[&str]) -> Option<&'a str> {
    let mut v = value?;
    for key in path {
        v = v.get(key)?;
    }
    v.as_str().filter(|s| !s.is_empty())
}

/// `s` cut to at most `max` characters, ending with `…` when something was cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test payloads are objects"),
        }
    }

    #[test]
    fn push_lists_commits() {
        let p = map(json!({
            "ref": "refs/heads/main",
            "repository": {"full_name": "acme/confab"},
            "pusher": {"name": "alice"},
            "compare": "https://github.com/acme/confab/compare/a...b",
            "commits": [
                {"id": "0123456789abcdef", "message": "Fix the thing\n\nLong body", "author": {"name": "Alice"}},
                {"id": "fedcba9876543210", "message": "Second", "author": {"name": "Bob"}}
            ]
        }));
        assert!(applies(&p));
        assert_eq!(
            format("push", &p, 2000),
            "[acme/confab] alice pushed 2 commits to `main`\n`0123456` Fix the thing — Alice\n`fedcba9` Second — Bob\n\
             https://github.com/acme/confab/compare/a...b"
        );
    }

    #[test]
    fn many_commits_are_summarised_and_text_is_capped() {
        let commits: Vec<Value> =
            (0..8).map(|i| json!({"id": format!("{i:07}"), "message": "m", "author": {"name": "a"}})).collect();
        let p = map(json!({"ref": "refs/heads/x", "repository": {"name": "r"}, "commits": commits}));
        let text = format("push", &p, 2000);
        assert!(text.starts_with("[r] someone pushed 8 commits to `x`"), "{text}");
        assert!(text.ends_with("… and 3 more"), "{text}");
        assert_eq!(text.lines().count(), 7);
        let short = format("push", &p, 20);
        assert_eq!(short.chars().count(), 20);
        assert!(short.ends_with('…'));
    }

    #[test]
    fn other_events() {
        let p = map(
            json!({"ref": "v1.0", "ref_type": "tag", "repository": {"full_name": "o/r"}, "sender": {"login": "bob"}}),
        );
        assert_eq!(format("create", &p, 2000), "[o/r] bob created tag `v1.0`");
        assert_eq!(format("delete", &p, 2000), "[o/r] bob deleted tag `v1.0`");
        let p = map(json!({"ref": "refs/heads/main", "repository": {"full_name": "o/r"}, "sender": {"login": "bob"}}));
        assert_eq!(format("workflow_run", &p, 2000), "[o/r] workflow_run event on `main` by bob");
        assert!(!applies(&map(json!({"repository": {}}))));
    }
}
