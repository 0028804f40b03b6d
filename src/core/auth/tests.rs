use ruma::CanonicalJsonValue;
use serde_json::json;

use super::*;
use crate::core::builder::NewEvent;
use crate::core::testing::{member_event, user, TestRoom};

const VERSIONS: [&str; 3] = ["10", "11", "12"];

fn allowed(r: Result<Pdu, Rejection>, what: &str) -> Pdu {
    r.unwrap_or_else(|e| panic!("{what} should be allowed: {e}"))
}

fn rejected(r: Result<Pdu, Rejection>, what: &str) {
    assert!(r.is_err(), "{what} should be rejected");
}

fn set_join_rule(room: &mut TestRoom, content: serde_json::Value) {
    allowed(
        room.send("alice", NewEvent::state("m.room.join_rules", "", content)),
        "join rules",
    );
}

fn power_levels(
    room: &mut TestRoom,
    sender: &str,
    users: serde_json::Value,
    extra: serde_json::Value,
) -> Result<Pdu, Rejection> {
    let mut content = json!({ "users": users });
    if let (Some(c), serde_json::Value::Object(e)) = (content.as_object_mut(), extra) {
        c.extend(e);
    }
    room.send(sender, NewEvent::state("m.room.power_levels", "", content))
}

/// alice at 100 before v12 (creator in v12); in v12 creators must stay out of `users`.
fn users(room: &TestRoom, others: serde_json::Value) -> serde_json::Value {
    let mut users = others;
    if !room.rules.authorization.explicitly_privilege_room_creators {
        users[user("alice").as_str()] = json!(100);
    }
    users
}

#[test]
fn create_event_rules() {
    for v in VERSIONS {
        let room = TestRoom::new(v, "alice");
        let create = room.current("m.room.create", "").expect("create");
        check_auth(&create, &room.rules, |_, _| None).expect("valid create");
        let with_prev = room.tamper(&create, |o| {
            o.insert(
                "prev_events".into(),
                CanonicalJsonValue::Array(vec![create.event_id().to_string().into()]),
            );
        });
        assert!(
            check_auth(&with_prev, &room.rules, |_, _| None).is_err(),
            "v{v} create with prev_events"
        );
        if room.rules.authorization.room_create_event_id_as_room_id {
            let with_room = room.tamper(&create, |o| {
                o.insert(
                    "room_id".into(),
                    CanonicalJsonValue::String("!a:example.org".into()),
                );
            });
            assert!(
                check_auth(&with_room, &room.rules, |_, _| None).is_err(),
                "v12 create with room_id"
            );
            let bad_creators = room.tamper(&create, |o| {
                if let Some(CanonicalJsonValue::Object(c)) = o.get_mut("content") {
                    c.insert(
                        "additional_creators".into(),
                        CanonicalJsonValue::Array(vec!["nope".to_owned().into()]),
                    );
                }
            });
            assert!(
                check_auth(&bad_creators, &room.rules, |_, _| None).is_err(),
                "invalid additional creator"
            );
        } else {
            let other_server = room.tamper(&create, |o| {
                o.insert(
                    "room_id".into(),
                    CanonicalJsonValue::String("!a:elsewhere.org".into()),
                );
            });
            assert!(
                check_auth(&other_server, &room.rules, |_, _| None).is_err(),
                "v{v} room server mismatch"
            );
        }
    }
}

#[test]
fn joins_public_invite_and_bans() {
    for v in VERSIONS {
        let mut room = TestRoom::new(v, "alice");
        rejected(room.member("bob", "bob", "join"), "join to invite-only room");
        allowed(room.member("alice", "bob", "invite"), "invite");
        allowed(room.member("bob", "bob", "join"), "invited join");
        rejected(room.member("bob", "carol", "join"), "joining someone else");
        set_join_rule(&mut room, json!({"join_rule": "public"}));
        allowed(room.member("carol", "carol", "join"), "public join");
        allowed(room.member("carol", "carol", "leave"), "leave");
        allowed(room.member("alice", "carol", "ban"), "ban");
        rejected(room.member("carol", "carol", "join"), "banned join");
        rejected(room.member("bob", "carol", "leave"), "unban without power");
        allowed(room.member("alice", "carol", "leave"), "unban by admin");
        allowed(room.member("carol", "carol", "join"), "join after unban");
        rejected(room.member("bob", "carol", "leave"), "kick without power");
        allowed(room.member("alice", "carol", "leave"), "kick by admin");
        rejected(room.member("bob", "bob", "ban"), "self-ban without power");
    }
}

