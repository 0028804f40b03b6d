//! Federation figures (not a test): joining a big room hosted elsewhere, and message
//! delivery between Neurite and a real Synapse.
//!
//! ```text
//! cargo run --release --example federation_bench            # 1,000 members, 10,000 events
//! NEURITE_BENCH_MEMBERS=200 NEURITE_BENCH_EVENTS=2000 cargo run --release --example federation_bench
//! NEURITE_BENCH_SYNAPSE=0 ...                                 # the join only
//! NEURITE_BENCH_ONLY=anchor ...                               # two Synapses only
//! ```
//!
//! - join: a scripted server (`tests/system/remote.rs`) hosts a room of
//!   `NEURITE_BENCH_MEMBERS` members and `NEURITE_BENCH_EVENTS` events; a local user
//!   joins it by id. Reported: the `/join` round trip (make_join, send_join, every
//!   event of the answer verified, the room started from the snapshot), the answer's
//!   size, and workerd's resident memory before and at its peak during the join
//!   (sampled every 10 ms; the whole process, every isolate in it).
//! - delivery: a Neurite user and a Synapse user in one room, each waiting in a
//!   long-poll `/sync`; the time from one's `PUT /send` until the other's `/sync`
//!   answers with it, both ways (`NEURITE_BENCH_DELIVERIES` messages each way); and
//!   the same between two Synapses (federating over TLS with self-signed
//!   certificates), the anchor.

#[path = "../tests/system/harness.rs"]
#[allow(dead_code)]
mod harness;

#[path = "../tests/system/remote.rs"]
#[allow(dead_code)]
mod remote;

#[path = "synapse.rs"]
#[allow(dead_code)]
mod synapse;

#[path = "join_room.rs"]
mod join_room;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use harness::{enc, unique, Client, Options, Server};

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn next_batch(client: &Client, since: Option<&str>, timeout_ms: u64) -> Value {
    let path = match since {
        Some(s) => format!("/_matrix/client/v3/sync?timeout={timeout_ms}&since={}", enc(s)),
        None => "/_matrix/client/v3/sync?timeout=0".to_owned(),
    };
    client.get(&path).expect(200)
}

/// Sends `n` messages as `from` and times each until `to`'s waiting `/sync` has it.
fn deliveries(from: &Client, to: &Client, room: &str, n: usize) -> Vec<f64> {
    let mut since = next_batch(to, None, 0)["next_batch"]
        .as_str()
        .expect("token")
        .to_owned();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let body = unique(&format!("delivery {i}"));
        let to_client = to.clone();
        let from_token = since.clone();
        let room_id = room.to_owned();
        let wanted = body.clone();
        // The reader waits first; the send starts once its long-poll is in.
        let waiter = std::thread::spawn(move || {
            let mut since = from_token;
            loop {
                let sync = next_batch(&to_client, Some(&since), 30_000);
                since = sync["next_batch"].as_str().expect("token").to_owned();
                let seen = sync["rooms"]["join"][&room_id]["timeline"]["events"]
                    .as_array()
                    .is_some_and(|events| events.iter().any(|e| e["content"]["body"] == json!(wanted)));
                if seen {
                    return (Instant::now(), since);
                }
            }
        });
        std::thread::sleep(Duration::from_millis(150));
        let sent = Instant::now();
        from.put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
                enc(room),
                unique("t")
            ),
            &json!({"msgtype": "m.text", "body": body}),
        )
        .expect(200);
        let (seen, next) = waiter.join().expect("reader");
        since = next;
        out.push(seen.duration_since(sent).as_secs_f64() * 1000.0);
    }
    out.sort_by(|a, b| a.partial_cmp(b).expect("numbers"));
    out
}

fn report(what: &str, sorted: &[f64]) {
    println!(
        "| {what} | p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms ({} messages) |",
        percentile(sorted, 0.5),
        percentile(sorted, 0.95),
        sorted.last().copied().unwrap_or(f64::NAN),
        sorted.len()
    );
}

