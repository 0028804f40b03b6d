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

mod batch;

/// A failed batch is split in two until its parts hold at most this many signatures, which
/// are then verified one by one.
const ONE_BY_ONE: usize = 4;

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
    let outcomes = verify_prepared(&prepared, &cache.parsed);
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
    verify_prepared(&prepared, &cache.parsed)
}

/// One event, ready for signature checks.
struct Prepared {
    event_id: OwnedEventId,
    bytes: String,
    hash_ok: bool,
    /// `(index of the key in the cache, signature)`.
    signatures: Vec<(usize, Signature)>,
}

/// The keys used so far, parsed once and numbered, so that a batch groups signatures by key.
struct KeyCache<'a> {
    keys: &'a PublicKeyMap,
    index: HashMap<(String, String), usize>,
    parsed: Vec<VerifyingKey>,
}

impl<'a> KeyCache<'a> {
    fn new(keys: &'a PublicKeyMap) -> Self {
        Self {
            keys,
            index: HashMap::new(),
            parsed: Vec::new(),
        }
    }

    fn get(&mut self, server: &str, key_id: &str) -> Result<Option<usize>, VerifyError> {
        if let Some(i) = self.index.get(&(server.to_owned(), key_id.to_owned())) {
            return Ok(Some(*i));
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
        self.parsed.push(key);
        let i = self.parsed.len() - 1;
        self.index.insert((server.to_owned(), key_id.to_owned()), i);
        Ok(Some(i))
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

fn verify_one(p: &Prepared, keys: &[VerifyingKey]) -> Result<Verified, VerifyError> {
    for (key, sig) in &p.signatures {
        if keys
            .get(*key)
            .is_none_or(|k| k.verify(p.bytes.as_bytes(), sig).is_err())
        {
            return Err(VerifyError(format!("bad signature on {}", p.event_id)));
        }
    }
    Ok(p.outcome())
}

impl Prepared {
    fn outcome(&self) -> Verified {
        if self.hash_ok {
            Verified::All
        } else {
            Verified::Redacted
        }
    }
}

/// Checks the signatures of all prepared events in one batch; when the batch fails, each
/// half is checked again, down to single events, so only the bad ones fail.
fn verify_prepared(
    prepared: &[Result<Prepared, VerifyError>],
    keys: &[VerifyingKey],
) -> Vec<Result<Verified, VerifyError>> {
    let ready: Vec<&Prepared> = prepared.iter().flatten().collect();
    let mut outcomes = Vec::with_capacity(ready.len());
    settle(&ready, keys, &mut outcomes);
    let mut outcomes = outcomes.into_iter();
    prepared
        .iter()
        .map(|p| match p {
            Err(e) => Err(e.clone()),
            Ok(_) => outcomes
                .next()
                .unwrap_or_else(|| Err(VerifyError("signature not checked".into()))),
        })
        .collect()
}

fn settle(events: &[&Prepared], keys: &[VerifyingKey], out: &mut Vec<Result<Verified, VerifyError>>) {
    let entries: Vec<batch::Entry<'_>> = events
        .iter()
        .flat_map(|p| {
            p.signatures.iter().map(|(key, signature)| batch::Entry {
                message: p.bytes.as_bytes(),
                key: *key,
                signature,
            })
        })
        .collect();
    if entries.len() > ONE_BY_ONE && events.len() > 1 {
        if batch::verify(keys, &entries) {
            out.extend(events.iter().map(|p| Ok(p.outcome())));
        } else {
            let (a, b) = events.split_at(events.len() / 2);
            settle(a, keys, out);
            settle(b, keys, out);
        }
    } else {
        out.extend(events.iter().map(|p| verify_one(p, keys)));
    }
}

#[cfg(test)]
#[path = "verify/tests.rs"]
mod tests;
