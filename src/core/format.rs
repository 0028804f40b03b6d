//! PDU format checks (spec: server-server API, "Checks performed on receipt of a PDU", step 1,
//! and the room versions' "Event format"): size, field types, id grammars.
//!
//! Size (counted while serialising, without building the text), required fields, string
//! lengths (255 bytes), array lengths, depth, the v12 rule that `auth_events` never names
//! the create event, the id grammars and the types of the remaining fields.

use ruma::room_version_rules::{EventIdFormatVersion, EventsReferenceFormatVersion, RoomVersionRules};
use ruma::{CanonicalJsonObject, CanonicalJsonValue, EventId, RoomId, UserId};

use super::event_hash::MAX_PDU_BYTES;

/// Longest `type`, `sender`, `room_id`, `event_id` and `state_key` (bytes).
const MAX_ID_BYTES: usize = 255;
const MAX_PREV_EVENTS: usize = 20;
const MAX_AUTH_EVENTS: usize = 10;

/// Counts the bytes written to it.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The length of the object in canonical JSON.
pub fn canonical_len(object: &CanonicalJsonObject) -> Result<usize, String> {
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, object).map_err(|e| e.to_string())?;
    Ok(counter.0)
}

fn short_string<'a>(
    object: &'a CanonicalJsonObject,
    field: &str,
    required: bool,
) -> Result<Option<&'a str>, String> {
    match str_field(object, field)? {
        Some(s) if s.len() > MAX_ID_BYTES => Err(format!("`{field}` is longer than {MAX_ID_BYTES} bytes")),
        None if required => Err(format!("missing `{field}`")),
        other => Ok(other),
    }
}

fn short_array<'a>(
    object: &'a CanonicalJsonObject,
    field: &str,
    max: usize,
) -> Result<&'a [CanonicalJsonValue], String> {
    match object.get(field) {
        Some(CanonicalJsonValue::Array(items)) if items.len() > max => {
            Err(format!("`{field}` has more than {max} entries"))
        }
        Some(CanonicalJsonValue::Array(items)) => Ok(items),
        Some(_) => Err(format!("`{field}` must be an array")),
        None => Err(format!("missing `{field}`")),
    }
}

/// Checks the shape of a federation PDU. The error text names the offending field.
pub fn check_format(object: &CanonicalJsonObject, rules: &RoomVersionRules) -> Result<(), String> {
    let size = canonical_len(object)?;
    if size > MAX_PDU_BYTES {
        return Err(format!("PDU is {size} bytes, over the limit of {MAX_PDU_BYTES}"));
    }
    let event_type = short_string(object, "type", true)?.unwrap_or_default();
    short_string(object, "sender", true)?;
    let room_id_required = event_type != "m.room.create" || rules.event_format.require_room_create_room_id;
    let room_id = short_string(object, "room_id", room_id_required)?;
    short_string(object, "event_id", rules.event_format.require_event_id)?;
    short_string(object, "state_key", false)?;
    short_array(object, "prev_events", MAX_PREV_EVENTS)?;
    let auth_events = short_array(object, "auth_events", MAX_AUTH_EVENTS)?;
    if !rules.event_format.allow_room_create_in_auth_events {
        // v12: the create event is implied by the room id and never listed.
        if let Some(create) = room_id.and_then(|r| r.strip_prefix('!')) {
            if auth_events
                .iter()
                .any(|a| a.as_str().and_then(|id| id.strip_prefix('$')) == Some(create))
            {
                return Err("`auth_events` must not name the create event".into());
            }
        }
    }
    match object.get("depth") {
        Some(CanonicalJsonValue::Integer(d)) if *d >= ruma::Int::from(0) => {}
        _ => return Err("`depth` must be a non-negative integer".into()),
    }

    let sender = str_field(object, "sender")?.unwrap_or_default();
    UserId::parse(sender).map_err(|e| format!("invalid `sender`: {e}"))?;

    if let Some(room_id) = str_field(object, "room_id")? {
        let parsed = RoomId::parse(room_id).map_err(|e| format!("invalid `room_id`: {e}"))?;
        if rules.authorization.room_create_event_id_as_room_id {
            // v12: `!` + the create event's reference hash.
            if parsed.server_name().is_some() || !is_hash_id(parsed.strip_sigil(), rules) {
                return Err("invalid `room_id`: not a create event reference hash".into());
            }
        } else if parsed.server_name().is_none() {
            return Err("invalid `room_id`: missing server name".into());
        }
    }

    if rules.event_format.require_event_id {
        let id = str_field(object, "event_id")?.unwrap_or_default();
        check_event_id(id, rules).map_err(|e| format!("invalid `event_id`: {e}"))?;
    }
    for field in ["prev_events", "auth_events"] {
        for item in object
            .get(field)
            .and_then(CanonicalJsonValue::as_array)
            .unwrap_or_default()
        {
            let id = reference_id(item, rules).ok_or_else(|| format!("malformed entry in `{field}`"))?;
            check_event_id(id, rules).map_err(|e| format!("invalid id in `{field}`: {e}"))?;
        }
    }

    match object.get("content") {
        Some(CanonicalJsonValue::Object(_)) => {}
        _ => return Err("`content` must be an object".into()),
    }
    match object.get("origin_server_ts") {
        Some(CanonicalJsonValue::Integer(ts)) if *ts >= ruma::Int::from(0) => {}
        _ => return Err("`origin_server_ts` must be a non-negative integer".into()),
    }
    match object.get("hashes") {
        Some(CanonicalJsonValue::Object(h)) if h.get("sha256").is_some_and(|v| v.as_str().is_some()) => {}
        _ => return Err("`hashes.sha256` must be a string".into()),
    }
    match object.get("signatures") {
        Some(CanonicalJsonValue::Object(_)) => {}
        _ => return Err("`signatures` must be an object".into()),
    }
    if let Some(redacts) = str_field(object, "redacts")? {
        check_event_id(redacts, rules).map_err(|e| format!("invalid `redacts`: {e}"))?;
    }
    Ok(())
}

