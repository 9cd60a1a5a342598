//! Checking user-supplied links (avatars and other images) before they are stored (PROTOCOL §6.4).

/// Whether `url` is an absolute `http` or `https` URL with a host. Whitespace and control
/// characters are refused anywhere, since clients put these links straight into markup.
pub fn http_url_ok(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else { return false };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return false;
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        host_port.split_inclusive(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    !host.is_empty() && host != "[]"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_with_a_host() {
        for ok in ["https://example.com/a.png", "http://x", "HTTPS://u:p@host:8080/p?q#f", "http://[::1]:80/"] {
            assert!(http_url_ok(ok), "{ok}");
        }
        for bad in [
            "",
            "example.com",
            "ftp://example.com",
            "http://",
            "https:///path",
            "http://:80",
            "http://[]/",
            "javascript://x",
            "https://exa mple.com",
            "https://x/\n",
        ] {
            assert!(!http_url_ok(bad), "{bad:?}");
        }
    }
}
