//! A realistic room history for the ingest benchmark: three servers with their own
//! signing keys, users joining and leaving, power-level / name / topic changes, mostly
//! messages, and concurrent branches (built on the same parent by different servers,
//! then merged) that the roomserver must resolve.

use std::collections::HashMap;

use neurite::core::builder::{build_create_event, build_event, NewEvent, Prev, Signer};
use neurite::core::keys::SigningKey;
use neurite::core::pdu::Pdu;
use ruma::events::StateEventType;
use ruma::{OwnedUserId, RoomVersionId};
use serde_json::{json, Value};

const SERVERS: [&str; 3] = ["a.bench", "b.bench", "c.bench"];
const USERS_PER_SERVER: usize = 10;

/// A member of another server who joins right after the room's set-up and then only
/// reads (the benchmark's local user, so the room is one this server is in).
pub struct Reader {
    pub user_id: String,
    pub server_name: String,
    pub key: SigningKey,
}

pub struct History {
    pub room_id: String,
    /// Events up to and including the reader's join (all of the set-up).
    #[allow(dead_code)] // read by the federation workload only
    pub setup_len: usize,
    pub pdus: Vec<Value>,
    pub keys: Value,
    pub state_events: usize,
    pub forks: usize,
}

type State = HashMap<(StateEventType, String), Pdu>;

#[derive(Clone)]
struct Branch {
    state: State,
    tip: Vec<Prev>,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Gen {
    servers: Vec<String>,
    keys: Vec<SigningKey>,
    rules: ruma::room_version_rules::RoomVersionRules,
    room_id: ruma::OwnedRoomId,
    ts: u64,
    out: Vec<Value>,
    state_events: usize,
}

impl Gen {
    fn user(&self, server: usize, n: usize) -> OwnedUserId {
        OwnedUserId::try_from(format!("@u{n}:{}", self.servers[server])).expect("user id")
    }

    fn server_of(&self, u: &OwnedUserId) -> usize {
        self.servers
            .iter()
            .position(|s| s == u.server_name().as_str())
            .unwrap_or(0)
    }

    fn add(&mut self, branch: &mut Branch, sender: &OwnedUserId, new: NewEvent) -> Pdu {
        self.ts += 1;
        let at = self.server_of(sender);
        let key = &self.keys[at];
        let signer = Signer {
            server_name: &self.servers[at],
            key,
            now_ms: self.ts,
        };
        let state = &branch.state;
        let pdu = build_event(
            &self.rules,
            &self.room_id,
            sender,
            new,
            &branch.tip,
            |t, k| state.get(&(t.clone(), k.to_owned())).cloned(),
            signer,
        )
        .expect("generated events build");
        if let Some(pair) = pdu.state_pair() {
            branch.state.insert(pair, pdu.clone());
            self.state_events += 1;
        }
        branch.tip = vec![Prev::new(pdu.owned_event_id(), pdu.depth())];
        self.out.push(pdu.to_federation_value());
        pdu
    }
}

fn member(u: &OwnedUserId, membership: &str) -> NewEvent {
    NewEvent::state(
        "m.room.member",
        u.as_str(),
        json!({ "membership": membership, "displayname": u.localpart() }),
    )
}

fn message(i: usize) -> NewEvent {
    NewEvent::message(
        "m.room.message",
        json!({ "msgtype": "m.text", "body": format!("message number {i}: the quick brown fox jumps over the lazy dog") }),
    )
}

pub fn generate(total: usize, seed: u64) -> History {
    let servers = SERVERS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                s.to_string(),
                SigningKey::from_seed([i as u8 + 1; 32], "bench").expect("key"),
            )
        })
        .collect();
    generate_on(total, seed, servers, None, 1_700_000_000_000)
}

