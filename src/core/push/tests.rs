use ruma::push::RuleKind;
use ruma::room_version_rules::{AuthorizationRules, RoomVersionRules};
use ruma::user_id;
use serde_json::{json, Value};

use super::edit::{self, EditError};
use super::*;

const ME: &str = "@alice:example.org";
const BOB: &str = "@bob:example.org";
const ROOM: &str = "!room:example.org";

fn defaults() -> Ruleset {
    Ruleset::server_default(user_id!("@alice:example.org"))
}

fn room(power_levels: Option<&Value>, member_count: u64) -> RoomState<'_> {
    RoomState {
        room_id: ROOM,
        member_count,
        display_name: Some("Alice Liddell"),
        power_levels,
        creators: vec!["@creator:example.org".into()],
    }
}

fn v12() -> AuthorizationRules {
    RoomVersionRules::V12.authorization
}

fn message(sender: &str, content: Value) -> String {
    json!({
        "type": "m.room.message",
        "sender": sender,
        "room_id": ROOM,
        "event_id": "$e",
        "origin_server_ts": 1,
        "content": content,
    })
    .to_string()
}

fn text(sender: &str, body: &str) -> String {
    message(sender, json!({ "msgtype": "m.text", "body": body }))
}

fn verdict_with(rules: &Ruleset, state: &RoomState<'_>, event: &str) -> Verdict {
    Evaluator::new(rules, ME, state, &v12())
        .expect("valid ids")
        .verdict(event)
}

fn verdict(event: &str) -> Verdict {
    verdict_with(&defaults(), &room(None, 5), event)
}

const NOTIFY: Verdict = Verdict {
    notify: true,
    highlight: false,
    sound: false,
};
const SILENT: Verdict = Verdict {
    notify: false,
    highlight: false,
    sound: false,
};

#[test]
fn plain_message_notifies() {
    assert_eq!(verdict(&text(BOB, "hello there")), NOTIFY);
}

#[test]
fn one_to_one_message_notifies_with_sound() {
    let v = verdict_with(&defaults(), &room(None, 2), &text(BOB, "hi"));
    assert!(v.notify && v.sound && !v.highlight);
}

#[test]
fn notice_does_not_notify() {
    let event = message(BOB, json!({ "msgtype": "m.notice", "body": "bot says hi" }));
    assert_eq!(verdict(&event), SILENT);
}

#[test]
fn own_events_never_count() {
    assert_eq!(verdict(&text(ME, "talking to myself")), SILENT);
    let mention = message(ME, json!({ "body": "me", "m.mentions": { "user_ids": [ME] } }));
    assert_eq!(verdict(&mention), SILENT);
}

#[test]
fn user_mention_highlights() {
    let event = message(
        BOB,
        json!({ "msgtype": "m.text", "body": "Alice Liddell: look", "m.mentions": { "user_ids": [ME] } }),
    );
    let v = verdict(&event);
    assert!(v.notify && v.highlight && v.sound);
}

#[test]
fn mentions_of_someone_else_only_notify() {
    let event = message(
        BOB,
        json!({ "msgtype": "m.text", "body": "carol?", "m.mentions": { "user_ids": ["@carol:example.org"] } }),
    );
    assert_eq!(verdict(&event), NOTIFY);
}

#[test]
fn body_mentions_do_not_highlight_under_the_current_defaults() {
    // Spec v1.17 removed the default rules that searched the body for the user's id,
    // localpart or display name; only `m.mentions` highlights by default.
    assert_eq!(
        verdict(&text(BOB, "hey Alice Liddell and @alice:example.org")),
        NOTIFY
    );
}

#[test]
fn display_name_condition_uses_the_room_display_name() {
    let mut rules = defaults();
    edit::put(
        &mut rules,
        &RuleKind::Override,
        "my-name",
        &json!({
            "conditions": [{ "kind": "contains_display_name" }],
            "actions": ["notify", { "set_tweak": "highlight" }],
        }),
        None,
        None,
    )
    .expect("put");
    let state = room(None, 5);
    assert!(verdict_with(&rules, &state, &text(BOB, "ping alice liddell!")).highlight);
    assert!(!verdict_with(&rules, &state, &text(BOB, "ping alice")).highlight);
    // No display name: the condition looks for the user id, not for "".
    let anonymous = RoomState {
        display_name: None,
        ..room(None, 5)
    };
    assert!(!verdict_with(&rules, &anonymous, &text(BOB, "anything")).highlight);
    assert!(verdict_with(&rules, &anonymous, &text(BOB, "hi @alice:example.org")).highlight);
}

