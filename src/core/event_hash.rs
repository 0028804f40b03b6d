//! Hashes, event ids, signing and redaction of PDUs (spec: server-server API, "Signing
//! events"; appendices, "Event IDs"). All of it works on the canonical object, serialised once
//! per purpose with ruma's `RedactingSerializer` (no clone of the event).

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use ruma::canonical_json::RedactingSerializer;
use ruma::room_version_rules::{EventIdFormatVersion, RedactionRules, RoomVersionRules};
use ruma::{CanonicalJsonObject, CanonicalJsonValue, OwnedEventId};
use sha2::{Digest, Sha256};

use super::keys::SigningKey;

/// Spec size limit of a whole PDU in canonical JSON.
pub const MAX_PDU_BYTES: usize = 65_536;

/// Fields left out of the content hash.
const CONTENT_HASH_STRIP: &[&str] = &["hashes", "signatures", "unsigned"];
/// Fields left out of the signed bytes and the reference hash (after redaction).
const SIGNING_STRIP: &[&str] = &["signatures", "unsigned"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HashError {
    #[error("event is not valid for hashing: {0}")]
    Json(String),
    #[error("event is larger than {MAX_PDU_BYTES} bytes")]
    TooLarge,
    #[error("signing failed: {0}")]
    Sign(String),
}

/// The bytes that are signed, and whose SHA-256 is the reference hash: the event redacted for
/// the room version, without `signatures` and `unsigned`, in canonical JSON.
pub fn signing_bytes(object: &CanonicalJsonObject, rules: &RedactionRules) -> Result<String, HashError> {
    let json = RedactingSerializer::new()
        .rules(rules)
        .custom_redacted_root_fields(SIGNING_STRIP)
        .serialize(object)
        .map_err(|e| HashError::Json(e.to_string()))?;
    if json.len() > MAX_PDU_BYTES {
        return Err(HashError::TooLarge);
    }
    Ok(json)
}

/// SHA-256 of the event without `hashes`, `signatures` and `unsigned`.
pub fn content_hash(object: &CanonicalJsonObject) -> Result<[u8; 32], HashError> {
    let json = RedactingSerializer::new()
        .custom_redacted_root_fields(CONTENT_HASH_STRIP)
        .serialize(object)
        .map_err(|e| HashError::Json(e.to_string()))?;
    if json.len() > MAX_PDU_BYTES {
        return Err(HashError::TooLarge);
    }
    Ok(Sha256::digest(json.as_bytes()).into())
}

/// Whether `hashes.sha256` matches the content hash of the event.
pub fn content_hash_matches(object: &CanonicalJsonObject) -> bool {
    let Some(claimed) = object
        .get("hashes")
        .and_then(CanonicalJsonValue::as_object)
        .and_then(|h| h.get("sha256"))
        .and_then(CanonicalJsonValue::as_str)
    else {
        return false;
    };
    let Some(claimed) = super::keys::decode_base64(claimed) else {
        return false;
    };
    content_hash(object).is_ok_and(|h| h[..] == claimed[..])
}

/// Encodes the SHA-256 of signing bytes as the version's reference hash (standard base64 up
/// to event id format v2, URL-safe from v3 on; both unpadded).
pub fn reference_hash_of(bytes: &[u8], rules: &RoomVersionRules) -> String {
    let digest = Sha256::digest(bytes);
    match rules.event_id_format {
        EventIdFormatVersion::V1 | EventIdFormatVersion::V2 => STANDARD_NO_PAD.encode(digest),
        _ => URL_SAFE_NO_PAD.encode(digest),
    }
}

/// The reference hash of an event.
pub fn reference_hash(object: &CanonicalJsonObject, rules: &RoomVersionRules) -> Result<String, HashError> {
    Ok(reference_hash_of(
        signing_bytes(object, &rules.redaction)?.as_bytes(),
        rules,
    ))
}

/// Whether event ids are derived from the reference hash (room v3+) rather than carried in
/// the event (`$local:server`, v1 and v2).
pub fn event_id_is_hash(rules: &RoomVersionRules) -> bool {
    !rules.event_format.require_event_id
}

/// The event id for a reference hash, for versions that derive it; `None` for v1/v2.
pub fn event_id_from_reference_hash(hash: &str, rules: &RoomVersionRules) -> Option<OwnedEventId> {
    if event_id_is_hash(rules) {
        OwnedEventId::try_from(format!("${hash}")).ok()
    } else {
        None
    }
}

/// The event id of an event: from its reference hash (v3+) or its `event_id` field (v1/v2).
pub fn event_id(object: &CanonicalJsonObject, rules: &RoomVersionRules) -> Result<OwnedEventId, HashError> {
    if event_id_is_hash(rules) {
        let hash = reference_hash(object, rules)?;
        event_id_from_reference_hash(&hash, rules).ok_or_else(|| HashError::Json("bad event id".into()))
    } else {
        object
            .get("event_id")
            .and_then(CanonicalJsonValue::as_str)
            .and_then(|s| OwnedEventId::try_from(s).ok())
            .ok_or_else(|| HashError::Json("missing or invalid `event_id`".into()))
    }
}

/// Adds `hashes.sha256` and our signature to `object`, returning the reference hash of the
/// signed event (from which v3+ event ids and v12 room ids are derived). The redacted bytes
/// are serialised once, for both the signature and the reference hash.
pub fn hash_and_sign(
    object: &mut CanonicalJsonObject,
    rules: &RoomVersionRules,
    server_name: &str,
    key: &SigningKey,
) -> Result<String, HashError> {
    let hash = content_hash(object)?;
    let hashes = match object
        .entry("hashes".to_owned())
        .or_insert_with(|| CanonicalJsonValue::Object(CanonicalJsonObject::new()))
    {
        CanonicalJsonValue::Object(h) => h,
        _ => return Err(HashError::Json("`hashes` is not an object".into())),
    };
    hashes.insert(
        "sha256".to_owned(),
        CanonicalJsonValue::String(STANDARD_NO_PAD.encode(hash)),
    );

    let bytes = signing_bytes(object, &rules.redaction)?;
    sign_with(object, &bytes, server_name, key)?;
    Ok(reference_hash_of(bytes.as_bytes(), rules))
}

/// Adds our signature to an event another server made and hashed (a countersignature:
/// a restricted join we vouch for, an invite of our user), its hashes untouched.
pub fn countersign(
    object: &mut CanonicalJsonObject,
    rules: &RedactionRules,
    server_name: &str,
    key: &SigningKey,
) -> Result<(), HashError> {
    let bytes = signing_bytes(object, rules)?;
    sign_with(object, &bytes, server_name, key)
}

/// Signs the redacted `bytes` of `object` into its `signatures`.
fn sign_with(
    object: &mut CanonicalJsonObject,
    bytes: &str,
    server_name: &str,
    key: &SigningKey,
) -> Result<(), HashError> {
    let signature = key.sign_bytes(bytes.as_bytes());
    let signatures = match object
        .entry("signatures".to_owned())
        .or_insert_with(|| CanonicalJsonValue::Object(CanonicalJsonObject::new()))
    {
        CanonicalJsonValue::Object(s) => s,
        _ => return Err(HashError::Sign("`signatures` is not an object".into())),
    };
    let ours = match signatures
        .entry(server_name.to_owned())
        .or_insert_with(|| CanonicalJsonValue::Object(CanonicalJsonObject::new()))
    {
        CanonicalJsonValue::Object(o) => o,
        _ => return Err(HashError::Sign("signature set is not an object".into())),
    };
    ours.insert(key.key_id(), CanonicalJsonValue::String(signature));
    Ok(())
}

/// Redacts an event per the room version's rules (ruma's algorithm), keeping `signatures`,
/// `hashes` and the other top-level keys the version keeps. `unsigned` is dropped.
pub fn redact(object: CanonicalJsonObject, rules: &RedactionRules) -> Result<CanonicalJsonObject, HashError> {
    ruma::canonical_json::redact(object, rules, None).map_err(|e| HashError::Json(e.to_string()))
}

#[cfg(test)]
#[path = "event_hash/tests.rs"]
mod tests;
