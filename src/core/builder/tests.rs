use serde_json::json;

use super::*;
use crate::core::testing::{test_key, user, TestRoom, SERVER};

#[test]
fn depth_and_prev_events_follow_the_extremities() {
    let mut room = TestRoom::new("12", "alice");
    let mut extremities: Vec<Prev> = Vec::new();
    let base = room.main.clone();
    for i in 0..25 {
        let mut b = base.clone();
        let e = room
            .send_on(
                &mut b,
                "alice",
                NewEvent::message("m.room.message", json!({"body": i})),
            )
            .expect("message");
        extremities.push(Prev::new(e.owned_event_id(), e.depth() + (i % 3)));
    }
    let key = test_key();
    let signer = Signer {
        server_name: SERVER,
        key: &key,
        now_ms: 99,
    };
    let build = |ext: &[Prev]| {
        build_event(
            &room.rules,
            &room.room_id,
            &user("alice"),
            NewEvent::message("m.room.message", json!({"body": "tip"})),
            ext,
            |k, s| room.state_of(&room.main, k, s),
            signer,
        )
        .expect("builds")
    };
    let pdu = build(&extremities);
    assert_eq!(pdu.prev_events().len(), MAX_PREV_EVENTS);
    let max = extremities.iter().map(|e| e.depth).max().expect("max");
    assert_eq!(pdu.depth(), max + 1);
    assert_eq!(pdu.origin_server_ts(), 99);
    let mut reversed = extremities.clone();
    reversed.reverse();
    assert_eq!(
        build(&reversed).event_id(),
        pdu.event_id(),
        "stable choice of prev events"
    );
}

#[test]
fn create_events_per_version() {
    let key = test_key();
    let signer = Signer {
        server_name: SERVER,
        key: &key,
        now_ms: 1,
    };
    let alice = user("alice");
    let room_id = ruma::OwnedRoomId::try_from("!r:example.org").expect("id");
    let v10 = RoomVersionId::V10;
    let rules = v10.rules().expect("rules");
    let create = build_create_event(&v10, &rules, &alice, Some(&room_id), json!({}), signer).expect("v10");
    assert_eq!(create.content()["creator"], alice.as_str());
    assert_eq!(create.room_id(), &room_id);
    assert!(
        build_create_event(&v10, &rules, &alice, None, json!({}), signer).is_err(),
        "v10 needs room id"
    );
    let v11 = RoomVersionId::V11;
    let rules = v11.rules().expect("rules");
    let create = build_create_event(&v11, &rules, &alice, Some(&room_id), json!({}), signer).expect("v11");
    assert!(create.content().get("creator").is_none());
    let v12 = RoomVersionId::V12;
    let rules = v12.rules().expect("rules");
    let create =
        build_create_event(&v12, &rules, &alice, None, json!({"m.federate": false}), signer).expect("v12");
    assert_eq!(create.room_id().as_str()[1..], create.event_id().as_str()[1..]);
    assert_eq!(create.content()["room_version"], "12");
    for v in [RoomVersionId::V1, RoomVersionId::V2] {
        let rules = v.rules().expect("rules");
        let create =
            build_create_event(&v, &rules, &alice, Some(&room_id), json!({}), signer).expect("v1/v2");
        assert_eq!(create.room_id(), &room_id);
        assert_eq!(create.content()["creator"], alice.as_str());
        // The event names itself, `$local:server`, and the name is part of what is signed.
        assert_eq!(create.event_id().server_name().map(|s| s.as_str()), Some(SERVER));
        assert_eq!(
            create.object()["event_id"].as_str(),
            Some(create.event_id().as_str())
        );
        let reparsed = Pdu::from_federation(create.object().clone(), &rules).expect("valid v1/v2 PDU");
        assert_eq!(reparsed.event_id(), create.event_id());
        assert!(event_hash::content_hash_matches(create.object()));
    }
}

