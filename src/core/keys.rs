//! The server's ed25519 signing key: parsing, the published verify key, and signing
//! JSON objects per the spec's "Signing JSON" appendix.

use std::collections::BTreeMap;

use base64::alphabet::STANDARD as STANDARD_ALPHABET;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use ruma::serde::Base64;
use ruma::signatures::{sign_json, verify_json, Ed25519KeyPair, KeyPair, PublicKeyMap};
use ruma::{CanonicalJsonObject, CanonicalJsonValue};

/// PKCS#8 v1 prefix for an Ed25519 private key: the DER header before the 32-byte seed
/// (RFC 8410, section 7).
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("signing key must look like `ed25519 <version> <base64 seed>`")]
    Format,
    #[error("signing key seed is not valid base64 of 32 bytes")]
    Seed,
    #[error("signing failed: {0}")]
    Sign(String),
}

/// A server signing key: `ed25519:<version>` plus the key pair.
pub struct SigningKey {
    version: String,
    seed: [u8; 32],
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Builds a key from its 32-byte seed and version (the part after `ed25519:`).
    pub fn from_seed(seed: [u8; 32], version: &str) -> Result<Self, KeyError> {
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(KeyError::Format);
        }
        let mut der = Vec::with_capacity(48);
        der.extend_from_slice(&PKCS8_ED25519_PREFIX);
        der.extend_from_slice(&seed);
        let pair = Ed25519KeyPair::from_der(&der, version.to_owned()).map_err(|_| KeyError::Seed)?;
        Ok(Self {
            version: version.to_owned(),
            seed,
            pair,
        })
    }

    /// Parses the Synapse-compatible text form `ed25519 <version> <base64 seed>`.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let mut parts = text.split_whitespace();
        let (Some("ed25519"), Some(version), Some(seed), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(KeyError::Format);
        };
        let bytes = decode_base64(seed).ok_or(KeyError::Seed)?;
        let seed: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Seed)?;
        Self::from_seed(seed, version)
    }

    /// The text form accepted by [`SigningKey::parse`].
    pub fn to_text(&self) -> String {
        format!("ed25519 {} {}", self.version, STANDARD_NO_PAD.encode(self.seed))
    }

    /// `ed25519:<version>`.
    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.version)
    }

    /// The public key, unpadded base64 as the spec publishes it.
    pub fn public_key_base64(&self) -> String {
        STANDARD_NO_PAD.encode(self.pair.public_key())
    }

    /// The key pair, for ruma's signing functions.
    pub fn pair(&self) -> &Ed25519KeyPair {
        &self.pair
    }

    /// Signs `object` as `server_name`, adding to its `signatures`.
    pub fn sign_object(&self, server_name: &str, object: &mut CanonicalJsonObject) -> Result<(), KeyError> {
        sign_json(server_name, &self.pair, object).map_err(|e| KeyError::Sign(e.to_string()))
    }

    /// Signs raw bytes; the signature is unpadded base64.
    pub fn sign_bytes(&self, message: &[u8]) -> String {
        STANDARD_NO_PAD.encode(self.pair.sign(message).as_bytes())
    }
}

/// A set of known public keys, `server -> key id -> unpadded base64 key`.
pub fn public_key_map(entries: &[(&str, &str, &str)]) -> Result<PublicKeyMap, KeyError> {
    let mut map: PublicKeyMap = BTreeMap::new();
    for (server, key_id, key) in entries {
        let bytes = decode_base64(key).ok_or(KeyError::Seed)?;
        map.entry((*server).to_owned())
            .or_default()
            .insert((*key_id).to_owned(), Base64::new(bytes));
    }
    Ok(map)
}

/// Verifies `object`'s signatures: `keys` must name every server that signed it.
pub fn verify_object(keys: &PublicKeyMap, object: &CanonicalJsonObject) -> bool {
    verify_json(keys, object).is_ok()
}

/// Whether `object` carries a valid signature of `server` with `key_id` (`key` is
/// unpadded base64), whoever else signed it too (a notary's answer carries the
/// server's signature and the notary's).
pub fn signed_by(object: &CanonicalJsonObject, server: &str, key_id: &str, key: &str) -> bool {
    let Ok(map) = public_key_map(&[(server, key_id, key)]) else {
        return false;
    };
    let Some(CanonicalJsonValue::Object(signatures)) = object.get("signatures") else {
        return false;
    };
    let Some(sig) = signatures.get(server).and_then(|s| match s {
        CanonicalJsonValue::Object(by_key) => by_key.get(key_id).cloned(),
        _ => None,
    }) else {
        return false;
    };
    let mut only = CanonicalJsonObject::new();
    only.insert(key_id.to_owned(), sig);
    let mut reduced = CanonicalJsonObject::new();
    reduced.insert(server.to_owned(), CanonicalJsonValue::Object(only));
    let mut copy = object.clone();
    copy.insert("signatures".into(), CanonicalJsonValue::Object(reduced));
    verify_json(&map, &copy).is_ok()
}