/// The event id inside a `prev_events`/`auth_events` entry: a string from v3 on, an
/// `[id, {hashes}]` pair before.
pub fn reference_id<'a>(item: &'a CanonicalJsonValue, rules: &RoomVersionRules) -> Option<&'a str> {
    match rules.events_reference_format {
        EventsReferenceFormatVersion::V1 => match item.as_array()? {
            [CanonicalJsonValue::String(id), CanonicalJsonValue::Object(_)] => Some(id),
            _ => None,
        },
        _ => item.as_str(),
    }
}

/// Checks an event id against the version's grammar: `$local:server` (v1, v2), `$` + 43
/// characters of standard base64 (v3) or URL-safe base64 (v4+).
pub fn check_event_id(id: &str, rules: &RoomVersionRules) -> Result<(), String> {
    let parsed = EventId::parse(id).map_err(|e| e.to_string())?;
    match rules.event_id_format {
        EventIdFormatVersion::V1 => {
            if parsed.server_name().is_none() {
                return Err("expected `$local:server`".into());
            }
        }
        _ => {
            if !is_hash_id(parsed.as_str().trim_start_matches('$'), rules) {
                return Err("expected `$` and a reference hash".into());
            }
        }
    }
    Ok(())
}

/// Whether `s` looks like an unpadded base64 SHA-256 in the version's alphabet.
fn is_hash_id(s: &str, rules: &RoomVersionRules) -> bool {
    let url_safe = !matches!(
        rules.event_id_format,
        EventIdFormatVersion::V1 | EventIdFormatVersion::V2
    );
    s.len() == 43
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || if url_safe {
                    b == b'-' || b == b'_'
                } else {
                    b == b'+' || b == b'/'
                }
        })
}

