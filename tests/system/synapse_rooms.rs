//! Neurite and a real Synapse sharing rooms through harder times: Synapse stopped
//! while Neurite users talk, history only Synapse had, a ban and a power change sent
//! at once on the two servers, and a knock. Set up as in `synapse_interop`.

use serde_json::json;

use crate::harness::{enc, unique, Client, Options, Server};
use crate::synapse::Synapse;
use crate::synapse_interop::{bodies, eventually, synapse_install};

#[test]
fn messages_sent_while_synapse_is_down_arrive_once_it_is_back() {
    let mut synapse = Synapse::start_federating(synapse_install()).unwrap_or_else(|e| panic!("{e}"));
    let neurite = Server::start(Options {
        https: true,
        ..Options::default()
    });
    let (alice, _) = neurite
        .client()
        .register(&unique("alice"), "correct horse battery");
    let room = alice
        .post(
            "/_matrix/client/v3/createRoom",
            &json!({"preset": "public_chat", "name": "Outage"}),
        )
        .expect(200)["room_id"]
        .as_str()
        .expect("room_id")
        .to_owned();
    let synapse_client = Client {
        base: synapse.base_url(),
        token: None,
    };
    let (bob, bob_id) = synapse_client.register(&unique("bob"), "correct horse battery");
    bob.post(
        &format!(
            "/_matrix/client/v3/join/{}?server_name={}",
            enc(&room),
            enc(&neurite.server_name)
        ),
        &json!({}),
    )
    .expect(200);
    eventually("bob joined on Neurite", || {
        alice
            .get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)))
            .body["joined"]
            .get(&bob_id)
            .is_some()
    });
    synapse.stop();
    let away: Vec<String> = (1..=3).map(|i| format!("while you were away {i}")).collect();
    for body in &away {
        alice
            .put(
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
                    enc(&room),
                    unique("t")
                ),
                &json!({"msgtype": "m.text", "body": body}),
            )
            .expect(200);
    }
    // Long enough for the sender to fail and back off.
    std::thread::sleep(std::time::Duration::from_secs(8));
    synapse.restart().unwrap_or_else(|e| panic!("{e}"));
    // Synapse speaks first: Neurite's sender hears it is back.
    bob.put(
        &format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
            enc(&room),
            unique("t")
        ),
        &json!({"msgtype": "m.text", "body": "back again"}),
    )
    .expect(200);
    eventually("the messages sent meanwhile on Synapse", || {
        let seen = bodies(&bob, &room);
        away.iter().all(|b| seen.contains(b))
    });
    eventually("bob's message on Neurite", || {
        bodies(&alice, &room).iter().any(|b| b == "back again")
    });
}

#[test]
fn a_neurite_user_pages_back_into_history_only_synapse_had() {
    let synapse = Synapse::start_federating(synapse_install()).unwrap_or_else(|e| panic!("{e}"));
    let neurite = Server::start(Options {
        https: true,
        ..Options::default()
    });
    let synapse_client = Client {
        base: synapse.base_url(),
        token: None,
    };
    let (bob, _) = synapse_client.register(&unique("bob"), "correct horse battery");
    let room = bob
        .post(
            "/_matrix/client/v3/createRoom",
            &json!({"preset": "public_chat", "name": "Old times"}),
        )
        .expect(200)["room_id"]
        .as_str()
        .expect("room_id")
        .to_owned();
    let old: Vec<String> = (1..=30).map(|i| format!("old message {i}")).collect();
    for body in &old {
        bob.put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
                enc(&room),
                unique("t")
            ),
            &json!({"msgtype": "m.text", "body": body}),
        )
        .expect(200);
    }
    let (alice, _) = neurite
        .client()
        .register(&unique("alice"), "correct horse battery");
    alice
        .post(
            &format!(
                "/_matrix/client/v3/join/{}?server_name={}",
                enc(&room),
                enc(&synapse.server_name)
            ),
            &json!({}),
        )
        .expect(200);
    // Page back from now: the join, then what only Synapse had, in pages, down to the
    // room's creation.
    let mut seen: Vec<String> = Vec::new();
    let mut types: Vec<String> = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..20 {
        let path = match &from {
            Some(f) => format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=10&from={}",
                enc(&room),
                enc(f)
            ),
            None => format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=10", enc(&room)),
        };
        let page = alice.get(&path).expect(200);
        assert!(page.get("history_from").is_none(), "{page}");
        let chunk = page["chunk"].as_array().expect("chunk").clone();
        for e in &chunk {
            types.push(e["type"].as_str().unwrap_or_default().to_owned());
            if let Some(body) = e["content"]["body"].as_str() {
                seen.push(body.to_owned());
            }
        }
        match page["end"].as_str() {
            Some(end) if !chunk.is_empty() => from = Some(end.to_owned()),
            _ => break,
        }
    }
    let mut newest_first = old.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first, "every old message once, newest first");
    assert_eq!(
        types.last().map(String::as_str),
        Some("m.room.create"),
        "{types:?}"
    );
    // History is no news: a fresh sync's timeline ends with the join.
    let sync = alice.get("/_matrix/client/v3/sync?timeout=0").expect(200);
    let timeline = sync["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .expect("timeline")
        .clone();
    assert_eq!(
        timeline.last().map(|e| e["type"].clone()),
        Some(json!("m.room.member")),
        "{timeline:?}"
    );
}

