//! Room tags against the real worker: set, list, remove, the `m.tag` room account data
//! in /sync, and the refusals (another user's tags, bad names and bodies), which change
//! nothing.

use serde_json::{json, Value};

use crate::harness::{create_room, enc, new_user, Client};

fn tags_path(user: &str, room: &str) -> String {
    format!("/_matrix/client/v3/user/{}/rooms/{}/tags", enc(user), enc(room))
}

fn tag_path(user: &str, room: &str, tag: &str) -> String {
    format!("{}/{}", tags_path(user, room), enc(tag))
}

fn room_tags_in_sync(c: &Client, room: &str) -> Option<Value> {
    let body = c.get("/_matrix/client/v3/sync?set_presence=offline").expect(200);
    body["rooms"]["join"][room]["account_data"]["events"]
        .as_array()?
        .iter()
        .find(|e| e["type"] == "m.tag")
        .map(|e| e["content"].clone())
}

#[test]
fn tags_are_set_listed_removed_and_synced() {
    let (alice, alice_id) = new_user("tagger");
    let room = create_room(&alice, json!({}));
    assert_eq!(
        alice.get(&tags_path(&alice_id, &room)).expect(200),
        json!({"tags": {}})
    );

    alice
        .put(
            &tag_path(&alice_id, &room, "m.favourite"),
            &json!({"order": 0.25}),
        )
        .expect(200);
    alice
        .put(&tag_path(&alice_id, &room, "u.Work"), &json!({}))
        .expect(200);
    let tags = alice.get(&tags_path(&alice_id, &room)).expect(200);
    assert_eq!(
        tags,
        json!({"tags": {"m.favourite": {"order": 0.25}, "u.Work": {}}})
    );
    // The same content is the room's m.tag account data, which /sync shows.
    let room_data = alice
        .get(&format!(
            "/_matrix/client/v3/user/{}/rooms/{}/account_data/m.tag",
            enc(&alice_id),
            enc(&room)
        ))
        .expect(200);
    assert_eq!(room_data, tags);
    assert_eq!(room_tags_in_sync(&alice, &room), Some(tags.clone()));

    // An incremental sync after a change carries the new tags.
    let since = alice
        .get("/_matrix/client/v3/sync?set_presence=offline")
        .expect(200)["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    alice
        .put(&tag_path(&alice_id, &room, "m.favourite"), &json!({"order": 0.5}))
        .expect(200);
    let body = alice
        .get(&format!(
            "/_matrix/client/v3/sync?set_presence=offline&timeout=0&since={}",
            enc(&since)
        ))
        .expect(200);
    let changed = body["rooms"]["join"][&room]["account_data"]["events"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["type"] == "m.tag"))
        .map(|e| e["content"]["tags"]["m.favourite"]["order"].clone());
    assert_eq!(changed, Some(json!(0.5)));

    alice.delete(&tag_path(&alice_id, &room, "u.Work")).expect(200);
    // Removing a tag that is not there is fine and changes nothing.
    alice.delete(&tag_path(&alice_id, &room, "u.Never")).expect(200);
    assert_eq!(
        alice.get(&tags_path(&alice_id, &room)).expect(200),
        json!({"tags": {"m.favourite": {"order": 0.5}}})
    );
}

#[test]
fn tags_refuse_others_and_bad_input() {
    let (alice, alice_id) = new_user("tagown");
    let (bob, bob_id) = new_user("tagother");
    let room = create_room(&alice, json!({}));
    alice
        .put(&tag_path(&alice_id, &room, "u.mine"), &json!({"order": 0.1}))
        .expect(200);
    let before = alice.get(&tags_path(&alice_id, &room)).expect(200);

    // Only the user themself.
    bob.get(&tags_path(&alice_id, &room))
        .expect_err(403, "M_FORBIDDEN");
    bob.put(&tag_path(&alice_id, &room, "u.evil"), &json!({}))
        .expect_err(403, "M_FORBIDDEN");
    bob.delete(&tag_path(&alice_id, &room, "u.mine"))
        .expect_err(403, "M_FORBIDDEN");
    // No token.
    let anon = crate::harness::shared().client();
    anon.get(&tags_path(&alice_id, &room))
        .expect_err(401, "M_MISSING_TOKEN");

    // Bad bodies and names.
    alice
        .put(&tag_path(&alice_id, &room, "u.x"), &json!({"order": "high"}))
        .expect_err(400, "M_BAD_JSON");
    alice
        .put(&tag_path(&alice_id, &room, "u.x"), &json!({"order": 7}))
        .expect_err(400, "M_BAD_JSON");
    alice
        .put(
            &tag_path(&alice_id, &room, "u.x"),
            &json!(["not", "an", "object"]),
        )
        .expect_err(400, "M_BAD_JSON");
    let raw = alice.raw(
        "PUT",
        &tag_path(&alice_id, &room, "u.x"),
        Some(b"{not json"),
        &[("Content-Type", "application/json")],
    );
    assert_eq!((raw.status, raw.errcode()), (400, Some("M_NOT_JSON")));
    alice
        .put(&tag_path(&alice_id, &room, &"t".repeat(256)), &json!({}))
        .expect_err(400, "M_INVALID_PARAM");
    alice
        .put(&tag_path(&alice_id, "not-a-room", "u.x"), &json!({}))
        .expect_err(400, "M_INVALID_PARAM");
    alice
        .get(&tags_path(&alice_id, "not-a-room"))
        .expect_err(400, "M_INVALID_PARAM");
    // Wrong method.
    let post = alice.post(&tags_path(&alice_id, &room), &json!({}));
    assert_eq!(post.status, 405);

    // Nothing changed; Bob has no tags of his own on the room either.
    assert_eq!(alice.get(&tags_path(&alice_id, &room)).expect(200), before);
    assert_eq!(
        bob.get(&tags_path(&bob_id, &room)).expect(200),
        json!({"tags": {}})
    );
}
