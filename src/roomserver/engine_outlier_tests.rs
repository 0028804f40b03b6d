//! Outliers, missing auth events and gaps on native SQLite: an outlier upgraded in its
//! own row when it arrives as a new event or is needed as a prev event, missing auth
//! events reported with nothing written, and new events crossing a gap with a supplied
//! state (the missing prev events kept as backward extremities).
//!
//! Two rooms built by `new_room` share every event (same key, same timestamps): events
//! built in one are input into the other, which lacks some of them.

use ruma::OwnedEventId;
use serde_json::json;

use crate::core::builder::NewEvent;
use crate::core::pdu::Pdu;
use crate::storage::sql::testing::MemorySql;
use crate::storage::sql::Sql;

use super::engine::{Engine, GapState, Outcome, RoomError};
use super::engine_tests::{build_on, key, new_room};
use super::store;

fn rows(db: &MemorySql) -> i64 {
    db.query("SELECT count(*) FROM events", &[]).expect("count")[0]
        .int(0)
        .expect("int")
}

fn message(room: &mut Engine<'_>, prev: &str, body: &str, ts: u64) -> Pdu {
    build_on(
        room,
        &[prev],
        "bob",
        NewEvent::message("m.room.message", json!({ "body": body })),
        &key(),
        ts,
    )
}

fn topic(room: &mut Engine<'_>, prev: &str, topic: &str, ts: u64) -> Pdu {
    build_on(
        room,
        &[prev],
        "bob",
        NewEvent::state("m.room.topic", "", json!({ "topic": topic })),
        &key(),
        ts,
    )
}

fn tip(room: &Engine<'_>) -> String {
    room.extremities().expect("extremities")[0].clone()
}

fn id(pdu: &Pdu) -> String {
    pdu.event_id().to_string()
}

fn current_topic(room: &mut Engine<'_>) -> Option<String> {
    room.current_state_pdus()
        .expect("state")
        .remove(&("m.room.topic".into(), String::new()))
        .and_then(|p| p.content()["topic"].as_str().map(str::to_owned))
}

#[test]
fn an_outlier_arriving_as_a_new_event_is_upgraded_in_its_own_row() {
    let (db, k) = (MemorySql::new(), key());
    let mut room = new_room(&db, "12", &k);
    let base = tip(&room);
    let a = message(&mut room, &base, "a", 10);
    let before = rows(&db);
    assert_eq!(room.input_outlier(a.clone()).expect("outlier"), Outcome::Stored);
    assert_eq!(
        room.extremities().expect("ext"),
        vec![base.clone()],
        "an outlier is no extremity"
    );
    let head = room.stream_head().expect("head");
    assert_eq!(
        room.input_new(a.clone()).expect("new"),
        Outcome::Accepted { stream_pos: head + 1 }
    );
    assert_eq!(rows(&db), before + 1, "one row per event");
    let row = store::event_by_id(&db, &id(&a)).expect("read").expect("row");
    assert_eq!(
        (row.kind, row.stream_pos),
        (store::Kind::New as i64, Some(head + 1))
    );
    assert!(row.state_after.is_some());
    assert_eq!(room.extremities().expect("ext"), vec![id(&a)]);
    // Again: the stored outcome.
    assert_eq!(
        room.input_new(a).expect("again"),
        Outcome::Accepted { stream_pos: head + 1 }
    );
}

#[test]
fn an_outlier_needed_as_a_prev_event_is_upgraded_first() {
    let k = key();
    let (source_db, db) = (MemorySql::new(), MemorySql::new());
    let mut source = new_room(&source_db, "12", &k);
    let mut room = new_room(&db, "12", &k);
    let base = tip(&source);
    let t = topic(&mut source, &base, "from an outlier", 10);
    source.input_new(t.clone()).expect("t");
    let m = message(&mut source, &id(&t), "after", 11);
    source.input_new(m.clone()).expect("m");
    let u = message(&mut source, &id(&m), "latest", 12);

    room.input_outlier(m.clone()).expect("m as outlier");
    room.input_outlier(t.clone()).expect("t as outlier");
    let head = room.stream_head().expect("head");
    // u's prev m is an outlier, and so is m's prev t; t's prev has state.
    assert_eq!(
        room.input_new(u.clone()).expect("u"),
        Outcome::Accepted { stream_pos: head + 3 }
    );
    for (event, pos) in [(&t, head + 1), (&m, head + 2)] {
        let row = store::event_by_id(&db, &id(event)).expect("read").expect("row");
        assert_eq!(row.stream_pos, Some(pos), "upgraded parents first");
    }
    assert_eq!(current_topic(&mut room).as_deref(), Some("from an outlier"));
    assert_eq!(room.extremities().expect("ext"), vec![id(&u)]);
}

