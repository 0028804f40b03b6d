//! Server-side search against the real worker (FTS5 in each room's Durable Object
//! SQLite, under workerd): `room_events` across the user's rooms by rank and recency,
//! `next_batch` pages, filters, groupings, context, history visibility and
//! redactions respected; bad requests refused.

use serde_json::{json, Value};

use crate::harness::{create_room, enc, new_user, send_text, shared, unique, Client};

const SEARCH: &str = "/_matrix/client/v3/search";

fn search(c: &Client, room_events: Value) -> Value {
    c.post(
        SEARCH,
        &json!({"search_categories": {"room_events": room_events}}),
    )
    .expect(200)["search_categories"]["room_events"]
        .clone()
}

fn bodies(answer: &Value) -> Vec<String> {
    answer["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["result"]["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn search_finds_messages_across_rooms() {
    let word = unique("zebra");
    let (alice, alice_id) = new_user("searcher");
    let (bob, bob_id) = new_user("searched");
    let one = create_room(&alice, json!({"preset": "public_chat"}));
    let two = create_room(&alice, json!({"preset": "public_chat"}));
    bob.post(
        &format!("/_matrix/client/v3/rooms/{}/join", enc(&one)),
        &json!({}),
    )
    .expect(200);
    send_text(&alice, &one, "s1", &format!("the {word} crossed"));
    send_text(&bob, &one, "s2", &format!("{word} {word} {word} everywhere"));
    send_text(&alice, &two, "s3", &format!("a {word} in room two"));
    send_text(&alice, &two, "s4", "nothing to see");

    // By rank (the default): the densest match first; all three, in both rooms.
    let ranked = search(&alice, json!({"search_term": word.to_uppercase()}));
    assert_eq!(ranked["count"], json!(3));
    assert_eq!(bodies(&ranked).len(), 3);
    assert_eq!(bodies(&ranked)[0], format!("{word} {word} {word} everywhere"));
    assert!(ranked["results"][0]["rank"].as_f64().is_some());
    assert_eq!(ranked["highlights"], json!([word.to_lowercase()]));
    // By recency.
    let recent = search(&alice, json!({"search_term": word, "order_by": "recent"}));
    assert_eq!(bodies(&recent)[0], format!("a {word} in room two"));
    // Bob is only in room one.
    let bobs = search(&bob, json!({"search_term": word, "order_by": "recent"}));
    assert_eq!(
        bodies(&bobs),
        [
            format!("{word} {word} {word} everywhere"),
            format!("the {word} crossed")
        ]
    );

    // Pages of one with next_batch, until the end.
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let path = match &next {
            Some(n) => format!("{SEARCH}?next_batch={}", enc(n)),
            None => SEARCH.to_owned(),
        };
        let page = alice
            .post(
                &path,
                &json!({"search_categories": {"room_events": {
                "search_term": word, "order_by": "recent", "filter": {"limit": 1}}}}),
            )
            .expect(200)["search_categories"]["room_events"]
            .clone();
        seen.extend(bodies(&page));
        match page["next_batch"].as_str() {
            Some(n) => next = Some(n.to_owned()),
            None => break,
        }
        assert!(seen.len() < 10, "paging does not end");
    }
    assert_eq!(seen, bodies(&recent));

    // Filters: rooms, senders; groupings by room and sender.
    let only_two = search(&alice, json!({"search_term": word, "filter": {"rooms": [two]}}));
    assert_eq!(bodies(&only_two), [format!("a {word} in room two")]);
    let not_one = search(
        &alice,
        json!({"search_term": word, "filter": {"not_rooms": [one]}}),
    );
    assert_eq!(bodies(&not_one).len(), 1);
    let by_bob = search(
        &alice,
        json!({"search_term": word, "filter": {"senders": [bob_id]}}),
    );
    assert_eq!(bodies(&by_bob), [format!("{word} {word} {word} everywhere")]);
    let grouped = search(
        &alice,
        json!({"search_term": word, "order_by": "recent",
               "groupings": {"group_by": [{"key": "room_id"}, {"key": "sender"}]}}),
    );
    assert_eq!(
        grouped["groups"]["room_id"][&one]["results"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(grouped["groups"]["room_id"][&two]["order"], json!(0));
    assert_eq!(
        grouped["groups"]["sender"][&alice_id]["results"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    // Only the body key: a room's name is not a message.
    alice
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.name", enc(&two)),
            &json!({"name": format!("{word} lounge")}),
        )
        .expect(200);
    assert_eq!(search(&alice, json!({"search_term": word}))["count"], json!(4));
    assert_eq!(
        search(&alice, json!({"search_term": word, "keys": ["content.body"]}))["count"],
        json!(3)
    );

    // Context around a result.
    let with_context = search(
        &alice,
        json!({"search_term": "nothing to see",
               "event_context": {"before_limit": 1, "after_limit": 1, "include_profile": true}}),
    );
    let context = &with_context["results"][0]["context"];
    assert_eq!(
        context["events_before"][0]["content"]["body"],
        json!(format!("a {word} in room two"))
    );
    assert!(context["profile_info"].get(&alice_id).is_some(), "{context}");
}

#[test]
fn search_respects_history_and_redactions() {
    let word = unique("walrus");
    let (alice, _) = new_user("searchprivate");
    let (carol, carol_id) = new_user("searchlate");
    let room = create_room(&alice, json!({"preset": "private_chat"}));
    alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.history_visibility",
                enc(&room)
            ),
            &json!({"history_visibility": "joined"}),
        )
        .expect(200);
    send_text(&alice, &room, "h1", &format!("{word} before carol"));
    // Carol is in no room yet: nothing.
    assert!(bodies(&search(&carol, json!({"search_term": word}))).is_empty());
    alice
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            &json!({"user_id": carol_id}),
        )
        .expect(200);
    carol
        .post(
            &format!("/_matrix/client/v3/rooms/{}/join", enc(&room)),
            &json!({}),
        )
        .expect(200);
    let after = send_text(&alice, &room, "h2", &format!("{word} after carol"));
    assert_eq!(
        bodies(&search(&carol, json!({"search_term": word}))),
        [format!("{word} after carol")]
    );
    assert_eq!(bodies(&search(&alice, json!({"search_term": word}))).len(), 2);

    // A redacted message is not found any more.
    alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/rx",
                enc(&room),
                enc(&after)
            ),
            &json!({}),
        )
        .expect(200);
    assert_eq!(
        bodies(&search(&alice, json!({"search_term": word}))),
        [format!("{word} before carol")]
    );
    assert!(bodies(&search(&carol, json!({"search_term": word}))).is_empty());
}