#[test]
fn version_two_events_refer_by_id_and_reference_hash() {
    let mut room = TestRoom::new("2", "alice");
    let topic = room
        .send(
            "alice",
            NewEvent::state("m.room.topic", "", json!({"topic": "t"})),
        )
        .expect("topic");
    let message = room
        .send(
            "alice",
            NewEvent::message("m.room.message", json!({"body": "hi"})),
        )
        .expect("message");
    // prev_events: [[id, {"sha256": reference hash of the prev}]]
    let prevs = message.object()["prev_events"].as_array().expect("array");
    assert_eq!(prevs.len(), 1);
    let pair = prevs[0].as_array().expect("pair");
    assert_eq!(pair[0].as_str(), Some(topic.event_id().as_str()));
    let hash = event_hash::reference_hash(topic.object(), &room.rules).expect("hash");
    assert_eq!(
        pair[1].as_object().expect("hashes")["sha256"].as_str(),
        Some(hash.as_str())
    );
    assert_eq!(message.prev_events(), [topic.owned_event_id()]);
    // auth_events: the same pairs; the create, power levels and sender's member event.
    let auth: Vec<_> = message.auth_events().to_vec();
    assert_eq!(auth.len(), 3);
    for id in &auth {
        let event = room.fetch(id).expect("auth event known");
        let hash = event_hash::reference_hash(event.object(), &room.rules).expect("hash");
        let listed = message.object()["auth_events"]
            .as_array()
            .expect("array")
            .iter()
            .any(|p| {
                p.as_array().is_some_and(|p| {
                    p[0].as_str() == Some(id.as_str())
                        && p[1].as_object().and_then(|h| h["sha256"].as_str()) == Some(hash.as_str())
                })
            });
        assert!(listed, "{id} listed with its reference hash");
    }
    // Distinct events get distinct names.
    assert_ne!(topic.event_id(), message.event_id());
}

#[test]
fn rejects_bad_content() {
    let mut room = TestRoom::new("11", "alice");
    let key = test_key();
    let signer = Signer {
        server_name: SERVER,
        key: &key,
        now_ms: 1,
    };
    for content in [
        json!({"n": 1.5}),
        json!("text"),
        json!({"big": "x".repeat(70_000)}),
    ] {
        let r = build_event(
            &room.rules,
            &room.room_id,
            &user("alice"),
            NewEvent::message("m.room.message", content),
            &room.main.extremities,
            |k, s| room.state_of(&room.main, k, s),
            signer,
        );
        assert!(r.is_err());
    }
    let _ = room.member("alice", "bob", "invite");
}

#[test]
fn a_join_template_is_completed_hashed_and_signed() {
    use crate::core::builder::complete_template;
    let key = SigningKey::from_seed([3; 32], "k").expect("key");
    let rules = ruma::RoomVersionId::V11.rules().expect("rules");
    let me = ruma::OwnedUserId::try_from("@me:here.test").expect("user");
    let template = serde_json::json!({
        "type": "m.room.member", "sender": "@me:here.test", "state_key": "@me:here.test",
        "room_id": "!abc:here.test", "content": {"membership": "join"}, "depth": 5,
        "prev_events": ["$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"], "auth_events": ["$BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"], "origin_server_ts": 1,
        "hashes": {"sha256": "stale"},
    });
    let signer = Signer {
        server_name: "here.test",
        key: &key,
        now_ms: 77,
    };
    let content = serde_json::json!({"membership": "leave", "displayname": "Me"});
    let (object, id) = complete_template(&template, &me, content, &rules, signer).expect("completed");
    let value = serde_json::to_value(&object).expect("json");
    assert_eq!(
        value["content"],
        serde_json::json!({"membership": "join", "displayname": "Me"})
    );
    assert_eq!(value["origin_server_ts"], 77);
    let keys = crate::core::keys::public_key_map(&[("here.test", &key.key_id(), &key.public_key_base64())])
        .expect("keys");
    let checked = crate::core::verify::check_pdu(object, &rules, &keys).expect("valid");
    assert_eq!(checked.pdu.event_id(), &id);
    let other = ruma::OwnedUserId::try_from("@other:here.test").expect("user");
    assert!(complete_template(&template, &other, serde_json::json!({}), &rules, signer).is_err());
    assert!(complete_template(
        &serde_json::json!([1]),
        &me,
        serde_json::json!({}),
        &rules,
        signer
    )
    .is_err());
}
