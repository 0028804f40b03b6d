use ruma::room_version_rules::{RedactionRules, RoomVersionRules};
use serde_json::json;

use super::*;
use crate::core::canonical::{self, to_canonical_value};
use crate::core::keys::{public_key_map, verify_object, SigningKey};
use crate::core::testing::spec_vectors;

fn obj(value: serde_json::Value) -> CanonicalJsonObject {
    match to_canonical_value(value) {
        Ok(CanonicalJsonValue::Object(o)) => o,
        other => panic!("not an object: {other:?}"),
    }
}

fn spec_key(v: &serde_json::Value) -> SigningKey {
    let seed = v["signing_key_seed_base64"].as_str().expect("seed");
    let version = v["key_id"]
        .as_str()
        .and_then(|k| k.strip_prefix("ed25519:"))
        .expect("key id");
    SigningKey::parse(&format!("ed25519 {version} {seed}")).expect("key")
}

#[test]
fn spec_canonical_json_vectors() {
    let v = spec_vectors();
    let cases = v["canonical_json"].as_array().expect("cases");
    assert!(cases.len() >= 10);
    for case in cases {
        let input = case["input"].as_str().expect("input");
        let expected = case["canonical"].as_str().expect("canonical");
        assert_eq!(
            canonical::canonicalize(input).as_deref(),
            Ok(expected),
            "input {input}"
        );
    }
}

#[test]
fn spec_json_signing_vectors() {
    let v = spec_vectors();
    let key = spec_key(&v);
    let server = v["server_name"].as_str().expect("server");
    let keys = public_key_map(&[(server, &key.key_id(), &key.public_key_base64())]).expect("keys");
    for case in v["json_signing"].as_array().expect("cases") {
        let mut object = obj(case["input"].clone());
        key.sign_object(server, &mut object).expect("sign");
        assert_eq!(object, obj(case["signed"].clone()));
        assert!(verify_object(&keys, &object));
    }
}

#[test]
fn spec_event_signing_vectors_v1() {
    let v = spec_vectors();
    let key = spec_key(&v);
    let server = v["server_name"].as_str().expect("server");
    for case in v["event_signing"].as_array().expect("cases") {
        let mut object = obj(case["input"].clone());
        // The spec's inputs carry empty `hashes`/`signatures` placeholders (or none at all).
        object.remove("hashes");
        object.remove("signatures");
        hash_and_sign(&mut object, &RoomVersionRules::V1, server, &key).expect("sign");
        let expected = obj(case["signed"].clone());
        assert_eq!(object, expected);
        assert!(content_hash_matches(&object));
    }
}

#[test]
fn event_ids_follow_the_version_format() {
    let key = SigningKey::from_seed([7; 32], "k").expect("key");
    let base = json!({
        "type": "m.room.message", "room_id": "!r:x", "sender": "@a:x", "origin_server_ts": 1,
        "content": {"body": "hi"}, "prev_events": [], "auth_events": [], "depth": 1,
    });
    let mut v3 = obj(base.clone());
    let hash3 = hash_and_sign(&mut v3, &RoomVersionRules::V3, "x", &key).expect("sign");
    let mut v4 = obj(base.clone());
    let hash4 = hash_and_sign(&mut v4, &RoomVersionRules::V4, "x", &key).expect("sign");
    assert_eq!(hash3.len(), 43);
    // Same bytes, different alphabets.
    assert_eq!(hash3.replace('+', "-").replace('/', "_"), hash4);
    assert_eq!(
        event_id(&v4, &RoomVersionRules::V4).expect("id").as_str(),
        format!("${hash4}")
    );
    // Unsigned data and signatures do not change the id.
    v4.insert("unsigned".into(), obj(json!({"age": 5})).into());
    v4.remove("signatures");
    assert_eq!(reference_hash(&v4, &RoomVersionRules::V4).expect("hash"), hash4);
    // v1 reads the id from the event.
    let mut v1 = obj(base);
    v1.insert("event_id".into(), CanonicalJsonValue::String("$abc:x".into()));
    assert_eq!(
        event_id(&v1, &RoomVersionRules::V1).expect("id").as_str(),
        "$abc:x"
    );
}

#[test]
fn oversized_events_cannot_be_hashed() {
    let big = "a".repeat(MAX_PDU_BYTES);
    let o = obj(json!({"type": "m.room.message", "content": {"body": big}}));
    assert_eq!(content_hash(&o), Err(HashError::TooLarge));
}

fn keys_of(o: &CanonicalJsonObject, field: &str) -> Vec<String> {
    o.get(field)
        .and_then(CanonicalJsonValue::as_object)
        .map(|c| c.keys().cloned().collect())
        .unwrap_or_default()
}

