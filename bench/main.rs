//! Neurite's benchmark: runs the workloads against Neurite (under `wrangler dev`) and
//! against Synapse on the same machine, prints one table with both and their ratios,
//! and writes `docs/benchmarks.md` (with an SVG chart).
//!
//! `cargo run --release --example bench` (see the README). Bounded in count and time;
//! everything on loopback; stops both servers when done or on a panic.
//!
//! Workloads:
//! - ingest (Neurite only): a generated 10,000-event room history from three servers
//!   (joins, leaves, power-level / name / topic changes, mostly messages, concurrent
//!   branches), fed through the roomserver's input pipeline (signatures and hashes
//!   verified, auth checked, state resolved, persisted) in batches;
//! - federation (Neurite only): a 10,000-event history from three scripted remote
//!   servers delivered through signed `/_matrix/federation/v1/send` transactions of 50
//!   PDUs (`bench/federation.rs`);
//! - send: `PUT /send` latency and throughput at concurrency 1, 8, 32, into one room
//!   and spread over 20 rooms;
//! - sync: delivery latency of a message to a waiting long-poll `/sync`, initial sync
//!   of a user in 50 rooms of 100 messages, and an incremental sync with nothing new
//!   (`bench/sync.rs`).
//!
//! Selection, through the environment:
//! - `NEURITE_BENCH_ONLY=ingest|federation|send|sync` (or a comma-separated list) runs only those
//!   parts; `docs/benchmarks.md` is replaced only when every part ran;
//! - `NEURITE_BENCH_SYNAPSE=0` leaves Synapse out (it is installed from PyPI into
//!   `target/bench/synapse/` on first use; if that fails the run goes on without it);
//! - smaller counts for development: `NEURITE_BENCH_EVENTS` (ingest, 10000),
//!   `NEURITE_BENCH_SENDS` (sends per row, 600), `NEURITE_BENCH_SYNC_MESSAGES` (500),
//!   `NEURITE_BENCH_SYNC_ROOMS` (50), `NEURITE_BENCH_SYNC_PER_ROOM` (100).

#[path = "../tests/system/harness.rs"]
#[allow(dead_code)]
mod harness;

#[path = "federation.rs"]
mod federation;

#[path = "history.rs"]
mod history;

#[path = "../tests/system/remote.rs"]
#[allow(dead_code)]
mod remote;

#[path = "report.rs"]
mod report;

#[path = "sync.rs"]
mod sync;

#[path = "synapse.rs"]
#[allow(dead_code)] // the federating mode is for the interoperability tests
mod synapse;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use harness::{Client, Options, Server};

const INGEST_EVENTS: usize = 10_000;
const INGEST_BATCH: usize = 500;
const SENDS_PER_LEVEL: usize = 600;
const SYNC_MESSAGES: usize = 500;
const SYNC_ROOMS: usize = 50;
const SYNC_PER_ROOM: usize = 100;

/// Which parts of the benchmark run.
struct Parts {
    ingest: bool,
    federation: bool,
    send: bool,
    sync: bool,
}

