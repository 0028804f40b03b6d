//! More room behaviour against the real worker: concurrent senders, profile
//! propagation, canonical alias checks, lazy-loaded members, directory search and
//! history visibility between users.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::harness::{create_room, enc, new_user, send_text, shared, unique, Client};

fn all_messages(c: &Client, room: &str) -> Vec<Value> {
    let page = c
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=f&limit=1000",
            enc(room)
        ))
        .expect(200);
    page["chunk"].as_array().expect("chunk").clone()
}

#[test]
fn concurrent_senders_lose_and_duplicate_nothing() {
    let (alice, _) = new_user("alice");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    let mut senders = vec![alice.clone()];
    for _ in 0..3 {
        let (c, _) = new_user("sender");
        c.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), &json!({}))
            .expect(200);
        senders.push(c);
    }
    let handles: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(n, c)| {
            let room = room.clone();
            std::thread::spawn(move || {
                for i in 0..10 {
                    c.put(
                        &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/t{i}", enc(&room)),
                        &json!({"msgtype": "m.text", "body": format!("{n}-{i}")}),
                    )
                    .expect(200);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("sender thread");
    }
    let events = all_messages(&alice, &room);
    let bodies: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    assert_eq!(bodies.len(), 40, "{bodies:?}");
    let unique_bodies: BTreeSet<&str> = bodies.iter().copied().collect();
    assert_eq!(unique_bodies.len(), 40);
    // Each sender's messages keep their order.
    for n in 0..4 {
        let mine: Vec<&str> = bodies
            .iter()
            .copied()
            .filter(|b| b.starts_with(&format!("{n}-")))
            .collect();
        let expected: Vec<String> = (0..10).map(|i| format!("{n}-{i}")).collect();
        assert_eq!(mine, expected);
    }
    // Paging backwards one at a time visits the same events (gapless positions).
    let mut seen = 0;
    let mut from: Option<String> = None;
    loop {
        let q = match &from {
            Some(t) => format!("dir=b&limit=7&from={t}"),
            None => "dir=b&limit=7".to_owned(),
        };
        let page = alice
            .get(&format!("/_matrix/client/v3/rooms/{}/messages?{q}", enc(&room)))
            .expect(200);
        seen += page["chunk"].as_array().expect("chunk").len();
        match page["end"].as_str() {
            Some(t) => from = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, events.len());
}

#[test]
fn profile_changes_reach_joined_rooms() {
    let (alice, alice_id) = new_user("alice");
    let room = create_room(&alice, json!({}));
    alice
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(&alice_id)),
            &json!({"displayname": "Alice Liddell"}),
        )
        .expect(200);
    let member = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
            enc(&room),
            enc(&alice_id)
        ))
        .expect(200);
    assert_eq!(member["displayname"], "Alice Liddell");
    assert_eq!(member["membership"], "join");
}

#[test]
fn canonical_alias_must_point_to_the_room() {
    let (alice, _) = new_user("alice");
    let local = unique("canon");
    let room = create_room(&alice, json!({"room_alias_name": local}));
    let other = create_room(&alice, json!({}));
    let alias = format!("#{local}:{}", shared().server_name);
    let path = |r: &str| {
        format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.canonical_alias/",
            enc(r)
        )
    };
    alice
        .put(&path(&other), &json!({"alias": alias}))
        .expect_err(400, "M_BAD_ALIAS");
    alice
        .put(
            &path(&room),
            &json!({"alias": format!("#nope-{local}:{}", shared().server_name)}),
        )
        .expect_err(400, "M_BAD_ALIAS");
    alice.put(&path(&room), &json!({"alias": alias})).expect(200);
}

