//! Sync delivery latency and initial-sync cost against a running server. Not a test.
//!
//! ```text
//! bash scripts/run.sh --port 8790 &        # or any Matrix homeserver with open registration
//! cargo run --release --example sync_bench -- http://127.0.0.1:8790 [messages] [rooms] [per_room]
//! ```
//!
//! Delivery latency: user B holds a long-poll /sync; user A sends a message; the time
//! from the start of A's send to B's /sync returning with the event, over `messages`
//! sequential sends (default 500). Then the initial sync of a user in `rooms` rooms
//! (default 50) of `per_room` messages (default 100), and an incremental sync with
//! nothing new.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Client {
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {}", self.token));
        let resp = match body {
            Some(b) => req.send_json(b.clone()),
            None => req.call(),
        };
        match resp {
            Ok(r) => r.into_json().unwrap_or(Value::Null),
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }
}

fn register(base: &str, name: &str) -> Client {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build();
    let body: Value = agent
        .post(&format!("{base}/_matrix/client/v3/register"))
        .send_json(
            json!({"username": name, "password": "bench password 1", "auth": {"type": "m.login.dummy"}}),
        )
        .expect("register")
        .into_json()
        .expect("json");
    Client {
        base: base.to_owned(),
        token: body["access_token"].as_str().expect("token").to_owned(),
        agent,
    }
}

fn enc(s: &str) -> String {
    s.replace('!', "%21").replace(':', "%3A").replace('$', "%24")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8787".into());
    let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(500);
    let rooms: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(50);
    let per_room: usize = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(100);
    let tag = std::process::id();

    // 1. Delivery latency.
    let a = register(&base, &format!("bencha{tag}"));
    let b = std::sync::Arc::new(register(&base, &format!("benchb{tag}")));
    let room = a.call(
        "POST",
        "/_matrix/client/v3/createRoom",
        Some(&json!({"preset": "public_chat"})),
    )["room_id"]
        .as_str()
        .expect("room")
        .to_owned();
    b.call(
        "POST",
        &format!("/_matrix/client/v3/rooms/{}/join", enc(&room)),
        Some(&json!({})),
    );
    let mut token = b.call("GET", "/_matrix/client/v3/sync?timeout=0", None)["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    // Drain anything still arriving from the set-up.
    loop {
        let body = b.call(
            "GET",
            &format!("/_matrix/client/v3/sync?timeout=500&since={token}"),
            None,
        );
        token = body["next_batch"].as_str().expect("next_batch").to_owned();
        if body["rooms"]["join"].as_object().is_none_or(|m| m.is_empty()) {
            break;
        }
    }
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let (tx, rx) = mpsc::channel();
        let reader = b.clone();
        let since = token.clone();
        let room_id = room.clone();
        std::thread::spawn(move || {
            let mut since = since;
            loop {
                let body = reader.call(
                    "GET",
                    &format!("/_matrix/client/v3/sync?timeout=30000&since={since}"),
                    None,
                );
                since = body["next_batch"].as_str().expect("next_batch").to_owned();
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
        a.call(
            "PUT",
            &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/b{i}", enc(&room)),
            Some(&json!({"msgtype": "m.text", "body": format!("bench {i}")})),
        );
        let (arrived, next) = rx.recv_timeout(Duration::from_secs(60)).expect("delivered");
        latencies.push(arrived.duration_since(start).as_secs_f64() * 1000.0);
        token = next;
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "delivery latency over {n} messages: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0.0)
    );

    // 2. Initial sync of a user in many rooms.
    if rooms == 0 {
        return;
    }
    let c = register(&base, &format!("benchc{tag}"));
    let setup = Instant::now();
    for r in 0..rooms {
        let room = c.call(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(&json!({"name": format!("room {r}")})),
        )["room_id"]
            .as_str()
            .expect("room")
            .to_owned();
        for m in 0..per_room {
            c.call(
                "PUT",
                &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/s{m}", enc(&room)),
                Some(&json!({"msgtype": "m.text", "body": format!("message {m}")})),
            );
        }
    }
    println!(
        "set-up of {rooms} rooms x {per_room} messages: {:.1} s",
        setup.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(2));
    let mut initial = Vec::new();
    let mut token = String::new();
    for _ in 0..5 {
        let start = Instant::now();
        let body = c.call("GET", "/_matrix/client/v3/sync", None);
        initial.push(start.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(body["rooms"]["join"].as_object().map(|m| m.len()), Some(rooms));
        token = body["next_batch"].as_str().expect("next_batch").to_owned();
    }
    initial.sort_by(f64::total_cmp);
    let mut incremental = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        c.call(
            "GET",
            &format!("/_matrix/client/v3/sync?timeout=0&since={token}"),
            None,
        );
        incremental.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    incremental.sort_by(f64::total_cmp);
    println!(
        "initial sync ({rooms} rooms): median {:.1} ms (of 5); incremental with nothing new: median {:.1} ms (of 20)",
        percentile(&initial, 0.5),
        percentile(&incremental, 0.5)
    );
}
