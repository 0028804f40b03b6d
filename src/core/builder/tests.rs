use serde_json::json;

use super::*;
use crate::core::testing::{test_key, user, TestRoom, SERVER};

#[test]
fn depth_and_prev_events_follow_the_extremities() {
    let mut room = TestRoom::new("12", "alice");
    let mut extremities: Vec<(OwnedEventId, u64)> = Vec::new();
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
        extremities.push((e.owned_event_id(), e.depth() + (i % 3)));
    }
    let key = test_key();
    let signer = Signer {
        server_name: SERVER,
        key: &key,
        now_ms: 99,
    };
    let build = |ext: &[(OwnedEventId, u64)]| {
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
    let max = extremities.iter().map(|e| e.1).max().expect("max");
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
    let v1 = RoomVersionId::V1;
    let rules = v1.rules().expect("rules");
    assert_eq!(
        build_create_event(&v1, &rules, &alice, Some(&room_id), json!({}), signer).err(),
        Some(BuildError::UnsupportedVersion)
    );
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