/// The room's current state as `client` reads it: (type, state key) → event id.
fn state_ids(client: &Client, room: &str) -> std::collections::BTreeMap<(String, String), String> {
    let state = client.get(&format!("/_matrix/client/v3/rooms/{}/state", enc(room)));
    state
        .body
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                (
                    e["type"].as_str()?.to_owned(),
                    e["state_key"].as_str()?.to_owned(),
                ),
                e["event_id"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

#[test]
fn a_ban_here_and_a_power_change_there_at_once_resolve_alike_on_both() {
    let synapse = Synapse::start_federating(synapse_install()).unwrap_or_else(|e| panic!("{e}"));
    let neurite = Server::start(Options {
        https: true,
        ..Options::default()
    });
    let (alice, alice_id) = neurite
        .client()
        .register(&unique("alice"), "correct horse battery");
    let (carol, carol_id) = neurite
        .client()
        .register(&unique("carol"), "correct horse battery");
    let room = alice
        .post(
            "/_matrix/client/v3/createRoom",
            &json!({"preset": "public_chat", "room_version": "10"}),
        )
        .expect(200)["room_id"]
        .as_str()
        .expect("room_id")
        .to_owned();
    let synapse_client = Client {
        base: synapse.base_url(),
        token: None,
    };
    let (bob, bob_id) = synapse_client.register(&unique("bob"), "correct horse battery");
    bob.post(
        &format!(
            "/_matrix/client/v3/join/{}?server_name={}",
            enc(&room),
            enc(&neurite.server_name)
        ),
        &json!({}),
    )
    .expect(200);
    carol
        .post(
            &format!("/_matrix/client/v3/rooms/{}/join", enc(&room)),
            &json!({}),
        )
        .expect(200);
    // Bob becomes a moderator, as Synapse must see before he can act.
    let pl_path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.power_levels/",
        enc(&room)
    );
    let mut levels = alice.get(&pl_path).expect(200);
    levels["users"][&bob_id] = json!(50);
    alice.put(&pl_path, &levels).expect(200);
    eventually("bob a moderator and carol joined, on Synapse", || {
        let theirs = bob.get(&pl_path);
        let members = bob.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)));
        theirs.status == 200
            && theirs.body["users"][&bob_id] == 50
            && members.body["joined"].get(&carol_id).is_some()
    });

    // At once: bob bans carol on Synapse, alice raises carol on Neurite.
    let mut raised = levels.clone();
    raised["users"][&carol_id] = json!(50);
    let ban_path = format!("/_matrix/client/v3/rooms/{}/ban", enc(&room));
    let ban_body = json!({"user_id": carol_id, "reason": "at once"});
    let (ban, raise) = std::thread::scope(|s| {
        let ban = s.spawn(|| bob.post(&ban_path, &ban_body).status);
        let raise = s.spawn(|| alice.put(&pl_path, &raised).status);
        (ban.join().expect("ban"), raise.join().expect("raise"))
    });
    assert_eq!((ban, raise), (200, 200));
    // Both servers end with the same state.
    let mut last = (Default::default(), Default::default());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (ours, theirs) = (state_ids(&alice, &room), state_ids(&bob, &room));
        let carol_key = ("m.room.member".to_owned(), carol_id.clone());
        if !ours.is_empty() && ours == theirs && ours.contains_key(&carol_key) {
            break;
        }
        last = (ours, theirs);
        assert!(
            std::time::Instant::now() < deadline,
            "the states never agreed:\nNeurite {:?}\nSynapse {:?}",
            last.0,
            last.1
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let _ = (last, alice_id);
    // What the rules make of it: concurrent, alice's change (the higher-powered sender)
    // is applied first, after which carol is as powerful as bob and his ban no longer
    // passes; had the ban reached Neurite first, the change came after it and the ban
    // stands. Either way both servers say the same.
    let member = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
            enc(&room),
            enc(&carol_id)
        ))
        .expect(200);
    let levels = alice.get(&pl_path).expect(200);
    match member["membership"].as_str() {
        Some("join") => assert_eq!(levels["users"][&carol_id], 50, "{levels}"),
        Some("ban") => {}
        other => panic!("carol is {other:?}: {member}"),
    }
}

