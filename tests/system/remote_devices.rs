//! Other servers' users' device keys are kept: `/keys/query` asks a remote user's server
//! once while they share a room with a local user, answers from what it kept until the
//! server says the user's devices changed (`m.device_list_update`), and keeps nothing
//! for users it shares no room with.

use serde_json::{json, Value};

use crate::harness::{create_room, new_user, shared, unique};
use crate::remote::Remote;

fn device(user: &str, id: &str) -> Value {
    json!({
        "user_id": user, "device_id": id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {format!("curve25519:{id}"): format!("curve-{id}"), format!("ed25519:{id}"): format!("ed-{id}")},
        "signatures": {},
    })
}

fn queries(remote: &Remote) -> usize {
    remote
        .seen()
        .iter()
        .filter(|s| s.target.starts_with("/_matrix/federation/v1/user/keys/query"))
        .count()
}

fn devices_of(answer: &Value, user: &str) -> Vec<String> {
    let mut ids: Vec<String> = answer["device_keys"][user]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    ids.sort();
    ids
}

#[test]
fn remote_device_keys_are_kept_until_their_server_says_they_changed() {
    let server = shared();
    let (alice, _) = new_user("devkeeper");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    let remote = Remote::start(89);
    let (friend, stranger) = (remote.user("friend"), remote.user("stranger"));
    crate::federation_joins::remote_joins(&remote, &room, &friend);
    let answer_with = |devices: &[&str]| {
        let by_id: serde_json::Map<String, Value> = devices
            .iter()
            .map(|d| ((*d).to_owned(), device(&friend, d)))
            .collect();
        json!({
            "device_keys": {friend.clone(): by_id, stranger.clone(): {"S1": device(&stranger, "S1")}},
        })
    };
    remote.answer(
        "POST",
        "/_matrix/federation/v1/user/keys/query",
        200,
        answer_with(&["F1"]),
    );
    let query = |body: Value| alice.post("/_matrix/client/v3/keys/query", &body).expect(200);
    let both = json!({"device_keys": {friend.clone(): [], stranger.clone(): []}});

    let first = query(both.clone());
    assert_eq!(devices_of(&first, &friend), ["F1"], "{first}");
    assert_eq!(devices_of(&first, &stranger), ["S1"], "{first}");
    assert_eq!(queries(&remote), 1);

    // The joined user is soon answered from what was kept (once the memberships
    // projection has the join, which trails the room by moments); the stranger is
    // asked again each time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let asked = loop {
        let before = queries(&remote);
        let only_friend = query(json!({"device_keys": {friend.clone(): []}}));
        assert_eq!(devices_of(&only_friend, &friend), ["F1"]);
        if queries(&remote) == before {
            break before;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the friend's keys are never kept"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    query(json!({"device_keys": {stranger.clone(): []}}));
    assert_eq!(queries(&remote), asked + 1, "nothing kept for a stranger");
    // A device asked for by id comes from the kept list too; an unknown one is absent.
    let by_id = query(json!({"device_keys": {friend.clone(): ["F1", "NOPE"]}}));
    assert_eq!(devices_of(&by_id, &friend), ["F1"]);
    assert_eq!(queries(&remote), asked + 1);

    // The friend adds a device: the update empties what was kept.
    remote.answer(
        "POST",
        "/_matrix/federation/v1/user/keys/query",
        200,
        answer_with(&["F1", "F2"]),
    );
    let edu = json!({
        "edu_type": "m.device_list_update",
        "content": {"user_id": friend, "device_id": "F2", "stream_id": 2, "prev_id": [1], "keys": device(&friend, "F2")},
    });
    let txn = json!({"origin": remote.name, "origin_server_ts": 0, "pdus": [], "edus": [edu]});
    remote
        .request(
            server,
            "PUT",
            &format!("/_matrix/federation/v1/send/{}", unique("txn")),
            Some(&txn),
        )
        .expect(200);
    let after = query(json!({"device_keys": {friend.clone(): []}}));
    assert_eq!(devices_of(&after, &friend), ["F1", "F2"], "{after}");
    assert_eq!(queries(&remote), asked + 2);
    query(json!({"device_keys": {friend.clone(): []}}));
    assert_eq!(queries(&remote), asked + 2, "kept again");
}
