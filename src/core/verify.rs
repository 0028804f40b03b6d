//! Verifying received PDUs (spec: server-server API, "Validating hashes and signatures on
//! received events"), fast: each event is serialised once in redacted form (giving both the
//! signed bytes and the reference hash / event id) and once for the content hash, and many
//! events are checked with ed25519 batch verification.
//!
//! Outcomes: [`Verified::All`]; [`Verified::Redacted`] when the signatures hold but the content
//! hash does not (the caller must use the redacted event, which [`check_pdu`] returns); or an
//! error with the reason, and the event is dropped.

use std::collections::HashMap;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use ruma::room_version_rules::RoomVersionRules;
use ruma::signatures::{required_server_signatures_to_verify_event, PublicKeyMap};
use ruma::{CanonicalJsonObject, CanonicalJsonValue, OwnedEventId};

use super::event_hash::{self, content_hash_matches, event_id_from_reference_hash, reference_hash_of};
use super::format::check_format;
use super::keys::decode_base64;
use super::pdu::Pdu;

/// Events verified together before falling back to one-by-one checks on failure.
const BATCH_CHUNK: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Signatures and content hash are valid.
    All,
    /// Signatures are valid but the content hash is not: store the redacted event.
    Redacted,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct VerifyError(pub String);

/// A PDU that passed format and signature checks.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The event; already redacted when `verified` is [`Verified::Redacted`].
    pub pdu: Pdu,
    pub verified: Verified,
}

/// Format check, signature and hash check, and parsing of one received PDU.
pub fn check_pdu(
    object: CanonicalJsonObject,
    rules: &RoomVersionRules,
    keys: &PublicKeyMap,
) -> Result<Checked, VerifyError> {
    check_pdus_batch(vec![(object, rules)], keys)
        .pop()
        .unwrap_or_else(|| Err(VerifyError("empty batch".into())))
}

/// [`check_pdu`] for many events at once, with batch signature verification. Results are in
/// input order.
pub fn check_pdus_batch(
    items: Vec<(CanonicalJsonObject, &RoomVersionRules)>,
    keys: &PublicKeyMap,
) -> Vec<Result<Checked, VerifyError>> {
    let mut cache = KeyCache::new(keys);
    let mut objects = Vec::with_capacity(items.len());
    let prepared: Vec<Result<Prepared, VerifyError>> = items
        .into_iter()
        .map(|(mut object, rules)| {
            if event_hash::event_id_is_hash(rules) {
                object.remove("event_id");
            }
            let p = check_format(&object, rules)
                .map_err(VerifyError)
                .and_then(|()| prepare(&object, rules, &mut cache));
            objects.push((object, rules));
            p
        })
        .collect();
    let outcomes = verify_prepared(&prepared);
    outcomes
        .into_iter()
        .zip(prepared)
        .zip(objects)
        .map(|((outcome, prepared), (object, rules))| {
            let verified = outcome?;
            let event_id = prepared?.event_id;
            let object = match verified {
                Verified::All => object,
                Verified::Redacted => {
                    event_hash::redact(object, &rules.redaction).map_err(|e| VerifyError(e.to_string()))?
                }
            };
            let pdu = Pdu::from_checked(object, event_id, rules).map_err(|e| VerifyError(e.to_string()))?;
            Ok(Checked { pdu, verified })
        })
        .collect()
}

/// Verifies the signatures and content hash of one event in federation form.
pub fn verify_pdu(
    object: &CanonicalJsonObject,
    rules: &RoomVersionRules,
    keys: &PublicKeyMap,
) -> Result<Verified, VerifyError> {
    verify_batch(&[(object, rules)], keys)
        .pop()
        .unwrap_or_else(|| Err(VerifyError("empty batch".into())))
}

/// Verifies many events, using ed25519 batch verification; on a failed batch each event of
/// the failing chunk is checked alone so only the bad ones fail.
pub fn verify_batch(
    items: &[(&CanonicalJsonObject, &RoomVersionRules)],
    keys: &PublicKeyMap,
) -> Vec<Result<Verified, VerifyError>> {
    let mut cache = KeyCache::new(keys);
    let prepared: Vec<_> = items
        .iter()
        .map(|(object, rules)| {
            if event_hash::event_id_is_hash(rules) && object.contains_key("event_id") {
                let mut object = (*object).clone();
                object.remove("event_id");
                prepare(&object, rules, &mut cache)
            } else {
                prepare(object, rules, &mut cache)
            }
        })
        .collect();
    verify_prepared(&prepared)
}

