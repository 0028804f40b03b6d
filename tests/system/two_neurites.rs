//! Two Neurites on loopback, each with its own users: a room made on one, an invite
//! across, a join through the inviting server, an encrypted conversation with real
//! Olm and Megolm (vodozemac) over remote key queries, one-time-key claims and
//! to-device messages, state changes, and a leave and a rejoin.

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use vodozemac::megolm::{
    GroupSession, InboundGroupSession, MegolmMessage, SessionConfig as MegolmConfig, SessionKey,
};
use vodozemac::olm::{OlmMessage, SessionConfig};
use vodozemac::Curve25519PublicKey;

use crate::e2ee::Device;
use crate::harness::{enc, unique, Client, Options, Server};

fn eventually<T>(what: &str, mut found: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(v) = found() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Syncs `client` from `since` (none: initially); the answer and the next token.
fn sync(client: &Client, since: &Option<String>) -> (Value, Option<String>) {
    let path = match since {
        Some(s) => format!("/_matrix/client/v3/sync?timeout=0&since={}", enc(s)),
        None => "/_matrix/client/v3/sync?timeout=0".to_owned(),
    };
    let answer = client.get(&path).expect(200);
    let next = answer["next_batch"].as_str().map(str::to_owned);
    (answer, next)
}

fn send(client: &Client, room: &str, event_type: &str, content: &Value) {
    client
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/{event_type}/{}",
                enc(room),
                unique("t")
            ),
            content,
        )
        .expect(200);
}

fn bodies(client: &Client, room: &str) -> Vec<String> {
    let page = client.get(&format!(
        "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
        enc(room)
    ));
    page.body["chunk"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

fn joined(client: &Client, room: &str, user: &str) -> bool {
    client
        .get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(room)))
        .body["joined"]
        .get(user)
        .is_some()
}

fn invite_and_join(alice: &Client, bob: &Client, room: &str, bob_id: &str) {
    alice
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(room)),
            &json!({"user_id": bob_id}),
        )
        .expect(200);
    eventually("the invite on bob's server", || {
        sync(bob, &None).0["rooms"]["invite"].get(room).cloned()
    });
    let joined_now = bob.post(
        &format!("/_matrix/client/v3/rooms/{}/join", enc(room)),
        &json!({}),
    );
    assert_eq!(joined_now.status, 200, "{}", joined_now.body);
}

