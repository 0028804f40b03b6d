//! Push rules against the real worker: the server defaults, edits with `before` /
//! `after`, the spec's refusals (which change nothing), the `m.push_rules` account data,
//! and the rules deciding /sync's notification and highlight counts.

use serde_json::{json, Value};

use crate::harness::{create_room, enc, new_user, send_text, unique, Client};

const RULES: &str = "/_matrix/client/v3/pushrules/";

fn rule_path(kind: &str, rule_id: &str) -> String {
    format!("/_matrix/client/v3/pushrules/global/{kind}/{}", enc(rule_id))
}

fn global(c: &Client) -> Value {
    c.get(RULES).expect(200)["global"].clone()
}

/// The user-defined rule ids of a kind, in order.
fn user_rules(c: &Client, kind: &str) -> Vec<String> {
    global(c)[kind]
        .as_array()
        .expect("kind present")
        .iter()
        .filter(|r| r["default"] != true)
        .map(|r| r["rule_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn join(c: &Client, room: &str) {
    c.post(
        &format!("/_matrix/client/v3/rooms/{}/join", enc(room)),
        &json!({}),
    )
    .expect(200);
}

fn send(c: &Client, room: &str, content: Value) -> String {
    c.put(
        &format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
            enc(room),
            unique("t")
        ),
        &content,
    )
    .expect(200)["event_id"]
        .as_str()
        .expect("event_id")
        .to_owned()
}

/// `(notification_count, highlight_count)` of a room, from an initial /sync (which
/// always carries every joined room).
fn counts(c: &Client, room: &str) -> (i64, i64) {
    let filter = enc(r#"{"room":{"timeline":{"limit":1}}}"#);
    let body = c
        .get(&format!("/_matrix/client/v3/sync?filter={filter}"))
        .expect(200);
    let unread = &body["rooms"]["join"][room]["unread_notifications"];
    (
        unread["notification_count"].as_i64().unwrap_or(-1),
        unread["highlight_count"].as_i64().unwrap_or(-1),
    )
}

fn read_up_to(c: &Client, room: &str, event_id: &str) {
    c.post(
        &format!(
            "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
            enc(room),
            enc(event_id)
        ),
        &json!({}),
    )
    .expect(200);
}

#[test]
fn defaults_are_served_and_synced() {
    let (alice, alice_id) = new_user("pr-defaults");
    let all = alice.get(RULES).expect(200);
    let rules = &all["global"];
    for kind in ["override", "content", "room", "sender", "underride"] {
        assert!(rules[kind].is_array(), "{kind} missing: {all}");
    }
    assert_eq!(rules["override"][0]["rule_id"], ".m.rule.master");
    assert_eq!(rules["override"][0]["enabled"], false);
    let mention = rules["override"]
        .as_array()
        .expect("override")
        .iter()
        .find(|r| r["rule_id"] == ".m.rule.is_user_mention")
        .expect("is_user_mention");
    assert_eq!(mention["conditions"][0]["value"], alice_id);
    assert_eq!(
        alice.get("/_matrix/client/v3/pushrules/global/").expect(200),
        *rules
    );
    let message = alice.get(&rule_path("underride", ".m.rule.message")).expect(200);
    assert_eq!(message["default"], true);
    assert_eq!(message["actions"], json!(["notify"]));
    assert_eq!(
        alice
            .get(&format!("{}/enabled", rule_path("underride", ".m.rule.message")))
            .expect(200),
        json!({"enabled": true})
    );
    assert_eq!(
        alice
            .get(&format!("{}/actions", rule_path("underride", ".m.rule.message")))
            .expect(200),
        json!({"actions": ["notify"]})
    );
    // Readable as account data, and in an initial /sync's account data.
    let account = format!(
        "/_matrix/client/v3/user/{}/account_data/m.push_rules",
        enc(&alice_id)
    );
    assert_eq!(alice.get(&account).expect(200), all);
    let sync = alice.get("/_matrix/client/v3/sync").expect(200);
    let event = sync["account_data"]["events"]
        .as_array()
        .expect("account data")
        .iter()
        .find(|e| e["type"] == "m.push_rules")
        .cloned()
        .expect("m.push_rules in the initial sync");
    assert_eq!(event["content"], all);
    // Not writable through the account data API (spec: 405 M_BAD_JSON).
    alice
        .put(&account, &json!({"global": {}}))
        .expect_err(405, "M_BAD_JSON");
    assert_eq!(alice.get(RULES).expect(200), all);
    // Unauthenticated requests are refused.
    let anonymous = Client {
        token: None,
        ..alice.clone()
    };
    anonymous.get(RULES).expect_err(401, "M_MISSING_TOKEN");
}

#[test]
fn edits_with_ordering_and_refusals() {
    let (alice, _) = new_user("pr-edit");
    let body = |pattern: &str| json!({"pattern": pattern, "actions": ["notify"]});
    alice.put(&rule_path("content", "a"), &body("apple")).expect(200);
    alice.put(&rule_path("content", "b"), &body("banana")).expect(200);
    assert_eq!(user_rules(&alice, "content"), ["b", "a"], "new rules come first");
    alice
        .put(&format!("{}?after=b", rule_path("content", "c")), &body("cherry"))
        .expect(200);
    alice
        .put(&format!("{}?before=a", rule_path("content", "d")), &body("date"))
        .expect(200);
    assert_eq!(user_rules(&alice, "content"), ["b", "c", "d", "a"]);
    let c = alice.get(&rule_path("content", "c")).expect(200);
    assert_eq!(
        (c["pattern"].clone(), c["enabled"].clone(), c["default"].clone()),
        (json!("cherry"), json!(true), json!(false))
    );

    // Disable, change actions, re-enable; a default rule too.
    let enabled = format!("{}/enabled", rule_path("content", "c"));
    alice.put(&enabled, &json!({"enabled": false})).expect(200);
    assert_eq!(alice.get(&enabled).expect(200), json!({"enabled": false}));
    let actions = format!("{}/actions", rule_path("content", "c"));
    let loud = json!(["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]);
    alice.put(&actions, &json!({"actions": loud})).expect(200);
    assert_eq!(alice.get(&actions).expect(200)["actions"], loud);
    alice.put(&enabled, &json!({"enabled": true})).expect(200);
    let notices = format!("{}/enabled", rule_path("override", ".m.rule.suppress_notices"));
    alice.put(&notices, &json!({"enabled": false})).expect(200);
    assert_eq!(alice.get(&notices).expect(200), json!({"enabled": false}));
    alice.put(&notices, &json!({"enabled": true})).expect(200);

    // Room and sender rules take ids of their kind.
    let room_id = "!somewhere:example.org";
    alice
        .put(&rule_path("room", room_id), &json!({"actions": []}))
        .expect(200);
    alice
        .put(&rule_path("sender", "@spam:example.org"), &json!({"actions": []}))
        .expect(200);
    assert_eq!(user_rules(&alice, "room"), [room_id]);
    alice.delete(&rule_path("content", "d")).expect(200);
    assert_eq!(user_rules(&alice, "content"), ["b", "c", "a"]);

    // The change reaches /sync as account data.
    let sync = alice.get("/_matrix/client/v3/sync").expect(200);
    let synced = sync["account_data"]["events"]
        .as_array()
        .expect("account data")
        .iter()
        .find(|e| e["type"] == "m.push_rules")
        .cloned()
        .expect("m.push_rules");
    assert_eq!(synced["content"], alice.get(RULES).expect(200));

    // Refusals change nothing.
    let before = alice.get(RULES).expect(200);
    alice
        .get(&rule_path("content", "nope"))
        .expect_err(404, "M_NOT_FOUND");
    alice
        .get(&format!("{}/enabled", rule_path("content", "nope")))
        .expect_err(404, "M_NOT_FOUND");
    alice
        .get(&format!("{}/actions", rule_path("override", "nope")))
        .expect_err(404, "M_NOT_FOUND");
    alice
        .delete(&rule_path("content", "nope"))
        .expect_err(404, "M_NOT_FOUND");
    alice
        .put(
            &format!("{}/enabled", rule_path("content", "nope")),
            &json!({"enabled": true}),
        )
        .expect_err(404, "M_NOT_FOUND");
    alice
        .put(
            &format!("{}/actions", rule_path("content", "nope")),
            &json!({"actions": []}),
        )
        .expect_err(404, "M_NOT_FOUND");
    let refused = [
        alice.delete(&rule_path("override", ".m.rule.master")),
        alice.delete(&rule_path("underride", ".m.rule.message")),
        alice.put(&rule_path("override", ".m.rule.mine"), &json!({"actions": []})),
        alice.put(&rule_path("content", "x"), &json!({"actions": ["notify"]})),
        alice.put(&rule_path("content", "x"), &json!({"pattern": "x"})),
        alice.put(
            &rule_path("content", "x"),
            &json!({"pattern": "x", "actions": "notify"}),
        ),
        alice.put(
            &rule_path("override", "x"),
            &json!({"actions": [], "conditions": {}}),
        ),
        alice.put(&rule_path("room", "not-a-room"), &json!({"actions": []})),
        alice.put(&rule_path("sender", "spam"), &json!({"actions": []})),
        alice.put(&rule_path("bogus", "x"), &json!({"actions": []})),
        alice.get(&rule_path("bogus", "x")),
        alice.put(
            &format!("{}?before=.m.rule.master", rule_path("override", "x")),
            &json!({"actions": []}),
        ),
        alice.put(
            &format!("{}/enabled", rule_path("content", "c")),
            &json!({"enabled": "yes"}),
        ),
        alice.put(
            &format!("{}/actions", rule_path("content", "c")),
            &json!({"actions": {}}),
        ),
    ];
    for resp in refused {
        assert_eq!(resp.status, 400, "{:?}", resp.body);
    }
    alice
        .put(&format!("{}?before=nope", rule_path("content", "x")), &body("x"))
        .expect_err(400, "M_UNKNOWN");
    alice
        .put(&format!("{}?after=nope", rule_path("content", "x")), &body("x"))
        .expect_err(400, "M_UNKNOWN");
    alice
        .raw(
            "PUT",
            &rule_path("content", "x"),
            Some(b"{not json"),
            &[("Content-Type", "application/json")],
        )
        .expect_err(400, "M_NOT_JSON");
    // Only the global scope exists.
    alice
        .get(&format!(
            "/_matrix/client/v3/pushrules/device/content/{}",
            enc("a")
        ))
        .expect_err(404, "M_UNRECOGNIZED");
    assert_eq!(alice.get(RULES).expect(200), before, "refusals changed the rules");
    // Another user's rules are their own.
    let (bob, _) = new_user("pr-edit-other");
    assert!(user_rules(&bob, "content").is_empty());
}

#[test]
fn rules_decide_sync_counts() {
    let (alice, alice_id) = new_user("pr-counts-a");
    let (bob, _) = new_user("pr-counts-b");
    let (carol, _) = new_user("pr-counts-c");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    join(&bob, &room);
    join(&carol, &room);
    assert_eq!(counts(&alice, &room), (0, 0));

    // A message notifies, a notice does not, a mention highlights, own events never count.
    send_text(&bob, &room, &unique("t"), "hello there");
    send(
        &bob,
        &room,
        json!({"msgtype": "m.notice", "body": "a bot speaks"}),
    );
    send(
        &carol,
        &room,
        json!({"msgtype": "m.text", "body": "alice, look", "m.mentions": {"user_ids": [alice_id]}}),
    );
    send_text(&alice, &room, &unique("t"), "talking to myself");
    assert_eq!(counts(&alice, &room), (2, 1));

    // A receipt resets the counts.
    let last = send_text(&bob, &room, &unique("t"), "anyone?");
    assert_eq!(counts(&alice, &room), (3, 1));
    read_up_to(&alice, &room, &last);
    assert_eq!(counts(&alice, &room), (0, 0));

    // A keyword rule highlights.
    alice
        .put(
            &rule_path("content", "cake"),
            &json!({"pattern": "cake", "actions": ["notify", {"set_tweak": "highlight"}]}),
        )
        .expect(200);
    send_text(&bob, &room, &unique("t"), "Cake in the kitchen!");
    send_text(&bob, &room, &unique("t"), "cupcakes do not count");
    assert_eq!(counts(&alice, &room), (2, 1));

    // A room rule mutes the room; overrides (mentions) still come through.
    // (Content rules rank above room rules: the cake message still highlights.)
    alice
        .put(&rule_path("room", &room), &json!({"actions": []}))
        .expect(200);
    assert_eq!(counts(&alice, &room), (1, 1));
    send(
        &bob,
        &room,
        json!({"msgtype": "m.text", "body": "but alice", "m.mentions": {"user_ids": [alice_id]}}),
    );
    assert_eq!(counts(&alice, &room), (2, 2));
    alice.delete(&rule_path("room", &room)).expect(200);
    assert_eq!(counts(&alice, &room), (3, 2));

    // Disabling the default message rule stops plain messages from counting.
    alice
        .put(
            &format!("{}/enabled", rule_path("underride", ".m.rule.message")),
            &json!({"enabled": false}),
        )
        .expect(200);
    assert_eq!(counts(&alice, &room), (2, 2));
    // Bob's counts follow his own (default) rules.
    assert!(counts(&bob, &room).0 >= 1);
}

#[test]
fn counts_reset_by_receipts_in_incremental_sync() {
    let (alice, alice_id) = new_user("pr-inc-a");
    let (bob, _) = new_user("pr-inc-b");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    join(&bob, &room);
    let token = alice.get("/_matrix/client/v3/sync").expect(200)["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let mention = send(
        &bob,
        &room,
        json!({"msgtype": "m.text", "body": "ping", "m.mentions": {"user_ids": [alice_id]}}),
    );
    // Incremental syncs until the mention arrives; its counts come with it.
    let mut since = token;
    let mut unread = Value::Null;
    for _ in 0..10 {
        let body = alice
            .get(&format!("/_matrix/client/v3/sync?since={since}&timeout=5000"))
            .expect(200);
        since = body["next_batch"].as_str().expect("next_batch").to_owned();
        let joined = &body["rooms"]["join"][&room];
        let events = joined["timeline"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if events.iter().any(|e| e["event_id"] == mention) {
            unread = joined["unread_notifications"].clone();
            break;
        }
    }
    assert_eq!(unread, json!({"notification_count": 1, "highlight_count": 1}));
    read_up_to(&alice, &room, &mention);
    let body = alice
        .get(&format!("/_matrix/client/v3/sync?since={since}&timeout=5000"))
        .expect(200);
    assert_eq!(
        body["rooms"]["join"][&room]["unread_notifications"],
        json!({"notification_count": 0, "highlight_count": 0}),
        "{body}"
    );
}

#[test]
fn concurrent_edits_are_not_lost() {
    let (alice, _) = new_user("pr-concurrent");
    let names: Vec<String> = (0..6).map(|i| format!("rule{i}")).collect();
    std::thread::scope(|s| {
        for name in &names {
            let alice = alice.clone();
            s.spawn(move || {
                alice
                    .put(
                        &rule_path("content", name),
                        &json!({"pattern": name, "actions": ["notify"]}),
                    )
                    .expect(200);
            });
        }
    });
    let mut got = user_rules(&alice, "content");
    got.sort();
    assert_eq!(got, names);
}
