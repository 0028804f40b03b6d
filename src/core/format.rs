//! PDU format checks (spec: server-server API, "Checks performed on receipt of a PDU", step 1,
//! and the room versions' "Event format"): size, field types, id grammars.
//!
//! ruma's `check_pdu_format` covers size, required fields, string lengths (255 bytes), array
//! lengths and depth, and the v12 rule that `auth_events` never names the create event. On top
//! of it this checks the id grammars and the types of the remaining fields.

use ruma::room_version_rules::{EventIdFormatVersion, EventsReferenceFormatVersion, RoomVersionRules};
use ruma::{CanonicalJsonObject, CanonicalJsonValue, EventId, RoomId, UserId};

use super::event_hash::MAX_PDU_BYTES;

/// Checks the shape of a federation PDU. The error text names the offending field.
pub fn check_format(object: &CanonicalJsonObject, rules: &RoomVersionRules) -> Result<(), String> {
    // ruma allows 65535 bytes; the spec says 65536. Check the spec's limit first, then let ruma
    // enforce the rest (its one byte stricter size check only matters at the exact limit).
    let size = serde_json::to_string(object).map_err(|e| e.to_string())?.len();
    if size > MAX_PDU_BYTES {
        return Err(format!("PDU is {size} bytes, over the limit of {MAX_PDU_BYTES}"));
    }
    ruma::state_res::check_pdu_format(object, &rules.event_format)?;

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
