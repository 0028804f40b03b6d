//! The user directory against the real worker: users sharing a room and users in
//! public or world-readable rooms are found (by id or display name, whatever the
//! case), others are not unless the server searches every local user
//! (`USER_DIRECTORY_SEARCH_ALL_USERS`); `limited`; bad input refused.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{create_room, enc, new_user, shared, unique, Client, Options, Server};

fn search(c: &Client, term: &str, limit: Option<u64>) -> Value {
    let mut body = json!({ "search_term": term });
    if let Some(l) = limit {
        body["limit"] = json!(l);
    }
    c.post("/_matrix/client/v3/user_directory/search", &body)
        .expect(200)
}

fn found(c: &Client, term: &str) -> Vec<String> {
    search(c, term, None)["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["user_id"].as_str().map(str::to_owned))
        .collect()
}

fn set_name(c: &Client, user: &str, name: &str) {
    c.put(
        &format!("/_matrix/client/v3/profile/{}/displayname", enc(user)),
        &json!({ "displayname": name }),
    )
    .expect(200);
}

fn join(c: &Client, room: &str) {
    c.post(
        &format!("/_matrix/client/v3/rooms/{}/join", enc(room)),
        &json!({}),
    )
    .expect(200);
}

/// Waits (the room-log projects a room's openness) until `check` holds.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn finds_room_mates_and_members_of_open_rooms_only() {
    let tag = unique("dir");
    let (alice, alice_id) = new_user(&format!("{tag}alice"));
    let (bob, bob_id) = new_user(&format!("{tag}bob"));
    let (carol, carol_id) = new_user(&format!("{tag}carol"));
    let (dave, dave_id) = new_user(&format!("{tag}dave"));
    set_name(&bob, &bob_id, &format!("Bobby Tables {tag}"));
    set_name(&carol, &carol_id, &format!("Carol {tag}"));

    // Alice and Bob share a private room.
    let private = create_room(&alice, json!({"preset": "private_chat", "invite": [bob_id]}));
    join(&bob, &private);
    // Dave is alone in a public room; Carol shares nothing with anyone.
    let public = create_room(&dave, json!({"preset": "public_chat"}));

    // By display name, any case; by user id.
    assert_eq!(
        found(&alice, &format!("bobby TABLES {tag}")),
        std::slice::from_ref(&bob_id)
    );
    assert_eq!(found(&alice, &format!("{tag}BOB")), std::slice::from_ref(&bob_id));
    // Case folds beyond ASCII too.
    set_name(&alice, &alice_id, &format!("Ölaf Ärger {tag}"));
    assert_eq!(
        found(&bob, &format!("ölaf ärger {tag}")),
        std::slice::from_ref(&alice_id)
    );
    assert!(found(&bob, &format!("olaf arger {tag}")).is_empty());
    let hit = &search(&alice, &format!("Bobby Tables {tag}"), None)["results"][0];
    assert_eq!(hit["display_name"], json!(format!("Bobby Tables {tag}")));
    // Dave, in a public room, is found once the room's openness is projected.
    eventually("dave in the directory", || {
        found(&alice, &format!("{tag}dave")) == [dave_id.clone()]
    });
    // Carol is in no room with Alice and no public room.
    assert!(found(&alice, &format!("{tag}carol")).is_empty());
    assert!(found(&alice, &format!("Carol {tag}")).is_empty());
    // Carol herself finds Dave (public room) but not Bob (private room).
    assert_eq!(
        found(&carol, &format!("{tag}dave")),
        std::slice::from_ref(&dave_id)
    );
    assert!(found(&carol, &format!("{tag}bob")).is_empty());

    // A room made private again hides its members from those who share nothing.
    dave.put(
        &format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.join_rules",
            enc(&public)
        ),
        &json!({"join_rule": "invite"}),
    )
    .expect(200);
    eventually("dave gone from the directory", || {
        found(&carol, &format!("{tag}dave")).is_empty()
    });
    // A world-readable room counts as open too.
    dave.put(
        &format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.history_visibility",
            enc(&public)
        ),
        &json!({"history_visibility": "world_readable"}),
    )
    .expect(200);
    eventually("dave back in the directory", || {
        found(&carol, &format!("{tag}dave")) == [dave_id.clone()]
    });

    // Everyone with the tag that Alice may see, and the limit.
    let all = search(&alice, &tag, None);
    let ids: Vec<&str> = all["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["user_id"].as_str())
        .collect();
    assert!(
        ids.contains(&alice_id.as_str()) && ids.contains(&bob_id.as_str()) && ids.contains(&dave_id.as_str())
    );
    assert!(!ids.contains(&carol_id.as_str()));
    assert_eq!(all["limited"], json!(false));
    let limited = search(&alice, &tag, Some(2));
    assert_eq!(limited["results"].as_array().map(Vec::len), Some(2));
    assert_eq!(limited["limited"], json!(true));
    // Wildcards in the term are literal.
    assert!(found(&alice, "%").is_empty());
    assert!(found(&alice, &format!("{tag}_")).is_empty());
}

#[test]
fn refuses_bad_searches() {
    let (alice, _) = new_user("dirbad");
    let path = "/_matrix/client/v3/user_directory/search";
    alice.post(path, &json!({})).expect_err(400, "M_MISSING_PARAM");
    alice
        .post(path, &json!({"search_term": 5}))
        .expect_err(400, "M_BAD_JSON");
    alice
        .post(path, &json!({"search_term": "a", "limit": 0}))
        .expect_err(400, "M_INVALID_PARAM");
    alice
        .post(path, &json!({"search_term": "a", "limit": "ten"}))
        .expect_err(400, "M_BAD_JSON");
    alice.post(path, &json!([])).expect_err(400, "M_BAD_JSON");
    shared()
        .client()
        .post(path, &json!({"search_term": "a"}))
        .expect_err(401, "M_MISSING_TOKEN");
    assert_eq!(alice.get(path).status, 405);
    assert_eq!(
        search(&alice, "   ", None),
        json!({"results": [], "limited": false})
    );
}

#[test]
fn searching_every_local_user_is_a_setting() {
    let server = Server::start(Options {
        env: vec![("NEURITE_USER_DIRECTORY_SEARCH_ALL_USERS", "on".into())],
        ..Options::default()
    });
    let tag = unique("all");
    let (alice, _) = server
        .client()
        .register(&format!("{tag}alice"), "correct horse battery");
    let (lonely, lonely_id) = server
        .client()
        .register(&format!("{tag}lonely"), "correct horse battery");
    set_name(&lonely, &lonely_id, "Lonely Heart");
    assert_eq!(
        found(&alice, &format!("{tag}lonely")),
        std::slice::from_ref(&lonely_id)
    );
    assert_eq!(found(&alice, "lonely HEART"), [lonely_id]);
}