#[test]
fn lazy_loaded_members_and_directory_search() {
    let (alice, alice_id) = new_user("alice");
    let (bob, bob_id) = new_user("bob");
    let name = unique("Searchable");
    let room = create_room(&alice, json!({"visibility": "public", "name": name}));
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), &json!({}))
        .expect(200);
    bob.put(
        &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/x", enc(&room)),
        &json!({"msgtype": "m.text", "body": "hi"}),
    )
    .expect(200);
    let filter = enc(r#"{"lazy_load_members":true,"types":["m.room.message"]}"#);
    let page = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=5&filter={filter}",
            enc(&room)
        ))
        .expect(200);
    let members: Vec<&str> = page["state"]
        .as_array()
        .expect("state")
        .iter()
        .filter_map(|e| e["state_key"].as_str())
        .collect();
    assert_eq!(members, [bob_id.as_str()], "only the senders in the chunk");
    assert!(!members.contains(&alice_id.as_str()));
    let found = bob
        .post(
            "/_matrix/client/v3/publicRooms",
            &json!({"filter": {"generic_search_term": name.to_lowercase()}}),
        )
        .expect(200);
    let ids: Vec<&str> = found["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter_map(|e| e["room_id"].as_str())
        .collect();
    assert_eq!(ids, [room.as_str()]);
}

#[test]
fn joined_history_hides_what_happened_before_joining() {
    let (alice, _) = new_user("alice");
    let (bob, bob_id) = new_user("bob");
    let room = create_room(
        &alice,
        json!({"initial_state": [{"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}]}),
    );
    let r = enc(&room);
    let secret = alice
        .put(
            &format!("/_matrix/client/v3/rooms/{r}/send/m.room.message/s"),
            &json!({"msgtype": "m.text", "body": "before bob"}),
        )
        .expect(200)["event_id"]
        .as_str()
        .expect("event id")
        .to_owned();
    alice
        .post(
            &format!("/_matrix/client/v3/rooms/{r}/invite"),
            &json!({"user_id": bob_id}),
        )
        .expect(200);
    bob.post(&format!("/_matrix/client/v3/rooms/{r}/join"), &json!({}))
        .expect(200);
    let bodies: Vec<String> = all_messages(&bob, &room)
        .iter()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect();
    assert!(!bodies.contains(&"before bob".to_owned()), "{bodies:?}");
    bob.get(&format!("/_matrix/client/v3/rooms/{r}/event/{}", enc(&secret)))
        .expect_err(404, "M_NOT_FOUND");
    bob.get(&format!("/_matrix/client/v3/rooms/{r}/context/{}", enc(&secret)))
        .expect_err(404, "M_NOT_FOUND");
    alice
        .get(&format!("/_matrix/client/v3/rooms/{r}/event/{}", enc(&secret)))
        .expect(200);
}

#[test]
fn upgrade_tombstones_the_old_room_and_carries_state_over() {
    let (alice, _) = new_user("alice");
    let (bob, _) = new_user("bob");
    let local = unique("upg");
    let old = create_room(
        &alice,
        json!({"room_version": "11", "preset": "public_chat", "name": "Old name", "topic": "T", "room_alias_name": local}),
    );
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&old)), &json!({}))
        .expect(200);
    // Bob (power 0) may not upgrade; a bad version is refused.
    bob.post(
        &format!("/_matrix/client/v3/rooms/{}/upgrade", enc(&old)),
        &json!({"new_version": "12"}),
    )
    .expect_err(403, "M_FORBIDDEN");
    alice
        .post(
            &format!("/_matrix/client/v3/rooms/{}/upgrade", enc(&old)),
            &json!({"new_version": "1"}),
        )
        .expect_err(400, "M_UNSUPPORTED_ROOM_VERSION");
    let answer = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{}/upgrade", enc(&old)),
            &json!({"new_version": "12"}),
        )
        .expect(200);
    let new = answer["replacement_room"]
        .as_str()
        .expect("replacement_room")
        .to_owned();
    let tomb = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.tombstone/",
            enc(&old)
        ))
        .expect(200);
    assert_eq!(tomb["replacement_room"], new.as_str());
    let create_ev = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.create/",
            enc(&new)
        ))
        .expect(200);
    assert_eq!(create_ev["predecessor"]["room_id"], old.as_str());
    assert_eq!(create_ev["room_version"], "12");
    let name = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.name/",
            enc(&new)
        ))
        .expect(200);
    assert_eq!(name["name"], "Old name");
    // The old room had no guest access rule (guests forbidden): the new room says so.
    let guests = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.guest_access/",
            enc(&new)
        ))
        .expect(200);
    assert_eq!(guests["guest_access"], "forbidden");
    let alias = format!("#{local}:{}", shared().server_name);
    let resolved = bob
        .get(&format!("/_matrix/client/v3/directory/room/{}", enc(&alias)))
        .expect(200);
    assert_eq!(resolved["room_id"], new.as_str());
    // Bob follows to the new room (public join rules carried over).
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&new)), &json!({}))
        .expect(200);
}

