//! Which push endpoints Confab sends to (PROTOCOL §6.9, §8.6). The endpoint comes from a client,
//! so it is a server-side request forgery vector: only `https` URLs whose every address is public
//! are accepted, when subscribing and again when sending (DNS answers change), and the connection
//! goes to the very addresses that were vetted, because the HTTP client resolves through
//! [`VettedResolver`]. `push.unsafe_allow_local_endpoints` (tests with a local fake push service)
//! lifts both rules.

use std::{net::IpAddr, sync::Arc, time::Duration};

use reqwest::{
    Url,
    dns::{Addrs, Name, Resolve, Resolving},
};

use crate::domain::net::is_public;

/// Longest endpoint accepted (PROTOCOL §6.9).
pub const ENDPOINT_MAX: usize = 2048;

/// How long the lookup of an endpoint's host may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an endpoint is refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Refused {
    #[error("not an https URL of at most {ENDPOINT_MAX} bytes with a host")]
    Malformed,
    #[error("the host does not resolve")]
    Unresolved,
    #[error("the host resolves to a non-public address")]
    NotPublic,
}

/// The endpoint as a URL when its form is acceptable: `https` (or `http` when local endpoints are
/// allowed), a host, no credentials, at most [`ENDPOINT_MAX`] bytes.
pub fn parse(endpoint: &str, allow_local: bool) -> Result<Url, Refused> {
    if endpoint.len() > ENDPOINT_MAX {
        return Err(Refused::Malformed);
    }
    let url = Url::parse(endpoint).map_err(|_| Refused::Malformed)?;
    let scheme_ok = url.scheme() == "https" || (allow_local && url.scheme() == "http");
    let plain = url.username().is_empty() && url.password().is_none();
    if !scheme_ok || !plain || url.host_str().is_none_or(str::is_empty) {
        return Err(Refused::Malformed);
    }
    Ok(url)
}

/// The host of `url` when it is an address literal (`[…]` stripped).
fn literal(url: &Url) -> Option<IpAddr> {
    url.host_str()?.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// Refuses an address literal that is not public. Names are left to the resolver, which the
/// HTTP client does not consult for literals.
pub fn check_literal(url: &Url, allow_local: bool) -> Result<(), Refused> {
    match literal(url) {
        Some(ip) if !allow_local && !is_public(ip) => Err(Refused::NotPublic),
        _ => Ok(()),
    }
}

/// Checks that every address `url`'s host stands for is public (subscription time).
pub async fn vet(url: &Url, allow_local: bool) -> Result<(), Refused> {
    check_literal(url, allow_local)?;
    if allow_local || literal(url).is_some() {
        return Ok(());
    }
    let host = url.host_str().unwrap_or_default();
    lookup(host, allow_local).await.map(drop)
}

/// Resolves `host` and returns its addresses when all of them may be contacted.
async fn lookup(host: &str, allow_local: bool) -> Result<Vec<std::net::SocketAddr>, Refused> {
    let found = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, 0)))
        .await
        .map_err(|_| Refused::Unresolved)?
        .map_err(|_| Refused::Unresolved)?;
    let addrs: Vec<std::net::SocketAddr> = found.collect();
    if addrs.is_empty() {
        return Err(Refused::Unresolved);
    }
    if !allow_local && addrs.iter().any(|a| !is_public(a.ip())) {
        return Err(Refused::NotPublic);
    }
    Ok(addrs)
}

/// The push client's resolver: it resolves like the system does and refuses a name any of whose
/// addresses is not public, so the addresses vetted are the ones connected to.
pub struct VettedResolver {
    pub allow_local: bool,
}

impl Resolve for VettedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_local = self.allow_local;
        Box::pin(async move {
            let addrs = lookup(name.as_str(), allow_local).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The HTTP client for push services: the vetted resolver, no proxy (it would resolve for us), no
/// redirects (PROTOCOL §8.6), and `timeout` for each request.
pub fn client(allow_local: bool, timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(VettedResolver { allow_local }))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_urls_with_a_host_and_no_credentials() {
        assert!(parse("https://fcm.googleapis.com/fcm/send/abc", false).is_ok());
        assert!(parse("https://push.example:8443/x", false).is_ok());
        for bad in
            ["http://push.example/x", "ftp://push.example/x", "https://", "not a url", "https://u:p@push.example/"]
        {
            assert_eq!(parse(bad, false), Err(Refused::Malformed), "{bad}");
        }
        let long = format!("https://push.example/{}", "a".repeat(ENDPOINT_MAX));
        assert_eq!(parse(&long, false), Err(Refused::Malformed));
        assert!(parse("http://127.0.0.1:9/x", true).is_ok());
    }

    #[tokio::test]
    async fn private_addresses_are_refused_unless_allowed() {
        for bad in ["https://127.0.0.1/x", "https://[::1]/x", "https://10.0.0.1/x", "https://[::ffff:7f00:1]/x"] {
            let url = parse(bad, false).unwrap();
            assert_eq!(vet(&url, false).await, Err(Refused::NotPublic), "{bad}");
            assert_eq!(vet(&url, true).await, Ok(()), "{bad}");
        }
        let url = parse("https://localhost/x", false).unwrap();
        assert_eq!(vet(&url, false).await, Err(Refused::NotPublic));
        assert!(vet(&parse("https://8.8.8.8/x", false).unwrap(), false).await.is_ok());
    }
}
