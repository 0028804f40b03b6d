//! The ingest workload of the benchmark, natively: the same generated history through
//! the same roomserver code (`dispatch::handle` with `Input`) on rusqlite in memory.
//! For profiling the pipeline without workerd:
//! `cargo run --release --example ingest_native --features native-sqlite`.

#[path = "history.rs"]
mod history;
#[path = "native.rs"]
mod native;

use native::clock_ms;

use std::time::Instant;

use neurite::core::keys::SigningKey;
use neurite::roomserver::dispatch::{handle, Host};
use neurite::roomserver::protocol::InputKind;
use neurite::storage::sql::testing::MemorySql;
use neurite::storage::sql::{Row, Sql, SqlError, SqlValue};

/// Counts the statements the pipeline runs (each one crosses into the runtime in
/// workerd, so their number matters more there than natively).
struct Counting {
    inner: MemorySql,
    counts: std::cell::RefCell<std::collections::BTreeMap<String, usize>>,
}

impl Sql for Counting {
    fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>, SqlError> {
        let key: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        *self.counts.borrow_mut().entry(key).or_insert(0) += 1;
        self.inner.query(sql, params)
    }
}

fn main() {
    let events = std::env::var("NEURITE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let hist = history::generate(events, 42);
    println!(
        "history of {}: {} events, {} state events, {} forks",
        hist.room_id,
        hist.pdus.len(),
        hist.state_events,
        hist.forks
    );
    let keys = serde_json::from_value(hist.keys.clone()).expect("keys");
    let db = Counting {
        inner: MemorySql::new(),
        counts: Default::default(),
    };
    let key = SigningKey::from_seed([3; 32], "n").expect("key");
    let host = Host {
        server_name: "native.bench",
        key: &key,
        now_ms: 0,
        clock_ms,
    };
    let started = Instant::now();
    let mut phases: std::collections::BTreeMap<String, f64> = Default::default();
    for chunk in hist.pdus.chunks(500) {
        let answer = handle(
            &db,
            &host,
            native::input(
                InputKind::New,
                chunk
                    .iter()
                    .map(|p| neurite::roomserver::protocol::RawPdu::from_value(p).expect("pdu"))
                    .collect(),
                &keys,
                None,
            ),
        )
        .expect("input");
        for (k, v) in answer["timing_ms"].as_object().into_iter().flatten() {
            *phases.entry(k.clone()).or_insert(0.0) += v.as_f64().unwrap_or(0.0);
        }
        let bad = answer["results"]
            .as_array()
            .map_or(0, |r| r.iter().filter(|x| x.get("accepted").is_none()).count());
        if bad > 0 {
            eprintln!("{bad} events not accepted");
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "native ingest: {} events in {:.2} s = {:.0} events/s",
        hist.pdus.len(),
        secs,
        hist.pdus.len() as f64 / secs
    );
    println!("phases (ms): {phases:?}");
    let counts = db.counts.into_inner();
    let total: usize = counts.values().sum();
    println!(
        "SQL statements: {total} ({:.1} per event); the most frequent:",
        total as f64 / hist.pdus.len() as f64
    );
    let mut top: Vec<_> = counts.into_iter().collect();
    top.sort_by_key(|entry| std::cmp::Reverse(entry.1));
    for (sql, n) in top.into_iter().take(12) {
        println!("{n:>8}  {}", sql.chars().take(110).collect::<String>());
    }
}
