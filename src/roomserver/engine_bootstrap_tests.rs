//! A room started from a join's snapshot, on native SQLite: the state before the join,
//! its auth chain and the join event, with no local create event; afterwards the room
//! takes local sends, new remote events and forks like any other. A snapshot that does
//! not allow the join leaves nothing stored.

use std::collections::BTreeSet;

use serde_json::json;

use crate::core::builder::NewEvent;
use crate::core::pdu::Pdu;
use crate::storage::sql::testing::MemorySql;
use crate::storage::sql::Sql;

use super::engine::{room_info, Cache, Engine, Outcome, RoomError};
use super::engine_tests::{build_on, key, new_room, signer, user};
use super::store;

fn member(who: &str, membership: &str) -> NewEvent {
    NewEvent::state(
        "m.room.member",
        user(who).as_str(),
        json!({ "membership": membership }),
    )
}

fn tip(room: &Engine<'_>) -> String {
    room.extremities().expect("extremities")[0].clone()
}

fn pdus(room: &mut Engine<'_>, ids: &[String]) -> Vec<Pdu> {
    ids.iter()
        .map(|id| room.pdu(id).expect("read").expect("stored").1)
        .collect()
}

fn state_set(room: &mut Engine<'_>) -> BTreeSet<(String, String, String)> {
    room.current_state_pdus()
        .expect("state")
        .into_iter()
        .map(|((t, k), p)| (t.to_string(), k, p.event_id().to_string()))
        .collect()
}

/// The resident room with history, carol's join on its tip, and the snapshot a
/// `send_join` would answer: the state before the join and the auth chain of it all.
fn resident(db: &MemorySql) -> (Engine<'_>, Pdu, Vec<Pdu>, Vec<Pdu>) {
    let k = key();
    let mut room = new_room(db, "12", &k);
    room.send(
        &user("alice"),
        NewEvent::state("m.room.topic", "", json!({"topic": "before"})),
        signer(&k, 10),
    )
    .expect("topic");
    for i in 0..3 {
        room.send(
            &user("bob"),
            NewEvent::message("m.room.message", json!({"body": i})),
            signer(&k, 11 + i),
        )
        .expect("message");
    }
    let t = tip(&room);
    let join = build_on(&mut room, &[&t], "carol", member("carol", "join"), &k, 20);
    assert!(matches!(
        room.input_new(join.clone()).expect("join"),
        Outcome::Accepted { .. }
    ));
    let state_ids = room
        .state_ids_before(join.event_id().as_str())
        .expect("ids")
        .expect("state");
    let mut chain_of = state_ids.clone();
    chain_of.push(join.event_id().to_string());
    let chain_ids = room.auth_chain(&chain_of).expect("chain");
    let state = pdus(&mut room, &state_ids);
    let chain = pdus(&mut room, &chain_ids);
    (room, join, state, chain)
}

#[test]
fn a_room_started_from_a_join_snapshot_behaves_like_any_other() {
    let (source_db, db) = (MemorySql::new(), MemorySql::new());
    let (mut source, join, state, chain) = resident(&source_db);
    store::init(&db).expect("schema");
    let cache: &Cache = Box::leak(Box::default());
    let (mut room, outcome) =
        Engine::bootstrap(&db, cache, join.clone(), (state, Vec::new()), chain).expect("bootstrap");
    assert_eq!(
        outcome,
        Outcome::Accepted { stream_pos: 1 },
        "the join is the first timeline event"
    );
    assert_eq!(state_set(&mut room), state_set(&mut source));
    assert_eq!(
        room.extremities().expect("ext"),
        vec![join.event_id().to_string()]
    );
    let prevs: Vec<String> = join.prev_events().iter().map(|p| p.to_string()).collect();
    assert_eq!(store::backward_extremities(&db).expect("backward"), prevs);
    let timeline = store::events_after(&db, 0, i64::MAX, 100).expect("timeline");
    assert_eq!(timeline.len(), 1);

    // New remote events, a local send, and a fork resolved the same on both sides.
    let k = key();
    let m = build_on(
        &mut source,
        &[join.event_id().as_str()],
        "bob",
        NewEvent::message("m.room.message", json!({"body": "hi carol"})),
        &k,
        30,
    );
    source.input_new(m.clone()).expect("m");
    assert_eq!(
        room.input_new(m.clone()).expect("m"),
        Outcome::Accepted { stream_pos: 2 }
    );
    let (mine, _) = room
        .send(
            &user("carol"),
            NewEvent::message("m.room.message", json!({"body": "hello"})),
            signer(&k, 31),
        )
        .expect("carol sends");
    assert!(matches!(
        source.input_new(mine.clone()).expect("mine"),
        Outcome::Accepted { .. }
    ));
    let base = mine.event_id().to_string();
    let t1 = build_on(
        &mut source,
        &[&base],
        "alice",
        NewEvent::state("m.room.topic", "", json!({"topic": "alice's"})),
        &k,
        40,
    );
    let t2 = build_on(
        &mut source,
        &[&base],
        "bob",
        NewEvent::state("m.room.topic", "", json!({"topic": "bob's"})),
        &k,
        41,
    );
    for e in [&t1, &t2] {
        assert!(matches!(
            source.input_new(e.clone()).expect("source"),
            Outcome::Accepted { .. }
        ));
    }
    for e in [&t2, &t1] {
        assert!(matches!(
            room.input_new(e.clone()).expect("room"),
            Outcome::Accepted { .. }
        ));
    }
    assert_eq!(
        state_set(&mut room),
        state_set(&mut source),
        "the same resolution"
    );
    assert_eq!(
        room.extremities().expect("ext"),
        source.extremities().expect("ext")
    );
}

