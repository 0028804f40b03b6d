//! The input pipeline on native SQLite: linear history, forks resolved with state
//! resolution, rejection, soft failure and the outbox.

use ruma::{OwnedUserId, RoomVersionId};
use serde_json::json;

use crate::core::builder::{build_create_event, build_event, NewEvent, Prev, Signer};
use crate::core::keys::SigningKey;
use crate::core::pdu::Pdu;
use crate::log::LogRecord;
use crate::storage::sql::testing::MemorySql;
use crate::storage::sql::Sql;

use super::engine::{Cache, Engine, Outcome, RoomError};
use super::store;

const HS: &str = "hs.test";

pub(super) fn key() -> SigningKey {
    SigningKey::from_seed([7; 32], "t").expect("key")
}

pub(super) fn user(name: &str) -> OwnedUserId {
    OwnedUserId::try_from(format!("@{name}:{HS}")).expect("user")
}

pub(super) fn signer(key: &SigningKey, now_ms: u64) -> Signer<'_> {
    Signer {
        server_name: HS,
        key,
        now_ms,
    }
}

fn member(who: &str, membership: &str) -> NewEvent {
    NewEvent::state(
        "m.room.member",
        user(who).as_str(),
        json!({ "membership": membership }),
    )
}

/// A public room made by alice, with bob joined at power 50 (and `creator_power` for alice
/// where the version has power for creators).
pub(super) fn new_room<'a>(db: &'a MemorySql, version: &str, key: &SigningKey) -> Engine<'a> {
    store::init(db).expect("schema");
    let version = RoomVersionId::try_from(version).expect("version");
    let rules = version.rules().expect("rules");
    let room_id = ruma::OwnedRoomId::try_from(format!("!r:{HS}")).expect("room");
    let create = build_create_event(
        &version,
        &rules,
        &user("alice"),
        Some(&room_id),
        json!({}),
        signer(key, 1),
    )
    .expect("create");
    let cache: &'a Cache = Box::leak(Box::default());
    let (mut room, outcome) = Engine::create(db, cache, create).expect("create room");
    assert_eq!(outcome, Outcome::Accepted { stream_pos: 1 });
    let alice = user("alice");
    let users = if rules.authorization.explicitly_privilege_room_creators {
        json!({ "@bob:hs.test": 50 })
    } else {
        json!({ "@alice:hs.test": 100, "@bob:hs.test": 50 })
    };
    room.send(&alice, member("alice", "join"), signer(key, 2))
        .expect("alice joins");
    room.send(
        &alice,
        NewEvent::state(
            "m.room.power_levels",
            "",
            json!({ "users": users, "state_default": 50, "ban": 50 }),
        ),
        signer(key, 3),
    )
    .expect("power levels");
    room.send(
        &alice,
        NewEvent::state("m.room.join_rules", "", json!({ "join_rule": "public" })),
        signer(key, 4),
    )
    .expect("join rules");
    room.send(&user("bob"), member("bob", "join"), signer(key, 5))
        .expect("bob joins");
    room
}

/// Builds an event on top of `prev` (using the state after it), without inputting it.
pub(super) fn build_on(
    room: &mut Engine<'_>,
    prev: &[&str],
    sender: &str,
    new: NewEvent,
    key: &SigningKey,
    ts: u64,
) -> Pdu {
    let mut prevs = Vec::new();
    let mut state = std::collections::HashMap::new();
    for p in prev {
        let (_, event) = room.pdu(p).expect("read").expect("prev exists");
        prevs.push(Prev::of(&event, room.rules()));
        state = room.state_after_pdus(p).expect("state").expect("has state");
    }
    let rules = room.rules().clone();
    build_event(
        &rules,
        &room.info.room_id.clone(),
        &user(sender),
        new,
        &prevs,
        |t, k| state.get(&(t.clone(), k.to_owned())).cloned(),
        signer(key, ts),
    )
    .expect("build")
}

fn current(room: &mut Engine<'_>, t: &str, k: &str) -> Option<Pdu> {
    room.current_state_pdus()
        .expect("state")
        .remove(&(t.into(), k.to_owned()))
}

