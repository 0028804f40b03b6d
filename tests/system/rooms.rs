//! Rooms against the real worker: creation, sending, state, membership, reading.

use serde_json::{json, Value};

use crate::harness::{create_room, enc, new_user, send_text, shared, unique, Client};

fn messages(c: &Client, room: &str, query: &str) -> Value {
    c.get(&format!(
        "/_matrix/client/v3/rooms/{}/messages?{query}",
        enc(room)
    ))
    .expect(200)
}

fn bodies(page: &Value) -> Vec<String> {
    page["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn create_room_with_defaults_is_v12_with_preset_state() {
    let (alice, alice_id) = new_user("alice");
    let room = create_room(&alice, json!({"name": "Lobby", "topic": "Hello"}));
    assert!(room.starts_with('!'));
    assert!(
        !room.contains(':'),
        "v12 room ids are the create event's hash: {room}"
    );
    let state = alice
        .get(&format!("/_matrix/client/v3/rooms/{}/state", enc(&room)))
        .expect(200);
    let kinds: Vec<&str> = state
        .as_array()
        .expect("state")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    for k in [
        "m.room.create",
        "m.room.member",
        "m.room.power_levels",
        "m.room.join_rules",
        "m.room.name",
        "m.room.topic",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    let create_ev = state
        .as_array()
        .expect("state")
        .iter()
        .find(|e| e["type"] == "m.room.create")
        .expect("create");
    assert_eq!(create_ev["content"]["room_version"], "12");
    assert_eq!(create_ev["sender"], alice_id.as_str());
    let name = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.name/",
            enc(&room)
        ))
        .expect(200);
    assert_eq!(name["name"], "Lobby");
    let joined = alice.get("/_matrix/client/v3/joined_rooms").expect(200);
    assert!(joined["joined_rooms"]
        .as_array()
        .expect("list")
        .iter()
        .any(|r| r == room.as_str()));
}

#[test]
fn create_room_versions_and_bad_requests() {
    let (alice, _) = new_user("alice");
    for v in ["2", "4", "9", "10", "11"] {
        let room = create_room(&alice, json!({"room_version": v}));
        assert!(room.contains(':'), "v{v} room ids carry the server name");
        let create = alice
            .get(&format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.create/",
                enc(&room)
            ))
            .expect(200);
        assert_eq!(create["room_version"], v);
    }
    alice
        .post("/_matrix/client/v3/createRoom", &json!({"room_version": "1"}))
        .expect_err(400, "M_UNSUPPORTED_ROOM_VERSION");
    alice
        .post("/_matrix/client/v3/createRoom", &json!({"preset": 5}))
        .expect_err(400, "M_BAD_JSON");
    alice
        .raw("POST", "/_matrix/client/v3/createRoom", Some(b"{nope"), &[])
        .expect_err(400, "M_NOT_JSON");
    shared()
        .client()
        .post("/_matrix/client/v3/createRoom", &json!({}))
        .expect_err(401, "M_MISSING_TOKEN");
}

#[test]
fn send_is_idempotent_per_transaction_and_messages_page_both_ways() {
    let (alice, _) = new_user("alice");
    let room = create_room(&alice, json!({}));
    let first = send_text(&alice, &room, "t1", "one");
    assert_eq!(
        send_text(&alice, &room, "t1", "one again"),
        first,
        "same txn, same event"
    );
    send_text(&alice, &room, "t2", "two");
    send_text(&alice, &room, "t3", "three");
    let page = messages(&alice, &room, "dir=b&limit=2");
    assert_eq!(bodies(&page), ["three", "two"]);
    let end = page["end"].as_str().expect("end token");
    let older = messages(&alice, &room, &format!("dir=b&limit=10&from={end}"));
    assert_eq!(bodies(&older), ["one"]);
    let forward = messages(&alice, &room, "dir=f&limit=50");
    assert_eq!(bodies(&forward), ["one", "two", "three"]);
    assert_eq!(forward["chunk"][0]["type"], "m.room.create");
    // The single event and its context.
    let ev = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            enc(&room),
            enc(&first)
        ))
        .expect(200);
    assert_eq!(ev["content"]["body"], "one");
    let ctx = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/context/{}?limit=2",
            enc(&room),
            enc(&first)
        ))
        .expect(200);
    assert_eq!(ctx["event"]["event_id"], first.as_str());
    assert_eq!(ctx["events_after"][0]["content"]["body"], "two");
}

