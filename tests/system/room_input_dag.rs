//! What federation needs from a room, through the admin input against the real worker:
//! outliers upgraded into the DAG, missing auth events reported, gaps crossed with a
//! supplied state, rooms started from a join's snapshot, and versions 1 and 2 refused.

use std::collections::{BTreeMap, BTreeSet};

use neurite::core::builder::NewEvent;
use neurite::core::pdu::Pdu;
use serde_json::{json, Value};

use crate::harness::{enc, Client};
use crate::room_input::{admin, input, Gen};

fn post(admin: &Client, room_id: &str, body: &Value) -> crate::harness::Resp {
    admin.post(&format!("/_neurite/admin/v1/rooms/{}/input", enc(room_id)), body)
}

fn values(pdus: &[Pdu]) -> Vec<Value> {
    pdus.iter().map(Pdu::to_federation_value).collect()
}

fn message(body: &str) -> NewEvent {
    NewEvent::message("m.room.message", json!({ "body": body }))
}

fn member(who: &str, membership: &str) -> NewEvent {
    NewEvent::state(
        "m.room.member",
        &format!("@{who}:remote.test"),
        json!({ "membership": membership }),
    )
}

/// The auth chain of `events` among the generated history.
pub(crate) fn auth_chain(g: &Gen, events: &[Pdu]) -> Vec<Pdu> {
    let by_id: BTreeMap<String, &Pdu> = g.log.iter().map(|p| (p.event_id().to_string(), p)).collect();
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = events
        .iter()
        .flat_map(|e| e.auth_events().iter().map(|a| a.to_string()))
        .collect();
    // Version 12 events do not name the create event: it is in every chain.
    todo.push(g.log[0].event_id().to_string());
    while let Some(id) = todo.pop() {
        if seen.insert(id.clone()) {
            todo.extend(by_id[&id].auth_events().iter().map(|a| a.to_string()));
        }
    }
    seen.iter().map(|id| by_id[id].clone()).collect()
}

#[test]
fn outliers_join_the_dag_and_missing_auth_events_are_reported() {
    let admin = admin();
    let (mut g, mut main) = Gen::new(31);
    let room = g.room_id.to_string();
    let base = input(&admin, &room, &g.log.clone(), &g.keys());
    let head = base["stream_pos"].as_i64().expect("stream_pos");
    let a = g.add(&mut main, "bob", message("first an outlier"));
    let b = g.add(&mut main, "bob", message("then its child"));
    let body = json!({"kind": "outlier", "pdus": values(std::slice::from_ref(&a)), "keys": g.keys()});
    let answer = post(&admin, &room, &body).expect(200);
    assert_eq!(answer["results"][0]["stored"], json!(true), "{answer}");
    assert_eq!(
        answer["stream_pos"].as_i64(),
        Some(head),
        "an outlier is not in the timeline"
    );
    // b's prev is the outlier a, whose own prev has state: a is upgraded first.
    let answer = input(&admin, &room, std::slice::from_ref(&b), &g.keys());
    assert_eq!(
        answer["results"][0]["accepted"].as_i64(),
        Some(head + 2),
        "{answer}"
    );
    assert_eq!(answer["extremities"], json!([b.event_id().as_str()]));
    // a as a new event now answers its position.
    let answer = input(&admin, &room, &[a], &g.keys());
    assert_eq!(
        answer["results"][0]["accepted"].as_i64(),
        Some(head + 1),
        "{answer}"
    );

    // Carol's leave names her join, which the room never got: reported, not rejected.
    let join = g.add(&mut main, "carol", member("carol", "join"));
    let leave = g.add(&mut main, "carol", member("carol", "leave"));
    let answer = input(&admin, &room, std::slice::from_ref(&leave), &g.keys());
    assert_eq!(
        answer["results"][0]["missing_auth"],
        json!([join.event_id().as_str()]),
        "{answer}"
    );
    assert_eq!(answer["stream_pos"].as_i64(), Some(head + 2), "nothing written");
    let answer = input(&admin, &room, &[join, leave], &g.keys());
    let results = answer["results"].as_array().expect("results");
    assert!(results.iter().all(|r| r.get("accepted").is_some()), "{answer}");
    assert_eq!(
        answer["current_state"]["m.room.member"]["@carol:remote.test"],
        results[1]["event_id"]
    );
}

