//! What crosses the broker: one envelope per committed event per origin node, never one per
//! socket. A one-line JSON header, then the packet exactly as the origin serialised it (receivers
//! pass those bytes on without encoding them again).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The header line of an envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Format version.
    pub v: u8,
    /// The origin node.
    pub n: String,
    #[serde(flatten)]
    pub kind: Kind,
}

/// What an envelope carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k")]
pub enum Kind {
    /// A committed channel event: channel id and seq; the packet follows the header.
    #[serde(rename = "ch")]
    Channel { c: String, s: i64 },
    /// A node's probe to itself, numbered: tells it that the broker still delivers.
    #[serde(rename = "probe")]
    Probe { p: u64 },
    /// A logged effect on live connections and its seq in the control log; the effect follows.
    #[serde(rename = "ctl")]
    Control { s: i64 },
    /// An effect that is not logged (typing): applied if it arrives, forgotten if not.
    #[serde(rename = "eph")]
    Ephemeral,
}

/// The envelope of `kind` from `node` carrying `packet`.
pub fn encode(node: &str, kind: Kind, packet: &str) -> Bytes {
    let header = Header { v: 1, n: node.to_owned(), kind };
    let mut out = serde_json::to_vec(&header).unwrap_or_default();
    out.push(b'\n');
    out.extend_from_slice(packet.as_bytes());
    Bytes::from(out)
}

/// The header and packet of an envelope; `None` for anything else (another program's message on
/// the subject, a newer format).
pub fn decode(bytes: &[u8]) -> Option<(Header, String)> {
    let split = bytes.iter().position(|b| *b == b'\n')?;
    let header: Header = serde_json::from_slice(&bytes[..split]).ok()?;
    if header.v != 1 {
        return None;
    }
    let packet = std::str::from_utf8(&bytes[split + 1..]).ok()?.to_owned();
    Some((header, packet))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_foreign_bytes_are_ignored() {
        let packet = r#"{"cmd":"message_new","seq":7,"text":"line\nbreak"}"#;
        let bytes = encode("n1", Kind::Channel { c: "c1".into(), s: 7 }, packet);
        let (header, body) = decode(&bytes).unwrap();
        assert_eq!(header, Header { v: 1, n: "n1".into(), kind: Kind::Channel { c: "c1".into(), s: 7 } });
        assert_eq!(body, packet);
        let (probe, _) = decode(&encode("n2", Kind::Probe { p: 3 }, "")).unwrap();
        assert_eq!(probe.kind, Kind::Probe { p: 3 });
        assert!(decode(b"hello").is_none());
        assert!(decode(b"{\"v\":2,\"n\":\"x\",\"k\":\"probe\",\"p\":1}\n").is_none());
    }
}
