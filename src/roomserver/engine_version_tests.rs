//! Every supported room version (2 to 12) on native SQLite: local users create, send,
//! change state and redact, and every event they made passes the checks a receiving
//! server runs (format, hashes, signatures) and the input pipeline of another copy of
//! the room. Version 1 is refused.

use serde_json::json;

use crate::core::builder::{build_create_event, NewEvent};
use crate::core::keys::public_key_map;
use crate::core::verify::check_pdu;
use crate::storage::sql::testing::MemorySql;

use super::engine::{Cache, Engine, Outcome, RoomError};
use super::engine_tests::{key, new_room, signer, user};
use super::store;

#[test]
fn local_users_send_in_every_supported_version_and_other_servers_accept_it() {
    let k = key();
    let keys = public_key_map(&[("hs.test", &k.key_id(), &k.public_key_base64())]).expect("keys");
    for version in ["2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"] {
        let db = MemorySql::new();
        let mut room = new_room(&db, version, &k);
        let (alice, bob) = (user("alice"), user("bob"));
        let (message, _) = room
            .send(
                &bob,
                NewEvent::message("m.room.message", json!({"body": "hi"})),
                signer(&k, 10),
            )
            .unwrap_or_else(|e| panic!("v{version} message: {e}"));
        room.send(
            &alice,
            NewEvent::state("m.room.topic", "", json!({"topic": version})),
            signer(&k, 11),
        )
        .unwrap_or_else(|e| panic!("v{version} topic: {e}"));
        let mut redaction = NewEvent::message("m.room.redaction", json!({"reason": "test"}));
        redaction.redacts = Some(message.owned_event_id());
        room.send(&alice, redaction, signer(&k, 12))
            .unwrap_or_else(|e| panic!("v{version} redaction: {e}"));
        let rules = room.rules().clone();

        // Another copy of the room takes every event, in stream order, through the
        // checks on receipt and the input pipeline.
        let events = store::events_after(&db, 0, i64::MAX, 1000).expect("events");
        assert_eq!(events.len(), 8, "v{version}");
        let other_db = MemorySql::new();
        store::init(&other_db).expect("schema");
        let cache: &Cache = Box::leak(Box::default());
        let mut other: Option<Engine<'_>> = None;
        for row in &events {
            // The message was redacted here; the receiving server checks its stored
            // (redacted) form, whose hashes and signatures still hold.
            let object = crate::core::canonical::parse_object(&row.json).expect("json");
            let checked = check_pdu(object, &rules, &keys)
                .unwrap_or_else(|e| panic!("v{version} {}: {}", row.event_type, e.0));
            assert_eq!(
                checked.pdu.event_id().as_str(),
                row.event_id,
                "v{version} event id"
            );
            let outcome = match other.as_mut() {
                None => {
                    let (engine, outcome) = Engine::create(&other_db, cache, checked.pdu).expect("create");
                    other = Some(engine);
                    outcome
                }
                Some(engine) => engine.input_new(checked.pdu).expect("input"),
            };
            assert!(
                matches!(outcome, Outcome::Accepted { .. }),
                "v{version} {}: {outcome:?}",
                row.event_type
            );
        }
        let other = other.expect("room");
        assert_eq!(
            other.current_state().expect("state").1.len(),
            room.current_state().expect("state").1.len(),
            "v{version}"
        );
    }
}

#[test]
fn version_one_is_refused_at_the_door() {
    let k = key();
    let room_id = ruma::OwnedRoomId::try_from("!old:hs.test").expect("room id");
    {
        let version = ruma::RoomVersionId::V1;
        let rules = version.rules().expect("rules");
        // The event builds (the format is known) but a room refuses its version.
        let create = build_create_event(
            &version,
            &rules,
            &user("alice"),
            Some(&room_id),
            json!({}),
            signer(&k, 1),
        )
        .expect("v1 create builds");
        let db = MemorySql::new();
        store::init(&db).expect("schema");
        let cache = Cache::default();
        assert!(matches!(
            Engine::create(&db, &cache, create),
            Err(RoomError::UnsupportedVersion)
        ));
        // A create event from elsewhere that says version 1.
        let v3 = ruma::RoomVersionId::V3;
        let v3_rules = v3.rules().expect("rules");
        let create = build_create_event(
            &v3,
            &v3_rules,
            &user("alice"),
            Some(&room_id),
            json!({}),
            signer(&k, 1),
        )
        .expect("create");
        let mut json: serde_json::Value = serde_json::from_str(&create.to_federation_json()).expect("json");
        json["content"]["room_version"] = json!(version.as_str());
        let object = crate::core::canonical::parse_object(&json.to_string()).expect("object");
        let forged =
            crate::core::pdu::Pdu::from_checked(object, create.owned_event_id(), &v3_rules).expect("pdu");
        let db = MemorySql::new();
        store::init(&db).expect("schema");
        let cache = Cache::default();
        assert!(matches!(
            Engine::create(&db, &cache, forged),
            Err(RoomError::UnsupportedVersion)
        ));
        assert!(
            store::meta(&db, "room_id").expect("meta").is_none(),
            "nothing written"
        );
    }
}
