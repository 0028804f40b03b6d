//! What federation asks of a room, natively (rusqlite in memory, the same roomserver
//! code as in the Durable Object, through `dispatch::handle`):
//! - a room started from a join's snapshot of 100,000 state entries (a room of 100,000
//!   members): seconds, bytes stored, the process's peak memory growth;
//! - a join after a 10,000-event history, then that history backfilled in pages of 500;
//! - bytes stored per state change in rooms of 1,000 and 100,000 state entries.
//!
//! `cargo run --release --example roomserver_native --features native-sqlite`
//! (`NEURITE_BENCH_MEMBERS` sets the big room's size.)

#[path = "history.rs"]
mod history;
#[path = "native.rs"]
mod native;

use native::clock_ms;

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use neurite::core::builder::{build_create_event, build_event, NewEvent, Prev, Signer};
use neurite::core::keys::SigningKey;
use neurite::core::pdu::Pdu;
use neurite::roomserver::dispatch::{handle, Host};
use neurite::roomserver::protocol::{EventSpec, FederationQuery, InputKind, RawPdu, RoomRequest, Snapshot};
use neurite::storage::sql::testing::MemorySql;
use neurite::storage::sql::Sql;
use ruma::events::StateEventType;
use ruma::{OwnedUserId, RoomVersionId};
use serde_json::{json, Value};

const SERVER: &str = "big.bench";

/// The process's peak resident memory so far, in bytes (Linux).
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn user(i: usize) -> OwnedUserId {
    OwnedUserId::try_from(format!("@u{i}:{SERVER}")).expect("user")
}

fn raw(pdus: &[Pdu]) -> Vec<RawPdu> {
    pdus.iter()
        .map(|p| RawPdu::from_value(&p.to_federation_value()).expect("raw"))
        .collect()
}

/// A public room with `members` joined users, built linearly: (every event, the state).
fn big_room(key: &SigningKey, members: usize) -> (Vec<Pdu>, HashMap<(StateEventType, String), Pdu>) {
    let version = RoomVersionId::V12;
    let rules = version.rules().expect("rules");
    let mut ts = 1_700_000_000_000u64;
    let signer = |ts: &mut u64| {
        *ts += 1;
        Signer {
            server_name: SERVER,
            key,
            now_ms: *ts,
        }
    };
    let create =
        build_create_event(&version, &rules, &user(0), None, json!({}), signer(&mut ts)).expect("create");
    let room_id = create.room_id().to_owned();
    let mut state: HashMap<(StateEventType, String), Pdu> = HashMap::new();
    let mut log = Vec::new();
    let mut tip: Vec<Prev> = Vec::new();
    let mut add = |pdu: Pdu, state: &mut HashMap<(StateEventType, String), Pdu>, tip: &mut Vec<Prev>| {
        if let Some(pair) = pdu.state_pair() {
            state.insert(pair, pdu.clone());
        }
        *tip = vec![Prev::new(pdu.owned_event_id(), pdu.depth())];
        log.push(pdu);
    };
    add(create, &mut state, &mut tip);
    let steps = vec![
        (
            0,
            NewEvent::state("m.room.member", user(0).as_str(), json!({"membership": "join"})),
        ),
        (
            0,
            NewEvent::state(
                "m.room.power_levels",
                "",
                json!({"users": {}, "state_default": 50}),
            ),
        ),
        (
            0,
            NewEvent::state("m.room.join_rules", "", json!({"join_rule": "public"})),
        ),
    ];
    let joins = (1..members).map(|i| {
        (
            i,
            NewEvent::state("m.room.member", user(i).as_str(), json!({"membership": "join"})),
        )
    });
    for (who, new) in steps.into_iter().chain(joins) {
        let pdu = build_event(
            &rules,
            &room_id,
            &user(who),
            new,
            &tip,
            |t, k| state.get(&(t.clone(), k.to_owned())).cloned(),
            signer(&mut ts),
        )
        .expect("build");
        add(pdu, &mut state, &mut tip);
    }
    (log, state)
}

fn host(key: &SigningKey) -> Host<'_> {
    Host {
        server_name: SERVER,
        key,
        now_ms: 1_800_000_000_000,
        clock_ms,
    }
}

