//! End-to-end encryption against the running worker, with a real Olm implementation
//! (vodozemac) on the client side: device keys signed by the device's identity key,
//! signed one-time and fallback keys, claim, an Olm session established from a
//! claimed key, cross-signing, signatures, key backup, and device deletion.
//!
//! The to-device leg (Alice's pre-key message delivered to Bob through /sync) comes
//! with the sync engine; here Bob decrypts the message handed over directly.

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine as _;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use vodozemac::olm::{Account, OlmMessage, SessionConfig};
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey, Ed25519Signature};

use crate::harness::{shared, unique, Client};

pub const PASSWORD: &str = "correct horse battery";

/// Canonical JSON: keys sorted, no whitespace.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, &Value> = map.iter().collect();
            let parts: Vec<String> = sorted
                .into_iter()
                .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), canonical(v)))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

pub fn signable(v: &Value) -> String {
    let mut copy = v.clone();
    if let Some(o) = copy.as_object_mut() {
        o.remove("signatures");
        o.remove("unsigned");
    }
    canonical(&copy)
}

/// Whether `v` carries a valid signature `signatures[user][key_id]` by `key`.
pub fn signed_by(v: &Value, user: &str, key_id: &str, key: &str) -> bool {
    let Some(sig) = v["signatures"][user][key_id].as_str() else {
        return false;
    };
    let (Ok(key), Ok(sig)) = (
        Ed25519PublicKey::from_base64(key),
        Ed25519Signature::from_base64(sig),
    ) else {
        return false;
    };
    key.verify(signable(v).as_bytes(), &sig).is_ok()
}

/// A user's device with a real Olm account.
pub struct Device {
    pub client: Client,
    pub user_id: String,
    pub device_id: String,
    pub account: Account,
}

impl Device {
    pub fn register(prefix: &str) -> Device {
        Device::register_on(&shared().client(), prefix)
    }

    /// A new user's first device on the server `root` talks to.
    pub fn register_on(root: &Client, prefix: &str) -> Device {
        let (client, user_id) = root.register(&unique(prefix), PASSWORD);
        let device_id = client.get("/_matrix/client/v3/account/whoami").expect(200)["device_id"]
            .as_str()
            .expect("device_id")
            .to_owned();
        Device {
            client,
            user_id,
            device_id,
            account: Account::new(),
        }
    }

    /// A second device of the same user, by password login.
    pub fn login(&self) -> Device {
        let body = shared()
            .client()
            .post(
                "/_matrix/client/v3/login",
                &json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": self.user_id}, "password": PASSWORD}),
            )
            .expect(200);
        Device {
            client: shared()
                .client()
                .with_token(body["access_token"].as_str().expect("token")),
            user_id: self.user_id.clone(),
            device_id: body["device_id"].as_str().expect("device_id").to_owned(),
            account: Account::new(),
        }
    }

    pub fn ed25519(&self) -> String {
        self.account.identity_keys().ed25519.to_base64()
    }

    pub fn curve25519(&self) -> String {
        self.account.identity_keys().curve25519.to_base64()
    }

    pub fn sign(&self, v: &mut Value) {
        let sig = self.account.sign(signable(v)).to_base64();
        v["signatures"][&self.user_id][format!("ed25519:{}", self.device_id)] = json!(sig);
    }

    pub fn device_keys(&self) -> Value {
        let mut keys = json!({
            "user_id": self.user_id,
            "device_id": self.device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {
                format!("curve25519:{}", self.device_id): self.curve25519(),
                format!("ed25519:{}", self.device_id): self.ed25519(),
            },
        });
        self.sign(&mut keys);
        keys
    }

    fn signed_key(&self, key: &Curve25519PublicKey, fallback: bool) -> Value {
        let mut v = json!({ "key": key.to_base64() });
        if fallback {
            v["fallback"] = json!(true);
        }
        self.sign(&mut v);
        v
    }

