//! Sync delivery latency and initial-sync cost against a server that is already
//! running. Not a test. The benchmark (`cargo run --release --example bench`) runs the
//! same workloads (`bench/sync.rs`) against Neurite and Synapse side by side.
//!
//! ```text
//! bash scripts/run.sh --port 8790 &        # or any Matrix homeserver with open registration
//! cargo run --release --example sync_bench -- http://127.0.0.1:8790 [messages] [rooms] [per_room]
//! ```
//!
//! Defaults: 500 messages; a user in 50 rooms of 100 messages (0 rooms skips it).

#[path = "../tests/system/harness.rs"]
#[allow(dead_code)]
mod harness;

#[path = "../bench/sync.rs"]
mod sync;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8787".into());
    let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(500);
    let rooms: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(50);
    let per_room: usize = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(100);
    let server = harness::Client { base, token: None };

    let d = sync::delivery(&server, n);
    println!(
        "delivery latency over {} messages: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        d.n, d.p50, d.p95, d.p99, d.max
    );
    if rooms == 0 {
        return;
    }
    let i = sync::initial(&server, rooms, per_room);
    println!(
        "set-up of {} rooms x {} messages: {:.1} s",
        i.rooms, i.per_room, i.setup_s
    );
    println!(
        "initial sync ({} rooms): median {:.1} ms (of 5); incremental with nothing new: median {:.1} ms (of 20)",
        i.rooms, i.initial_ms, i.incremental_ms
    );
}