fn topic(room: &mut Engine<'_>) -> Option<String> {
    current(room, "m.room.topic", "").and_then(|p| p.content()["topic"].as_str().map(str::to_owned))
}

fn membership(room: &mut Engine<'_>, who: &str) -> Option<String> {
    current(room, "m.room.member", user(who).as_str())
        .and_then(|p| p.content()["membership"].as_str().map(str::to_owned))
}

#[test]
fn linear_history_gets_stream_positions_and_outbox_records() {
    for version in ["10", "11", "12"] {
        let db = MemorySql::new();
        let k = key();
        let mut room = new_room(&db, version, &k);
        let (pdu, pos) = room
            .send(
                &user("bob"),
                NewEvent::message("m.room.message", json!({"body": "hi", "msgtype": "m.text"})),
                signer(&k, 6),
            )
            .expect("message");
        assert_eq!(pos, 6, "v{version}");
        assert_eq!(room.extremities().expect("ext"), vec![pdu.event_id().to_string()]);
        let outbox = store::outbox(&db, 100).expect("outbox");
        assert_eq!(outbox.len(), 6);
        let LogRecord::Event {
            stream_pos,
            event_id,
            state,
            ..
        } = serde_json::from_str(&outbox[5].1).expect("record");
        assert_eq!((stream_pos, event_id.as_str()), (6, pdu.event_id().as_str()));
        assert!(state.is_empty(), "a message changes no state");
        let LogRecord::Event {
            membership, state, ..
        } = serde_json::from_str(&outbox[4].1).expect("record");
        assert_eq!(membership.as_deref(), Some("join"));
        assert_eq!(state.len(), 1);
        // Input is idempotent.
        assert_eq!(
            room.input_new(pdu).expect("again"),
            Outcome::Accepted { stream_pos: 6 }
        );
    }
}

#[test]
fn refused_local_events_store_nothing() {
    let db = MemorySql::new();
    let k = key();
    let mut room = new_room(&db, "12", &k);
    let before = store::latest_stream_pos(&db).expect("pos");
    let err = room
        .send(
            &user("mallory"),
            NewEvent::message("m.room.message", json!({"body": "x"})),
            signer(&k, 9),
        )
        .expect_err("not joined");
    assert!(matches!(err, RoomError::Forbidden(_)), "{err:?}");
    // Bob (50) cannot change power levels above his own level.
    let err = room
        .send(
            &user("bob"),
            NewEvent::state("m.room.power_levels", "", json!({"users": {"@bob:hs.test": 100}})),
            signer(&k, 10),
        )
        .expect_err("raise above own level");
    assert!(matches!(err, RoomError::Forbidden(_)));
    assert_eq!(store::latest_stream_pos(&db).expect("pos"), before);
    let count = db.query("SELECT count(*) FROM events", &[]).expect("count")[0]
        .int(0)
        .expect("int");
    assert_eq!(count, 5);
}

#[test]
fn rejected_events_are_stored_but_not_in_the_timeline() {
    let db = MemorySql::new();
    let k = key();
    let mut room = new_room(&db, "11", &k);
    let tip = room.extremities().expect("ext")[0].clone();
    // Mallory never joined: built anyway and input as if received over federation.
    let bad = build_on(
        &mut room,
        &[&tip],
        "mallory",
        NewEvent::message("m.room.message", json!({"body": "x"})),
        &k,
        9,
    );
    assert!(matches!(
        room.input_new(bad.clone()).expect("input"),
        Outcome::Rejected(_)
    ));
    assert_eq!(room.extremities().expect("ext"), vec![tip.clone()]);
    // A later event that names the rejected one as prev is still accepted; state is that
    // before the rejected event.
    let next = build_on(
        &mut room,
        &[bad.event_id().as_str()],
        "bob",
        NewEvent::message("m.room.message", json!({"body": "y"})),
        &k,
        10,
    );
    assert!(matches!(
        room.input_new(next).expect("input"),
        Outcome::Accepted { .. }
    ));
    assert_eq!(membership(&mut room, "bob").as_deref(), Some("join"));
}

