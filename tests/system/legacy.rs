//! The legacy endpoints against the real worker: `/initialSync`, a room's
//! `/initialSync` (members and peekers of world-readable rooms), the `/events` stream
//! (long-polling, peeking) and `/events/{eventId}`.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{create_room, enc, new_user, send_text, Client};

fn join(c: &Client, room: &str) {
    c.post(
        &format!("/_matrix/client/v3/rooms/{}/join", enc(room)),
        &json!({}),
    )
    .expect(200);
}

fn world_readable_room(c: &Client) -> String {
    create_room(
        c,
        json!({
            "preset": "public_chat",
            "initial_state": [{
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": "world_readable"},
            }],
        }),
    )
}

/// The room entry of a global initialSync.
fn room_of<'a>(body: &'a Value, room: &str) -> Option<&'a Value> {
    body["rooms"]
        .as_array()
        .expect("rooms is a list")
        .iter()
        .find(|r| r["room_id"] == room)
}

fn ids(events: &Value) -> Vec<String> {
    events
        .as_array()
        .expect("a list of events")
        .iter()
        .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
        .collect()
}

fn bodies(events: &Value) -> Vec<String> {
    events
        .as_array()
        .expect("a list of events")
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

fn has_state(state: &Value, kind: &str) -> bool {
    state
        .as_array()
        .expect("state is a list")
        .iter()
        .any(|e| e["type"] == kind)
}

#[test]
fn initial_sync_shows_rooms_with_messages_and_current_state() {
    let (alice, alice_id) = new_user("alice");
    let room = create_room(&alice, json!({"preset": "private_chat", "name": "Before"}));
    let first = send_text(&alice, &room, "t1", "hello");
    // A state change in the timeline: the state answered is the room's current one.
    alice
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", enc(&room)),
            &json!({"name": "After"}),
        )
        .expect(200);
    alice
        .put(
            &format!(
                "/_matrix/client/v3/user/{}/rooms/{}/account_data/m.tag",
                enc(&alice_id),
                enc(&room)
            ),
            &json!({"tags": {"u.work": {}}}),
        )
        .expect(200);

    let body = alice.get("/_matrix/client/v3/initialSync?limit=5").expect(200);
    let end = body["end"].as_str().expect("end");
    assert!(end.starts_with('s'), "end is a sync token: {end}");
    let info = room_of(&body, &room).expect("the room is listed");
    assert_eq!(info["membership"], "join");
    assert_eq!(info["visibility"], "private");
    let chunk = &info["messages"]["chunk"];
    assert!(ids(chunk).contains(&first), "{chunk}");
    assert!(chunk
        .as_array()
        .is_some_and(|c| c.iter().all(|e| e["room_id"] == room)));
    assert!(chunk.as_array().is_some_and(|c| c.len() <= 5));
    assert!(info["messages"]["start"].is_string() && info["messages"]["end"].is_string());
    let state = &info["state"];
    assert!(has_state(state, "m.room.create") && has_state(state, "m.room.power_levels"));
    let names: Vec<&Value> = state
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "m.room.name")
        .collect();
    assert_eq!(names.len(), 1, "one event per state key: {state}");
    assert_eq!(names[0]["content"]["name"], "After");
    let own = state
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == alice_id.as_str())
        .expect("own member event");
    assert_eq!(own["content"]["membership"], "join");
    assert!(info["account_data"]
        .as_array()
        .is_some_and(|a| a.iter().any(|e| e["type"] == "m.tag")));
    assert!(body["presence"].is_array() && body["account_data"].is_array());

    // The start token pages back with /messages.
    let start = info["messages"]["start"].as_str().expect("start");
    let page = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&from={start}&limit=50",
            enc(&room)
        ))
        .expect(200);
    assert!(has_state(&page["chunk"], "m.room.create"), "older events: {page}");

    // r0 answers the same.
    let r0 = alice.get("/_matrix/client/r0/initialSync?limit=1").expect(200);
    assert!(room_of(&r0, &room).is_some());
}

