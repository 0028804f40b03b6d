use ruma::room_version_rules::RoomVersionRules;
use serde_json::json;

use super::*;
use crate::core::builder::NewEvent;
use crate::core::testing::{user, TestRoom};

#[test]
fn round_trips_through_federation_json() {
    for v in ["10", "11", "12"] {
        let mut room = TestRoom::new(v, "alice");
        let msg = room
            .send(
                "alice",
                NewEvent::message("m.room.message", json!({"body": "hi"})),
            )
            .expect("message");
        let json = msg.to_federation_json();
        let parsed = Pdu::from_federation_json(&json, &room.rules).expect("parses");
        assert_eq!(parsed.event_id(), msg.event_id());
        assert_eq!(parsed.to_federation_json(), json, "exact re-serialisation");
        assert_eq!(parsed.prev_events(), msg.prev_events());
        assert_eq!(parsed.depth(), msg.depth());
        // v3+ ids are not part of the federation form, and are ignored if present.
        assert!(!json.contains("\"event_id\""));
        let mut with_id = msg.object().clone();
        with_id.insert("event_id".into(), CanonicalJsonValue::String("$bogus".into()));
        let parsed = Pdu::from_federation(with_id, &room.rules).expect("parses");
        assert_eq!(parsed.event_id(), msg.event_id());
    }
}

#[test]
fn v12_create_event_names_the_room() {
    let room = TestRoom::new("12", "alice");
    let create = room.current("m.room.create", "").expect("create");
    assert!(!create.object().contains_key("room_id"));
    assert_eq!(
        create.room_id().as_str(),
        format!("!{}", &create.event_id().as_str()[1..])
    );
    assert_eq!(ruma::state_res::Event::room_id(&create), None);
    let parsed = Pdu::from_federation(create.object().clone(), &room.rules).expect("parses");
    assert_eq!(parsed.room_id(), create.room_id());
    let client = create.to_client_event(None);
    assert_eq!(client["room_id"], create.room_id().as_str());
}

#[test]
fn client_and_stripped_projections() {
    let mut room = TestRoom::new("11", "alice");
    let topic = room
        .send(
            "alice",
            NewEvent::state("m.room.topic", "", json!({"topic": "t"})),
        )
        .expect("topic");
    let client = topic.to_client_event(Some(json!({"age": 5})));
    assert_eq!(client["type"], "m.room.topic");
    assert_eq!(client["state_key"], "");
    assert_eq!(client["sender"], user("alice").as_str());
    assert_eq!(client["content"]["topic"], "t");
    assert_eq!(client["unsigned"]["age"], 5);
    assert_eq!(client["room_id"], room.room_id.as_str());
    assert_eq!(client["event_id"], topic.event_id().as_str());
    assert!(client.get("hashes").is_none() && client.get("signatures").is_none());
    assert!(topic.to_sync_event(None).get("room_id").is_none());
    assert!(topic.to_sync_event(Some(json!({}))).get("unsigned").is_none());
    assert_eq!(
        topic.to_stripped_state(),
        json!({"content": {"topic": "t"}, "sender": user("alice"), "state_key": "", "type": "m.room.topic"})
    );
    let redaction = room
        .send(
            "alice",
            NewEvent {
                event_type: "m.room.redaction".into(),
                state_key: None,
                content: json!({}),
                redacts: Some(topic.owned_event_id()),
            },
        )
        .expect("redaction");
    let client = redaction.to_client_event(None);
    assert_eq!(client["redacts"], topic.event_id().as_str());
    assert_eq!(client["content"]["redacts"], topic.event_id().as_str());
    let redacted = topic.redacted(&room.rules).expect("redacts");
    assert_eq!(redacted.event_id(), topic.event_id());
    assert_eq!(redacted.content(), json!({}));
}

#[test]
fn v1_events_carry_their_ids() {
    let json = json!({
        "event_id": "$a1:example.org", "room_id": "!r:example.org", "sender": "@a:example.org",
        "type": "m.room.message", "content": {"body": "x"}, "depth": 3, "origin_server_ts": 7,
        "prev_events": [["$p:example.org", {"sha256": "abc"}]], "auth_events": [],
        "hashes": {"sha256": "abc"}, "signatures": {},
    });
    let pdu = Pdu::from_federation_json(&json.to_string(), &RoomVersionRules::V1).expect("v1 parses");
    assert_eq!(pdu.event_id().as_str(), "$a1:example.org");
    assert_eq!(pdu.prev_events()[0].as_str(), "$p:example.org");
    assert!(
        Pdu::from_federation_json(&json.to_string(), &RoomVersionRules::V4).is_err(),
        "not a v4 event"
    );
}

#[test]
fn format_limits() {
    let mut room = TestRoom::new("12", "alice");
    let msg = room
        .send("alice", NewEvent::message("m.room.message", json!({"body": "x"})))
        .expect("message");
    let with = |field: &str, value: CanonicalJsonValue| {
        let mut o = msg.object().clone();
        o.insert(field.into(), value);
        Pdu::from_federation(o, &room.rules)
    };
    let long = "a".repeat(256);
    assert!(
        with("type", CanonicalJsonValue::String(long.clone())).is_err(),
        "type > 255 bytes"
    );
    assert!(
        with("state_key", CanonicalJsonValue::String(long)).is_err(),
        "state_key > 255 bytes"
    );
    assert!(
        with("sender", CanonicalJsonValue::String("alice".into())).is_err(),
        "sender grammar"
    );
    assert!(
        with("room_id", CanonicalJsonValue::String("!r:example.org".into())).is_err(),
        "v12 room id grammar"
    );
    assert!(
        with(
            "prev_events",
            CanonicalJsonValue::Array(vec!["$short".to_owned().into()])
        )
        .is_err(),
        "event id grammar"
    );
    assert!(
        with("content", CanonicalJsonValue::String("x".into())).is_err(),
        "content type"
    );
    assert!(
        with("depth", CanonicalJsonValue::Integer(ruma::Int::from(-1))).is_err(),
        "negative depth"
    );
    let mut big = msg.object().clone();
    if let Some(CanonicalJsonValue::Object(c)) = big.get_mut("content") {
        c.insert("pad".into(), CanonicalJsonValue::String("x".repeat(65_536)));
    }
    assert!(Pdu::from_federation(big, &room.rules).is_err(), "oversized");
}
