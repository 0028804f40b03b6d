//! More client API conformance against the real worker: what /sync sends and leaves
//! out, state and membership request details, and the directory's permissions.

use serde_json::{json, Value};

use crate::harness::{create_room, enc, new_user, send_text, shared, Client};

fn sync(c: &Client, query: &str) -> Value {
    c.get(&format!("/_matrix/client/v3/sync?timeout=0{query}"))
        .expect(200)
}

fn next_batch(body: &Value) -> String {
    body["next_batch"].as_str().expect("next_batch").to_owned()
}

fn join(c: &Client, room: &str) -> Value {
    c.post(&format!("/_matrix/client/v3/join/{}", enc(room)), &json!({}))
        .expect(200)
}

#[test]
fn sync_sends_only_what_is_there() {
    let (alice, _) = new_user("syal");
    let (bob, bob_id) = new_user("sybo");
    let named = create_room(&alice, json!({"preset": "public_chat", "name": "Named"}));
    let unnamed = create_room(&alice, json!({"preset": "public_chat"}));
    join(&bob, &named);
    join(&bob, &unnamed);
    let first = sync(&alice, "");
    // Nobody types: no typing event at all.
    for room in [&named, &unnamed] {
        let eph = first["rooms"]["join"][room]["ephemeral"]["events"]
            .as_array()
            .expect("ephemeral");
        assert!(eph.iter().all(|e| e["type"] != "m.typing"), "{eph:?}");
    }
    // Heroes name only a room without a name.
    let summary = &first["rooms"]["join"][&named]["summary"];
    assert!(summary.get("m.heroes").is_none(), "{summary}");
    assert_eq!(summary["m.joined_member_count"], 2);
    assert_eq!(
        first["rooms"]["join"][&unnamed]["summary"]["m.heroes"],
        json!([bob_id])
    );

    // full_state on an incremental sync: every joined room with its whole state, even
    // with nothing new.
    let since = next_batch(&first);
    let full = sync(&alice, &format!("&since={since}&full_state=true"));
    for room in [&named, &unnamed] {
        let state = full["rooms"]["join"][room]["state"]["events"]
            .as_array()
            .expect("state");
        assert!(state.iter().any(|e| e["type"] == "m.room.create"), "{full}");
    }
    let quiet = sync(&alice, &format!("&since={since}"));
    assert_eq!(quiet["rooms"]["join"], json!({}), "{quiet}");

    // A filter that leaves nothing of a room's change leaves the room out.
    let since = next_batch(&quiet);
    send_text(&alice, &named, "f1", "filtered away");
    let filter = enc(&json!({"room": {"timeline": {"not_types": ["m.room.message"]}}}).to_string());
    let filtered = sync(&alice, &format!("&since={since}&filter={filter}"));
    assert!(filtered["rooms"]["join"].get(&named).is_none(), "{filtered}");
    let unfiltered = sync(&alice, &format!("&since={since}"));
    assert!(unfiltered["rooms"]["join"].get(&named).is_some(), "{unfiltered}");
}