    /// Generates `count` one-time keys (and a fallback key if asked) and uploads them
    /// with the device keys; returns the uploaded one-time keys by full key id.
    pub fn upload(&mut self, count: usize, fallback: bool) -> BTreeMap<String, Value> {
        self.account.generate_one_time_keys(count);
        let otks: BTreeMap<String, Value> = self
            .account
            .one_time_keys()
            .iter()
            .map(|(id, key)| {
                (
                    format!("signed_curve25519:{}", id.to_base64()),
                    self.signed_key(key, false),
                )
            })
            .collect();
        let mut body = json!({ "device_keys": self.device_keys(), "one_time_keys": otks });
        if fallback {
            self.account.generate_fallback_key();
            let fb: BTreeMap<String, Value> = self
                .account
                .fallback_key()
                .iter()
                .map(|(id, key)| {
                    (
                        format!("signed_curve25519:{}", id.to_base64()),
                        self.signed_key(key, true),
                    )
                })
                .collect();
            body["fallback_keys"] = json!(fb);
        }
        let answer = self
            .client
            .post("/_matrix/client/v3/keys/upload", &body)
            .expect(200);
        assert_eq!(answer["one_time_key_counts"]["signed_curve25519"], json!(count));
        self.account.mark_keys_as_published();
        otks
    }

    pub fn otk_count(&self) -> u64 {
        self.client
            .post("/_matrix/client/v3/keys/upload", &json!({}))
            .expect(200)["one_time_key_counts"]["signed_curve25519"]
            .as_u64()
            .expect("count")
    }

    pub fn query(&self, user: &str) -> Value {
        self.client
            .post(
                "/_matrix/client/v3/keys/query",
                &json!({"device_keys": {user: []}}),
            )
            .expect(200)
    }

    /// Claims one `signed_curve25519` key of `of`; `(full key id, key)` if any.
    pub fn claim(client: &Client, of: &Device) -> Option<(String, Value)> {
        let answer = client
            .post(
                "/_matrix/client/v3/keys/claim",
                &json!({"one_time_keys": {of.user_id.clone(): {of.device_id.clone(): "signed_curve25519"}}}),
            )
            .expect(200);
        let keys = answer["one_time_keys"][&of.user_id][&of.device_id].as_object()?;
        keys.iter().next().map(|(k, v)| (k.clone(), v.clone()))
    }
}

#[test]
fn olm_session_from_a_claimed_one_time_key() {
    let mut alice = Device::register("e2ea");
    let mut bob = Device::register("e2eb");
    alice.upload(2, false);
    let uploaded = bob.upload(5, false);

    // Alice sees Bob's device keys exactly as signed by Bob's device.
    let answer = alice.query(&bob.user_id);
    let keys = &answer["device_keys"][&bob.user_id][&bob.device_id];
    assert_eq!(
        keys["keys"][format!("curve25519:{}", bob.device_id)],
        json!(bob.curve25519())
    );
    assert!(signed_by(
        keys,
        &bob.user_id,
        &format!("ed25519:{}", bob.device_id),
        &bob.ed25519()
    ));
    assert!(keys["unsigned"]["device_display_name"].is_string() || keys["unsigned"].is_null());
    assert_eq!(answer["failures"], json!({}));

    // She claims one of the keys Bob uploaded, signed by his device.
    let (key_id, otk) = Device::claim(&alice.client, &bob).expect("a key");
    assert_eq!(
        uploaded.get(&key_id),
        Some(&otk),
        "claimed key {key_id} was not uploaded by Bob"
    );
    assert!(signed_by(
        &otk,
        &bob.user_id,
        &format!("ed25519:{}", bob.device_id),
        &bob.ed25519()
    ));
    assert_eq!(bob.otk_count(), 4);

    // Olm: Alice encrypts to Bob's identity key and the claimed key; Bob decrypts.
    let bob_curve = Curve25519PublicKey::from_base64(&bob.curve25519()).expect("curve");
    let otk_key = Curve25519PublicKey::from_base64(otk["key"].as_str().expect("key")).expect("otk");
    let mut outbound = alice
        .account
        .create_outbound_session(SessionConfig::version_1(), bob_curve, otk_key);
    let (kind, body) = outbound.encrypt("hello bob").to_parts();
    let alice_curve = Curve25519PublicKey::from_base64(&alice.curve25519()).expect("curve");

    // Alice sends it to Bob's device as an encrypted to-device message; Bob's /sync
    // delivers it, with his device's one-time key count.
    let content = json!({
        "algorithm": "m.olm.v1.curve25519-aes-sha2",
        "sender_key": alice.curve25519(),
        "ciphertext": { bob.curve25519(): { "type": kind, "body": B64.encode(&body) } },
    });
    alice
        .client
        .put(
            "/_matrix/client/v3/sendToDevice/m.room.encrypted/olm1",
            &json!({ "messages": { &bob.user_id: { &bob.device_id: content } } }),
        )
        .expect(200);
    let sync = bob.client.get("/_matrix/client/v3/sync?timeout=0").expect(200);
    assert_eq!(
        sync["device_one_time_keys_count"]["signed_curve25519"], 4,
        "{sync}"
    );
    let events = sync["to_device"]["events"].as_array().expect("to_device events");
    let delivered = events
        .iter()
        .find(|e| e["type"] == "m.room.encrypted" && e["sender"] == alice.user_id.as_str())
        .expect("the encrypted message reaches Bob's device");
    let cipher = &delivered["content"]["ciphertext"][bob.curve25519()];
    let kind = cipher["type"].as_u64().expect("type") as usize;
    let body = B64
        .decode(cipher["body"].as_str().expect("body"))
        .expect("base64 body");
    let OlmMessage::PreKey(prekey) = OlmMessage::from_parts(kind, &body).expect("message") else {
        panic!("first message must be a pre-key message");
    };
    let inbound = bob
        .account
        .create_inbound_session(alice_curve, &prekey)
        .expect("Bob creates the inbound session");
    assert_eq!(inbound.plaintext, b"hello bob");

    // And the session works the other way.
    let mut bob_session = inbound.session;
    let reply = bob_session.encrypt("hi alice");
    assert_eq!(outbound.decrypt(&reply).expect("decrypt"), b"hi alice");
}