#[test]
fn search_refuses_bad_requests() {
    let (alice, _) = new_user("searchbad");
    let post = |body: Value| alice.post(SEARCH, &body);
    post(json!({})).expect_err(400, "M_BAD_JSON");
    post(json!({"search_categories": []})).expect_err(400, "M_BAD_JSON");
    post(json!({"search_categories": {"room_events": {}}})).expect_err(400, "M_MISSING_PARAM");
    post(json!({"search_categories": {"room_events": {"search_term": 3}}})).expect_err(400, "M_BAD_JSON");
    post(json!({"search_categories": {"room_events": {"search_term": "a", "order_by": "best"}}}))
        .expect_err(400, "M_INVALID_PARAM");
    post(json!({"search_categories": {"room_events": {"search_term": "a", "keys": ["content.url"]}}}))
        .expect_err(400, "M_INVALID_PARAM");
    post(json!({"search_categories": {"room_events": {"search_term": "a", "filter": {"limit": -1}}}}))
        .expect_err(400, "M_BAD_JSON");
    post(json!({"search_categories": {"room_events": {"search_term": "a",
        "groupings": {"group_by": [{"key": "type"}]}}}}))
    .expect_err(400, "M_INVALID_PARAM");
    alice
        .post(
            &format!("{SEARCH}?next_batch=garbage"),
            &json!({"search_categories": {"room_events": {"search_term": "a"}}}),
        )
        .expect_err(400, "M_INVALID_PARAM");
    shared()
        .client()
        .post(
            SEARCH,
            &json!({"search_categories": {"room_events": {"search_term": "a"}}}),
        )
        .expect_err(401, "M_MISSING_TOKEN");
    // No category asked for, and a term of no words: empty answers.
    assert_eq!(
        post(json!({"search_categories": {}})).expect(200),
        json!({"search_categories": {}})
    );
    let empty = search(&alice, json!({"search_term": "\"*() OR"}));
    assert_eq!(empty["count"], json!(0), "{empty}");
}