#[test]
fn a_neurite_user_knocks_on_a_synapse_room_and_is_let_in() {
    let synapse = Synapse::start_federating(synapse_install()).unwrap_or_else(|e| panic!("{e}"));
    let neurite = Server::start(Options {
        https: true,
        ..Options::default()
    });
    let synapse_client = Client {
        base: synapse.base_url(),
        token: None,
    };
    let (bob, _) = synapse_client.register(&unique("bob"), "correct horse battery");
    let room = bob
        .post(
            "/_matrix/client/v3/createRoom",
            &json!({
                "preset": "private_chat",
                "name": "Knock knock",
                "initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}],
            }),
        )
        .expect(200)["room_id"]
        .as_str()
        .expect("room_id")
        .to_owned();
    let (alice, alice_id) = neurite
        .client()
        .register(&unique("alice"), "correct horse battery");
    let knocked = alice.post(
        &format!(
            "/_matrix/client/v3/knock/{}?via={}",
            enc(&room),
            enc(&synapse.server_name)
        ),
        &json!({"reason": "let me in"}),
    );
    assert_eq!(knocked.status, 200, "{}", knocked.body);
    let sync = alice.get("/_matrix/client/v3/sync?timeout=0").expect(200);
    let shown = &sync["rooms"]["knock"][&room]["knock_state"]["events"];
    assert!(
        shown
            .as_array()
            .is_some_and(|events| events.iter().any(|e| e["content"]["name"] == "Knock knock")),
        "{sync}"
    );
    eventually("alice's knock on Synapse", || {
        let member = bob.get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
            enc(&room),
            enc(&alice_id)
        ));
        member.status == 200 && member.body["membership"] == "knock"
    });
    // Bob lets her in: an invite, which she accepts.
    bob.post(
        &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
        &json!({"user_id": alice_id}),
    )
    .expect(200);
    eventually("the invite in alice's sync", || {
        let sync = alice.get("/_matrix/client/v3/sync?timeout=0").expect(200);
        sync["rooms"]["invite"].get(&room).is_some()
    });
    let joined = alice.post(
        &format!("/_matrix/client/v3/rooms/{}/join", enc(&room)),
        &json!({}),
    );
    assert_eq!(joined.status, 200, "{}", joined.body);
    eventually("alice joined on Synapse", || {
        bob.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)))
            .body["joined"]
            .get(&alice_id)
            .is_some()
    });

    // Carol knocks, then thinks better of it: the leave goes to Synapse.
    let (carol, carol_id) = neurite
        .client()
        .register(&unique("carol"), "correct horse battery");
    let knocked = carol.post(
        &format!(
            "/_matrix/client/v3/knock/{}?via={}",
            enc(&room),
            enc(&synapse.server_name)
        ),
        &json!({}),
    );
    assert_eq!(knocked.status, 200, "{}", knocked.body);
    let membership_on_synapse = || {
        let member = bob.get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
            enc(&room),
            enc(&carol_id)
        ));
        member.body["membership"].as_str().map(str::to_owned)
    };
    eventually("carol's knock on Synapse", || {
        membership_on_synapse().as_deref() == Some("knock")
    });
    let left = carol.post(
        &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
        &json!({}),
    );
    assert_eq!(left.status, 200, "{}", left.body);
    eventually("carol's knock retracted on Synapse", || {
        membership_on_synapse().as_deref() == Some("leave")
    });
    let sync = carol.get("/_matrix/client/v3/sync?timeout=0").expect(200);
    assert!(sync["rooms"]["knock"].get(&room).is_none(), "{sync}");
}
