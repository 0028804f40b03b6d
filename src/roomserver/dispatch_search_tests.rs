//! Full-text search in a room (`RoomRequest::Search`) on SQLite's FTS5: matches by
//! rank and recency, the index caught up lazily, redactions dropped from it, history
//! visibility and the filter applied, context around results.

use serde_json::{json, Value};

use super::dispatch::{handle, Host};
use super::dispatch_tests::{host, message, room, send, user};
use super::protocol::{EventSpec, RoomRequest, SearchContext};
use crate::storage::sql::testing::MemorySql;

fn search(db: &MemorySql, host: &Host<'_>, who: &str, query: &str, newest_first: bool) -> Value {
    search_with(db, host, who, query, newest_first, None, None)
}

fn search_with(
    db: &MemorySql,
    host: &Host<'_>,
    who: &str,
    query: &str,
    newest_first: bool,
    filter: Option<Value>,
    context: Option<SearchContext>,
) -> Value {
    handle(
        db,
        host,
        RoomRequest::Search {
            user_id: user(who),
            query: crate::core::search::fts_query(query, &["body", "name", "topic"]).expect("words"),
            newest_first,
            limit: 10,
            filter,
            context,
        },
    )
    .expect("search")
}

fn bodies(answer: &Value) -> Vec<String> {
    answer["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["event"]["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn search_finds_what_the_user_may_see() {
    // "joined": Bob sees only what came after his join ("after").
    let (db, key) = room("joined");
    let host = host(&key);
    assert_eq!(bodies(&search(&db, &host, "alice", "before", false)), ["before"]);
    assert!(bodies(&search(&db, &host, "bob", "before", false)).is_empty());
    assert_eq!(bodies(&search(&db, &host, "bob", "after", false)), ["after"]);

    // New events are indexed on the next search; prefixes match, case aside.
    send(&db, &host, &user("alice"), message("Lunch at noon, lunchtime!"));
    send(&db, &host, &user("bob"), message("lunch sounds good"));
    send(&db, &host, &user("alice"), message("a lunch lunch lunch"));
    let recent = search(&db, &host, "bob", "LUNCH", true);
    assert_eq!(
        bodies(&recent),
        [
            "a lunch lunch lunch",
            "lunch sounds good",
            "Lunch at noon, lunchtime!"
        ]
    );
    assert_eq!(recent["count"], json!(3));
    let ranked = search(&db, &host, "bob", "lunch", false);
    assert_eq!(bodies(&ranked)[0], "a lunch lunch lunch");
    let rank = |i: usize| ranked["results"][i]["rank"].as_f64().expect("rank");
    assert!(rank(0) >= rank(1) && rank(1) >= rank(2));
    // Every word must match.
    assert_eq!(
        bodies(&search(&db, &host, "bob", "lunch good", false)),
        ["lunch sounds good"]
    );

    // The filter's senders and types.
    let by_bob = search_with(
        &db,
        &host,
        "alice",
        "lunch",
        true,
        Some(json!({"senders": [user("bob")]})),
        None,
    );
    assert_eq!(bodies(&by_bob), ["lunch sounds good"]);
    let not_messages = search_with(
        &db,
        &host,
        "alice",
        "lunch",
        true,
        Some(json!({"not_types": ["m.room.message"]})),
        None,
    );
    assert!(bodies(&not_messages).is_empty());

    // A redacted event is gone from the index.
    let target = send(&db, &host, &user("alice"), message("secret plans"))["event_id"]
        .as_str()
        .expect("event id")
        .to_owned();
    assert_eq!(
        bodies(&search(&db, &host, "bob", "secret", false)),
        ["secret plans"]
    );
    send(
        &db,
        &host,
        &user("alice"),
        EventSpec {
            event_type: "m.room.redaction".into(),
            state_key: None,
            content: json!({}),
            redacts: Some(target),
        },
    );
    assert!(bodies(&search(&db, &host, "bob", "secret", false)).is_empty());
    let hits: i64 = crate::roomserver::store::search::count(&db, "\"secret\"*", i64::MAX).expect("count");
    assert_eq!(hits, 0);

    // Names and topics are searched too.
    send(
        &db,
        &host,
        &user("alice"),
        EventSpec::state("m.room.topic", "", json!({"topic": "gardening club"})),
    );
    let topic = search(&db, &host, "bob", "gardening", false);
    assert_eq!(topic["results"][0]["event"]["type"], json!("m.room.topic"));
    // And the plain-text form of `m.topic`, not its other forms.
    send(
        &db,
        &host,
        &user("alice"),
        EventSpec::state(
            "m.room.topic",
            "",
            json!({"topic": "x", "m.topic": {"m.text": [
                {"mimetype": "text/html", "body": "<b>knitting</b> htmlonly"},
                {"body": "knitting circle"}
            ]}}),
        ),
    );
    assert_eq!(
        search(&db, &host, "bob", "knitting circle", false)["count"],
        json!(1)
    );
    assert_eq!(search(&db, &host, "bob", "htmlonly", false)["count"], json!(0));

    // Someone who was never in the room may not search it.
    let outsider = handle(
        &db,
        &host,
        RoomRequest::Search {
            user_id: user("mallory"),
            query: "\"lunch\"*".into(),
            newest_first: false,
            limit: 10,
            filter: None,
            context: None,
        },
    );
    assert_eq!(outsider.map_err(|f| f.status), Err(403));
}

#[test]
fn search_results_carry_their_context() {
    let (db, key) = room("shared");
    let host = host(&key);
    send(&db, &host, &user("alice"), message("one"));
    send(&db, &host, &user("alice"), message("needle"));
    send(&db, &host, &user("bob"), message("three"));
    let answer = search_with(
        &db,
        &host,
        "bob",
        "needle",
        false,
        None,
        Some(SearchContext {
            before: 1,
            after: 1,
            include_profile: true,
        }),
    );
    let context = &answer["results"][0]["context"];
    assert_eq!(context["events_before"][0]["content"]["body"], json!("one"));
    assert_eq!(context["events_after"][0]["content"]["body"], json!("three"));
    assert!(context["start"].as_str().is_some_and(|t| t.starts_with('r')));
    assert!(context["profile_info"].get(user("bob")).is_some());
}
