//! /sync against the real worker: initial and incremental sync, long-polling, gaps,
//! invites and leaves, filters, to-device, typing, receipts and account data.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{create_room, enc, new_user, send_text, shared, unique, Client};

fn join(c: &Client, room: &str) {
    c.post(
        &format!("/_matrix/client/v3/rooms/{}/join", enc(room)),
        &json!({}),
    )
    .expect(200);
}

/// A /sync; unless `extra` says otherwise, with `set_presence=offline` so that other
/// users' syncs (marking them online) do not wake the waits a test measures.
fn sync(c: &Client, since: Option<&str>, extra: &str) -> Value {
    let mut path = "/_matrix/client/v3/sync?".to_owned();
    if let Some(s) = since {
        path.push_str(&format!("since={s}&"));
    }
    path.push_str(extra);
    if !extra.contains("set_presence") {
        path.push_str(if extra.is_empty() {
            "set_presence=offline"
        } else {
            "&set_presence=offline"
        });
    }
    c.get(&path).expect(200)
}

fn next(body: &Value) -> String {
    body["next_batch"].as_str().expect("next_batch").to_owned()
}

fn parts(token: &str) -> Vec<i64> {
    token
        .trim_start_matches('s')
        .split('_')
        .map(|p| p.parse().expect("number"))
        .collect()
}

#[track_caller]
fn assert_forward(old: &str, new: &str) {
    let (a, b) = (parts(old), parts(new));
    assert!(
        a.iter().zip(&b).all(|(x, y)| y >= x),
        "token went backwards: {old} -> {new}"
    );
}

fn timeline<'a>(body: &'a Value, room: &str) -> &'a [Value] {
    body["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn bodies(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Syncs until `want` messages of `room` arrived, or 20 s pass.
fn collect_until(c: &Client, since: &str, room: &str, want: usize) -> (Vec<String>, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    let mut token = since.to_owned();
    while got.len() < want && Instant::now() < deadline {
        let body = sync(c, Some(&token), "timeout=5000");
        assert_forward(&token, &next(&body));
        got.extend(bodies(timeline(&body, room)));
        token = next(&body);
    }
    (got, token)
}

#[test]
fn initial_sync_shows_joined_rooms_with_state_and_timeline() {
    let (alice, alice_id) = new_user("alice");
    let room = create_room(&alice, json!({"name": "Sync room", "topic": "t"}));
    send_text(&alice, &room, "t1", "hello");
    let body = sync(&alice, None, "");
    let joined = &body["rooms"]["join"][&room];
    assert!(joined.is_object(), "room missing: {body}");
    let state_types: Vec<&str> = joined["state"]["events"]
        .as_array()
        .expect("state")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    let tl = timeline(&body, &room);
    let tl_types: Vec<&str> = tl.iter().filter_map(|e| e["type"].as_str()).collect();
    for t in ["m.room.create", "m.room.name", "m.room.member"] {
        assert!(state_types.contains(&t) || tl_types.contains(&t), "{t} missing");
    }
    assert_eq!(bodies(tl).last().map(String::as_str), Some("hello"));
    assert!(tl
        .iter()
        .all(|e| e["room_id"].is_null() || e["room_id"] == room.as_str()));
    let own = tl
        .iter()
        .find(|e| e["content"]["body"] == "hello")
        .expect("own message");
    assert_eq!(own["unsigned"]["transaction_id"], "t1");
    assert_eq!(joined["summary"]["m.joined_member_count"], 1);
    // The whole room fits the timeline, which so begins with its creation: paging back
    // from its `prev_batch` answers the room again, newest first down to the creation.
    assert_eq!(tl[0]["type"], "m.room.create");
    assert_eq!(joined["timeline"]["limited"], false);
    let prev = joined["timeline"]["prev_batch"].as_str().expect("prev_batch");
    let page = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50&from={prev}",
            enc(&room)
        ))
        .expect(200);
    let paged: Vec<&Value> = page["chunk"].as_array().expect("chunk").iter().collect();
    assert_eq!(paged.len(), tl.len(), "{page}");
    assert_eq!(
        paged.first().map(|e| &e["content"]["body"]),
        Some(&json!("hello"))
    );
    assert_eq!(paged.last().map(|e| &e["type"]), Some(&json!("m.room.create")));
    assert!(body["next_batch"].as_str().is_some_and(|t| t.starts_with('s')));
    assert!(body["to_device"]["events"].is_array());
    // Nothing new: a short timeout answers empty, with a token no older.
    let start = Instant::now();
    let again = sync(&alice, Some(&next(&body)), "timeout=300");
    assert!(start.elapsed() >= Duration::from_millis(250), "did not wait");
    assert!(again["rooms"]["join"].as_object().is_none_or(|m| m.is_empty()));
    assert_forward(&next(&body), &next(&again));
    // Bad tokens and parameters are client errors.
    alice
        .get("/_matrix/client/v3/sync?since=garbage")
        .expect_err(400, "M_INVALID_PARAM");
    alice
        .get("/_matrix/client/v3/sync?timeout=soon")
        .expect_err(400, "M_INVALID_PARAM");
    alice
        .get("/_matrix/client/v3/sync?filter=12345")
        .expect_err(400, "M_INVALID_PARAM");
    let _ = alice_id;
}