fn str_field<'a>(object: &'a CanonicalJsonObject, field: &str) -> Result<Option<&'a str>, String> {
    match object.get(field) {
        None => Ok(None),
        Some(CanonicalJsonValue::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("`{field}` must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use ruma::{CanonicalJsonObject, CanonicalJsonValue, Int};
    use serde_json::json;

    use super::*;
    use crate::core::builder::NewEvent;
    use crate::core::testing::TestRoom;

    fn message(room: &mut TestRoom) -> CanonicalJsonObject {
        room.send(
            "alice",
            NewEvent::message("m.room.message", json!({"body": "hi"})),
        )
        .expect("message")
        .object()
        .clone()
    }

    fn string(s: &str) -> CanonicalJsonValue {
        CanonicalJsonValue::String(s.to_owned())
    }

    #[test]
    fn counted_length_is_the_canonical_text_length() {
        let mut room = TestRoom::new("12", "alice");
        let mut event = message(&mut room);
        event.insert(
            "content".into(),
            serde_json::from_value(json!({"body": "é \" \\ \n ☃ \u{1}"})).expect("content"),
        );
        let text = serde_json::to_string(&event).expect("json");
        assert_eq!(canonical_len(&event), Ok(text.len()));
    }

    #[test]
    fn every_shape_rule_is_enforced() {
        let mut room = TestRoom::new("12", "alice");
        let rules = room.rules.clone();
        let event = message(&mut room);
        assert_eq!(check_format(&event, &rules), Ok(()));
        let create_id = format!(
            "${}",
            event["room_id"].as_str().expect("room").trim_start_matches('!')
        );
        let long = "x".repeat(256);
        let id = |c: char| format!("${}", c.to_string().repeat(43));
        type Change<'a> = Box<dyn Fn(&mut CanonicalJsonObject) + 'a>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "missing type",
                Box::new(|e| {
                    e.remove("type");
                }),
            ),
            (
                "long type",
                Box::new(|e| {
                    e.insert("type".into(), string(&long));
                }),
            ),
            (
                "long state_key",
                Box::new(|e| {
                    e.insert("state_key".into(), string(&long));
                }),
            ),
            (
                "number sender",
                Box::new(|e| {
                    e.insert("sender".into(), CanonicalJsonValue::Integer(Int::from(1u8)));
                }),
            ),
            (
                "21 prev events",
                Box::new(|e| {
                    e.insert(
                        "prev_events".into(),
                        CanonicalJsonValue::Array((0..21).map(|_| string(&id('a'))).collect()),
                    );
                }),
            ),
            (
                "11 auth events",
                Box::new(|e| {
                    e.insert(
                        "auth_events".into(),
                        CanonicalJsonValue::Array((0..11).map(|_| string(&id('b'))).collect()),
                    );
                }),
            ),
            (
                "create event in auth events",
                Box::new(|e| {
                    e.insert(
                        "auth_events".into(),
                        CanonicalJsonValue::Array(vec![string(&create_id)]),
                    );
                }),
            ),
            (
                "negative depth",
                Box::new(|e| {
                    e.insert("depth".into(), CanonicalJsonValue::Integer(Int::from(-1i8)));
                }),
            ),
            (
                "missing depth",
                Box::new(|e| {
                    e.remove("depth");
                }),
            ),
            (
                "missing room id",
                Box::new(|e| {
                    e.remove("room_id");
                }),
            ),
        ];
        for (what, change) in cases {
            let mut bad = event.clone();
            change(&mut bad);
            assert!(check_format(&bad, &rules).is_err(), "{what} accepted");
        }
    }

    #[test]
    fn size_limit_is_the_spec_limit_exactly() {
        let mut room = TestRoom::new("12", "alice");
        let rules = room.rules.clone();
        let mut event = message(&mut room);
        let base = canonical_len(&event).expect("len");
        // Grow `content.body` until the event is exactly 65536 bytes, then one more.
        let fill = |e: &mut CanonicalJsonObject, n: usize| {
            e.insert(
                "content".into(),
                serde_json::from_value(json!({"body": "a".repeat(n)})).expect("content"),
            );
        };
        fill(&mut event, 0);
        let empty = canonical_len(&event).expect("len");
        assert!(empty <= base);
        fill(&mut event, MAX_PDU_BYTES - empty);
        assert_eq!(canonical_len(&event), Ok(MAX_PDU_BYTES));
        assert_eq!(check_format(&event, &rules), Ok(()));
        fill(&mut event, MAX_PDU_BYTES - empty + 1);
        assert!(check_format(&event, &rules).is_err());
    }
}