/// A ban of bob races bob's topic change; resolution applies the ban first (power events
/// come first) and bob's concurrent topic no longer passes auth.
#[test]
fn ban_racing_a_topic_change_resolves_the_same_in_any_order() {
    for version in ["10", "11", "12"] {
        let mut outcomes = Vec::new();
        for order in [[0, 1], [1, 0]] {
            let db = MemorySql::new();
            let k = key();
            let mut room = new_room(&db, version, &k);
            let tip = room.extremities().expect("ext")[0].clone();
            let ban = build_on(&mut room, &[&tip], "alice", member("bob", "ban"), &k, 100);
            let topic_ev = build_on(
                &mut room,
                &[&tip],
                "bob",
                NewEvent::state("m.room.topic", "", json!({"topic": "bob's"})),
                &k,
                101,
            );
            let events = [ban, topic_ev];
            for i in order {
                let outcome = room.input_new(events[i].clone()).expect("input");
                assert!(
                    !matches!(outcome, Outcome::Rejected(_)),
                    "v{version} {i}: {outcome:?}"
                );
            }
            outcomes.push((membership(&mut room, "bob"), topic(&mut room)));
            // Bob can no longer send on top of the resolved state.
            let err = room
                .send(
                    &user("bob"),
                    NewEvent::message("m.room.message", json!({"body": "z"})),
                    signer(&k, 200),
                )
                .expect_err("banned");
            assert!(matches!(err, RoomError::Forbidden(_)));
        }
        assert_eq!(outcomes[0], outcomes[1], "v{version}: order-independent");
        assert_eq!(outcomes[0].0.as_deref(), Some("ban"), "v{version}");
        assert_eq!(outcomes[0].1, None, "v{version}: bob's topic loses to the ban");
    }
}

#[test]
fn conflicting_topics_resolve_deterministically_and_merge() {
    for version in ["11", "12"] {
        let mut results = Vec::new();
        for order in [[0, 1], [1, 0]] {
            let db = MemorySql::new();
            let k = key();
            let mut room = new_room(&db, version, &k);
            let tip = room.extremities().expect("ext")[0].clone();
            let a = build_on(
                &mut room,
                &[&tip],
                "alice",
                NewEvent::state("m.room.topic", "", json!({"topic": "A"})),
                &k,
                100,
            );
            let b = build_on(
                &mut room,
                &[&tip],
                "bob",
                NewEvent::state("m.room.topic", "", json!({"topic": "B"})),
                &k,
                101,
            );
            let ids = [a.event_id().to_string(), b.event_id().to_string()];
            let events = [a, b];
            for i in order {
                room.input_new(events[i].clone()).expect("input");
            }
            let mut ext = room.extremities().expect("ext");
            ext.sort();
            let mut expect = ids.to_vec();
            expect.sort();
            assert_eq!(ext, expect, "two forward extremities");
            let resolved = topic(&mut room);
            // A local send merges the forks.
            let (merge, _) = room
                .send(
                    &user("alice"),
                    NewEvent::message("m.room.message", json!({"body": "m"})),
                    signer(&k, 300),
                )
                .expect("merge");
            assert_eq!(merge.prev_events().len(), 2);
            assert_eq!(room.extremities().expect("ext").len(), 1);
            assert_eq!(topic(&mut room), resolved);
            results.push(resolved);
        }
        assert_eq!(results[0], results[1], "v{version}");
        assert!(results[0].is_some());
    }
}

#[test]
fn events_allowed_by_their_past_but_not_the_present_are_soft_failed() {
    let db = MemorySql::new();
    let k = key();
    let mut room = new_room(&db, "12", &k);
    let tip = room.extremities().expect("ext")[0].clone();
    room.send(&user("alice"), member("bob", "ban"), signer(&k, 50))
        .expect("ban");
    // Bob builds on the state before the ban (a fork from the old tip).
    let late = build_on(
        &mut room,
        &[&tip],
        "bob",
        NewEvent::message("m.room.message", json!({"body": "late"})),
        &k,
        60,
    );
    let outcome = room.input_new(late.clone()).expect("input");
    assert!(matches!(outcome, Outcome::SoftFailed(_)), "{outcome:?}");
    let (row, _) = room.pdu(late.event_id().as_str()).expect("read").expect("stored");
    assert_eq!(row.stream_pos, None, "soft-failed events never reach clients");
    assert!(!room
        .extremities()
        .expect("ext")
        .contains(&late.event_id().to_string()));
}

