//! Soak: a mixed load (sends in several rooms with members syncing, joins of new users,
//! one-time key claims) for `NEURITE_SOAK_SECS` seconds (20 in the test command; the
//! README's soak command runs 600) with the whole server killed with SIGKILL every so
//! often, ending with a consistency check of every view: each room's `/messages`, each
//! member's `/sync`, `/joined_rooms` and `/joined_members`, the claimed keys.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::crash::{room_messages, sync_loop, until_answered, Rng, Seen};
use crate::harness::{create_room, enc, unique, Options, Server};

const PASSWORD: &str = "correct horse battery";

fn soak_secs() -> u64 {
    std::env::var("NEURITE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

#[test]
fn soak_mixed_load_with_periodic_kills() {
    let secs = soak_secs();
    let mut server = Server::start(Options::default());
    let mut rng = Rng::from_env();
    let root = server.client();
    let mut alice = crate::e2ee::Device::register_on(&root, "skal");
    let otks = alice.upload(100, false);
    let rooms: Vec<String> = (0..3)
        .map(|_| create_room(&alice.client, json!({"preset": "public_chat"})))
        .collect();
    let members: Vec<_> = ["skbo", "skca"]
        .iter()
        .map(|name| root.register(&unique(name), PASSWORD).0)
        .collect();
    for m in &members {
        for room in &rooms {
            m.post(&format!("/_matrix/client/v3/join/{}", enc(room)), &json!({}))
                .expect(200);
        }
    }
    let stop_sync = Arc::new(AtomicBool::new(false));
    let seen_by: Vec<Seen> = members.iter().map(|_| Seen::default()).collect();
    let syncers: Vec<_> = members
        .iter()
        .zip(&seen_by)
        .map(|(m, seen)| {
            let token = m.get("/_matrix/client/v3/sync?timeout=0").expect(200)["next_batch"]
                .as_str()
                .expect("next_batch")
                .to_owned();
            sync_loop(m.clone(), token, stop_sync.clone(), seen.clone())
        })
        .collect();

    let deadline = Instant::now() + Duration::from_secs(secs);
    let running = move || Instant::now() < deadline;
    // Senders: every member and alice, each retrying its transaction until answered.
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let senders: Vec<_> = std::iter::once(alice.client.clone())
        .chain(members.iter().cloned())
        .enumerate()
        .map(|(n, c)| {
            let (rooms, acked) = (rooms.clone(), acked.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while running() {
                    let room = &rooms[(n + i) % rooms.len()];
                    let path = format!(
                        "/_matrix/client/v3/rooms/{}/send/m.room.message/sk{n}-{i}",
                        enc(room)
                    );
                    let resp =
                        until_answered(&c, "PUT", &path, Some(&json!({"msgtype": "m.text", "body": i})));
                    assert_eq!(resp.status, 200, "{}", resp.body);
                    let id = resp.body["event_id"].as_str().expect("event_id").to_owned();
                    acked.lock().expect("acked").push((room.clone(), id));
                    i += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();
    // Joiners: new users, each joining one room.
    let joined: Arc<Mutex<Vec<(crate::harness::Client, String, String)>>> = Arc::default();
    let joiner = {
        let (root, rooms, joined) = (root.clone(), rooms.clone(), joined.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while running() {
                let name = unique(&format!("skj{i}"));
                let body = json!({"username": name, "password": PASSWORD, "auth": {"type": "m.login.dummy"}});
                let resp = until_answered(&root, "POST", "/_matrix/client/v3/register", Some(&body));
                let c = match resp.status {
                    200 => root.with_token(resp.body["access_token"].as_str().expect("token")),
                    // Registered before a kill cut the answer off: log in instead.
                    400 => {
                        let login = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": name}, "password": PASSWORD});
                        let resp = until_answered(&root, "POST", "/_matrix/client/v3/login", Some(&login));
                        assert_eq!(resp.status, 200, "{}", resp.body);
                        root.with_token(resp.body["access_token"].as_str().expect("token"))
                    }
                    _ => panic!("register: {} {}", resp.status, resp.body),
                };
                let room = rooms[i % rooms.len()].clone();
                let resp = until_answered(
                    &c,
                    "POST",
                    &format!("/_matrix/client/v3/join/{}", enc(&room)),
                    Some(&json!({})),
                );
                assert_eq!(resp.status, 200, "{}", resp.body);
                let user = until_answered(&c, "GET", "/_matrix/client/v3/account/whoami", None).body
                    ["user_id"]
                    .as_str()
                    .expect("user_id")
                    .to_owned();
                joined.lock().expect("joined").push((c, user, room));
                i += 1;
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    // A claimer of alice's one-time keys.
    let claimed: Arc<Mutex<Vec<String>>> = Arc::default();
    let claimer = {
        let claimed = claimed.clone();
        let (user, device) = (alice.user_id.clone(), alice.device_id.clone());
        // Registered before the kills begin.
        let (c, _) = root.register(&unique("skcl"), PASSWORD);
        std::thread::spawn(move || {
            while running() {
                let body = json!({"one_time_keys": {user.clone(): {device.clone(): "signed_curve25519"}}});
                let resp = until_answered(&c, "POST", "/_matrix/client/v3/keys/claim", Some(&body));
                assert_eq!(resp.status, 200, "{}", resp.body);
                match resp.body["one_time_keys"][&user][&device].as_object() {
                    Some(keys) if !keys.is_empty() => {
                        claimed.lock().expect("claimed").extend(keys.keys().cloned())
                    }
                    _ => return,
                }
                std::thread::sleep(Duration::from_millis((secs * 1000 / 120).max(50)));
            }
        })
    };

    // Kills at random moments, on average every tenth of the run (at least 5 s apart).
    let interval = (secs * 1000 / 10).max(5000);
    let mut kills = 0;
    while running() {
        std::thread::sleep(Duration::from_millis(interval / 2 + rng.below(interval)));
        if running() {
            server.crash_and_restart();
            kills += 1;
        }
    }
    for s in senders {
        s.join().expect("sender");
    }
    joiner.join().expect("joiner");
    claimer.join().expect("claimer");

    // The consistency check: count every divergence, then fail if there is any.
    let mut divergences = Vec::new();
    let acked = acked.lock().expect("acked").clone();
    let mut order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for room in &rooms {
        let list = room_messages(&alice.client, room);
        if list.iter().collect::<BTreeSet<_>>().len() != list.len() {
            divergences.push(format!("a message stored twice in {room}"));
        }
        order.insert(room.clone(), list);
    }
    for (room, id) in &acked {
        if !order[room].contains(id) {
            divergences.push(format!("acknowledged {id} missing from /messages of {room}"));
        }
    }
    let converge_by = Instant::now() + Duration::from_secs(90);
    while !seen_by.iter().all(|seen| *seen.lock().expect("seen") == order) && Instant::now() < converge_by {
        std::thread::sleep(Duration::from_millis(250));
    }
    for (n, seen) in seen_by.iter().enumerate() {
        let seen = seen.lock().expect("seen");
        for (room, want) in &order {
            if seen.get(room) != Some(want) {
                divergences.push(format!("member {n}'s /sync of {room} differs from /messages"));
            }
        }
    }
    stop_sync.store(true, Ordering::SeqCst);
    for s in syncers {
        s.join().expect("syncer");
    }
    let joined = joined.lock().expect("joined").clone();
    let mut by_room: BTreeMap<&str, Value> = BTreeMap::new();
    for (c, user, room) in &joined {
        let list = until_answered(c, "GET", "/_matrix/client/v3/joined_rooms", None).body;
        if !list["joined_rooms"]
            .as_array()
            .is_some_and(|r| r.contains(&json!(room)))
        {
            divergences.push(format!("{user}'s /joined_rooms lacks {room}"));
        }
        let members = by_room.entry(room).or_insert_with(|| {
            until_answered(
                &alice.client,
                "GET",
                &format!("/_matrix/client/v3/rooms/{}/joined_members", enc(room)),
                None,
            )
            .body
        });
        if members["joined"].get(user).is_none() {
            divergences.push(format!("{user} missing from /joined_members of {room}"));
        }
    }
    let claimed = claimed.lock().expect("claimed").clone();
    if claimed.iter().collect::<BTreeSet<_>>().len() != claimed.len() {
        divergences.push("a one-time key was handed out twice".to_owned());
    }
    if !claimed.iter().all(|k| otks.contains_key(k)) {
        divergences.push("a claimed key that was never uploaded".to_owned());
    }
    eprintln!(
        "soak: {secs} s, {kills} kills, {} acknowledged events checked in {} members' syncs, {} joins, {} keys claimed; {} divergences",
        acked.len(),
        members.len(),
        joined.len(),
        claimed.len(),
        divergences.len()
    );
    assert!(kills >= 1 && !acked.is_empty(), "the soak ran");
    assert!(divergences.is_empty(), "divergences: {divergences:#?}");
}