#[test]
fn room_mention_needs_permission() {
    let event = message(
        BOB,
        json!({ "msgtype": "m.text", "body": "@room lunch", "m.mentions": { "room": true } }),
    );
    let bob_50 = json!({ "users": { BOB: 50 }, "notifications": { "room": 50 } });
    assert!(verdict_with(&defaults(), &room(Some(&bob_50), 5), &event).highlight);
    let bob_0 = json!({ "users": { BOB: 0 }, "users_default": 0 });
    let v = verdict_with(&defaults(), &room(Some(&bob_0), 5), &event);
    assert_eq!(v, NOTIFY, "falls through to .m.rule.message");
    let raised = json!({ "users": { BOB: 50 }, "notifications": { "room": 100 } });
    assert!(!verdict_with(&defaults(), &room(Some(&raised), 5), &event).highlight);
    // Levels as strings (older room versions) are read too.
    let strings = json!({ "users": { BOB: "60" }, "notifications": { "room": "50" } });
    assert!(verdict_with(&defaults(), &room(Some(&strings), 5), &event).highlight);
}

#[test]
fn room_creators_may_mention_the_room_in_v12() {
    let event = message(
        "@creator:example.org",
        json!({ "body": "@room", "m.mentions": { "room": true } }),
    );
    let none = json!({ "users": {} });
    assert!(verdict_with(&defaults(), &room(Some(&none), 5), &event).highlight);
    let v11 = Evaluator::new(
        &defaults(),
        ME,
        &room(Some(&none), 5),
        &RoomVersionRules::V11.authorization,
    )
    .expect("ids")
    .verdict(&event);
    assert!(!v11.highlight, "creators have no special power before v12");
}

#[test]
fn encrypted_events_notify() {
    let event = json!({
        "type": "m.room.encrypted",
        "sender": BOB,
        "room_id": ROOM,
        "content": { "algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgA" },
    })
    .to_string();
    assert_eq!(verdict(&event), NOTIFY);
    let direct = verdict_with(&defaults(), &room(None, 2), &event);
    assert!(direct.notify && direct.sound);
}

#[test]
fn members_reactions_and_edits_do_not_notify() {
    let member = json!({
        "type": "m.room.member", "state_key": BOB, "sender": BOB, "room_id": ROOM,
        "content": { "membership": "join" },
    })
    .to_string();
    assert_eq!(verdict(&member), SILENT);
    let reaction = json!({
        "type": "m.reaction", "sender": BOB, "room_id": ROOM,
        "content": { "m.relates_to": { "rel_type": "m.annotation", "event_id": "$e", "key": "+1" } },
    })
    .to_string();
    assert_eq!(verdict(&reaction), SILENT);
    let edit = message(
        BOB,
        json!({ "body": "* fixed", "m.relates_to": { "rel_type": "m.replace", "event_id": "$e" } }),
    );
    assert_eq!(verdict(&edit), SILENT);
}

#[test]
fn invite_for_me_notifies() {
    let invite = json!({
        "type": "m.room.member", "state_key": ME, "sender": BOB, "room_id": ROOM,
        "content": { "membership": "invite" },
    })
    .to_string();
    let v = verdict(&invite);
    assert!(v.notify && v.sound);
}

#[test]
fn disabled_rule_changes_the_result() {
    let mut rules = defaults();
    rules
        .set_enabled(RuleKind::Underride, ".m.rule.message", false)
        .expect("rule exists");
    assert_eq!(verdict_with(&rules, &room(None, 5), &text(BOB, "hello")), SILENT);
    rules
        .set_enabled(RuleKind::Override, ".m.rule.suppress_notices", false)
        .expect("rule exists");
    // Nothing else matches a notice either now.
    let notice = message(BOB, json!({ "msgtype": "m.notice", "body": "x" }));
    assert_eq!(verdict_with(&rules, &room(None, 5), &notice), SILENT);
}

