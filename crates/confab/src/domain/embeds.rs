//! Embed validation (PROTOCOL §6.1): shape, per-field limits, a 6000-character total, http(s) URLs.
//!
//! Returns the exact wire text of the first problem, `"Embed <i>: <reason>"` for per-embed ones.
//! What is stored is rebuilt from the fields PROTOCOL names, so the limits below bound it.

use serde_json::{Map, Value};

/// Most embeds on one message.
pub const MAX_EMBEDS: usize = 10;
const MAX_TOTAL: usize = 6000;
const TYPES: [&str; 5] = ["rich", "link", "image", "video", "article"];

/// The fields an embed keeps, and those of its objects (PROTOCOL §6.1). Anything else is dropped:
/// kept, an unknown field could make every stored message as large as an inbound frame.
const KEPT: [&str; 6] = ["type", "title", "description", "url", "color", "timestamp"];
const KEPT_IN: [(&str, &[&str]); 4] = [
    ("author", &["name", "url", "icon_url"]),
    ("footer", &["text", "icon_url"]),
    ("image", &["url", "width", "height"]),
    ("thumbnail", &["url", "width", "height"]),
];
const KEPT_IN_FIELDS: [&str; 3] = ["name", "value", "inline"];

/// Validates an `embeds` field; `Ok(None)` when absent. The embeds returned hold only the fields
/// of PROTOCOL §6.1.
pub fn validate(value: Option<&Value>) -> Result<Option<Vec<Value>>, String> {
    let Some(value) = value else { return Ok(None) };
    let Value::Array(list) = value else {
        return Err("Embeds must be an array".into());
    };
    if list.len() > MAX_EMBEDS {
        return Err(format!("Cannot have more than {MAX_EMBEDS} embeds"));
    }
    for (i, embed) in list.iter().enumerate() {
        check(embed).map_err(|reason| format!("Embed {i}: {reason}"))?;
    }
    Ok(Some(list.iter().filter_map(Value::as_object).map(known).collect()))
}

/// A checked embed with only its known fields.
fn known(e: &Map<String, Value>) -> Value {
    let mut out = copy(e, &KEPT);
    for (key, inner) in KEPT_IN {
        if let Some(Value::Object(o)) = e.get(key) {
            out.insert(key.to_owned(), Value::Object(copy(o, inner)));
        }
    }
    if let Some(Value::Array(fields)) = e.get("fields") {
        let fields = fields.iter().filter_map(Value::as_object).map(|f| Value::Object(copy(f, &KEPT_IN_FIELDS)));
        out.insert("fields".to_owned(), Value::Array(fields.collect()));
    }
    Value::Object(out)
}

/// The `keys` of `from` that hold a string, a number or a boolean. Strings were length-checked
/// by [`check`]; `width`, `height` and `inline` are kept only as a number or a boolean.
fn copy(from: &Map<String, Value>, keys: &[&str]) -> Map<String, Value> {
    let mut out = Map::new();
    for key in keys {
        let keep = match from.get(*key) {
            Some(Value::String(_)) => !matches!(*key, "width" | "height" | "inline"),
            Some(Value::Number(_) | Value::Bool(_)) => true,
            _ => false,
        };
        if let (true, Some(v)) = (keep, from.get(*key)) {
            out.insert((*key).to_owned(), v.clone());
        }
    }
    out
}

fn text_len(obj: &Map<String, Value>, key: &str, max: usize) -> Result<usize, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) => {
            let n = s.chars().count();
            if n > max { Err(format!("{key} must be at most {max} characters")) } else { Ok(n) }
        }
        Some(_) => Err(format!("{key} must be a string")),
    }
}

fn url(obj: &Map<String, Value>, key: &str, required: bool) -> Result<(), String> {
    match obj.get(key) {
        None | Some(Value::Null) if !required => Ok(()),
        Some(Value::String(s)) if (s.starts_with("http://") || s.starts_with("https://")) && s.len() <= 2048 => Ok(()),
        _ => Err(format!("{key} must be an http(s) URL")),
    }
}

fn object<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a Map<String, Value>>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(format!("{key} must be an object")),
    }
}

fn check(embed: &Value) -> Result<(), String> {
    let Value::Object(e) = embed else {
        return Err("must be an object".into());
    };
    let kind = match e.get("type") {
        None | Some(Value::Null) => "rich",
        Some(Value::String(t)) if TYPES.contains(&t.as_str()) => t.as_str(),
        Some(Value::String(t)) if t == "poll" => {
            return Err("poll embeds are created by poll_create".into());
        }
        _ => return Err("invalid type".into()),
    };
    let mut total = text_len(e, "title", 256)? + text_len(e, "description", 4096)?;
    text_len(e, "timestamp", 64)?;
    url(e, "url", kind == "link")?;
    match e.get("color") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_u64().is_some_and(|c| c <= 0xFF_FFFF) => {}
        _ => return Err("color must be an integer from 0 to 16777215".into()),
    }
    if let Some(author) = object(e, "author")? {
        total += text_len(author, "name", 256)?;
        url(author, "url", false)?;
        url(author, "icon_url", false)?;
    }
    if let Some(footer) = object(e, "footer")? {
        total += text_len(footer, "text", 2048)?;
        url(footer, "icon_url", false)?;
    }
    for key in ["image", "thumbnail"] {
        match object(e, key)? {
            Some(media) => url(media, "url", true)?,
            None if key == "image" && kind == "image" => {
                return Err("image embeds need image".into());
            }
            None => {}
        }
    }
    match e.get("fields") {
        None | Some(Value::Null) => {}
        Some(Value::Array(fields)) => {
            if fields.len() > 25 {
                return Err("at most 25 fields".into());
            }
            for f in fields {
                let Value::Object(f) = f else {
                    return Err("fields must be objects".into());
                };
                total += text_len(f, "name", 256)? + text_len(f, "value", 1024)?;
            }
        }
        Some(_) => return Err("fields must be an array".into()),
    }
    if total > MAX_TOTAL {
        return Err(format!("embed text exceeds {MAX_TOTAL} characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_and_refuses() {
        assert!(validate(None).unwrap().is_none());
        assert_eq!(validate(Some(&json!({}))).unwrap_err(), "Embeds must be an array");
        assert!(
            validate(Some(&json!([{"title": "t", "url": "https://x", "fields": [{"name": "a", "value": "b"}]}])))
                .is_ok()
        );
        assert_eq!(validate(Some(&json!(vec![json!({}); 11]))).unwrap_err(), "Cannot have more than 10 embeds");
        assert!(validate(Some(&json!([{"type": "link"}]))).unwrap_err().starts_with("Embed 0: "));
        assert!(validate(Some(&json!([{}, {"url": "javascript:x"}]))).unwrap_err().starts_with("Embed 1: "));
        assert!(validate(Some(&json!([{"description": "x".repeat(4097)}]))).is_err());
    }

    #[test]
    fn unknown_fields_are_dropped() {
        let sent = json!([{
            "title": "t", "junk": "x".repeat(50_000), "color": 5,
            "author": {"name": "a", "extra": [1, 2]},
            "image": {"url": "https://x/i.png", "width": 10, "height": "tall", "proxy_url": "https://p"},
            "fields": [{"name": "n", "value": "v", "inline": true, "more": {}}],
        }]);
        let kept = validate(Some(&sent)).unwrap().unwrap();
        assert_eq!(
            kept,
            vec![json!({
                "title": "t", "color": 5, "author": {"name": "a"}, "image": {"url": "https://x/i.png", "width": 10},
                "fields": [{"name": "n", "value": "v", "inline": true}],
            })]
        );
    }
}