#[test]
fn state_format_custom_join_content_and_plain_post_send() {
    let (alice, alice_id) = new_user("stal");
    let (bob, bob_id) = new_user("stbo");
    let room = create_room(&alice, json!({"preset": "public_chat", "topic": "t"}));
    let r = enc(&room);
    let event = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{r}/state/m.room.topic/?format=event"
        ))
        .expect(200);
    assert_eq!(event["type"], "m.room.topic");
    assert_eq!(event["sender"], json!(alice_id));
    assert_eq!(event["content"]["topic"], "t");
    let content = alice
        .get(&format!("/_matrix/client/v3/rooms/{r}/state/m.room.topic/"))
        .expect(200);
    assert_eq!(content, json!({"topic": "t"}));
    alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{r}/state/m.room.topic/?format=xml"
        ))
        .expect_err(400, "M_INVALID_PARAM");

    // Custom fields of a join body are kept in the member event.
    bob.post(
        &format!("/_matrix/client/v3/rooms/{r}/join"),
        &json!({"reason": "hello", "io.example.badge": "gold"}),
    )
    .expect(200);
    let member = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{r}/state/m.room.member/{}",
            enc(&bob_id)
        ))
        .expect(200);
    assert_eq!(member["membership"], "join");
    assert_eq!(member["reason"], "hello");
    assert_eq!(member["io.example.badge"], "gold");

    // The older send without a transaction id: a new event each time.
    let one = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{r}/send/m.room.message"),
            &json!({"msgtype": "m.text", "body": "x"}),
        )
        .expect(200)["event_id"]
        .clone();
    let two = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{r}/send/m.room.message"),
            &json!({"msgtype": "m.text", "body": "x"}),
        )
        .expect(200)["event_id"]
        .clone();
    assert_ne!(one, two);
    // Forward pagination always says where to go on from.
    let page = alice
        .get(&format!("/_matrix/client/v3/rooms/{r}/messages?dir=f&limit=1000"))
        .expect(200);
    let end = page["end"].as_str().expect("end").to_owned();
    let after = alice
        .get(&format!("/_matrix/client/v3/rooms/{r}/messages?dir=f&from={end}"))
        .expect(200);
    assert_eq!(after["chunk"], json!([]));
    assert_eq!(after["end"], json!(end));
}

#[test]
fn unknown_and_unreadable_rooms_answer_not_found() {
    let (alice, _) = new_user("nfal");
    let (eve, _) = new_user("nfev");
    let room = create_room(&alice, json!({"preset": "private_chat"}));
    let secret = send_text(&alice, &room, "s1", "secret");
    eve.get(&format!(
        "/_matrix/client/v3/rooms/{}/event/{}",
        enc(&room),
        enc(&secret)
    ))
    .expect_err(404, "M_NOT_FOUND");
    alice
        .post(
            "/_matrix/client/v3/rooms/!unknown:nowhere.example/upgrade",
            &json!({"new_version": "12"}),
        )
        .expect_err(404, "M_NOT_FOUND");
}

#[test]
fn directory_permissions_follow_the_power_levels() {
    let (alice, _) = new_user("dial");
    let (bob, _) = new_user("dibo");
    let (eve, _) = new_user("diev");
    let server = &shared().server_name;
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    join(&bob, &room);
    let alias = format!("#{}:{server}", crate::harness::unique("dialias"));
    let path = format!("/_matrix/client/v3/directory/room/{}", enc(&alias));
    bob.put(&path, &json!({"room_id": room})).expect(200);
    alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.canonical_alias/",
                enc(&room)
            ),
            &json!({"alias": alias}),
        )
        .expect(200);
    // Only members list a room's aliases.
    eve.get(&format!("/_matrix/client/v3/rooms/{}/aliases", enc(&room)))
        .expect_err(403, "M_FORBIDDEN");
    let listed = bob
        .get(&format!("/_matrix/client/v3/rooms/{}/aliases", enc(&room)))
        .expect(200);
    assert_eq!(listed["aliases"], json!([alias]));
    // Bob (power 0) may not publish the room; Alice (its creator) may.
    let visibility = format!("/_matrix/client/v3/directory/list/room/{}", enc(&room));
    bob.put(&visibility, &json!({"visibility": "public"}))
        .expect_err(403, "M_FORBIDDEN");
    alice
        .put(&visibility, &json!({"visibility": "public"}))
        .expect(200);
    // Eve may not delete Bob's alias; Alice, with the power over the canonical alias,
    // may, and the canonical alias no longer names it.
    eve.delete(&path).expect_err(403, "M_FORBIDDEN");
    alice.delete(&path).expect(200);
    shared().client().get(&path).expect_err(404, "M_NOT_FOUND");
    let canonical = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.canonical_alias/",
            enc(&room)
        ))
        .expect(200);
    assert!(canonical.get("alias").is_none(), "{canonical}");
}