#[test]
fn initial_sync_limit_archived_and_invites() {
    let (alice, alice_id) = new_user("alice");
    let (bob, _) = new_user("bob");
    let room = create_room(&alice, json!({"preset": "private_chat"}));
    for i in 0..4 {
        send_text(&alice, &room, &format!("m{i}"), &format!("m{i}"));
    }
    let body = alice.get("/_matrix/client/v3/initialSync?limit=2").expect(200);
    let info = room_of(&body, &room).expect("room");
    assert_eq!(
        bodies(&info["messages"]["chunk"]),
        ["m2", "m3"],
        "newest two, oldest first"
    );

    let zero = alice.get("/_matrix/client/v3/initialSync?limit=0").expect(200);
    assert_eq!(
        room_of(&zero, &room).expect("room")["messages"]["chunk"],
        json!([])
    );

    // A room left: only with archived=true, as a leave.
    let gone = create_room(&alice, json!({"preset": "private_chat"}));
    send_text(&alice, &gone, "g1", "before leaving");
    alice
        .post(
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&gone)),
            &json!({}),
        )
        .expect(200);
    let body = alice.get("/_matrix/client/v3/initialSync").expect(200);
    assert!(room_of(&body, &gone).is_none(), "left rooms need archived=true");
    let body = alice
        .get("/_matrix/client/v3/initialSync?archived=true")
        .expect(200);
    let left = room_of(&body, &gone).expect("left room listed when archived");
    assert_eq!(left["membership"], "leave");
    assert!(bodies(&left["messages"]["chunk"]).contains(&"before leaving".to_owned()));
    // The same rooms as an initial /sync whose filter includes left rooms.
    let filter = enc(r#"{"room":{"include_leave":true}}"#);
    let sync = alice
        .get(&format!(
            "/_matrix/client/v3/sync?filter={filter}&set_presence=offline"
        ))
        .expect(200);
    assert!(
        sync["rooms"]["leave"][&gone]["timeline"]["events"].is_array(),
        "{sync}"
    );

    // An invite.
    let invited = create_room(&bob, json!({"preset": "private_chat"}));
    bob.post(
        &format!("/_matrix/client/v3/rooms/{}/invite", enc(&invited)),
        &json!({"user_id": alice_id}),
    )
    .expect(200);
    let body = alice.get("/_matrix/client/v3/initialSync").expect(200);
    let inv = room_of(&body, &invited).expect("invite listed");
    assert_eq!(inv["membership"], "invite");
    assert_eq!(inv["invite"]["content"]["membership"], "invite");
    assert_eq!(inv["invite"]["state_key"], alice_id.as_str());

    alice
        .get("/_matrix/client/v3/initialSync?limit=many")
        .expect_err(400, "M_INVALID_PARAM");
    alice
        .get("/_matrix/client/v3/initialSync?archived=yes")
        .expect_err(400, "M_INVALID_PARAM");
}

#[test]
fn events_stream_continues_from_initial_sync_and_long_polls() {
    let (alice, _) = new_user("alice");
    let (bob, _) = new_user("bob");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    join(&bob, &room);
    let body = alice.get("/_matrix/client/v3/initialSync?limit=1").expect(200);
    let end = body["end"].as_str().expect("end").to_owned();

    // Sent before the poll: answered at once.
    let early = send_text(&bob, &room, "e1", "early");
    let got = alice
        .get(&format!("/_matrix/client/v3/events?from={end}&timeout=10000"))
        .expect(200);
    assert_eq!(got["start"], end.as_str());
    let chunk = &got["chunk"];
    assert!(ids(chunk).contains(&early), "{got}");
    let event = chunk
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["event_id"] == early.as_str())
        .expect("the event");
    assert_eq!(event["room_id"], room.as_str());
    assert_eq!(event["content"]["body"], "early");
    let next = got["end"].as_str().expect("end").to_owned();
    assert_ne!(next, end);

    // Nothing new: the poll waits out its timeout and keeps the position.
    let t = Instant::now();
    let idle = alice
        .get(&format!("/_matrix/client/v3/events?from={next}&timeout=1000"))
        .expect(200);
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "waited {:?}",
        t.elapsed()
    );
    assert!(ids(&idle["chunk"]).is_empty(), "{idle}");
    let next = idle["end"].as_str().expect("end").to_owned();

    // Sent while the poll waits: it wakes.
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(1000));
        send_text(&bob, &room, "e2", "late")
    });
    let t = Instant::now();
    let got = alice
        .get(&format!("/_matrix/client/v3/events?from={next}&timeout=30000"))
        .expect(200);
    let late = sender.join().expect("sender");
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "woke late: {:?}",
        t.elapsed()
    );
    assert!(ids(&got["chunk"]).contains(&late), "{got}");
    assert!(!ids(&got["chunk"]).contains(&early), "no repeats: {got}");
}