#[test]
fn membership_flow_invite_join_kick_ban() {
    let (alice, _) = new_user("alice");
    let (bob, bob_id) = new_user("bob");
    let room = create_room(&alice, json!({"preset": "private_chat"}));
    let r = enc(&room);
    // Private: bob cannot join uninvited, cannot read.
    bob.post(&format!("/_matrix/client/v3/rooms/{r}/join"), &json!({}))
        .expect_err(403, "M_FORBIDDEN");
    bob.get(&format!("/_matrix/client/v3/rooms/{r}/messages"))
        .expect_err(403, "M_FORBIDDEN");
    alice
        .post(
            &format!("/_matrix/client/v3/rooms/{r}/invite"),
            &json!({"user_id": bob_id}),
        )
        .expect(200);
    bob.post(&format!("/_matrix/client/v3/join/{r}"), &json!({}))
        .expect(200);
    send_text(&bob, &room, "b1", "hi from bob");
    let members = alice
        .get(&format!("/_matrix/client/v3/rooms/{r}/joined_members"))
        .expect(200);
    assert!(members["joined"].get(&bob_id).is_some());
    let only_joined = alice
        .get(&format!("/_matrix/client/v3/rooms/{r}/members?membership=join"))
        .expect(200);
    assert_eq!(only_joined["chunk"].as_array().expect("chunk").len(), 2);
    // Bob (power 0) cannot kick alice; alice kicks then bans bob.
    bob.post(
        &format!("/_matrix/client/v3/rooms/{r}/kick"),
        &json!({"user_id": "@x:y"}),
    )
    .expect_err(403, "M_FORBIDDEN");
    alice
        .post(
            &format!("/_matrix/client/v3/rooms/{r}/kick"),
            &json!({"user_id": bob_id, "reason": "bye"}),
        )
        .expect(200);
    bob.put(
        &format!("/_matrix/client/v3/rooms/{r}/send/m.room.message/b2"),
        &json!({"body": "still here?"}),
    )
    .expect_err(403, "M_FORBIDDEN");
    alice
        .post(
            &format!("/_matrix/client/v3/rooms/{r}/ban"),
            &json!({"user_id": bob_id}),
        )
        .expect(200);
    alice
        .post(
            &format!("/_matrix/client/v3/rooms/{r}/invite"),
            &json!({"user_id": bob_id}),
        )
        .expect_err(403, "M_FORBIDDEN");
    // A former member still sees history up to their departure.
    let seen = messages(&bob, &room, "dir=b&limit=50");
    assert!(bodies(&seen).contains(&"hi from bob".to_owned()));
    let joined = bob.get("/_matrix/client/v3/joined_rooms").expect(200);
    assert!(!joined["joined_rooms"]
        .as_array()
        .expect("list")
        .iter()
        .any(|x| x == room.as_str()));
    bob.post(&format!("/_matrix/client/v3/rooms/{r}/forget"), &json!({}))
        .expect(200);
    alice
        .post(
            &format!("/_matrix/client/v3/rooms/{r}/unban"),
            &json!({"user_id": bob_id}),
        )
        .expect(200);
}

