//! The server's settings, read from Workers vars and secrets by `platform` and passed
//! to everything else as a plain value.

use crate::core::keys::{OldKey, SigningKey};

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
    /// `USER_DIRECTORY_SEARCH_ALL_USERS = "on"`: the user directory finds every local
    /// account, not only those sharing a room with the searcher or in an open room.
    pub user_directory_search_all: bool,
    pub federation: FederationSettings,
    pub media: MediaSettings,
}

/// The content repository's settings (vars `MEDIA_*`; see the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaSettings {
    /// Largest upload accepted, in bytes (`MEDIA_MAX_UPLOAD_SIZE`), published in
    /// `/media/config`; also the largest media fetched from another server.
    pub max_upload_size: u64,
    /// What the legacy unauthenticated downloads serve (`MEDIA_LEGACY_DOWNLOAD`).
    pub legacy_download: crate::core::media::LegacyDownload,
    /// Bytes a user's uploads may take in all (`MEDIA_USER_QUOTA`); `None`: no quota.
    pub user_quota: Option<u64>,
    /// How long another server's media stays cached (`MEDIA_REMOTE_RETENTION_DAYS`);
    /// `None`: for good.
    pub remote_retention_ms: Option<u64>,
}

impl Default for MediaSettings {
    fn default() -> Self {
        Self {
            max_upload_size: Self::DEFAULT_MAX_UPLOAD_SIZE,
            legacy_download: crate::core::media::LegacyDownload::Frozen,
            user_quota: None,
            remote_retention_ms: None,
        }
    }
}

impl MediaSettings {
    /// 50 MiB.
    pub const DEFAULT_MAX_UPLOAD_SIZE: u64 = 50 * 1024 * 1024;

    /// `MEDIA_USER_QUOTA`: bytes, empty or `0` for none.
    pub fn parse_user_quota(text: &str) -> Result<Option<u64>, String> {
        match text.trim() {
            "" | "0" => Ok(None),
            n => n
                .parse::<u64>()
                .map(Some)
                .map_err(|_| format!("MEDIA_USER_QUOTA: `{n}` is not a number of bytes")),
        }
    }

    /// `MEDIA_REMOTE_RETENTION_DAYS`: days, empty or `0` for none.
    pub fn parse_retention_days(text: &str) -> Result<Option<u64>, String> {
        match text.trim() {
            "" | "0" => Ok(None),
            n => n
                .parse::<u64>()
                .ok()
                .and_then(|d| d.checked_mul(24 * 3600 * 1000))
                .map(Some)
                .ok_or_else(|| format!("MEDIA_REMOTE_RETENTION_DAYS: `{n}` is not a number of days")),
        }
    }

    /// `MEDIA_MAX_UPLOAD_SIZE`: bytes, empty for the default.
    pub fn parse_max_upload_size(text: &str) -> Result<u64, String> {
        match text.trim() {
            "" => Ok(Self::DEFAULT_MAX_UPLOAD_SIZE),
            n => n
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("MEDIA_MAX_UPLOAD_SIZE: `{n}` is not a positive number of bytes")),
        }
    }
}

/// How this server federates (vars `FEDERATION_*`, `TRUSTED_KEY_SERVERS`,
/// `DNS_RESOLVER`, `OLD_VERIFY_KEYS`; see the README).
#[derive(Debug, Clone, Default)]
pub struct FederationSettings {
    /// Local development only: loopback peers may be contacted, over plain HTTP
    /// (`FEDERATION_LOOPBACK = "plaintext"`). Otherwise loopback, private and
    /// link-local targets are refused.
    pub loopback_plaintext: bool,
    /// Server-name globs this server federates with; empty means every server.
    pub allow: Vec<String>,
    /// Server-name globs this server never federates with (checked after `allow`).
    pub deny: Vec<String>,
    /// Notaries asked for keys a server does not serve itself.
    pub trusted_key_servers: Vec<String>,
    /// DNS-over-HTTPS endpoint (JSON API) for SRV lookups; `None` skips SRV.
    pub dns_resolver: Option<String>,
    /// Keys this server signed with before (a key rotation), published as
    /// `old_verify_keys`.
    pub old_verify_keys: Vec<OldKey>,
}