#[test]
fn events_without_from_start_now() {
    let (alice, alice_id) = new_user("alice");
    let room = create_room(&alice, json!({"preset": "private_chat"}));
    let old = send_text(&alice, &room, "o1", "old");
    let got = alice.get("/_matrix/client/v3/events?timeout=0").expect(200);
    assert!(
        !ids(&got["chunk"]).contains(&old),
        "history is not the stream: {got}"
    );
    let end = got["end"].as_str().expect("end").to_owned();
    let new = send_text(&alice, &room, "n1", "new");
    let got = alice
        .get(&format!("/_matrix/client/r0/events?from={end}&timeout=10000"))
        .expect(200);
    assert!(ids(&got["chunk"]).contains(&new), "{got}");

    // An invite reaches the stream as the user's member event.
    let end = got["end"].as_str().expect("end").to_owned();
    let (bob, _) = new_user("bob");
    let invited = create_room(&bob, json!({"preset": "private_chat"}));
    bob.post(
        &format!("/_matrix/client/v3/rooms/{}/invite", enc(&invited)),
        &json!({"user_id": alice_id}),
    )
    .expect(200);
    let got = alice
        .get(&format!("/_matrix/client/v3/events?from={end}&timeout=10000"))
        .expect(200);
    let invite = got["chunk"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["room_id"] == invited.as_str())
        .expect("the invite");
    assert_eq!(
        (
            &invite["type"],
            &invite["state_key"],
            &invite["content"]["membership"]
        ),
        (&json!("m.room.member"), &json!(alice_id), &json!("invite"))
    );

    alice
        .get("/_matrix/client/v3/events?from=nonsense")
        .expect_err(400, "M_INVALID_PARAM");
    alice
        .get("/_matrix/client/v3/events?timeout=soon")
        .expect_err(400, "M_INVALID_PARAM");
    alice
        .get("/_matrix/client/v3/events?room_id=not-a-room")
        .expect_err(400, "M_INVALID_PARAM");
}

#[test]
fn room_initial_sync_for_members_and_world_readable_peekers() {
    let (alice, _) = new_user("alice");
    let (bob, _) = new_user("bob");
    let room = create_room(&alice, json!({"preset": "public_chat", "name": "Lobby"}));
    let first = send_text(&alice, &room, "r1", "for members");
    let path = format!("/_matrix/client/v3/rooms/{}/initialSync", enc(&room));

    let body = alice.get(&path).expect(200);
    assert_eq!(body["room_id"], room.as_str());
    assert_eq!(body["membership"], "join");
    assert!(ids(&body["messages"]["chunk"]).contains(&first), "{body}");
    assert!(has_state(&body["state"], "m.room.create") && has_state(&body["state"], "m.room.name"));
    assert!(body["messages"]["start"].is_string() && body["messages"]["end"].is_string());
    assert_eq!(body["visibility"], "private");
    assert!(body["account_data"].is_array());
    // Oldest first.
    let chunk = body["messages"]["chunk"].as_array().expect("chunk");
    assert_eq!(chunk.last().map(|e| &e["event_id"]), Some(&json!(first)));

    // Not a member, not world-readable: refused, though the room is public to join.
    bob.get(&path).expect_err(403, "M_FORBIDDEN");
    // A room nobody knows is refused the same way.
    bob.get("/_matrix/client/v3/rooms/!nope:localhost/initialSync")
        .expect_err(403, "M_FORBIDDEN");
    bob.get("/_matrix/client/v3/rooms/nope/initialSync")
        .expect_err(400, "M_INVALID_PARAM");

    // World-readable: a peeker sees it, without a membership.
    let open = world_readable_room(&alice);
    let said = send_text(&alice, &open, "w1", "for everyone");
    let body = bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/initialSync?limit=3",
            enc(&open)
        ))
        .expect(200);
    assert!(body.get("membership").is_none(), "{body}");
    assert!(ids(&body["messages"]["chunk"]).contains(&said), "{body}");
    assert!(has_state(&body["state"], "m.room.history_visibility"));
    assert_eq!(body["visibility"], "private");
    assert!(body["messages"]["chunk"].as_array().is_some_and(|c| c.len() <= 3));

    // Listed in the directory: visibility public.
    alice
        .put(
            &format!("/_matrix/client/v3/directory/list/room/{}", enc(&open)),
            &json!({"visibility": "public"}),
        )
        .expect(200);
    let body = alice
        .get(&format!("/_matrix/client/v3/rooms/{}/initialSync", enc(&open)))
        .expect(200);
    assert_eq!(body["visibility"], "public");
}