#[test]
fn public_rooms_aliases_and_leave() {
    let (alice, _) = new_user("alice");
    let (bob, _) = new_user("bob");
    let local = unique("lobby");
    let room = create_room(
        &alice,
        json!({"visibility": "public", "room_alias_name": local, "name": "Public"}),
    );
    let alias = format!("#{local}:{}", shared().server_name);
    let resolved = bob
        .get(&format!("/_matrix/client/v3/directory/room/{}", enc(&alias)))
        .expect(200);
    assert_eq!(resolved["room_id"], room.as_str());
    alice
        .post(
            "/_matrix/client/v3/createRoom",
            &json!({"room_alias_name": local}),
        )
        .expect_err(400, "M_ROOM_IN_USE");
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&alias)), &json!({}))
        .expect(200);
    let list = bob.get("/_matrix/client/v3/publicRooms?limit=100").expect(200);
    let entry = list["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .find(|e| e["room_id"] == room.as_str())
        .cloned()
        .expect("listed");
    assert_eq!(entry["name"], "Public");
    assert_eq!(entry["num_joined_members"], 2);
    bob.post(
        &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
        &json!({}),
    )
    .expect(200);
    bob.put(
        &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/x", enc(&room)),
        &json!({"body": "gone"}),
    )
    .expect_err(403, "M_FORBIDDEN");
}

#[test]
fn state_permissions_and_unknown_rooms() {
    let (alice, _) = new_user("alice");
    let (bob, _) = new_user("bob");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    let r = enc(&room);
    bob.post(&format!("/_matrix/client/v3/rooms/{r}/join"), &json!({}))
        .expect(200);
    // state_default is 50: bob cannot set the topic, alice can.
    bob.put(
        &format!("/_matrix/client/v3/rooms/{r}/state/m.room.topic/"),
        &json!({"topic": "bob"}),
    )
    .expect_err(403, "M_FORBIDDEN");
    alice
        .put(
            &format!("/_matrix/client/v3/rooms/{r}/state/m.room.topic"),
            &json!({"topic": "alice"}),
        )
        .expect(200);
    let topic = bob
        .get(&format!("/_matrix/client/v3/rooms/{r}/state/m.room.topic"))
        .expect(200);
    assert_eq!(topic, json!({"topic": "alice"}));
    bob.get(&format!("/_matrix/client/v3/rooms/{r}/state/m.room.nothing"))
        .expect_err(404, "M_NOT_FOUND");
    // Content must be an object.
    alice
        .put(
            &format!("/_matrix/client/v3/rooms/{r}/state/m.room.topic"),
            &json!(["x"]),
        )
        .expect_err(400, "M_BAD_JSON");
    // Unknown and malformed rooms.
    alice
        .get("/_matrix/client/v3/rooms/%21nope%3Ahs/messages")
        .expect_err(404, "M_NOT_FOUND");
    alice
        .get("/_matrix/client/v3/rooms/nope/state")
        .expect_err(400, "M_INVALID_PARAM");
    // Redaction by the sender.
    let ev = send_text(&bob, &room, "r1", "oops");
    bob.put(
        &format!("/_matrix/client/v3/rooms/{r}/redact/{}/red1", enc(&ev)),
        &json!({"reason": "typo"}),
    )
    .expect(200);
    let redacted = bob
        .get(&format!("/_matrix/client/v3/rooms/{r}/event/{}", enc(&ev)))
        .expect(200);
    assert_eq!(redacted["content"], json!({}), "{redacted}");
    assert!(redacted["unsigned"]["redacted_because"].is_object());
}

#[test]
fn one_user_creating_rooms_at_once_gets_distinct_rooms() {
    // Identical v12 create events would name the same room; each request must get its own.
    let (alice, _) = new_user("alice");
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let alice = alice.clone();
            std::thread::spawn(move || {
                alice
                    .post("/_matrix/client/v3/createRoom", &json!({}))
                    .expect(200)["room_id"]
                    .as_str()
                    .expect("room_id")
                    .to_owned()
            })
        })
        .collect();
    let ids: std::collections::HashSet<String> =
        handles.into_iter().map(|h| h.join().expect("create")).collect();
    assert_eq!(ids.len(), 6);
}
