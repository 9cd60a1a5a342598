//! Decoding client frames (PROTOCOL §1.2, §1.3, §7.5).
//!
//! A frame is a JSON object with a string `cmd`, or an array frame that is rewritten into one.
//! Every failure maps to one of the four exact `bad_frame` texts, so the server never stays silent.

use serde_json::{Map, Value};

/// The longest `listener` that is echoed; longer ones are ignored (PROTOCOL §1.3).
pub const LISTENER_MAX_CHARS: usize = 256;

/// A decoded client frame: the command name and the whole object (including `cmd`).
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub cmd: String,
    pub body: Map<String, Value>,
}

impl Frame {
    /// The `listener` to copy onto direct replies, if it is a string of at most 256 characters.
    pub fn listener(&self) -> Option<&str> {
        match self.body.get("listener") {
            Some(Value::String(s)) if s.chars().count() <= LISTENER_MAX_CHARS => Some(s),
            _ => None,
        }
    }

    /// A field as a string, treating `null` as absent.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.body.get(key).and_then(Value::as_str)
    }

    /// A field, treating `null` as absent (PROTOCOL §1.2).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.body.get(key).filter(|v| !v.is_null())
    }
}

/// Why a frame could not be decoded; `text()` is the exact `val` of the error packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadFrame {
    InvalidJson,
    NotAnObject(&'static str),
    InvalidArray,
    MissingCmd,
}

impl BadFrame {
    /// The exact error text of PROTOCOL §1.2.
    pub fn text(&self) -> String {
        match self {
            BadFrame::InvalidJson => "Invalid JSON".to_owned(),
            BadFrame::NotAnObject(kind) => {
                format!("Invalid message format: expected a dictionary, got {kind}")
            }
            BadFrame::InvalidArray => "Invalid array frame".to_owned(),
            BadFrame::MissingCmd => "Missing or invalid cmd".to_owned(),
        }
    }
}

/// Decodes one text frame into a [`Frame`], applying the array-frame rewrite of PROTOCOL §7.5.
pub fn decode_frame(text: &str) -> Result<Frame, BadFrame> {
    let value: Value = serde_json::from_str(text).map_err(|_| BadFrame::InvalidJson)?;
    let mut body = match value {
        Value::Object(map) => map,
        Value::Array(items) => rewrite_array(items)?,
        Value::String(_) => return Err(BadFrame::NotAnObject("string")),
        Value::Number(_) => return Err(BadFrame::NotAnObject("number")),
        Value::Bool(_) => return Err(BadFrame::NotAnObject("boolean")),
        Value::Null => return Err(BadFrame::NotAnObject("null")),
    };
    let cmd = match body.get("cmd") {
        Some(Value::String(cmd)) => cmd.clone(),
        _ => return Err(BadFrame::MissingCmd),
    };
    body.insert("cmd".to_owned(), Value::String(cmd.clone()));
    Ok(Frame { cmd, body })
}

fn rewrite_array(items: Vec<Value>) -> Result<Map<String, Value>, BadFrame> {
    let mut it = items.into_iter();
    let (Some(Value::String(cmd)), payload, None) = (it.next(), it.next(), it.next()) else {
        return Err(BadFrame::InvalidArray);
    };
    let mut body = match payload {
        None => Map::new(),
        Some(Value::Object(map)) => map,
        Some(other) => {
            let mut map = Map::new();
            map.insert("val".to_owned(), other);
            map
        }
    };
    body.insert("cmd".to_owned(), Value::String(cmd));
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_objects_and_arrays() {
        let f = decode_frame(r#"{"cmd":"ping","listener":"a"}"#).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(f.cmd, "ping");
        assert_eq!(f.listener(), Some("a"));
        let f = decode_frame(r#"["tokenauth","k3.9"]"#).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(f.cmd, "tokenauth");
        assert_eq!(f.body.get("val"), Some(&json!("k3.9")));
        let f = decode_frame(r#"["auth",{"cmd":"x","username":"c"}]"#).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(f.cmd, "auth");
        assert_eq!(f.str("username"), Some("c"));
        assert!(decode_frame(r#"["ping"]"#).is_ok());
    }

    #[test]
    fn reports_each_bad_frame_text() {
        let err = |t: &str| decode_frame(t).err().map(|e| e.text());
        assert_eq!(err("{"), Some("Invalid JSON".into()));
        assert_eq!(err("42"), Some("Invalid message format: expected a dictionary, got number".into()));
        assert_eq!(err("null"), Some("Invalid message format: expected a dictionary, got null".into()));
        assert_eq!(err("[]"), Some("Invalid array frame".into()));
        assert_eq!(err("[1]"), Some("Invalid array frame".into()));
        assert_eq!(err(r#"["a",1,2]"#), Some("Invalid array frame".into()));
        assert_eq!(err(r#"{"cmd":5}"#), Some("Missing or invalid cmd".into()));
    }

    #[test]
    fn long_or_non_string_listener_is_ignored() {
        let long = "x".repeat(257);
        let f = decode_frame(&format!(r#"{{"cmd":"ping","listener":"{long}"}}"#)).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(f.listener(), None);
        let f = decode_frame(r#"{"cmd":"ping","listener":5}"#).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(f.listener(), None);
    }
}
