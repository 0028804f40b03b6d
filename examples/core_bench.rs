//! Rough native timings of the core hot paths. Run with
//! `cargo run --release --example core_bench`. Not a test.

use std::collections::HashMap;
use std::time::Instant;

use neurite::core::auth::check_auth;
use neurite::core::builder::{build_create_event, build_event, NewEvent, Prev, Signer};
use neurite::core::event_hash::hash_and_sign;
use neurite::core::keys::{public_key_map, SigningKey};
use neurite::core::pdu::Pdu;
use neurite::core::state_res::{auth_chains_for, resolve};
use neurite::core::verify::{verify_batch, verify_pdu};
use ruma::events::StateEventType;
use ruma::state_res::StateMap;
use ruma::{EventId, OwnedEventId, OwnedUserId, RoomVersionId};
use serde_json::json;

const SERVER: &str = "bench.example";

struct Room {
    rules: ruma::room_version_rules::RoomVersionRules,
    room_id: ruma::OwnedRoomId,
    events: HashMap<OwnedEventId, Pdu>,
    state: StateMap<OwnedEventId>,
    tip: Vec<Prev>,
    clock: u64,
}

impl Room {
    fn send(&mut self, key: &SigningKey, sender: &OwnedUserId, new: NewEvent) -> Pdu {
        self.clock += 1;
        let signer = Signer {
            server_name: SERVER,
            key,
            now_ms: self.clock,
        };
        let pdu = build_event(
            &self.rules,
            &self.room_id,
            sender,
            new,
            &self.tip,
            |k, s| self.get(k, s),
            signer,
        )
        .expect("builds");
        check_auth(&pdu, &self.rules, |k, s| self.get(k, s)).expect("allowed");
        self.apply(pdu.clone());
        pdu
    }
    fn get(&self, k: &StateEventType, s: &str) -> Option<Pdu> {
        self.state
            .get(&(k.clone(), s.to_owned()))
            .and_then(|id| self.events.get(id))
            .cloned()
    }
    fn apply(&mut self, pdu: Pdu) {
        if let Some(pair) = pdu.state_pair() {
            self.state.insert(pair, pdu.owned_event_id());
        }
        self.tip = vec![Prev::new(pdu.owned_event_id(), pdu.depth())];
        self.events.insert(pdu.owned_event_id(), pdu);
    }
}

fn user(i: usize) -> OwnedUserId {
    OwnedUserId::try_from(format!("@u{i}:{SERVER}")).expect("user")
}

fn row(name: &str, n: usize, start: Instant) {
    let us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!("| {name:<44} | {n:>6} | {us:>10.1} | {:>10.0} |", 1e6 / us);
}

