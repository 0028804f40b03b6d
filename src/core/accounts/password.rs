//! The stored password format, `$pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>`,
//! and its constant-time check. The KDF runs in `platform` (WebCrypto); this module
//! only parses, formats and compares.

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use subtle::ConstantTimeEq;

/// PBKDF2-HMAC-SHA256 rounds for new hashes. workerd refuses more than 100 000
/// (`crypto.subtle.deriveBits` throws `NotSupportedError` above it); the count is
/// stored with each hash, so it can change without breaking old ones.
pub const ITERATIONS: u32 = 100_000;
pub const SALT_BYTES: usize = 16;
pub const HASH_BYTES: usize = 32;
/// Longest password accepted, in bytes (a cap on KDF input, as Synapse has).
pub const MAX_PASSWORD_BYTES: usize = 512;

const PREFIX: &str = "$pbkdf2-sha256$";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordHash {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub hash: Vec<u8>,
}

impl PasswordHash {
    /// Parses the stored text; `None` for anything not in the format (for example the
    /// empty hash of a deactivated account), which then matches no password.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix(PREFIX)?;
        let mut parts = rest.split('$');
        let iterations: u32 = parts.next()?.parse().ok()?;
        let salt = decode(parts.next()?)?;
        let hash = decode(parts.next()?)?;
        if parts.next().is_some() || iterations == 0 || salt.is_empty() || hash.len() != HASH_BYTES {
            return None;
        }
        Some(Self {
            iterations,
            salt,
            hash,
        })
    }

    pub fn format(&self) -> String {
        format!(
            "{PREFIX}{}${}${}",
            self.iterations,
            STANDARD_NO_PAD.encode(&self.salt),
            STANDARD_NO_PAD.encode(&self.hash)
        )
    }

    /// Whether a freshly derived key equals the stored one, in constant time.
    pub fn matches(&self, derived: &[u8]) -> bool {
        self.hash.len() == derived.len() && bool::from(self.hash.ct_eq(derived))
    }
}

fn decode(text: &str) -> Option<Vec<u8>> {
    STANDARD_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn derive(password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = [0u8; HASH_BYTES];
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), salt, iterations, &mut out);
        out.to_vec()
    }

    /// Computed by WebCrypto (`crypto.subtle.deriveBits` with PBKDF2/SHA-256 in Node,
    /// the same API the worker calls) for the password `correct horse`.
    const WEBCRYPTO_HASH: &str =
        "$pbkdf2-sha256$100000$TmV1cml0ZS1zYWx0LTAxIQ$cWg3ENBa4uunfkmPFplUm2Kvk6kAa+bWs0Qf+QdkWLk";

    #[test]
    fn a_webcrypto_hash_verifies_with_an_independent_pbkdf2() {
        let stored = PasswordHash::parse(WEBCRYPTO_HASH).expect("parses");
        assert_eq!(stored.iterations, ITERATIONS);
        assert!(stored.matches(&derive("correct horse", &stored.salt, stored.iterations)));
        assert!(!stored.matches(&derive("correct horsE", &stored.salt, stored.iterations)));
        assert_eq!(stored.format(), WEBCRYPTO_HASH);
    }

    #[test]
    fn rfc7914_vector() {
        // RFC 7914 section 11: PBKDF2-HMAC-SHA256, P="passwd", S="salt", c=1.
        let dk = derive("passwd", b"salt", 1);
        assert_eq!(
            crate::core::accounts::hex(&dk),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
    }

    #[test]
    fn format_round_trips_and_rejects_garbage() {
        let h = PasswordHash {
            iterations: 7,
            salt: vec![1, 2, 3],
            hash: vec![9; HASH_BYTES],
        };
        assert_eq!(PasswordHash::parse(&h.format()), Some(h.clone()));
        for bad in [
            "",
            "$pbkdf2-sha256$",
            "$pbkdf2-sha256$0$AQID$CQkJ",
            "$pbkdf2-sha256$x$AQID$CQkJ",
            "$pbkdf2-sha256$7$AQID$CQkJ", // hash too short
            "$argon2id$v=19$m=1,t=1,p=1$AQID$CQkJ",
            &format!("{}$extra", h.format()),
        ] {
            assert_eq!(PasswordHash::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn comparison_needs_equal_length_and_bytes() {
        let h = PasswordHash {
            iterations: 1,
            salt: vec![1],
            hash: vec![5; HASH_BYTES],
        };
        assert!(h.matches(&[5; HASH_BYTES]));
        assert!(!h.matches(&[5; HASH_BYTES - 1]));
        let mut other = [5; HASH_BYTES];
        other[31] = 6;
        assert!(!h.matches(&other));
    }
}
