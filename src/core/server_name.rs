//! Server names and how to reach them (server-server API, "Resolving server names"):
//! the parsing and the decisions; the lookups (well-known, SRV) are the caller's.

use std::net::IpAddr;

use serde_json::Value;

/// The federation port when nothing else says.
pub const DEFAULT_PORT: u16 = 8448;

/// A server name split into host and optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerName {
    /// A DNS name (lower-cased), an IPv4 literal, or an IPv6 literal without brackets.
    pub host: String,
    pub port: Option<u16>,
    pub ip: Option<IpAddr>,
}

impl ServerName {
    /// Parses `host[:port]`, `1.2.3.4[:port]` or `[::1][:port]`.
    pub fn parse(text: &str) -> Option<Self> {
        if text.is_empty() || text.len() > 255 {
            return None;
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (inside, after) = rest.split_once(']')?;
            let ip: std::net::Ipv6Addr = inside.parse().ok()?;
            let port = match after {
                "" => None,
                p => Some(parse_port(p.strip_prefix(':')?)?),
            };
            return Some(Self {
                host: inside.to_owned(),
                port,
                ip: Some(IpAddr::V6(ip)),
            });
        } else {
            match text.rsplit_once(':') {
                Some((host, port)) => (host, Some(parse_port(port)?)),
                None => (text, None),
            }
        };
        if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
            return Some(Self {
                host: host.to_owned(),
                port,
                ip: Some(IpAddr::V4(ip)),
            });
        }
        let valid = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        valid.then(|| Self {
            host: host.to_ascii_lowercase(),
            port,
            ip: None,
        })
    }

    /// The host as it appears in a URL or a `Host` header (IPv6 in brackets).
    pub fn url_host(&self) -> String {
        match self.ip {
            Some(IpAddr::V6(_)) => format!("[{}]", self.host),
            _ => self.host.clone(),
        }
    }

    /// `host[:port]` as it appears in a `Host` header.
    pub fn authority(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.url_host()),
            None => self.url_host(),
        }
    }
}

fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|p| *p != 0)
}

/// Where to connect and what to call the server there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host to connect to (a name or an IP literal without brackets).
    pub host: String,
    pub port: u16,
    /// The `Host` header (and the name the certificate must be valid for).
    pub host_header: String,
}

/// The first decision, before any lookup: an IP literal or an explicit port is
/// contacted directly; otherwise `None` (ask the well-known, then SRV).
pub fn direct_target(name: &ServerName) -> Option<Target> {
    if name.ip.is_some() || name.port.is_some() {
        return Some(Target {
            host: name.host.clone(),
            port: name.port.unwrap_or(DEFAULT_PORT),
            host_header: name.authority(),
        });
    }
    None
}

/// The `m.server` of a `/.well-known/matrix/server` body, when it is a valid server
/// name.
pub fn well_known_server(body: &Value) -> Option<ServerName> {
    ServerName::parse(body.get("m.server")?.as_str()?)
}

/// After a delegation (`delegated` from the well-known): an IP literal or an explicit
/// port is contacted directly, with the delegated name as the `Host`; otherwise `None`
/// (look up SRV records for the delegated host, then its port 8448).
pub fn delegated_target(delegated: &ServerName) -> Option<Target> {
    direct_target(delegated)
}

/// The last resort for a host name: `host:8448`, `Host: host`.
pub fn default_target(host: &str) -> Target {
    Target {
        host: host.to_owned(),
        port: DEFAULT_PORT,
        host_header: host.to_owned(),
    }
}

/// The best target of a DNS-over-HTTPS SRV answer (`application/dns-json`, data
/// `"priority weight port target."`): the lowest priority, then the highest weight;
/// `None` when there is no usable record (a target of `.` means "no service").
pub fn srv_target(answer: &Value, host_header: &str) -> Option<Target> {
    let records = answer.get("Answer")?.as_array()?;
    let mut best: Option<(u16, u16, Target)> = None;
    for record in records {
        if record.get("type").and_then(Value::as_u64) != Some(33) {
            continue;
        }
        let Some(data) = record.get("data").and_then(Value::as_str) else {
            continue;
        };
        let fields: Vec<&str> = data.split_whitespace().collect();
        let [priority, weight, port, target] = fields[..] else {
            continue;
        };
        let (Ok(priority), Ok(weight), Ok(port)) = (
            priority.parse::<u16>(),
            weight.parse::<u16>(),
            port.parse::<u16>(),
        ) else {
            continue;
        };
        let target = target.trim_end_matches('.');
        if target.is_empty() || port == 0 || ServerName::parse(target).is_none() {
            continue;
        }
        let better = match &best {
            None => true,
            Some((p, w, _)) => priority < *p || (priority == *p && weight > *w),
        };
        if better {
            best = Some((
                priority,
                weight,
                Target {
                    host: target.to_ascii_lowercase(),
                    port,
                    host_header: host_header.to_owned(),
                },
            ));
        }
    }
    best.map(|(_, _, t)| t)
}