#[test]
fn own_presence_left_rooms_and_gaps_in_sync() {
    let (alice, alice_id) = new_user("spal");
    let (bob, bob_id) = new_user("spbo");
    let (carol, carol_id) = new_user("spca");
    // A user's own presence is in their sync.
    let first = sync(&alice, "");
    let mut presence = first["presence"]["events"].clone();
    if presence
        .as_array()
        .is_none_or(|l| l.iter().all(|e| e["sender"] != json!(alice_id)))
    {
        presence = sync(&alice, &format!("&since={}", next_batch(&first)))["presence"]["events"].clone();
    }
    let own = presence
        .as_array()
        .and_then(|l| l.iter().find(|e| e["sender"] == json!(alice_id)).cloned())
        .expect("own presence");
    assert_eq!(own["content"]["presence"], "online");

    // Left and banned rooms are in an initial sync that asks for them, forgotten ones not.
    let left = create_room(&alice, json!({"preset": "public_chat"}));
    let forgotten = create_room(&alice, json!({"preset": "public_chat"}));
    let banned = create_room(&bob, json!({"preset": "public_chat"}));
    join(&alice, &banned);
    for room in [&left, &forgotten] {
        alice
            .post(
                &format!("/_matrix/client/v3/rooms/{}/leave", enc(room)),
                &json!({}),
            )
            .expect(200);
    }
    alice
        .post(
            &format!("/_matrix/client/v3/rooms/{}/forget", enc(&forgotten)),
            &json!({}),
        )
        .expect(200);
    bob.post(
        &format!("/_matrix/client/v3/rooms/{}/ban", enc(&banned)),
        &json!({"user_id": alice_id}),
    )
    .expect(200);
    let filter = enc(&json!({"room": {"include_leave": true}}).to_string());
    let archived = sync(&alice, &format!("&filter={filter}"));
    for room in [&left, &banned] {
        let r = &archived["rooms"]["leave"][room];
        assert!(
            r["timeline"]["events"].is_array() && r["state"]["events"].is_array(),
            "{archived}"
        );
    }
    assert!(archived["rooms"]["leave"].get(&forgotten).is_none(), "{archived}");
    assert!(sync(&alice, "")["rooms"]["leave"].get(&left).is_none());

    // Joined and left within one gap: the room's whole state comes with the leave.
    let room = create_room(&bob, json!({"preset": "public_chat"}));
    let since = next_batch(&sync(&carol, ""));
    join(&carol, &room);
    carol
        .post(
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
            &json!({}),
        )
        .expect(200);
    let body = sync(&carol, &format!("&since={since}"));
    let state = body["rooms"]["leave"][&room]["state"]["events"]
        .as_array()
        .expect("state");
    assert!(state.iter().any(|e| e["type"] == "m.room.create"), "{body}");

    // Lazy-loaded members across a gap: every membership change in the gap is there,
    // even of members who said nothing.
    let lazy =
        enc(&json!({"room": {"state": {"lazy_load_members": true}, "timeline": {"limit": 3}}}).to_string());
    let since = next_batch(&sync(&bob, &format!("&filter={lazy}")));
    let (dave, dave_id) = new_user("spda");
    join(&dave, &room);
    for i in 0..6 {
        send_text(&bob, &room, &format!("gap{i}"), "filler");
    }
    let gapped = sync(&bob, &format!("&filter={lazy}&since={since}"));
    let r = &gapped["rooms"]["join"][&room];
    assert_eq!(r["timeline"]["limited"], true, "{gapped}");
    let members: Vec<&str> = r["state"]["events"]
        .as_array()
        .expect("state")
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .filter_map(|e| e["state_key"].as_str())
        .collect();
    assert!(members.contains(&dave_id.as_str()), "{members:?}");
    let _ = (bob_id, carol_id);

    // The federation format, when a filter asks for it.
    let fed = enc(&json!({"event_format": "federation"}).to_string());
    let body = sync(&bob, &format!("&filter={fed}"));
    let event = &body["rooms"]["join"][&room]["timeline"]["events"][0];
    for key in [
        "room_id",
        "prev_events",
        "auth_events",
        "depth",
        "hashes",
        "signatures",
    ] {
        assert!(event.get(key).is_some(), "{key} missing: {event}");
    }
}