#[test]
fn users_of_two_neurites_talk_encrypted() {
    let a = Server::start(Options::default());
    let b = Server::start(Options::default());
    let mut alice = Device::register_on(&a.client(), "alice2n");
    let mut bob = Device::register_on(&b.client(), "bob2n");
    alice.upload(1, false);
    bob.upload(3, false);

    let room = alice
        .client
        .post(
            "/_matrix/client/v3/createRoom",
            &json!({
                "preset": "private_chat",
                "name": "Two Neurites",
                "initial_state": [{"type": "m.room.encryption", "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"}}],
            }),
        )
        .expect(200)["room_id"]
        .as_str()
        .expect("room_id")
        .to_owned();
    invite_and_join(&alice.client, &bob.client, &room, &bob.user_id);
    eventually("bob joined, on alice's server", || {
        joined(&alice.client, &room, &bob.user_id).then_some(())
    });

    // Bob's device, as alice's server asks bob's.
    let keys = alice.query(&bob.user_id);
    assert_eq!(
        keys["device_keys"][&bob.user_id][&bob.device_id]["keys"][format!("curve25519:{}", bob.device_id)],
        json!(bob.curve25519()),
        "{keys}"
    );
    let (_, otk) = Device::claim(&alice.client, &bob).expect("a one-time key of bob's");

    // Olm to bob's device, carrying a Megolm room key; then the encrypted message.
    let bob_curve = Curve25519PublicKey::from_base64(&bob.curve25519()).expect("curve");
    let otk_key = Curve25519PublicKey::from_base64(otk["key"].as_str().expect("key")).expect("otk");
    let mut olm = alice
        .account
        .create_outbound_session(SessionConfig::version_1(), bob_curve, otk_key);
    let mut group = GroupSession::new(MegolmConfig::version_1());
    let room_key = json!({
        "type": "m.room_key",
        "content": {
            "algorithm": "m.megolm.v1.aes-sha2",
            "room_id": room,
            "session_id": group.session_id(),
            "session_key": group.session_key().to_base64(),
        },
        "sender": alice.user_id,
        "recipient": bob.user_id,
        "recipient_keys": {"ed25519": bob.ed25519()},
        "keys": {"ed25519": alice.ed25519()},
    });
    let (kind, body) = olm.encrypt(room_key.to_string()).to_parts();
    let to_device = json!({
        "algorithm": "m.olm.v1.curve25519-aes-sha2",
        "sender_key": alice.curve25519(),
        "ciphertext": { bob.curve25519(): { "type": kind, "body": B64.encode(&body) } },
    });
    alice
        .client
        .put(
            &format!("/_matrix/client/v3/sendToDevice/m.room.encrypted/{}", unique("k")),
            &json!({ "messages": { &bob.user_id: { &bob.device_id: to_device } } }),
        )
        .expect(200);
    let secret = json!({"type": "m.room.message", "room_id": room,
        "content": {"msgtype": "m.text", "body": "a secret across servers"}});
    let ciphertext = group.encrypt(secret.to_string()).to_base64();
    send(
        &alice.client,
        &room,
        "m.room.encrypted",
        &json!({
            "algorithm": "m.megolm.v1.aes-sha2",
            "sender_key": alice.curve25519(),
            "device_id": alice.device_id,
            "session_id": group.session_id(),
            "ciphertext": ciphertext,
        }),
    );

    // Bob's server delivers both; bob decrypts the key, then the message.
    let mut since = None;
    let mut to_device_events: Vec<Value> = Vec::new();
    let mut timeline: Vec<Value> = Vec::new();
    eventually("the room key and the encrypted message on bob's server", || {
        let (answer, next) = sync(&bob.client, &since);
        since = next;
        to_device_events.extend(
            answer["to_device"]["events"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
        timeline.extend(
            answer["rooms"]["join"][&room]["timeline"]["events"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
        let has_key = to_device_events.iter().any(|e| e["type"] == "m.room.encrypted");
        let has_message = timeline.iter().any(|e| e["type"] == "m.room.encrypted");
        (has_key && has_message).then_some(())
    });
    let delivered = to_device_events
        .iter()
        .find(|e| e["type"] == "m.room.encrypted")
        .expect("to-device");
    assert_eq!(delivered["sender"], json!(alice.user_id));
    let cipher = &delivered["content"]["ciphertext"][bob.curve25519()];
    let bytes = B64
        .decode(cipher["body"].as_str().expect("body"))
        .expect("base64");
    let OlmMessage::PreKey(prekey) =
        OlmMessage::from_parts(cipher["type"].as_u64().expect("type") as usize, &bytes).expect("olm")
    else {
        panic!("the first Olm message is a pre-key message");
    };
    let alice_curve = Curve25519PublicKey::from_base64(&alice.curve25519()).expect("curve");
    let inbound = bob
        .account
        .create_inbound_session(alice_curve, &prekey)
        .expect("bob's inbound Olm session");
    let key: Value = serde_json::from_slice(&inbound.plaintext).expect("room key");
    assert_eq!(key["type"], "m.room_key");
    let session_key =
        SessionKey::from_base64(key["content"]["session_key"].as_str().expect("key")).expect("key");
    let mut megolm = InboundGroupSession::new(&session_key, MegolmConfig::version_1());
    let event = timeline
        .iter()
        .find(|e| e["type"] == "m.room.encrypted")
        .expect("the encrypted event");
    assert_eq!(event["sender"], json!(alice.user_id));
    let message = MegolmMessage::from_base64(event["content"]["ciphertext"].as_str().expect("ciphertext"))
        .expect("megolm");
    let plain: Value =
        serde_json::from_slice(&megolm.decrypt(&message).expect("decrypts").plaintext).expect("json");
    assert_eq!(plain["content"]["body"], "a secret across servers");

    // Bob answers; alice changes the topic; each is seen on the other server.
    send(
        &bob.client,
        &room,
        "m.room.message",
        &json!({"msgtype": "m.text", "body": "got it"}),
    );
    eventually("bob's answer on alice's server", || {
        bodies(&alice.client, &room)
            .iter()
            .any(|b| b == "got it")
            .then_some(())
    });
    alice
        .client
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.topic/", enc(&room)),
            &json!({"topic": "across"}),
        )
        .expect(200);
    eventually("the topic on bob's server", || {
        let topic = bob.client.get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.topic/",
            enc(&room)
        ));
        (topic.status == 200 && topic.body["topic"] == "across").then_some(())
    });

    // Bob leaves and comes back.
    bob.client
        .post(
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
            &json!({}),
        )
        .expect(200);
    eventually("bob gone, on alice's server", || {
        (!joined(&alice.client, &room, &bob.user_id)).then_some(())
    });
    invite_and_join(&alice.client, &bob.client, &room, &bob.user_id);
    eventually("bob back, on alice's server", || {
        joined(&alice.client, &room, &bob.user_id).then_some(())
    });
    send(
        &alice.client,
        &room,
        "m.room.message",
        &json!({"msgtype": "m.text", "body": "welcome back"}),
    );
    eventually("alice's welcome on bob's server", || {
        bodies(&bob.client, &room)
            .iter()
            .any(|b| b == "welcome back")
            .then_some(())
    });
}