#[test]
fn a_room_upgraded_to_version_two_names_its_creator_and_their_power() {
    let (alice, alice_id) = new_user("alice");
    let old = create_room(&alice, json!({"preset": "private_chat", "name": "Older"}));
    // A ban, the room listed as direct and tagged: all follow the room.
    alice
        .post(
            &format!("/_matrix/client/v3/rooms/{}/ban", enc(&old)),
            &json!({"user_id": "@mallory:elsewhere.test", "reason": "spam"}),
        )
        .expect(200);
    alice
        .put(
            &format!("/_matrix/client/v3/user/{}/account_data/m.direct", enc(&alice_id)),
            &json!({ "@friend:elsewhere.test": [old.clone()] }),
        )
        .expect(200);
    alice
        .put(
            &format!(
                "/_matrix/client/v3/user/{}/rooms/{}/account_data/m.tag",
                enc(&alice_id),
                enc(&old)
            ),
            &json!({"tags": {"m.favourite": {"order": 0.5}}}),
        )
        .expect(200);
    let answer = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{}/upgrade", enc(&old)),
            &json!({"new_version": "2"}),
        )
        .expect(200);
    let new = answer["replacement_room"]
        .as_str()
        .expect("replacement_room")
        .to_owned();
    let state = alice
        .get(&format!("/_matrix/client/v3/rooms/{}/state", enc(&new)))
        .expect(200);
    let content = |t: &str| {
        state
            .as_array()
            .expect("state")
            .iter()
            .find(|e| e["type"] == t)
            .map(|e| e["content"].clone())
            .unwrap_or_else(|| panic!("{t} in the new room"))
    };
    let create = content("m.room.create");
    assert_eq!(create["room_version"], "2");
    // The old room was tombstoned first: the new room names the tombstone as the last
    // event of its predecessor.
    let tombstone = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.tombstone/?format=event",
            enc(&old)
        ))
        .expect(200);
    assert_eq!(tombstone["content"]["replacement_room"], new.as_str());
    assert_eq!(create["predecessor"]["room_id"], old.as_str());
    assert_eq!(create["predecessor"]["event_id"], tombstone["event_id"]);
    assert_eq!(
        create["creator"],
        alice_id.as_str(),
        "v2 rooms name their creator"
    );
    // A v12 creator is not listed in the power levels; a v2 room lists them at 100.
    assert_eq!(content("m.room.power_levels")["users"][alice_id.as_str()], 100);
    assert_eq!(content("m.room.name")["name"], "Older");
    assert_eq!(content("m.room.join_rules")["join_rule"], "invite");
    let ban = state
        .as_array()
        .expect("state")
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == "@mallory:elsewhere.test")
        .expect("the ban was carried over");
    assert_eq!(ban["content"], json!({"membership": "ban", "reason": "spam"}));
    let direct = alice
        .get(&format!(
            "/_matrix/client/v3/user/{}/account_data/m.direct",
            enc(&alice_id)
        ))
        .expect(200);
    assert_eq!(
        direct["@friend:elsewhere.test"],
        json!([old.clone(), new.clone()])
    );
    let tags = alice
        .get(&format!(
            "/_matrix/client/v3/user/{}/rooms/{}/account_data/m.tag",
            enc(&alice_id),
            enc(&new)
        ))
        .expect(200);
    assert_eq!(tags["tags"]["m.favourite"]["order"], 0.5);
    // v2 events carry their own ids, `$local:server`, and the room works as any other.
    let event_id = send_text(&alice, &new, "v2", "in version two");
    assert!(
        event_id.ends_with(&format!(":{}", shared().server_name)),
        "{event_id}"
    );
    let fetched = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            enc(&new),
            enc(&event_id)
        ))
        .expect(200);
    assert_eq!(fetched["content"]["body"], "in version two");
    let redaction = alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/r1",
                enc(&new),
                enc(&event_id)
            ),
            &json!({"reason": "test"}),
        )
        .expect(200);
    assert!(redaction["event_id"].is_string());
    let redacted = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            enc(&new),
            enc(&event_id)
        ))
        .expect(200);
    assert!(redacted["content"].get("body").is_none(), "{redacted}");
}