#[test]
fn invites_need_membership_and_power() {
    for v in VERSIONS {
        let mut room = TestRoom::new(v, "alice");
        rejected(room.member("bob", "carol", "invite"), "invite by non-member");
        allowed(room.member("alice", "bob", "invite"), "invite");
        allowed(room.member("bob", "bob", "join"), "join");
        allowed(room.member("bob", "carol", "invite"), "invite at default level 0");
        let users = users(&room, json!({}));
        allowed(
            power_levels(&mut room, "alice", users, json!({"invite": 50})),
            "raise invite level",
        );
        rejected(room.member("bob", "dave", "invite"), "invite below invite level");
        allowed(room.member("alice", "eve", "ban"), "ban");
        rejected(room.member("alice", "eve", "invite"), "invite of banned user");
        allowed(room.member("carol", "carol", "leave"), "invite rejection");
    }
}

#[test]
fn restricted_joins() {
    for v in VERSIONS {
        let mut room = TestRoom::new(v, "alice");
        let other = "!other:example.org";
        set_join_rule(
            &mut room,
            json!({"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": other}]}),
        );
        rejected(
            room.member("bob", "bob", "join"),
            "restricted join without authoriser",
        );
        let via = |u: &str| {
            member_event(
                &user("bob"),
                "join",
                json!({"join_authorised_via_users_server": user(u)}),
            )
        };
        rejected(room.send("bob", via("carol")), "authoriser not in room");
        let ok = allowed(room.send("bob", via("alice")), "restricted join via alice");
        let alice_member = room
            .current("m.room.member", user("alice").as_str())
            .expect("alice member");
        assert!(
            ok.auth_events().contains(&alice_member.owned_event_id()),
            "authoriser's member event in auth_events"
        );
        allowed(room.member("bob", "bob", "leave"), "leave");
        // An authoriser without invite power cannot authorise.
        allowed(room.member("alice", "carol", "invite"), "invite carol");
        allowed(room.member("carol", "carol", "join"), "carol joins");
        let users = users(&room, json!({}));
        allowed(
            power_levels(&mut room, "alice", users, json!({"invite": 50})),
            "invite level 50",
        );
        rejected(room.send("bob", via("carol")), "authoriser below invite level");
    }
}

#[test]
fn knocking() {
    for v in VERSIONS {
        let mut room = TestRoom::new(v, "alice");
        rejected(room.member("bob", "bob", "knock"), "knock on invite-only room");
        set_join_rule(&mut room, json!({"join_rule": "knock"}));
        allowed(room.member("bob", "bob", "knock"), "knock");
        rejected(
            room.member("bob", "bob", "join"),
            "join after knock without invite",
        );
        allowed(room.member("alice", "bob", "invite"), "invite after knock");
        allowed(room.member("bob", "bob", "join"), "join");
        rejected(room.member("bob", "bob", "knock"), "knock while joined");
        set_join_rule(&mut room, json!({"join_rule": "knock_restricted", "allow": []}));
        allowed(room.member("carol", "carol", "knock"), "knock_restricted knock");
    }
}

#[test]
fn power_level_changes() {
    for v in VERSIONS {
        let mut room = TestRoom::new(v, "alice");
        allowed(room.member("alice", "bob", "invite"), "invite");
        allowed(room.member("bob", "bob", "join"), "join");
        allowed(room.member("alice", "carol", "invite"), "invite");
        allowed(room.member("carol", "carol", "join"), "join");
        let bob = user("bob");
        let carol = user("carol");
        let u = users(&room, json!({ bob.as_str(): 50, carol.as_str(): 50 }));
        allowed(power_levels(&mut room, "alice", u, json!({})), "admin grants 50");
        let u = users(&room, json!({ bob.as_str(): 100, carol.as_str(): 50 }));
        rejected(
            power_levels(&mut room, "bob", u, json!({})),
            "raising self above own level",
        );
        let u = users(&room, json!({ bob.as_str(): 50, carol.as_str(): 0 }));
        rejected(power_levels(&mut room, "bob", u, json!({})), "demoting a peer");
        let u = users(&room, json!({ bob.as_str(): 50, carol.as_str(): 50 }));
        rejected(
            power_levels(&mut room, "bob", u, json!({"ban": 100})),
            "raising a field above own level",
        );
        let u = users(
            &room,
            json!({ bob.as_str(): 50, carol.as_str(): 50, "@dave:example.org": 50 }),
        );
        rejected(
            power_levels(&mut room, "carol", u.clone(), json!({"state_default": 51})),
            "state_default above own",
        );
        // Default power_levels state level is 50, so bob (50) may grant up to 50.
        allowed(
            power_levels(&mut room, "bob", u, json!({})),
            "granting up to own level",
        );
        rejected(
            room.send(
                "bob",
                NewEvent::state("m.room.topic", user("carol").as_str(), json!({})),
            ),
            "state key of another user",
        );
        allowed(
            room.send("bob", NewEvent::state("m.room.topic", "", json!({"topic": "t"}))),
            "topic at 50",
        );
        let u = users(&room, json!({ bob.as_str(): 50, carol.as_str(): 50 }));
        allowed(
            power_levels(&mut room, "alice", u, json!({"events": {"m.room.topic": 100}})),
            "topic to 100",
        );
        rejected(
            room.send("bob", NewEvent::state("m.room.topic", "", json!({"topic": "u"}))),
            "topic below level",
        );
    }
}

