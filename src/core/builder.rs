//! Building our own events (spec: client-server API sends, `make_join` templates): picks
//! `auth_events` and `prev_events`, computes depth, then hashes and signs.
//!
//! Rooms of v1 and v2 name events differently: an event carries its own `event_id`
//! (`$local:server`, made here from the event's content hash) and refers to others by
//! `[id, {"sha256": reference hash}]` pairs; from v3 on an event's id is its reference hash
//! and references are plain ids.

use ruma::events::{StateEventType, TimelineEventType};
use ruma::room_version_rules::{EventsReferenceFormatVersion, RoomVersionRules};
use ruma::{CanonicalJsonObject, CanonicalJsonValue, Int, OwnedEventId, RoomId, RoomVersionId, UserId};
use serde_json::value::RawValue as RawJsonValue;
use serde_json::Value;

use super::auth::auth_types_for_event;
use super::canonical::to_string as canonical_string;
use super::event_hash::{self, hash_and_sign, MAX_PDU_BYTES};
use super::keys::SigningKey;
use super::pdu::Pdu;

/// At most this many forward extremities become `prev_events` (the spec caps the field at 20).
pub const MAX_PREV_EVENTS: usize = 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    #[error("content must be a JSON object of canonical values: {0}")]
    Content(String),
    #[error("event would be larger than {MAX_PDU_BYTES} bytes")]
    TooLarge,
    #[error("{0}")]
    Invalid(String),
}

/// A forward extremity a new event is built on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prev {
    pub id: OwnedEventId,
    pub depth: u64,
    /// Its reference hash, which rooms of v1/v2 put beside the id; `None` from v3 on.
    pub hash: Option<String>,
}

impl Prev {
    /// An extremity known by id and depth (enough from room v3 on).
    pub fn new(id: OwnedEventId, depth: u64) -> Self {
        Self {
            id,
            depth,
            hash: None,
        }
    }

    /// The extremity `pdu`, with its reference hash when the version needs it.
    pub fn of(pdu: &Pdu, rules: &RoomVersionRules) -> Self {
        Self {
            id: pdu.owned_event_id(),
            depth: pdu.depth(),
            hash: reference_hash_for(pdu, rules),
        }
    }
}

/// The reference hash of `pdu` when the version names references with it (v1/v2).
fn reference_hash_for(pdu: &Pdu, rules: &RoomVersionRules) -> Option<String> {
    (rules.events_reference_format == EventsReferenceFormatVersion::V1)
        .then(|| event_hash::reference_hash(pdu.object(), rules).ok())
        .flatten()
}

/// One entry of `prev_events` / `auth_events` in the version's format.
fn reference(
    id: &OwnedEventId,
    hash: Option<&str>,
    rules: &RoomVersionRules,
) -> Result<CanonicalJsonValue, BuildError> {
    if rules.events_reference_format != EventsReferenceFormatVersion::V1 {
        return Ok(CanonicalJsonValue::String(id.to_string()));
    }
    let hash = hash.ok_or_else(|| BuildError::Invalid(format!("no reference hash for {id}")))?;
    let mut hashes = CanonicalJsonObject::new();
    hashes.insert("sha256".into(), CanonicalJsonValue::String(hash.to_owned()));
    Ok(CanonicalJsonValue::Array(vec![
        CanonicalJsonValue::String(id.to_string()),
        CanonicalJsonValue::Object(hashes),
    ]))
}

/// Who signs, and when.
#[derive(Clone, Copy)]
pub struct Signer<'a> {
    pub server_name: &'a str,
    pub key: &'a SigningKey,
    pub now_ms: u64,
}

/// What the sender asked for.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: String,
    pub state_key: Option<String>,
    pub content: Value,
    /// For `m.room.redaction`: the event redacted (placed per the version's format).
    pub redacts: Option<OwnedEventId>,
}

impl NewEvent {
    pub fn message(event_type: &str, content: Value) -> Self {
        Self {
            event_type: event_type.to_owned(),
            state_key: None,
            content,
            redacts: None,
        }
    }
    pub fn state(event_type: &str, state_key: &str, content: Value) -> Self {
        Self {
            event_type: event_type.to_owned(),
            state_key: Some(state_key.to_owned()),
            content,
            redacts: None,
        }
    }
}