#[test]
fn events_peek_a_world_readable_room() {
    let (alice, _) = new_user("alice");
    let (bob, _) = new_user("bob");
    let open = world_readable_room(&alice);
    send_text(&alice, &open, "p0", "already there");
    let init = bob
        .get(&format!("/_matrix/client/v3/rooms/{}/initialSync", enc(&open)))
        .expect(200);
    let end = init["messages"]["end"].as_str().expect("end").to_owned();

    let room = open.clone();
    let poster = alice.clone();
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(1000));
        send_text(&poster, &room, "p1", "peek at this")
    });
    let t = Instant::now();
    let got = bob
        .get(&format!(
            "/_matrix/client/v3/events?room_id={}&from={end}&timeout=20000",
            enc(&open)
        ))
        .expect(200);
    let sent = sender.join().expect("sender");
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "woke late: {:?}",
        t.elapsed()
    );
    assert_eq!(ids(&got["chunk"]), vec![sent], "only the new event: {got}");
    assert_eq!(got["chunk"][0]["room_id"], open.as_str());
    assert_eq!(got["start"], end.as_str());
    let next = got["end"].as_str().expect("end").to_owned();

    // Nothing new: an empty answer after the timeout, at the same position.
    let idle = bob
        .get(&format!(
            "/_matrix/client/v3/events?room_id={}&from={next}&timeout=500",
            enc(&open)
        ))
        .expect(200);
    assert_eq!(idle["chunk"], json!([]));
    assert_eq!(idle["end"], next.as_str());

    // Without from: from now on.
    let now = bob
        .get(&format!(
            "/_matrix/client/v3/events?room_id={}&timeout=0",
            enc(&open)
        ))
        .expect(200);
    assert_eq!(now["chunk"], json!([]));

    // A room that is not world-readable is refused to a non-member.
    let closed = create_room(&alice, json!({"preset": "public_chat"}));
    bob.get(&format!(
        "/_matrix/client/v3/events?room_id={}&timeout=0",
        enc(&closed)
    ))
    .expect_err(403, "M_FORBIDDEN");
    bob.get(&format!(
        "/_matrix/client/v3/events?room_id={}&from=garbage",
        enc(&open)
    ))
    .expect_err(400, "M_INVALID_PARAM");
}

#[test]
fn events_by_id_for_rooms_the_user_is_in() {
    let (alice, _) = new_user("alice");
    let (bob, _) = new_user("bob");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    let other = create_room(&alice, json!({"preset": "private_chat"}));
    send_text(&alice, &other, "x", "elsewhere");
    let event = send_text(&alice, &room, "a1", "find me");
    let path = format!("/_matrix/client/v3/events/{}", enc(&event));

    let got = alice.get(&path).expect(200);
    assert_eq!(got["event_id"], event.as_str());
    assert_eq!(got["room_id"], room.as_str());
    assert_eq!(got["content"]["body"], "find me");

    bob.get(&path).expect_err(404, "M_NOT_FOUND");
    join(&bob, &room);
    let got = bob
        .get(&format!("/_matrix/client/r0/events/{}", enc(&event)))
        .expect(200);
    assert_eq!(got["content"]["body"], "find me");

    alice
        .get(&format!("/_matrix/client/v3/events/{}", enc("$unknownevent")))
        .expect_err(404, "M_NOT_FOUND");
    alice
        .get("/_matrix/client/v3/events/not-an-event-id")
        .expect_err(400, "M_INVALID_PARAM");
}

#[test]
fn initial_syncs_carry_receipts_presence_and_the_visibility_change() {
    let (alice, alice_id) = new_user("lgal");
    let (bob, _) = new_user("lgbo");
    // Alice's presence is known once she syncs.
    alice.get("/_matrix/client/v3/sync?timeout=0").expect(200);
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    let before = send_text(&alice, &room, "p1", "private");
    alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.history_visibility/",
                enc(&room)
            ),
            &json!({"history_visibility": "world_readable"}),
        )
        .expect(200);
    send_text(&alice, &room, "p2", "public");
    // A non-member sees the change to world-readable and what follows, not before.
    let peek = bob
        .get(&format!("/_matrix/client/v3/rooms/{}/initialSync", enc(&room)))
        .expect(200);
    let chunk = peek["messages"]["chunk"].as_array().expect("chunk");
    let kinds: Vec<&str> = chunk.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        kinds,
        vec!["m.room.history_visibility", "m.room.message"],
        "{peek}"
    );
    assert!(chunk.iter().all(|e| e["event_id"] != json!(before)));
    // Presence in a room's initialSync names its user in the content too.
    join(&bob, &room);
    let body = bob
        .get(&format!("/_matrix/client/v3/rooms/{}/initialSync", enc(&room)))
        .expect(200);
    let alice_presence = body["presence"]
        .as_array()
        .expect("presence")
        .iter()
        .find(|e| e["content"]["user_id"] == json!(alice_id))
        .cloned();
    assert!(alice_presence.is_some(), "{body}");
    // Read receipts are in the global initialSync.
    alice
        .post(
            &format!(
                "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
                enc(&room),
                enc(&before)
            ),
            &json!({}),
        )
        .expect(200);
    let global = alice.get("/_matrix/client/v3/initialSync").expect(200);
    let receipts = global["receipts"].as_array().expect("receipts");
    assert!(
        receipts
            .iter()
            .any(|r| r["room_id"] == json!(room) && r["content"][&before]["m.read"][&alice_id].is_object()),
        "{global}"
    );
}