#[test]
fn context_lazy_loads_members() {
    let (alice, alice_id) = new_user("cxal");
    let (bob, _) = new_user("cxbo");
    let (carol, _) = new_user("cxca");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    join(&bob, &room);
    join(&carol, &room);
    let ev = send_text(&alice, &room, "c1", "in context");
    let filter = enc(&json!({"lazy_load_members": true}).to_string());
    let body = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/context/{}?limit=0&filter={filter}",
            enc(&room),
            enc(&ev)
        ))
        .expect(200);
    let members: Vec<&str> = body["state"]
        .as_array()
        .expect("state")
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .filter_map(|e| e["state_key"].as_str())
        .collect();
    assert_eq!(members, vec![alice_id.as_str()], "{body}");
    let full = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/context/{}?limit=0",
            enc(&room),
            enc(&ev)
        ))
        .expect(200);
    let all = full["state"].as_array().expect("state");
    assert_eq!(all.iter().filter(|e| e["type"] == "m.room.member").count(), 3);
}

#[test]
fn lazy_members_are_not_sent_twice_and_current_state_shows_after_a_rejoin() {
    let (alice, _) = new_user("llal");
    let (bob, bob_id) = new_user("llbo");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    join(&bob, &room);
    let lazy =
        enc(&json!({"room": {"state": {"lazy_load_members": true}, "timeline": {"limit": 10}}}).to_string());
    let members_in = |body: &Value| -> Vec<String> {
        body["rooms"]["join"][&room]["state"]["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["type"] == "m.room.member")
            .filter_map(|e| e["state_key"].as_str().map(str::to_owned))
            .collect()
    };
    for i in 0..11 {
        send_text(&bob, &room, &format!("l1-{i}"), "filler");
    }
    let first = sync(&alice, &format!("&filter={lazy}"));
    assert!(members_in(&first).contains(&bob_id), "{first}");
    send_text(&bob, &room, "l2", "two");
    let since = next_batch(&first);
    let second = sync(&alice, &format!("&filter={lazy}&since={since}"));
    assert!(
        members_in(&second).is_empty(),
        "Bob's member event again: {second}"
    );
    // The same token again (as after a lost answer) is answered the same way as the
    // first time it was used: nothing was acknowledged in between.
    let again = sync(&alice, &format!("&filter={lazy}&since={since}"));
    assert_eq!(members_in(&again), members_in(&second));
    // Asked for redundant members, it sends them.
    let redundant = enc(
        &json!({"room": {"state": {"lazy_load_members": true, "include_redundant_members": true}}})
            .to_string(),
    );
    let body = sync(&alice, &format!("&filter={redundant}&since={since}"));
    assert!(members_in(&body).contains(&bob_id), "{body}");

    // A member who joined while the user was away (joined-only history) is in the
    // timeline of the rejoined room, as current state.
    let (carol, carol_id) = new_user("llca");
    alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.history_visibility/",
                enc(&room)
            ),
            &json!({"history_visibility": "joined"}),
        )
        .expect(200);
    let since = next_batch(&sync(&bob, ""));
    bob.post(
        &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
        &json!({}),
    )
    .expect(200);
    join(&carol, &room);
    join(&bob, &room);
    let body = sync(&bob, &format!("&since={since}"));
    let timeline = body["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .expect("timeline");
    assert!(
        timeline
            .iter()
            .any(|e| e["type"] == "m.room.member" && e["state_key"] == json!(carol_id)),
        "{body}"
    );
}

#[test]
fn a_newly_joined_room_brings_its_members_presence() {
    let (alice, alice_id) = new_user("pjal");
    let (bob, _) = new_user("pjbo");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    sync(&alice, "");
    let since = next_batch(&sync(&bob, ""));
    join(&bob, &room);
    let body = sync(&bob, &format!("&since={since}"));
    let presence: Vec<&Value> = body["presence"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["sender"] == json!(alice_id))
        .collect();
    assert_eq!(presence.len(), 1, "{body}");
}
