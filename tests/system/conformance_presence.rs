//! Client API details against the real worker: presence of room mates who never set
//! one, receipts that only move forward, and the legacy shape of a room's initialSync.

use serde_json::{json, Value};

use crate::harness::{create_room, enc, new_user, send_text, Client};

/// A sync that does not mark the user online.
fn quiet_sync(c: &Client, since: Option<&str>) -> Value {
    let since = since.map(|s| format!("&since={s}")).unwrap_or_default();
    c.get(&format!(
        "/_matrix/client/v3/sync?timeout=0&set_presence=offline{since}"
    ))
    .expect(200)
}

fn next(body: &Value) -> String {
    body["next_batch"].as_str().expect("next_batch").to_owned()
}

fn presence_of<'a>(body: &'a Value, user: &str) -> Vec<&'a Value> {
    body["presence"]["events"]
        .as_array()
        .map(|l| l.iter().filter(|e| e["sender"] == user).collect())
        .unwrap_or_default()
}

#[test]
fn new_room_mates_who_never_set_a_presence_are_told_offline_both_ways() {
    let (alice, alice_id) = new_user("pra");
    let (bob, bob_id) = new_user("prb");
    // Neither ever marks themselves online.
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    let a0 = next(&quiet_sync(&alice, None));
    let b0 = next(&quiet_sync(&bob, None));
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), &json!({}))
        .expect(200);
    // Bob's next sync has the room and Alice's presence: offline.
    let mut body = quiet_sync(&bob, Some(&b0));
    for _ in 0..20 {
        if !presence_of(&body, &alice_id).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        body = quiet_sync(&bob, Some(&b0));
    }
    let got = presence_of(&body, &alice_id);
    assert_eq!(got.len(), 1, "{body}");
    assert_eq!(got[0]["content"]["presence"], "offline");
    // And Alice is told of Bob, once.
    let mut body = quiet_sync(&alice, Some(&a0));
    for _ in 0..20 {
        if !presence_of(&body, &bob_id).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        body = quiet_sync(&alice, Some(&a0));
    }
    let got = presence_of(&body, &bob_id);
    assert_eq!(got.len(), 1, "{body}");
    assert_eq!(got[0]["content"]["presence"], "offline");
    let again = quiet_sync(&alice, Some(&next(&body)));
    assert!(presence_of(&again, &bob_id).is_empty(), "{again}");
    // When Bob does go online, Alice hears it.
    bob.put(
        &format!("/_matrix/client/v3/presence/{}/status", enc(&bob_id)),
        &json!({"presence": "online"}),
    )
    .expect(200);
    let mut body = quiet_sync(&alice, Some(&next(&body)));
    for _ in 0..30 {
        if !presence_of(&body, &bob_id).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        body = quiet_sync(&alice, Some(&next(&again)));
    }
    assert_eq!(presence_of(&body, &bob_id)[0]["content"]["presence"], "online");
}

#[test]
fn a_read_receipt_never_moves_back() {
    let (alice, alice_id) = new_user("rca");
    let room = create_room(&alice, json!({}));
    let first = send_text(&alice, &room, "t1", "one");
    let second = send_text(&alice, &room, "t2", "two");
    let receipt = |event: &str| {
        alice
            .post(
                &format!(
                    "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
                    enc(&room),
                    enc(event)
                ),
                &json!({}),
            )
            .expect(200);
    };
    let read_at = || {
        let body = quiet_sync(&alice, None);
        body["rooms"]["join"][&room]["ephemeral"]["events"]
            .as_array()
            .expect("ephemeral")
            .iter()
            .filter(|e| e["type"] == "m.receipt")
            .flat_map(|e| e["content"].as_object().cloned().unwrap_or_default())
            .find(|(_, v)| v["m.read"].get(&alice_id).is_some())
            .map(|(k, _)| k)
    };
    receipt(&second);
    assert_eq!(read_at().as_deref(), Some(second.as_str()));
    // An older event is accepted and changes nothing.
    receipt(&first);
    assert_eq!(read_at().as_deref(), Some(second.as_str()));
}

#[test]
fn a_rooms_initial_sync_has_legacy_fields_and_every_members_presence() {
    let (alice, alice_id) = new_user("lia");
    let (bob, bob_id) = new_user("lib");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), &json!({}))
        .expect(200);
    send_text(&alice, &room, "l1", "hello");
    let body = bob
        .get(&format!("/_matrix/client/v3/rooms/{}/initialSync", enc(&room)))
        .expect(200);
    // Events carry their sender also as `user_id`, as old clients read them.
    let state = body["state"].as_array().expect("state");
    let mine = state
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["user_id"] == bob_id.as_str())
        .expect("own membership keyed by user_id");
    assert_eq!(mine["content"]["membership"], "join");
    let chunk = body["messages"]["chunk"].as_array().expect("chunk");
    assert!(chunk.iter().all(|e| e["user_id"] == e["sender"]), "{body}");
    // Alice never set a presence: offline, listed all the same.
    let presence = body["presence"].as_array().expect("presence");
    let hers = presence
        .iter()
        .find(|p| p["content"]["user_id"] == alice_id.as_str())
        .expect("alice's presence");
    assert_eq!(hers["content"]["presence"], "offline");
    assert_eq!(body["receipts"], json!([]));
}