/// Whether an address is one other servers must not make us contact: loopback,
/// private, link-local, unique-local, shared (CGNAT), unspecified, multicast,
/// broadcast or documentation ranges.
pub fn is_internal_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal_ip(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
        }
    }
}

/// Whether a host is loopback: `localhost` (and its subdomains) or a loopback literal.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| match ip {
            IpAddr::V4(v4) => v4.is_loopback(),
            IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_server_names() {
        let n = ServerName::parse("Matrix.Example.org").expect("name");
        assert_eq!(
            (n.host.as_str(), n.port, n.ip),
            ("matrix.example.org", None, None)
        );
        let n = ServerName::parse("example.org:8449").expect("name");
        assert_eq!((n.host.as_str(), n.port), ("example.org", Some(8449)));
        let n = ServerName::parse("1.2.3.4:80").expect("ip");
        assert!(n.ip.is_some());
        assert_eq!(n.authority(), "1.2.3.4:80");
        let n = ServerName::parse("[::1]:8448").expect("ipv6");
        assert_eq!((n.host.as_str(), n.url_host().as_str()), ("::1", "[::1]"));
        for bad in [
            "", "a:b", "a:", "a:0", "a:70000", "[::1", "[zz]:1", "a b", "a/b", "[::1]x",
        ] {
            assert_eq!(ServerName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn resolution_decisions_follow_the_spec_order() {
        let direct = direct_target(&ServerName::parse("1.2.3.4").expect("ip")).expect("ip is direct");
        assert_eq!((direct.port, direct.host_header.as_str()), (8448, "1.2.3.4"));
        let direct = direct_target(&ServerName::parse("e.org:1234").expect("name")).expect("port is direct");
        assert_eq!(
            (direct.host.as_str(), direct.port, direct.host_header.as_str()),
            ("e.org", 1234, "e.org:1234")
        );
        assert_eq!(direct_target(&ServerName::parse("e.org").expect("name")), None);

        let delegated = well_known_server(&json!({"m.server": "fed.e.org:443"})).expect("m.server");
        let t = delegated_target(&delegated).expect("explicit port");
        assert_eq!(
            (t.host.as_str(), t.port, t.host_header.as_str()),
            ("fed.e.org", 443, "fed.e.org:443")
        );
        assert_eq!(well_known_server(&json!({"m.server": "bad name"})), None);
        assert_eq!(well_known_server(&json!({"m.server": 5})), None);
        assert_eq!(default_target("e.org").port, 8448);
    }

    #[test]
    fn picks_the_best_srv_record() {
        let answer = json!({"Status": 0, "Answer": [
            {"type": 5, "data": "alias.e.org."},
            {"type": 33, "data": "20 100 8448 low.e.org."},
            {"type": 33, "data": "10 5 8449 a.e.org."},
            {"type": 33, "data": "10 50 8450 b.e.org."},
            {"type": 33, "data": "1 0 0 ."},
            {"type": 33, "data": "garbage"},
        ]});
        let t = srv_target(&answer, "e.org").expect("record");
        assert_eq!(
            (t.host.as_str(), t.port, t.host_header.as_str()),
            ("b.e.org", 8450, "e.org")
        );
        assert_eq!(srv_target(&json!({"Status": 3}), "e.org"), None);
    }

    #[test]
    fn recognises_internal_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(is_internal_ip(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["1.1.1.1", "8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            assert!(!is_internal_ip(ip.parse().expect("ip")), "{ip}");
        }
        assert!(is_loopback_host("localhost") && is_loopback_host("127.0.0.2") && is_loopback_host("::1"));
        assert!(!is_loopback_host("example.org") && !is_loopback_host("10.0.0.1"));
    }
}
