//! The answers to other servers on native SQLite: state ids at an event, auth chains,
//! backfill, missing events and events as PDUs.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::core::builder::NewEvent;
use crate::core::pdu::Pdu;
use crate::storage::sql::testing::MemorySql;

use super::engine::Engine;
use super::engine_tests::{key, new_room, signer, user};

fn send(room: &mut Engine<'_>, who: &str, new: NewEvent, ts: u64) -> Pdu {
    room.send(&user(who), new, signer(&key(), ts)).expect("send").0
}

fn event_ids(jsons: &[String]) -> Vec<String> {
    jsons
        .iter()
        .map(|j| {
            let object = crate::core::canonical::parse_object(j).expect("json");
            let rules = ruma::RoomVersionId::V12.rules().expect("rules");
            crate::core::event_hash::event_id(&object, &rules)
                .expect("id")
                .to_string()
        })
        .collect()
}

#[test]
fn other_servers_get_state_ids_auth_chains_backfill_and_missing_events() {
    let (db, k) = (MemorySql::new(), key());
    let mut room = new_room(&db, "12", &k);
    let topic = send(
        &mut room,
        "alice",
        NewEvent::state("m.room.topic", "", json!({"topic": "t"})),
        10,
    );
    let m: Vec<Pdu> = (0..3)
        .map(|i| {
            send(
                &mut room,
                "bob",
                NewEvent::message("m.room.message", json!({"body": i})),
                11 + i,
            )
        })
        .collect();
    let id = |p: &Pdu| p.event_id().to_string();

    // The state before an event is the state after the one before it.
    let mut after_m0: Vec<String> = room
        .state_after_pdus(&id(&m[0]))
        .expect("state")
        .expect("has state")
        .values()
        .map(|p| p.event_id().to_string())
        .collect();
    after_m0.sort();
    assert_eq!(
        room.state_ids_before(&id(&m[1])).expect("ids"),
        Some(after_m0.clone())
    );
    assert!(after_m0.contains(&id(&topic)));
    assert_eq!(room.state_ids_before("$unknown").expect("ids"), None);

    // The auth chain is closed under auth events and holds neither the event nor later ones.
    let chain = room.auth_chain(&[id(&m[2])]).expect("chain");
    let set: HashSet<&String> = chain.iter().collect();
    assert!(!set.contains(&id(&m[2])) && !set.contains(&id(&topic)));
    for a in m[2].auth_events() {
        assert!(set.contains(&a.to_string()), "direct auth event {a}");
    }
    for e in &chain {
        let (_, pdu) = room.pdu(e).expect("read").expect("stored");
        for a in pdu.auth_events() {
            assert!(set.contains(&a.to_string()), "{e}'s auth event {a} in the chain");
        }
    }
    let types: HashSet<String> = chain
        .iter()
        .map(|e| room.pdu(e).expect("read").expect("stored").1.kind())
        .collect();
    for t in [
        "m.room.create",
        "m.room.power_levels",
        "m.room.member",
        "m.room.join_rules",
    ] {
        assert!(types.contains(t), "{t} in {types:?}");
    }

    // Backfill: the given events and those before, newest first.
    let back = room.backfill_events(&[id(&m[2])], 3).expect("backfill");
    assert_eq!(event_ids(&back), vec![id(&m[2]), id(&m[1]), id(&m[0])]);
    let all = room.backfill_events(&[id(&m[2])], 100).expect("all");
    assert_eq!(
        all.len(),
        9,
        "the whole history: create, 4 setup events, a topic, 3 messages"
    );
    let first = room.backfill_events(&[id(&m[2])], 100).expect("all");
    let create: Value = serde_json::from_str(first.last().expect("oldest")).expect("json");
    assert_eq!(create["type"], "m.room.create");
    assert_eq!(
        room.state_ids_before(&event_ids(&first[8..])[0]).expect("ids"),
        Some(Vec::new())
    );
    // Missing events: between earliest and latest, oldest first, latest excluded.
    let missing = room
        .missing_events(&[id(&m[0])], &[id(&m[2])], 10, 0)
        .expect("missing");
    assert_eq!(event_ids(&missing), vec![id(&m[1])]);
    let nearest = room.missing_events(&[], &[id(&m[2])], 2, 0).expect("nearest");
    assert_eq!(event_ids(&nearest), vec![id(&m[0]), id(&m[1])]);
    let depth = m[1].depth() as i64;
    let deep = room
        .missing_events(&[], &[id(&m[2])], 10, depth)
        .expect("min depth");
    assert_eq!(event_ids(&deep), vec![id(&m[1])]);

    // A redacted event goes out redacted.
    let mut redaction = NewEvent::message("m.room.redaction", json!({}));
    redaction.redacts = Some(m[0].owned_event_id());
    send(&mut room, "alice", redaction, 20);
    let pdu: Value =
        serde_json::from_str(&room.federation_pdu(&id(&m[0])).expect("pdu").expect("stored")).expect("json");
    assert_eq!(pdu["content"], json!({}));
    assert_eq!(event_ids(&[pdu.to_string()]), vec![id(&m[0])], "same event id");
    assert_eq!(room.federation_pdu("$unknown").expect("pdu"), None);
}