/// A key this server used to sign with: `old_verify_keys` in its key responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldKey {
    pub key_id: String,
    /// Unpadded base64.
    pub key: String,
    pub expired_ts: u64,
}

/// The body of `GET /_matrix/key/v2/server`, signed by `key`.
pub fn server_keys_response(
    server_name: &str,
    key: &SigningKey,
    old_keys: &[OldKey],
    valid_until_ts: u64,
) -> Result<CanonicalJsonObject, KeyError> {
    let mut verify_key = CanonicalJsonObject::new();
    verify_key.insert("key".into(), CanonicalJsonValue::String(key.public_key_base64()));
    let mut verify_keys = CanonicalJsonObject::new();
    verify_keys.insert(key.key_id(), CanonicalJsonValue::Object(verify_key));

    let mut object = CanonicalJsonObject::new();
    object.insert(
        "server_name".into(),
        CanonicalJsonValue::String(server_name.to_owned()),
    );
    object.insert("verify_keys".into(), CanonicalJsonValue::Object(verify_keys));
    let mut old = CanonicalJsonObject::new();
    for k in old_keys {
        let mut entry = CanonicalJsonObject::new();
        entry.insert("key".into(), CanonicalJsonValue::String(k.key.clone()));
        let ts = i64::try_from(k.expired_ts).unwrap_or(i64::MAX);
        entry.insert(
            "expired_ts".into(),
            CanonicalJsonValue::Integer(ruma::Int::new_saturating(ts)),
        );
        old.insert(k.key_id.clone(), CanonicalJsonValue::Object(entry));
    }
    object.insert("old_verify_keys".into(), CanonicalJsonValue::Object(old));
    let ts = i64::try_from(valid_until_ts).unwrap_or(i64::MAX);
    object.insert(
        "valid_until_ts".into(),
        CanonicalJsonValue::Integer(ruma::Int::new_saturating(ts)),
    );
    key.sign_object(server_name, &mut object)?;
    Ok(object)
}

/// Lenient standard base64: padding optional, non-zero trailing bits allowed (the
/// spec's own example seed has them, and Synapse-generated keys are read this way).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &STANDARD_ALPHABET,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes standard base64 with or without padding (keys and seeds appear both ways).
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    LENIENT.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        // The seed used by the spec's signing examples.
        SigningKey::parse("ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").expect("valid key")
    }

    #[test]
    fn parses_and_round_trips_text_form() {
        let k = key();
        assert_eq!(k.key_id(), "ed25519:1");
        assert_eq!(
            SigningKey::parse(&k.to_text())
                .expect("round trip")
                .public_key_base64(),
            k.public_key_base64()
        );
        // Public key of the spec's example seed.
        assert_eq!(
            k.public_key_base64(),
            "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"
        );
    }

    #[test]
    fn rejects_malformed_keys() {
        assert_eq!(SigningKey::parse("").unwrap_err(), KeyError::Format);
        assert_eq!(SigningKey::parse("rsa 1 AAAA").unwrap_err(), KeyError::Format);
        assert_eq!(SigningKey::parse("ed25519 1 AAAA").unwrap_err(), KeyError::Seed);
        assert_eq!(
            SigningKey::parse("ed25519 a:b YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").unwrap_err(),
            KeyError::Format
        );
        assert_eq!(
            SigningKey::parse("ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1 x").unwrap_err(),
            KeyError::Format
        );
    }

    #[test]
    fn one_signer_is_checked_among_several() {
        let a = SigningKey::from_seed([1; 32], "a").expect("key");
        let b = SigningKey::from_seed([2; 32], "b").expect("key");
        let mut object = server_keys_response("a.example", &a, &[], 5).expect("signed");
        b.sign_object("b.example", &mut object).expect("countersign");
        assert!(signed_by(
            &object,
            "a.example",
            &a.key_id(),
            &a.public_key_base64()
        ));
        assert!(signed_by(
            &object,
            "b.example",
            &b.key_id(),
            &b.public_key_base64()
        ));
        assert!(!signed_by(
            &object,
            "b.example",
            &b.key_id(),
            &a.public_key_base64()
        ));
        assert!(!signed_by(
            &object,
            "c.example",
            &b.key_id(),
            &b.public_key_base64()
        ));
        let mut tampered = object.clone();
        tampered.insert(
            "valid_until_ts".into(),
            CanonicalJsonValue::Integer(ruma::Int::from(6u32)),
        );
        assert!(!signed_by(
            &tampered,
            "a.example",
            &a.key_id(),
            &a.public_key_base64()
        ));
    }

    #[test]
    fn server_keys_are_self_signed() {
        let k = key();
        let body = server_keys_response("example.org", &k, &[], 1_700_000_000_000).expect("signed");
        let keys = public_key_map(&[("example.org", &k.key_id(), &k.public_key_base64())]).expect("map");
        assert!(verify_object(&keys, &body));

        let mut tampered = body.clone();
        tampered.insert(
            "valid_until_ts".into(),
            CanonicalJsonValue::Integer(ruma::Int::new_saturating(1)),
        );
        assert!(!verify_object(&keys, &tampered));
    }
}
