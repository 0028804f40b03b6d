//! The PDU the server stores and passes around: the canonical object it came from (so
//! re-serialising is exact) plus the parsed fields the auth rules and state resolution need.
//! Clones are cheap (one `Arc`).

use std::sync::Arc;

use ruma::events::{StateEventType, TimelineEventType};
use ruma::room_version_rules::RoomVersionRules;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId,
    OwnedUserId, RoomId, UInt, UserId,
};
use serde_json::value::RawValue as RawJsonValue;
use serde_json::Value;

use super::event_hash::{self, HashError};
use super::format::{check_format, reference_id};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PduError {
    #[error("not a JSON object: {0}")]
    NotJson(String),
    #[error("bad PDU format: {0}")]
    Format(String),
    #[error(transparent)]
    Hash(#[from] HashError),
}

/// A room event in federation format, parsed.
#[derive(Clone)]
pub struct Pdu {
    inner: Arc<Inner>,
    rejected: bool,
}

struct Inner {
    event_id: OwnedEventId,
    /// The room, derived from the event id for a v12 create event.
    room_id: OwnedRoomId,
    /// Whether `room_id` is in the JSON (false only for v12 create events).
    room_id_in_json: bool,
    sender: OwnedUserId,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    event_type: TimelineEventType,
    state_key: Option<String>,
    content: Box<RawJsonValue>,
    prev_events: Vec<OwnedEventId>,
    auth_events: Vec<OwnedEventId>,
    redacts: Option<OwnedEventId>,
    depth: u64,
    /// The federation form: no `event_id` from v3 on.
    object: CanonicalJsonObject,
}

impl std::fmt::Debug for Pdu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pdu")
            .field("event_id", &self.inner.event_id)
            .field("type", &self.inner.event_type)
            .field("state_key", &self.inner.state_key)
            .field("sender", &self.inner.sender)
            .field("rejected", &self.rejected)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Pdu {
    fn eq(&self, other: &Self) -> bool {
        self.inner.event_id == other.inner.event_id && self.rejected == other.rejected
    }
}

impl Pdu {
    /// Parses a PDU received over federation: checks its format, computes its event id (v3+)
    /// and, for a v12 create event, its room id. Signatures are not checked here.
    pub fn from_federation(object: CanonicalJsonObject, rules: &RoomVersionRules) -> Result<Self, PduError> {
        let mut object = object;
        if event_hash::event_id_is_hash(rules) {
            // Some servers include the id anyway; it is not part of the v3+ format.
            object.remove("event_id");
        }
        check_format(&object, rules).map_err(PduError::Format)?;
        let event_id = event_hash::event_id(&object, rules)?;
        Self::from_checked(object, event_id, rules)
    }

    /// Parses federation JSON text.
    pub fn from_federation_json(json: &str, rules: &RoomVersionRules) -> Result<Self, PduError> {
        let object: CanonicalJsonObject =
            serde_json::from_str(json).map_err(|e| PduError::NotJson(e.to_string()))?;
        Self::from_federation(object, rules)
    }

    /// Builds a PDU from an object whose format was checked and whose event id is known (from
    /// storage, from [`crate::core::verify`], or just built). Only parses fields.
    pub fn from_checked(
        mut object: CanonicalJsonObject,
        event_id: OwnedEventId,
        rules: &RoomVersionRules,
    ) -> Result<Self, PduError> {
        if event_hash::event_id_is_hash(rules) {
            object.remove("event_id");
        }
        let bad = |what: &str| PduError::Format(format!("invalid `{what}`"));
        let sender = get_str(&object, "sender")
            .and_then(|s| UserId::parse(s).ok())
            .ok_or_else(|| bad("sender"))?;
        let event_type = get_str(&object, "type").ok_or_else(|| bad("type"))?;
        let event_type = TimelineEventType::from(event_type);
        let state_key = match object.get("state_key") {
            None => None,
            Some(CanonicalJsonValue::String(s)) => Some(s.clone()),
            Some(_) => return Err(bad("state_key")),
        };
        let (room_id, room_id_in_json) = match get_str(&object, "room_id") {
            Some(r) => (RoomId::parse(r).map_err(|_| bad("room_id"))?, true),
            None if event_type == TimelineEventType::RoomCreate
                && rules.authorization.room_create_event_id_as_room_id =>
            {
                let id =
                    RoomId::new_v2(event_id.as_str().trim_start_matches('$')).map_err(|_| bad("room_id"))?;
                (id, false)
            }
            None => return Err(bad("room_id")),
        };
        let origin_server_ts = match object.get("origin_server_ts") {
            Some(CanonicalJsonValue::Integer(i)) => {
                let ts = u64::try_from(i64::from(*i)).map_err(|_| bad("origin_server_ts"))?;
                MilliSecondsSinceUnixEpoch(UInt::try_from(ts).map_err(|_| bad("origin_server_ts"))?)
            }
            _ => return Err(bad("origin_server_ts")),
        };
        let depth = match object.get("depth") {
            Some(CanonicalJsonValue::Integer(i)) => u64::try_from(i64::from(*i)).map_err(|_| bad("depth"))?,
            _ => return Err(bad("depth")),
        };
        let content = match object.get("content") {
            Some(c @ CanonicalJsonValue::Object(_)) => {
                RawJsonValue::from_string(serde_json::to_string(c).map_err(|_| bad("content"))?)
                    .map_err(|_| bad("content"))?
            }
            _ => return Err(bad("content")),
        };
        let prev_events = id_list(&object, "prev_events", rules).ok_or_else(|| bad("prev_events"))?;
        let auth_events = id_list(&object, "auth_events", rules).ok_or_else(|| bad("auth_events"))?;
        let redacts = redacts_of(&object, &event_type, rules);
        Ok(Self {
            inner: Arc::new(Inner {
                event_id,
                room_id,
                room_id_in_json,
                sender,
                origin_server_ts,
                event_type,
                state_key,
                content,
                prev_events,
                auth_events,
                redacts,
                depth,
                object,
            }),
            rejected: false,
        })
    }

    /// The same event, marked as rejected (or not) by the roomserver.
    pub fn with_rejected(mut self, rejected: bool) -> Self {
        self.rejected = rejected;
        self
    }

    pub fn event_id(&self) -> &EventId {
        &self.inner.event_id
    }
    pub fn owned_event_id(&self) -> OwnedEventId {
        self.inner.event_id.clone()
    }
    /// The room id, also for v12 create events (derived from their event id).
    pub fn room_id(&self) -> &RoomId {
        &self.inner.room_id
    }
    pub fn sender(&self) -> &UserId {
        &self.inner.sender
    }
    pub fn event_type(&self) -> &TimelineEventType {
        &self.inner.event_type
    }
    pub fn kind(&self) -> String {
        self.inner.event_type.to_string()
    }
    pub fn state_key(&self) -> Option<&str> {
        self.inner.state_key.as_deref()
    }
    /// `(type, state_key)` for state events.
    pub fn state_pair(&self) -> Option<(StateEventType, String)> {
        let key = self.inner.state_key.clone()?;
        Some((StateEventType::from(self.inner.event_type.to_string()), key))
    }
    pub fn is_state(&self) -> bool {
        self.inner.state_key.is_some()
    }
    pub fn origin_server_ts(&self) -> u64 {
        self.inner.origin_server_ts.get().into()
    }
    pub fn depth(&self) -> u64 {
        self.inner.depth
    }
    pub fn content_raw(&self) -> &RawJsonValue {
        &self.inner.content
    }
    /// The content as a JSON object (parsed on each call).
    pub fn content(&self) -> Value {
        serde_json::from_str(self.inner.content.get()).unwrap_or(Value::Null)
    }
    /// A field of the content, from the canonical object (no parsing).
    pub fn content_field(&self, field: &str) -> Option<&CanonicalJsonValue> {
        self.inner.object.get("content")?.as_object()?.get(field)
    }
    pub fn prev_events(&self) -> &[OwnedEventId] {
        &self.inner.prev_events
    }
    pub fn auth_events(&self) -> &[OwnedEventId] {
        &self.inner.auth_events
    }
    /// The redacted event of an `m.room.redaction` (top level before v11, in content from v11).
    pub fn redacts(&self) -> Option<&EventId> {
        self.inner.redacts.as_deref()
    }
    pub fn is_rejected(&self) -> bool {
        self.rejected
    }
    /// The canonical federation object (v3+: without `event_id`).
    pub fn object(&self) -> &CanonicalJsonObject {
        &self.inner.object
    }
    /// Canonical JSON text of the federation form.
    pub fn to_federation_json(&self) -> String {
        super::canonical::to_string(&self.inner.object)
    }
    /// The federation form as a JSON value.
    pub fn to_federation_value(&self) -> Value {
        CanonicalJsonValue::Object(self.inner.object.clone()).into()
    }

    /// The client format (spec: client-server API, "Room event format"). `room_id` is included;
    /// `unsigned` is what the caller computed (age, transaction id, relations...).
    pub fn to_client_event(&self, unsigned: Option<Value>) -> Value {
        let mut event = self.to_sync_event(unsigned);
        if let Value::Object(map) = &mut event {
            map.insert("room_id".into(), Value::String(self.inner.room_id.to_string()));
        }
        event
    }

    /// The client format without `room_id`, as used inside `/sync` room sections.
    pub fn to_sync_event(&self, unsigned: Option<Value>) -> Value {
        let mut map = serde_json::Map::new();
        map.insert("content".into(), self.content());
        map.insert("event_id".into(), Value::String(self.inner.event_id.to_string()));
        map.insert("origin_server_ts".into(), Value::from(self.origin_server_ts()));
        map.insert("sender".into(), Value::String(self.inner.sender.to_string()));
        map.insert("type".into(), Value::String(self.kind()));
        if let Some(key) = &self.inner.state_key {
            map.insert("state_key".into(), Value::String(key.clone()));
        }
        // Clients of v11+ rooms read `content.redacts`; the top-level copy keeps older clients
        // working, as other servers do.
        if let Some(redacts) = &self.inner.redacts {
            map.insert("redacts".into(), Value::String(redacts.to_string()));
        }
        if let Some(unsigned) = unsigned.filter(|u| !u.as_object().is_some_and(|o| o.is_empty())) {
            map.insert("unsigned".into(), unsigned);
        }
        Value::Object(map)
    }

    /// The stripped state form (invites, knocks, room previews): content, sender, state_key, type.
    pub fn to_stripped_state(&self) -> Value {
        serde_json::json!({
            "content": self.content(),
            "sender": self.inner.sender,
            "state_key": self.inner.state_key.clone().unwrap_or_default(),
            "type": self.kind(),
        })
    }

    /// This event redacted per the version's rules, keeping its event id.
    pub fn redacted(&self, rules: &RoomVersionRules) -> Result<Self, PduError> {
        let object = event_hash::redact(self.inner.object.clone(), &rules.redaction)?;
        Ok(Self::from_checked(object, self.owned_event_id(), rules)?.with_rejected(self.rejected))
    }
}

fn get_str<'a>(object: &'a CanonicalJsonObject, field: &str) -> Option<&'a str> {
    object.get(field).and_then(CanonicalJsonValue::as_str)
}

