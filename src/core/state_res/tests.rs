use ruma::events::StateEventType;
use serde_json::json;

use super::*;
use crate::core::builder::NewEvent;
use crate::core::testing::{member_event, user, Branch, TestRoom};

/// v10/v11 use state resolution v2.0, v12 uses v2.1.
const VERSIONS: [&str; 3] = ["10", "11", "12"];

fn key(kind: &str, state_key: &str) -> (StateEventType, String) {
    (StateEventType::from(kind), state_key.to_owned())
}

/// Resolves the forks both ways round and checks the answers agree.
fn resolve_forks(room: &TestRoom, forks: &[&Branch]) -> StateMap<OwnedEventId> {
    let sets: Vec<StateMap<OwnedEventId>> = forks.iter().map(|b| b.state.clone()).collect();
    let fetch = |id: &EventId| room.fetch(id);
    let chains = auth_chain_differences(&sets, fetch);
    let resolved = resolve(&room.rules, &sets, &chains, fetch).expect("resolves");
    // The full chains resolve the same way (only their difference matters).
    let full = auth_chains_for(&sets, fetch);
    assert_eq!(
        resolve(&room.rules, &sets, &full, fetch).expect("resolves with full chains"),
        resolved
    );
    assert_eq!(auth_difference(&full), auth_difference(&chains));
    let mut rev_sets = sets.clone();
    rev_sets.reverse();
    let mut rev_chains = chains.clone();
    rev_chains.reverse();
    let again = resolve(&room.rules, &rev_sets, &rev_chains, fetch).expect("resolves reversed");
    assert_eq!(resolved, again, "resolution depends on input order");
    resolved
}

/// Union less intersection of the chains.
fn auth_difference(chains: &[HashSet<OwnedEventId>]) -> std::collections::BTreeSet<OwnedEventId> {
    let union: HashSet<&OwnedEventId> = chains.iter().flatten().collect();
    union
        .into_iter()
        .filter(|id| !chains.iter().all(|c| c.contains(*id)))
        .cloned()
        .collect()
}

/// alice (creator, admin), bob at 50, carol joined.
fn room_with_moderator(v: &str) -> TestRoom {
    let mut room = TestRoom::new(v, "alice");
    for u in ["bob", "carol"] {
        room.member("alice", u, "invite").expect("invite");
        room.member(u, u, "join").expect("join");
    }
    let mut users = json!({ user("bob").as_str(): 50 });
    if !room.rules.authorization.explicitly_privilege_room_creators {
        users[user("alice").as_str()] = json!(100);
    }
    room.send(
        "alice",
        NewEvent::state("m.room.power_levels", "", json!({ "users": users })),
    )
    .expect("power levels");
    room
}

#[test]
fn ban_racing_a_demotion_loses() {
    for v in VERSIONS {
        let mut room = room_with_moderator(v);
        let mut a = room.main.clone();
        let mut b = room.main.clone();
        let mut users = json!({ user("bob").as_str(): 0 });
        if !room.rules.authorization.explicitly_privilege_room_creators {
            users[user("alice").as_str()] = json!(100);
        }
        let demote = room
            .send_on(
                &mut a,
                "alice",
                NewEvent::state("m.room.power_levels", "", json!({ "users": users })),
            )
            .expect("demotion");
        room.send_on(&mut b, "bob", member_event(&user("carol"), "ban", json!({})))
            .expect("ban in its fork");
        let resolved = resolve_forks(&room, &[&a, &b]);
        assert_eq!(
            resolved.get(&key("m.room.power_levels", "")),
            Some(&demote.owned_event_id()),
            "v{v}"
        );
        let carol = resolved
            .get(&key("m.room.member", user("carol").as_str()))
            .expect("carol");
        assert_eq!(
            room.fetch(carol).expect("event").content()["membership"],
            "join",
            "v{v}: ban must lose"
        );
    }
}