#[test]
fn a_gap_is_crossed_with_the_state_at_the_missing_prev_event() {
    let admin = admin();
    let (mut g, mut main) = Gen::new(32);
    let room = g.room_id.to_string();
    input(&admin, &room, &g.log.clone(), &g.keys());
    let state_before_hidden: Vec<String> = main.state.values().map(|p| p.event_id().to_string()).collect();
    let hidden = g.add(&mut main, "bob", message("never sent to this server"));
    let after = g.add(&mut main, "bob", message("after the gap"));
    let answer = input(&admin, &room, std::slice::from_ref(&after), &g.keys());
    assert_eq!(
        answer["results"][0]["missing_prev"],
        json!([hidden.event_id().as_str()]),
        "{answer}"
    );
    let body = json!({
        "pdus": values(std::slice::from_ref(&after)),
        "keys": g.keys(),
        "prev_states": { hidden.event_id().as_str(): state_before_hidden },
        "state": true,
    });
    let answer = post(&admin, &room, &body).expect(200);
    assert!(answer["results"][0]["accepted"].is_i64(), "{answer}");
    let mut ext: Vec<&str> = answer["extremities"]
        .as_array()
        .expect("ext")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    ext.sort();
    assert!(ext.contains(&after.event_id().as_str()), "{answer}");
    // An unknown event in the supplied state is refused.
    let later = g.add(&mut main, "bob", message("later"));
    let body = json!({
        "pdus": values(&[g.add(&mut main.clone(), "bob", message("x"))]),
        "keys": g.keys(),
        "prev_states": { later.event_id().as_str(): ["$not-stored"] },
    });
    let answer = post(&admin, &room, &body).expect(200);
    assert!(answer["results"][0].get("missing_state").is_some(), "{answer}");
}

#[test]
fn a_room_starts_from_a_join_snapshot_and_goes_on() {
    let admin = admin();
    let (mut g, mut main) = Gen::new(33);
    let room = g.room_id.to_string();
    g.add(
        &mut main,
        "alice",
        NewEvent::state("m.room.topic", "", json!({"topic": "before carol"})),
    );
    for i in 0..5 {
        g.add(&mut main, "bob", message(&format!("history {i}")));
    }
    let state: Vec<Pdu> = main.state.values().cloned().collect();
    let join = g.add(&mut main, "carol", member("carol", "join"));
    let mut of = state.clone();
    of.push(join.clone());
    let chain = auth_chain(&g, &of);
    let body = json!({
        "kind": "bootstrap",
        "pdus": values(std::slice::from_ref(&join)),
        "snapshot": { "state": values(&state), "auth_chain": values(&chain) },
        "keys": g.keys(),
        "state": true,
    });
    let answer = post(&admin, &room, &body).expect(200);
    assert_eq!(
        answer["results"][0]["accepted"].as_i64(),
        Some(1),
        "the join is first: {answer}"
    );
    assert_eq!(answer["extremities"], json!([join.event_id().as_str()]));
    assert_eq!(answer["dropped"], json!(0));
    let current = &answer["current_state"];
    assert_eq!(
        current["m.room.topic"][""],
        state
            .iter()
            .find(|p| p.kind() == "m.room.topic")
            .map(|p| json!(p.event_id().as_str()))
            .expect("topic")
    );
    assert_eq!(
        current["m.room.member"]["@carol:remote.test"],
        json!(join.event_id().as_str())
    );
    assert_eq!(
        current
            .as_object()
            .expect("state")
            .values()
            .map(|k| k.as_object().expect("keys").len())
            .sum::<usize>(),
        state.len() + 1
    );
    // The room goes on: new events on top of the join.
    let next = g.add(&mut main, "carol", message("hello"));
    let answer = input(&admin, &room, &[next], &g.keys());
    assert_eq!(answer["results"][0]["accepted"].as_i64(), Some(2), "{answer}");
    // Once started, a second bootstrap is refused.
    post(&admin, &room, &body).expect_err(400, "M_ROOM_IN_USE");

    // A snapshot without the join rules does not allow the join: nothing is started.
    let (mut g2, mut main2) = Gen::new(34);
    let state: Vec<Pdu> = main2.state.values().cloned().collect();
    let join = g2.add(&mut main2, "carol", member("carol", "join"));
    let mut of = state.clone();
    of.push(join.clone());
    let without = |list: Vec<Pdu>| -> Vec<Pdu> {
        list.into_iter()
            .filter(|p| p.kind() != "m.room.join_rules")
            .collect()
    };
    let body = json!({
        "kind": "bootstrap",
        "pdus": values(&[join]),
        "snapshot": { "state": values(&without(state)), "auth_chain": values(&without(auth_chain(&g2, &of))) },
        "keys": g2.keys(),
    });
    let resp = post(&admin, g2.room_id.as_ref(), &body);
    assert!(
        resp.status >= 400 && resp.status < 500,
        "{} {}",
        resp.status,
        resp.body
    );
    let next = g2.add(&mut main2, "carol", message("in a room never started"));
    let resp = post(
        &admin,
        g2.room_id.as_ref(),
        &json!({"pdus": values(&[next]), "keys": g2.keys()}),
    );
    assert_eq!(resp.status, 404, "{}", resp.body);
}

