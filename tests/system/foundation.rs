//! Identity, discovery, CORS and the error edge.

use ruma::signatures::{verify_json, PublicKeyMap};
use ruma::CanonicalJsonObject;
use serde_json::Value;

use crate::harness::shared;

#[test]
fn client_versions_lists_spec_versions() {
    let body = shared().client().get("/_matrix/client/versions").expect(200);
    let versions: Vec<&str> = body["versions"]
        .as_array()
        .expect("versions array")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(versions.contains(&"v1.1"), "{versions:?}");
    assert!(versions.iter().all(|v| v.starts_with("v1.")), "{versions:?}");
    assert!(body["unstable_features"].is_object());
}

#[test]
fn r0_paths_are_served_as_v3() {
    // An unknown r0 path is still a clean 404, not a crash.
    shared()
        .client()
        .get("/_matrix/client/r0/no/such/thing")
        .expect_err(404, "M_UNRECOGNIZED");
}

#[test]
fn well_known_client_and_server() {
    let server = shared();
    let client = server.client().get("/.well-known/matrix/client").expect(200);
    assert_eq!(client["m.homeserver"]["base_url"], server.base_url());
    let fed = server.client().get("/.well-known/matrix/server").expect(200);
    // Federation is delegated to where the server is reachable: its public base URL.
    assert_eq!(fed["m.server"], format!("127.0.0.1:{}", server.port));
}

#[test]
fn key_server_publishes_a_self_signed_key() {
    let server = shared();
    let body = server.client().get("/_matrix/key/v2/server").expect(200);
    assert_eq!(body["server_name"], server.server_name.as_str());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let valid_until = body["valid_until_ts"].as_u64().expect("valid_until_ts");
    assert!(valid_until > now, "key already expired");
    assert!(valid_until < now + 30 * 24 * 3600 * 1000, "validity too long");

    let verify_keys = body["verify_keys"].as_object().expect("verify_keys");
    assert_eq!(verify_keys.len(), 1);
    let (key_id, key) = verify_keys.iter().next().expect("one key");
    assert!(key_id.starts_with("ed25519:"));
    let key = key["key"].as_str().expect("key");

    // Verify with ruma's implementation, independent of the server's code path.
    let mut keys = PublicKeyMap::new();
    let bytes =
        ruma::serde::Base64::<ruma::serde::base64::Standard, Vec<u8>>::parse(key).expect("base64 key");
    keys.entry(server.server_name.clone())
        .or_default()
        .insert(key_id.clone(), bytes);
    let object: CanonicalJsonObject = serde_json::from_value(body.clone()).expect("canonical");
    verify_json(&keys, &object).expect("signature verifies against the published key");

    // Tampering breaks it.
    let mut tampered = object;
    tampered.insert(
        "valid_until_ts".into(),
        ruma::CanonicalJsonValue::Integer(ruma::Int::try_from(valid_until + 1).expect("int")),
    );
    assert!(verify_json(&keys, &tampered).is_err());
}

#[test]
fn federation_version() {
    let body = shared()
        .client()
        .get("/_matrix/federation/v1/version")
        .expect(200);
    assert_eq!(body["server"]["name"], "Neurite");
    assert!(body["server"]["version"].is_string());
}

#[test]
fn cors_preflight_and_headers() {
    let client = shared().client();
    let pre = client.raw(
        "OPTIONS",
        "/_matrix/client/v3/rooms/%21a%3Ab/send/m.room.message/1",
        None,
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "PUT"),
        ],
    );
    assert_eq!(pre.status, 200);
    assert_eq!(pre.header("access-control-allow-origin"), Some("*"));
    let methods = pre.header("access-control-allow-methods").unwrap_or_default();
    for m in ["GET", "POST", "PUT", "DELETE", "OPTIONS"] {
        assert!(methods.contains(m), "{methods}");
    }
    let allowed = pre.header("access-control-allow-headers").unwrap_or_default();
    for h in ["Authorization", "Content-Type", "X-Requested-With"] {
        assert!(allowed.contains(h), "{allowed}");
    }
    // Ordinary answers, including errors, carry the headers too.
    let ok = client.get("/_matrix/client/versions");
    assert_eq!(ok.header("access-control-allow-origin"), Some("*"));
    let err = client.get("/_matrix/client/v3/nope");
    assert_eq!(err.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn unknown_endpoint_is_404_and_wrong_method_is_405() {
    let client = shared().client();
    client
        .get("/_matrix/client/v3/definitely/not/here")
        .expect_err(404, "M_UNRECOGNIZED");
    client.get("/_matrix/unknown").expect_err(404, "M_UNRECOGNIZED");
    let resp = client.post("/_matrix/client/versions", &serde_json::json!({}));
    resp.expect_err(405, "M_UNRECOGNIZED");
    assert_eq!(resp.header("content-type"), Some("application/json"));
}

#[test]
fn oversized_body_is_413() {
    let client = shared().client();
    let big = vec![b'a'; 5 * 1024 * 1024];
    let resp = client.raw(
        "POST",
        "/_matrix/client/v3/login",
        Some(&big),
        &[("Content-Type", "application/json")],
    );
    resp.expect_err(413, "M_TOO_LARGE");
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
}