fn delivery(n: usize) -> Result<(), String> {
    let install = synapse::install()?;
    let synapse = synapse::Synapse::start_federating(&install)?;
    let neurite = Server::start(Options {
        https: true,
        ..Options::default()
    });
    let (alice, _) = neurite.client().register(&unique("alice"), "bench password");
    let synapse_client = Client {
        base: synapse.base_url(),
        token: None,
    };
    let (bob, _) = synapse_client.register(&unique("bob"), "bench password");
    let room = alice
        .post("/_matrix/client/v3/createRoom", &json!({"preset": "public_chat"}))
        .expect(200)["room_id"]
        .as_str()
        .expect("room")
        .to_owned();
    bob.post(
        &format!(
            "/_matrix/client/v3/join/{}?server_name={}",
            enc(&room),
            enc(&neurite.server_name)
        ),
        &json!({}),
    )
    .expect(200);
    // Both servers warm: a first message each way, not counted.
    deliveries(&alice, &bob, &room, 1);
    deliveries(&bob, &alice, &room, 1);
    let out = deliveries(&alice, &bob, &room, n);
    let back = deliveries(&bob, &alice, &room, n);
    println!("| delivery | |");
    report("Neurite user's send → Synapse user's /sync", &out);
    report("Synapse user's send → Neurite user's /sync", &back);
    Ok(())
}

/// The same between two Synapses, federating over TLS: the anchor.
fn synapse_to_synapse(n: usize) -> Result<(), String> {
    let install = synapse::install()?;
    let first = synapse::Synapse::start_federating_tls(&install)?;
    let second = synapse::Synapse::start_federating_tls(&install)?;
    let client = |s: &synapse::Synapse| Client {
        base: s.base_url(),
        token: None,
    };
    let (carol, _) = client(&first).register(&unique("carol"), "bench password");
    let (dave, _) = client(&second).register(&unique("dave"), "bench password");
    let room = carol
        .post("/_matrix/client/v3/createRoom", &json!({"preset": "public_chat"}))
        .expect(200)["room_id"]
        .as_str()
        .expect("room")
        .to_owned();
    let joined = dave.post(
        &format!(
            "/_matrix/client/v3/join/{}?server_name={}",
            enc(&room),
            enc(&first.server_name)
        ),
        &json!({}),
    );
    if joined.status != 200 {
        return Err(format!(
            "the second Synapse could not join: {} {}",
            joined.status, joined.body
        ));
    }
    deliveries(&carol, &dave, &room, 1);
    deliveries(&dave, &carol, &room, 1);
    let out = deliveries(&carol, &dave, &room, n);
    let back = deliveries(&dave, &carol, &room, n);
    report("Synapse → Synapse (the anchor)", &out);
    report("and back", &back);
    Ok(())
}

fn main() {
    let members = env_count("NEURITE_BENCH_MEMBERS", 1_000);
    let events = env_count("NEURITE_BENCH_EVENTS", 10_000);
    let n = env_count("NEURITE_BENCH_DELIVERIES", 50);
    println!("| figure | value |\n|---|---|");
    // `NEURITE_BENCH_ONLY=anchor`: only the two Synapses.
    if std::env::var("NEURITE_BENCH_ONLY").as_deref() == Ok("anchor") {
        if let Err(e) = synapse_to_synapse(n) {
            eprintln!("[bench] delivery between two Synapses not measured: {e}");
        }
        return;
    }
    {
        let server = Server::start(Options::default());
        let figures = join_room::join(&server, members, events);
        println!(
            "| join a room of {members} members and {events} events on another server | {:.2} s (send_join answer {} events, {:.1} MB); workerd resident memory {:.0} MB before, {:.0} MB at the peak |",
            figures.seconds,
            figures.answer_events,
            figures.answer_bytes as f64 / 1e6,
            figures.rss_before_kb as f64 / 1024.0,
            figures.rss_peak_kb as f64 / 1024.0,
        );
    }
    if std::env::var("NEURITE_BENCH_SYNAPSE").as_deref() != Ok("0") {
        if let Err(e) = delivery(n) {
            eprintln!("[bench] delivery with Synapse not measured: {e}");
        }
        if let Err(e) = synapse_to_synapse(n) {
            eprintln!("[bench] delivery between two Synapses not measured: {e}");
        }
    }
}
