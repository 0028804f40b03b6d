//! The federation ingest workload: the same kind of generated room history, from three
//! scripted remote servers on loopback (each serving its own signing key), delivered
//! to Neurite through real signed `PUT /_matrix/federation/v1/send` transactions of 50
//! PDUs, the servers taking turns. Neurite fetches each server's key once, verifies
//! every request and every event, and inputs each transaction into the room. A local
//! user (the reader) joined during the set-up, which goes in through the admin input
//! so that the room is one Neurite is in.

use std::time::Instant;

use neurite::core::keys::SigningKey;
use serde_json::{json, Value};

use crate::harness::{self, Server};
use crate::history::{self, Reader};
use crate::remote::Remote;
use crate::report;

const TXN_PDUS: usize = 50;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

pub fn run(server: &Server, events: usize) -> report::Ingest {
    let remotes: Vec<Remote> = (61..64).map(Remote::start).collect();
    let servers = remotes
        .iter()
        .map(|r| (r.name.clone(), SigningKey::parse(&r.key.to_text()).expect("key")))
        .collect();
    let (reader, reader_id) = server
        .client()
        .register(&harness::unique("reader"), "bench password");
    let key_text = std::fs::read_to_string(server.state_dir.join("signing.key")).expect("signing.key");
    let local = Reader {
        user_id: reader_id,
        server_name: server.server_name.clone(),
        key: SigningKey::parse(key_text.trim()).expect("key"),
    };
    eprintln!("[bench] generating a {events}-event history for the federation ingest");
    // Stamped an hour back, so every event is within its server's key validity.
    let hist = history::generate_on(events, 43, servers, Some(local), now_ms() - 3_600_000);
    let (admin, _) = server.register_admin(&harness::unique("fedadmin"), "bench password");
    let room = harness::enc(&hist.room_id);
    let setup = json!({"pdus": hist.pdus[..hist.setup_len], "keys": hist.keys});
    admin
        .post(&format!("/_neurite/admin/v1/rooms/{room}/input"), &setup)
        .expect(200);
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while !reader.get("/_matrix/client/v3/joined_rooms").expect(200)["joined_rooms"]
        .as_array()
        .expect("rooms")
        .contains(&json!(hist.room_id))
    {
        assert!(Instant::now() < deadline, "the reader never joined");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Transactions are made (and signed) before the clock starts.
    let txns: Vec<(usize, String, Value)> = hist.pdus[hist.setup_len..]
        .chunks(TXN_PDUS)
        .enumerate()
        .map(|(i, chunk)| {
            let remote = &remotes[i % remotes.len()];
            let body = json!({"origin": remote.name, "origin_server_ts": now_ms(), "pdus": chunk});
            (
                i % remotes.len(),
                format!("/_matrix/federation/v1/send/bench{i}"),
                body,
            )
        })
        .collect();
    let sent: usize = hist.pdus.len() - hist.setup_len;
    let started = Instant::now();
    let mut refused = 0usize;
    let mut stages: std::collections::BTreeMap<String, f64> = Default::default();
    for (who, path, body) in &txns {
        let resp = remotes[*who].request(server, "PUT", path, Some(body));
        for entry in resp.header("server-timing").unwrap_or("").split(',') {
            let mut parts = entry.trim().split(';');
            let name = parts.next().unwrap_or("").to_owned();
            if let Some(ms) = parts.find_map(|p| p.trim().strip_prefix("dur=")?.parse::<f64>().ok()) {
                *stages.entry(name).or_insert(0.0) += ms;
            }
        }
        let answer = resp.expect(200);
        refused += answer["pdus"]
            .as_object()
            .map_or(0, |m| m.values().filter(|v| v.get("error").is_some()).count());
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("[bench] federation ingest Server-Timing stages, summed (ms): {stages:.0?}");
    if refused > 0 {
        eprintln!("[bench] federation ingest: {refused} events refused");
    }
    let ingest = report::Ingest {
        events: sent,
        accepted: (sent - refused) as u64,
        seconds,
        events_per_s: sent as f64 / seconds,
        bytes_per_event: 0.0,
        db_bytes: 0,
    };
    eprintln!(
        "[bench] federation ingest: {:.0} events/s ({} events in {} transactions, {:.2} s)",
        ingest.events_per_s,
        sent,
        txns.len(),
        seconds
    );
    ingest
}