impl Parts {
    fn from_env() -> Parts {
        let Ok(only) = std::env::var("NEURITE_BENCH_ONLY") else {
            return Parts {
                ingest: true,
                federation: true,
                send: true,
                sync: true,
            };
        };
        let mut parts = Parts {
            ingest: false,
            federation: false,
            send: false,
            sync: false,
        };
        for name in only.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "ingest" => parts.ingest = true,
                "federation" => parts.federation = true,
                "send" => parts.send = true,
                "sync" => parts.sync = true,
                other => {
                    eprintln!(
                        "[bench] NEURITE_BENCH_ONLY: unknown part {other:?} (known: ingest, federation, send, sync)"
                    );
                    std::process::exit(2);
                }
            }
        }
        parts
    }

    fn all(&self) -> bool {
        self.ingest && self.federation && self.send && self.sync
    }
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The command line that reproduces this run, with the selectors that were set.
fn command() -> String {
    let mut vars: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("NEURITE_BENCH_"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    vars.sort();
    vars.push("cargo run --release --example bench".into());
    vars.join(" ")
}

struct Counts {
    sends: usize,
    sync_messages: usize,
    sync_rooms: usize,
    sync_per_room: usize,
}

fn main() {
    let parts = Parts::from_env();
    let counts = Counts {
        sends: env_count("NEURITE_BENCH_SENDS", SENDS_PER_LEVEL),
        sync_messages: env_count("NEURITE_BENCH_SYNC_MESSAGES", SYNC_MESSAGES),
        sync_rooms: env_count("NEURITE_BENCH_SYNC_ROOMS", SYNC_ROOMS),
        sync_per_room: env_count("NEURITE_BENCH_SYNC_PER_ROOM", SYNC_PER_ROOM),
    };
    // Synapse is installed before anything is measured, so the install never competes
    // with a measurement for the two cores.
    let synapse_install = if std::env::var("NEURITE_BENCH_SYNAPSE").as_deref() == Ok("0") {
        Err("left out with NEURITE_BENCH_SYNAPSE=0".to_owned())
    } else if !(parts.send || parts.sync) {
        Err("no workload of this run compares with Synapse".to_owned())
    } else {
        eprintln!("[bench] Synapse {}: checking the install", synapse::VERSION);
        let result = synapse::install();
        match &result {
            Ok(i) => match i.seconds {
                Some(s) => eprintln!("[bench] Synapse installed in {s:.1} s"),
                None => eprintln!("[bench] Synapse already installed"),
            },
            Err(e) => eprintln!("[bench] Synapse unavailable, going on with Neurite only: {e}"),
        }
        result.map_err(|e| format!("install failed: {e}"))
    };

    eprintln!("[bench] starting Neurite");
    let server = Server::start(Options::default());
    // A panic while measuring still stops the server before it propagates.
    let measured = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let ingest = parts.ingest.then(|| run_ingest(&server));
        let events = env_count("NEURITE_BENCH_EVENTS", INGEST_EVENTS);
        let federation_ingest = parts.federation.then(|| federation::run(&server, events));
        let figures = workloads("Neurite", &server.client(), &parts, &counts);
        (ingest, federation_ingest, figures)
    }));
    drop(server);
    let (ingest, federation_ingest, neurite) =
        measured.unwrap_or_else(|panic| std::panic::resume_unwind(panic));

    let synapse = synapse_install.and_then(|install| {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            eprintln!("[bench] starting Synapse");
            let started = Instant::now();
            let server = synapse::Synapse::start(&install)?;
            eprintln!(
                "[bench] Synapse answering on {} after {:.1} s",
                server.base_url(),
                started.elapsed().as_secs_f64()
            );
            let client = Client {
                base: server.base_url(),
                token: None,
            };
            let figures = workloads("Synapse", &client, &parts, &counts);
            drop(server);
            Ok::<_, String>(figures)
        }));
        let figures = match run {
            Ok(result) => result,
            Err(panic) => Err(format!(
                "the Synapse run failed: {}",
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into())
            )),
        };
        if let Err(e) = &figures {
            eprintln!("[bench] Synapse figures absent: {e}");
        }
        figures.map(|f| {
            (
                f,
                report::SynapseInfo {
                    version: synapse::VERSION.to_owned(),
                    python: install.python_version.clone(),
                    install_s: install.seconds,
                },
            )
        })
    });

    report::write(&report::Run {
        command: command(),
        ingest,
        federation_ingest,
        neurite,
        synapse,
        sends_per_level: counts.sends,
        wasm: report::wasm_size(),
        complete: parts.all(),
    });
}

/// The send and sync workloads against one server (`server` holds no token).
fn workloads(name: &str, server: &Client, parts: &Parts, counts: &Counts) -> report::Figures {
    let mut figures = report::Figures::default();
    if parts.send {
        let (alice, _) = server.register(&harness::unique("sender"), "bench password");
        let one_room = create_room(&alice);
        let many_rooms: Vec<String> = (0..20).map(|_| create_room(&alice)).collect();
        for concurrency in [1usize, 32] {
            let r = noop_load(server, concurrency, counts.sends);
            eprintln!(
                "[bench] {name} no-op GET /versions c={concurrency}: {:.0} req/s p50 {:.1} ms",
                r.per_s, r.p50
            );
            figures.noop.push(r);
        }
        for concurrency in [1usize, 8, 32] {
            for (label, rooms) in [
                ("1 room", vec![one_room.clone()]),
                ("20 rooms", many_rooms.clone()),
            ] {
                let r = send_load(&alice, &rooms, concurrency, counts.sends);
                eprintln!(
                    "[bench] {name} send {label} c={concurrency}: {} ok, {:.0} ev/s p50 {:.1} ms p95 {:.1} ms p99 {:.1} ms",
                    r.ok, r.per_s, r.p50, r.p95, r.p99
                );
                figures.sends.push(report::Send {
                    target: label.to_owned(),
                    concurrency,
                    ..r
                });
            }
        }
    }
    if parts.sync {
        let d = sync::delivery(server, counts.sync_messages);
        eprintln!(
            "[bench] {name} sync delivery over {} messages: p50 {:.1} ms p95 {:.1} ms p99 {:.1} ms max {:.1} ms",
            d.n, d.p50, d.p95, d.p99, d.max
        );
        figures.delivery = Some(d);
        if counts.sync_rooms > 0 {
            let i = sync::initial(server, counts.sync_rooms, counts.sync_per_room);
            eprintln!(
                "[bench] {name} initial sync of {} rooms x {} messages (set up in {:.1} s): median {:.1} ms; empty incremental: median {:.1} ms",
                i.rooms, i.per_room, i.setup_s, i.initial_ms, i.incremental_ms
            );
            figures.initial = Some(i);
        }
    }
    figures
}

