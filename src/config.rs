//! The server's settings, read from Workers vars and secrets by `platform` and passed
//! to everything else as a plain value.

use crate::core::keys::SigningKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationMode {
    /// Nobody registers through the client API (admin shared-secret registration only).
    Closed,
    /// Anyone registers with `m.login.dummy`.
    Open,
    /// A registration token is required (`m.login.registration_token`).
    Token,
}

impl RegistrationMode {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "closed" => Some(Self::Closed),
            "open" => Some(Self::Open),
            "token" => Some(Self::Token),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct Config {
    /// The server name in user and room ids, e.g. `example.org` or `localhost:8787`.
    pub server_name: String,
    /// Where clients reach the server, e.g. `https://matrix.example.org`.
    pub public_baseurl: String,
    pub registration: RegistrationMode,
    pub signing_key: SigningKey,
    /// Synapse-style shared secret for `/_synapse/admin/v1/register`; `None` disables it.
    pub registration_shared_secret: Option<String>,
    /// Whether guests may register (`register?kind=guest`) and use the guest API.
    pub guest_access: bool,
}

impl Config {
    /// `host:port` that other servers use for federation, for `/.well-known/matrix/server`.
    pub fn federation_address(&self) -> String {
        let (scheme, rest) = self
            .public_baseurl
            .split_once("://")
            .unwrap_or(("https", &self.public_baseurl));
        let authority = rest.split('/').next().unwrap_or(rest);
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if has_port {
            authority.to_owned()
        } else if scheme == "http" {
            format!("{authority}:80")
        } else {
            format!("{authority}:443")
        }
    }

    /// The base URL without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.public_baseurl.trim_end_matches('/')
    }
}

#[cfg(test)]
pub(crate) fn test_config(server_name: &str, base: &str) -> Config {
    Config {
        server_name: server_name.into(),
        public_baseurl: base.into(),
        registration: RegistrationMode::Open,
        signing_key: SigningKey::from_seed([7; 32], "test").expect("key"),
        registration_shared_secret: None,
        guest_access: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn federation_address_defaults_the_port() {
        assert_eq!(
            test_config("e.org", "https://matrix.e.org/").federation_address(),
            "matrix.e.org:443"
        );
        assert_eq!(
            test_config("e.org", "http://127.0.0.1:8787").federation_address(),
            "127.0.0.1:8787"
        );
        assert_eq!(
            test_config("e.org", "https://m.e.org:8448/x").federation_address(),
            "m.e.org:8448"
        );
    }

    #[test]
    fn registration_modes_parse() {
        assert_eq!(RegistrationMode::parse("open"), Some(RegistrationMode::Open));
        assert_eq!(RegistrationMode::parse("token"), Some(RegistrationMode::Token));
        assert_eq!(RegistrationMode::parse("closed"), Some(RegistrationMode::Closed));
        assert_eq!(RegistrationMode::parse("OPEN"), None);
    }
}
