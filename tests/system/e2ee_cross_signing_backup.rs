//! Cross-signing (keys, UIA to replace them, signatures and who sees them) and
//! server-side key backup (versions, etags, counts, the replacement rule), against
//! the running worker. Helpers come from `e2ee`.

use serde_json::{json, Value};
use vodozemac::Ed25519SecretKey;

use crate::e2ee::{signable, signed_by, Device};

/// A cross-signing key of `kind` for `user`, signed by `signer` if given.
pub(crate) fn cross_key(
    user: &str,
    kind: &str,
    key: &Ed25519SecretKey,
    signer: Option<&Ed25519SecretKey>,
) -> Value {
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