#[test]
fn rooms_of_version_one_are_refused_at_the_door() {
    let admin = admin();
    {
        let version = "1";
        let room = format!("!old{version}:remote.test");
        let create = json!({
            "type": "m.room.create", "room_id": room, "sender": "@alice:remote.test",
            "state_key": "", "content": {"creator": "@alice:remote.test", "room_version": version},
            "depth": 1, "prev_events": [], "auth_events": [], "origin_server_ts": 1,
            "event_id": format!("$create{version}:remote.test"),
            "hashes": {"sha256": "x"}, "signatures": {},
        });
        post(&admin, &room, &json!({"pdus": [create], "keys": {}}))
            .expect_err(400, "M_UNSUPPORTED_ROOM_VERSION");
    }
}

/// The server's own signing key, as `scripts/run.sh` keeps it in the state directory.
fn server_key() -> neurite::core::keys::SigningKey {
    let text =
        std::fs::read_to_string(crate::harness::shared().state_dir.join("signing.key")).expect("signing.key");
    neurite::core::keys::SigningKey::parse(text.trim()).expect("key")
}

fn client_ids(events: &Value) -> Vec<String> {
    events
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
        .collect()
}

/// A local user's join into another server's room, as a send_join would start it (the
/// join signed by this server), then the history before the join backfilled: the user's
/// `/messages` pages from the join through all of it, and `/sync` shows none of it as
/// new.
#[test]
fn a_local_user_joined_from_a_snapshot_reads_backfilled_history() {
    let admin = admin();
    let server = crate::harness::shared();
    let (carol, carol_id) = crate::harness::new_user("histc");
    let key = server_key();
    let (mut g, mut main) = Gen::new(35);
    let room = g.room_id.to_string();
    for i in 0..6 {
        g.add(&mut main, "bob", message(&format!("before carol {i}")));
    }
    let state: Vec<Pdu> = main.state.values().cloned().collect();
    let carol_user = ruma::OwnedUserId::try_from(carol_id.as_str()).expect("user id");
    let join = g.add_as(
        &mut main,
        &carol_user,
        NewEvent::state("m.room.member", &carol_id, json!({"membership": "join"})),
        &server.server_name,
        &key,
    );
    let mut of = state.clone();
    of.push(join.clone());
    let chain = auth_chain(&g, &of);
    let mut keys = g.keys();
    keys[&server.server_name] = json!({ key.key_id(): key.public_key_base64() });
    let body = json!({
        "kind": "bootstrap",
        "pdus": values(std::slice::from_ref(&join)),
        "snapshot": { "state": values(&state), "auth_chain": values(&chain) },
        "keys": keys,
    });
    let answer = post(&admin, &room, &body).expect(200);
    assert_eq!(answer["results"][0]["accepted"].as_i64(), Some(1), "{answer}");

    // Carol's client sees the room with her join.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let first = loop {
        let body = carol
            .get("/_matrix/client/v3/sync?timeout=0&set_presence=offline")
            .expect(200);
        if body["rooms"]["join"].get(&room).is_some() {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the room never reached carol's sync: {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let timeline = &first["rooms"]["join"][&room]["timeline"];
    assert!(client_ids(&timeline["events"]).contains(&join.event_id().to_string()));
    // The membership projection comes through the log.
    while !carol.get("/_matrix/client/v3/joined_rooms").expect(200)["joined_rooms"]
        .as_array()
        .expect("rooms")
        .contains(&json!(room))
    {
        assert!(std::time::Instant::now() < deadline, "never in /joined_rooms");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // The history before the join, as another server's /backfill would answer it.
    let mut history: Vec<Pdu> = g
        .log
        .iter()
        .take_while(|p| p.event_id() != join.event_id())
        .cloned()
        .collect();
    history.reverse();
    let body = json!({"kind": "backfill", "pdus": values(&history), "keys": g.keys()});
    let answer = post(&admin, &room, &body).expect(200);
    let results = answer["results"].as_array().expect("results");
    assert!(
        results
            .iter()
            .all(|r| r["accepted"].as_i64().is_some_and(|p| p < 0)),
        "{answer}"
    );
    assert_eq!(
        answer["stream_pos"].as_i64(),
        Some(1),
        "the live head did not move"
    );

    // /messages back from the sync's prev_batch: the join, then all the history.
    let mut seen = Vec::new();
    let mut from = timeline["prev_batch"].as_str().expect("prev_batch").to_owned();
    for _ in 0..20 {
        let page = carol
            .get(&format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=4&from={}",
                enc(&room),
                enc(&from)
            ))
            .expect(200);
        seen.extend(client_ids(&page["chunk"]));
        match page["end"].as_str() {
            Some(end) => from = end.to_owned(),
            None => break,
        }
    }
    // Back from the timeline's start: the history, newest first, as /backfill gave it.
    let want: Vec<String> = history.iter().map(|p| p.event_id().to_string()).collect();
    let tail: Vec<String> = seen
        .iter()
        .filter(|id| *id != join.event_id().as_str())
        .cloned()
        .collect();
    assert_eq!(tail, want, "the history, newest first, after the join");
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no event twice");

    // The history is no news to /sync.
    let next = carol
        .get(&format!(
            "/_matrix/client/v3/sync?timeout=0&set_presence=offline&since={}",
            enc(first["next_batch"].as_str().expect("next_batch"))
        ))
        .expect(200);
    assert!(next["rooms"]["join"].get(&room).is_none(), "{}", next["rooms"]);
}

/// A big snapshot goes in pieces: outlier batches (the first begins the room with its
/// create event), then the join naming the state by id.
#[test]
fn a_snapshot_goes_in_pieces_through_the_admin_input() {
    let admin = admin();
    let (mut g, mut main) = Gen::new(36);
    let room = g.room_id.to_string();
    for i in 0..4 {
        g.add(&mut main, "bob", message(&format!("before {i}")));
    }
    let state: Vec<Pdu> = main.state.values().cloned().collect();
    let join = g.add(&mut main, "carol", member("carol", "join"));
    let mut of = state.clone();
    of.push(join.clone());
    let mut all = auth_chain(&g, &of);
    all.extend(state.iter().cloned());
    let ordered = neurite::roomserver::engine::auth_order(all);
    for piece in ordered.chunks(2) {
        let answer = post(
            &admin,
            &room,
            &json!({"kind": "outlier", "pdus": values(piece), "keys": g.keys()}),
        )
        .expect(200);
        for r in answer["results"].as_array().expect("results") {
            assert_eq!(r["stored"], json!(true), "{answer}");
        }
        assert_eq!(answer["stream_pos"], json!(0), "nothing in the timeline yet");
    }
    let body = json!({
        "kind": "bootstrap",
        "pdus": values(std::slice::from_ref(&join)),
        "snapshot": {
            "state": [], "auth_chain": [],
            "state_ids": state.iter().map(|p| p.event_id().to_string()).collect::<Vec<_>>(),
        },
        "keys": g.keys(),
        "state": true,
    });
    let answer = post(&admin, &room, &body).expect(200);
    assert_eq!(answer["results"][0]["accepted"], json!(1), "{answer}");
    assert_eq!(
        answer["current_state"]["m.room.member"]["@carol:remote.test"],
        json!(join.event_id().as_str())
    );
    post(&admin, &room, &body).expect_err(400, "M_ROOM_IN_USE");
}
