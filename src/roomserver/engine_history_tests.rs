//! History on native SQLite: a room started from a join learns the events before it
//! (backfill, in any order), gives them positions below every other, and `/messages`
//! pages through old and new events in both directions with one token format; history
//! changes neither the current state nor the forward extremities, and is no news.

use serde_json::json;

use crate::core::builder::NewEvent;
use crate::core::pdu::Pdu;
use crate::storage::sql::testing::MemorySql;

use super::dispatch::{handle, Host};
use super::engine::{Cache, Engine, Outcome};
use super::engine_tests::{build_on, key, new_room, signer, user};
use super::protocol::{Dir, RoomRequest};
use super::store;

fn clock() -> f64 {
    0.0
}

fn pages(db: &MemorySql, host: &Host<'_>, dir: Dir, limit: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut from = None;
    for _ in 0..100 {
        let page = handle(
            db,
            host,
            RoomRequest::Messages {
                user_id: user("carol").to_string(),
                from: from.clone(),
                to: None,
                dir,
                limit,
                filter: None,
            },
        )
        .expect("messages");
        let chunk = page["chunk"].as_array().expect("chunk");
        out.extend(
            chunk
                .iter()
                .map(|e| e["event_id"].as_str().expect("id").to_owned()),
        );
        match page["end"].as_str() {
            Some(end) if !chunk.is_empty() => from = Some(end.to_owned()),
            _ => return out,
        }
    }
    panic!("paging never ended");
}

#[test]
fn history_before_a_join_pages_seamlessly_and_is_no_news() {
    let k = key();
    let (source_db, db) = (MemorySql::new(), MemorySql::new());
    let mut source = new_room(&source_db, "12", &k);
    for i in 0..5 {
        source
            .send(
                &user("bob"),
                NewEvent::message("m.room.message", json!({"body": i})),
                signer(&k, 10 + i),
            )
            .expect("history");
    }
    let tip = source.extremities().expect("ext")[0].clone();
    let join = build_on(
        &mut source,
        &[&tip],
        "carol",
        NewEvent::state(
            "m.room.member",
            user("carol").as_str(),
            json!({"membership": "join"}),
        ),
        &k,
        20,
    );
    source.input_new(join.clone()).expect("join");
    let ids = |room: &mut Engine<'_>, list: &[String]| -> Vec<Pdu> {
        list.iter()
            .map(|id| room.pdu(id).expect("read").expect("stored").1)
            .collect()
    };
    let state_ids = source
        .state_ids_before(join.event_id().as_str())
        .expect("ids")
        .expect("state");
    let mut of = state_ids.clone();
    of.push(join.event_id().to_string());
    let chain_ids = source.auth_chain(&of).expect("chain");
    let (state, chain) = (ids(&mut source, &state_ids), ids(&mut source, &chain_ids));
    store::init(&db).expect("schema");
    let cache: &Cache = Box::leak(Box::default());
    let (mut room, _) =
        Engine::bootstrap(&db, cache, join.clone(), (state, Vec::new()), chain).expect("bootstrap");
    assert_eq!(
        store::backward_extremities(&db).expect("backward"),
        vec![tip.clone()]
    );
    let host = Host {
        server_name: "hs.test",
        key: &k,
        now_ms: 40,
        clock_ms: clock,
    };
    let newest_page = |db: &MemorySql| {
        handle(
            db,
            &host,
            RoomRequest::Messages {
                user_id: user("carol").to_string(),
                from: None,
                to: None,
                dir: Dir::Backward,
                limit: 100,
                filter: None,
            },
        )
        .expect("messages")
    };
    // The page reaches the join: the edge is told where history goes on.
    assert_eq!(newest_page(&db)["history_from"], json!([tip.clone()]));
    let state_before = room.current_state().expect("state").1;
    let ext_before = room.extremities().expect("ext");

    // Everything before the join, newest first as /backfill answers, in one batch.
    let history = source
        .backfill_events(std::slice::from_ref(&tip), 100)
        .expect("backfill");
    assert_eq!(history.len(), 10);
    let rules = room.rules().clone();
    let pdus: Vec<Pdu> = history
        .iter()
        .map(|json| {
            let object = crate::core::canonical::parse_object(json).expect("json");
            let id = crate::core::event_hash::event_id(&object, &rules).expect("id");
            Pdu::from_checked(object, id, &rules).expect("pdu")
        })
        .collect();
    let outcomes = room.input_backfill(pdus.clone(), &[]).expect("input");
    let mut positions: Vec<(i64, String)> = outcomes
        .iter()
        .map(|(id, o)| match o {
            Ok(Outcome::Accepted { stream_pos }) => (*stream_pos, id.clone()),
            other => panic!("{id}: {other:?}"),
        })
        .collect();
    positions.sort();
    assert!(positions.iter().all(|(p, _)| *p < 0), "{positions:?}");
    let newest_first: Vec<String> = positions.iter().rev().map(|(_, id)| id.clone()).collect();
    let expected: Vec<String> = pdus.iter().map(|p| p.event_id().to_string()).collect();
    assert_eq!(newest_first, expected, "positions follow the DAG");
    assert_eq!(
        room.current_state().expect("state").1,
        state_before,
        "history is not current"
    );
    assert_eq!(room.extremities().expect("ext"), ext_before);
    assert!(
        store::backward_extremities(&db).expect("backward").is_empty(),
        "the create ends history"
    );

    // A new event after the history: the next live position, and the only news since
    // the join.
    let (live, pos) = room
        .send(
            &user("carol"),
            NewEvent::message("m.room.message", json!({"body": "now"})),
            signer(&k, 30),
        )
        .expect("live");
    assert_eq!(pos, 2);
    let news = store::events_after(&db, 1, i64::MAX, 100).expect("news");
    assert_eq!(
        news.iter().map(|r| r.event_id.clone()).collect::<Vec<_>>(),
        vec![live.event_id().to_string()]
    );

    // /messages: one walk back from now to the create, in pages, and forwards again;
    // nothing is left to ask other servers for.
    assert!(newest_page(&db).get("history_from").is_none());
    let mut all_new_first = vec![live.event_id().to_string(), join.event_id().to_string()];
    all_new_first.extend(expected);
    assert_eq!(pages(&db, &host, Dir::Backward, 3), all_new_first);
    let mut oldest_first = all_new_first.clone();
    oldest_first.reverse();
    assert_eq!(pages(&db, &host, Dir::Forward, 4), oldest_first);
}