#[test]
fn long_poll_wakes_on_each_message_exactly_once_in_order() {
    let (alice, _) = new_user("alice");
    let (bob, _) = new_user("bob");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    join(&bob, &room);
    let mut token = next(&sync(&alice, None, ""));
    let mut seen = Vec::new();
    for i in 0..5 {
        let waiting = {
            let alice = alice.clone();
            let token = token.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                let body = sync(&alice, Some(&token), "timeout=10000");
                (body, start.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        send_text(&bob, &room, &format!("m{i}"), &format!("message {i}"));
        let (body, took) = waiting.join().expect("sync thread");
        assert!(took < Duration::from_secs(5), "long-poll took {took:?}");
        assert_forward(&token, &next(&body));
        token = next(&body);
        seen.extend(bodies(timeline(&body, &room)));
    }
    // Several at once, then read back.
    for i in 5..10 {
        send_text(&bob, &room, &format!("m{i}"), &format!("message {i}"));
    }
    let (more, _) = collect_until(&alice, &token, &room, 5);
    seen.extend(more);
    let expected: Vec<String> = (0..10).map(|i| format!("message {i}")).collect();
    assert_eq!(seen, expected);
}

#[test]
fn concurrent_senders_reach_a_random_reader_once_in_order() {
    const SENDERS: usize = 4;
    const EACH: usize = 250;
    let (reader, _) = new_user("reader");
    let room = create_room(&reader, json!({"preset": "public_chat"}));
    let senders: Vec<Client> = (0..SENDERS)
        .map(|_| {
            let (c, _) = new_user("sender");
            join(&c, &room);
            c
        })
        .collect();
    let mut token = next(&sync(&reader, None, ""));
    let handles: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(s, c)| {
            let room = room.clone();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    send_text(&c, &room, &format!("t{i}"), &format!("{s}:{i}"));
                }
            })
        })
        .collect();
    let mut got: Vec<String> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut n = 0u64;
    while got.len() < SENDERS * EACH && Instant::now() < deadline {
        n += 1;
        // "Random" moments: vary the pause with a cheap LCG.
        std::thread::sleep(Duration::from_millis((n * 7919) % 150));
        let body = sync(
            &reader,
            Some(&token),
            "timeout=3000&filter=%7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A100%7D%7D%7D",
        );
        assert_forward(&token, &next(&body));
        let tl = timeline(&body, &room);
        if !tl.is_empty() {
            assert_eq!(
                body["rooms"]["join"][&room]["timeline"]["limited"], false,
                "gap at sync {n}"
            );
        }
        ids.extend(
            tl.iter()
                .filter_map(|e| e["event_id"].as_str().map(str::to_owned)),
        );
        got.extend(bodies(tl));
        token = next(&body);
    }
    for h in handles {
        h.join().expect("sender");
    }
    assert_eq!(got.len(), SENDERS * EACH, "missing messages");
    let unique_ids: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique_ids.len(), ids.len(), "duplicates");
    // Per sender, in order.
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for b in &got {
        let (s, i) = b.split_once(':').expect("s:i");
        let i: i64 = i.parse().expect("i");
        let prev = last.insert(s.to_owned(), i).unwrap_or(-1);
        assert_eq!(i, prev + 1, "sender {s} out of order");
    }
    // The room's order equals /messages order (paged: pages are capped).
    let mut paged = Vec::new();
    let mut from = String::new();
    loop {
        let page = reader
            .get(&format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=f&limit=500{from}",
                enc(&room)
            ))
            .expect(200);
        let chunk = page["chunk"].as_array().expect("chunk");
        if chunk.is_empty() {
            break;
        }
        paged.extend(bodies(chunk));
        match page["end"].as_str() {
            Some(end) => from = format!("&from={end}"),
            None => break,
        }
    }
    assert_eq!(paged, got);
}

