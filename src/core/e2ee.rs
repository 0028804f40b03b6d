//! Pure end-to-end-encryption logic: checking signed key objects (device keys,
//! cross-signing keys) per the spec's "Signing JSON" appendix, key-id grammar, the
//! key-backup replacement rule, and the device-list stream position in sync tokens.
//!
//! The server never sees plaintext; it only checks that what a client uploads is
//! well-formed and signed by the key it claims.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde_json::{Map, Value};

use super::canonical::{to_canonical_value, to_string};
use super::keys::decode_base64;

pub const ED25519: &str = "ed25519";
pub const CURVE25519: &str = "curve25519";

/// Why a signed object was refused. The text is safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyCheck {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    BadSignature(String),
}

impl KeyCheck {
    fn invalid(text: impl Into<String>) -> Self {
        Self::Invalid(text.into())
    }
}

/// The bytes that are signed: the object without `signatures` and `unsigned`, as
/// canonical JSON.
pub fn signable_bytes(object: &Map<String, Value>) -> Result<String, KeyCheck> {
    let mut copy = object.clone();
    copy.remove("signatures");
    copy.remove("unsigned");
    match to_canonical_value(Value::Object(copy)) {
        Ok(ruma::CanonicalJsonValue::Object(o)) => Ok(to_string(&o)),
        _ => Err(KeyCheck::invalid("Key object is not canonical JSON")),
    }
}

/// Parses an unpadded-base64 ed25519 public key.
pub fn ed25519_key(text: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = decode_base64(text)?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// The signature `signatures[signer_user][signer_key_id]` of `object`, if present.
pub fn signature_of<'a>(
    object: &'a Map<String, Value>,
    signer_user: &str,
    signer_key_id: &str,
) -> Option<&'a str> {
    object
        .get("signatures")?
        .get(signer_user)?
        .get(signer_key_id)?
        .as_str()
}

/// Checks the signature `signatures[signer_user][signer_key_id]` of `object` with the
/// ed25519 public key `public_key` (unpadded base64).
pub fn verify_signature(
    object: &Map<String, Value>,
    signer_user: &str,
    signer_key_id: &str,
    public_key: &str,
) -> Result<(), KeyCheck> {
    let sig = signature_of(object, signer_user, signer_key_id)
        .ok_or_else(|| KeyCheck::BadSignature(format!("Missing signature by {signer_key_id}")))?;
    verify_raw(object, sig, public_key, signer_key_id)
}

/// Checks one given signature text of `object` with `public_key`.
pub fn verify_raw(
    object: &Map<String, Value>,
    signature: &str,
    public_key: &str,
    signer_key_id: &str,
) -> Result<(), KeyCheck> {
    let bad = || KeyCheck::BadSignature(format!("Invalid signature by {signer_key_id}"));
    let key =
        ed25519_key(public_key).ok_or_else(|| KeyCheck::invalid("Signing key is not an ed25519 key"))?;
    let sig_bytes: [u8; 64] = decode_base64(signature)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    let message = signable_bytes(object)?;
    key.verify(message.as_bytes(), &Signature::from_bytes(&sig_bytes))
        .map_err(|_| bad())
}

/// The checked parts of an uploaded `device_keys` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKeys {
    pub user_id: String,
    pub device_id: String,
    /// The device's ed25519 key (unpadded base64).
    pub ed25519: String,
}

/// Checks an uploaded `device_keys` object: it names the uploading user and device,
/// lists algorithms, has an `ed25519:<device>` and a `curve25519:<device>` key, and is
/// signed by its own ed25519 key.
pub fn check_device_keys(value: &Value, user_id: &str, device_id: &str) -> Result<DeviceKeys, KeyCheck> {
    let object = value
        .as_object()
        .ok_or_else(|| KeyCheck::invalid("device_keys must be an object"))?;
    let text = |name: &str| object.get(name).and_then(Value::as_str);
    if text("user_id") != Some(user_id) {
        return Err(KeyCheck::invalid(
            "device_keys.user_id does not match the session",
        ));
    }
    if text("device_id") != Some(device_id) {
        return Err(KeyCheck::invalid(
            "device_keys.device_id does not match the session",
        ));
    }
    let algorithms_ok = object
        .get("algorithms")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().all(Value::is_string));
    if !algorithms_ok {
        return Err(KeyCheck::invalid(
            "device_keys.algorithms must be a list of strings",
        ));
    }
    let keys = object
        .get("keys")
        .and_then(Value::as_object)
        .ok_or_else(|| KeyCheck::invalid("device_keys.keys must be an object"))?;
    if !keys.values().all(Value::is_string) {
        return Err(KeyCheck::invalid("device_keys.keys values must be strings"));
    }
    let ed_id = format!("{ED25519}:{device_id}");
    let ed25519 = keys
        .get(&ed_id)
        .and_then(Value::as_str)
        .ok_or_else(|| KeyCheck::invalid(format!("device_keys.keys lacks {ed_id}")))?;
    if !keys.contains_key(&format!("{CURVE25519}:{device_id}")) {
        return Err(KeyCheck::invalid(format!(
            "device_keys.keys lacks {CURVE25519}:{device_id}"
        )));
    }
    verify_signature(object, user_id, &ed_id, ed25519)?;
    Ok(DeviceKeys {
        user_id: user_id.to_owned(),
        device_id: device_id.to_owned(),
        ed25519: ed25519.to_owned(),
    })
}