/// The history among the given servers (name and signing key each), stamped from `ts`
/// on, with an optional reader joined after the set-up.
pub fn generate_on(
    total: usize,
    seed: u64,
    servers: Vec<(String, SigningKey)>,
    reader: Option<Reader>,
    ts: u64,
) -> History {
    let (mut names, mut keys): (Vec<String>, Vec<SigningKey>) = servers.into_iter().unzip();
    let authors = names.len();
    let version = RoomVersionId::V12;
    let rules = version.rules().expect("rules");
    let creator = OwnedUserId::try_from(format!("@u0:{}", names[0])).expect("user id");
    let signer = Signer {
        server_name: &names[0],
        key: &keys[0],
        now_ms: ts + seed,
    };
    let create = build_create_event(&version, &rules, &creator, None, json!({}), signer).expect("create");
    let reader_user = reader
        .as_ref()
        .map(|r| OwnedUserId::try_from(r.user_id.as_str()).expect("reader"));
    if let Some(r) = reader {
        names.push(r.server_name);
        keys.push(r.key);
    }
    let mut g = Gen {
        servers: names,
        keys,
        rules,
        room_id: create.room_id().to_owned(),
        ts: ts + seed,
        out: vec![create.to_federation_value()],
        state_events: 1,
    };
    let mut main = Branch {
        state: State::new(),
        tip: vec![Prev::new(create.owned_event_id(), create.depth())],
    };
    main.state
        .insert((StateEventType::RoomCreate, String::new()), create);
    let mods: Vec<OwnedUserId> = (0..authors).map(|s| g.user(s, 0)).collect();
    g.add(&mut main, &creator, member(&creator, "join"));
    let mut users_pl = serde_json::Map::new();
    for m in &mods[1..] {
        users_pl.insert(m.to_string(), json!(50));
    }
    g.add(
        &mut main,
        &creator,
        NewEvent::state(
            "m.room.power_levels",
            "",
            json!({ "users": users_pl, "state_default": 50, "events_default": 0 }),
        ),
    );
    g.add(
        &mut main,
        &creator,
        NewEvent::state("m.room.join_rules", "", json!({"join_rule": "public"})),
    );
    g.add(
        &mut main,
        &creator,
        NewEvent::state("m.room.name", "", json!({"name": "Benchmark room"})),
    );
    for m in &mods[1..] {
        g.add(&mut main, m, member(m, "join"));
    }
    if let Some(r) = &reader_user {
        g.add(&mut main, r, member(r, "join"));
    }
    let setup_len = g.out.len();
    let mut joined: Vec<OwnedUserId> = mods.clone();
    let mut left: Vec<OwnedUserId> = (0..authors)
        .flat_map(|s| (1..USERS_PER_SERVER).map(|n| g.user(s, n)).collect::<Vec<_>>())
        .collect();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut forks = 0;
    let mut i = 0usize;
    while g.out.len() < total {
        i += 1;
        let roll = rng.below(1000);
        if roll < 15 && !left.is_empty() {
            let u = left.swap_remove(rng.below(left.len()));
            g.add(&mut main, &u.clone(), member(&u, "join"));
            joined.push(u);
        } else if roll < 22 && joined.len() > mods.len() {
            let idx = mods.len() + rng.below(joined.len() - mods.len());
            let u = joined.swap_remove(idx);
            g.add(&mut main, &u.clone(), member(&u, "leave"));
            left.push(u);
        } else if roll < 32 {
            let m = mods[rng.below(mods.len())].clone();
            g.add(
                &mut main,
                &m,
                NewEvent::state("m.room.topic", "", json!({"topic": format!("topic {i}")})),
            );
        } else if roll < 36 && g.out.len() + 8 < total {
            // Concurrent branches from two servers, then a merge.
            forks += 1;
            let mut a = main.clone();
            let mut b = main.clone();
            let (ma, mb) = (mods[1].clone(), mods[2].clone());
            g.add(
                &mut a,
                &ma,
                NewEvent::state("m.room.topic", "", json!({"topic": format!("fork a {i}")})),
            );
            g.add(
                &mut b,
                &mb,
                NewEvent::state("m.room.name", "", json!({"name": format!("fork b {i}")})),
            );
            for k in 0..2 {
                let ua = joined[rng.below(joined.len())].clone();
                g.add(&mut a, &ua, message(i * 10 + k));
                let ub = joined[rng.below(joined.len())].clone();
                g.add(&mut b, &ub, message(i * 10 + 5 + k));
            }
            // The forks touch different state, so the merged state is their union.
            let mut merged = a.clone();
            for (k, v) in b.state {
                let keep_a = a.state.get(&k).is_some_and(|x| x.depth() >= v.depth());
                if !keep_a {
                    merged.state.insert(k, v);
                }
            }
            merged.tip = [a.tip, b.tip].concat();
            let u = joined[rng.below(joined.len())].clone();
            g.add(&mut merged, &u, message(i));
            main = merged;
        } else {
            let u = joined[rng.below(joined.len())].clone();
            g.add(&mut main, &u, message(i));
        }
    }
    let keys_json: serde_json::Map<String, Value> = g
        .servers
        .iter()
        .zip(&g.keys)
        .map(|(s, k)| (s.to_string(), json!({ k.key_id(): k.public_key_base64() })))
        .collect();
    History {
        room_id: g.room_id.to_string(),
        setup_len,
        pdus: g.out,
        keys: Value::Object(keys_json),
        state_events: g.state_events,
        forks,
    }
}