#[test]
fn limited_timeline_paginates_from_prev_batch_and_keeps_state_across_the_gap() {
    let (alice, _) = new_user("alice");
    let (bob, _) = new_user("bob");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    join(&bob, &room);
    let filter = enc(r#"{"room":{"timeline":{"limit":3}}}"#);
    let token = next(&sync(&bob, None, &format!("filter={filter}")));
    for i in 0..6 {
        send_text(&alice, &room, &format!("g{i}"), &format!("gap {i}"));
    }
    alice
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.topic", enc(&room)),
            &json!({"topic": "mid-gap"}),
        )
        .expect(200);
    for i in 6..9 {
        send_text(&alice, &room, &format!("g{i}"), &format!("gap {i}"));
    }
    std::thread::sleep(Duration::from_millis(300));
    let body = sync(&bob, Some(&token), &format!("filter={filter}&timeout=5000"));
    let r = &body["rooms"]["join"][&room];
    assert_eq!(r["timeline"]["limited"], true);
    assert_eq!(bodies(timeline(&body, &room)), ["gap 6", "gap 7", "gap 8"]);
    let topic_in_state = r["state"]["events"]
        .as_array()
        .expect("state")
        .iter()
        .any(|e| e["type"] == "m.room.topic" && e["content"]["topic"] == "mid-gap");
    assert!(topic_in_state, "state change in the gap missing: {r}");
    let prev = r["timeline"]["prev_batch"].as_str().expect("prev_batch");
    // Paginate back from prev_batch: exactly the messages before the timeline.
    let mut from = prev.to_owned();
    let mut older = Vec::new();
    for _ in 0..10 {
        let page = bob
            .get(&format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=4&from={from}",
                enc(&room)
            ))
            .expect(200);
        older.extend(bodies(page["chunk"].as_array().expect("chunk")));
        match page["end"].as_str() {
            Some(end) if !older.contains(&"gap 0".to_owned()) => from = end.to_owned(),
            _ => break,
        }
    }
    assert_eq!(older, ["gap 5", "gap 4", "gap 3", "gap 2", "gap 1", "gap 0"]);
}

