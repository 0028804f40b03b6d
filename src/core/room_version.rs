//! Room versions: which ones we accept, which ones we offer to clients, and the lookup to
//! ruma's [`RoomVersionRules`]. Everything downstream branches on the rules' flags, never on
//! the version string.

use std::collections::BTreeMap;

use ruma::room_version_rules::RoomVersionRules;
use ruma::RoomVersionId;

/// The version new rooms get unless the client asks for another one.
pub const DEFAULT_ROOM_VERSION: RoomVersionId = RoomVersionId::V12;

/// The versions Neurite takes part in (2 to 12): clients may create rooms of each
/// (`m.room_versions` capability), other servers' rooms of each are joined. Version 1
/// needs state resolution v1, which Neurite does not implement: it is refused at the door
/// (`M_UNSUPPORTED_ROOM_VERSION`).
const ACCEPTED: [RoomVersionId; 11] = [
    RoomVersionId::V2,
    RoomVersionId::V3,
    RoomVersionId::V4,
    RoomVersionId::V5,
    RoomVersionId::V6,
    RoomVersionId::V7,
    RoomVersionId::V8,
    RoomVersionId::V9,
    RoomVersionId::V10,
    RoomVersionId::V11,
    RoomVersionId::V12,
];

/// Whether we can take part in rooms of this version (federation joins, invites, backfill).
pub fn is_supported(version: &RoomVersionId) -> bool {
    ACCEPTED.contains(version)
}

/// Whether clients may create rooms of this version.
pub fn is_offered_to_clients(version: &RoomVersionId) -> bool {
    is_supported(version)
}

/// The rules of a supported version; `None` for anything we do not support.
pub fn rules_for(version: &RoomVersionId) -> Option<RoomVersionRules> {
    if is_supported(version) {
        version.rules()
    } else {
        None
    }
}

/// Parses a version string (as found in `m.room.create` or a request) into the id and its rules.
pub fn parse(version: &str) -> Option<(RoomVersionId, RoomVersionRules)> {
    let id = RoomVersionId::try_from(version).ok()?;
    let rules = rules_for(&id)?;
    Some((id, rules))
}

/// The `available` map of the `m.room_versions` capability: `{"10":"stable",...}`.
pub fn available_for_clients() -> BTreeMap<String, String> {
    ACCEPTED
        .iter()
        .map(|v| (v.as_str().to_owned(), "stable".to_owned()))
        .collect()
}

/// The whole `m.room_versions` capability object: `{"default":"12","available":{...}}`.
pub fn capability_json() -> serde_json::Value {
    serde_json::json!({
        "default": DEFAULT_ROOM_VERSION.as_str(),
        "available": available_for_clients(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_two_to_twelve_with_twelve_default() {
        let caps = capability_json();
        assert_eq!(caps["default"], "12");
        let available = caps["available"].as_object().expect("map");
        assert_eq!(available.len(), 11);
        for n in 2..=12 {
            assert_eq!(available[&n.to_string()], "stable", "version {n}");
        }
        assert!(is_offered_to_clients(&RoomVersionId::V12));
        assert!(is_offered_to_clients(&RoomVersionId::V2));
        assert!(!is_offered_to_clients(&RoomVersionId::V1));
    }

    #[test]
    fn accepts_two_to_twelve_only() {
        for n in 2..=12 {
            assert!(parse(&n.to_string()).is_some(), "version {n}");
        }
        assert!(parse("1").is_none(), "state resolution v1");
        assert!(parse("13").is_none());
        assert!(parse("org.example.custom").is_none());
        assert!(parse("").is_none());
    }

    #[test]
    fn rules_differ_by_flags() {
        let (_, v11) = parse("11").expect("v11");
        let (_, v12) = parse("12").expect("v12");
        assert!(!v11.authorization.room_create_event_id_as_room_id);
        assert!(v12.authorization.room_create_event_id_as_room_id);
        assert!(v11.redaction.content_field_redacts);
    }
}
