//! A local user joins a big room that a scripted server hosts: its state and auth
//! chain (every member's join) come in one `send_join` answer.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use neurite::core::builder::{build_create_event, build_event, NewEvent, Prev, Signer};
use neurite::core::keys::SigningKey;
use neurite::core::pdu::Pdu;
use ruma::events::StateEventType;
use ruma::{OwnedUserId, RoomVersionId};
use serde_json::{json, Value};

use crate::harness::{enc, unique, Server};
use crate::remote::Remote;

pub struct JoinFigures {
    pub seconds: f64,
    pub answer_events: usize,
    pub answer_bytes: usize,
    pub rss_before_kb: u64,
    pub rss_peak_kb: u64,
}

type State = std::collections::HashMap<(StateEventType, String), Pdu>;

struct Room {
    rules: ruma::room_version_rules::RoomVersionRules,
    room_id: ruma::OwnedRoomId,
    server: String,
    key: SigningKey,
    ts: u64,
    state: State,
    tip: Vec<Prev>,
}

impl Room {
    fn build(&mut self, sender: &OwnedUserId, new: NewEvent, signer_name: &str, key: &SigningKey) -> Pdu {
        self.ts += 1;
        let signer = Signer {
            server_name: signer_name,
            key,
            now_ms: self.ts,
        };
        let state = &self.state;
        build_event(
            &self.rules,
            &self.room_id,
            sender,
            new,
            &self.tip,
            |t, k| state.get(&(t.clone(), k.to_owned())).cloned(),
            signer,
        )
        .expect("generated events build")
    }

    fn add(&mut self, sender: &OwnedUserId, new: NewEvent) -> Pdu {
        let key = SigningKey::parse(&self.key.to_text()).expect("key");
        let server = self.server.clone();
        let pdu = self.build(sender, new, &server, &key);
        if let Some(pair) = pdu.state_pair() {
            self.state.insert(pair, pdu.clone());
        }
        self.tip = vec![Prev::new(pdu.owned_event_id(), pdu.depth())];
        pdu
    }
}

fn user(name: &str, server: &str) -> OwnedUserId {
    OwnedUserId::try_from(format!("@{name}:{server}")).expect("user id")
}

/// The resident memory of the server's workerd processes, in KB.
fn workerd_rss_kb(group: u32) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let path = entry.path();
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp …
        let Some((comm, rest)) = stat.split_once(") ") else {
            continue;
        };
        let pgrp: Option<u32> = rest.split_whitespace().nth(2).and_then(|p| p.parse().ok());
        if pgrp != Some(group) || !comm.contains("workerd") {
            continue;
        }
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        total += status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

pub fn join(server: &Server, members: usize, events: usize) -> JoinFigures {
    let remote = Remote::start(91);
    let key = SigningKey::parse(&remote.key.to_text()).expect("key");
    let version = RoomVersionId::V12;
    let rules = version.rules().expect("rules");
    let creator = user("creator", &remote.name);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let ts = now - 3_600_000;
    let create = build_create_event(
        &version,
        &rules,
        &creator,
        None,
        json!({}),
        Signer {
            server_name: &remote.name,
            key: &key,
            now_ms: ts,
        },
    )
    .expect("create");
    let mut room = Room {
        rules,
        room_id: create.room_id().to_owned(),
        server: remote.name.clone(),
        key,
        ts,
        state: State::new(),
        tip: vec![Prev::new(create.owned_event_id(), create.depth())],
    };
    room.state
        .insert(create.state_pair().expect("state"), create.clone());
    eprintln!("[bench] generating a room of {members} members and {events} events");
    let mut count = 1;
    room.add(
        &creator,
        NewEvent::state("m.room.member", creator.as_str(), json!({"membership": "join"})),
    );
    // Version 12: the creator has unlimited power and may not be listed.
    room.add(
        &creator,
        NewEvent::state("m.room.power_levels", "", json!({"users": {}})),
    );
    room.add(
        &creator,
        NewEvent::state("m.room.join_rules", "", json!({"join_rule": "public"})),
    );
    room.add(
        &creator,
        NewEvent::state("m.room.name", "", json!({"name": "A big room"})),
    );
    count += 4;
    for i in 1..members {
        let u = user(&format!("member{i}"), &remote.name);
        room.add(
            &u,
            NewEvent::state(
                "m.room.member",
                u.as_str(),
                json!({"membership": "join", "displayname": format!("Member {i}")}),
            ),
        );
        count += 1;
    }
    let mut i = 0;
    while count < events {
        let u = user(
            &format!("member{}", 1 + i % members.saturating_sub(1).max(1)),
            &remote.name,
        );
        room.add(
            &u,
            NewEvent::message(
                "m.room.message",
                json!({"msgtype": "m.text", "body": format!("message {i}")}),
            ),
        );
        count += 1;
        i += 1;
    }

    let (joiner, joiner_id) = server.client().register(&unique("joiner"), "bench password");
    let joiner_user = OwnedUserId::try_from(joiner_id.as_str()).expect("user");
    let other = SigningKey::from_seed([3; 32], "x").expect("key");
    let join = room.build(
        &joiner_user,
        NewEvent::state("m.room.member", &joiner_id, json!({"membership": "join"})),
        "template.invalid",
        &other,
    );
    let mut template = join.to_federation_value();
    for field in ["hashes", "signatures", "unsigned", "event_id"] {
        template.as_object_mut().expect("object").remove(field);
    }
    let state: Vec<Value> = room.state.values().map(Pdu::to_federation_value).collect();
    // The auth chain: here every auth event is a state event too (the create event, the
    // creator's join, the power levels, the join rules), sent in both lists as servers do.
    let auth_ids: std::collections::BTreeSet<String> = room
        .state
        .values()
        .chain(std::iter::once(&join))
        .flat_map(|p| p.auth_events().iter().map(|a| a.to_string()))
        .collect();
    let auth_chain: Vec<Value> = room
        .state
        .values()
        .filter(|p| auth_ids.contains(p.event_id().as_str()) || p.kind() == "m.room.create")
        .map(Pdu::to_federation_value)
        .collect();
    let answer = json!({"state": state, "auth_chain": auth_chain, "origin": remote.name});
    let answer_bytes = answer.to_string().len();
    remote.answer(
        "GET",
        "/_matrix/federation/v1/make_join/",
        200,
        json!({"room_version": "12", "event": template}),
    );
    remote.answer("PUT", "/_matrix/federation/v2/send_join/", 200, answer);

    let group = server.process_group();
    let before = workerd_rss_kb(group);
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(workerd_rss_kb(group), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let started = Instant::now();
    let r = joiner.post(
        &format!(
            "/_matrix/client/v3/join/{}?server_name={}",
            enc(room.room_id.as_str()),
            enc(&remote.name)
        ),
        &json!({}),
    );
    let seconds = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");
    assert_eq!(r.status, 200, "the join failed: {}", r.body);
    let joined = joiner
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/joined_members",
            enc(room.room_id.as_str())
        ))
        .expect(200);
    let n = joined["joined"].as_object().map_or(0, |m| m.len());
    assert_eq!(n, members + 1, "every member and the joiner");
    JoinFigures {
        seconds,
        answer_events: room.state.len(),
        answer_bytes,
        rss_before_kb: before,
        rss_peak_kb: peak.load(Ordering::Relaxed),
    }
}
