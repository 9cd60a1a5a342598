//! IPv4/IPv6 CIDR matching for `metrics.allow` and `security.trusted_proxies`, and which addresses
//! are public (the outbound requests users choose the target of, such as Web Push, go only there).

use std::net::IpAddr;

/// A network given as `addr/prefix` (or a bare address, meaning a single host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `::1/128` or `127.0.0.1`; `None` when malformed.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let a = text.parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// Whether `ip` lies in this network. IPv4-mapped IPv6 addresses match IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Whether any of the textual CIDRs contains `ip` (malformed entries never match).
pub fn any_contains(cidrs: &[String], ip: IpAddr) -> bool {
    cidrs.iter().filter_map(|c| Cidr::parse(c)).any(|c| c.contains(ip))
}

/// The host of a `Host` header or URL authority, without the port, lowercased (`[::1]` keeps its
/// brackets).
pub fn host_name(authority: &str) -> String {
    let authority = authority.trim();
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.find(']').map_or(authority, |end| &authority[..end + 2]),
        None => match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => authority,
        },
    };
    host.to_ascii_lowercase()
}

/// Networks that are not the public Internet: this host, private and shared (CGNAT) ranges,
/// link-local, documentation and benchmarking ranges, multicast, reserved space, and the IPv6
/// forms that embed an IPv4 address (IPv4-compatible, NAT64, 6to4, Teredo), whose inner address
/// could be any of the above.
const NOT_PUBLIC: [&str; 27] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/96",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/23",
    "2001:db8::/32",
    "2002::/16",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
    "3fff::/20",
];

/// Whether `ip` is a public unicast address: not loopback, private, CGNAT, link-local, multicast,
/// unspecified, reserved or documentation space. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`)
/// are never public here: no public service is reached that way, and accepting them would be one
/// more spelling of a private address to get right.
pub fn is_public(ip: IpAddr) -> bool {
    if let IpAddr::V6(v6) = ip
        && v6.to_ipv4_mapped().is_some()
    {
        return false;
    }
    !NOT_PUBLIC.iter().filter_map(|c| Cidr::parse(c)).any(|c| c.contains(ip))
}

/// The client address in an `X-Forwarded-For` chain (PROTOCOL §1.1): the rightmost entry that is
/// not itself a trusted proxy. Each proxy appends the address it saw, so the entries left of the
/// last untrusted one are whatever the client wrote. `None` when an entry examined is not an
/// address.
pub fn forwarded_client(chain: &str, trusted: &[String]) -> Option<IpAddr> {
    let mut last = None;
    for entry in chain.rsplit(',') {
        let ip: IpAddr = entry.trim().parse().ok()?;
        if !any_contains(trusted, ip) {
            return Some(ip);
        }
        last = Some(ip);
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_drop_the_port() {
        assert_eq!(host_name("Chat.Example:443"), "chat.example");
        assert_eq!(host_name("localhost"), "localhost");
        assert_eq!(host_name("[::1]:5613"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
    }

    #[test]
    fn forwarded_client_is_the_rightmost_untrusted_entry() {
        let trusted = ["10.0.0.0/8".to_owned()];
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(forwarded_client("6.6.6.6, 203.0.113.9", &trusted), ip("203.0.113.9"));
        assert_eq!(forwarded_client("6.6.6.6, 203.0.113.9, 10.1.2.3", &trusted), ip("203.0.113.9"));
        assert_eq!(forwarded_client("10.0.0.1, 10.0.0.2", &trusted), ip("10.0.0.1"));
        assert_eq!(forwarded_client("203.0.113.9, junk", &trusted), None);
    }

    #[test]
    fn only_public_unicast_addresses_are_public() {
        for ip in ["8.8.8.8", "1.1.1.1", "142.250.74.10", "2a00:1450:4001:82b::200a", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn matches_networks() {
        let lo = Cidr::parse("127.0.0.0/8").unwrap();
        assert!(lo.contains("127.1.2.3".parse().unwrap()));
        assert!(lo.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!lo.contains("10.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("::1/128").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("1.2.3.4/33").is_none());
        assert!(Cidr::parse("nope").is_none());
    }
}
