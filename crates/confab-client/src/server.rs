//! Where the server is: the HTTP base for `/auth/*` and the WebSocket URL, from what a user types, and
//! the TLS roots a `https://` server is checked against.

use std::{path::Path, sync::Arc};

use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, pem::PemObject},
};
use tokio::net::TcpStream;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::ClientError;

/// A server's two addresses, derived from one URL, and for TLS the roots its certificate must chain to.
#[derive(Debug, Clone)]
pub struct Server {
    /// `http://host:port` or `https://host:port` (no trailing slash), for `/auth/*`.
    pub http: String,
    /// `ws://host:port/ws` or `wss://host:port/ws`.
    pub ws: String,
    /// Set for `https` / `wss`: one configuration for both the HTTP client and the socket, so the two
    /// can never disagree about whom they trust.
    tls: Option<Arc<ClientConfig>>,
}

impl Server {
    /// Accepts `http://`, `https://`, `ws://`, `wss://` or a bare `host:port` (taken as `http://`). A
    /// path after the host is kept as a prefix (a server behind a reverse proxy under `/chat`). A TLS
    /// server's certificate is checked against the Mozilla roots (webpki-roots), the same for every
    /// user whatever the operating system; [`Server::trusting`] adds a private CA.
    pub fn parse(url: &str) -> Result<Server, ClientError> {
        let url = url.trim();
        let (tls, rest) = if let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("ws://")) {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("https://").or_else(|| url.strip_prefix("wss://")) {
            (true, rest)
        } else if url.contains("://") {
            return Err(ClientError::Invalid(format!("{url}: expected an http://, https://, ws:// or wss:// URL")));
        } else {
            (false, url)
        };
        let rest = rest.trim_end_matches('/');
        let rest = rest.strip_suffix("/ws").unwrap_or(rest);
        if rest.is_empty() || rest.starts_with('/') {
            return Err(ClientError::Invalid(format!("{url}: no host in the server URL")));
        }
        if !tls {
            return Ok(Server { http: format!("http://{rest}"), ws: format!("ws://{rest}/ws"), tls: None });
        }
        Ok(Server { http: format!("https://{rest}"), ws: format!("wss://{rest}/ws"), tls: Some(tls_config(&[])?) })
    }

    /// Also trusts the PEM certificates in `ca` (a private CA, or a self-signed server certificate).
    /// Refused for a plain `http://` server, where it would silently do nothing.
    pub fn trusting(self, ca: &Path) -> Result<Server, ClientError> {
        if self.tls.is_none() {
            return Err(ClientError::Invalid(format!(
                "{}: a CA certificate only matters for an https:// server",
                self.http
            )));
        }
        let unreadable = |e: &dyn std::fmt::Display| ClientError::Invalid(format!("{}: {e}", ca.display()));
        let certs = CertificateDer::pem_file_iter(ca)
            .map_err(|e| unreadable(&e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| unreadable(&e))?;
        if certs.is_empty() {
            return Err(unreadable(&"no PEM certificate in the file"));
        }
        Ok(Server { tls: Some(tls_config(&certs)?), ..self })
    }

    /// The WebSocket URL with an access token (PROTOCOL §2.6).
    pub fn ws_with_token(&self, access_token: &str) -> String {
        format!("{}?token={access_token}", self.ws)
    }

    /// An HTTP client for `/auth/*` that trusts what the socket trusts.
    pub fn http_client(&self) -> Result<reqwest::Client, ClientError> {
        let builder = reqwest::Client::builder();
        let builder = match &self.tls {
            Some(config) => builder.use_preconfigured_tls(ClientConfig::clone(config)),
            None => builder,
        };
        builder.build().map_err(|e| ClientError::Invalid(format!("building the HTTP client: {e}")))
    }

    /// Opens the socket at `url` (one of this server's), over TLS when the server is `https`.
    pub async fn connect(
        &self,
        url: &str,
    ) -> Result<WebSocketStream<MaybeTlsStream<TcpStream>>, tokio_tungstenite::tungstenite::Error> {
        let connector = self.tls.clone().map(Connector::Rustls);
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(url, None, false, connector).await?;
        Ok(ws)
    }
}

/// Mozilla's roots plus `extra`, on the ring provider the whole workspace uses.
fn tls_config(extra: &[CertificateDer<'static>]) -> Result<Arc<ClientConfig>, ClientError> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    for cert in extra {
        roots.add(cert.clone()).map_err(|e| ClientError::Invalid(format!("a CA certificate was refused: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Invalid(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(url: &str) -> (String, String, bool) {
        let s = Server::parse(url).unwrap();
        (s.http, s.ws, s.tls.is_some())
    }

    #[test]
    fn urls_are_normalised() {
        let s = Server::parse("http://127.0.0.1:5613/").unwrap();
        assert_eq!(s.http, "http://127.0.0.1:5613");
        assert_eq!(s.ws, "ws://127.0.0.1:5613/ws");
        assert_eq!(addresses("ws://h:1/ws"), addresses("h:1"));
        assert_eq!(Server::parse("http://h/chat").unwrap().ws, "ws://h/chat/ws");
        assert_eq!(s.ws_with_token("a.b.c"), "ws://127.0.0.1:5613/ws?token=a.b.c");
    }

    #[test]
    fn tls_urls_keep_tls_on_both_addresses() {
        let expected = ("https://chat.example.com".to_owned(), "wss://chat.example.com/ws".to_owned(), true);
        assert_eq!(addresses("https://chat.example.com/"), expected);
        assert_eq!(addresses("wss://chat.example.com/ws"), expected);
        assert!(Server::parse("https://h").unwrap().http_client().is_ok());
    }

    #[test]
    fn garbage_and_misplaced_ca_files_are_refused_with_a_reason() {
        assert!(Server::parse("ftp://x").unwrap_err().to_string().contains("https://"));
        assert!(Server::parse("http://").unwrap_err().to_string().contains("no host"));
        let plain = Server::parse("http://h").unwrap().trusting(Path::new("/nonexistent.pem"));
        assert!(plain.unwrap_err().to_string().contains("only matters for an https://"));
        let missing = Server::parse("https://h").unwrap().trusting(Path::new("/nonexistent.pem"));
        assert!(missing.unwrap_err().to_string().contains("/nonexistent.pem"));
        let dir = std::env::temp_dir().join(format!("confab-client-ca-{}", std::process::id()));
        std::fs::write(&dir, "not a certificate").unwrap();
        let empty = Server::parse("https://h").unwrap().trusting(&dir);
        std::fs::remove_file(&dir).unwrap();
        assert!(empty.unwrap_err().to_string().contains("no PEM certificate"));
    }
}
