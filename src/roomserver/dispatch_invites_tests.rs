//! Invites from other servers into rooms this server does not hold, on native SQLite:
//! verified, countersigned, kept for the invitee with the stripped state, answered in
//! their membership and /sync, ended by a decline; bad invites change nothing.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::core::keys::SigningKey;
use crate::core::testing::{member_event, test_key, user, TestRoom, SERVER};
use crate::log::LogRecord;
use crate::storage::sql::testing::MemorySql;

use super::dispatch::{handle, Host};
use super::protocol::{RawPdu, RoomFailure, RoomRequest, SliceSpec};
use super::store;

const OURS: &str = "hs.test";

fn clock() -> f64 {
    0.0
}

fn host(key: &SigningKey) -> Host<'_> {
    Host {
        server_name: OURS,
        key,
        now_ms: 10,
        clock_ms: clock,
    }
}

fn bob() -> String {
    format!("@bob:{OURS}")
}

/// The inviting server's keys, as the edge gathers them.
fn their_keys() -> BTreeMap<String, BTreeMap<String, String>> {
    let key = test_key();
    BTreeMap::from([(
        SERVER.to_owned(),
        BTreeMap::from([(key.key_id(), key.public_key_base64())]),
    )])
}

/// A room on the other server with a name, and alice's invite of bob built in it.
fn invite_of(target: &str) -> (TestRoom, Value) {
    let mut room = TestRoom::new("10", "alice");
    room.send(
        user("alice").as_str(),
        crate::core::builder::NewEvent::state("m.room.name", "", json!({ "name": "Elsewhere" })),
    )
    .expect("name");
    let target = ruma::OwnedUserId::try_from(target).expect("user");
    let invite = room.build(user("alice").as_str(), member_event(&target, "invite", json!({})));
    (room, invite.to_federation_value())
}

fn receive(
    db: &MemorySql,
    key: &SigningKey,
    event: &Value,
    origin: &str,
    version: &str,
) -> Result<Value, RoomFailure> {
    handle(
        db,
        &host(key),
        RoomRequest::ReceiveInvite {
            event_id: crate::core::event_hash::event_id(
                &serde_json::from_value(event.clone()).expect("object"),
                &ruma::room_version_rules::RoomVersionRules::V10,
            )
            .expect("id")
            .to_string(),
            pdu: RawPdu::from_value(event).expect("raw"),
            room_version: version.to_owned(),
            invite_state: vec![
                json!({ "type": "m.room.name", "state_key": "", "sender": user("alice").as_str(), "content": { "name": "Elsewhere" } }),
                json!({ "not": "an event" }),
            ],
            keys: their_keys(),
            origin: origin.to_owned(),
        },
    )
}

fn membership(db: &MemorySql, key: &SigningKey) -> Value {
    match handle(db, &host(key), RoomRequest::Membership { user_id: bob() }) {
        Ok(answer) => answer,
        // Nothing kept: the room is not here at all.
        Err(e) if e.status == 404 => json!({ "membership": null }),
        Err(e) => panic!("membership: {e:?}"),
    }
}

fn slice(db: &MemorySql, key: &SigningKey) -> Value {
    handle(
        db,
        &host(key),
        RoomRequest::SyncSlice {
            user_id: bob(),
            device_id: None,
            slice: SliceSpec::default(),
        },
    )
    .expect("slice")
}

fn records(db: &MemorySql) -> Vec<LogRecord> {
    store::outbox(db, 100)
        .expect("outbox")
        .into_iter()
        .map(|(_, text)| serde_json::from_str(&text).expect("record"))
        .collect()
}

#[test]
fn an_invite_from_another_server_is_countersigned_kept_and_declined() {
    let db = MemorySql::new();
    let key = SigningKey::from_seed([5; 32], "t").expect("key");
    let (_, event) = invite_of(&bob());
    let answer = receive(&db, &key, &event, SERVER, "10").expect("accepted");
    let signed = &answer["event"];
    assert!(answer.get("held").is_none());
    assert!(signed["signatures"][SERVER].is_object());
    assert!(signed["signatures"][OURS][key.key_id()].is_string());
    assert_eq!(signed["content"], event["content"]);

    let m = membership(&db, &key);
    assert_eq!(m["membership"], "invite");
    assert_eq!(m["sender"], user("alice").as_str());
    assert_eq!(m["remote_invite"], true);
    assert_eq!(m["stream_pos"], 1);
    assert_eq!(
        m["servers"],
        json!([SERVER]),
        "the inviter's server takes the answer"
    );
    let s = slice(&db, &key);
    assert_eq!(s["membership"], "invite");
    let state = s["invite_state"].as_array().expect("state");
    assert_eq!(state.len(), 2, "the name and the invite: {state:?}");
    assert_eq!(state[0]["content"]["name"], "Elsewhere");
    assert_eq!(state[1]["content"]["membership"], "invite");
    assert_eq!(state[1]["sender"], user("alice").as_str());

    // The invitee's stream and the projections learn of it through the log.
    let logged = records(&db);
    assert_eq!(logged.len(), 1);
    let changed = crate::log::local_memberships(&logged[0], OURS);
    assert_eq!(
        changed,
        vec![(bob().as_str(), "invite", m["event_id"].as_str().expect("id"))]
    );

    // Sent again: the same answer, nothing new.
    let again = receive(&db, &key, &event, SERVER, "10").expect("again");
    assert_eq!(&again["event"], signed);
    assert_eq!(records(&db).len(), 1);
    assert_eq!(store::latest_stream_pos(&db).expect("pos"), 1);

    // Declined: a leave at the next position.
    let end = handle(
        &db,
        &host(&key),
        RoomRequest::EndInvite {
            user_id: bob(),
            event_id: "$leave".into(),
        },
    )
    .expect("ended");
    assert_eq!(end["stream_pos"], 2);
    let m = membership(&db, &key);
    assert_eq!(
        (m["membership"].as_str(), m["event_id"].as_str()),
        (Some("leave"), Some("$leave"))
    );
    assert_eq!(slice(&db, &key)["membership"], "leave");
    let logged = records(&db);
    assert_eq!(logged.len(), 2);
    assert_eq!(
        crate::log::local_memberships(&logged[1], OURS),
        vec![(bob().as_str(), "leave", "$leave")]
    );
}

