//! Crash safety against the real worker: the whole server (wrangler, workerd) is
//! killed with SIGKILL at random moments under load and started again on the same
//! state directory; nothing acknowledged may be lost, hidden or repeated.
//!
//! `NEURITE_CRASH_KILLS` sets the number of kills (default 3, the short variant run by
//! the test command); `NEURITE_CRASH_SEED` replays a run's kill timing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{create_room, enc, unique, Client, Options, Server};

const SENDERS: usize = 8;

/// A small deterministic generator for kill timings (xorshift).
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn from_env() -> Rng {
        let seed = std::env::var("NEURITE_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
                    | 1
            });
        eprintln!("crash test seed {seed} (NEURITE_CRASH_SEED replays it)");
        Rng(seed)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

pub(crate) fn kills() -> usize {
    std::env::var("NEURITE_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
}

/// Retries a request until the server answers with something other than a 5xx (it
/// may be down or starting); gives up after two minutes.
pub(crate) fn until_answered(
    c: &Client,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> crate::harness::Resp {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match c.try_json(method, path, body) {
            Ok(resp) if resp.status < 500 => return resp,
            Ok(resp) if Instant::now() > deadline => panic!("{method} {path}: {} {}", resp.status, resp.body),
            Err(e) if Instant::now() > deadline => panic!("{method} {path}: {e}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// What one member's client saw: message event ids per room, in arrival order.
pub(crate) type Seen = Arc<Mutex<BTreeMap<String, Vec<String>>>>;

/// A member's sync loop: incremental syncs from `token`, retrying with the same token
/// on any failure (as clients do), until `stop`. A gap (`limited`) is a failure: the
/// timeline limit is far above what arrives between two syncs.
pub(crate) fn sync_loop(
    c: Client,
    mut token: String,
    stop: Arc<AtomicBool>,
    seen: Seen,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let filter = enc(&json!({"room": {"timeline": {"limit": 1000}}}).to_string());
        while !stop.load(Ordering::SeqCst) {
            let path = format!(
                "/_matrix/client/v3/sync?timeout=500&filter={filter}&since={}",
                enc(&token)
            );
            let body = match c.try_json("GET", &path, None) {
                Ok(resp) if resp.status == 200 => resp.body,
                _ => {
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            };
            let mut arrived: Vec<(String, Vec<String>)> = Vec::new();
            if let Some(rooms) = body["rooms"]["join"].as_object() {
                for (room, r) in rooms {
                    // A gap (`limited`) is filled as clients fill it: `/messages`
                    // backwards from the timeline's `prev_batch` to the sync token.
                    let mut ids = match (
                        r["timeline"]["limited"].as_bool(),
                        r["timeline"]["prev_batch"].as_str(),
                    ) {
                        (Some(true), Some(prev)) => gap(&c, room, prev, &token),
                        _ => Vec::new(),
                    };
                    ids.extend(messages_of(&r["timeline"]["events"]));
                    arrived.push((room.clone(), ids));
                }
            }
            let mut seen = seen.lock().expect("seen");
            for (room, ids) in arrived {
                seen.entry(room).or_default().extend(ids);
            }
            token = body["next_batch"].as_str().expect("next_batch").to_owned();
        }
    })
}

fn messages_of(events: &Value) -> Vec<String> {
    events
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["event_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The messages between a sync token and a timeline's start, oldest first.
fn gap(c: &Client, room: &str, prev_batch: &str, since: &str) -> Vec<String> {
    let mut pages = Vec::new();
    let mut from = prev_batch.to_owned();
    loop {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100&from={}&to={}",
            enc(room),
            enc(&from),
            enc(since)
        );
        let page = until_answered(c, "GET", &path, None);
        assert_eq!(page.status, 200, "{}", page.body);
        let mut ids = messages_of(&page.body["chunk"]);
        ids.reverse();
        pages.push(ids);
        match page.body["end"].as_str() {
            Some(end) => from = end.to_owned(),
            None => break,
        }
    }
    pages.into_iter().rev().flatten().collect()
}

/// The room's messages in stream order, as `/messages` pages them forwards.
pub(crate) fn room_messages(c: &Client, room: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let q = match &from {
            Some(t) => format!("dir=f&limit=500&from={t}"),
            None => "dir=f&limit=500".to_owned(),
        };
        let page = until_answered(
            c,
            "GET",
            &format!("/_matrix/client/v3/rooms/{}/messages?{q}", enc(room)),
            None,
        );
        assert_eq!(page.status, 200, "{}", page.body);
        if page.body["chunk"].as_array().is_none_or(Vec::is_empty) {
            return out;
        }
        for e in page.body["chunk"].as_array().into_iter().flatten() {
            if e["type"] == "m.room.message" {
                out.push(e["event_id"].as_str().unwrap_or_default().to_owned());
            }
        }
        match page.body["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => return out,
        }
    }
}

#[test]
fn acknowledged_sends_reach_every_member_across_crashes() {
    let mut server = Server::start(Options::default());
    let mut rng = Rng::from_env();
    let root = server.client();
    let (alice, _) = root.register(&unique("cral"), "correct horse battery");
    let mut members = Vec::new();
    for name in ["crbo", "crca"] {
        members.push(root.register(&unique(name), "correct horse battery").0);
    }
    let rooms: Vec<String> = (0..2)
        .map(|_| create_room(&alice, json!({"preset": "public_chat"})))
        .collect();
    for m in &members {
        for room in &rooms {
            m.post(&format!("/_matrix/client/v3/join/{}", enc(room)), &json!({}))
                .expect(200);
        }
    }

    // The first member syncs all along; the second only after the last restart, from a
    // token taken before the load.
    let stop_sync = Arc::new(AtomicBool::new(false));
    let mut syncers = Vec::new();
    let mut seen_by = Vec::new();
    let mut tokens = Vec::new();
    for m in &members {
        let token = m.get("/_matrix/client/v3/sync?timeout=0").expect(200)["next_batch"]
            .as_str()
            .expect("next_batch")
            .to_owned();
        tokens.push(token);
        seen_by.push(Seen::default());
    }
    syncers.push(sync_loop(
        members[0].clone(),
        tokens[0].clone(),
        stop_sync.clone(),
        seen_by[0].clone(),
    ));

    // Eight senders, each retrying its transaction until acknowledged.
    let stop_send = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let senders: Vec<_> = (0..SENDERS)
        .map(|n| {
            let (alice, rooms, stop, acked) =
                (alice.clone(), rooms.clone(), stop_send.clone(), acked.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let room = &rooms[(n + i) % rooms.len()];
                    let path = format!(
                        "/_matrix/client/v3/rooms/{}/send/m.room.message/c{n}-{i}",
                        enc(room)
                    );
                    let body = json!({"msgtype": "m.text", "body": format!("{n}-{i}")});
                    let resp = until_answered(&alice, "PUT", &path, Some(&body));
                    assert_eq!(resp.status, 200, "{}", resp.body);
                    let id = resp.body["event_id"].as_str().expect("event_id").to_owned();
                    acked.lock().expect("acked").push((room.clone(), id));
                    i += 1;
                }
            })
        })
        .collect();

    let kills = kills();
    for _ in 0..kills {
        std::thread::sleep(Duration::from_millis(300 + rng.below(2500)));
        server.crash_and_restart();
    }
    std::thread::sleep(Duration::from_millis(500));
    stop_send.store(true, Ordering::SeqCst);
    for s in senders {
        s.join().expect("sender");
    }
    syncers.push(sync_loop(
        members[1].clone(),
        tokens[1].clone(),
        stop_sync.clone(),
        seen_by[1].clone(),
    ));
    let acked = acked.lock().expect("acked").clone();
    assert!(
        acked.len() >= SENDERS,
        "the load ran: {} acknowledged",
        acked.len()
    );

    // Every room's messages, in stream order: each acknowledged event exactly once.
    let mut order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for room in &rooms {
        let list = room_messages(&alice, room);
        let unique_ids: BTreeSet<&String> = list.iter().collect();
        assert_eq!(unique_ids.len(), list.len(), "a message stored twice in {room}");
        order.insert(room.clone(), list);
    }
    for (room, id) in &acked {
        assert!(
            order[room].contains(id),
            "acknowledged {id} missing from /messages of {room}"
        );
    }
    let acked_ids: BTreeSet<&String> = acked.iter().map(|(_, id)| id).collect();
    assert_eq!(
        acked_ids.len(),
        acked.len(),
        "a transaction acknowledged as two events"
    );

    // Every member's /sync converges to exactly the room's order.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let done = seen_by.iter().all(|seen| *seen.lock().expect("seen") == order);
        if done {
            break;
        }
        if Instant::now() > deadline {
            for (n, seen) in seen_by.iter().enumerate() {
                let seen = seen.lock().expect("seen");
                for (room, want) in &order {
                    let got = seen.get(room).cloned().unwrap_or_default();
                    let missing: Vec<&String> = want.iter().filter(|id| !got.contains(id)).collect();
                    eprintln!(
                        "member {n}, {room}: {} of {} seen, {} missing, in order: {}",
                        got.len(),
                        want.len(),
                        missing.len(),
                        &got == want
                    );
                }
            }
            panic!(
                "members' /sync did not converge after {kills} kills ({} acknowledged)",
                acked.len()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    stop_sync.store(true, Ordering::SeqCst);
    for s in syncers {
        s.join().expect("syncer");
    }
    eprintln!(
        "crash test: {kills} kills survived, {} acknowledged events checked in {} members' syncs",
        acked.len(),
        members.len()
    );
}

/// Kill point "after the 200, before any notes": eight sends are acknowledged and the
/// server is killed the moment the last answer arrives, before the room's direct
/// notifications or its outbox publication can run. A member who syncs only after
/// the restart (and after one more message) sees every acknowledged event once.
#[test]
fn sends_acknowledged_just_before_a_kill_reach_a_member() {
    let mut server = Server::start(Options::default());
    let root = server.client();
    let (alice, _) = root.register(&unique("kpal"), "correct horse battery");
    let (bob, _) = root.register(&unique("kpbo"), "correct horse battery");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), &json!({}))
        .expect(200);
    let token = bob.get("/_matrix/client/v3/sync?timeout=0").expect(200)["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let mut acked = Vec::new();
    for round in 0..kills() {
        let handles: Vec<_> = (0..SENDERS)
            .map(|n| {
                let (alice, room) = (alice.clone(), room.clone());
                std::thread::spawn(move || {
                    let path = format!(
                        "/_matrix/client/v3/rooms/{}/send/m.room.message/k{round}-{n}",
                        enc(&room)
                    );
                    let resp = alice.put(
                        &path,
                        &json!({"msgtype": "m.text", "body": format!("{round}-{n}")}),
                    );
                    assert_eq!(resp.status, 200, "{}", resp.body);
                    resp.body["event_id"].as_str().expect("event_id").to_owned()
                })
            })
            .collect();
        for h in handles {
            acked.push(h.join().expect("sender"));
        }
        server.crash_and_restart();
    }
    // Nothing else is written: the room's alarm, set before each 200, publishes what
    // the direct notes never delivered, and the member's /sync converges on its own.
    let seen: Seen = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let syncer = sync_loop(bob.clone(), token, stop.clone(), seen.clone());
    let converge = |order: &Vec<String>, what: &str| {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(60);
        while seen.lock().expect("seen").get(&room) != Some(order) {
            if Instant::now() > deadline {
                let got = seen.lock().expect("seen").get(&room).cloned().unwrap_or_default();
                panic!(
                    "{what}: bob saw {} of {} acknowledged events: {got:?}",
                    got.len(),
                    order.len()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        eprintln!("{what}: converged in {} ms", started.elapsed().as_millis());
    };
    let order = room_messages(&alice, &room);
    assert_eq!(
        order.len(),
        acked.len(),
        "/messages holds each acknowledged event once"
    );
    converge(&order, "without a later write");
    // And a later message arrives after them, once.
    let last = alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/after",
                enc(&room)
            ),
            &json!({"msgtype": "m.text", "body": "after"}),
        )
        .expect(200)["event_id"]
        .as_str()
        .expect("event_id")
        .to_owned();
    acked.push(last);
    let order = room_messages(&alice, &room);
    assert_eq!(order.len(), acked.len());
    converge(&order, "after a later write");
    stop.store(true, Ordering::SeqCst);
    syncer.join().expect("syncer");
}

/// Key claims, to-device messages and joins under kills: a one-time key is never handed
/// out twice, every acknowledged to-device message reaches its device exactly once,
/// and the joins acknowledged are the rooms `/joined_rooms` lists.
#[test]
fn claims_to_device_and_joins_survive_crashes() {
    let mut server = Server::start(Options::default());
    let root = server.client();
    let mut alice = crate::e2ee::Device::register_on(&root, "ckal");
    let otks = alice.upload(40, false);
    let carol = crate::e2ee::Device::register_on(&root, "ckca");
    let (dave, _) = root.register(&unique("ckda"), "correct horse battery");
    let rooms: Vec<String> = (0..12)
        .map(|_| create_room(&alice.client, json!({"preset": "public_chat"})))
        .collect();
    let carol_token = carol.client.get("/_matrix/client/v3/sync?timeout=0").expect(200)["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let stop = Arc::new(AtomicBool::new(false));

    // Claimers: each claim that answers 200 with a key took that key.
    let claimed: Arc<Mutex<Vec<String>>> = Arc::default();
    let claimers: Vec<_> = (0..3)
        .map(|n| {
            let claimed = claimed.clone();
            let (user, device) = (alice.user_id.clone(), alice.device_id.clone());
            // Registered before the kills begin (a registration cut by a kill is not
            // what this test checks).
            let (c, _) = root.register(&unique(&format!("ckcl{n}")), "correct horse battery");
            std::thread::spawn(move || loop {
                let body = json!({"one_time_keys": {user.clone(): {device.clone(): "signed_curve25519"}}});
                let resp = until_answered(&c, "POST", "/_matrix/client/v3/keys/claim", Some(&body));
                assert_eq!(resp.status, 200, "{}", resp.body);
                match resp.body["one_time_keys"][&user][&device].as_object() {
                    Some(keys) if !keys.is_empty() => {
                        claimed.lock().expect("claimed").extend(keys.keys().cloned());
                    }
                    _ => return,
                }
                std::thread::sleep(Duration::from_millis(50));
            })
        })
        .collect();

    // To-device messages to Carol's device, each retried under its transaction id.
    let sent: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sender = {
        let (c, sent, stop) = (alice.client.clone(), sent.clone(), stop.clone());
        let (user, device) = (carol.user_id.clone(), carol.device_id.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let body = json!({"messages": {user.clone(): {device.clone(): {"n": i}}}});
                let path = format!("/_matrix/client/v3/sendToDevice/m.test/ck{i}");
                let resp = until_answered(&c, "PUT", &path, Some(&body));
                assert_eq!(resp.status, 200, "{}", resp.body);
                sent.lock().expect("sent").push(i);
                i += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let received: Arc<Mutex<Vec<u64>>> = Arc::default();
    let receiver = {
        let (c, received, stop) = (carol.client.clone(), received.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut token = carol_token;
            let mut quiet_after_stop = 0;
            while quiet_after_stop < 3 {
                let path = format!("/_matrix/client/v3/sync?timeout=300&since={}", enc(&token));
                let body = match c.try_json("GET", &path, None) {
                    Ok(resp) if resp.status == 200 => resp.body,
                    _ => {
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                };
                let events = body["to_device"]["events"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if stop.load(Ordering::SeqCst) && events.is_empty() {
                    quiet_after_stop += 1;
                }
                let mut received = received.lock().expect("received");
                for e in events.iter().filter(|e| e["type"] == "m.test") {
                    received.push(e["content"]["n"].as_u64().expect("n"));
                }
                token = body["next_batch"].as_str().expect("next_batch").to_owned();
            }
        })
    };

    // Dave joins the rooms one by one.
    let joins = {
        let (dave, rooms) = (dave.clone(), rooms.clone());
        std::thread::spawn(move || {
            for room in &rooms {
                let resp = until_answered(
                    &dave,
                    "POST",
                    &format!("/_matrix/client/v3/join/{}", enc(room)),
                    Some(&json!({})),
                );
                assert_eq!(resp.status, 200, "{}", resp.body);
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };

    let mut rng = Rng::from_env();
    for _ in 0..kills() {
        std::thread::sleep(Duration::from_millis(300 + rng.below(1500)));
        server.crash_and_restart();
    }
    for c in claimers {
        c.join().expect("claimer");
    }
    joins.join().expect("joins");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    sender.join().expect("sender");
    receiver.join().expect("receiver");

    let claimed = claimed.lock().expect("claimed").clone();
    let distinct: BTreeSet<&String> = claimed.iter().collect();
    assert_eq!(
        distinct.len(),
        claimed.len(),
        "a one-time key was handed out twice: {claimed:?}"
    );
    assert!(
        claimed.iter().all(|k| otks.contains_key(k)),
        "a key that was never uploaded"
    );
    // A claim whose answer the kill cut off took its key too: at most all of them.
    assert!(claimed.len() <= otks.len());

    let sent = sent.lock().expect("sent").clone();
    let received = received.lock().expect("received").clone();
    let got: BTreeSet<u64> = received.iter().copied().collect();
    assert_eq!(got.len(), received.len(), "a to-device message arrived twice");
    for n in &sent {
        assert!(
            got.contains(n),
            "acknowledged to-device message {n} never arrived"
        );
    }

    let joined = until_answered(&dave, "GET", "/_matrix/client/v3/joined_rooms", None).body;
    let listed: BTreeSet<&str> = joined["joined_rooms"]
        .as_array()
        .expect("joined_rooms")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let want: BTreeSet<&str> = rooms.iter().map(String::as_str).collect();
    assert_eq!(listed, want, "/joined_rooms after the crashes");
    eprintln!(
        "crash test (keys, to-device, joins): {} kills, {} keys claimed once, {} more taken by claims whose answer a kill cut off, {} to-device messages once, {} joins",
        kills(),
        claimed.len(),
        otks.len() - claimed.len(),
        sent.len(),
        rooms.len()
    );
}

/// A forked history from another server, input through the admin input in batches of
/// 10 and cut by kills between batches and inside them (each batch is sent again until
/// it is answered, as a sending server retries a transaction): the room ends in the
/// same state as the same history input without a crash, and every event is in it once.
#[test]
fn input_of_received_events_survives_crashes() {
    use crate::room_input::Gen;
    use neurite::core::builder::NewEvent;

    let mut server = Server::start(Options::default());
    let (admin, _) = server.register_admin(&unique("ckadm"), "admin password");
    let history = |seed: u64| -> Gen {
        let (mut g, main) = Gen::new(seed);
        let (mut a, mut b) = (main.clone(), main);
        for i in 0..(8 * kills()).max(30) {
            g.add(
                &mut a,
                "alice",
                NewEvent::state("m.room.topic", "", json!({"topic": format!("a{i}")})),
            );
            g.add(
                &mut b,
                "bob",
                NewEvent::message(
                    "m.room.message",
                    json!({"msgtype": "m.text", "body": format!("b{i}")}),
                ),
            );
            if i % 10 == 9 {
                g.add(
                    &mut b,
                    "bob",
                    NewEvent::state("m.room.name", "", json!({"name": format!("n{i}")})),
                );
            }
        }
        g
    };
    let path = |g: &Gen| format!("/_neurite/admin/v1/rooms/{}/input", enc(g.room_id.as_str()));
    let input = |g: &Gen, pdus: &[neurite::core::pdu::Pdu]| {
        let body = json!({
            "pdus": pdus.iter().map(neurite::core::pdu::Pdu::to_federation_value).collect::<Vec<_>>(),
            "keys": g.keys(),
            "state": true,
        });
        let resp = until_answered(&admin, "POST", &path(g), Some(&body));
        assert_eq!(resp.status, 200, "{}", resp.body);
        resp.body
    };
    // By (type, state key): the content of the current state event.
    let contents = |g: &Gen, answer: &Value| -> BTreeMap<(String, String), Value> {
        let by_id: BTreeMap<String, Value> = g
            .log
            .iter()
            .map(|p| (p.event_id().to_string(), p.content()))
            .collect();
        let mut out = BTreeMap::new();
        for (t, keys) in answer["current_state"].as_object().into_iter().flatten() {
            for (k, id) in keys.as_object().into_iter().flatten() {
                let content = by_id
                    .get(id.as_str().unwrap_or_default())
                    .cloned()
                    .unwrap_or(Value::Null);
                out.insert((t.clone(), k.clone()), content);
            }
        }
        out
    };

    let reference = history(100);
    let mut last = Value::Null;
    for batch in reference.log.chunks(10) {
        last = input(&reference, batch);
    }
    let want = contents(&reference, &last);

    let crashed = Arc::new(history(200));
    let done = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (crashed, done, admin) = (crashed.clone(), done.clone(), admin.clone());
        std::thread::spawn(move || {
            for batch in crashed.log.chunks(10) {
                let body = json!({
                    "pdus": batch.iter().map(neurite::core::pdu::Pdu::to_federation_value).collect::<Vec<_>>(),
                    "keys": crashed.keys(),
                });
                let path = format!("/_neurite/admin/v1/rooms/{}/input", enc(crashed.room_id.as_str()));
                let resp = until_answered(&admin, "POST", &path, Some(&body));
                assert_eq!(resp.status, 200, "{}", resp.body);
                std::thread::sleep(Duration::from_millis(400));
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut rng = Rng::from_env();
    let mut kills_done = 0;
    while kills_done < kills() && !done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200 + rng.below(800)));
        server.crash_and_restart();
        kills_done += 1;
    }
    feeder.join().expect("feeder");
    // The whole history once more: nothing new, and the state of the uncrashed room.
    let again = input(&crashed, &crashed.log);
    let results = again["results"].as_array().expect("results");
    assert!(
        results
            .iter()
            .all(|r| r.get("error").is_none() && r.get("rejected").is_none()),
        "{again}"
    );
    assert_eq!(contents(&crashed, &again), want, "state after {kills_done} kills");
    assert_eq!(
        again["extremities"].as_array().map(Vec::len),
        last["extremities"].as_array().map(Vec::len)
    );
    // One stream position per event: nothing was input twice.
    assert_eq!(again["stream_pos"], last["stream_pos"], "{again}");
    eprintln!(
        "crash test (input): {kills_done} kills, {} events input in batches of 10, state as without a crash",
        crashed.log.len()
    );
}