fn size(db: &MemorySql) -> u64 {
    db.database_size().unwrap_or(0)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

/// Bytes stored per state change: `changes` topic changes by the creator.
fn bytes_per_state_change(db: &MemorySql, host: &Host<'_>, changes: usize) -> f64 {
    let before = size(db);
    for i in 0..changes {
        handle(
            db,
            host,
            RoomRequest::Send {
                sender: user(0).to_string(),
                device_id: None,
                txn_id: None,
                event: EventSpec::state("m.room.topic", "", json!({"topic": format!("topic {i}")})),
            },
        )
        .expect("topic");
    }
    (size(db) - before) as f64 / changes as f64
}

fn main() {
    let members: usize = std::env::var("NEURITE_BENCH_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let key = SigningKey::from_seed([5; 32], "big").expect("key");
    let keys: BTreeMap<String, BTreeMap<String, String>> = [(
        SERVER.to_owned(),
        [(key.key_id(), key.public_key_base64())].into(),
    )]
    .into();

    // 1. A join into a room of `members` members, from its snapshot.
    let t = Instant::now();
    let (log, state) = big_room(&key, members);
    println!(
        "built a room of {members} members: {} events in {:.1} s",
        log.len(),
        t.elapsed().as_secs_f64()
    );
    let rules = RoomVersionId::V12.rules().expect("rules");
    let tip = log.last().expect("tip");
    let joiner = OwnedUserId::try_from(format!("@joiner:{SERVER}")).expect("user");
    let join = build_event(
        &rules,
        log[0].room_id(),
        &joiner,
        NewEvent::state("m.room.member", joiner.as_str(), json!({"membership": "join"})),
        &[Prev::new(tip.owned_event_id(), tip.depth())],
        |t, k| state.get(&(t.clone(), k.to_owned())).cloned(),
        Signer {
            server_name: SERVER,
            key: &key,
            now_ms: 1_800_000_000_000,
        },
    )
    .expect("join");
    let snapshot_state: Vec<Pdu> = state.values().cloned().collect();
    let auth_chain: Vec<Pdu> = log[..4].to_vec();
    let host = host(&key);
    // On disk, as in a Durable Object (an in-memory database would count as memory).
    let file_db = |name: &str| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
        std::fs::create_dir_all(&dir).expect("bench dir");
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let conn = rusqlite::Connection::open(&path).expect("sqlite file");
        // A Durable Object commits a request's writes together; statement by statement
        // with a sync each would measure the disk, not the roomserver.
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;")
            .expect("pragmas");
        let db = MemorySql(conn);
        neurite::roomserver::store::init(&db).expect("schema");
        db
    };

    // In pieces: outliers in batches of 1,000 (auth events first, the create first),
    // then the join naming the state by id.
    let db = file_db("big-room-pieces.sqlite");
    let mut all = auth_chain.clone();
    all.extend(snapshot_state.iter().cloned());
    let ordered = neurite::roomserver::engine::auth_order(all);
    let rss_before = peak_rss();
    let t = Instant::now();
    for piece in ordered.chunks(1000) {
        handle(
            &db,
            &host,
            native::input(InputKind::Outlier, raw(piece), &keys, None),
        )
        .expect("outliers");
    }
    let answer = handle(
        &db,
        &host,
        native::input(
            InputKind::Bootstrap,
            raw(std::slice::from_ref(&join)),
            &keys,
            Some(Snapshot {
                state: Vec::new(),
                auth_chain: Vec::new(),
                state_ids: snapshot_state.iter().map(|p| p.event_id().to_string()).collect(),
            }),
        ),
    )
    .expect("bootstrap");
    assert_eq!(
        answer["results"][0]["accepted"],
        json!(1),
        "{}",
        answer["results"]
    );
    println!(
        "bootstrap from a snapshot of {} state entries in pieces of 1,000: {:.1} s, {:.1} MB stored, peak memory +{:.0} MB",
        snapshot_state.len(),
        t.elapsed().as_secs_f64(),
        mb(size(&db)),
        mb(peak_rss().saturating_sub(rss_before)),
    );

    // In one request, as a send_join answer parsed whole.
    let db = file_db("big-room.sqlite");
    let rss_before = peak_rss();
    let t = Instant::now();
    let answer = handle(
        &db,
        &host,
        native::input(
            InputKind::Bootstrap,
            raw(std::slice::from_ref(&join)),
            &keys,
            Some(Snapshot {
                state: raw(&snapshot_state),
                auth_chain: raw(&auth_chain),
                state_ids: Vec::new(),
            }),
        ),
    )
    .expect("bootstrap");
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(
        answer["results"][0]["accepted"],
        json!(1),
        "{}",
        answer["results"]
    );
    println!(
        "bootstrap from the same snapshot in one request: {secs:.1} s ({} ms by phase), {:.1} MB stored, peak memory +{:.0} MB",
        answer["timing_ms"],
        mb(size(&db)),
        mb(peak_rss().saturating_sub(rss_before)),
    );
    let big = bytes_per_state_change(&db, &host, 64);
    println!(
        "bytes stored per state change at {} entries: {big:.0}",
        snapshot_state.len() + 1
    );
    drop(db);

    // 2. A join after a 10,000-event history, then the history backfilled.
    let hist = history::generate(10_000, 7);
    println!(
        "history of {}: {} events, {} state events, {} forks",
        hist.room_id,
        hist.pdus.len(),
        hist.state_events,
        hist.forks
    );
    let hist_keys: BTreeMap<String, BTreeMap<String, String>> =
        serde_json::from_value(hist.keys.clone()).expect("keys");
    let source = MemorySql::new();
    let src_key = SigningKey::from_seed([1; 32], "bench").expect("key");
    let src_host = Host {
        server_name: "a.bench",
        key: &src_key,
        now_ms: 1_800_000_000_000,
        clock_ms,
    };
    for chunk in hist.pdus.chunks(500) {
        handle(
            &source,
            &src_host,
            native::input(
                InputKind::New,
                chunk
                    .iter()
                    .map(|p| RawPdu::from_value(p).expect("raw"))
                    .collect(),
                &hist_keys,
                None,
            ),
        )
        .expect("history");
    }
    // The join: a new user of a.bench on the source room's tip.
    let joined = handle(
        &source,
        &src_host,
        RoomRequest::Send {
            sender: "@late:a.bench".into(),
            device_id: None,
            txn_id: None,
            event: EventSpec::state("m.room.member", "@late:a.bench", json!({"membership": "join"})),
        },
    );
    let Ok(joined) = joined else {
        println!("(the generated room is not public: the history part is skipped)");
        return;
    };
    let join_id = joined["event_id"].as_str().expect("event id").to_owned();
    let ask = |query: FederationQuery| {
        handle(
            &source,
            &src_host,
            RoomRequest::Federation { origin: None, query },
        )
        .expect("query")
    };
    let at = ask(FederationQuery::State {
        event_id: join_id.clone(),
    });
    let join_pdu = ask(FederationQuery::Event {
        event_id: join_id.clone(),
    })["pdu"]
        .clone();
    let mut all_keys = hist_keys.clone();
    all_keys.insert(
        "a.bench".into(),
        [(src_key.key_id(), src_key.public_key_base64())].into(),
    );
    let to_raw = |list: &Value| -> Vec<RawPdu> {
        list.as_array()
            .into_iter()
            .flatten()
            .map(|p| RawPdu::from_value(p).expect("raw"))
            .collect()
    };
    let db = MemorySql::new();
    let t = Instant::now();
    handle(
        &db,
        &src_host,
        native::input(
            InputKind::Bootstrap,
            vec![RawPdu::from_value(&join_pdu).expect("raw")],
            &all_keys,
            Some(Snapshot {
                state: to_raw(&at["pdus"]),
                auth_chain: to_raw(&at["auth_chain"]),
                state_ids: Vec::new(),
            }),
        ),
    )
    .expect("bootstrap after history");
    let boot = t.elapsed().as_secs_f64();
    let t = Instant::now();
    // The history in /backfill pages of 1,000 (newest first), walking back from the
    // join; input oldest page first, so each page's oldest event has its prev events in
    // the room already (input newest first, each page would need the state at its
    // oldest event's prevs, `prev_states`, which the federation code gets with
    // /state_ids).
    let mut pages: Vec<Vec<RawPdu>> = Vec::new();
    let mut from = vec![join_pdu["prev_events"][0].as_str().expect("prev").to_owned()];
    let mut seen = std::collections::HashSet::new();
    while !from.is_empty() {
        let page = ask(FederationQuery::Backfill {
            from: from.clone(),
            limit: 1000,
        });
        let list = page["pdus"].as_array().cloned().unwrap_or_default();
        let fresh: Vec<Value> = list.into_iter().filter(|p| seen.insert(p.to_string())).collect();
        if fresh.is_empty() {
            break;
        }
        from = fresh
            .last()
            .and_then(|p| p["prev_events"].as_array())
            .map(|prevs| {
                prevs
                    .iter()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        pages.push(
            fresh
                .iter()
                .map(|p| RawPdu::from_value(p).expect("raw"))
                .collect(),
        );
    }
    let mut backfilled = 0;
    for page in pages.into_iter().rev() {
        let answer = handle(
            &db,
            &src_host,
            native::input(InputKind::Backfill, page, &all_keys, None),
        )
        .expect("backfill");
        let results = answer["results"].as_array().expect("results");
        backfilled += results
            .iter()
            .filter(|r| r["accepted"].as_i64().is_some_and(|p| p < 0))
            .count();
    }
    println!(
        "join after a {}-event history: bootstrap {boot:.2} s; {backfilled} events backfilled in {:.1} s; {:.1} MB stored",
        hist.pdus.len(),
        t.elapsed().as_secs_f64(),
        mb(size(&db))
    );

    // 3. Bytes per state change in a room of 1,000 entries.
    let (small_log, _) = big_room(&key, 1_000);
    let db = MemorySql::new();
    for chunk in small_log.chunks(500) {
        handle(&db, &host, native::input(InputKind::New, raw(chunk), &keys, None)).expect("small room");
    }
    let small = bytes_per_state_change(&db, &host, 64);
    println!("bytes stored per state change at 1,003 entries: {small:.0}");
}
