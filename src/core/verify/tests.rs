use ruma::room_version_rules::RoomVersionRules;
use serde_json::json;

use super::*;
use crate::core::builder::NewEvent;
use crate::core::keys::public_key_map;
use crate::core::testing::{TestRoom, SERVER};

fn keys(room: &TestRoom) -> PublicKeyMap {
    public_key_map(&[(SERVER, &room.key.key_id(), &room.key.public_key_base64())]).expect("keys")
}

fn messages(room: &mut TestRoom, n: usize) -> Vec<Pdu> {
    (0..n)
        .map(|i| {
            room.send(
                "alice",
                NewEvent::message("m.room.message", json!({"body": format!("m{i}")})),
            )
            .expect("message")
        })
        .collect()
}

#[test]
fn valid_events_verify_and_parse_to_the_same_id() {
    let mut room = TestRoom::new("12", "alice");
    let keys = keys(&room);
    for pdu in messages(&mut room, 3) {
        assert_eq!(verify_pdu(pdu.object(), &room.rules, &keys), Ok(Verified::All));
        let checked = check_pdu(pdu.object().clone(), &room.rules, &keys).expect("checks");
        assert_eq!(checked.pdu.event_id(), pdu.event_id());
        assert_eq!(checked.verified, Verified::All);
    }
}

#[test]
fn bad_content_hash_means_redact() {
    let mut room = TestRoom::new("11", "alice");
    let keys = keys(&room);
    let pdu = messages(&mut room, 1).remove(0);
    let mut object = pdu.object().clone();
    if let Some(CanonicalJsonValue::Object(c)) = object.get_mut("content") {
        c.insert("body".into(), CanonicalJsonValue::String("changed".into()));
    }
    assert_eq!(verify_pdu(&object, &room.rules, &keys), Ok(Verified::Redacted));
    let checked = check_pdu(object, &room.rules, &keys).expect("checks");
    assert_eq!(checked.verified, Verified::Redacted);
    assert_eq!(
        checked.pdu.event_id(),
        pdu.event_id(),
        "redaction keeps the reference hash"
    );
    assert!(checked.pdu.content_field("body").is_none(), "stored redacted");
}

#[test]
fn bad_signatures_and_unknown_keys_are_invalid() {
    let mut room = TestRoom::new("10", "alice");
    let keys = keys(&room);
    let pdu = messages(&mut room, 1).remove(0);
    let mut object = pdu.object().clone();
    object.insert(
        "origin_server_ts".into(),
        CanonicalJsonValue::Integer(ruma::Int::from(5u32)),
    );
    assert!(
        verify_pdu(&object, &room.rules, &keys).is_err(),
        "signed field changed"
    );
    assert!(
        verify_pdu(pdu.object(), &room.rules, &PublicKeyMap::new()).is_err(),
        "no known key"
    );
    let mut unsigned = pdu.object().clone();
    unsigned.insert(
        "signatures".into(),
        CanonicalJsonValue::Object(Default::default()),
    );
    assert!(verify_pdu(&unsigned, &room.rules, &keys).is_err(), "no signature");
}

#[test]
fn batch_locates_the_bad_event() {
    let mut room = TestRoom::new("12", "alice");
    let keys = keys(&room);
    let pdus = messages(&mut room, 70);
    let mut objects: Vec<CanonicalJsonObject> = pdus.iter().map(|p| p.object().clone()).collect();
    objects[66].insert("depth".into(), CanonicalJsonValue::Integer(ruma::Int::from(1u32)));
    let items: Vec<_> = objects.iter().map(|o| (o, &room.rules)).collect();
    let results = verify_batch(&items, &keys);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.is_ok(), i != 66, "event {i}");
    }
    let checked = check_pdus_batch(objects.into_iter().map(|o| (o, &room.rules)).collect(), &keys);
    assert_eq!(checked.iter().filter(|r| r.is_err()).count(), 1);
    assert_eq!(
        checked[3].as_ref().expect("ok").pdu.event_id(),
        pdus[3].event_id()
    );
}

#[test]
fn batch_splits_until_each_bad_event_is_found() {
    let mut room = TestRoom::new("12", "alice");
    let keys = keys(&room);
    let pdus = messages(&mut room, 300);
    let mut objects: Vec<CanonicalJsonObject> = pdus.iter().map(|p| p.object().clone()).collect();
    // Bad signatures (the signed bytes changed) in both halves and at the ends, and one
    // event without signatures at all (fails before the batch).
    let bad = [0usize, 1, 149, 150, 151, 222, 299];
    for i in bad {
        objects[i].insert("depth".into(), CanonicalJsonValue::Integer(ruma::Int::from(7u32)));
    }
    objects[40].remove("signatures");
    let items: Vec<_> = objects.iter().map(|o| (o, &room.rules)).collect();
    let results = verify_batch(&items, &keys);
    for (i, r) in results.iter().enumerate() {
        let expect_ok = !bad.contains(&i) && i != 40;
        assert_eq!(r.is_ok(), expect_ok, "event {i}: {r:?}");
    }
}

#[test]
fn format_errors_are_reported() {
    let mut room = TestRoom::new("12", "alice");
    let keys = keys(&room);
    let pdu = messages(&mut room, 1).remove(0);
    let mut object = pdu.object().clone();
    object.insert("sender".into(), CanonicalJsonValue::String("not a user".into()));
    assert!(check_pdu(object, &room.rules, &keys).is_err());
    let v1 = RoomVersionRules::V1;
    assert!(
        check_pdu(pdu.object().clone(), &v1, &keys).is_err(),
        "v12 event is not a v1 event"
    );
}

#[test]
fn a_restricted_join_needs_the_authorising_servers_signature() {
    use crate::core::keys::SigningKey;
    let mut room = TestRoom::new("10", "alice");
    let other = SigningKey::from_seed([7; 32], "o1").expect("key");
    let authoriser = "@admin:other.example";
    let joiner = format!("@zed:{SERVER}");
    let join = room.build(
        "zed",
        NewEvent::state(
            "m.room.member",
            &joiner,
            json!({"membership": "join", "join_authorised_via_users_server": authoriser}),
        ),
    );
    let keys = public_key_map(&[
        (SERVER, &room.key.key_id(), &room.key.public_key_base64()),
        ("other.example", &other.key_id(), &other.public_key_base64()),
    ])
    .expect("keys");
    assert!(
        verify_pdu(join.object(), &room.rules, &keys).is_err(),
        "signed only by the joining server"
    );
    let mut countersigned = join.object().clone();
    event_hash::countersign(&mut countersigned, &room.rules.redaction, "other.example", &other)
        .expect("countersign");
    assert_eq!(verify_pdu(&countersigned, &room.rules, &keys), Ok(Verified::All));
    let checked = check_pdu(countersigned, &room.rules, &keys).expect("checks");
    assert_eq!(checked.pdu.event_id(), join.event_id(), "the id does not change");
}
