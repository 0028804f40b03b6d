//! Server ACLs (`m.room.server_acl`): whether a server may take part in a room, by the
//! spec's order — no ACL allows; an IP literal is denied when `allow_ip_literals` is
//! false; a `deny` match denies; an `allow` match allows; anything else is denied.
//! Globs are case-insensitive and never see the port.

use serde_json::Value;

/// `*` matches any run of characters, `?` any one.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it is now taken to cover up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The host of a server name, without its port.
fn host(server_name: &str) -> &str {
    if let Some(rest) = server_name.strip_prefix('[') {
        return match rest.find(']') {
            Some(end) => &server_name[..end + 2],
            None => server_name,
        };
    }
    server_name.rsplit_once(':').map_or(server_name, |(h, _)| h)
}

fn is_ip_literal(host: &str) -> bool {
    host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok()
}

/// Whether the ACL's content (`None`: the room has no ACL) lets `server_name` in.
pub fn allows(acl: Option<&Value>, server_name: &str) -> bool {
    let Some(content) = acl else {
        return true;
    };
    let host = host(server_name);
    if is_ip_literal(host) && content.get("allow_ip_literals").and_then(Value::as_bool) == Some(false) {
        return false;
    }
    let matches = |field: &str| {
        content.get(field).and_then(Value::as_array).is_some_and(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .any(|g| glob_matches(g, host))
        })
    };
    !matches("deny") && matches("allow")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs_match_case_insensitively_with_star_and_question_mark() {
        for (pattern, text, want) in [
            ("*", "example.org", true),
            ("*.example.org", "matrix.example.org", true),
            ("*.example.org", "example.org", false),
            ("ex?mple.org", "EXAMPLE.org", true),
            ("ex?mple.org", "exaample.org", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("", "", true),
            ("", "a", false),
            ("**", "", true),
        ] {
            assert_eq!(glob_matches(pattern, text), want, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn the_spec_order_decides() {
        assert!(allows(None, "anyone.org"), "no ACL allows");
        let acl = json!({"allow": ["*"], "deny": ["evil.com", "*.evil.com"], "allow_ip_literals": false});
        assert!(allows(Some(&acl), "good.org:8448"));
        for denied in [
            "evil.com",
            "evil.com:8448",
            "EVIL.com:1234",
            "sub.evil.com",
            "1.2.3.4",
            "1.2.3.4:8448",
            "[::1]:8448",
        ] {
            assert!(!allows(Some(&acl), denied), "{denied}");
        }
        let literals = json!({"allow": ["*"]});
        assert!(
            allows(Some(&literals), "1.2.3.4:8448"),
            "IP literals allowed by default"
        );
        assert!(
            !allows(Some(&json!({})), "good.org"),
            "no allow list denies everyone"
        );
        assert!(
            !allows(Some(&json!({"allow": "*"})), "good.org"),
            "a malformed list allows no one"
        );
        let only = json!({"allow": ["*.trusted.org"]});
        assert!(allows(Some(&only), "hs.trusted.org") && !allows(Some(&only), "other.org"));
    }
}