fn id_list(object: &CanonicalJsonObject, field: &str, rules: &RoomVersionRules) -> Option<Vec<OwnedEventId>> {
    object
        .get(field)?
        .as_array()?
        .iter()
        .map(|item| OwnedEventId::try_from(reference_id(item, rules)?).ok())
        .collect()
}

fn redacts_of(
    object: &CanonicalJsonObject,
    event_type: &TimelineEventType,
    rules: &RoomVersionRules,
) -> Option<OwnedEventId> {
    if *event_type != TimelineEventType::RoomRedaction {
        return None;
    }
    let value = if rules.redaction.content_field_redacts {
        object.get("content")?.as_object()?.get("redacts")
    } else {
        object.get("redacts")
    };
    OwnedEventId::try_from(value?.as_str()?).ok()
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.inner.event_id
    }
    fn room_id(&self) -> Option<&RoomId> {
        self.inner.room_id_in_json.then_some(&*self.inner.room_id)
    }
    fn sender(&self) -> &UserId {
        &self.inner.sender
    }
    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.inner.origin_server_ts
    }
    fn event_type(&self) -> &TimelineEventType {
        &self.inner.event_type
    }
    fn content(&self) -> &RawJsonValue {
        &self.inner.content
    }
    fn state_key(&self) -> Option<&str> {
        self.inner.state_key.as_deref()
    }
    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.inner.prev_events.iter())
    }
    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.inner.auth_events.iter())
    }
    fn redacts(&self) -> Option<&Self::Id> {
        self.inner.redacts.as_ref()
    }
    fn rejected(&self) -> bool {
        self.rejected
    }
}

#[cfg(test)]
#[path = "pdu/tests.rs"]
mod tests;
