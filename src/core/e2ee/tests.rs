use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::json;

use super::*;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn public(k: &SigningKey) -> String {
    STANDARD_NO_PAD.encode(k.verifying_key().as_bytes())
}

fn sign(value: &mut Value, user: &str, key_id: &str, k: &SigningKey) {
    let object = value.as_object().expect("object");
    let message = signable_bytes(object).expect("canonical");
    let sig = STANDARD_NO_PAD.encode(k.sign(message.as_bytes()).to_bytes());
    value["signatures"][user][key_id] = json!(sig);
}

fn device_keys(k: &SigningKey) -> Value {
    let mut v = json!({
        "user_id": "@a:hs",
        "device_id": "DEV",
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {"ed25519:DEV": public(k), "curve25519:DEV": "curvekey"},
        "signatures": {},
    });
    sign(&mut v, "@a:hs", "ed25519:DEV", k);
    v
}

#[test]
fn accepts_self_signed_device_keys() {
    let k = key(1);
    let checked = check_device_keys(&device_keys(&k), "@a:hs", "DEV").expect("valid");
    assert_eq!(checked.ed25519, public(&k));
}

#[test]
fn unsigned_field_is_not_signed() {
    let mut v = device_keys(&key(1));
    v["unsigned"] = json!({"device_display_name": "x"});
    assert!(check_device_keys(&v, "@a:hs", "DEV").is_ok());
}

#[test]
fn refuses_wrong_owner_tampering_and_foreign_signatures() {
    let k = key(1);
    let v = device_keys(&k);
    assert!(matches!(
        check_device_keys(&v, "@b:hs", "DEV"),
        Err(KeyCheck::Invalid(_))
    ));
    assert!(matches!(
        check_device_keys(&v, "@a:hs", "OTHER"),
        Err(KeyCheck::Invalid(_))
    ));

    let mut tampered = v.clone();
    tampered["keys"]["curve25519:DEV"] = json!("other");
    assert!(matches!(
        check_device_keys(&tampered, "@a:hs", "DEV"),
        Err(KeyCheck::BadSignature(_))
    ));

    // Signed by a different key than the one it names.
    let mut foreign = json!({
        "user_id": "@a:hs", "device_id": "DEV", "algorithms": [],
        "keys": {"ed25519:DEV": public(&k), "curve25519:DEV": "c"},
    });
    sign(&mut foreign, "@a:hs", "ed25519:DEV", &key(2));
    assert!(matches!(
        check_device_keys(&foreign, "@a:hs", "DEV"),
        Err(KeyCheck::BadSignature(_))
    ));

    let mut missing = v;
    missing.as_object_mut().expect("object").remove("signatures");
    assert!(matches!(
        check_device_keys(&missing, "@a:hs", "DEV"),
        Err(KeyCheck::BadSignature(_))
    ));
    assert!(check_device_keys(&json!("x"), "@a:hs", "DEV").is_err());
}

#[test]
fn cross_signing_key_shape() {
    let k = key(3);
    let pk = public(&k);
    let v = json!({"user_id": "@a:hs", "usage": ["master"], "keys": {format!("ed25519:{pk}"): pk}});
    assert_eq!(
        check_cross_signing_key(&v, "@a:hs", CrossSigningKind::Master),
        Ok(pk.clone())
    );
    assert!(check_cross_signing_key(&v, "@a:hs", CrossSigningKind::SelfSigning).is_err());
    assert!(check_cross_signing_key(&v, "@b:hs", CrossSigningKind::Master).is_err());
    let misnamed = json!({"user_id": "@a:hs", "usage": ["master"], "keys": {"ed25519:x": pk}});
    assert!(check_cross_signing_key(&misnamed, "@a:hs", CrossSigningKind::Master).is_err());
    let two = json!({"user_id": "@a:hs", "usage": ["master"], "keys": {format!("ed25519:{pk}"): pk, "ed25519:y": "y"}});
    assert!(check_cross_signing_key(&two, "@a:hs", CrossSigningKind::Master).is_err());
}

#[test]
fn verifies_signatures_by_other_keys() {
    let master = key(4);
    let ssk = key(5);
    let ssk_pk = public(&ssk);
    let mut v =
        json!({"user_id": "@a:hs", "usage": ["self_signing"], "keys": {format!("ed25519:{ssk_pk}"): ssk_pk}});
    let master_id = format!("ed25519:{}", public(&master));
    sign(&mut v, "@a:hs", &master_id, &master);
    let object = v.as_object().expect("object");
    assert_eq!(
        verify_signature(object, "@a:hs", &master_id, &public(&master)),
        Ok(())
    );
    assert!(verify_signature(object, "@a:hs", &master_id, &public(&ssk)).is_err());
    assert!(verify_signature(object, "@b:hs", &master_id, &public(&master)).is_err());
}

#[test]
fn same_key_ignores_signatures() {
    let a = device_keys(&key(1));
    let mut b = a.clone();
    b["signatures"]["@x:hs"] = json!({"ed25519:Z": "sig"});
    b["unsigned"] = json!({"n": 1});
    assert!(same_key(a.as_object().expect("o"), b.as_object().expect("o")));
    b["keys"]["curve25519:DEV"] = json!("changed");
    assert!(!same_key(a.as_object().expect("o"), b.as_object().expect("o")));
}

#[test]
fn merges_signatures() {
    let mut object = json!({"signatures": {"@a:hs": {"ed25519:A": "1"}}});
    let mut extra = BTreeMap::new();
    extra.insert(
        "@a:hs".to_owned(),
        BTreeMap::from([("ed25519:B".to_owned(), "2".to_owned())]),
    );
    extra.insert(
        "@c:hs".to_owned(),
        BTreeMap::from([("ed25519:C".to_owned(), "3".to_owned())]),
    );
    merge_signatures(object.as_object_mut().expect("o"), &extra);
    assert_eq!(
        object,
        json!({"signatures": {"@a:hs": {"ed25519:A": "1", "ed25519:B": "2"}, "@c:hs": {"ed25519:C": "3"}}})
    );
}

#[test]
fn key_ids_and_positions() {
    assert_eq!(
        split_key_id("signed_curve25519:AAAAHg"),
        Some(("signed_curve25519", "AAAAHg"))
    );
    assert_eq!(split_key_id("nocolon"), None);
    assert_eq!(split_key_id(":x"), None);
    assert_eq!(device_list_position("12"), Some(12));
    assert_eq!(device_list_position("-1"), None);
    assert_eq!(device_list_position("s1"), None);
}

#[test]
fn backup_replacement_rule() {
    let m = |v, i, f| BackupKeyMeta {
        is_verified: v,
        first_message_index: i,
        forwarded_count: f,
    };
    assert!(backup_replaces(m(true, 9, 9), m(false, 0, 0)));
    assert!(!backup_replaces(m(false, 0, 0), m(true, 9, 9)));
    assert!(backup_replaces(m(false, 1, 9), m(false, 2, 0)));
    assert!(!backup_replaces(m(false, 3, 0), m(false, 2, 0)));
    assert!(backup_replaces(m(false, 2, 0), m(false, 2, 1)));
    assert!(!backup_replaces(m(false, 2, 1), m(false, 2, 1)));
}