/// Feeds the generated history through the admin input endpoint.
fn run_ingest(server: &Server) -> report::Ingest {
    let events = env_count("NEURITE_BENCH_EVENTS", INGEST_EVENTS);
    let (admin, _) = server.register_admin(&harness::unique("benchadmin"), "bench password");
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
    // The request bodies are the generator's output: made before the clock starts.
    let bodies: Vec<Vec<u8>> = hist
        .pdus
        .chunks(INGEST_BATCH)
        .map(|chunk| serde_json::to_vec(&json!({ "pdus": chunk, "keys": hist.keys })).expect("body"))
        .collect();
    let started = Instant::now();
    let mut last = serde_json::Value::Null;
    let mut batch_ms: Vec<f64> = Vec::new();
    let mut phases: std::collections::BTreeMap<String, f64> = Default::default();
    // The server's own stage timings (`Server-Timing`), summed over the batches.
    let mut stages: std::collections::BTreeMap<String, f64> = Default::default();
    for body in &bodies {
        let t = Instant::now();
        let resp = admin.raw("POST", &path, Some(body), &[("Content-Type", "application/json")]);
        batch_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        for entry in resp.header("server-timing").unwrap_or("").split(',') {
            let mut parts = entry.trim().split(';');
            let name = parts.next().unwrap_or("").to_owned();
            if let Some(ms) = parts.find_map(|p| p.trim().strip_prefix("dur=")?.parse::<f64>().ok()) {
                *stages.entry(name).or_insert(0.0) += ms;
            }
        }
        last = resp.expect(200);
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
    eprintln!("[bench] ingest Server-Timing stages, summed (ms): {stages:.0?}");
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
    ingest
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

/// `total` requests for `GET /_matrix/client/versions` from `concurrency` threads.
fn noop_load(c: &Client, concurrency: usize, total: usize) -> report::Send {
    let c = c.clone();
    run_load("no-op", concurrency, total, move |_, _| {
        c.get("/_matrix/client/versions").status == 200
    })
}

/// `total` sends spread over `concurrency` threads and the given rooms.
fn send_load(c: &Client, rooms: &[String], concurrency: usize, total: usize) -> report::Send {
    let c = c.clone();
    let rooms = rooms.to_vec();
    run_load("", concurrency, total, move |t, i| {
        let room = &rooms[i % rooms.len()];
        // Unique per row: a transaction id seen before in the same room would be
        // answered from the server's idempotency record, not sent.
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/c{concurrency}r{}t{t}x{i}",
            room.replace('!', "%21").replace(':', "%3A"),
            rooms.len()
        );
        c.put(
            &path,
            &json!({"msgtype": "m.text", "body": format!("message {i}")}),
        )
        .status
            == 200
    })
}

/// Runs `total` requests from `concurrency` threads; `request(thread, i)` makes the i-th
/// and says whether it succeeded. The latency of each successful one is kept.
fn run_load(
    target: &str,
    concurrency: usize,
    total: usize,
    request: impl Fn(usize, usize) -> bool + Send + Sync + 'static,
) -> report::Send {
    let next = Arc::new(AtomicUsize::new(0));
    let request = Arc::new(request);
    let started = Instant::now();
    let handles: Vec<_> = (0..concurrency)
        .map(|t| {
            let next = next.clone();
            let request = request.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= total {
                        break;
                    }
                    let t0 = Instant::now();
                    if request(t, i) {
                        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
                    }
                }
                lat
            })
        })
        .collect();
    let lat: Vec<f64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap_or_default())
        .collect();
    summarize(target, concurrency, lat, started.elapsed().as_secs_f64())
}

/// Throughput and latency percentiles of successful requests over `secs` of wall time.
fn summarize(target: &str, concurrency: usize, mut lat: Vec<f64>, secs: f64) -> report::Send {
    let secs = secs.max(Duration::from_millis(1).as_secs_f64());
    lat.sort_by(|a, b| a.total_cmp(b));
    report::Send {
        target: target.to_owned(),
        concurrency,
        ok: lat.len(),
        per_s: lat.len() as f64 / secs,
        p50: sync::percentile(&lat, 0.50),
        p95: sync::percentile(&lat, 0.95),
        p99: sync::percentile(&lat, 0.99),
    }
}