#[test]
fn redaction_power() {
    for v in VERSIONS {
        let mut room = TestRoom::new(v, "alice");
        allowed(room.member("alice", "bob", "invite"), "invite");
        allowed(room.member("bob", "bob", "join"), "join");
        let msg = allowed(
            room.send("bob", NewEvent::message("m.room.message", json!({"body": "x"}))),
            "message",
        );
        let redact = |target: &Pdu| NewEvent {
            event_type: "m.room.redaction".into(),
            state_key: None,
            content: json!({}),
            redacts: Some(target.owned_event_id()),
        };
        let r = allowed(room.send("bob", redact(&msg)), "redacting own message");
        assert_eq!(r.redacts(), Some(msg.event_id()));
        let in_content = r.content_field("redacts").is_some();
        assert_eq!(
            in_content, room.rules.redaction.content_field_redacts,
            "v{v} redacts placement"
        );
        let u = users(&room, json!({}));
        allowed(
            power_levels(&mut room, "alice", u, json!({"events": {"m.room.redaction": 50}})),
            "levels",
        );
        rejected(room.send("bob", redact(&msg)), "redaction below event level");
    }
}

#[test]
fn third_party_invites() {
    use crate::core::keys::SigningKey;
    for v in VERSIONS {
        let mut room = TestRoom::new(v, "alice");
        let id_key = SigningKey::from_seed([9; 32], "0").expect("key");
        let tpi = NewEvent::state(
            "m.room.third_party_invite",
            "tok",
            json!({"display_name": "b...", "key_validity_url": "https://id.example/v", "public_key": id_key.public_key_base64()}),
        );
        rejected(room.send("bob", tpi.clone()), "3pid invite by non-member");
        allowed(room.send("alice", tpi), "3pid invite");

        let signed_for = |mxid: &str, token: &str| {
            let mut signed = crate::core::canonical::parse_object(
                &json!({"mxid": mxid, "sender": user("alice"), "token": token}).to_string(),
            )
            .expect("object");
            id_key.sign_object("id.example", &mut signed).expect("sign");
            serde_json::Value::from(CanonicalJsonValue::Object(signed))
        };
        let invite = |signed: serde_json::Value| {
            member_event(
                &user("bob"),
                "invite",
                json!({"third_party_invite": {"display_name": "b...", "signed": signed}}),
            )
        };
        let bob = user("bob").to_string();
        rejected(
            room.send("alice", invite(signed_for(&bob, "wrong"))),
            "unknown token",
        );
        rejected(
            room.send("alice", invite(signed_for("@mallory:example.org", "tok"))),
            "mxid mismatch",
        );
        let mut forged = signed_for(&bob, "tok");
        forged["sender"] = json!("@x:example.org");
        rejected(room.send("alice", invite(forged)), "bad signature");
        let ok = allowed(
            room.send("alice", invite(signed_for(&bob, "tok"))),
            "3pid invite member event",
        );
        assert!(ok.auth_events().iter().any(|id| room
            .fetch(id)
            .is_some_and(|e| e.kind() == "m.room.third_party_invite")));
        allowed(room.member("bob", "bob", "join"), "join after 3pid invite");
    }
}

#[test]
fn v12_creators_have_unlimited_power() {
    let mut room = TestRoom::with_create(
        "12",
        "alice",
        json!({"additional_creators": ["@zed:example.org"]}),
    );
    allowed(room.member("alice", "zed", "invite"), "invite");
    allowed(room.member("zed", "zed", "join"), "join");
    allowed(room.member("alice", "bob", "invite"), "invite");
    allowed(room.member("bob", "bob", "join"), "join");
    let bob = user("bob");
    // zed is in no `users` map but, as a creator, can change anything.
    allowed(
        power_levels(&mut room, "zed", json!({ bob.as_str(): 100 }), json!({})),
        "additional creator sets PL",
    );
    allowed(
        room.send("zed", NewEvent::state("m.room.name", "", json!({"name": "n"}))),
        "creator state",
    );
    // Creators cannot be listed in `users`, so nobody can demote them.
    rejected(
        power_levels(&mut room, "alice", json!({ "@zed:example.org": 0 }), json!({})),
        "creator in users",
    );
    // bob at 100 still cannot kick a creator.
    rejected(room.member("bob", "zed", "leave"), "kicking a creator");
    allowed(room.member("alice", "bob", "ban"), "creator bans a 100");
}