#[test]
fn invites_and_leaves_have_their_sections() {
    let (alice, _) = new_user("alice");
    let (bob, bob_id) = new_user("bob");
    let room = create_room(&alice, json!({"preset": "private_chat", "name": "Secret"}));
    let token = next(&sync(&bob, None, ""));
    alice
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            &json!({"user_id": bob_id}),
        )
        .expect(200);
    let body = sync(&bob, Some(&token), "timeout=5000");
    let invite = &body["rooms"]["invite"][&room];
    let stripped = invite["invite_state"]["events"].as_array().expect("invite_state");
    assert!(stripped
        .iter()
        .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Secret"));
    assert!(stripped.iter().any(|e| e["type"] == "m.room.member"
        && e["state_key"] == bob_id.as_str()
        && e["content"]["membership"] == "invite"));
    // Initial sync shows the invite too.
    assert!(sync(&bob, None, "")["rooms"]["invite"][&room].is_object());
    // Join: the room arrives with its full state (before or in the timeline).
    join(&bob, &room);
    let joined = sync(&bob, Some(&next(&body)), "timeout=5000");
    let r = &joined["rooms"]["join"][&room];
    let has_create = |v: &Value| {
        v.as_array()
            .is_some_and(|l| l.iter().any(|e| e["type"] == "m.room.create"))
    };
    assert!(
        has_create(&r["state"]["events"]) || has_create(&r["timeline"]["events"]),
        "full state on join: {r}"
    );
    send_text(&alice, &room, "x1", "before leave");
    let t2 = next(&sync(&bob, Some(&next(&joined)), "timeout=5000"));
    bob.post(
        &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
        &json!({}),
    )
    .expect(200);
    send_text(&alice, &room, "x2", "after leave");
    let left = sync(&bob, Some(&t2), "timeout=5000");
    let leave = &left["rooms"]["leave"][&room];
    let events = leave["timeline"]["events"].as_array().expect("leave timeline");
    let last = events.last().expect("leave event");
    assert_eq!(
        (last["type"].as_str(), last["content"]["membership"].as_str()),
        (Some("m.room.member"), Some("leave"))
    );
    assert!(!bodies(events).contains(&"after leave".to_owned()));
    assert!(left["rooms"]["join"].get(&room).is_none());
    // Rejoin: back in rooms.join.
    bob.post(
        &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
        &json!({"user_id": bob_id}),
    )
    .expect_err(403, "M_FORBIDDEN");
    alice
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            &json!({"user_id": bob_id}),
        )
        .expect(200);
    join(&bob, &room);
    let back = sync(&bob, Some(&next(&left)), "timeout=5000");
    assert!(back["rooms"]["join"][&room].is_object(), "rejoined room: {back}");
}