#[test]
fn an_outlier_prev_with_a_hole_behind_it_is_reported_missing() {
    let k = key();
    let (source_db, db) = (MemorySql::new(), MemorySql::new());
    let mut source = new_room(&source_db, "12", &k);
    let mut room = new_room(&db, "12", &k);
    let base = tip(&source);
    let a = message(&mut source, &base, "a", 10);
    source.input_new(a.clone()).expect("a");
    let b = message(&mut source, &id(&a), "b", 11);
    source.input_new(b.clone()).expect("b");
    let c = message(&mut source, &id(&b), "c", 12);
    room.input_outlier(b.clone()).expect("b as outlier");
    let before = rows(&db);
    match room.input_new(c) {
        Err(RoomError::MissingPrev(ids)) => assert_eq!(ids, vec![b.owned_event_id()]),
        other => panic!("expected missing prev, got {other:?}"),
    }
    assert_eq!(rows(&db), before);
    let row = store::event_by_id(&db, &id(&b)).expect("read").expect("row");
    assert_eq!(row.kind, store::Kind::Outlier as i64, "b stays an outlier");
}

fn membership(room: &mut Engine<'_>, prev: &str, who: &str, membership: &str, ts: u64) -> Pdu {
    build_on(
        room,
        &[prev],
        who,
        NewEvent::state(
            "m.room.member",
            super::engine_tests::user(who).as_str(),
            json!({ "membership": membership }),
        ),
        &key(),
        ts,
    )
}

#[test]
fn missing_auth_events_are_reported_and_nothing_is_written() {
    let k = key();
    let (source_db, db) = (MemorySql::new(), MemorySql::new());
    let mut source = new_room(&source_db, "12", &k);
    let mut room = new_room(&db, "12", &k);
    let base = tip(&source);
    let join = membership(&mut source, &base, "carol", "join", 10);
    source.input_new(join.clone()).expect("join");
    // Carol's leave names her join among its auth events.
    let leave = membership(&mut source, &id(&join), "carol", "leave", 11);
    assert!(leave.auth_events().contains(&join.owned_event_id()));
    let before = (
        rows(&db),
        room.stream_head().expect("head"),
        room.extremities().expect("ext"),
    );
    for outlier in [false, true] {
        let result = if outlier {
            room.input_outlier(leave.clone())
        } else {
            room.input_new(leave.clone())
        };
        match result {
            Err(RoomError::MissingAuth(ids)) => assert_eq!(ids, vec![join.owned_event_id()]),
            other => panic!("expected missing auth (outlier: {outlier}), got {other:?}"),
        }
        assert_eq!(
            (
                rows(&db),
                room.stream_head().expect("head"),
                room.extremities().expect("ext")
            ),
            before,
            "nothing written"
        );
    }
    // Never a rejection: once the join is in, the leave is accepted.
    assert!(matches!(
        room.input_new(join).expect("join"),
        Outcome::Accepted { .. }
    ));
    assert!(matches!(
        room.input_new(leave).expect("leave"),
        Outcome::Accepted { .. }
    ));
}

fn state_ids_after(room: &mut Engine<'_>, event: &str) -> Vec<OwnedEventId> {
    room.state_after_pdus(event)
        .expect("state")
        .expect("has state")
        .values()
        .map(|p| p.owned_event_id())
        .collect()
}