impl FederationSettings {
    /// Whether federation with `server` is allowed by the allow and deny lists.
    pub fn server_allowed(&self, server: &str) -> bool {
        use crate::core::acl::glob_matches;
        (self.allow.is_empty() || self.allow.iter().any(|p| glob_matches(p, server)))
            && !self.deny.iter().any(|p| glob_matches(p, server))
    }

    /// The notaries to ask for `server`'s keys (never the server itself).
    pub fn notaries_for(&self, server: &str) -> Vec<String> {
        self.trusted_key_servers
            .iter()
            .filter(|n| n.as_str() != server)
            .cloned()
            .collect()
    }

    /// A comma- or space-separated list.
    pub fn parse_list(text: &str) -> Vec<String> {
        text.split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// `ed25519:<version> <base64 public key> <expired_ts>`, several separated by `;`.
    pub fn parse_old_keys(text: &str) -> Result<Vec<OldKey>, String> {
        text.split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|entry| {
                let parts: Vec<&str> = entry.split_whitespace().collect();
                match parts[..] {
                    [key_id, key, expired] if key_id.starts_with("ed25519:") => Ok(OldKey {
                        key_id: key_id.to_owned(),
                        key: key.to_owned(),
                        expired_ts: expired
                            .parse()
                            .map_err(|_| format!("OLD_VERIFY_KEYS: bad expired_ts in `{entry}`"))?,
                    }),
                    _ => Err(format!(
                        "OLD_VERIFY_KEYS: `{entry}` is not `ed25519:<version> <key> <expired_ts>`"
                    )),
                }
            })
            .collect()
    }
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
        user_directory_search_all: false,
        federation: FederationSettings::default(),
        media: MediaSettings::default(),
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
    fn federation_settings_parse_and_decide() {
        let settings = FederationSettings {
            allow: FederationSettings::parse_list("*.friends.org, good.example"),
            deny: FederationSettings::parse_list("bad.friends.org"),
            ..FederationSettings::default()
        };
        assert!(settings.server_allowed("a.friends.org"));
        assert!(settings.server_allowed("good.example"));
        assert!(!settings.server_allowed("bad.friends.org"));
        assert!(!settings.server_allowed("other.example"));
        assert!(FederationSettings::default().server_allowed("anyone.example"));
        let old =
            FederationSettings::parse_old_keys("ed25519:a AAAA 100; ed25519:b BBBB 200").expect("parse");
        assert_eq!(old.len(), 2);
        assert_eq!((old[1].key_id.as_str(), old[1].expired_ts), ("ed25519:b", 200));
        assert!(FederationSettings::parse_old_keys("").expect("empty").is_empty());
        assert!(FederationSettings::parse_old_keys("ed25519:a AAAA soon").is_err());
        assert!(FederationSettings::parse_old_keys("rsa:a AAAA 1").is_err());
    }

    #[test]
    fn media_settings_parse() {
        assert_eq!(
            MediaSettings::parse_max_upload_size(""),
            Ok(MediaSettings::DEFAULT_MAX_UPLOAD_SIZE)
        );
        assert_eq!(MediaSettings::parse_max_upload_size("1000"), Ok(1000));
        assert!(MediaSettings::parse_max_upload_size("0").is_err());
        assert!(MediaSettings::parse_max_upload_size("big").is_err());
        assert_eq!(MediaSettings::parse_user_quota(""), Ok(None));
        assert_eq!(MediaSettings::parse_user_quota("0"), Ok(None));
        assert_eq!(MediaSettings::parse_user_quota("2500"), Ok(Some(2500)));
        assert!(MediaSettings::parse_user_quota("-1").is_err());
        assert_eq!(MediaSettings::parse_retention_days(""), Ok(None));
        assert_eq!(
            MediaSettings::parse_retention_days("2"),
            Ok(Some(2 * 24 * 3600 * 1000))
        );
        assert!(MediaSettings::parse_retention_days("1.5").is_err());
    }

    #[test]
    fn registration_modes_parse() {
        assert_eq!(RegistrationMode::parse("open"), Some(RegistrationMode::Open));
        assert_eq!(RegistrationMode::parse("token"), Some(RegistrationMode::Token));
        assert_eq!(RegistrationMode::parse("closed"), Some(RegistrationMode::Closed));
        assert_eq!(RegistrationMode::parse("OPEN"), None);
    }
}