#[test]
fn missing_prev_events_are_reported() {
    let db = MemorySql::new();
    let k = key();
    let mut room = new_room(&db, "12", &k);
    let tip = room.extremities().expect("ext")[0].clone();
    let a = build_on(
        &mut room,
        &[&tip],
        "bob",
        NewEvent::message("m.room.message", json!({"body": "a"})),
        &k,
        10,
    );
    // Build b on a without storing a.
    room.input_new(a.clone()).expect("a");
    let b = build_on(
        &mut room,
        &[a.event_id().as_str()],
        "bob",
        NewEvent::message("m.room.message", json!({"body": "b"})),
        &k,
        11,
    );
    let db2 = MemorySql::new();
    let mut other = new_room(&db2, "12", &k);
    // Same room id, but this copy lacks `a`: the input asks for it.
    assert!(matches!(
        other.input_new(b),
        Err(RoomError::MissingPrev(_)) | Err(RoomError::WrongRoom)
    ));
}

#[test]
fn redactions_strip_content_when_allowed() {
    let db = MemorySql::new();
    let k = key();
    let mut room = new_room(&db, "11", &k);
    let (msg, _) = room
        .send(
            &user("bob"),
            NewEvent::message("m.room.message", json!({"body": "secret"})),
            signer(&k, 10),
        )
        .expect("message");
    let mut redaction = NewEvent::message("m.room.redaction", json!({"reason": "oops"}));
    redaction.redacts = Some(msg.owned_event_id());
    room.send(&user("bob"), redaction, signer(&k, 11))
        .expect("redaction");
    let (row, pdu) = room.pdu(msg.event_id().as_str()).expect("read").expect("stored");
    assert!(row.redacted_by.is_some());
    assert_eq!(pdu.content(), json!({}));
}

/// Every row of the room's tables, in a stable order, for comparing two databases.
pub(super) fn dump(db: &MemorySql) -> Vec<String> {
    let mut out = Vec::new();
    for table in [
        "meta",
        "events",
        "extremities",
        "state_groups",
        "state_entries",
        "outbox",
    ] {
        for row in db
            .query(&format!("SELECT * FROM {table} ORDER BY 1"), &[])
            .expect("dump")
        {
            out.push(format!("{table}: {row:?}"));
        }
    }
    out
}

