//! The input pipeline across restarts: batches input by an engine whose caches are
//! gone (a new Durable Object instance), and batches sent again after their answer was
//! lost, end in what one uninterrupted run stores.

use serde_json::json;

use crate::core::builder::NewEvent;
use crate::core::pdu::Pdu;
use crate::storage::sql::testing::MemorySql;
use crate::storage::sql::Sql;

use super::engine::{Cache, Engine};
use super::engine_tests::{build_on, dump, key, new_room};
use super::store;

/// Two branches from one tip, their events interleaved: each batch boundary cuts both.
fn forked_history() -> Vec<Pdu> {
    let db = MemorySql::new();
    let k = key();
    let mut source = new_room(&db, "12", &k);
    let tip = source.extremities().expect("ext")[0].clone();
    let (mut a, mut b) = (tip.clone(), tip);
    let mut out = Vec::new();
    for i in 0..12u64 {
        let ea = build_on(
            &mut source,
            &[&a],
            "alice",
            NewEvent::state("m.room.topic", "", json!({"topic": format!("a{i}")})),
            &k,
            100 + 2 * i,
        );
        source.input_new(ea.clone()).expect("a");
        a = ea.event_id().to_string();
        let eb = build_on(
            &mut source,
            &[&b],
            "bob",
            NewEvent::message("m.room.message", json!({"body": format!("b{i}")})),
            &k,
            101 + 2 * i,
        );
        source.input_new(eb.clone()).expect("b");
        b = eb.event_id().to_string();
        out.push(ea);
        out.push(eb);
    }
    // The room's own first events, then the branches.
    let mut all = Vec::new();
    for row in db
        .query("SELECT nid FROM events ORDER BY nid", &[])
        .expect("nids")
    {
        all.push(
            source
                .pdu_by_nid(row.int(0).expect("nid"))
                .expect("read")
                .expect("event"),
        );
    }
    all
}

/// Inputs one batch as the Durable Object does (`dispatch::input`).
fn input_batch(db: &MemorySql, cache: &Cache, batch: &[Pdu]) {
    let mut room = Engine::open(db, cache).expect("open");
    room.batch_writes();
    let ids: Vec<String> = batch.iter().map(|p| p.event_id().to_string()).collect();
    room.prefetch_new(&ids).expect("prefetch");
    for p in batch {
        room.input_new(p.clone()).expect("input");
    }
    room.flush().expect("flush");
    assert_eq!(
        store::extremities(db).expect("stored"),
        room.extremities().expect("head")
    );
}

fn replay(history: &[Pdu], restart_after: &[usize], resend: bool) -> Vec<String> {
    let db = MemorySql::new();
    store::init(&db).expect("schema");
    let mut cache: &Cache = Box::leak(Box::default());
    let (_, _) = Engine::create(&db, cache, history[0].clone()).expect("create");
    let batches: Vec<&[Pdu]> = history[1..].chunks(5).collect();
    for (n, batch) in batches.iter().enumerate() {
        input_batch(&db, cache, batch);
        if restart_after.contains(&n) {
            // A new instance: nothing cached. A sender whose answer was lost sends
            // the batch again.
            cache = Box::leak(Box::default());
            if resend {
                input_batch(&db, cache, batch);
            }
        }
    }
    dump(&db)
}

#[test]
fn restarts_and_resent_batches_store_what_one_run_stores() {
    let history = forked_history();
    let straight = replay(&history, &[], false);
    let extremities = straight.iter().filter(|l| l.starts_with("extremities")).count();
    assert_eq!(extremities, 2, "two branches, two forward extremities");
    assert_eq!(replay(&history, &[0, 2, 3, 5], false), straight, "restarts alone");
    assert_eq!(
        replay(&history, &[0, 2, 3, 5], true),
        straight,
        "restarts and batches sent again"
    );
}
