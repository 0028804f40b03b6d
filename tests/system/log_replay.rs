//! Queue semantics: the `room-log` consumers (D1 projections, the sync fan-out into the
//! User Durable Objects) tolerate redelivery, reordering and duplicates. A room's log
//! records are published again through the admin replay endpoint — twice, in reverse
//! order, in messages of several sizes, with an unreadable message among them — and
//! nothing any user sees changes.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{create_room, enc, new_user, send_text, shared, unique, Client};

const UNREADABLE: &str = "room-log: unreadable message";

fn unreadable_logged() -> usize {
    let log = std::fs::read_to_string(shared().state_dir.join("server.log")).unwrap_or_default();
    log.matches(UNREADABLE).count()
}

/// Replays the room's records as `body` says, with an unreadable message last, and
/// waits until the consumer has logged it (so it handled every message before it).
fn replay(admin: &Client, room: &str, mut body: Value) -> Value {
    let before = unreadable_logged();
    body["unreadable"] = json!(true);
    let answer = admin
        .post(
            &format!("/_neurite/admin/v1/rooms/{}/log/replay", enc(room)),
            &body,
        )
        .expect(200);
    let deadline = Instant::now() + Duration::from_secs(60);
    while unreadable_logged() <= before {
        assert!(
            Instant::now() < deadline,
            "the consumer never reached the replay's end"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    answer
}

fn sync(c: &Client, since: Option<&str>) -> Value {
    let since = since.map(|s| format!("&since={s}")).unwrap_or_default();
    c.get(&format!(
        "/_matrix/client/v3/sync?set_presence=offline&timeout=0{since}&filter={}",
        enc(r#"{"room":{"timeline":{"limit":50}}}"#)
    ))
    .expect(200)
}

fn timeline_ids(body: &Value, section: &str, room: &str) -> Vec<String> {
    body["rooms"][section][room]["timeline"]["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn joined_rooms(c: &Client) -> Vec<String> {
    serde_json::from_value(c.get("/_matrix/client/v3/joined_rooms").expect(200)["joined_rooms"].clone())
        .expect("joined_rooms")
}

fn joined_members(c: &Client, room: &str) -> Vec<String> {
    let mut members: Vec<String> = c
        .get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(room)))
        .expect(200)["joined"]
        .as_object()
        .expect("joined")
        .keys()
        .cloned()
        .collect();
    members.sort();
    members
}

#[test]
fn replayed_log_records_reordered_and_duplicated_change_nothing() {
    let (admin, _) = shared().register_admin(&unique("replayadmin"), "admin password");
    let (alice, alice_id) = new_user("replaya");
    let (bob, _) = new_user("replayb");
    let (carol, carol_id) = new_user("replayc");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    for c in [&bob, &carol] {
        c.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), &json!({}))
            .expect(200);
    }
    for i in 0..3 {
        send_text(&alice, &room, &format!("a{i}"), &format!("alice {i}"));
    }
    send_text(&bob, &room, "b0", "bob 0");
    alice
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.topic/", enc(&room)),
            &json!({"topic": "replayed"}),
        )
        .expect(200);
    bob.post(
        &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
        &json!({}),
    )
    .expect(200);
    send_text(&alice, &room, "a3", "alice 3");

    let carol_first = sync(&carol, None);
    let carol_timeline = timeline_ids(&carol_first, "join", &room);
    assert!(
        carol_timeline.len() >= 7,
        "carol sees the room: {carol_timeline:?}"
    );
    let bob_first = sync(&bob, None);
    assert!(bob_first["rooms"]["join"].get(&room).is_none(), "bob left");
    let members = joined_members(&alice, &room);
    assert_eq!(members, {
        let mut m = vec![alice_id.clone(), carol_id.clone()];
        m.sort();
        m
    });

    // Every record twice, newest first, one per message; then in threes, in order.
    let answer = replay(&admin, &room, json!({"reverse": true, "times": 2}));
    let records = answer["records"].as_u64().expect("records");
    assert!(records >= 10, "the room kept its records: {answer}");
    assert_eq!(answer["messages"].as_u64(), Some(2 * records + 1));
    replay(&admin, &room, json!({"per_message": 3}));
    // Only the latest records, reversed, in pairs.
    replay(
        &admin,
        &room,
        json!({"from": 5, "per_message": 2, "reverse": true}),
    );

    // Nothing moved for anyone.
    let carol_next = sync(&carol, carol_first["next_batch"].as_str());
    assert!(
        carol_next["rooms"]["join"].get(&room).is_none(),
        "a replay is not news: {}",
        carol_next["rooms"]
    );
    let bob_next = sync(&bob, bob_first["next_batch"].as_str());
    for section in ["join", "leave", "invite"] {
        assert!(
            bob_next["rooms"][section].get(&room).is_none(),
            "bob's stream unchanged ({section}): {}",
            bob_next["rooms"]
        );
    }
    assert!(!joined_rooms(&bob).contains(&room), "bob's projection stays left");
    assert!(joined_rooms(&carol).contains(&room));
    assert_eq!(joined_members(&alice, &room), members);
    let carol_again = sync(&carol, None);
    assert_eq!(
        timeline_ids(&carol_again, "join", &room),
        carol_timeline,
        "no duplicates"
    );
    assert!(sync(&bob, None)["rooms"]["join"].get(&room).is_none());

    // The room goes on as before: the next event reaches carol exactly once.
    let next = send_text(&alice, &room, "a4", "alice 4");
    let carol_last = sync(&carol, carol_next["next_batch"].as_str());
    assert_eq!(timeline_ids(&carol_last, "join", &room), vec![next]);
    assert_eq!(
        carol_last["rooms"]["join"][&room]["timeline"]["limited"],
        json!(false)
    );
}

#[test]
fn log_replay_is_for_admins_and_checks_its_bounds() {
    let (alice, _) = new_user("replaynon");
    let room = create_room(&alice, json!({}));
    let path = format!("/_neurite/admin/v1/rooms/{}/log/replay", enc(&room));
    alice.post(&path, &json!({})).expect_err(403, "M_FORBIDDEN");
    let (admin, _) = shared().register_admin(&unique("replayadm2"), "admin password");
    admin
        .post(&path, &json!({"times": 9}))
        .expect_err(400, "M_INVALID_PARAM");
    admin
        .post(&path, &json!({"limit": 5000}))
        .expect_err(400, "M_INVALID_PARAM");
    admin
        .post("/_neurite/admin/v1/rooms/not-a-room/log/replay", &json!({}))
        .expect_err(400, "M_INVALID_PARAM");
}