/// The three kinds of cross-signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CrossSigningKind {
    Master,
    SelfSigning,
    UserSigning,
}

impl CrossSigningKind {
    pub const ALL: [Self; 3] = [Self::Master, Self::SelfSigning, Self::UserSigning];

    /// The `usage` entry and the storage name.
    pub fn usage(self) -> &'static str {
        match self {
            Self::Master => "master",
            Self::SelfSigning => "self_signing",
            Self::UserSigning => "user_signing",
        }
    }

    /// The field of `/keys/device_signing/upload` and of `/keys/query` answers.
    pub fn upload_field(self) -> &'static str {
        match self {
            Self::Master => "master_key",
            Self::SelfSigning => "self_signing_key",
            Self::UserSigning => "user_signing_key",
        }
    }

    pub fn query_field(self) -> &'static str {
        match self {
            Self::Master => "master_keys",
            Self::SelfSigning => "self_signing_keys",
            Self::UserSigning => "user_signing_keys",
        }
    }

    pub fn from_usage(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.usage() == text)
    }
}

/// Checks the shape of a cross-signing key: it belongs to `user_id`, has `usage`
/// containing its kind, and exactly one `ed25519:<key>` entry whose id is the key.
/// Returns the public key. Signatures are checked by the caller (they need the master).
pub fn check_cross_signing_key(
    value: &Value,
    user_id: &str,
    kind: CrossSigningKind,
) -> Result<String, KeyCheck> {
    let field = kind.upload_field();
    let object = value
        .as_object()
        .ok_or_else(|| KeyCheck::invalid(format!("{field} must be an object")))?;
    if object.get("user_id").and_then(Value::as_str) != Some(user_id) {
        return Err(KeyCheck::invalid(format!(
            "{field}.user_id does not match the session"
        )));
    }
    let usage_ok = object
        .get("usage")
        .and_then(Value::as_array)
        .is_some_and(|u| u.iter().any(|v| v.as_str() == Some(kind.usage())));
    if !usage_ok {
        return Err(KeyCheck::invalid(format!(
            "{field}.usage must contain {}",
            kind.usage()
        )));
    }
    let keys = object
        .get("keys")
        .and_then(Value::as_object)
        .filter(|k| k.len() == 1)
        .ok_or_else(|| KeyCheck::invalid(format!("{field}.keys must hold exactly one key")))?;
    let (key_id, key) = keys
        .iter()
        .next()
        .ok_or_else(|| KeyCheck::invalid(format!("{field}.keys must hold exactly one key")))?;
    let key = key
        .as_str()
        .ok_or_else(|| KeyCheck::invalid(format!("{field}.keys values must be strings")))?;
    if key_id != &format!("{ED25519}:{key}") || ed25519_key(key).is_none() {
        return Err(KeyCheck::invalid(format!(
            "{field} must be an ed25519 key named by itself"
        )));
    }
    if signable_bytes(object).is_err() {
        return Err(KeyCheck::invalid(format!("{field} is not canonical JSON")));
    }
    Ok(key.to_owned())
}

/// Whether two key objects are the same key, ignoring signatures and `unsigned`.
pub fn same_key(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    matches!((signable_bytes(a), signable_bytes(b)), (Ok(x), Ok(y)) if x == y)
}

/// Splits `algorithm:key_id`; both parts non-empty.
pub fn split_key_id(text: &str) -> Option<(&str, &str)> {
    let (algorithm, id) = text.split_once(':')?;
    (!algorithm.is_empty() && !id.is_empty()).then_some((algorithm, id))
}

/// Adds `extra` signatures (`user -> key id -> signature`) into `object.signatures`.
pub fn merge_signatures(object: &mut Map<String, Value>, extra: &BTreeMap<String, BTreeMap<String, String>>) {
    if extra.is_empty() {
        return;
    }
    let signatures = object
        .entry("signatures")
        .or_insert_with(|| Value::Object(Map::new()));
    if !signatures.is_object() {
        *signatures = Value::Object(Map::new());
    }
    if let Value::Object(by_user) = signatures {
        for (user, sigs) in extra {
            let entry = by_user
                .entry(user.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(map) = entry {
                for (key_id, sig) in sigs {
                    map.insert(key_id.clone(), Value::String(sig.clone()));
                }
            }
        }
    }
}

/// The metadata that decides which of two backed-up copies of a session key to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupKeyMeta {
    pub first_message_index: i64,
    pub forwarded_count: i64,
    pub is_verified: bool,
}

/// Whether an uploaded backup key replaces the stored one (spec, "Server-side key
/// backups"): verified beats unverified; then the lower `first_message_index`; then
/// the lower `forwarded_count`.
pub fn backup_replaces(new: BackupKeyMeta, old: BackupKeyMeta) -> bool {
    if new.is_verified != old.is_verified {
        return new.is_verified;
    }
    if new.first_message_index != old.first_message_index {
        return new.first_message_index < old.first_message_index;
    }
    new.forwarded_count < old.forwarded_count
}

/// A device-list position given as a plain decimal number (the edge also accepts a sync
/// token, whose last part is this position).
pub fn device_list_position(token: &str) -> Option<i64> {
    token.parse::<i64>().ok().filter(|p| *p >= 0)
}

#[cfg(test)]
#[path = "e2ee/tests.rs"]
mod tests;
