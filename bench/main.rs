//! Neurite's benchmark: starts a server under `wrangler dev` on loopback, runs the
//! workloads, prints a table and writes `docs/benchmarks.md` (with an SVG chart).
//!
//! `cargo run --release --example bench` (see the README). Bounded in count and time;
//! stops the server when done.
//!
//! Workloads:
//! - ingest: a generated 10,000-event room history from three servers (joins, leaves,
//!   power-level / name / topic changes, mostly messages, concurrent branches), fed
//!   through the roomserver's input pipeline (signatures and hashes verified, auth
//!   checked, state resolved, persisted) in batches;
//! - client send: `PUT /send` latency and throughput at concurrency 1, 8, 32, into one
//!   room and spread over 20 rooms.

#[path = "../tests/system/harness.rs"]
#[allow(dead_code)]
mod harness;

#[path = "history.rs"]
mod history;

#[path = "report.rs"]
mod report;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use harness::{Client, Options, Server};

const INGEST_EVENTS: usize = 10_000;
const INGEST_BATCH: usize = 500;
const SENDS_PER_LEVEL: usize = 600;

fn main() {
    let events = std::env::var("NEURITE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(INGEST_EVENTS);
    eprintln!("[bench] starting a server");
    let server = Server::start(Options::default());
    let (admin, _) = server.register_admin(&harness::unique("benchadmin"), "bench password");

    // 1. Ingest.
    eprintln!("[bench] generating a {events}-event history");
    let hist = history::generate(events, 42);
    eprintln!(
        "[bench] history: {} events, {} state events, {} forks",
        hist.pdus.len(),
        hist.state_events,
        hist.forks
    );
    let path = format!(
        "/_neurite/admin/v1/rooms/{}/input",
        hist.room_id.replace('!', "%21")
    );
    let started = Instant::now();
    let mut last = serde_json::Value::Null;
    let mut batch_ms: Vec<f64> = Vec::new();
    let mut phases: std::collections::BTreeMap<String, f64> = Default::default();
    for chunk in hist.pdus.chunks(INGEST_BATCH) {
        let t = Instant::now();
        let body = json!({ "pdus": chunk, "keys": hist.keys });
        last = admin.post(&path, &body).expect(200);
        batch_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        for (k, v) in last["timing_ms"].as_object().into_iter().flatten() {
            *phases.entry(k.clone()).or_insert(0.0) += v.as_f64().unwrap_or(0.0);
        }
        let bad: Vec<_> = last["results"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter(|x| x.get("accepted").is_none())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if !bad.is_empty() {
            eprintln!("[bench] {} events not accepted, e.g. {}", bad.len(), bad[0]);
        }
    }
    let ingest_s = started.elapsed().as_secs_f64();
    eprintln!("[bench] ingest phases inside the room (ms): {phases:?}; batches (ms): {batch_ms:.0?}");
    let accepted = last["stream_pos"].as_u64().unwrap_or(0);
    let db_bytes = last["database_bytes"].as_u64().unwrap_or(0);
    let ingest = report::Ingest {
        events: hist.pdus.len(),
        accepted,
        seconds: ingest_s,
        events_per_s: hist.pdus.len() as f64 / ingest_s,
        bytes_per_event: db_bytes as f64 / hist.pdus.len().max(1) as f64,
        db_bytes,
    };
    eprintln!(
        "[bench] ingest: {:.0} events/s ({} events in {:.2} s), {:.0} bytes/event",
        ingest.events_per_s, ingest.events, ingest.seconds, ingest.bytes_per_event
    );

    // 2. Client send.
    let mut sends = Vec::new();
    if std::env::var("NEURITE_BENCH_ONLY").as_deref() == Ok("ingest") {
        return;
    }
    let (alice, _) = server
        .client()
        .register(&harness::unique("sender"), "bench password");
    let one_room = create_room(&alice);
    let many_rooms: Vec<String> = (0..20).map(|_| create_room(&alice)).collect();
    for concurrency in [1usize, 8, 32] {
        for (label, rooms) in [
            ("1 room", vec![one_room.clone()]),
            ("20 rooms", many_rooms.clone()),
        ] {
            let r = send_load(&alice, &rooms, concurrency, SENDS_PER_LEVEL);
            eprintln!(
                "[bench] send {label} c={concurrency}: {:.0} ev/s p50 {:.1} ms p95 {:.1} ms p99 {:.1} ms",
                r.per_s, r.p50, r.p95, r.p99
            );
            sends.push(report::Send {
                target: label.to_owned(),
                concurrency,
                ..r
            });
        }
    }

    let wasm = report::wasm_size();
    report::write(&ingest, &sends, wasm);
    drop(server);
}

fn create_room(c: &Client) -> String {
    c.post(
        "/_matrix/client/v3/createRoom",
        &json!({"preset": "private_chat"}),
    )
    .expect(200)["room_id"]
        .as_str()
        .expect("room id")
        .to_owned()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// `total` sends spread over `concurrency` threads and the given rooms.
fn send_load(c: &Client, rooms: &[String], concurrency: usize, total: usize) -> report::Send {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..concurrency)
        .map(|t| {
            let c = c.clone();
            let rooms = rooms.to_vec();
            let next = next.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= total {
                        break;
                    }
                    let room = &rooms[i % rooms.len()];
                    let path = format!(
                        "/_matrix/client/v3/rooms/{}/send/m.room.message/b{t}x{i}x{}",
                        room.replace('!', "%21").replace(':', "%3A"),
                        std::process::id()
                    );
                    let t0 = Instant::now();
                    let resp = c.put(
                        &path,
                        &json!({"msgtype": "m.text", "body": format!("message {i}")}),
                    );
                    if resp.status == 200 {
                        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
                    }
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<f64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap_or_default())
        .collect();
    let secs = started
        .elapsed()
        .as_secs_f64()
        .max(Duration::from_millis(1).as_secs_f64());
    lat.sort_by(|a, b| a.total_cmp(b));
    report::Send {
        target: String::new(),
        concurrency,
        ok: lat.len(),
        per_s: lat.len() as f64 / secs,
        p50: percentile(&lat, 0.50),
        p95: percentile(&lat, 0.95),
        p99: percentile(&lat, 0.99),
    }
}