/// Builds, hashes and signs an event in `room_id`.
///
/// `state` is the state the event is built on (the current state); `prev_events` are the
/// forward extremities with their depths. Authorization is not checked here.
pub fn build_event(
    rules: &RoomVersionRules,
    room_id: &RoomId,
    sender: &UserId,
    new: NewEvent,
    prev_events: &[Prev],
    state: impl Fn(&StateEventType, &str) -> Option<Pdu>,
    signer: Signer<'_>,
) -> Result<Pdu, BuildError> {
    let mut content = content_object(new.content)?;
    if new.event_type == TimelineEventType::RoomRedaction.to_string() && rules.redaction.content_field_redacts
    {
        if let Some(redacts) = &new.redacts {
            content.insert("redacts".into(), CanonicalJsonValue::String(redacts.to_string()));
        }
    }
    let raw_content = RawJsonValue::from_string(canonical_string(&content))
        .map_err(|e| BuildError::Content(e.to_string()))?;
    let event_type = TimelineEventType::from(new.event_type.as_str());

    // Auth events: the current events of the pairs the auth rules consult (create before v12,
    // power levels, sender's and target's member, join rules, third-party invite, authorising
    // user for restricted joins).
    let types = auth_types_for_event(&event_type, sender, new.state_key.as_deref(), &raw_content, rules)
        .map_err(|r| BuildError::Invalid(r.reason))?;
    let auth_events = types
        .iter()
        .filter_map(|(kind, key)| state(kind, key))
        .map(|e| {
            reference(
                &e.owned_event_id(),
                reference_hash_for(&e, rules).as_deref(),
                rules,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;

    // Prev events: the deepest extremities first, ties by id, so the choice is stable.
    let mut prev: Vec<&Prev> = prev_events.iter().collect();
    prev.sort_by(|a, b| b.depth.cmp(&a.depth).then_with(|| a.id.cmp(&b.id)));
    prev.dedup_by(|a, b| a.id == b.id);
    prev.truncate(MAX_PREV_EVENTS);
    let depth = prev
        .iter()
        .map(|p| p.depth)
        .max()
        .map_or(1, |d| d.saturating_add(1));
    let prev_ids = prev
        .iter()
        .map(|p| reference(&p.id, p.hash.as_deref(), rules))
        .collect::<Result<Vec<_>, _>>()?;

    let mut object = CanonicalJsonObject::new();
    object.insert("auth_events".into(), CanonicalJsonValue::Array(auth_events));
    object.insert("content".into(), CanonicalJsonValue::Object(content));
    object.insert("depth".into(), int(depth));
    object.insert("origin_server_ts".into(), int(signer.now_ms));
    object.insert("prev_events".into(), CanonicalJsonValue::Array(prev_ids));
    object.insert("room_id".into(), CanonicalJsonValue::String(room_id.to_string()));
    object.insert("sender".into(), CanonicalJsonValue::String(sender.to_string()));
    object.insert("type".into(), CanonicalJsonValue::String(new.event_type));
    if let Some(key) = new.state_key {
        object.insert("state_key".into(), CanonicalJsonValue::String(key));
    }
    if !rules.redaction.content_field_redacts {
        if let Some(redacts) = new.redacts {
            object.insert("redacts".into(), CanonicalJsonValue::String(redacts.to_string()));
        }
    }
    sign_into_pdu(object, rules, signer)
}

/// Builds the `m.room.create` event of a new room. `extra_content` may carry `m.federate`,
/// `predecessor`, `type`, `additional_creators` (v12). Before v12 the caller picks the room id
/// (`!random:server`, with its own RNG); from v12 it is derived from the event and `room_id` is
/// ignored. The room id is then [`Pdu::room_id`].
pub fn build_create_event(
    version: &RoomVersionId,
    rules: &RoomVersionRules,
    sender: &UserId,
    room_id: Option<&RoomId>,
    extra_content: Value,
    signer: Signer<'_>,
) -> Result<Pdu, BuildError> {
    let mut content = content_object(extra_content)?;
    content.insert(
        "room_version".into(),
        CanonicalJsonValue::String(version.to_string()),
    );
    if !rules.authorization.use_room_create_sender {
        content.insert("creator".into(), CanonicalJsonValue::String(sender.to_string()));
    }
    let mut object = CanonicalJsonObject::new();
    object.insert("auth_events".into(), CanonicalJsonValue::Array(vec![]));
    object.insert("content".into(), CanonicalJsonValue::Object(content));
    object.insert("depth".into(), int(1));
    object.insert("origin_server_ts".into(), int(signer.now_ms));
    object.insert("prev_events".into(), CanonicalJsonValue::Array(vec![]));
    object.insert("sender".into(), CanonicalJsonValue::String(sender.to_string()));
    object.insert("state_key".into(), CanonicalJsonValue::String(String::new()));
    object.insert("type".into(), CanonicalJsonValue::String("m.room.create".into()));
    if !rules.authorization.room_create_event_id_as_room_id {
        let room_id =
            room_id.ok_or_else(|| BuildError::Invalid("this room version needs a room id".into()))?;
        object.insert("room_id".into(), CanonicalJsonValue::String(room_id.to_string()));
    }
    sign_into_pdu(object, rules, signer)
}

/// Completes another server's `make_join` / `make_leave` template for our user:
/// `content` (which must keep the template's membership) and our timestamp, then
/// hashed and signed. Returns the event (federation form) and its id.
pub fn complete_template(
    template: &Value,
    sender: &UserId,
    content: Value,
    rules: &RoomVersionRules,
    signer: Signer<'_>,
) -> Result<(CanonicalJsonObject, OwnedEventId), BuildError> {
    let mut object: CanonicalJsonObject = match CanonicalJsonValue::try_from(template.clone()) {
        Ok(CanonicalJsonValue::Object(o)) => o,
        _ => return Err(BuildError::Invalid("the template is not an object".into())),
    };
    let text = |object: &CanonicalJsonObject, key: &str| {
        object
            .get(key)
            .and_then(CanonicalJsonValue::as_str)
            .map(str::to_owned)
    };
    if text(&object, "type").as_deref() != Some("m.room.member")
        || text(&object, "sender").as_deref() != Some(sender.as_str())
        || text(&object, "state_key").as_deref() != Some(sender.as_str())
    {
        return Err(BuildError::Invalid(
            "the template is not our user's membership".into(),
        ));
    }
    let membership = match object.get("content") {
        Some(CanonicalJsonValue::Object(c)) => c.get("membership").cloned(),
        _ => None,
    }
    .ok_or_else(|| BuildError::Invalid("the template has no membership".into()))?;
    let mut content = content_object(content)?;
    // The template's membership (and a restricted join's authorising user) stay.
    content.insert("membership".into(), membership);
    if let Some(CanonicalJsonValue::Object(c)) = object.get("content") {
        if let Some(via) = c.get("join_authorised_via_users_server") {
            content.insert("join_authorised_via_users_server".into(), via.clone());
        }
    }
    object.insert("content".into(), CanonicalJsonValue::Object(content));
    object.insert("origin_server_ts".into(), int(signer.now_ms));
    for key in ["event_id", "hashes", "signatures", "unsigned"] {
        object.remove(key);
    }
    let event_id = hash_and_sign_checked(&mut object, rules, signer)?;
    Ok((object, event_id))
}

/// Hashes and signs `object`, refuses it above the size limit, and names it.
fn hash_and_sign_checked(
    object: &mut CanonicalJsonObject,
    rules: &RoomVersionRules,
    signer: Signer<'_>,
) -> Result<OwnedEventId, BuildError> {
    if !event_hash::event_id_is_hash(rules) {
        // v1/v2: the event names itself. Its content hash before naming makes the local
        // part: unique, since the room's writes are ordered and each names the one before.
        let digest = event_hash::content_hash(object).map_err(|e| match e {
            event_hash::HashError::TooLarge => BuildError::TooLarge,
            other => BuildError::Invalid(other.to_string()),
        })?;
        let local: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        let id = format!("${local}:{}", signer.server_name);
        object.insert("event_id".into(), CanonicalJsonValue::String(id));
    }
    let hash = hash_and_sign(object, rules, signer.server_name, signer.key).map_err(|e| match e {
        event_hash::HashError::TooLarge => BuildError::TooLarge,
        other => BuildError::Invalid(other.to_string()),
    })?;
    if canonical_string(object).len() > MAX_PDU_BYTES {
        return Err(BuildError::TooLarge);
    }
    match event_hash::event_id_from_reference_hash(&hash, rules) {
        Some(id) => Ok(id),
        None => event_hash::event_id(object, rules).map_err(|e| BuildError::Invalid(e.to_string())),
    }
}

fn sign_into_pdu(
    mut object: CanonicalJsonObject,
    rules: &RoomVersionRules,
    signer: Signer<'_>,
) -> Result<Pdu, BuildError> {
    let event_id = hash_and_sign_checked(&mut object, rules, signer)?;
    Pdu::from_checked(object, event_id, rules).map_err(|e| BuildError::Invalid(e.to_string()))
}

fn content_object(content: Value) -> Result<CanonicalJsonObject, BuildError> {
    // Strict: floats and out-of-range integers are not canonical JSON.
    match CanonicalJsonValue::try_from(content).map_err(|e| BuildError::Content(e.to_string()))? {
        CanonicalJsonValue::Object(o) => Ok(o),
        _ => Err(BuildError::Content("not an object".into())),
    }
}

fn int(n: u64) -> CanonicalJsonValue {
    CanonicalJsonValue::Integer(Int::new_saturating(i64::try_from(n).unwrap_or(i64::MAX)))
}

#[cfg(test)]
#[path = "builder/tests.rs"]
mod tests;