#[test]
fn filters_select_events_and_lazy_load_members() {
    let (alice, alice_id) = new_user("alice");
    let (bob, bob_id) = new_user("bob");
    let (carol, carol_id) = new_user("carol");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    join(&bob, &room);
    join(&carol, &room);
    send_text(&bob, &room, "b1", "from bob");
    alice
        .put(
            &format!("/_matrix/client/v3/rooms/{}/send/m.reaction/r1", enc(&room)),
            &json!({}),
        )
        .expect(200);
    // A stored filter.
    let filter = json!({"room": {"timeline": {"limit": 1, "not_types": ["m.reaction"]}, "state": {"lazy_load_members": true}}});
    let id = alice
        .post(
            &format!("/_matrix/client/v3/user/{}/filter", enc(&alice_id)),
            &filter,
        )
        .expect(200)["filter_id"]
        .as_str()
        .expect("filter_id")
        .to_owned();
    let stored = alice
        .get(&format!("/_matrix/client/v3/user/{}/filter/{id}", enc(&alice_id)))
        .expect(200);
    assert_eq!(stored, filter);
    bob.get(&format!("/_matrix/client/v3/user/{}/filter/{id}", enc(&alice_id)))
        .expect_err(403, "M_FORBIDDEN");
    alice
        .post(
            &format!("/_matrix/client/v3/user/{}/filter", enc(&alice_id)),
            &json!({"room": {"timeline": {"limit": "x"}}}),
        )
        .expect_err(400, "M_BAD_JSON");
    let body = sync(&alice, None, &format!("filter={id}"));
    let r = &body["rooms"]["join"][&room];
    assert_eq!(bodies(timeline(&body, &room)), ["from bob"]);
    assert_eq!(r["timeline"]["limited"], true);
    let members: Vec<&str> = r["state"]["events"]
        .as_array()
        .expect("state")
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .filter_map(|e| e["state_key"].as_str())
        .collect();
    assert!(
        members.contains(&bob_id.as_str()),
        "sender's member event: {members:?}"
    );
    assert!(
        !members.contains(&carol_id.as_str()),
        "lazy-loaded away: {members:?}"
    );
    // Inline filter with types, and event_fields.
    let inline = enc(r#"{"room":{"timeline":{"types":["m.reaction"]}},"event_fields":["type","sender"]}"#);
    let body = sync(&alice, None, &format!("filter={inline}"));
    let tl = timeline(&body, &room);
    assert_eq!(tl.len(), 1);
    assert_eq!(tl[0], json!({"type": "m.reaction", "sender": alice_id}));
    // not_rooms hides the room.
    let hide = enc(&format!(r#"{{"room":{{"not_rooms":["{room}"]}}}}"#));
    assert!(sync(&alice, None, &format!("filter={hide}"))["rooms"]["join"]
        .get(&room)
        .is_none());
    let _ = carol;
}

#[test]
fn to_device_is_delivered_until_acknowledged_then_gone() {
    let (alice, _) = new_user("alice");
    let (bob, bob_id) = new_user("bob");
    let t0 = next(&sync(&bob, None, ""));
    let msg = json!({"messages": {bob_id.clone(): {"*": {"secret": 42}}}});
    alice
        .put("/_matrix/client/v3/sendToDevice/m.test/txn1", &msg)
        .expect(200);
    alice
        .put("/_matrix/client/v3/sendToDevice/m.test/txn1", &msg)
        .expect(200);
    let first = sync(&bob, Some(&t0), "timeout=5000");
    let events = first["to_device"]["events"].as_array().expect("to_device");
    assert_eq!(events.len(), 1, "exactly once per transaction: {first}");
    assert_eq!(events[0]["type"], "m.test");
    assert_eq!(events[0]["content"]["secret"], 42);
    // Same since again: not acknowledged yet, sent again.
    let repeat = sync(&bob, Some(&t0), "");
    assert_eq!(
        repeat["to_device"]["events"].as_array().expect("to_device").len(),
        1
    );
    // The next since acknowledges: gone, even for the old token.
    let acked = sync(&bob, Some(&next(&first)), "");
    assert!(acked["to_device"]["events"]
        .as_array()
        .expect("to_device")
        .is_empty());
    let old = sync(&bob, Some(&t0), "");
    assert!(old["to_device"]["events"]
        .as_array()
        .expect("to_device")
        .is_empty());
    alice
        .put(
            "/_matrix/client/v3/sendToDevice/m.test/txn2",
            &json!({"messages": "nope"}),
        )
        .expect_err(400, "M_BAD_JSON");
}

#[test]
fn typing_receipts_and_unread_counts_appear() {
    let (alice, alice_id) = new_user("alice");
    let (bob, bob_id) = new_user("bob");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    join(&bob, &room);
    let t0 = next(&sync(&alice, None, ""));
    let r = enc(&room);
    bob.put(
        &format!("/_matrix/client/v3/rooms/{r}/typing/{}", enc(&bob_id)),
        &json!({"typing": true, "timeout": 4000}),
    )
    .expect(200);
    // (A timeout long enough that a loaded machine still answers before it expires.)
    let body = sync(&alice, Some(&t0), "timeout=5000");
    let eph = body["rooms"]["join"][&room]["ephemeral"]["events"]
        .as_array()
        .expect("ephemeral");
    let typing = eph.iter().find(|e| e["type"] == "m.typing").expect("m.typing");
    assert_eq!(typing["content"]["user_ids"], json!([bob_id]));
    // Expiry wakes the stream with an empty list.
    let expired = sync(&alice, Some(&next(&body)), "timeout=10000");
    let eph = expired["rooms"]["join"][&room]["ephemeral"]["events"]
        .as_array()
        .expect("ephemeral");
    let typing = eph
        .iter()
        .find(|e| e["type"] == "m.typing")
        .expect("m.typing after expiry");
    assert_eq!(typing["content"]["user_ids"], json!([]));
    // Unread counts, then a receipt resets them.
    let ev1 = send_text(&bob, &room, "u1", "hello there");
    // A mention is `m.mentions` (spec v1.17 dropped the default rules that searched
    // the body).
    let ev2 = bob
        .put(
            &format!("/_matrix/client/v3/rooms/{r}/send/m.room.message/{}", unique("u")),
            &json!({"msgtype": "m.text", "body": "hey alice", "m.mentions": {"user_ids": [alice_id]}}),
        )
        .expect(200)["event_id"]
        .as_str()
        .expect("event_id")
        .to_owned();
    let counts = sync(&alice, Some(&next(&expired)), "timeout=5000");
    let unread = &counts["rooms"]["join"][&room]["unread_notifications"];
    assert_eq!(unread["notification_count"], 2, "{counts}");
    assert_eq!(unread["highlight_count"], 1);
    alice
        .post(
            &format!("/_matrix/client/v3/rooms/{r}/receipt/m.read/{}", enc(&ev2)),
            &json!({}),
        )
        .expect(200);
    let after = sync(&alice, Some(&next(&counts)), "timeout=5000");
    let room_body = &after["rooms"]["join"][&room];
    assert_eq!(room_body["unread_notifications"]["notification_count"], 0);
    let receipt = room_body["ephemeral"]["events"]
        .as_array()
        .expect("ephemeral")
        .iter()
        .find(|e| e["type"] == "m.receipt")
        .cloned()
        .expect("m.receipt");
    assert!(receipt["content"][&ev2]["m.read"][&alice_id]["ts"].is_number());
    // Bob sees the public receipt; a private one only its owner.
    let bt = next(&sync(&bob, None, ""));
    alice
        .post(
            &format!(
                "/_matrix/client/v3/rooms/{r}/receipt/m.read.private/{}",
                enc(&ev1)
            ),
            &json!({"thread_id": "main"}),
        )
        .expect(200);
    alice
        .post(
            &format!("/_matrix/client/v3/rooms/{r}/read_markers"),
            &json!({"m.fully_read": ev2}),
        )
        .expect(200);
    let own = sync(&alice, Some(&next(&after)), "timeout=5000");
    let own_room = &own["rooms"]["join"][&room];
    let private = own_room["ephemeral"]["events"]
        .as_array()
        .expect("ephemeral")
        .iter()
        .any(|e| {
            e["type"] == "m.receipt" && e["content"][&ev1]["m.read.private"][&alice_id]["thread_id"] == "main"
        });
    assert!(private, "own private receipt: {own_room}");
    let fully_read = own_room["account_data"]["events"]
        .as_array()
        .expect("account_data")
        .iter()
        .any(|e| e["type"] == "m.fully_read" && e["content"]["event_id"] == ev2.as_str());
    assert!(fully_read, "m.fully_read: {own_room}");
    let bob_view = sync(&bob, Some(&bt), "timeout=1000");
    let leaked = bob_view.to_string().contains("m.read.private");
    assert!(!leaked, "private receipt leaked");
    alice
        .post(
            &format!("/_matrix/client/v3/rooms/{r}/receipt/m.bogus/{}", enc(&ev1)),
            &json!({}),
        )
        .expect_err(400, "M_INVALID_PARAM");
    alice
        .put(
            &format!("/_matrix/client/v3/rooms/{r}/typing/{}", enc(&bob_id)),
            &json!({"typing": true}),
        )
        .expect_err(403, "M_FORBIDDEN");
}

#[test]
fn account_data_and_presence() {
    let (alice, alice_id) = new_user("alice");
    let t0 = next(&sync(&alice, None, ""));
    let waiting = {
        let alice = alice.clone();
        let t0 = t0.clone();
        std::thread::spawn(move || sync(&alice, Some(&t0), "timeout=10000"))
    };
    std::thread::sleep(Duration::from_millis(300));
    alice
        .put(
            &format!("/_matrix/client/v3/user/{}/account_data/m.test", enc(&alice_id)),
            &json!({"n": 1}),
        )
        .expect(200);
    let body = waiting.join().expect("sync thread");
    let events = body["account_data"]["events"].as_array().expect("account_data");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "m.test" && e["content"]["n"] == 1),
        "{body}"
    );
    assert_forward(&t0, &next(&body));
    // Not again.
    let again = sync(&alice, Some(&next(&body)), "");
    assert!(again["account_data"]["events"]
        .as_array()
        .expect("list")
        .is_empty());
    // Initial sync includes it.
    let initial = sync(&alice, None, "");
    assert!(initial["account_data"]["events"]
        .as_array()
        .expect("list")
        .iter()
        .any(|e| e["type"] == "m.test"));
    // Presence.
    let p = format!("/_matrix/client/v3/presence/{}/status", enc(&alice_id));
    alice
        .put(&p, &json!({"presence": "online", "status_msg": "here"}))
        .expect(200);
    let got = alice.get(&p).expect(200);
    assert_eq!(
        (got["presence"].as_str(), got["status_msg"].as_str()),
        (Some("online"), Some("here"))
    );
    alice
        .put(&p, &json!({"presence": "dancing"}))
        .expect_err(400, "M_INVALID_PARAM");
    let (bob, _) = new_user("bob");
    bob.put(&p, &json!({"presence": "online"}))
        .expect_err(403, "M_FORBIDDEN");
    let _ = shared();
}

/// The `m.presence` events of `user` in a sync answer.
fn presence_of<'a>(body: &'a Value, user: &str) -> Vec<&'a Value> {
    body["presence"]["events"]
        .as_array()
        .map(|l| l.iter().filter(|e| e["sender"] == user).collect())
        .unwrap_or_default()
}