#[test]
fn master_rule_silences_everything() {
    let mut rules = defaults();
    rules
        .set_enabled(RuleKind::Override, ".m.rule.master", true)
        .expect("rule exists");
    let mention = message(BOB, json!({ "body": "hi", "m.mentions": { "user_ids": [ME] } }));
    assert_eq!(verdict_with(&rules, &room(None, 5), &mention), SILENT);
}

#[test]
fn room_rule_mutes_and_keyword_rule_highlights() {
    let mut rules = defaults();
    edit::put(
        &mut rules,
        &RuleKind::Room,
        ROOM,
        &json!({ "actions": [] }),
        None,
        None,
    )
    .expect("room rule");
    assert_eq!(verdict_with(&rules, &room(None, 5), &text(BOB, "hello")), SILENT);
    // The room rule does not outrank overrides: mentions still highlight.
    let mention = message(BOB, json!({ "body": "hi", "m.mentions": { "user_ids": [ME] } }));
    assert!(verdict_with(&rules, &room(None, 5), &mention).highlight);

    let mut rules = defaults();
    edit::put(
        &mut rules,
        &RuleKind::Content,
        "cake",
        &json!({ "pattern": "cake", "actions": ["notify", { "set_tweak": "highlight" }] }),
        None,
        None,
    )
    .expect("content rule");
    assert!(verdict_with(&rules, &room(None, 5), &text(BOB, "who wants CAKE?")).highlight);
    assert!(!verdict_with(&rules, &room(None, 5), &text(BOB, "cupcakes")).highlight);
}

#[test]
fn changed_actions_of_a_default_rule_apply() {
    let mut rules = defaults();
    edit::set_actions(
        &mut rules,
        &RuleKind::Underride,
        ".m.rule.message",
        &json!({ "actions": ["notify", { "set_tweak": "highlight", "value": true }] }),
    )
    .expect("set");
    assert!(verdict_with(&rules, &room(None, 5), &text(BOB, "hello")).highlight);
}

#[test]
fn not_json_never_notifies() {
    assert_eq!(verdict("{not json"), SILENT);
}

#[test]
fn invalid_ids_give_no_evaluator() {
    let rules = defaults();
    assert!(Evaluator::new(&rules, "alice", &room(None, 2), &v12()).is_none());
    let bad_room = RoomState {
        room_id: "room",
        ..room(None, 2)
    };
    assert!(Evaluator::new(&rules, ME, &bad_room, &v12()).is_none());
}

// ---- stored form ----

#[test]
fn stored_ruleset_keeps_user_changes_and_gets_current_defaults() {
    let mut rules = defaults();
    rules
        .set_enabled(RuleKind::Underride, ".m.rule.message", false)
        .expect("exists");
    edit::put(
        &mut rules,
        &RuleKind::Content,
        "tea",
        &json!({ "pattern": "tea", "actions": ["notify"] }),
        None,
        None,
    )
    .expect("put");
    let mut stored = content(&rules);
    // A default the server no longer has disappears; one it lacks comes back.
    let underride = stored["global"]["underride"].as_array_mut().expect("array");
    underride.retain(|r| r["rule_id"] != ".m.rule.encrypted");
    stored["global"]["override"]
        .as_array_mut()
        .expect("array")
        .push(json!({ "rule_id": ".m.rule.gone", "default": true, "enabled": true, "actions": [], "conditions": [] }));
    let loaded = ruleset(user_id!("@alice:example.org"), Some(&stored));
    assert!(loaded.get(RuleKind::Underride, ".m.rule.encrypted").is_some());
    assert!(loaded.get(RuleKind::Override, ".m.rule.gone").is_none());
    assert!(!loaded
        .get(RuleKind::Underride, ".m.rule.message")
        .expect("kept")
        .enabled());
    assert!(loaded.get(RuleKind::Content, "tea").is_some());
    // The master rule stays first.
    assert_eq!(
        loaded.override_.first().map(|r| r.rule_id.as_str()),
        Some(".m.rule.master")
    );
}