#[test]
fn a_snapshot_that_does_not_allow_the_join_leaves_nothing() {
    let (source_db, db) = (MemorySql::new(), MemorySql::new());
    let (_source, join, state, chain) = resident(&source_db);
    store::init(&db).expect("schema");
    let empty = |db: &MemorySql| {
        room_info(db).expect("info").is_none()
            && db.query("SELECT count(*) FROM events", &[]).expect("count")[0]
                .int(0)
                .expect("n")
                == 0
            && db.query("SELECT count(*) FROM state_groups", &[]).expect("count")[0]
                .int(0)
                .expect("n")
                == 0
    };
    // Without the join rules, the join's auth events are incomplete.
    let drop_rules = |list: &[Pdu]| -> Vec<Pdu> {
        list.iter()
            .filter(|p| p.kind() != "m.room.join_rules")
            .cloned()
            .collect()
    };
    let cache = Cache::default();
    let err = Engine::bootstrap(
        &db,
        &cache,
        join.clone(),
        (drop_rules(&state), Vec::new()),
        drop_rules(&chain),
    )
    .err()
    .expect("refused");
    assert!(matches!(err, RoomError::MissingAuth(_)), "{err:?}");
    assert!(empty(&db), "nothing stored");
    // Without a create event at all.
    let no_create = |list: &[Pdu]| -> Vec<Pdu> {
        list.iter()
            .filter(|p| p.kind() != "m.room.create")
            .cloned()
            .collect()
    };
    let err = Engine::bootstrap(
        &db,
        &cache,
        join.clone(),
        (no_create(&state), Vec::new()),
        no_create(&chain),
    )
    .err()
    .expect("refused");
    assert!(matches!(err, RoomError::Forbidden(_)), "{err:?}");
    assert!(empty(&db));
    // And the full snapshot still works on the same database afterwards.
    let (_, outcome) = Engine::bootstrap(&db, &cache, join, (state, Vec::new()), chain).expect("bootstrap");
    assert!(matches!(outcome, Outcome::Accepted { .. }));
}

#[test]
fn a_snapshot_goes_in_pieces_into_a_begun_room() {
    let (source_db, db) = (MemorySql::new(), MemorySql::new());
    let (mut source, join, state, chain) = resident(&source_db);
    store::init(&db).expect("schema");
    let cache: &Cache = Box::leak(Box::default());
    let mut all = chain.clone();
    all.extend(state.iter().cloned());
    let ordered = super::engine::auth_order(all);
    assert_eq!(ordered[0].kind(), "m.room.create");
    {
        let mut room = Engine::begin(&db, cache, &ordered[0]).expect("begin");
        assert!(room.is_begun().expect("begun"));
        // Outliers in pieces of two, auth events first.
        for piece in ordered.chunks(2) {
            for pdu in piece {
                let outcome = room.input_outlier(pdu.clone()).expect("outlier");
                assert!(matches!(outcome, Outcome::Stored), "{outcome:?}");
            }
        }
        assert!(
            room.extremities().expect("ext").is_empty(),
            "nothing in the timeline yet"
        );
    }
    let ids: Vec<ruma::OwnedEventId> = state.iter().map(|p| p.owned_event_id()).collect();
    let (mut room, outcome) =
        Engine::bootstrap(&db, cache, join.clone(), (Vec::new(), ids.clone()), Vec::new())
            .expect("bootstrap");
    assert_eq!(outcome, Outcome::Accepted { stream_pos: 1 });
    assert_eq!(state_set(&mut room), state_set(&mut source));
    assert!(!room.is_begun().expect("started"));
    // Started once: a second bootstrap is refused.
    assert!(matches!(
        Engine::bootstrap(&db, cache, join, (Vec::new(), ids), Vec::new()),
        Err(RoomError::Exists)
    ));
}