#[test]
fn batched_writes_store_exactly_what_one_by_one_writes_store() {
    // A history with linear steps, state changes, a fork with conflicting topics and its
    // merge, a rejected and a soft-failed event, and a redaction.
    let db = MemorySql::new();
    let k = key();
    let mut source = new_room(&db, "12", &k);
    for i in 0..3 {
        source
            .send(
                &user("bob"),
                NewEvent::message("m.room.message", json!({"body": i})),
                signer(&k, 10 + i),
            )
            .expect("message");
    }
    let tip = source.extremities().expect("ext")[0].clone();
    let topic_a = build_on(
        &mut source,
        &[&tip],
        "alice",
        NewEvent::state("m.room.topic", "", json!({"topic": "A"})),
        &k,
        20,
    );
    let topic_b = build_on(
        &mut source,
        &[&tip],
        "bob",
        NewEvent::state("m.room.topic", "", json!({"topic": "B"})),
        &k,
        21,
    );
    let after_a = {
        source.input_new(topic_a.clone()).expect("a");
        source.input_new(topic_b.clone()).expect("b");
        build_on(
            &mut source,
            &[topic_a.event_id().as_str()],
            "bob",
            NewEvent::message("m.room.message", json!({"body": "on A"})),
            &k,
            22,
        )
    };
    source.input_new(after_a.clone()).expect("on a");
    let (merge, _) = source
        .send(
            &user("alice"),
            NewEvent::message("m.room.message", json!({"body": "merge"})),
            signer(&k, 30),
        )
        .expect("merge");
    // Carol never joined: rejected.
    let tip = merge.event_id().to_string();
    let rejected = build_on(
        &mut source,
        &[&tip],
        "carol",
        NewEvent::message("m.room.message", json!({"body": "x"})),
        &k,
        31,
    );
    assert!(matches!(
        source.input_new(rejected.clone()).expect("input"),
        Outcome::Rejected(_)
    ));
    let (ban, _) = source
        .send(&user("alice"), member("bob", "ban"), signer(&k, 40))
        .expect("ban");
    let late = build_on(
        &mut source,
        &[&tip],
        "bob",
        NewEvent::message("m.room.message", json!({"body": "late"})),
        &k,
        41,
    );
    assert!(matches!(
        source.input_new(late.clone()).expect("input"),
        Outcome::SoftFailed(_)
    ));
    let mut redaction = NewEvent::message("m.room.redaction", json!({}));
    redaction.redacts = Some(merge.owned_event_id());
    let (redaction, _) = source
        .send(&user("alice"), redaction, signer(&k, 50))
        .expect("redaction");

    // Everything in input order (the source's nid order).
    let nids = db
        .query("SELECT nid FROM events ORDER BY nid", &[])
        .expect("nids");
    let mut pdus = Vec::new();
    for row in nids {
        let pdu = source
            .pdu_by_nid(row.int(0).expect("nid"))
            .expect("read")
            .expect("event");
        pdus.push(pdu);
    }
    // The stored merge is redacted now; input its original form, as the source did.
    for p in pdus.iter_mut() {
        if p.event_id() == merge.event_id() {
            *p = merge.clone();
        }
    }
    assert!(pdus.iter().any(|p| p.event_id() == ban.event_id()));
    assert!(pdus.iter().any(|p| p.event_id() == redaction.event_id()));

    let replay = |batch: bool| {
        let db = MemorySql::new();
        store::init(&db).expect("schema");
        let cache: &Cache = Box::leak(Box::default());
        let (mut room, _) = Engine::create(&db, cache, pdus[0].clone()).expect("create");
        if batch {
            room.batch_writes();
        }
        let mut outcomes = Vec::new();
        for pdu in &pdus[1..] {
            outcomes.push(room.input_new(pdu.clone()).expect("input"));
        }
        room.flush().expect("flush");
        (dump(&db), outcomes)
    };
    let (one_by_one, outcomes) = replay(false);
    let (batched, batched_outcomes) = replay(true);
    assert_eq!(outcomes, batched_outcomes);
    assert!(outcomes.iter().any(|o| matches!(o, Outcome::Rejected(_))));
    assert!(outcomes.iter().any(|o| matches!(o, Outcome::SoftFailed(_))));
    assert_eq!(one_by_one, batched);
    assert_eq!(one_by_one, dump(&db), "the replays store what the source stored");
}

#[test]
fn stale_auth_events_do_not_let_an_event_past_the_state_before_it() {
    // Bob's message names his join among its auth events (which allow it), but its prev
    // event is his ban: the state before it refuses him.
    let db = MemorySql::new();
    let k = key();
    let mut room = new_room(&db, "12", &k);
    let tip = room.extremities().expect("ext")[0].clone();
    let before_ban = room.state_after_pdus(&tip).expect("state").expect("has state");
    let (ban, _) = room
        .send(&user("alice"), member("bob", "ban"), signer(&k, 50))
        .expect("ban");
    let rules = room.rules().clone();
    let late = build_event(
        &rules,
        &room.info.room_id.clone(),
        &user("bob"),
        NewEvent::message("m.room.message", json!({"body": "still here?"})),
        &[Prev::new(ban.owned_event_id(), ban.depth())],
        |t, s| before_ban.get(&(t.clone(), s.to_owned())).cloned(),
        signer(&k, 60),
    )
    .expect("build");
    let outcome = room.input_new(late).expect("input");
    assert!(matches!(outcome, Outcome::Rejected(_)), "{outcome:?}");
}