#[test]
fn bad_invites_are_refused_and_change_nothing() {
    let key = SigningKey::from_seed([5; 32], "t").expect("key");
    let (room, event) = invite_of(&bob());
    let expect_refused = |event: &Value, origin: &str, version: &str, code: &str| {
        let db = MemorySql::new();
        let e = receive(&db, &key, event, origin, version).expect_err("refused");
        assert_eq!(e.errcode, code, "{}", e.error);
        assert_eq!(membership(&db, &key)["membership"], Value::Null);
        assert!(records(&db).is_empty());
    };
    // Another server than the inviter's.
    expect_refused(&event, "evil.test", "10", "M_FORBIDDEN");
    // A room version this server does not speak.
    expect_refused(&event, SERVER, "1", "M_INCOMPATIBLE_ROOM_VERSION");
    // Not signed by the inviting server's key.
    let mut forged = event.clone();
    forged["signatures"] = json!({ SERVER: { "ed25519:test": "AAAA" } });
    expect_refused(&forged, SERVER, "10", "M_FORBIDDEN");
    // Content changed after signing (the hash no longer matches).
    let mut changed = event.clone();
    changed["content"]["displayname"] = json!("Mallory");
    expect_refused(&changed, SERVER, "10", "M_BAD_JSON");
    // An invite of someone on another server.
    let carol = ruma::OwnedUserId::try_from("@carol:third.test").expect("user");
    let mut room = room;
    let other = room.build(user("alice").as_str(), member_event(&carol, "invite", json!({})));
    expect_refused(&other.to_federation_value(), SERVER, "10", "M_INVALID_PARAM");
    // Named in the path by another id.
    let db = MemorySql::new();
    let wrong = handle(
        &db,
        &host(&key),
        RoomRequest::ReceiveInvite {
            event_id: "$another".into(),
            pdu: RawPdu::from_value(&event).expect("raw"),
            room_version: "10".into(),
            invite_state: Vec::new(),
            keys: their_keys(),
            origin: SERVER.into(),
        },
    )
    .expect_err("refused");
    assert_eq!(wrong.errcode, "M_INVALID_PARAM");
    assert!(records(&db).is_empty());
    // Not an invite at all.
    let join = room.build(
        user("alice").as_str(),
        member_event(&ruma::OwnedUserId::try_from(bob()).expect("u"), "join", json!({})),
    );
    expect_refused(&join.to_federation_value(), SERVER, "10", "M_INVALID_PARAM");
}

#[test]
fn a_knock_elsewhere_is_kept_and_retracted_with_a_leave() {
    let db = MemorySql::new();
    let key = SigningKey::from_seed([5; 32], "t").expect("key");
    let room = "!knocked:remote.test";
    let event = json!({
        "room_id": room, "type": "m.room.member", "sender": bob(), "state_key": bob(),
        "content": {"membership": "knock"},
    });
    let knock_state = vec![
        json!({"type": "m.room.name", "state_key": "", "sender": user("alice").as_str(), "content": {"name": "Door"}}),
        json!({"type": "m.room.join_rules", "state_key": "", "sender": "@carol:third.test", "content": {"join_rule": "knock"}}),
    ];
    let kept = handle(
        &db,
        &host(&key),
        RoomRequest::KeepKnock {
            user_id: bob(),
            event_id: "$knock".into(),
            room_version: "10".into(),
            event,
            knock_state,
        },
    )
    .expect("kept");
    assert_eq!(kept["stream_pos"], 1);
    let m = membership(&db, &key);
    assert_eq!(m["membership"], "knock");
    // The knock's own sender is the local user: the room's senders take the leave.
    assert_eq!(m["servers"], json!([SERVER, "third.test"]));
    let end = handle(
        &db,
        &host(&key),
        RoomRequest::EndInvite {
            user_id: bob(),
            event_id: "$retract".into(),
        },
    )
    .expect("ended");
    assert_eq!(end["stream_pos"], 2);
    let m = membership(&db, &key);
    assert_eq!(
        (m["membership"].as_str(), m["event_id"].as_str()),
        (Some("leave"), Some("$retract"))
    );
    assert_eq!(
        crate::log::local_memberships(&records(&db)[1], OURS),
        vec![(bob().as_str(), "leave", "$retract")]
    );
}
