//! End-to-end encryption against the running worker, with a real Olm implementation
//! (vodozemac) on the client side: device keys signed by the device's identity key,
//! signed one-time and fallback keys, claim, an Olm session established from a
//! claimed key, cross-signing, signatures, key backup, and device deletion.
//!
//! The to-device leg (Alice's pre-key message delivered to Bob through /sync) comes
//! with the sync engine; here Bob decrypts the message handed over directly.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use vodozemac::olm::{Account, OlmMessage, SessionConfig};
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey, Ed25519SecretKey, Ed25519Signature};

use crate::harness::{shared, unique, Client};

const PASSWORD: &str = "correct horse battery";

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

fn signable(v: &Value) -> String {
    let mut copy = v.clone();
    if let Some(o) = copy.as_object_mut() {
        o.remove("signatures");
        o.remove("unsigned");
    }
    canonical(&copy)
}

/// Whether `v` carries a valid signature `signatures[user][key_id]` by `key`.
fn signed_by(v: &Value, user: &str, key_id: &str, key: &str) -> bool {
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
struct Device {
    client: Client,
    user_id: String,
    device_id: String,
    account: Account,
}

impl Device {
    fn register(prefix: &str) -> Device {
        let (client, user_id) = shared().client().register(&unique(prefix), PASSWORD);
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
    fn login(&self) -> Device {
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

    fn ed25519(&self) -> String {
        self.account.identity_keys().ed25519.to_base64()
    }

    fn curve25519(&self) -> String {
        self.account.identity_keys().curve25519.to_base64()
    }

    fn sign(&self, v: &mut Value) {
        let sig = self.account.sign(signable(v)).to_base64();
        v["signatures"][&self.user_id][format!("ed25519:{}", self.device_id)] = json!(sig);
    }

    fn device_keys(&self) -> Value {
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
    fn upload(&mut self, count: usize, fallback: bool) -> BTreeMap<String, Value> {
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

    fn otk_count(&self) -> u64 {
        self.client
            .post("/_matrix/client/v3/keys/upload", &json!({}))
            .expect(200)["one_time_key_counts"]["signed_curve25519"]
            .as_u64()
            .expect("count")
    }

    fn query(&self, user: &str) -> Value {
        self.client
            .post(
                "/_matrix/client/v3/keys/query",
                &json!({"device_keys": {user: []}}),
            )
            .expect(200)
    }

    /// Claims one `signed_curve25519` key of `of`; `(full key id, key)` if any.
    fn claim(client: &Client, of: &Device) -> Option<(String, Value)> {
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

/// A cross-signing key of `kind` for `user`, signed by `signer` if given.
fn cross_key(user: &str, kind: &str, key: &Ed25519SecretKey, signer: Option<&Ed25519SecretKey>) -> Value {
    let public = key.public_key().to_base64();
    let mut v = json!({"user_id": user, "usage": [kind], "keys": {format!("ed25519:{public}"): public}});
    if let Some(signer) = signer {
        let id = format!("ed25519:{}", signer.public_key().to_base64());
        v["signatures"][user][id] = json!(signer.sign(signable(&v).as_bytes()).to_base64());
    }
    v
}

#[test]
fn cross_signing_keys_and_signatures() {
    let mut alice = Device::register("e2ei");
    let mut bob = Device::register("e2ej");
    let carol = Device::register("e2ek");
    alice.upload(0, false);
    bob.upload(0, false);
    let (master, ssk, usk) = (
        Ed25519SecretKey::new(),
        Ed25519SecretKey::new(),
        Ed25519SecretKey::new(),
    );
    let a = alice.user_id.clone();
    let upload = json!({
        "master_key": cross_key(&a, "master", &master, None),
        "self_signing_key": cross_key(&a, "self_signing", &ssk, Some(&master)),
        "user_signing_key": cross_key(&a, "user_signing", &usk, Some(&master)),
    });
    // First upload needs no auth; a self-signing key not signed by the master is refused.
    let mut unsigned = upload.clone();
    unsigned["self_signing_key"] = cross_key(&a, "self_signing", &ssk, Some(&usk));
    alice
        .client
        .post("/_matrix/client/v3/keys/device_signing/upload", &unsigned)
        .expect_err(400, "M_INVALID_SIGNATURE");
    alice
        .client
        .post("/_matrix/client/v3/keys/device_signing/upload", &upload)
        .expect(200);
    // Repeating it is fine; replacing it needs the password.
    alice
        .client
        .post("/_matrix/client/v3/keys/device_signing/upload", &upload)
        .expect(200);
    let new_master = Ed25519SecretKey::new();
    let mut replace = json!({"master_key": cross_key(&a, "master", &new_master, None)});
    let challenge = alice
        .client
        .post("/_matrix/client/v3/keys/device_signing/upload", &replace);
    assert_eq!(challenge.status, 401, "{}", challenge.body);
    assert!(challenge.body["flows"].is_array());
    replace["auth"] = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": a}, "password": "wrong"});
    assert_eq!(
        alice
            .client
            .post("/_matrix/client/v3/keys/device_signing/upload", &replace)
            .status,
        401
    );
    let seen = bob.query(&a);
    assert_eq!(
        seen["master_keys"][&a]["keys"][format!("ed25519:{}", master.public_key().to_base64())],
        json!(master.public_key().to_base64())
    );
    assert!(seen["self_signing_keys"][&a].is_object());
    assert!(
        seen["user_signing_keys"].get(&a).is_none(),
        "user-signing keys are private"
    );
    assert!(alice.query(&a)["user_signing_keys"][&a].is_object());

    // Alice signs her device with her self-signing key.
    let ssk_id = format!("ed25519:{}", ssk.public_key().to_base64());
    let mut dev = alice.device_keys();
    dev["signatures"][&a][&ssk_id] = json!(ssk.sign(signable(&dev).as_bytes()).to_base64());
    let answer = alice
        .client
        .post(
            "/_matrix/client/v3/keys/signatures/upload",
            &json!({a.clone(): {alice.device_id.clone(): dev.clone()}}),
        )
        .expect(200);
    assert_eq!(answer["failures"], json!({}));
    let shown = &bob.query(&a)["device_keys"][&a][&alice.device_id];
    assert!(signed_by(shown, &a, &ssk_id, &ssk.public_key().to_base64()));
    // A bad signature is a per-key failure.
    dev["signatures"][&a][&ssk_id] = json!(master.sign(b"other").to_base64());
    let answer = alice
        .client
        .post(
            "/_matrix/client/v3/keys/signatures/upload",
            &json!({a.clone(): {alice.device_id.clone(): dev}}),
        )
        .expect(200);
    assert_eq!(
        answer["failures"][&a][&alice.device_id]["errcode"],
        json!("M_INVALID_SIGNATURE")
    );

    // Bob's master key, signed by Alice's user-signing key: visible to Alice and Bob only.
    let b = bob.user_id.clone();
    let bob_master = Ed25519SecretKey::new();
    bob.client
        .post(
            "/_matrix/client/v3/keys/device_signing/upload",
            &json!({"master_key": cross_key(&b, "master", &bob_master, None)}),
        )
        .expect(200);
    let mut bm = cross_key(&b, "master", &bob_master, None);
    let usk_id = format!("ed25519:{}", usk.public_key().to_base64());
    bm["signatures"][&a][&usk_id] = json!(usk.sign(signable(&bm).as_bytes()).to_base64());
    let answer = alice
        .client
        .post(
            "/_matrix/client/v3/keys/signatures/upload",
            &json!({b.clone(): {bob_master.public_key().to_base64(): bm}}),
        )
        .expect(200);
    assert_eq!(answer["failures"], json!({}));
    assert!(signed_by(
        &alice.query(&b)["master_keys"][&b],
        &a,
        &usk_id,
        &usk.public_key().to_base64()
    ));
    assert!(carol.query(&b)["master_keys"][&b]["signatures"].get(&a).is_none());
}

#[test]
fn key_backup_versions_etags_and_counts() {
    let alice = Device::register("e2el").client;
    let c = &alice;
    c.get("/_matrix/client/v3/room_keys/version")
        .expect_err(404, "M_NOT_FOUND");
    let alg = "m.megolm_backup.v1.curve25519-aes-sha2";
    let v1 = c
        .post(
            "/_matrix/client/v3/room_keys/version",
            &json!({"algorithm": alg, "auth_data": {"public_key": "abc"}}),
        )
        .expect(200)["version"]
        .as_str()
        .expect("version")
        .to_owned();
    let info = c.get("/_matrix/client/v3/room_keys/version").expect(200);
    assert_eq!(
        (info["version"].as_str(), info["count"].as_u64()),
        (Some(v1.as_str()), Some(0))
    );
    let etag0 = info["etag"].as_str().expect("etag").to_owned();

    let key = |fmi: u64, verified: bool, tag: &str| json!({"first_message_index": fmi, "forwarded_count": 0, "is_verified": verified, "session_data": {"ciphertext": tag}});
    let room = "!room:example.org";
    let q = format!("?version={v1}");
    let r = c
        .put(
            &format!(
                "/_matrix/client/v3/room_keys/keys/{}/s1{q}",
                "%21room%3Aexample.org"
            ),
            &key(5, false, "a"),
        )
        .expect(200);
    assert_eq!(r["count"], json!(1));
    assert_ne!(r["etag"].as_str(), Some(etag0.as_str()));
    let r = c
        .put(
            &format!("/_matrix/client/v3/room_keys/keys/%21room%3Aexample.org{q}"),
            &json!({"sessions": {"s2": key(0, false, "b")}}),
        )
        .expect(200);
    assert_eq!(r["count"], json!(2));
    // A worse copy of s1 does not replace it; a better one does.
    c.put(
        &format!("/_matrix/client/v3/room_keys/keys{q}"),
        &json!({"rooms": {room: {"sessions": {"s1": key(9, false, "worse")}}}}),
    )
    .expect(200);
    let s1 = c
        .get(&format!(
            "/_matrix/client/v3/room_keys/keys/%21room%3Aexample.org/s1{q}"
        ))
        .expect(200);
    assert_eq!(s1["session_data"]["ciphertext"], json!("a"));
    c.put(
        &format!("/_matrix/client/v3/room_keys/keys{q}"),
        &json!({"rooms": {room: {"sessions": {"s1": key(9, true, "verified")}}}}),
    )
    .expect(200);
    let all = c
        .get(&format!("/_matrix/client/v3/room_keys/keys{q}"))
        .expect(200);
    assert_eq!(
        all["rooms"][room]["sessions"]["s1"]["session_data"]["ciphertext"],
        json!("verified")
    );
    assert_eq!(
        all["rooms"][room]["sessions"].as_object().map(|s| s.len()),
        Some(2)
    );

    // A newer version makes this one read-only.
    let v2 = c
        .post(
            "/_matrix/client/v3/room_keys/version",
            &json!({"algorithm": alg, "auth_data": {"public_key": "def"}}),
        )
        .expect(200)["version"]
        .as_str()
        .expect("version")
        .to_owned();
    let wrong = c.put(
        &format!("/_matrix/client/v3/room_keys/keys/%21room%3Aexample.org/s3{q}"),
        &key(0, false, "c"),
    );
    wrong.expect_err(403, "M_WRONG_ROOM_KEYS_VERSION");
    assert_eq!(wrong.body["current_version"], json!(v2));
    assert_eq!(
        c.get(&format!("/_matrix/client/v3/room_keys/version/{v1}"))
            .expect(200)["count"],
        json!(2)
    );
    assert_eq!(
        c.get("/_matrix/client/v3/room_keys/version").expect(200)["version"],
        json!(v2)
    );

    // Update auth_data; the algorithm cannot change.
    c.put(
        &format!("/_matrix/client/v3/room_keys/version/{v2}"),
        &json!({"algorithm": alg, "auth_data": {"public_key": "ghi"}}),
    )
    .expect(200);
    assert_eq!(
        c.get(&format!("/_matrix/client/v3/room_keys/version/{v2}"))
            .expect(200)["auth_data"]["public_key"],
        json!("ghi")
    );
    c.put(
        &format!("/_matrix/client/v3/room_keys/version/{v2}"),
        &json!({"algorithm": "other", "auth_data": {}}),
    )
    .expect_err(400, "M_INVALID_PARAM");

    // Deleting keys and versions.
    let r = c
        .delete(&format!(
            "/_matrix/client/v3/room_keys/keys/%21room%3Aexample.org/s2{q}"
        ))
        .expect(200);
    assert_eq!(r["count"], json!(1));
    c.get(&format!(
        "/_matrix/client/v3/room_keys/keys/%21room%3Aexample.org/s2{q}"
    ))
    .expect_err(404, "M_NOT_FOUND");
    c.delete(&format!("/_matrix/client/v3/room_keys/version/{v1}"))
        .expect(200);
    c.delete(&format!("/_matrix/client/v3/room_keys/version/{v1}"))
        .expect(200);
    c.get(&format!("/_matrix/client/v3/room_keys/version/{v1}"))
        .expect_err(404, "M_NOT_FOUND");
    c.get(&format!("/_matrix/client/v3/room_keys/keys{q}"))
        .expect_err(404, "M_NOT_FOUND");
    c.delete("/_matrix/client/v3/room_keys/version/999")
        .expect_err(404, "M_NOT_FOUND");
    c.put("/_matrix/client/v3/room_keys/keys", &json!({"rooms": {}}))
        .expect_err(400, "M_MISSING_PARAM");
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