/// One event, ready for signature checks.
struct Prepared {
    event_id: OwnedEventId,
    bytes: String,
    hash_ok: bool,
    signatures: Vec<(VerifyingKey, Signature)>,
}

struct KeyCache<'a> {
    keys: &'a PublicKeyMap,
    parsed: HashMap<(String, String), VerifyingKey>,
}

impl<'a> KeyCache<'a> {
    fn new(keys: &'a PublicKeyMap) -> Self {
        Self {
            keys,
            parsed: HashMap::new(),
        }
    }

    fn get(&mut self, server: &str, key_id: &str) -> Result<Option<VerifyingKey>, VerifyError> {
        if let Some(k) = self.parsed.get(&(server.to_owned(), key_id.to_owned())) {
            return Ok(Some(*k));
        }
        let Some(raw) = self.keys.get(server).and_then(|set| set.get(key_id)) else {
            return Ok(None);
        };
        let bytes: [u8; 32] = raw
            .as_bytes()
            .try_into()
            .map_err(|_| VerifyError(format!("public key {server} {key_id} is not 32 bytes")))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| VerifyError(format!("public key {server} {key_id} is invalid")))?;
        self.parsed.insert((server.to_owned(), key_id.to_owned()), key);
        Ok(Some(key))
    }
}

fn prepare(
    object: &CanonicalJsonObject,
    rules: &RoomVersionRules,
    cache: &mut KeyCache<'_>,
) -> Result<Prepared, VerifyError> {
    let err = |e: &dyn std::fmt::Display| VerifyError(e.to_string());
    let servers =
        required_server_signatures_to_verify_event(object, &rules.signatures).map_err(|e| err(&e))?;
    let bytes = event_hash::signing_bytes(object, &rules.redaction).map_err(|e| err(&e))?;
    let event_id = match event_id_from_reference_hash(&reference_hash_of(bytes.as_bytes(), rules), rules) {
        Some(id) => id,
        None => event_hash::event_id(object, rules).map_err(|e| err(&e))?,
    };
    let signature_map = object
        .get("signatures")
        .and_then(CanonicalJsonValue::as_object)
        .ok_or_else(|| VerifyError("missing `signatures`".into()))?;

    let mut signatures = Vec::new();
    for server in servers {
        let set = signature_map
            .get(server.as_str())
            .and_then(CanonicalJsonValue::as_object)
            .ok_or_else(|| VerifyError(format!("no signatures from {server}")))?;
        let before = signatures.len();
        for (key_id, sig) in set {
            if !key_id.starts_with("ed25519:") {
                continue;
            }
            let Some(key) = cache.get(server.as_str(), key_id)? else {
                continue;
            };
            let sig = sig
                .as_str()
                .and_then(decode_base64)
                .and_then(|b| <[u8; 64]>::try_from(b).ok())
                .ok_or_else(|| VerifyError(format!("malformed signature {server} {key_id}")))?;
            signatures.push((key, Signature::from_bytes(&sig)));
        }
        if signatures.len() == before {
            return Err(VerifyError(format!(
                "no signature from {server} with a known key"
            )));
        }
    }
    Ok(Prepared {
        event_id,
        hash_ok: content_hash_matches(object),
        bytes,
        signatures,
    })
}

fn verify_one(p: &Prepared) -> Result<Verified, VerifyError> {
    for (key, sig) in &p.signatures {
        key.verify(p.bytes.as_bytes(), sig)
            .map_err(|_| VerifyError(format!("bad signature on {}", p.event_id)))?;
    }
    Ok(if p.hash_ok {
        Verified::All
    } else {
        Verified::Redacted
    })
}

fn verify_prepared(prepared: &[Result<Prepared, VerifyError>]) -> Vec<Result<Verified, VerifyError>> {
    let mut out = Vec::with_capacity(prepared.len());
    for chunk in prepared.chunks(BATCH_CHUNK) {
        let mut messages = Vec::new();
        let mut sigs = Vec::new();
        let mut keys = Vec::new();
        for p in chunk.iter().flatten() {
            for (key, sig) in &p.signatures {
                messages.push(p.bytes.as_bytes());
                sigs.push(*sig);
                keys.push(*key);
            }
        }
        let batch_ok = messages.len() > 1 && ed25519_dalek::verify_batch(&messages, &sigs, &keys).is_ok();
        for p in chunk {
            out.push(match p {
                Err(e) => Err(e.clone()),
                Ok(p) if batch_ok => Ok(if p.hash_ok {
                    Verified::All
                } else {
                    Verified::Redacted
                }),
                Ok(p) => verify_one(p),
            });
        }
    }
    out
}

#[cfg(test)]
#[path = "verify/tests.rs"]
mod tests;
