//! Where the server is: the HTTP base for `/auth/*` and the WebSocket URL, from what a user types.

use crate::ClientError;

/// A server's two addresses, derived from one URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// `http://host:port` (no trailing slash), for `/auth/*`.
    pub http: String,
    /// `ws://host:port/ws`.
    pub ws: String,
}

impl Server {
    /// Accepts `http://`, `ws://` or a bare `host:port` (taken as `http://`). A path after the host
    /// is kept as a prefix (a server behind a reverse proxy under `/chat`). TLS (`https`, `wss`) is
    /// refused with a clear message: this client speaks plain WebSocket only.
    pub fn parse(url: &str) -> Result<Server, ClientError> {
        let url = url.trim();
        let rest = if let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("ws://")) {
            rest
        } else if url.starts_with("https://") || url.starts_with("wss://") {
            return Err(ClientError::Invalid(format!(
                "{url}: TLS is not supported by this client yet; connect to the server's plain listener"
            )));
        } else if url.contains("://") {
            return Err(ClientError::Invalid(format!("{url}: expected an http:// or ws:// URL")));
        } else {
            url
        };
        let rest = rest.trim_end_matches('/');
        let rest = rest.strip_suffix("/ws").unwrap_or(rest);
        if rest.is_empty() || rest.starts_with('/') {
            return Err(ClientError::Invalid(format!("{url}: no host in the server URL")));
        }
        Ok(Server { http: format!("http://{rest}"), ws: format!("ws://{rest}/ws") })
    }

    /// The WebSocket URL with an access token (PROTOCOL §2.6).
    pub fn ws_with_token(&self, access_token: &str) -> String {
        format!("{}?token={access_token}", self.ws)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalised() {
        let s = Server::parse("http://127.0.0.1:5613/").unwrap();
        assert_eq!(s.http, "http://127.0.0.1:5613");
        assert_eq!(s.ws, "ws://127.0.0.1:5613/ws");
        assert_eq!(Server::parse("ws://h:1/ws").unwrap(), Server::parse("h:1").unwrap());
        assert_eq!(Server::parse("http://h/chat").unwrap().ws, "ws://h/chat/ws");
        assert_eq!(s.ws_with_token("a.b.c"), "ws://127.0.0.1:5613/ws?token=a.b.c");
    }

    #[test]
    fn tls_and_garbage_are_refused_with_a_reason() {
        assert!(Server::parse("https://chat.example.com").unwrap_err().to_string().contains("TLS"));
        assert!(Server::parse("ftp://x").unwrap_err().to_string().contains("http://"));
        assert!(Server::parse("http://").unwrap_err().to_string().contains("no host"));
    }
}