fn event(kind: &str, content: serde_json::Value) -> CanonicalJsonObject {
    obj(json!({
        "type": kind, "room_id": "!r:x", "sender": "@a:x", "origin_server_ts": 1, "origin": "x",
        "content": content, "prev_events": [], "auth_events": [], "depth": 4, "state_key": "",
        "membership": "join", "prev_state": [], "redacts": "$e",
        "hashes": {"sha256": "abc"}, "signatures": {"x": {"ed25519:1": "sig"}},
        "unsigned": {"age": 1}, "custom": true,
    }))
}

#[test]
fn redaction_keeps_the_version_specific_keys() {
    let create = json!({"creator": "@a:x", "room_version": "1", "m.federate": false, "extra": 1});
    let member = json!({
        "membership": "join", "displayname": "A", "join_authorised_via_users_server": "@b:x",
        "third_party_invite": {"signed": {"token": "t"}, "display_name": "d"},
    });
    let jr = json!({"join_rule": "restricted", "allow": [{"type": "m.room_membership"}], "x": 1});
    let pl = json!({"users": {}, "invite": 50, "ban": 50, "events": {}, "notifications": {}});
    let redaction = json!({"redacts": "$e", "reason": "spam"});
    let aliases = json!({"aliases": ["#a:x"]});
    let msg = json!({"body": "secret", "msgtype": "m.text"});

    // v1: aliases kept, origin/membership/prev_state kept, create content pruned to creator.
    let r = redact(event("m.room.create", create.clone()), &RedactionRules::V1).expect("redact");
    assert_eq!(keys_of(&r, "content"), ["creator"]);
    assert!(r.contains_key("origin") && r.contains_key("membership") && r.contains_key("prev_state"));
    assert!(!r.contains_key("custom") && !r.contains_key("unsigned"));
    assert!(r.contains_key("hashes") && r.contains_key("signatures"));
    let r = redact(event("m.room.aliases", aliases.clone()), &RedactionRules::V1).expect("redact");
    assert_eq!(keys_of(&r, "content"), ["aliases"]);
    let r = redact(event("m.room.message", msg.clone()), &RedactionRules::V1).expect("redact");
    assert!(keys_of(&r, "content").is_empty());

    // v6: aliases no longer special.
    let r = redact(event("m.room.aliases", aliases), &RedactionRules::V6).expect("redact");
    assert!(keys_of(&r, "content").is_empty());

    // v8: join rules keep `allow`; v9: member keeps join_authorised_via_users_server.
    let r = redact(event("m.room.join_rules", jr.clone()), &RedactionRules::V6).expect("redact");
    assert_eq!(keys_of(&r, "content"), ["join_rule"]);
    let r = redact(event("m.room.join_rules", jr), &RedactionRules::V8).expect("redact");
    assert_eq!(keys_of(&r, "content"), ["allow", "join_rule"]);
    let r = redact(event("m.room.member", member.clone()), &RedactionRules::V8).expect("redact");
    assert_eq!(keys_of(&r, "content"), ["membership"]);
    let r = redact(event("m.room.member", member.clone()), &RedactionRules::V9).expect("redact");
    assert_eq!(
        keys_of(&r, "content"),
        ["join_authorised_via_users_server", "membership"]
    );

    // v11: whole create content, PL invite, redaction `redacts`, 3pid signed, top-level origin etc. gone.
    let r = redact(event("m.room.create", create), &RedactionRules::V11).expect("redact");
    assert_eq!(
        keys_of(&r, "content"),
        ["creator", "extra", "m.federate", "room_version"]
    );
    assert!(!r.contains_key("origin") && !r.contains_key("membership") && !r.contains_key("prev_state"));
    let r = redact(event("m.room.power_levels", pl.clone()), &RedactionRules::V9).expect("redact");
    assert!(!keys_of(&r, "content").contains(&"invite".to_owned()));
    let r = redact(event("m.room.power_levels", pl), &RedactionRules::V11).expect("redact");
    assert!(keys_of(&r, "content").contains(&"invite".to_owned()));
    let r = redact(event("m.room.redaction", redaction.clone()), &RedactionRules::V9).expect("redact");
    assert!(keys_of(&r, "content").is_empty());
    let r = redact(event("m.room.redaction", redaction), &RedactionRules::V11).expect("redact");
    assert_eq!(keys_of(&r, "content"), ["redacts"]);
    let r = redact(event("m.room.member", member), &RedactionRules::V11).expect("redact");
    assert_eq!(
        keys_of(&r, "content"),
        [
            "join_authorised_via_users_server",
            "membership",
            "third_party_invite"
        ]
    );
    let tpi = r
        .get("content")
        .and_then(CanonicalJsonValue::as_object)
        .and_then(|c| c.get("third_party_invite"))
        .and_then(CanonicalJsonValue::as_object)
        .expect("3pi");
    assert_eq!(tpi.keys().collect::<Vec<_>>(), ["signed"]);
    let r = redact(event("m.room.message", msg), &RedactionRules::V11).expect("redact");
    assert!(keys_of(&r, "content").is_empty());
}
