//! Other servers' signing keys: checking a `/_matrix/key/v2/server` answer (direct or
//! through a notary), and when a key may be used.

use std::collections::BTreeMap;

use ruma::CanonicalJsonObject;
use serde_json::Value;

use super::keys::signed_by;

/// The spec caps how far ahead a key is trusted, whatever `valid_until_ts` says.
pub const MAX_KEY_VALIDITY_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// One verify key of a server, as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownKey {
    pub key_id: String,
    /// Unpadded base64.
    pub key: String,
    /// Until when the key signs: the response's `valid_until_ts` for a current key
    /// (capped at 7 days after it was fetched), `expired_ts` for an old one.
    pub valid_until_ts: u64,
    /// Whether it was listed under `old_verify_keys` (never accepted for requests).
    pub old: bool,
}

impl KnownKey {
    /// Whether a signature made at `ts` with this key is acceptable: for room versions
    /// that enforce key validity (and for requests, with `ts` = now).
    pub fn valid_at(&self, ts: u64) -> bool {
        ts <= self.valid_until_ts
    }

    /// Whether it may authenticate a request now.
    pub fn valid_for_request(&self, now_ms: u64) -> bool {
        !self.old && self.valid_at(now_ms)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerKeyError {
    #[error("key response is not an object with server_name, verify_keys and valid_until_ts")]
    Shape,
    #[error("key response is for {0}")]
    WrongServer(String),
    #[error("key response is not signed by the server with one of its verify keys")]
    Unsigned,
    #[error("key response has a bad signature")]
    BadSignature,
}

fn key_of(entry: &Value) -> Option<&str> {
    entry.get("key")?.as_str()
}

/// Checks a server's key response (`/_matrix/key/v2/server`, or one entry of a notary's
/// `server_keys`) for `server_name`, fetched at `fetched_ms`: it must name the server
/// and be signed by it with at least one of the listed verify keys, every such
/// signature valid. Returns the keys it lists (non-ed25519 keys left out).
pub fn check_response(
    response: &Value,
    server_name: &str,
    fetched_ms: u64,
) -> Result<Vec<KnownKey>, ServerKeyError> {
    let named = response
        .get("server_name")
        .and_then(Value::as_str)
        .ok_or(ServerKeyError::Shape)?;
    if named != server_name {
        return Err(ServerKeyError::WrongServer(named.to_owned()));
    }
    let valid_until = response
        .get("valid_until_ts")
        .and_then(Value::as_u64)
        .ok_or(ServerKeyError::Shape)?;
    let current = response
        .get("verify_keys")
        .and_then(Value::as_object)
        .ok_or(ServerKeyError::Shape)?;
    let object: CanonicalJsonObject =
        serde_json::from_value(response.clone()).map_err(|_| ServerKeyError::Shape)?;
    let signatures = response
        .get("signatures")
        .and_then(|s| s.get(server_name))
        .and_then(Value::as_object)
        .ok_or(ServerKeyError::Unsigned)?;
    let mut signed = false;
    for (key_id, entry) in current {
        if !signatures.contains_key(key_id) || !key_id.starts_with("ed25519:") {
            continue;
        }
        let key = key_of(entry).ok_or(ServerKeyError::Shape)?;
        // The server's own signature; a notary's countersignature may be there too.
        if !signed_by(&object, server_name, key_id, key) {
            return Err(ServerKeyError::BadSignature);
        }
        signed = true;
    }
    if !signed {
        return Err(ServerKeyError::Unsigned);
    }
    let cap = fetched_ms.saturating_add(MAX_KEY_VALIDITY_MS);
    let mut keys: BTreeMap<String, KnownKey> = BTreeMap::new();
    if let Some(old) = response.get("old_verify_keys").and_then(Value::as_object) {
        for (key_id, entry) in old {
            let (Some(key), Some(expired)) = (key_of(entry), entry.get("expired_ts").and_then(Value::as_u64))
            else {
                continue;
            };
            if key_id.starts_with("ed25519:") {
                keys.insert(
                    key_id.clone(),
                    KnownKey {
                        key_id: key_id.clone(),
                        key: key.to_owned(),
                        valid_until_ts: expired,
                        old: true,
                    },
                );
            }
        }
    }
    for (key_id, entry) in current {
        let key = key_of(entry).ok_or(ServerKeyError::Shape)?;
        if key_id.starts_with("ed25519:") {
            keys.insert(
                key_id.clone(),
                KnownKey {
                    key_id: key_id.clone(),
                    key: key.to_owned(),
                    valid_until_ts: valid_until.min(cap),
                    old: false,
                },
            );
        }
    }
    Ok(keys.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::keys::{server_keys_response, OldKey, SigningKey};
    use serde_json::json;

    fn signed(name: &str, key: &SigningKey, valid_until: u64) -> Value {
        serde_json::to_value(server_keys_response(name, key, &[], valid_until).expect("sign")).expect("json")
    }

    #[test]
    fn accepts_a_self_signed_response_and_caps_its_validity() {
        let key = SigningKey::from_seed([3; 32], "k1").expect("key");
        let day = 24 * 60 * 60 * 1000;
        let keys =
            check_response(&signed("a.example", &key, 1_000 + 30 * day), "a.example", 1_000).expect("ok");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].key_id, "ed25519:k1");
        assert_eq!(keys[0].key, key.public_key_base64());
        assert_eq!(keys[0].valid_until_ts, 1_000 + MAX_KEY_VALIDITY_MS);
        assert!(keys[0].valid_for_request(2_000));
        assert!(!keys[0].valid_for_request(2_000 + MAX_KEY_VALIDITY_MS));
        let short = check_response(&signed("a.example", &key, 5_000), "a.example", 1_000).expect("ok");
        assert_eq!(short[0].valid_until_ts, 5_000);
        assert!(!short[0].valid_at(5_001));
    }

    #[test]
    fn keeps_old_keys_for_events_only() {
        let key = SigningKey::from_seed([3; 32], "k2").expect("key");
        let old = OldKey {
            key_id: "ed25519:k1".into(),
            key: "AAAA".into(),
            expired_ts: 500,
        };
        let body = server_keys_response("a.example", &key, &[old], 10_000).expect("sign");
        let keys = check_response(&serde_json::to_value(body).expect("json"), "a.example", 0).expect("ok");
        let old = keys
            .iter()
            .find(|k| k.key_id == "ed25519:k1")
            .expect("old key kept");
        assert!(old.old && old.valid_at(400) && !old.valid_at(501) && !old.valid_for_request(100));
    }

    #[test]
    fn refuses_forged_and_foreign_responses() {
        let key = SigningKey::from_seed([3; 32], "k1").expect("key");
        let body = signed("a.example", &key, 10_000);
        assert_eq!(
            check_response(&body, "b.example", 0),
            Err(ServerKeyError::WrongServer("a.example".into()))
        );
        let mut tampered = body.clone();
        tampered["valid_until_ts"] = json!(99_999_999);
        assert_eq!(
            check_response(&tampered, "a.example", 0),
            Err(ServerKeyError::BadSignature)
        );
        // Signed by a key it does not list.
        let other = SigningKey::from_seed([4; 32], "k1").expect("key");
        let mut swapped = body.clone();
        swapped["verify_keys"]["ed25519:k1"]["key"] = json!(other.public_key_base64());
        assert_eq!(
            check_response(&swapped, "a.example", 0),
            Err(ServerKeyError::BadSignature)
        );
        let mut unsigned = body.clone();
        unsigned.as_object_mut().expect("object").remove("signatures");
        assert_eq!(
            check_response(&unsigned, "a.example", 0),
            Err(ServerKeyError::Unsigned)
        );
        // Countersigned by a notary: still the server's own response.
        let notary = SigningKey::from_seed([5; 32], "n").expect("key");
        let mut object: CanonicalJsonObject = serde_json::from_value(body.clone()).expect("canonical");
        notary
            .sign_object("notary.example", &mut object)
            .expect("countersign");
        let countersigned = serde_json::to_value(object).expect("json");
        assert!(check_response(&countersigned, "a.example", 0).is_ok());
        let mut renamed = body;
        renamed["signatures"]["a.example"] = json!({"ed25519:zz": "AAAA"});
        assert_eq!(
            check_response(&renamed, "a.example", 0),
            Err(ServerKeyError::Unsigned)
        );
        assert_eq!(
            check_response(&json!([1]), "a.example", 0),
            Err(ServerKeyError::Shape)
        );
        assert_eq!(
            check_response(&json!({"server_name": "a.example"}), "a.example", 0),
            Err(ServerKeyError::Shape)
        );
    }
}