#[test]
fn v12_auth_events_exclude_create_and_must_be_from_the_room() {
    let mut room = TestRoom::new("12", "alice");
    let mut other = TestRoom::with_create("12", "alice", json!({"m.federate": true}));
    assert_ne!(room.room_id, other.room_id);
    let msg = allowed(
        room.send("alice", NewEvent::message("m.room.message", json!({"body": "x"}))),
        "message",
    );
    let create = room.current("m.room.create", "").expect("create");
    assert!(
        !msg.auth_events().iter().any(|id| id == create.event_id()),
        "create not in auth_events"
    );
    let foreign_pl = other.current("m.room.power_levels", "").expect("pl");
    let forged = room.tamper(&msg, |o| {
        o.insert(
            "auth_events".into(),
            CanonicalJsonValue::Array(
                msg.auth_events()
                    .iter()
                    .filter(|id| room.fetch(id).is_some_and(|e| e.kind() != "m.room.power_levels"))
                    .map(|id| id.to_string().into())
                    .chain([foreign_pl.event_id().to_string().into()])
                    .collect(),
            ),
        );
    });
    let fetch_any = |id: &EventId| room.fetch(id).or_else(|| other.fetch(id));
    assert!(
        check_auth_events(&forged, &room.rules, fetch_any).is_err(),
        "auth event from another room"
    );
    check_auth_events(&msg, &room.rules, fetch_any).expect("genuine auth events");
    let _ = other.member("alice", "bob", "invite");
}

#[test]
fn auth_events_must_be_exactly_right() {
    for v in ["10", "11"] {
        let mut room = TestRoom::new(v, "alice");
        let msg = allowed(
            room.send("alice", NewEvent::message("m.room.message", json!({"body": "x"}))),
            "message",
        );
        let create = room.current("m.room.create", "").expect("create");
        assert!(
            msg.auth_events().iter().any(|id| id == create.event_id()),
            "v{v} create in auth_events"
        );
        let without_create = room.tamper(&msg, |o| {
            let ids: Vec<CanonicalJsonValue> = msg
                .auth_events()
                .iter()
                .filter(|id| *id != create.event_id())
                .map(|id| id.to_string().into())
                .collect();
            o.insert("auth_events".into(), CanonicalJsonValue::Array(ids));
        });
        assert!(
            check_auth_events(&without_create, &room.rules, |id| room.fetch(id)).is_err(),
            "missing create"
        );
        let jr = room.current("m.room.join_rules", "").expect("join rules");
        let extra = room.tamper(&msg, |o| {
            if let Some(CanonicalJsonValue::Array(a)) = o.get_mut("auth_events") {
                a.push(jr.event_id().to_string().into());
            }
        });
        assert!(
            check_auth_events(&extra, &room.rules, |id| room.fetch(id)).is_err(),
            "unneeded auth event"
        );
        let dup = room.tamper(&msg, |o| {
            if let Some(CanonicalJsonValue::Array(a)) = o.get_mut("auth_events") {
                a.push(create.event_id().to_string().into());
            }
        });
        assert!(
            check_auth_events(&dup, &room.rules, |id| room.fetch(id)).is_err(),
            "duplicate auth event"
        );
        let expected =
            expected_auth_events(&msg, &room.rules, |k, s| room.state_of(&room.main, k, s)).expect("types");
        let mut got = msg.auth_events().to_vec();
        got.sort();
        let mut want = expected;
        want.sort();
        assert_eq!(got, want);
    }
}

#[test]
fn soft_fail_against_current_state() {
    for v in VERSIONS {
        let mut room = TestRoom::new(v, "alice");
        allowed(room.member("alice", "bob", "invite"), "invite");
        allowed(room.member("bob", "bob", "join"), "join");
        let before_ban = room.main.clone();
        allowed(room.member("alice", "bob", "ban"), "ban");
        // bob's server had not seen the ban yet: the message is fine by its own auth events
        // and by the state before it, but not by the current state.
        let late = room.build_on(
            &before_ban,
            "bob",
            NewEvent::message("m.room.message", json!({"body": "x"})),
        );
        room.authorize(&before_ban, &late).expect("valid at its position");
        let current = room.main.clone();
        let soft = check_soft_fail(&late, &room.rules, |k, s| room.state_of(&current, k, s));
        assert!(soft.is_err(), "v{v} soft fail");
    }
}