#[test]
fn nothing_or_garbage_stored_is_the_defaults() {
    let user = user_id!("@alice:example.org");
    let fresh = content(&ruleset(user, None));
    assert_eq!(fresh, content(&defaults()));
    assert_eq!(content(&ruleset(user, Some(&json!({ "global": 7 })))), fresh);
    for kind in KINDS {
        assert!(fresh["global"][kind].is_array(), "{kind} present");
    }
}

// ---- edits ----

fn ids(rules: &Ruleset, kind: &str) -> Vec<String> {
    content(rules)["global"][kind]
        .as_array()
        .expect("array")
        .iter()
        .filter(|r| r["default"] != true)
        .map(|r| r["rule_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn put_orders_with_before_and_after() {
    let mut rules = defaults();
    let body = json!({ "pattern": "x", "actions": ["notify"] });
    let content_kind = edit::kind("content").expect("kind");
    edit::put(&mut rules, &content_kind, "a", &body, None, None).expect("a");
    edit::put(&mut rules, &content_kind, "b", &body, None, None).expect("b");
    assert_eq!(ids(&rules, "content"), ["b", "a"], "new rules come first");
    edit::put(&mut rules, &content_kind, "c", &body, None, Some("b")).expect("c");
    assert_eq!(ids(&rules, "content"), ["b", "c", "a"]);
    edit::put(&mut rules, &content_kind, "d", &body, Some("a"), None).expect("d");
    assert_eq!(ids(&rules, "content"), ["b", "c", "d", "a"]);
    // Updating in place keeps the position and the enabled flag.
    edit::set_enabled(&mut rules, &content_kind, "c", &json!({ "enabled": false })).expect("off");
    edit::put(
        &mut rules,
        &content_kind,
        "c",
        &json!({ "pattern": "y", "actions": [] }),
        None,
        None,
    )
    .expect("c2");
    assert_eq!(ids(&rules, "content"), ["b", "c", "d", "a"]);
    let c = edit::get(&rules, &content_kind, "c").expect("c");
    assert_eq!(c["pattern"], "y");
    assert_eq!(c["enabled"], false);
    // Overrides go after the master rule.
    let over = edit::kind("override").expect("kind");
    edit::put(&mut rules, &over, "o", &json!({ "actions": [] }), None, None).expect("o");
    let all = content(&rules)["global"]["override"].clone();
    assert_eq!(all[0]["rule_id"], ".m.rule.master");
    assert_eq!(all[1]["rule_id"], "o");
    assert_eq!(all[1]["conditions"], json!([]));
}

#[test]
fn put_refusals() {
    let mut rules = defaults();
    let before = content(&rules);
    let body = json!({ "pattern": "x", "actions": ["notify"] });
    let ck = RuleKind::Content;
    assert!(matches!(edit::kind("device"), Err(EditError::Invalid(_))));
    let refused = [
        edit::put(&mut rules, &ck, ".m.rule.mine", &body, None, None),
        edit::put(&mut rules, &ck, "a/b", &body, None, None),
        edit::put(&mut rules, &ck, "a\\b", &body, None, None),
        edit::put(
            &mut rules,
            &ck,
            "p",
            &json!({ "actions": ["notify"] }),
            None,
            None,
        ),
        edit::put(&mut rules, &ck, "p", &json!({ "pattern": "x" }), None, None),
        edit::put(
            &mut rules,
            &ck,
            "p",
            &json!({ "pattern": "x", "actions": "notify" }),
            None,
            None,
        ),
        edit::put(&mut rules, &ck, "p", &json!([1]), None, None),
        edit::put(
            &mut rules,
            &RuleKind::Room,
            "not-a-room",
            &json!({ "actions": [] }),
            None,
            None,
        ),
        edit::put(
            &mut rules,
            &RuleKind::Sender,
            "bob",
            &json!({ "actions": [] }),
            None,
            None,
        ),
        edit::put(
            &mut rules,
            &RuleKind::Override,
            "o",
            &json!({ "actions": [], "conditions": 3 }),
            None,
            None,
        ),
        edit::put(&mut rules, &ck, "p", &body, Some(".m.rule.x"), None),
    ];
    for result in refused {
        assert!(matches!(result, Err(EditError::Invalid(_))), "{result:?}");
    }
    assert!(matches!(
        edit::put(&mut rules, &ck, "p", &body, Some("nope"), None),
        Err(EditError::UnknownPosition(_))
    ));
    assert_eq!(content(&rules), before, "refusals change nothing");
}

#[test]
fn delete_enable_and_actions() {
    let mut rules = defaults();
    let ok = RuleKind::Override;
    assert_eq!(edit::delete(&mut rules, &ok, "nope"), Err(EditError::NotFound));
    assert!(matches!(
        edit::delete(&mut rules, &ok, ".m.rule.master"),
        Err(EditError::Invalid(_))
    ));
    edit::put(
        &mut rules,
        &ok,
        "mine",
        &json!({ "actions": ["notify"] }),
        None,
        None,
    )
    .expect("put");
    assert_eq!(edit::enabled(&rules, &ok, "mine"), Ok(json!({ "enabled": true })));
    assert_eq!(
        edit::actions(&rules, &ok, "mine"),
        Ok(json!({ "actions": ["notify"] }))
    );
    edit::set_enabled(&mut rules, &ok, "mine", &json!({ "enabled": false })).expect("disable");
    assert_eq!(
        edit::enabled(&rules, &ok, "mine"),
        Ok(json!({ "enabled": false }))
    );
    assert!(matches!(
        edit::set_enabled(&mut rules, &ok, "mine", &json!({ "enabled": "no" })),
        Err(EditError::Invalid(_))
    ));
    assert_eq!(
        edit::set_enabled(&mut rules, &ok, "nope", &json!({ "enabled": true })),
        Err(EditError::NotFound)
    );
    assert_eq!(
        edit::set_actions(&mut rules, &ok, "nope", &json!({ "actions": [] })),
        Err(EditError::NotFound)
    );
    edit::delete(&mut rules, &ok, "mine").expect("delete");
    assert_eq!(edit::get(&rules, &ok, "mine"), Err(EditError::NotFound));
    // Server-default rules may be disabled and given other actions.
    edit::set_enabled(
        &mut rules,
        &ok,
        ".m.rule.suppress_notices",
        &json!({ "enabled": false }),
    )
    .expect("off");
    edit::set_actions(
        &mut rules,
        &ok,
        ".m.rule.suppress_notices",
        &json!({ "actions": ["notify"] }),
    )
    .expect("act");
    let rule = edit::get(&rules, &ok, ".m.rule.suppress_notices").expect("get");
    assert_eq!(rule["enabled"], false);
    assert_eq!(rule["actions"], json!(["notify"]));
    assert_eq!(rule["default"], true);
}

/// Not a benchmark, a guard: evaluating the default rules must stay cheap (a few
/// microseconds natively; the Room DO evaluates up to `UNREAD_SCAN` events per room).
#[test]
fn evaluation_cost() {
    let rules = defaults();
    let pl = json!({ "users": { BOB: 50 } });
    let state = room(Some(&pl), 5);
    let evaluator = Evaluator::new(&rules, ME, &state, &v12()).expect("ids");
    let event = json!({
        "type": "m.room.message", "sender": BOB, "room_id": ROOM, "depth": 12,
        "auth_events": ["$a", "$b", "$c"], "prev_events": ["$p"],
        "hashes": { "sha256": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG" },
        "signatures": { "example.org": { "ed25519:a": "x".repeat(86) } },
        "origin_server_ts": 1_700_000_000_000u64,
        "content": { "msgtype": "m.text", "body": "a fairly ordinary message of some length", "m.mentions": {} },
    })
    .to_string();
    let n = 2_000;
    let start = std::time::Instant::now();
    let mut notified = 0;
    for _ in 0..n {
        notified += usize::from(evaluator.verdict(&event).notify);
    }
    let per_event = start.elapsed() / n;
    assert_eq!(notified, n as usize);
    eprintln!("push rule evaluation: {per_event:?} per event");
    assert!(per_event < std::time::Duration::from_millis(1), "{per_event:?}");
}
