//! Synapse's shared-secret registration MAC: HMAC-SHA1 keyed with the shared secret
//! over `nonce \0 username \0 password \0 admin|notadmin [\0 user_type]`, sent as hex.

use hmac::{Hmac, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// The fields the MAC covers.
pub struct MacInput<'a> {
    pub nonce: &'a str,
    pub username: &'a str,
    pub password: &'a str,
    pub admin: bool,
    pub user_type: Option<&'a str>,
}

fn mac(secret: &str, input: &MacInput<'_>) -> HmacSha1 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha1 as Mac>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(input.nonce.as_bytes());
    mac.update(b"\0");
    mac.update(input.username.as_bytes());
    mac.update(b"\0");
    mac.update(input.password.as_bytes());
    mac.update(b"\0");
    mac.update(if input.admin { b"admin" } else { b"notadmin" });
    if let Some(user_type) = input.user_type {
        mac.update(b"\0");
        mac.update(user_type.as_bytes());
    }
    mac
}

/// The hex MAC a client would send (for tests and tooling).
pub fn compute(secret: &str, input: &MacInput<'_>) -> String {
    super::hex(&mac(secret, input).finalize().into_bytes())
}

/// Whether `mac_hex` is the right MAC, compared in constant time.
pub fn verify(secret: &str, input: &MacInput<'_>, mac_hex: &str) -> bool {
    match decode_hex(mac_hex) {
        Some(bytes) => mac(secret, input).verify_slice(&bytes).is_ok(),
        None => false,
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(admin: bool, user_type: Option<&'static str>) -> MacInput<'static> {
        MacInput {
            nonce: "abc",
            username: "alice",
            password: "pw",
            admin,
            user_type,
        }
    }

    #[test]
    fn matches_pythons_hmac() {
        // python3: hmac.new(b"s3cret", b"abc\0alice\0pw\0admin", hashlib.sha1).hexdigest()
        assert_eq!(
            compute("s3cret", &input(true, None)),
            "fff9f57189c2d1a494c19759e16d592b0f64ce32"
        );
        assert_eq!(
            compute("s3cret", &input(false, Some("bot"))),
            "d3aca8c91c01f0a76c048b887bea95fa6d6e3e6b"
        );
    }

    #[test]
    fn verify_rejects_other_fields_and_bad_hex() {
        let good = "fff9f57189c2d1a494c19759e16d592b0f64ce32";
        assert!(verify("s3cret", &input(true, None), good));
        assert!(verify("s3cret", &input(true, None), &good.to_uppercase()));
        assert!(!verify("s3cret", &input(false, None), good));
        assert!(!verify("other", &input(true, None), good));
        assert!(!verify("s3cret", &input(true, None), &good[..38]));
        assert!(!verify("s3cret", &input(true, None), "zz"));
        assert!(!verify("s3cret", &input(true, None), "f"));
        assert!(!verify("s3cret", &input(true, None), "é1"));
    }
}