fn main() {
    let key = SigningKey::from_seed([3; 32], "bench").expect("key");
    let version = RoomVersionId::V12;
    let rules = version.rules().expect("rules");
    let creator = user(0);
    let create = build_create_event(
        &version,
        &rules,
        &creator,
        None,
        json!({}),
        Signer {
            server_name: SERVER,
            key: &key,
            now_ms: 0,
        },
    )
    .expect("create");
    let mut room = Room {
        rules: rules.clone(),
        room_id: create.room_id().to_owned(),
        events: HashMap::new(),
        state: StateMap::new(),
        tip: vec![],
        clock: 0,
    };
    room.apply(create);
    let member =
        |u: &OwnedUserId| NewEvent::state("m.room.member", u.as_str(), json!({"membership": "join"}));
    room.send(&key, &creator, member(&creator));
    room.send(
        &key,
        &creator,
        NewEvent::state("m.room.power_levels", "", json!({"users": {}})),
    );
    room.send(
        &key,
        &creator,
        NewEvent::state("m.room.join_rules", "", json!({"join_rule": "public"})),
    );
    for i in 1..100 {
        room.send(&key, &user(i), member(&user(i)));
    }

    println!(
        "| {:<44} | {:>6} | {:>10} | {:>10} |",
        "operation (room v12, 100 members)", "n", "µs/event", "events/s"
    );
    println!("|{:-<46}|{:-<8}|{:-<12}|{:-<12}|", "", "", "", "");

    let n = 2000;
    let body =
        json!({"msgtype": "m.text", "body": "hello world, this is a benchmark message of ordinary size"});
    let objects: Vec<_> = (0..n)
        .map(|i| {
            let mut o = room.events.values().next().expect("event").object().clone();
            o.insert(
                "content".into(),
                ruma::CanonicalJsonValue::try_from(json!({"body": i, "b": body})).expect("c"),
            );
            o.insert(
                "type".into(),
                ruma::CanonicalJsonValue::String("m.room.message".into()),
            );
            o.remove("state_key");
            o.remove("signatures");
            o.remove("hashes");
            o
        })
        .collect();

    let start = Instant::now();
    let mut signed = objects.clone();
    for o in &mut signed {
        hash_and_sign(o, &rules, SERVER, &key).expect("sign");
    }
    row("hash + sign (+ reference hash)", n, start);

    let start = Instant::now();
    for (i, o) in objects.iter().enumerate() {
        build_event(
            &rules,
            &room.room_id,
            &user(i % 100),
            NewEvent::message("m.room.message", json!({"body": i, "b": body})),
            &room.tip,
            |k, s| room.get(k, s),
            Signer {
                server_name: SERVER,
                key: &key,
                now_ms: 1,
            },
        )
        .map(|_| o)
        .expect("built");
    }
    row("build_event (auth events, hash, sign, parse)", n, start);

    let keys = public_key_map(&[(SERVER, &key.key_id(), &key.public_key_base64())]).expect("keys");
    let start = Instant::now();
    for o in &signed {
        verify_pdu(o, &rules, &keys).expect("valid");
    }
    row("verify_pdu (single)", n, start);

    let items: Vec<_> = signed.iter().map(|o| (o, &rules)).collect();
    let start = Instant::now();
    let out = verify_batch(&items, &keys);
    assert!(out.iter().all(Result::is_ok));
    row("verify_batch", n, start);

    let start = Instant::now();
    for o in &signed {
        ruma::signatures::verify_event(&keys, o, &rules).expect("valid");
    }
    row("ruma verify_event (reference)", n, start);

    let msgs: Vec<Pdu> = signed
        .iter()
        .map(|o| {
            let id = neurite::core::event_hash::event_id(o, &rules).expect("id");
            Pdu::from_checked(o.clone(), id, &rules).expect("pdu")
        })
        .collect();
    let start = Instant::now();
    for p in &msgs {
        check_auth(p, &rules, |k, s| room.get(k, s)).expect("allowed");
    }
    row("check_auth (message, 100-member state)", n, start);

    // Two forks of 100 events each from the same base.
    let base_state = room.state.clone();
    let base_tip = room.tip.clone();
    let mut forks = Vec::new();
    for f in 0..2 {
        room.state = base_state.clone();
        room.tip = base_tip.clone();
        for i in 0..100 {
            let sender = user(0);
            let kind = if i % 2 == 0 { "m.room.topic" } else { "m.room.name" };
            let content = json!({"topic": format!("{f}-{i}"), "name": format!("{f}-{i}")});
            room.send(&key, &sender, NewEvent::state(kind, "", content));
            if i % 10 == 0 {
                room.send(
                    &key,
                    &creator,
                    NewEvent::state(
                        "m.room.power_levels",
                        "",
                        json!({"users": {user(1 + f).as_str(): i}}),
                    ),
                );
            }
        }
        forks.push(room.state.clone());
    }
    let fetch = |id: &EventId| room.events.get(id).cloned();
    let start = Instant::now();
    let chains = auth_chains_for(&forks, fetch);
    let resolved = resolve(&rules, &forks, &chains, fetch).expect("resolves");
    assert!(!resolved.is_empty());
    row(
        "state res v2.1: 2 forks x ~110 events (per fork event)",
        220,
        start,
    );
}
