//! Transactions from another server (`/send`) and its questions about a shared room,
//! against the real worker: a scripted remote server whose users alice and bob share a
//! room with a local user, carol.

use neurite::core::builder::NewEvent;
use neurite::core::keys::SigningKey;
use neurite::core::pdu::Pdu;
use serde_json::{json, Value};

use crate::harness::{enc, new_user, shared, unique, Client};
use crate::remote::Remote;
use crate::room_input::{admin, Branch, Gen};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

pub(crate) fn server_key() -> SigningKey {
    let text = std::fs::read_to_string(shared().state_dir.join("signing.key")).expect("signing.key");
    SigningKey::parse(text.trim()).expect("key")
}

pub(crate) fn message(body: &str) -> NewEvent {
    NewEvent::message("m.room.message", json!({"msgtype": "m.text", "body": body}))
}

/// A room of the remote's users with carol (local) joined, known to Neurite.
pub struct Shared {
    pub remote: Remote,
    pub gen: Gen,
    pub main: Branch,
    pub carol: Client,
    pub carol_id: String,
    pub room: String,
}

pub fn shared_room(seed: u8) -> Shared {
    let server = shared();
    let remote = Remote::start(seed);
    let key = SigningKey::parse(&remote.key.to_text()).expect("key");
    let (mut gen, mut main) = Gen::on(&remote.name, key, now_ms() - 60_000);
    let (carol, carol_id) = new_user("fedcarol");
    let carol_user = ruma::OwnedUserId::try_from(carol_id.as_str()).expect("user id");
    let local_key = server_key();
    gen.add_as(
        &mut main,
        &carol_user,
        NewEvent::state("m.room.member", &carol_id, json!({"membership": "join"})),
        &server.server_name,
        &local_key,
    );
    let mut keys = gen.keys();
    keys[&server.server_name] = json!({ local_key.key_id(): local_key.public_key_base64() });
    let room = gen.room_id.to_string();
    let body = json!({
        "pdus": gen.log.iter().map(Pdu::to_federation_value).collect::<Vec<_>>(),
        "keys": keys,
    });
    let answer = admin()
        .post(&format!("/_neurite/admin/v1/rooms/{}/input", enc(&room)), &body)
        .expect(200);
    assert!(
        answer["results"]
            .as_array()
            .expect("results")
            .iter()
            .all(|r| r.get("accepted").is_some()),
        "{answer}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !carol.get("/_matrix/client/v3/joined_rooms").expect(200)["joined_rooms"]
        .as_array()
        .expect("rooms")
        .contains(&json!(room))
    {
        assert!(std::time::Instant::now() < deadline, "carol never joined");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Shared {
        remote,
        gen,
        main,
        carol,
        carol_id,
        room,
    }
}

impl Shared {
    pub(crate) fn send(&self, txn_id: &str, pdus: &[Pdu], edus: Value) -> crate::harness::Resp {
        let body = json!({
            "origin": self.remote.name,
            "origin_server_ts": now_ms(),
            "pdus": pdus.iter().map(Pdu::to_federation_value).collect::<Vec<_>>(),
            "edus": edus,
        });
        self.remote.request(
            shared(),
            "PUT",
            &format!("/_matrix/federation/v1/send/{}", enc(txn_id)),
            Some(&body),
        )
    }

    /// Event ids of carol's room timeline, oldest first (the newest 100).
    pub(crate) fn timeline(&self) -> Vec<String> {
        let page = self
            .carol
            .get(&format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100",
                enc(&self.room)
            ))
            .expect(200);
        let mut ids: Vec<String> = page["chunk"]
            .as_array()
            .expect("chunk")
            .iter()
            .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
            .collect();
        ids.reverse();
        ids
    }

    /// Polls carol's /sync until `found` says yes about it.
    fn sync_until(&self, what: &str, found: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut since: Option<String> = None;
        loop {
            let path = match &since {
                Some(s) => format!(
                    "/_matrix/client/v3/sync?timeout=1000&set_presence=offline&since={}",
                    enc(s)
                ),
                None => "/_matrix/client/v3/sync?timeout=0&set_presence=offline".to_owned(),
            };
            let body = self.carol.get(&path).expect(200);
            if found(&body) {
                return body;
            }
            since = body["next_batch"].as_str().map(str::to_owned);
            assert!(
                std::time::Instant::now() < deadline,
                "never saw {what} in carol's sync"
            );
        }
    }
}

pub(crate) fn ok_for(answer: &Value, pdu: &Pdu) -> bool {
    answer["pdus"][pdu.event_id().as_str()] == json!({})
}

#[test]
fn a_transaction_reaches_local_members_once() {
    let mut s = shared_room(51);
    let sent: Vec<Pdu> = (0..3)
        .map(|i| s.gen.add(&mut s.main, "bob", message(&format!("hi {i}"))))
        .collect();
    let txn = unique("txn");
    let answer = s.send(&txn, &sent, json!([])).expect(200);
    assert!(sent.iter().all(|p| ok_for(&answer, p)), "{answer}");
    let timeline = s.timeline();
    for pdu in &sent {
        assert!(timeline.contains(&pdu.event_id().to_string()), "{timeline:?}");
    }
    let room = s.room.clone();
    let last = sent[2].event_id().to_string();
    s.sync_until("bob's messages", |b| {
        b["rooms"]["join"][&room]["timeline"]["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["event_id"] == json!(last)))
    });
    // The same transaction again: the same answer, nothing twice.
    let again = s.send(&txn, &sent, json!([])).expect(200);
    assert_eq!(again, answer);
    let before = s.timeline().len();
    // The same events in a new transaction are no news either.
    s.send(&unique("txn"), &sent, json!([])).expect(200);
    assert_eq!(s.timeline().len(), before);
}

#[test]
fn typing_receipts_and_to_device_messages_reach_carol() {
    let mut s = shared_room(52);
    let msg = s.gen.add(&mut s.main, "bob", message("read me"));
    s.send(&unique("txn"), std::slice::from_ref(&msg), json!([]))
        .expect(200);
    let bob = s.remote.user("bob");
    let room = s.room.clone();
    let carol_device = s.carol.get("/_matrix/client/v3/account/whoami").expect(200)["device_id"]
        .as_str()
        .expect("device")
        .to_owned();
    let edus = json!([
        {"edu_type": "m.typing", "content": {"room_id": room, "user_id": bob, "typing": true}},
        // Typing for a user of another server is not the sender's to set.
        {"edu_type": "m.typing", "content": {"room_id": room, "user_id": "@x:elsewhere.example", "typing": true}},
        {"edu_type": "m.receipt", "content": {room.clone(): {"m.read": {bob.clone(): {
            "event_ids": [msg.event_id().to_string()], "data": {"ts": 1}}}}}},
        {"edu_type": "m.direct_to_device", "content": {"sender": bob, "type": "m.test.hello",
            "message_id": "m1", "messages": {s.carol_id.clone(): {carol_device.clone(): {"hello": "carol"}}}}},
        {"edu_type": "m.something.unknown", "content": {}},
        {"edu_type": "m.typing", "content": "not an object"},
    ]);
    s.send(&unique("txn"), &[], edus).expect(200);
    let typing = s.sync_until("bob typing", |b| {
        b["rooms"]["join"][&room]["ephemeral"]["events"]
            .as_array()
            .is_some_and(|e| {
                e.iter()
                    .any(|e| e["type"] == "m.typing" && e["content"]["user_ids"] == json!([bob]))
            })
    });
    assert!(typing.is_object());
    let msg_id = msg.event_id().to_string();
    s.sync_until("bob's receipt", |b| {
        b["rooms"]["join"][&room]["ephemeral"]["events"]
            .as_array()
            .is_some_and(|e| {
                e.iter()
                    .any(|e| e["type"] == "m.receipt" && e["content"][&msg_id]["m.read"].get(&bob).is_some())
            })
    });
    s.sync_until("bob's to-device message", |b| {
        b["to_device"]["events"].as_array().is_some_and(|e| {
            e.iter()
                .any(|e| e["type"] == "m.test.hello" && e["sender"] == json!(bob))
        })
    });
}

#[test]
fn bad_transactions_are_refused_and_change_nothing() {
    let mut s = shared_room(53);
    let path = format!("/_matrix/federation/v1/send/{}", unique("txn"));
    let server = shared();
    let mut thrown = s.main.clone();
    let too_many: Vec<Pdu> = (0..51)
        .map(|i| s.gen.add(&mut thrown, "bob", message(&format!("n{i}"))))
        .collect();
    s.send(&unique("txn"), &too_many, json!([]))
        .expect_err(400, "M_BAD_JSON");
    let edus: Vec<Value> = (0..101)
        .map(|_| json!({"edu_type": "m.typing", "content": {}}))
        .collect();
    s.send(&unique("txn"), &[], json!(edus))
        .expect_err(400, "M_BAD_JSON");
    let wrong_origin = json!({"origin": "other.example", "origin_server_ts": 1, "pdus": []});
    s.remote
        .request(server, "PUT", &path, Some(&wrong_origin))
        .expect_err(403, "M_FORBIDDEN");
    let bad_shape = json!({"origin": s.remote.name, "origin_server_ts": 1, "pdus": 5});
    s.remote
        .request(server, "PUT", &path, Some(&bad_shape))
        .expect_err(400, "M_BAD_JSON");
    let timeline = s.timeline();
    assert!(
        too_many
            .iter()
            .all(|p| !timeline.contains(&p.event_id().to_string())),
        "nothing of the refused transaction"
    );

    // Per-PDU refusals inside an accepted transaction.
    let good = s.gen.add(&mut s.main, "bob", message("fine"));
    let mut eve_branch = s.main.clone();
    let eve = s.gen.add(&mut eve_branch, "eve", message("I am not in the room"));
    let mut forged = s
        .gen
        .add(&mut s.main, "bob", message("forged"))
        .to_federation_value();
    let sig_path = forged["signatures"][&s.remote.name]
        .as_object()
        .expect("sig")
        .keys()
        .next()
        .expect("key")
        .clone();
    forged["signatures"][&s.remote.name][&sig_path] = json!("AAAA".repeat(21) + "AA");
    let (other, _) = crate::room_input::Gen::on(
        &s.remote.name,
        SigningKey::from_seed([7; 32], "x").expect("key"),
        now_ms(),
    );
    let stranger = other.log[1].to_federation_value();
    let body = json!({
        "origin": s.remote.name,
        "origin_server_ts": now_ms(),
        "pdus": [good.to_federation_value(), eve.to_federation_value(), forged, stranger, {"room_id": 5}, "not an object"],
        "edus": [],
    });
    let answer = s.remote.request(server, "PUT", &path, Some(&body)).expect(200);
    assert!(ok_for(&answer, &good), "{answer}");
    assert!(
        answer["pdus"][eve.event_id().as_str()]["error"].is_string(),
        "{answer}"
    );
    let errors = answer["pdus"]
        .as_object()
        .expect("pdus")
        .values()
        .filter(|v| v.get("error").is_some())
        .count();
    assert_eq!(
        errors, 3,
        "eve's, the forged one and the stranger room's: {answer}"
    );
    let timeline = s.timeline();
    assert!(timeline.contains(&good.event_id().to_string()));
    assert!(!timeline.contains(&eve.event_id().to_string()));
}

#[test]
fn missing_prev_events_are_fetched_from_the_sender() {
    let mut s = shared_room(54);
    let earlier: Vec<Pdu> = (0..3)
        .map(|i| s.gen.add(&mut s.main, "bob", message(&format!("early {i}"))))
        .collect();
    let latest = s.gen.add(&mut s.main, "bob", message("latest"));
    s.remote.answer(
        "POST",
        &format!("/_matrix/federation/v1/get_missing_events/{}", enc(&s.room)),
        200,
        json!({"events": earlier.iter().map(Pdu::to_federation_value).collect::<Vec<_>>()}),
    );
    let answer = s
        .send(&unique("txn"), std::slice::from_ref(&latest), json!([]))
        .expect(200);
    assert!(ok_for(&answer, &latest), "{answer}");
    let asked = s
        .remote
        .seen()
        .into_iter()
        .find(|r| r.target.contains("get_missing_events"))
        .expect("asked");
    assert_eq!(
        asked.body.expect("body")["latest_events"],
        json!([latest.event_id().to_string()])
    );
    let timeline = s.timeline();
    for pdu in earlier.iter().chain([&latest]) {
        assert!(timeline.contains(&pdu.event_id().to_string()), "{timeline:?}");
    }
}

#[test]
fn a_deep_gap_is_crossed_with_the_state_from_state_ids() {
    let mut s = shared_room(55);
    let state_ids: Vec<String> = s.main.state.values().map(|p| p.event_id().to_string()).collect();
    let gap: Vec<Pdu> = (0..30)
        .map(|i| s.gen.add(&mut s.main, "bob", message(&format!("gap {i}"))))
        .collect();
    let latest = s.gen.add(&mut s.main, "bob", message("after the gap"));
    let prev = gap.last().expect("prev");
    let room = enc(&s.room);
    // Nothing useful from /get_missing_events: the gap is too deep.
    s.remote.answer(
        "POST",
        &format!("/_matrix/federation/v1/get_missing_events/{room}"),
        200,
        json!({"events": []}),
    );
    s.remote.answer(
        "GET",
        &format!("/_matrix/federation/v1/state_ids/{room}"),
        200,
        json!({"pdu_ids": state_ids, "auth_chain_ids": []}),
    );
    s.remote.answer(
        "GET",
        &format!("/_matrix/federation/v1/event/{}", enc(prev.event_id().as_str())),
        200,
        json!({"origin": s.remote.name, "origin_server_ts": now_ms(), "pdus": [prev.to_federation_value()]}),
    );
    let answer = s
        .send(&unique("txn"), std::slice::from_ref(&latest), json!([]))
        .expect(200);
    assert!(ok_for(&answer, &latest), "{answer}");
    let seen = s.remote.seen();
    assert!(
        seen.iter().any(|r| r.target.contains("/state_ids/")),
        "asked for the state at the gap"
    );
    let timeline = s.timeline();
    assert!(timeline.contains(&latest.event_id().to_string()));
}

#[test]
fn presence_and_device_list_updates_reach_room_mates() {
    let s = shared_room(58);
    let first = s
        .carol
        .get("/_matrix/client/v3/sync?timeout=0&set_presence=offline")
        .expect(200);
    let since = first["next_batch"].as_str().expect("next_batch").to_owned();
    let (alice, bob) = (s.remote.user("alice"), s.remote.user("bob"));
    let edus = json!([
        {"edu_type": "m.presence", "content": {"push": [
            {"user_id": bob, "presence": "online", "last_active_ago": 1000, "status_msg": "on the other server", "currently_active": true},
            {"user_id": "@x:elsewhere.example", "presence": "online", "last_active_ago": 1},
        ]}},
        {"edu_type": "m.device_list_update", "content": {"user_id": bob, "device_id": "BOBDEV", "stream_id": 1, "prev_id": [], "deleted": false, "keys": {}}},
        {"edu_type": "m.signing_key_update", "content": {"user_id": alice}},
        {"edu_type": "m.device_list_update", "content": {"user_id": "@x:elsewhere.example", "device_id": "X", "stream_id": 1}},
    ]);
    s.send(&unique("txn"), &[], edus).expect(200);
    let presence = s.sync_until("bob's presence", |b| {
        b["presence"]["events"].as_array().is_some_and(|e| {
            e.iter()
                .any(|e| e["sender"] == json!(bob) && e["content"]["status_msg"] == "on the other server")
        })
    });
    assert!(presence["presence"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .all(|e| e["sender"] != "@x:elsewhere.example"));
    let changes = s
        .carol
        .get(&format!(
            "/_matrix/client/v3/keys/changes?from={}&to={}",
            enc(&since),
            enc(&since)
        ))
        .expect(200);
    let changed: Vec<&str> = changes["changed"]
        .as_array()
        .expect("changed")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        changed.contains(&bob.as_str()) && changed.contains(&alice.as_str()),
        "{changes}"
    );
    assert!(!changed.contains(&"@x:elsewhere.example"));
}
