//! Other servers that misbehave while a local user joins their room: a `send_join`
//! answer whose state or auth chain is forged or incomplete is refused with a Matrix
//! error (no 5xx), nothing of it is kept, and the same join goes through once the
//! server answers properly.

use neurite::core::builder::NewEvent;
use neurite::core::keys::SigningKey;
use neurite::core::pdu::Pdu;
use serde_json::{json, Value};

use crate::harness::{enc, new_user, Client};
use crate::remote::Remote;
use crate::room_input::Gen;
use crate::room_input_dag::auth_chain;

fn values(pdus: &[Pdu]) -> Vec<Value> {
    pdus.iter().map(Pdu::to_federation_value).collect()
}

fn joined_rooms(client: &Client) -> Vec<String> {
    client.get("/_matrix/client/v3/joined_rooms").expect(200)["joined_rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect()
}

/// `pdu` with its signature replaced by someone else's signature of other bytes.
fn forged(pdu: &Pdu, server: &str) -> Value {
    let mut value = pdu.to_federation_value();
    let other = SigningKey::from_seed([99; 32], "x").expect("key");
    let signature = other.sign_bytes(b"something else");
    for (_, sig) in value["signatures"][server]
        .as_object_mut()
        .expect("signatures")
        .iter_mut()
    {
        *sig = json!(signature);
    }
    value
}

#[test]
fn a_forged_or_incomplete_send_join_answer_is_refused_and_nothing_kept() {
    let remote = Remote::start(85);
    let key = SigningKey::from_seed([85; 32], "r85").expect("key");
    let (mut g, mut main) = Gen::on(
        &remote.name,
        SigningKey::from_seed([85; 32], "r85").expect("key"),
        1_700_000_000_000,
    );
    g.add(
        &mut main,
        "bob",
        NewEvent::message("m.room.message", json!({"body": "hello"})),
    );
    let room = g.room_id.to_string();
    let (carol, carol_id) = new_user("badpeer");
    let carol_user = ruma::OwnedUserId::try_from(carol_id.as_str()).expect("user");

    // The template: the join as the remote would make it, without hashes or signatures.
    let mut scratch = main.clone();
    let join = g.add_as(
        &mut scratch,
        &carol_user,
        NewEvent::state("m.room.member", &carol_id, json!({"membership": "join"})),
        &remote.name,
        &key,
    );
    let mut template = join.to_federation_value();
    for field in ["hashes", "signatures", "unsigned", "event_id"] {
        template.as_object_mut().expect("object").remove(field);
    }
    remote.answer(
        "GET",
        "/_matrix/federation/v1/make_join/",
        200,
        json!({"room_version": "12", "event": template}),
    );
    let state: Vec<Pdu> = main.state.values().cloned().collect();
    let mut of = state.clone();
    of.push(join.clone());
    let chain = auth_chain(&g, &of);
    let power = main
        .state
        .values()
        .find(|p| p.kind() == "m.room.power_levels")
        .expect("power levels")
        .clone();
    let attempt = |answer: Value| {
        remote.answer("PUT", "/_matrix/federation/v2/send_join/", 200, answer);
        carol.post(
            &format!(
                "/_matrix/client/v3/join/{}?server_name={}",
                enc(&room),
                enc(&remote.name)
            ),
            &json!({}),
        )
    };

    // The power levels forged, in the state and in the auth chain.
    let swap = |pdus: &[Pdu]| -> Vec<Value> {
        pdus.iter()
            .map(|p| {
                if p.event_id() == power.event_id() {
                    forged(p, &remote.name)
                } else {
                    p.to_federation_value()
                }
            })
            .collect()
    };
    let r = attempt(json!({"state": swap(&state), "auth_chain": swap(&chain)}));
    assert!(
        (400..500).contains(&r.status) || r.status == 502,
        "{} {}",
        r.status,
        r.body
    );
    assert!(r.errcode().is_some(), "{}", r.body);
    assert!(!joined_rooms(&carol).contains(&room));

    // The power levels missing everywhere: the members' auth events are nowhere.
    let without = |pdus: &[Pdu]| -> Vec<Value> {
        values(
            &pdus
                .iter()
                .filter(|p| p.event_id() != power.event_id())
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    let r = attempt(json!({"state": without(&state), "auth_chain": without(&chain)}));
    assert!(
        (400..500).contains(&r.status) || r.status == 502,
        "{} {}",
        r.status,
        r.body
    );
    assert!(!joined_rooms(&carol).contains(&room));
    // Nothing of the room was kept: it is unknown here.
    carol
        .get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b", enc(&room)))
        .expect_err(404, "M_NOT_FOUND");

    // An answer with no state at all.
    let r = attempt(json!({"state": "nope", "auth_chain": 7}));
    assert!(
        (400..500).contains(&r.status) || r.status == 502,
        "{} {}",
        r.status,
        r.body
    );
    assert!(!joined_rooms(&carol).contains(&room));

    // The whole, honest answer: the join goes through and the room reads as it is.
    let r = attempt(json!({"state": values(&state), "auth_chain": values(&chain)}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(joined_rooms(&carol).contains(&room));
    let page = carol
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=5",
            enc(&room)
        ))
        .expect(200);
    let types: Vec<&str> = page["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(types.first(), Some(&"m.room.member"), "{page}");
}

fn wait_for(what: &str, seconds: u64, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// The message bodies in the transactions among `seen`.
fn delivered(seen: &[crate::remote::Seen]) -> Vec<String> {
    seen.iter()
        .filter(|s| s.method == "PUT" && s.target.starts_with("/_matrix/federation/v1/send/"))
        .flat_map(|s| s.body.as_ref().map(|b| b["pdus"].clone()))
        .flat_map(|pdus| pdus.as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_destination_that_never_answers_is_retried_and_gets_everything() {
    let (alice, _) = new_user("silent");
    let room = crate::harness::create_room(&alice, json!({"preset": "public_chat"}));
    let remote = Remote::start(86);
    let visitor = remote.user("sleeper");
    crate::federation_joins::remote_joins(&remote, &room, &visitor);
    remote.hang("PUT", "/_matrix/federation/v1/send/");
    let bodies: Vec<String> = (1..=3).map(|i| format!("into the void {i}")).collect();
    for body in &bodies {
        // The sender's trouble is not the client's: each send is answered.
        crate::harness::send_text(&alice, &room, &crate::harness::unique("t"), body);
    }
    wait_for("a transaction to the silent server", 60, || {
        !delivered(&remote.seen()).is_empty()
    });
    // It wakes up: the transaction that met silence is sent again, with the rest.
    remote.answer("PUT", "/_matrix/federation/v1/send/", 200, json!({"pdus": {}}));
    let hung = remote.seen().len();
    wait_for("every message at the server once it answers", 120, || {
        let after = delivered(&remote.seen()[hung..]);
        bodies.iter().all(|b| after.contains(b))
    });
}