#[test]
fn presence_changes_reach_room_mates_once() {
    let (alice, alice_id) = new_user("alice");
    let (bob, _) = new_user("bob");
    let (carol, _) = new_user("carol");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    join(&bob, &room);
    // Bob and Carol sync without marking themselves online.
    let quiet = "set_presence=offline";
    let tb = next(&sync(&bob, None, quiet));
    let tc = next(&sync(&carol, None, quiet));
    let waiting = {
        let bob = bob.clone();
        let tb = tb.clone();
        std::thread::spawn(move || sync(&bob, Some(&tb), "timeout=10000&set_presence=offline"))
    };
    std::thread::sleep(Duration::from_millis(300));
    let p = format!("/_matrix/client/v3/presence/{}/status", enc(&alice_id));
    alice
        .put(&p, &json!({"presence": "unavailable", "status_msg": "lunch"}))
        .expect(200);
    // Bob's waiting sync wakes with it (his room timeline may be empty).
    let mut body = waiting.join().expect("sync thread");
    let deadline = Instant::now() + Duration::from_secs(10);
    while presence_of(&body, &alice_id).is_empty() && Instant::now() < deadline {
        body = sync(&bob, Some(&next(&body)), "timeout=2000&set_presence=offline");
    }
    let got = presence_of(&body, &alice_id);
    assert_eq!(got.len(), 1, "{body}");
    assert_eq!(got[0]["type"], "m.presence");
    assert_eq!(got[0]["content"]["presence"], "unavailable");
    assert_eq!(got[0]["content"]["status_msg"], "lunch");
    assert_eq!(got[0]["content"]["currently_active"], false);
    assert!(got[0]["content"]["last_active_ago"].is_u64());
    // Once: the same status again is no change.
    alice
        .put(&p, &json!({"presence": "unavailable", "status_msg": "lunch"}))
        .expect(200);
    let quiet_sync = sync(&bob, Some(&next(&body)), "timeout=500&set_presence=offline");
    assert!(presence_of(&quiet_sync, &alice_id).is_empty(), "{quiet_sync}");
    // Alice syncing marks her online (clients' default), keeping her message.
    sync(&alice, None, "set_presence=online");
    let mut body = sync(
        &bob,
        Some(&next(&quiet_sync)),
        "timeout=5000&set_presence=offline",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while presence_of(&body, &alice_id).is_empty() && Instant::now() < deadline {
        body = sync(&bob, Some(&next(&body)), "timeout=2000&set_presence=offline");
    }
    let got = presence_of(&body, &alice_id);
    assert_eq!(
        (
            got[0]["content"]["presence"].as_str(),
            got[0]["content"]["status_msg"].as_str()
        ),
        (Some("online"), Some("lunch"))
    );
    // A filter can leave presence out.
    let none = sync(
        &bob,
        None,
        "filter=%7B%22presence%22%3A%7B%22types%22%3A%5B%5D%7D%7D",
    );
    assert!(none["presence"]["events"].as_array().expect("list").is_empty());
    // An initial sync has the latest presence of room mates; Carol shares no room.
    let initial = sync(&bob, None, quiet);
    assert_eq!(presence_of(&initial, &alice_id).len(), 1);
    let carol_view = sync(&carol, Some(&tc), "timeout=0&set_presence=offline");
    assert!(presence_of(&carol_view, &alice_id).is_empty(), "{carol_view}");
}

#[test]
fn device_changes_wake_a_waiting_sync() {
    let (alice, alice_id) = new_user("alice");
    let (bob, _) = new_user("bob");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    join(&bob, &room);
    // A second device of Alice's, to delete later.
    let second = shared()
        .client()
        .post(
            "/_matrix/client/v3/login",
            &json!({"type": "m.login.password",
                    "identifier": {"type": "m.id.user", "user": alice_id},
                    "password": "correct horse battery"}),
        )
        .expect(200);
    let device = second["device_id"].as_str().expect("device").to_owned();
    // Bob waits with nothing else to come.
    let mut token = next(&sync(&bob, None, "set_presence=offline"));
    loop {
        let body = sync(&bob, Some(&token), "timeout=500&set_presence=offline");
        token = next(&body);
        if body["device_lists"]["changed"]
            .as_array()
            .is_none_or(|l| l.is_empty())
            && body["rooms"]["join"].as_object().is_none_or(|m| m.is_empty())
        {
            break;
        }
    }
    let waiting = {
        let bob = bob.clone();
        let token = token.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let body = sync(&bob, Some(&token), "timeout=20000&set_presence=offline");
            (body, start.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let auth = json!({"auth": {"type": "m.login.password",
                               "identifier": {"type": "m.id.user", "user": alice_id},
                               "password": "correct horse battery"}});
    alice
        .raw(
            "DELETE",
            &format!("/_matrix/client/v3/devices/{device}"),
            Some(auth.to_string().as_bytes()),
            &[],
        )
        .expect(200);
    let (body, waited) = waiting.join().expect("sync thread");
    assert!(waited < Duration::from_secs(15), "the long-poll was not woken");
    let changed = body["device_lists"]["changed"].as_array().expect("changed");
    assert!(changed.iter().any(|u| u == &json!(alice_id)), "{body}");
}

#[test]
fn new_room_mates_learn_each_others_presence() {
    let (alice, alice_id) = new_user("alice");
    let (bob, bob_id) = new_user("bob");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    let status = |id: &str| format!("/_matrix/client/v3/presence/{}/status", enc(id));
    // Both set a presence before they share a room.
    alice
        .put(
            &status(&alice_id),
            &json!({"presence": "online", "status_msg": "here"}),
        )
        .expect(200);
    bob.put(&status(&bob_id), &json!({"presence": "unavailable"}))
        .expect(200);
    let quiet = "set_presence=offline";
    let ta = next(&sync(&alice, None, quiet));
    let tb = next(&sync(&bob, None, quiet));
    join(&bob, &room);
    let wait_for = |who: &Client, since: &str, of: &str| {
        let mut body = sync(who, Some(since), "timeout=2000&set_presence=offline");
        let deadline = Instant::now() + Duration::from_secs(10);
        while presence_of(&body, of).is_empty() && Instant::now() < deadline {
            body = sync(who, Some(&next(&body)), "timeout=2000&set_presence=offline");
        }
        body
    };
    // The newcomer learns who is there, and they learn of the newcomer.
    let bob_view = wait_for(&bob, &tb, &alice_id);
    let got = presence_of(&bob_view, &alice_id);
    assert_eq!(got.len(), 1, "{bob_view}");
    assert_eq!(got[0]["content"]["presence"], "online");
    assert_eq!(got[0]["content"]["status_msg"], "here");
    let alice_view = wait_for(&alice, &ta, &bob_id);
    let got = presence_of(&alice_view, &bob_id);
    assert_eq!(got.len(), 1, "{alice_view}");
    assert_eq!(got[0]["content"]["presence"], "unavailable");
    // Told once: nothing more without a change.
    let again = sync(&bob, Some(&next(&bob_view)), "timeout=500&set_presence=offline");
    assert!(presence_of(&again, &alice_id).is_empty(), "{again}");
}
