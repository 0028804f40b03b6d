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

    // The rooms' state with the results.
    let with_state = search(
        &alice,
        json!({"search_term": word, "include_state": true, "filter": {"rooms": [two]}}),
    );
    let state = with_state["state"][&two].as_array().cloned().unwrap_or_default();
    assert!(state.iter().any(|e| e["type"] == "m.room.name"), "{with_state}");
    assert!(with_state["state"].get(&one).is_none());

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

    // A room left is still searched, up to the departure; a room forgotten is not.
    send_text(&alice, &room, "h3", &format!("{word} while carol stays"));
    carol
        .post(
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
            &json!({}),
        )
        .expect(200);
    send_text(&alice, &room, "h4", &format!("{word} after carol left"));
    assert_eq!(
        bodies(&search(&carol, json!({"search_term": word}))),
        [format!("{word} while carol stays")]
    );
    carol
        .post(
            &format!("/_matrix/client/v3/rooms/{}/forget", enc(&room)),
            &json!({}),
        )
        .expect(200);
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

/// Search latency over one big room (`NEURITE_SEARCH_BENCH_EVENTS` messages, 100,000
/// by default), for `docs/benchmarks.md`: `cargo test --test system
/// search_latency -- --ignored --nocapture`. The room comes from another server through
/// the admin input; a local user joins and searches it: the first search indexes the
/// whole room, later ones only query.
#[test]
#[ignore]
fn search_latency_over_a_large_room() {
    use crate::room_input::{admin, input, Gen};
    use neurite::core::builder::NewEvent;
    use std::time::Instant;

    let total: usize = std::env::var("NEURITE_SEARCH_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let admin = admin();
    let (mut g, mut main) = Gen::new(777);
    let head = g.log.clone();
    input(&admin, g.room_id.as_str(), &head, &g.keys());
    let words = [
        "apple", "river", "stone", "cloud", "ember", "maple", "orbit", "quartz", "tundra", "velvet",
    ];
    let started = Instant::now();
    let mut batch = Vec::new();
    for i in 0..total {
        let body = format!(
            "{} {} {} message {i}{}",
            words[i % 10],
            words[(i / 10) % 10],
            words[(i / 100) % 10],
            if i % 1000 == 0 { " needle" } else { "" }
        );
        let sender = if i % 2 == 0 { "alice" } else { "bob" };
        batch.push(g.add(
            &mut main,
            sender,
            NewEvent {
                event_type: "m.room.message".into(),
                state_key: None,
                content: json!({"msgtype": "m.text", "body": body}),
                redacts: None,
            },
        ));
        if batch.len() == 500 || i + 1 == total {
            let path = format!("/_neurite/admin/v1/rooms/{}/input", enc(g.room_id.as_str()));
            let body = json!({
                "pdus": batch.iter().map(neurite::core::pdu::Pdu::to_federation_value).collect::<Vec<_>>(),
                "keys": g.keys(),
            });
            admin.post(&path, &body).expect(200);
            batch.clear();
        }
    }
    println!(
        "[search bench] {total} messages generated and input in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let (reader, _) = new_user("searchbench");
    let room = g.room_id.to_string();
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = reader.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), &json!({}));
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "join failed: {}", r.body);
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let timed = |room_events: Value| {
        let t = Instant::now();
        let answer = search(&reader, room_events);
        (t.elapsed().as_secs_f64() * 1000.0, answer)
    };
    let (first_ms, first) = timed(json!({"search_term": "needle"}));
    assert_eq!(first["count"], json!(total.div_ceil(1000)));
    let mut samples = Vec::new();
    for (i, term) in [
        "needle",
        "apple river",
        "quartz",
        "ember stone maple",
        "velvet orbit",
    ]
    .iter()
    .cycle()
    .take(50)
    .enumerate()
    {
        let order = if i % 2 == 0 { "rank" } else { "recent" };
        let (ms, answer) = timed(json!({"search_term": term, "order_by": order}));
        assert!(answer["count"].as_u64().unwrap_or(0) > 0, "{term}: {answer}");
        samples.push(ms);
    }
    samples.sort_by(f64::total_cmp);
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "[search bench] {total} messages: first search (indexes the room) {first_ms:.0} ms; \
         then {} searches: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        samples.len(),
        pct(0.5),
        pct(0.95),
        pct(1.0)
    );
}