#[test]
fn a_gap_is_crossed_with_the_supplied_state_and_kept_as_a_backward_extremity() {
    let k = key();
    let (source_db, db) = (MemorySql::new(), MemorySql::new());
    let mut source = new_room(&source_db, "12", &k);
    let mut room = new_room(&db, "12", &k);
    let base = tip(&source);
    let hidden = message(&mut source, &base, "never seen", 10);
    source.input_new(hidden.clone()).expect("hidden");
    let t = topic(&mut source, &id(&hidden), "across the gap", 11);
    source.input_new(t.clone()).expect("t");
    let gap_msg = message(&mut source, &id(&t), "gap", 12);
    source.input_new(gap_msg.clone()).expect("gap message");
    let after = message(&mut source, &id(&gap_msg), "after", 13);

    // The state before the topic, as /state_ids at it answers; the topic itself comes
    // as an outlier (it is a state event of that state).
    let before_t = state_ids_after(&mut source, &id(&hidden));
    room.input_outlier(t.clone()).expect("t as outlier");
    // A state naming an event the room lacks is refused, nothing written.
    let unknown = GapState {
        prev: gap_msg.owned_event_id(),
        state_before: vec![hidden.owned_event_id()],
    };
    assert!(matches!(
        room.input_new_with_gaps(after.clone(), &[unknown]),
        Err(RoomError::MissingState(_))
    ));
    // `after`'s prev (the gap message) is unknown: the state before it is the state
    // after the topic.
    let mut state = before_t.clone();
    state.push(t.owned_event_id());
    let gap = GapState {
        prev: gap_msg.owned_event_id(),
        state_before: state,
    };
    assert!(matches!(
        room.input_new_with_gaps(after.clone(), &[gap]).expect("after"),
        Outcome::Accepted { .. }
    ));
    assert_eq!(current_topic(&mut room).as_deref(), Some("across the gap"));
    // The room's old tip stays a forward extremity: nothing it has points at it.
    let mut want = vec![id(&after), base.clone()];
    want.sort();
    assert_eq!(room.extremities().expect("ext"), want);
    assert_eq!(
        store::backward_extremities(&db).expect("backward"),
        vec![id(&gap_msg)]
    );
    // The hole filled (here as an outlier): no longer a backward extremity.
    room.input_outlier(gap_msg).expect("gap message");
    assert!(store::backward_extremities(&db).expect("backward").is_empty());
    // And the room goes on.
    let next = build_on(
        &mut room,
        &[&id(&after), &base],
        "bob",
        NewEvent::message("m.room.message", json!({ "body": "next" })),
        &k,
        14,
    );
    assert!(matches!(
        room.input_new(next.clone()).expect("next"),
        Outcome::Accepted { .. }
    ));
    assert_eq!(room.extremities().expect("ext"), vec![id(&next)]);
    assert_eq!(current_topic(&mut room).as_deref(), Some("across the gap"));
}

#[test]
fn a_redaction_that_arrives_before_its_target_applies_when_the_target_arrives() {
    let k = key();
    let (source_db, db) = (MemorySql::new(), MemorySql::new());
    let mut source = new_room(&source_db, "12", &k);
    let mut room = new_room(&db, "12", &k);
    let base = tip(&source);
    // The message and its redaction on two branches from the same tip.
    let target = message(&mut source, &base, "to be redacted", 10);
    let mut redaction = NewEvent::message("m.room.redaction", json!({"reason": "late"}));
    redaction.redacts = Some(target.owned_event_id());
    let redaction = build_on(&mut source, &[&base], "alice", redaction, &k, 11);
    assert!(matches!(
        room.input_new(redaction.clone()).expect("redaction"),
        Outcome::Accepted { .. }
    ));
    assert!(matches!(
        room.input_new(target.clone()).expect("target"),
        Outcome::Accepted { .. }
    ));
    let row = store::event_by_id(&db, &id(&target)).expect("read").expect("row");
    assert_eq!(row.redacted_by.as_deref(), Some(id(&redaction).as_str()));
    let (_, stored) = room.pdu(&id(&target)).expect("read").expect("stored");
    assert!(
        stored.content().get("body").is_none(),
        "served redacted: {}",
        stored.content()
    );
    // A later copy of the same redaction changes nothing more.
    assert!(matches!(
        room.input_new(redaction).expect("again"),
        Outcome::Accepted { .. }
    ));
}