#[test]
fn conflicting_topics_resolve_to_the_later_one() {
    for v in VERSIONS {
        let mut room = room_with_moderator(v);
        let mut a = room.main.clone();
        let mut b = room.main.clone();
        room.send_on(
            &mut a,
            "alice",
            NewEvent::state("m.room.topic", "", json!({"topic": "A"})),
        )
        .expect("A");
        let later = room
            .send_on(
                &mut b,
                "bob",
                NewEvent::state("m.room.topic", "", json!({"topic": "B"})),
            )
            .expect("B");
        let resolved = resolve_forks(&room, &[&a, &b]);
        assert_eq!(
            resolved.get(&key("m.room.topic", "")),
            Some(&later.owned_event_id()),
            "v{v}"
        );
        // Unconflicted state is kept as is.
        assert_eq!(
            resolved.get(&key("m.room.create", "")),
            a.state.get(&key("m.room.create", ""))
        );
    }
}

#[test]
fn join_racing_a_join_rule_change_is_dropped() {
    for v in VERSIONS {
        let mut room = room_with_moderator(v);
        let mut a = room.main.clone();
        let mut b = room.main.clone();
        room.send_on(
            &mut a,
            "alice",
            NewEvent::state("m.room.join_rules", "", json!({"join_rule": "public"})),
        )
        .expect("public");
        room.send_on(&mut a, "dave", member_event(&user("dave"), "join", json!({})))
            .expect("dave joins");
        let invite_only = room
            .send_on(
                &mut b,
                "alice",
                NewEvent::state("m.room.join_rules", "", json!({"join_rule": "invite"})),
            )
            .expect("invite only");
        let resolved = resolve_forks(&room, &[&a, &b]);
        assert_eq!(
            resolved.get(&key("m.room.join_rules", "")),
            Some(&invite_only.owned_event_id()),
            "v{v}"
        );
        assert!(
            !resolved.contains_key(&key("m.room.member", user("dave").as_str())),
            "v{v}: dave's join dropped"
        );
    }
}

#[test]
fn branch_built_on_a_rejected_event_does_not_win() {
    for v in VERSIONS {
        let mut room = room_with_moderator(v);
        let original_pl = room
            .current("m.room.power_levels", "")
            .expect("pl")
            .owned_event_id();
        let mut a = room.main.clone();
        let mut b = room.main.clone();
        let alice_topic = room
            .send_on(
                &mut a,
                "alice",
                NewEvent::state("m.room.topic", "", json!({"topic": "A"})),
            )
            .expect("A");
        // carol (level 0) makes herself admin: rejected, but her server builds on it.
        let users = json!({ user("carol").as_str(): 100 });
        room.insert_rejected_on(
            &mut b,
            "carol",
            NewEvent::state("m.room.power_levels", "", json!({ "users": users })),
        );
        room.insert_rejected_on(
            &mut b,
            "carol",
            NewEvent::state("m.room.topic", "", json!({"topic": "pwned"})),
        );
        let resolved = resolve_forks(&room, &[&a, &b]);
        assert_eq!(
            resolved.get(&key("m.room.power_levels", "")),
            Some(&original_pl),
            "v{v}"
        );
        assert_eq!(
            resolved.get(&key("m.room.topic", "")),
            Some(&alice_topic.owned_event_id()),
            "v{v}"
        );
    }
}

#[test]
fn identical_sets_need_no_resolution() {
    let room = room_with_moderator("12");
    let resolved = resolve_forks(&room, &[&room.main, &room.main]);
    assert_eq!(resolved, room.main.state);
}

#[test]
fn state_res_v1_rooms_are_refused() {
    let rules = ruma::room_version_rules::RoomVersionRules::V1;
    let out = resolve(&rules, &[], &[], |_| None);
    assert_eq!(out, Err(StateResError::UnsupportedVersion));
}

#[test]
fn auth_chain_walks_to_the_create_event() {
    let room = room_with_moderator("11");
    let pl = room.current("m.room.power_levels", "").expect("pl");
    let chain = auth_chain([&pl.owned_event_id()], |id| room.fetch(id));
    let create = room.current("m.room.create", "").expect("create");
    assert!(chain.contains(create.event_id()));
    assert!(!chain.contains(pl.event_id()));
}
