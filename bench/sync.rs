//! Sync workloads against any Matrix homeserver with open registration
//! (`m.login.dummy`): used by the benchmark for Neurite and Synapse alike, and by
//! `examples/sync_bench.rs` against a server that is already running.
//!
//! - Delivery latency: user B holds a long-poll `/sync`; user A sends a message; the
//!   time from the start of A's send until B's `/sync` returns with the event, over
//!   sequential sends.
//! - Initial sync of a user in many rooms of many messages each, and an incremental
//!   sync with nothing new.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{enc, unique, Client};

const PASSWORD: &str = "bench password 1";

/// Send-to-delivery latency, in ms, over `n` sequential messages.
pub struct Delivery {
    pub n: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// Initial and incremental sync of a user in `rooms` rooms of `per_room` messages.
pub struct Initial {
    pub rooms: usize,
    pub per_room: usize,
    /// Seconds taken to create the rooms (one by one) and send the messages (8 senders
    /// at a time).
    pub setup_s: f64,
    /// Median of 5 initial syncs, ms.
    pub initial_ms: f64,
    /// Median of 20 incremental syncs (`timeout=0`) with nothing new, ms.
    pub incremental_ms: f64,
}

/// The value at quantile `p` of an ascending slice (0 for an empty one).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn next_batch(body: &Value) -> String {
    body["next_batch"]
        .as_str()
        .expect("next_batch in /sync")
        .to_owned()
}

fn create_room(c: &Client, body: Value) -> String {
    c.post("/_matrix/client/v3/createRoom", &body).expect(200)["room_id"]
        .as_str()
        .expect("room_id")
        .to_owned()
}

fn send(c: &Client, room: &str, txn: &str, text: &str) {
    c.put(
        &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", enc(room)),
        &json!({"msgtype": "m.text", "body": text}),
    )
    .expect(200);
}

/// Measures delivery latency over `n` messages. `server` is a client without a token.
pub fn delivery(server: &Client, n: usize) -> Delivery {
    let (a, _) = server.register(&unique("synca"), PASSWORD);
    let (b, _) = server.register(&unique("syncb"), PASSWORD);
    let room = create_room(&a, json!({"preset": "public_chat"}));
    b.post(
        &format!("/_matrix/client/v3/rooms/{}/join", enc(&room)),
        &json!({}),
    )
    .expect(200);
    let mut token = next_batch(&b.get("/_matrix/client/v3/sync?timeout=0").expect(200));
    // Drain anything still arriving from the set-up.
    loop {
        let body = b
            .get(&format!("/_matrix/client/v3/sync?timeout=500&since={token}"))
            .expect(200);
        token = next_batch(&body);
        if body["rooms"]["join"].as_object().is_none_or(|m| m.is_empty()) {
            break;
        }
    }
    let b = Arc::new(b);
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let (tx, rx) = mpsc::channel();
        let reader = b.clone();
        let since = token.clone();
        let room_id = room.clone();
        std::thread::spawn(move || {
            let mut since = since;
            loop {
                let body = reader
                    .get(&format!("/_matrix/client/v3/sync?timeout=30000&since={since}"))
                    .expect(200);
                since = next_batch(&body);
                let got = body["rooms"]["join"][&room_id]["timeline"]["events"]
                    .as_array()
                    .is_some_and(|e| !e.is_empty());
                if got {
                    let _ = tx.send((Instant::now(), since));
                    return;
                }
            }
        });
        // Let the long-poll park before sending.
        std::thread::sleep(Duration::from_millis(30));
        let start = Instant::now();
        send(&a, &room, &format!("d{i}"), &format!("bench {i}"));
        let (arrived, next) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("message delivered to the waiting /sync");
        latencies.push(arrived.duration_since(start).as_secs_f64() * 1000.0);
        token = next;
    }
    latencies.sort_by(f64::total_cmp);
    Delivery {
        n,
        p50: percentile(&latencies, 0.50),
        p95: percentile(&latencies, 0.95),
        p99: percentile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or(0.0),
    }
}

/// Sets up a user in `rooms` rooms of `per_room` messages (8 rooms filled at a time,
/// the messages of a room in order), then measures initial and empty incremental syncs.
pub fn initial(server: &Client, rooms: usize, per_room: usize) -> Initial {
    const SETUP_CONCURRENCY: usize = 8;
    let (c, _) = server.register(&unique("syncc"), PASSWORD);
    let setup = Instant::now();
    // Rooms are created one at a time: in room version 12 the room id is the hash of
    // the create event, so one user's identical creates in the same millisecond collide.
    let room_ids: Vec<String> = (0..rooms)
        .map(|r| create_room(&c, json!({"name": format!("room {r}")})))
        .collect();
    let room_ids = Arc::new(room_ids);
    let handles: Vec<_> = (0..SETUP_CONCURRENCY.min(rooms.max(1)))
        .map(|t| {
            let c = c.clone();
            let room_ids = room_ids.clone();
            std::thread::spawn(move || {
                for r in (t..rooms).step_by(SETUP_CONCURRENCY) {
                    for m in 0..per_room {
                        send(&c, &room_ids[r], &format!("s{r}x{m}"), &format!("message {m}"));
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("set-up sender");
    }
    let setup_s = setup.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    let mut initial = Vec::new();
    let mut token = String::new();
    for _ in 0..5 {
        let start = Instant::now();
        let body = c.get("/_matrix/client/v3/sync").expect(200);
        initial.push(start.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(
            body["rooms"]["join"].as_object().map(|m| m.len()),
            Some(rooms),
            "initial sync lists every room"
        );
        token = next_batch(&body);
    }
    initial.sort_by(f64::total_cmp);
    let mut incremental = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        c.get(&format!("/_matrix/client/v3/sync?timeout=0&since={token}"))
            .expect(200);
        incremental.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    incremental.sort_by(f64::total_cmp);
    Initial {
        rooms,
        per_room,
        setup_s,
        initial_ms: percentile(&initial, 0.5),
        incremental_ms: percentile(&incremental, 0.5),
    }
}
