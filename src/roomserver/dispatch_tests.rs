//! Room requests end to end on native SQLite: history visibility on reads.

use ruma::{OwnedUserId, RoomVersionId};
use serde_json::{json, Value};

use crate::core::builder::{build_create_event, Signer};
use crate::core::keys::SigningKey;
use crate::storage::sql::testing::MemorySql;

use super::dispatch::{handle, Host};
use super::protocol::{Dir, EventSpec, RoomRequest};

fn clock() -> f64 {
    0.0
}

pub(super) fn user(name: &str) -> String {
    format!("@{name}:hs.test")
}

fn send_request(sender: &str, event: EventSpec) -> RoomRequest {
    RoomRequest::Send {
        sender: sender.to_owned(),
        device_id: None,
        txn_id: None,
        event,
    }
}

pub(super) fn send(db: &MemorySql, host: &Host<'_>, sender: &str, event: EventSpec) -> Value {
    handle(db, host, send_request(sender, event)).expect("send")
}

pub(super) fn message(body: &str) -> EventSpec {
    EventSpec {
        event_type: "m.room.message".into(),
        state_key: None,
        content: json!({ "msgtype": "m.text", "body": body }),
        redacts: None,
    }
}

fn bodies(db: &MemorySql, host: &Host<'_>, who: &str) -> Vec<String> {
    let page = handle(
        db,
        host,
        RoomRequest::Messages {
            user_id: user(who),
            from: None,
            to: None,
            dir: Dir::Forward,
            limit: 100,
            filter: None,
        },
    )
    .expect("messages");
    page["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

/// Alice's room with the given history visibility; she says "before", invites bob, he
/// joins, she says "after".
/// The host the tests' rooms run on.
pub(super) fn host(key: &SigningKey) -> Host<'_> {
    Host {
        server_name: "hs.test",
        key,
        now_ms: 10,
        clock_ms: clock,
    }
}

pub(super) fn room(visibility: &str) -> (MemorySql, SigningKey) {
    let db = MemorySql::new();
    let key = SigningKey::from_seed([5; 32], "t").expect("key");
    let host = host(&key);
    let version = RoomVersionId::V12;
    let rules = version.rules().expect("rules");
    let alice = OwnedUserId::try_from(user("alice")).expect("user");
    let signer = Signer {
        server_name: "hs.test",
        key: &key,
        now_ms: 1,
    };
    let create = build_create_event(&version, &rules, &alice, None, json!({}), signer).expect("create");
    let steps = vec![
        EventSpec::state("m.room.member", &user("alice"), json!({"membership": "join"})),
        EventSpec::state("m.room.power_levels", "", json!({"users": {}})),
        EventSpec::state("m.room.join_rules", "", json!({"join_rule": "invite"})),
        EventSpec::state(
            "m.room.history_visibility",
            "",
            json!({"history_visibility": visibility}),
        ),
    ];
    handle(
        &db,
        &host,
        RoomRequest::Create {
            create: create.to_federation_value(),
            sender: user("alice"),
            steps,
        },
    )
    .expect("create room");
    send(&db, &host, &user("alice"), message("before"));
    send(
        &db,
        &host,
        &user("alice"),
        EventSpec::state("m.room.member", &user("bob"), json!({"membership": "invite"})),
    );
    send(&db, &host, &user("alice"), message("while invited"));
    send(
        &db,
        &host,
        &user("bob"),
        EventSpec::state("m.room.member", &user("bob"), json!({"membership": "join"})),
    );
    send(&db, &host, &user("alice"), message("after"));
    (db, key)
}

#[test]
fn history_visibility_decides_what_a_new_member_sees() {
    for (visibility, expected) in [
        ("shared", vec!["before", "while invited", "after"]),
        ("invited", vec!["while invited", "after"]),
        ("joined", vec!["after"]),
        ("world_readable", vec!["before", "while invited", "after"]),
    ] {
        let (db, key) = room(visibility);
        let host = host(&key);
        assert_eq!(bodies(&db, &host, "bob"), expected, "{visibility}");
        assert_eq!(
            bodies(&db, &host, "alice"),
            ["before", "while invited", "after"],
            "{visibility}"
        );
        // Strangers see nothing, except in world-readable rooms.
        let stranger = handle(
            &db,
            &host,
            RoomRequest::Messages {
                user_id: user("eve"),
                from: None,
                to: None,
                dir: Dir::Backward,
                limit: 10,
                filter: None,
            },
        );
        assert_eq!(stranger.is_ok(), visibility == "world_readable", "{visibility}");
    }
}

fn unread(db: &MemorySql, host: &Host<'_>, who: &str, push_rules: Option<Value>) -> Value {
    let slice = handle(
        db,
        host,
        RoomRequest::SyncSlice {
            user_id: user(who),
            device_id: None,
            slice: super::protocol::SliceSpec {
                full: true,
                push_rules,
                ..Default::default()
            },
        },
    )
    .expect("slice");
    slice["unread_notifications"].clone()
}

fn counts(notifications: i64, highlights: i64) -> Value {
    json!({ "notification_count": notifications, "highlight_count": highlights })
}

#[test]
fn unread_counts_follow_the_users_push_rules() {
    let (db, key) = room("shared");
    let host = host(&key);
    // Bob joined before "after": one message from alice, none of his own.
    send(&db, &host, &user("bob"), message("my own"));
    assert_eq!(unread(&db, &host, "bob", None), counts(1, 0));
    let mention = EventSpec {
        content: json!({ "msgtype": "m.text", "body": "bob!", "m.mentions": { "user_ids": [user("bob")] } }),
        ..message("")
    };
    send(&db, &host, &user("alice"), mention);
    let notice = EventSpec {
        content: json!({ "msgtype": "m.notice", "body": "bot" }),
        ..message("")
    };
    send(&db, &host, &user("alice"), notice);
    assert_eq!(unread(&db, &host, "bob", None), counts(2, 1));
    // His rules as the edge passes them: muting the room leaves the mention (an override).
    let bob = OwnedUserId::try_from(user("bob")).expect("user");
    let mut rules = crate::core::push::Ruleset::server_default(&bob);
    let room_id = handle(
        &db,
        &host,
        RoomRequest::Summary {
            user_id: String::new(),
        },
    )
    .expect("summary")["room_id"]
        .as_str()
        .expect("room id")
        .to_owned();
    crate::core::push::edit::put(
        &mut rules,
        &ruma::push::RuleKind::Room,
        &room_id,
        &json!({ "actions": [] }),
        None,
        None,
    )
    .expect("room rule");
    let json_rules = crate::core::push::ruleset_json(&rules);
    assert_eq!(unread(&db, &host, "bob", Some(json_rules)), counts(1, 1));
    // Unreadable rules fall back to the defaults.
    assert_eq!(unread(&db, &host, "bob", Some(json!("nonsense"))), counts(2, 1));
}

#[test]
fn unread_counts_stop_at_the_scan_bound() {
    let (db, key) = room("shared");
    let host = host(&key);
    let extra = super::sync_slice::UNREAD_SCAN + 5;
    for i in 0..extra {
        send(&db, &host, &user("alice"), message(&format!("m{i}")));
    }
    assert_eq!(
        unread(&db, &host, "bob", None),
        counts(super::sync_slice::UNREAD_SCAN, 0)
    );
}

#[test]
fn remembered_verdicts_follow_redactions_and_new_events() {
    let (db, key) = room("shared");
    let host = host(&key);
    let mention = EventSpec {
        content: json!({ "msgtype": "m.text", "body": "bob!", "m.mentions": { "user_ids": [user("bob")] } }),
        ..message("")
    };
    let sent = send(&db, &host, &user("alice"), mention);
    let event_id = sent["event_id"].as_str().expect("event id").to_owned();
    assert_eq!(unread(&db, &host, "bob", None), counts(2, 1));
    assert_eq!(unread(&db, &host, "bob", None), counts(2, 1), "from the memo");
    send(&db, &host, &user("alice"), message("more"));
    assert_eq!(unread(&db, &host, "bob", None), counts(3, 1));
    // A redacted mention no longer highlights; it is still a message, so it notifies,
    // and the redaction itself does not.
    let redaction = EventSpec {
        event_type: "m.room.redaction".into(),
        state_key: None,
        content: json!({ "redacts": event_id }),
        redacts: Some(event_id.clone()),
    };
    send(&db, &host, &user("alice"), redaction);
    assert_eq!(unread(&db, &host, "bob", None), counts(3, 0));
}

#[test]
fn counts_kept_up_to_date_match_counts_made_afresh() {
    use super::dispatch::handle_cached;
    use super::engine::Cache;
    let (db, key) = room("shared");
    let host = host(&key);
    // One cache across requests, as in the Durable Object.
    let cache = Cache::default();
    let kept = |who: &str| {
        let slice = handle_cached(
            &db,
            &host,
            &cache,
            RoomRequest::SyncSlice {
                user_id: user(who),
                device_id: None,
                slice: super::protocol::SliceSpec {
                    full: true,
                    ..Default::default()
                },
            },
        )
        .expect("slice");
        slice["unread_notifications"].clone()
    };
    // Sends through the same cache, as the Durable Object does.
    let send_here = |sender: &str, event: EventSpec| {
        handle_cached(&db, &host, &cache, send_request(sender, event)).expect("send")
    };
    let mention = |n: usize| EventSpec {
        content: json!({ "msgtype": "m.text", "body": format!("hey {n}"), "m.mentions": { "user_ids": [user("bob")] } }),
        ..message("")
    };
    let mut last = String::new();
    for step in 0..40 {
        let ev = match step % 7 {
            0 => send_here(&user("alice"), mention(step)),
            3 => send_here(&user("bob"), message("own")),
            5 if !last.is_empty() => send_here(
                &user("alice"),
                EventSpec {
                    event_type: "m.room.redaction".into(),
                    state_key: None,
                    content: json!({ "redacts": last }),
                    redacts: Some(last.clone()),
                },
            ),
            _ => send_here(&user("alice"), message("hello")),
        };
        if step % 7 == 0 {
            last = ev["event_id"].as_str().expect("event id").to_owned();
        }
        if step == 20 {
            let receipt = RoomRequest::Receipt {
                user_id: user("bob"),
                receipt_type: "m.read".into(),
                event_id: ev["event_id"].as_str().expect("event id").to_owned(),
                thread_id: None,
            };
            handle_cached(&db, &host, &cache, receipt).expect("receipt");
        }
        assert_eq!(kept("bob"), unread(&db, &host, "bob", None), "step {step}");
    }
    assert_ne!(kept("bob"), counts(0, 0), "something is unread at the end");
}

#[test]
fn federation_queries_answer_in_federation_shapes() {
    use super::protocol::FederationQuery;
    let (db, key) = room("shared");
    let host = host(&key);
    let ask = |query: FederationQuery| handle(&db, &host, RoomRequest::Federation { origin: None, query });
    let last = send(&db, &host, &user("alice"), message("last"));
    let last_id = last["event_id"].as_str().expect("event_id").to_owned();

    let ids = ask(FederationQuery::StateIds {
        event_id: last_id.clone(),
    })
    .expect("state ids");
    let pdu_ids = ids["pdu_ids"].as_array().expect("pdu_ids");
    assert_eq!(
        pdu_ids.len(),
        6,
        "create, 2 members, power, join rules, visibility: {ids}"
    );
    assert!(!ids["auth_chain_ids"].as_array().expect("chain").is_empty());
    let state = ask(FederationQuery::State {
        event_id: last_id.clone(),
    })
    .expect("state");
    let types: std::collections::BTreeSet<&str> = state["pdus"]
        .as_array()
        .expect("pdus")
        .iter()
        .filter_map(|p| p["type"].as_str())
        .collect();
    assert!(types.contains("m.room.history_visibility") && types.contains("m.room.create"));
    let auth = ask(FederationQuery::EventAuth {
        event_id: last_id.clone(),
    })
    .expect("event auth");
    assert!(auth["auth_chain"]
        .as_array()
        .expect("chain")
        .iter()
        .any(|p| p["type"] == "m.room.create"));
    let back = ask(FederationQuery::Backfill {
        from: vec![last_id.clone()],
        limit: 2,
    })
    .expect("backfill");
    let bodies: Vec<&str> = back["pdus"]
        .as_array()
        .expect("pdus")
        .iter()
        .filter_map(|p| p["content"]["body"].as_str())
        .collect();
    assert_eq!(bodies, ["last", "after"]);
    let missing = ask(FederationQuery::MissingEvents {
        earliest: Vec::new(),
        latest: vec![last_id.clone()],
        limit: 1,
        min_depth: 0,
    })
    .expect("missing");
    assert_eq!(missing["events"][0]["content"]["body"], "after");
    let event = ask(FederationQuery::Event {
        event_id: last_id.clone(),
    })
    .expect("event");
    assert_eq!(event["pdu"]["content"]["body"], "last");
    let events = ask(FederationQuery::Events {
        event_ids: vec!["$nope".into(), last_id],
    })
    .expect("events");
    assert_eq!(events["pdus"].as_array().map(Vec::len), Some(1));
    assert_eq!(events["pdus"][0]["content"]["body"], "last");
    for query in [
        FederationQuery::Event {
            event_id: "$nope".into(),
        },
        FederationQuery::StateIds {
            event_id: "$nope".into(),
        },
        FederationQuery::EventAuth {
            event_id: "$nope".into(),
        },
    ] {
        let err = ask(query).expect_err("unknown");
        assert_eq!((err.status, err.errcode.as_str()), (404, "M_NOT_FOUND"));
    }
}

#[test]
fn the_server_acl_is_a_question_the_edge_can_ask() {
    let (db, key) = room("shared");
    let host = host(&key);
    let allowed = |server: &str| {
        handle(
            &db,
            &host,
            RoomRequest::ServerAllowed {
                server_name: server.to_owned(),
            },
        )
        .expect("answer")["allowed"]
            .as_bool()
            .expect("allowed")
    };
    assert!(allowed("evil.org"), "no ACL: everyone");
    send(
        &db,
        &host,
        &user("alice"),
        EventSpec::state(
            "m.room.server_acl",
            "",
            json!({"allow": ["*"], "deny": ["evil.org"], "allow_ip_literals": false}),
        ),
    );
    assert!(!allowed("evil.org:8448"));
    assert!(!allowed("10.0.0.1"));
    assert!(allowed("hs.test"));
}

#[test]
fn other_servers_see_history_as_its_visibility_says() {
    use super::protocol::FederationQuery;
    let carol = "@carol:other.test";
    for (visibility, expected) in [
        ("shared", ["before", "while invited", "after"]),
        ("invited", ["", "while invited", "after"]),
        ("joined", ["", "", "after"]),
        ("world_readable", ["before", "while invited", "after"]),
    ] {
        let db = MemorySql::new();
        let key = SigningKey::from_seed([5; 32], "t").expect("key");
        let host = host(&key);
        let version = RoomVersionId::V12;
        let rules = version.rules().expect("rules");
        let alice = OwnedUserId::try_from(user("alice")).expect("user");
        let signer = Signer {
            server_name: "hs.test",
            key: &key,
            now_ms: 1,
        };
        let create = build_create_event(&version, &rules, &alice, None, json!({}), signer).expect("create");
        let steps = vec![
            EventSpec::state("m.room.member", &user("alice"), json!({"membership": "join"})),
            EventSpec::state("m.room.power_levels", "", json!({"users": {}})),
            EventSpec::state("m.room.join_rules", "", json!({"join_rule": "invite"})),
            EventSpec::state(
                "m.room.history_visibility",
                "",
                json!({"history_visibility": visibility}),
            ),
        ];
        let create = RoomRequest::Create {
            create: create.to_federation_value(),
            sender: user("alice"),
            steps,
        };
        handle(&db, &host, create).expect("create room");
        send(&db, &host, &user("alice"), message("before"));
        let invite = EventSpec::state("m.room.member", carol, json!({"membership": "invite"}));
        send(&db, &host, &user("alice"), invite);
        send(&db, &host, &user("alice"), message("while invited"));
        send(
            &db,
            &host,
            carol,
            EventSpec::state("m.room.member", carol, json!({"membership": "join"})),
        );
        let last = send(&db, &host, &user("alice"), message("after"));
        let last_id = last["event_id"].as_str().expect("event_id").to_owned();
        let ask = |origin: &str| {
            let query = FederationQuery::Backfill {
                from: vec![last_id.clone()],
                limit: 100,
            };
            let origin = Some(origin.to_owned());
            handle(&db, &host, RoomRequest::Federation { origin, query }).expect("backfill")
        };
        let answer = ask("other.test");
        let mut seen: Vec<&str> = answer["pdus"]
            .as_array()
            .expect("pdus")
            .iter()
            .filter(|p| p["type"] == "m.room.message")
            .map(|p| p["content"]["body"].as_str().unwrap_or(""))
            .collect();
        seen.reverse();
        assert_eq!(
            seen, expected,
            "{visibility}: a redacted copy for what it may not see"
        );
        // A server with no member now asks nothing (unless the room is world-readable).
        let stranger = handle(
            &db,
            &host,
            RoomRequest::Federation {
                origin: Some("stranger.test".into()),
                query: FederationQuery::Event {
                    event_id: last_id.clone(),
                },
            },
        );
        assert_eq!(stranger.is_ok(), visibility == "world_readable", "{visibility}");
    }
}

#[test]
fn receipts_only_move_forward() {
    let (db, key) = room("shared");
    let host = host(&key);
    let first = send(&db, &host, &user("alice"), message("one"));
    let second = send(&db, &host, &user("alice"), message("two"));
    let receipt = |event: &Value| {
        handle(
            &db,
            &host,
            RoomRequest::Receipt {
                user_id: user("alice"),
                receipt_type: "m.read".into(),
                event_id: event["event_id"].as_str().expect("event id").to_owned(),
                thread_id: None,
            },
        )
        .expect("receipt")
    };
    let at = || super::ephemeral::receipt_event(&db, &user("alice"), "m.read", None).expect("read");
    assert_eq!(receipt(&second)["moved"], true);
    assert_eq!(at().as_deref(), second["event_id"].as_str());
    // Back to an earlier event: taken, nothing changes, nobody is told.
    let back = receipt(&first);
    assert_eq!(back["moved"], false);
    assert!(back.get("serial").is_none());
    assert_eq!(at().as_deref(), second["event_id"].as_str());
    // The same event again does not move it either.
    assert_eq!(receipt(&second)["moved"], false);
}
