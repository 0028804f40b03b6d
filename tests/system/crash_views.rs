//! Crash safety of the views beside the timeline: account data, receipts, membership
//! projections, device-list observers and typing, under SIGKILLs of the whole server
//! (see `crash.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vodozemac::olm::Account;

use crate::crash::{kills, until_answered, Rng};
use crate::e2ee::Device;
use crate::harness::{create_room, enc, unique, Client, Options, Server};

/// Account data and read receipts under kills: after the last restart, the user's
/// syncs (incremental from before the load, and initial) show the last acknowledged
/// account data, and a room mate's sync shows the last acknowledged receipt.
#[test]
fn account_data_and_receipts_converge_after_crashes() {
    let mut server = Server::start(Options::default());
    let root = server.client();
    let (alice, alice_id) = root.register(&unique("cdal"), "correct horse battery");
    let (bob, _) = root.register(&unique("cdbo"), "correct horse battery");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), &json!({}))
        .expect(200);
    let messages: Vec<String> = (0..40)
        .map(|i| {
            bob.put(
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.message/cd{i}",
                    enc(&room)
                ),
                &json!({"msgtype": "m.text", "body": format!("{i}")}),
            )
            .expect(200)["event_id"]
                .as_str()
                .expect("event_id")
                .to_owned()
        })
        .collect();
    let since = alice.get("/_matrix/client/v3/sync?timeout=0").expect(200)["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let last: Arc<Mutex<Option<usize>>> = Arc::default();
    let writer = {
        let (alice, room, messages, last) = (alice.clone(), room.clone(), messages.clone(), last.clone());
        let user = alice_id.clone();
        std::thread::spawn(move || {
            for (i, event) in messages.iter().enumerate() {
                let path = format!("/_matrix/client/v3/user/{}/account_data/m.test", enc(&user));
                let resp = until_answered(&alice, "PUT", &path, Some(&json!({"n": i})));
                assert_eq!(resp.status, 200, "{}", resp.body);
                let path = format!(
                    "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
                    enc(&room),
                    enc(event)
                );
                let resp = until_answered(&alice, "POST", &path, Some(&json!({})));
                assert_eq!(resp.status, 200, "{}", resp.body);
                *last.lock().expect("last") = Some(i);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let mut rng = Rng::from_env();
    for _ in 0..kills() {
        std::thread::sleep(Duration::from_millis(300 + rng.below(1500)));
        server.crash_and_restart();
    }
    writer.join().expect("writer");
    let n = last.lock().expect("last").expect("something acknowledged");
    let want_event = &messages[n];

    let account_value = |body: &Value| {
        body["account_data"]["events"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["type"] == "m.test")
            .map(|e| e["content"]["n"].clone())
    };
    let receipt_of = |body: &Value| {
        body["rooms"]["join"][&room]["ephemeral"]["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["type"] == "m.receipt")
            .filter_map(|e| e["content"].as_object())
            .flat_map(|c| c.iter())
            .filter(|(_, r)| r["m.read"][&alice_id].is_object())
            .map(|(event, _)| event.clone())
            .next_back()
    };
    // The incremental sync from before the load: the latest value (the gap's changes
    // come as the current content).
    let incremental = until_answered(
        &alice,
        "GET",
        &format!("/_matrix/client/v3/sync?timeout=0&since={}", enc(&since)),
        None,
    );
    assert_eq!(
        account_value(&incremental.body),
        Some(json!(n)),
        "{}",
        incremental.body
    );
    let initial = until_answered(&alice, "GET", "/_matrix/client/v3/sync?timeout=0", None);
    assert_eq!(account_value(&initial.body), Some(json!(n)));
    let bob_view = until_answered(&bob, "GET", "/_matrix/client/v3/sync?timeout=0", None);
    assert_eq!(
        receipt_of(&bob_view.body).as_ref(),
        Some(want_event),
        "{}",
        bob_view.body
    );
    eprintln!(
        "crash test (account data, receipts): {} kills, {} acknowledged updates of each, both converged",
        kills(),
        n + 1
    );
}

const PASSWORD: &str = "correct horse battery";

/// A new device of `user` by password login on the server `root` talks to, retried
/// across restarts; a login whose answer a kill cut off leaves a device nobody uses.
fn new_device(root: &Client, user: &str) -> Device {
    let body = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": PASSWORD});
    let resp = until_answered(root, "POST", "/_matrix/client/v3/login", Some(&body));
    assert_eq!(resp.status, 200, "{}", resp.body);
    Device {
        client: root.with_token(resp.body["access_token"].as_str().expect("token")),
        user_id: user.to_owned(),
        device_id: resp.body["device_id"].as_str().expect("device_id").to_owned(),
        account: Account::new(),
    }
}

/// What the observer's syncs said about each user's device list, in order
/// (`true`: changed, `false`: left), and the last typing list of the room.
#[derive(Default)]
struct Observed {
    device_lists: BTreeMap<String, Vec<bool>>,
    typing: Option<Vec<String>>,
}

/// Users join and leave a room again and again, each time with a new device whose keys
/// they upload and a typing notification, while the whole server is killed: afterwards
/// the D1 membership projections (`/joined_rooms`, `/joined_members`), the device-list
/// observer (`/keys/changes` and what its syncs said last about each user) and typing
/// (expired, then live again) agree with the last acknowledged action of each user.
#[test]
fn memberships_device_lists_and_typing_converge_after_crashes() {
    const MOVERS: usize = 4;
    const CYCLES: usize = 5;
    let mut server = Server::start(Options::default());
    let root = server.client();
    let (alice, alice_id) = root.register(&unique("cmal"), PASSWORD);
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    let since = alice.get("/_matrix/client/v3/sync?timeout=0").expect(200)["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let observed: Arc<Mutex<Observed>> = Arc::default();
    let observer = {
        let (alice, room, stop, observed) = (alice.clone(), room.clone(), stop.clone(), observed.clone());
        let mut token = since.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let path = format!(
                    "/_matrix/client/v3/sync?timeout=500&set_presence=offline&since={}",
                    enc(&token)
                );
                let body = match alice.try_json("GET", &path, None) {
                    Ok(resp) if resp.status == 200 => resp.body,
                    _ => {
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                };
                let mut seen = observed.lock().expect("observed");
                for (field, changed) in [("changed", true), ("left", false)] {
                    for user in body["device_lists"][field].as_array().into_iter().flatten() {
                        let user = user.as_str().expect("user id").to_owned();
                        seen.device_lists.entry(user).or_default().push(changed);
                    }
                }
                for e in body["rooms"]["join"][&room]["ephemeral"]["events"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if e["type"] == "m.typing" {
                        seen.typing = serde_json::from_value(e["content"]["user_ids"].clone()).ok();
                    }
                }
                token = body["next_batch"].as_str().expect("next_batch").to_owned();
            }
        })
    };

    // Each mover: join, a new device with keys, typing, and (except at the very end
    // for some) leave.
    let movers: Vec<_> = (0..MOVERS)
        .map(|n| {
            let (root, room) = (root.clone(), room.clone());
            let (first, user) = root.register(&unique(&format!("cmmv{n}")), PASSWORD);
            let ends_joined = n % 2 == 0;
            std::thread::spawn(move || {
                let room_path = |what: &str| format!("/_matrix/client/v3/rooms/{}/{what}", enc(&room));
                for cycle in 0..CYCLES {
                    let resp = until_answered(
                        &first,
                        "POST",
                        &format!("/_matrix/client/v3/join/{}", enc(&room)),
                        Some(&json!({})),
                    );
                    assert_eq!(resp.status, 200, "{}", resp.body);
                    let device = new_device(&root, &user);
                    let body = json!({"device_keys": device.device_keys()});
                    let resp = until_answered(
                        &device.client,
                        "POST",
                        "/_matrix/client/v3/keys/upload",
                        Some(&body),
                    );
                    assert_eq!(resp.status, 200, "{}", resp.body);
                    let typing = format!("typing/{}", enc(&user));
                    let resp = until_answered(
                        &first,
                        "PUT",
                        &room_path(&typing),
                        Some(&json!({"typing": true, "timeout": 3000})),
                    );
                    assert_eq!(resp.status, 200, "{}", resp.body);
                    if cycle + 1 < CYCLES || !ends_joined {
                        let resp = until_answered(&first, "POST", &room_path("leave"), Some(&json!({})));
                        assert_eq!(resp.status, 200, "{}", resp.body);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                (first, user, ends_joined)
            })
        })
        .collect();

    let mut rng = Rng::from_env();
    for _ in 0..kills() {
        std::thread::sleep(Duration::from_millis(300 + rng.below(1500)));
        server.crash_and_restart();
    }
    let movers: Vec<(Client, String, bool)> = movers.into_iter().map(|m| m.join().expect("mover")).collect();

    // Membership projections.
    let mut want_members: BTreeSet<String> = [alice_id.clone()].into();
    for (c, user, ends_joined) in &movers {
        let joined = until_answered(c, "GET", "/_matrix/client/v3/joined_rooms", None).body;
        let listed = joined["joined_rooms"]
            .as_array()
            .expect("joined_rooms")
            .iter()
            .any(|r| r == &json!(room));
        assert_eq!(
            listed, *ends_joined,
            "{user}'s /joined_rooms after the crashes: {joined}"
        );
        if *ends_joined {
            want_members.insert(user.clone());
        }
    }
    let members = until_answered(
        &alice,
        "GET",
        &format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)),
        None,
    )
    .body;
    let members: BTreeSet<String> = members["joined"]
        .as_object()
        .expect("joined")
        .keys()
        .cloned()
        .collect();
    assert_eq!(members, want_members);

    // Device lists: /keys/changes over the whole run, and the observer's last word.
    let now = until_answered(
        &alice,
        "GET",
        "/_matrix/client/v3/sync?timeout=0&set_presence=offline",
        None,
    )
    .body["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let changes = until_answered(
        &alice,
        "GET",
        &format!(
            "/_matrix/client/v3/keys/changes?from={}&to={}",
            enc(&since),
            enc(&now)
        ),
        None,
    )
    .body;
    let list = |field: &str| -> BTreeSet<String> {
        serde_json::from_value(changes[field].clone()).unwrap_or_default()
    };
    let (changed, left) = (list("changed"), list("left"));
    // Typing: everyone's notification expires; a new one reaches the observer.
    let deadline = Instant::now() + Duration::from_secs(60);
    while observed.lock().expect("observed").typing != Some(Vec::new()) {
        assert!(
            Instant::now() < deadline,
            "typing never cleared: {:?}",
            observed.lock().expect("observed").typing
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (typist, typist_id, _) = movers
        .iter()
        .find(|(_, _, joined)| *joined)
        .expect("a mover ends joined");
    let resp = until_answered(
        typist,
        "PUT",
        &format!(
            "/_matrix/client/v3/rooms/{}/typing/{}",
            enc(&room),
            enc(typist_id)
        ),
        Some(&json!({"typing": true, "timeout": 20000})),
    );
    assert_eq!(resp.status, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while observed.lock().expect("observed").typing != Some(vec![typist_id.clone()]) {
        assert!(
            Instant::now() < deadline,
            "a new typing notification never arrived"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    observer.join().expect("observer");
    let observed = observed.lock().expect("observed");
    for (_, user, ends_joined) in &movers {
        assert_eq!(
            changed.contains(user),
            *ends_joined,
            "{user} in /keys/changes changed: {changes}"
        );
        assert_eq!(
            left.contains(user),
            !*ends_joined,
            "{user} in /keys/changes left: {changes}"
        );
        let last = observed
            .device_lists
            .get(user)
            .and_then(|said| said.last().copied());
        assert_eq!(
            last,
            Some(*ends_joined),
            "the observer's syncs about {user}: {:?}",
            observed.device_lists.get(user)
        );
    }
    eprintln!(
        "crash test (memberships, device lists, typing): {} kills, {} users x {CYCLES} join/keys/typing/leave cycles, every view converged",
        kills(),
        MOVERS
    );
}