#[test]
fn concurrent_claims_never_share_a_key() {
    let mut bob = Device::register("e2ec");
    let uploaded = bob.upload(20, false);
    let claimer = Device::register("e2ed").client;
    let bob_ref = &bob;
    let claimed: Vec<Option<(String, Value)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let c = claimer.clone();
                s.spawn(move || (0..4).map(|_| Device::claim(&c, bob_ref)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    let ids: Vec<String> = claimed.into_iter().flatten().map(|(id, _)| id).collect();
    let unique_ids: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(
        ids.len(),
        20,
        "32 claims of 20 keys hand out each key once: {ids:?}"
    );
    assert_eq!(unique_ids.len(), 20, "a key was handed out twice: {ids:?}");
    assert!(ids.iter().all(|id| uploaded.contains_key(id)));
    assert_eq!(bob.otk_count(), 0);
}

#[test]
fn fallback_key_is_served_when_one_time_keys_run_out() {
    let alice = Device::register("e2ee");
    let mut bob = Device::register("e2ef");
    let uploaded = bob.upload(1, true);
    let (first, otk) = Device::claim(&alice.client, &bob).expect("one-time key");
    assert_eq!(uploaded.get(&first), Some(&otk));
    // (vodozemac numbers fallback keys separately, so the key ids may coincide.)
    let (second, fallback) = Device::claim(&alice.client, &bob).expect("fallback key");
    assert_eq!(fallback["fallback"], json!(true));
    assert_ne!(fallback["key"], otk["key"]);
    assert!(signed_by(
        &fallback,
        &bob.user_id,
        &format!("ed25519:{}", bob.device_id),
        &bob.ed25519()
    ));
    // The fallback key stays available.
    let (third, _) = Device::claim(&alice.client, &bob).expect("fallback again");
    assert_eq!(third, second);

    // And it works for Olm.
    let bob_curve = Curve25519PublicKey::from_base64(&bob.curve25519()).expect("curve");
    let key = Curve25519PublicKey::from_base64(fallback["key"].as_str().expect("key")).expect("key");
    let mut outbound = alice
        .account
        .create_outbound_session(SessionConfig::version_1(), bob_curve, key);
    let OlmMessage::PreKey(prekey) = outbound.encrypt("via fallback") else {
        panic!("pre-key message expected");
    };
    let alice_curve = Curve25519PublicKey::from_base64(&alice.curve25519()).expect("curve");
    let inbound = bob
        .account
        .create_inbound_session(alice_curve, &prekey)
        .expect("inbound");
    assert_eq!(inbound.plaintext, b"via fallback");
}

#[test]
fn bad_signatures_and_foreign_devices_are_refused_without_change() {
    let mut alice = Device::register("e2eg");
    let mut bob = Device::register("e2eh");
    alice.upload(1, false);
    bob.upload(1, false);
    let before_alice = alice.query(&alice.user_id);
    let before_bob = alice.query(&bob.user_id);

    // Tampered after signing.
    let mut tampered = alice.device_keys();
    tampered["keys"][format!("curve25519:{}", alice.device_id)] = json!(bob.curve25519());
    alice
        .client
        .post(
            "/_matrix/client/v3/keys/upload",
            &json!({"device_keys": tampered}),
        )
        .expect_err(400, "M_INVALID_SIGNATURE");
    // Signed by another key than the device's own.
    let mut forged = alice.device_keys();
    forged["keys"][format!("ed25519:{}", alice.device_id)] = json!(bob.ed25519());
    alice
        .client
        .post("/_matrix/client/v3/keys/upload", &json!({"device_keys": forged}))
        .expect_err(400, "M_INVALID_SIGNATURE");
    // Bob's device keys uploaded with Alice's session (user and device are Bob's).
    alice
        .client
        .post(
            "/_matrix/client/v3/keys/upload",
            &json!({"device_keys": bob.device_keys()}),
        )
        .expect_err(400, "M_INVALID_PARAM");
    // Alice's user with Bob's device id, self-signed by an attacker account.
    let fake = Device {
        client: alice.client.clone(),
        user_id: alice.user_id.clone(),
        device_id: bob.device_id.clone(),
        account: Account::new(),
    };
    alice
        .client
        .post(
            "/_matrix/client/v3/keys/upload",
            &json!({"device_keys": fake.device_keys()}),
        )
        .expect_err(400, "M_INVALID_PARAM");
    // Signing Bob's device is not Alice's to do.
    let mut bobs = bob.device_keys();
    bobs["signatures"][&alice.user_id][format!("ed25519:{}", alice.device_id)] =
        json!(alice.account.sign(signable(&bobs)).to_base64());
    let answer = alice
        .client
        .post(
            "/_matrix/client/v3/keys/signatures/upload",
            &json!({bob.user_id.clone(): {bob.device_id.clone(): bobs}}),
        )
        .expect(200);
    assert!(
        answer["failures"][&bob.user_id][&bob.device_id]["errcode"].is_string(),
        "{answer}"
    );

    assert_eq!(alice.query(&alice.user_id), before_alice);
    assert_eq!(alice.query(&bob.user_id), before_bob);
    assert_eq!(alice.otk_count(), 1);
}

#[test]
fn deleting_a_device_deletes_its_keys_and_reports_a_change() {
    let mut alice = Device::register("e2em");
    alice.upload(1, false);
    let mut second = alice.login();
    second.upload(3, true);
    let changes = |from: u64| {
        alice
            .client
            .get(&format!(
                "/_matrix/client/v3/keys/changes?from={from}&to={}",
                from + 1
            ))
            .expect(200)
    };
    // Two uploads of device keys: Alice's own device-list position is 2.
    assert_eq!(changes(0)["changed"], json!([alice.user_id]));
    assert_eq!(changes(2)["changed"], json!([]));
    assert!(alice.query(&alice.user_id)["device_keys"][&alice.user_id][&second.device_id].is_object());

    let auth = json!({"auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id}, "password": PASSWORD}});
    let body = serde_json::to_vec(&auth).expect("json");
    alice
        .client
        .raw(
            "DELETE",
            &format!("/_matrix/client/v3/devices/{}", second.device_id),
            Some(&body),
            &[("Content-Type", "application/json")],
        )
        .expect(200);
    assert!(alice.query(&alice.user_id)["device_keys"][&alice.user_id]
        .get(&second.device_id)
        .is_none());
    assert_eq!(
        Device::claim(&alice.client, &second),
        None,
        "no one-time or fallback key survives"
    );
    assert_eq!(changes(2)["changed"], json!([alice.user_id]));
    alice
        .client
        .get("/_matrix/client/v3/keys/changes")
        .expect_err(400, "M_MISSING_PARAM");
}

#[test]
fn device_list_changes_follow_shared_rooms() {
    let alice = Device::register("e2en");
    let mut bob = Device::register("e2eo");
    let changes = |d: &Device| d.client.get("/_matrix/client/v3/keys/changes?from=0").expect(200);
    let room = alice
        .client
        .post("/_matrix/client/v3/createRoom", &json!({"preset": "public_chat"}))
        .expect(200)["room_id"]
        .as_str()
        .expect("room_id")
        .replace('!', "%21")
        .replace(':', "%3A");
    // Not sharing a room yet: Bob's keys are none of Alice's business.
    bob.upload(0, false);
    assert_eq!(changes(&alice)["changed"], json!([]));

    bob.client
        .post(&format!("/_matrix/client/v3/rooms/{room}/join"), &json!({}))
        .expect(200);
    assert_eq!(changes(&alice)["changed"], json!([bob.user_id]));
    assert!(changes(&bob)["changed"]
        .as_array()
        .expect("changed")
        .contains(&json!(alice.user_id)));

    bob.client
        .post(&format!("/_matrix/client/v3/rooms/{room}/leave"), &json!({}))
        .expect(200);
    let after = changes(&alice);
    assert_eq!(
        (after["changed"].clone(), after["left"].clone()),
        (json!([]), json!([bob.user_id]))
    );
    assert_eq!(changes(&bob)["left"], json!([alice.user_id]));

    // A new device of Bob's after he left is not reported to Alice.
    let mut other = bob.login();
    other.upload(0, false);
    assert_eq!(changes(&alice)["left"], json!([bob.user_id]));
    assert_eq!(changes(&alice)["changed"], json!([]));
}

#[test]
fn device_lists_appear_in_incremental_sync() {
    let alice = Device::register("e2es");
    let mut bob = Device::register("e2et");
    let room = alice
        .client
        .post("/_matrix/client/v3/createRoom", &json!({"preset": "public_chat"}))
        .expect(200)["room_id"]
        .as_str()
        .expect("room_id")
        .replace('!', "%21")
        .replace(':', "%3A");
    bob.client
        .post(&format!("/_matrix/client/v3/rooms/{room}/join"), &json!({}))
        .expect(200);
    let first = alice.client.get("/_matrix/client/v3/sync?timeout=0").expect(200);
    assert_eq!(
        first["device_lists"]["changed"],
        json!([]),
        "initial sync lists nothing"
    );
    let since = first["next_batch"].as_str().expect("next_batch").to_owned();
    // Bob uploads device keys: Alice's next sync names him.
    bob.upload(1, true);
    let next = alice
        .client
        .get(&format!("/_matrix/client/v3/sync?timeout=0&since={since}"))
        .expect(200);
    assert!(
        next["device_lists"]["changed"]
            .as_array()
            .expect("changed")
            .contains(&json!(bob.user_id)),
        "{}",
        next["device_lists"]
    );
    // Bob's own sync reports his fallback key as unused.
    let own = bob.client.get("/_matrix/client/v3/sync?timeout=0").expect(200);
    assert_eq!(
        own["device_unused_fallback_key_types"],
        json!(["signed_curve25519"]),
        "{own}"
    );
    // Bob leaves: Alice's following sync says so.
    let since = next["next_batch"].as_str().expect("next_batch").to_owned();
    bob.client
        .post(&format!("/_matrix/client/v3/rooms/{room}/leave"), &json!({}))
        .expect(200);
    let after = alice
        .client
        .get(&format!("/_matrix/client/v3/sync?timeout=0&since={since}"))
        .expect(200);
    assert!(
        after["device_lists"]["left"]
            .as_array()
            .expect("left")
            .contains(&json!(bob.user_id)),
        "{}",
        after["device_lists"]
    );
}
