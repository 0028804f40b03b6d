//! Federation I against the real worker, with a scripted remote server: keys fetched
//! and cached, `X-Matrix` verified before any handler, every refusal with the spec's
//! error, the notary, and what other servers may ask about users, keys, aliases and
//! rooms.

use neurite::core::keys::signed_by;
use neurite::core::xmatrix;
use serde_json::json;

use crate::e2ee::Device;
use crate::harness::{enc, new_user, shared, unique, Options, Server};
use crate::remote::Remote;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

fn key_fetches(remote: &Remote) -> usize {
    remote
        .seen()
        .iter()
        .filter(|s| s.target.starts_with("/_matrix/key/v2/server"))
        .count()
}

/// Neurite's own published key.
fn neurite_key(server: &Server) -> (String, String) {
    let body = server.client().get("/_matrix/key/v2/server").expect(200);
    let (id, entry) = body["verify_keys"]
        .as_object()
        .expect("keys")
        .iter()
        .next()
        .expect("a key");
    (id.clone(), entry["key"].as_str().expect("key").to_owned())
}

#[test]
fn signed_requests_are_verified_with_keys_fetched_from_the_origin() {
    let server = shared();
    let remote = Remote::start(41);
    let (alice, alice_id) = new_user("fedprof");
    alice
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(&alice_id)),
            &json!({"displayname": "Alice F"}),
        )
        .expect(200);
    let target = format!("/_matrix/federation/v1/query/profile?user_id={}", enc(&alice_id));
    let body = remote.request(server, "GET", &target, None).expect(200);
    assert_eq!(body, json!({"displayname": "Alice F"}));
    let field = format!("{target}&field=avatar_url");
    assert_eq!(remote.request(server, "GET", &field, None).expect(200), json!({}));

    // Neurite fetched the remote's key with a request it signed itself.
    let fetch = remote
        .seen()
        .into_iter()
        .find(|s| s.target == "/_matrix/key/v2/server")
        .expect("Neurite fetched the remote's keys");
    let auth = xmatrix::parse(fetch.authorization.as_deref().expect("signed")).expect("X-Matrix");
    assert_eq!(auth.origin, server.server_name);
    assert_eq!(auth.destination.as_deref(), Some(remote.name.as_str()));
    let (key_id, key) = neurite_key(server);
    assert_eq!(auth.key, key_id);
    assert!(xmatrix::verify(
        &auth,
        &key,
        "GET",
        "/_matrix/key/v2/server",
        None
    ));

    // The key is kept: more requests fetch nothing.
    let fetched = key_fetches(&remote);
    for _ in 0..3 {
        remote.request(server, "GET", &target, None).expect(200);
    }
    assert_eq!(key_fetches(&remote), fetched);

    // A user of another server, or no such user.
    let other = format!(
        "/_matrix/federation/v1/query/profile?user_id={}",
        enc(&remote.user("x"))
    );
    remote
        .request(server, "GET", &other, None)
        .expect_err(400, "M_INVALID_PARAM");
    let nobody = format!(
        "/_matrix/federation/v1/query/profile?user_id={}",
        enc(&format!("@{}:{}", unique("nobody"), server.server_name))
    );
    remote
        .request(server, "GET", &nobody, None)
        .expect_err(404, "M_NOT_FOUND");
}

#[test]
fn bad_authorization_is_refused_before_any_handler() {
    let server = shared();
    let remote = Remote::start(42);
    let path = "/_matrix/federation/v1/user/keys/query";
    let body = json!({"device_keys": {}});
    remote.request(server, "POST", path, Some(&body)).expect(200);

    let client = server.client();
    let no_header = client.post(path, &body);
    no_header.expect_err(401, "M_UNAUTHORIZED");
    let bearer = remote.request_with(server, "POST", path, Some(&body), "Bearer abc");
    bearer.expect_err(401, "M_UNAUTHORIZED");
    let garbled = remote.request_with(
        server,
        "POST",
        path,
        Some(&body),
        "X-Matrix origin=\"unterminated",
    );
    garbled.expect_err(401, "M_UNAUTHORIZED");

    // Signed for another path, another body, another destination, with an unknown key.
    let other_path = remote.authorization(
        &server.server_name,
        "POST",
        "/_matrix/federation/v1/user/keys/claim",
        Some(&body),
    );
    remote
        .request_with(server, "POST", path, Some(&body), &other_path)
        .expect_err(401, "M_UNAUTHORIZED");
    let other_body = remote.authorization(
        &server.server_name,
        "POST",
        path,
        Some(&json!({"device_keys": {"@a:b": []}})),
    );
    remote
        .request_with(server, "POST", path, Some(&body), &other_body)
        .expect_err(401, "M_UNAUTHORIZED");
    let elsewhere = remote.authorization("elsewhere.example", "POST", path, Some(&body));
    remote
        .request_with(server, "POST", path, Some(&body), &elsewhere)
        .expect_err(401, "M_UNAUTHORIZED");
    let good = remote.authorization(&server.server_name, "POST", path, Some(&body));
    let unknown_key = good.replace(&remote.key.key_id(), "ed25519:unknown");
    remote
        .request_with(server, "POST", path, Some(&body), &unknown_key)
        .expect_err(401, "M_UNAUTHORIZED");
    // Claiming to be this server.
    let spoofed = good.replace(
        &format!("origin=\"{}\"", remote.name),
        &format!("origin=\"{}\"", server.server_name),
    );
    remote
        .request_with(server, "POST", path, Some(&body), &spoofed)
        .expect_err(401, "M_UNAUTHORIZED");
    // A body that is not JSON.
    let resp = server
        .client()
        .raw("POST", path, Some(b"{nope"), &[("Authorization", good.as_str())]);
    resp.expect_err(400, "M_NOT_JSON");
    // A signed request for an endpoint that does not exist.
    remote
        .request(server, "GET", "/_matrix/federation/v1/nope", None)
        .expect_err(404, "M_UNRECOGNIZED");
}

#[test]
fn expired_and_forged_keys_are_refused() {
    let server = shared();
    let target = "/_matrix/federation/v1/user/keys/query";
    let body = json!({"device_keys": {}});

    let expired = Remote::start(43);
    expired.set_key_response(Some(expired.key_response(now_ms() - 60_000)));
    expired
        .request(server, "POST", target, Some(&body))
        .expect_err(401, "M_UNAUTHORIZED");

    // A key response signed by some other key than the one it lists.
    let forged = Remote::start(44);
    let impostor =
        neurite::core::keys::SigningKey::from_seed([99; 32], &forged.key.key_id()[8..]).expect("key");
    let mut response = forged.key_response(now_ms() + 3_600_000);
    let signed = serde_json::to_value(
        neurite::core::keys::server_keys_response(&forged.name, &impostor, &[], now_ms() + 3_600_000)
            .expect("sign"),
    )
    .expect("json");
    response["signatures"] = signed["signatures"].clone();
    forged.set_key_response(Some(response));
    forged
        .request(server, "POST", target, Some(&body))
        .expect_err(401, "M_UNAUTHORIZED");
}

#[test]
fn the_notary_answers_other_servers_keys_countersigned() {
    let server = shared();
    let remote = Remote::start(45);
    let client = server.client();
    let body = json!({"server_keys": {remote.name.clone(): {}, server.server_name.clone(): {}}});
    let answer = client.post("/_matrix/key/v2/query", &body).expect(200);
    let responses = answer["server_keys"].as_array().expect("server_keys");
    assert_eq!(responses.len(), 2, "{answer}");
    let (nid, nkey) = neurite_key(server);
    let remote_id = remote.key.key_id();
    let remote_pk = remote.key.public_key_base64();
    for response in responses {
        let name = response["server_name"].as_str().expect("server_name");
        let object = serde_json::from_value(response.clone()).expect("canonical");
        assert!(
            signed_by(&object, &server.server_name, &nid, &nkey),
            "countersigned by Neurite: {response}"
        );
        if name == remote.name {
            assert!(
                signed_by(&object, &remote.name, &remote_id, &remote_pk),
                "still signed by the remote"
            );
            assert_eq!(response["verify_keys"][&remote_id]["key"], json!(remote_pk));
        }
    }
    let one = client
        .get(&format!("/_matrix/key/v2/query/{}", enc(&remote.name)))
        .expect(200);
    assert_eq!(one["server_keys"][0]["server_name"], json!(remote.name));
    let unknown = client
        .get("/_matrix/key/v2/query/unreachable.invalid")
        .expect(200);
    assert_eq!(unknown["server_keys"], json!([]));
    client
        .post("/_matrix/key/v2/query", &json!({"server_keys": 5}))
        .expect_err(400, "M_BAD_JSON");
}

#[test]
fn other_servers_read_devices_keys_aliases_and_the_directory() {
    let server = shared();
    let remote = Remote::start(46);
    let mut device = Device::register("fedkeys");
    device.upload(1, false);
    let user = device.user_id.clone();

    let devices = remote
        .request(
            server,
            "GET",
            &format!("/_matrix/federation/v1/user/devices/{}", enc(&user)),
            None,
        )
        .expect(200);
    assert_eq!(devices["user_id"], json!(user));
    let list = devices["devices"].as_array().expect("devices");
    assert_eq!(list.len(), 1, "{devices}");
    assert_eq!(list[0]["device_id"], json!(device.device_id));
    assert_eq!(
        list[0]["keys"]["keys"][format!("ed25519:{}", device.device_id)],
        json!(device.ed25519())
    );

    let query = json!({"device_keys": {user.clone(): [], remote.user("x"): []}});
    let keys = remote
        .request(
            server,
            "POST",
            "/_matrix/federation/v1/user/keys/query",
            Some(&query),
        )
        .expect(200);
    assert!(
        keys["device_keys"][&user].get(&device.device_id).is_some(),
        "{keys}"
    );
    assert!(
        keys["device_keys"].get(remote.user("x")).is_none(),
        "only local users are answered"
    );
    assert!(keys.get("user_signing_keys").is_none());

    let claim = json!({"one_time_keys": {user.clone(): {device.device_id.clone(): "signed_curve25519"}}});
    let path = "/_matrix/federation/v1/user/keys/claim";
    let first = remote.request(server, "POST", path, Some(&claim)).expect(200);
    let claimed = first["one_time_keys"][&user][&device.device_id]
        .as_object()
        .expect("claimed");
    assert_eq!(claimed.len(), 1, "{first}");
    let second = remote.request(server, "POST", path, Some(&claim)).expect(200);
    assert!(
        second["one_time_keys"].get(&user).is_none(),
        "the only key went once: {second}"
    );

    // An alias and the public directory.
    let (owner, _) = new_user("fedalias");
    let alias_local = unique("fedroom");
    let room = owner
        .post(
            "/_matrix/client/v3/createRoom",
            &json!({"room_alias_name": alias_local, "visibility": "public", "name": "Fed room"}),
        )
        .expect(200)["room_id"]
        .as_str()
        .expect("room_id")
        .to_owned();
    let alias = format!("#{alias_local}:{}", server.server_name);
    let dir = remote
        .request(
            server,
            "GET",
            &format!(
                "/_matrix/federation/v1/query/directory?room_alias={}",
                enc(&alias)
            ),
            None,
        )
        .expect(200);
    assert_eq!(dir, json!({"room_id": room, "servers": [server.server_name]}));
    let missing = format!("#{}:{}", unique("none"), server.server_name);
    remote
        .request(
            server,
            "GET",
            &format!(
                "/_matrix/federation/v1/query/directory?room_alias={}",
                enc(&missing)
            ),
            None,
        )
        .expect_err(404, "M_NOT_FOUND");
    let rooms = remote
        .request(
            server,
            "GET",
            "/_matrix/federation/v1/publicRooms?limit=100",
            None,
        )
        .expect(200);
    let listed = rooms["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .any(|r| r["room_id"] == json!(room));
    let rooms_post = remote
        .request(
            server,
            "POST",
            "/_matrix/federation/v1/publicRooms",
            Some(&json!({"limit": 100, "filter": {"generic_search_term": "fed room"}})),
        )
        .expect(200);
    assert!(listed || rooms["next_batch"].is_string(), "{rooms}");
    assert!(
        rooms_post["chunk"]
            .as_array()
            .expect("chunk")
            .iter()
            .any(|r| r["room_id"] == json!(room)),
        "{rooms_post}"
    );
}

#[test]
fn openid_tokens_prove_who_a_user_is() {
    let server = shared();
    let (alice, alice_id) = new_user("fedoid");
    let token = alice
        .post(
            &format!("/_matrix/client/v3/user/{}/openid/request_token", enc(&alice_id)),
            &json!({}),
        )
        .expect(200);
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["matrix_server_name"], json!(server.server_name));
    let access = token["access_token"].as_str().expect("token");
    let client = server.client();
    let info = client
        .get(&format!(
            "/_matrix/federation/v1/openid/userinfo?access_token={}",
            enc(access)
        ))
        .expect(200);
    assert_eq!(info, json!({"sub": alice_id}));
    client
        .get("/_matrix/federation/v1/openid/userinfo?access_token=nope")
        .expect_err(401, "M_UNKNOWN_TOKEN");
    let (_, bob_id) = new_user("fedoid2");
    alice
        .post(
            &format!("/_matrix/client/v3/user/{}/openid/request_token", enc(&bob_id)),
            &json!({}),
        )
        .expect_err(403, "M_FORBIDDEN");
}

#[test]
fn a_denied_server_is_refused() {
    let remote = Remote::start(47);
    let server = Server::start(Options {
        federation_deny: "127.0.0.1:*".into(),
        ..Options::default()
    });
    let body = json!({"device_keys": {}});
    remote
        .request(
            &server,
            "POST",
            "/_matrix/federation/v1/user/keys/query",
            Some(&body),
        )
        .expect_err(403, "M_FORBIDDEN");
    assert_eq!(key_fetches(&remote), 0, "nothing was fetched for a denied server");
}

#[test]
fn two_neurites_on_loopback_reach_each_other() {
    let b = Server::start(Options::default());
    let (bob, bob_id) = b.client().register(&unique("bob"), "correct horse battery");
    bob.put(
        &format!("/_matrix/client/v3/profile/{}/displayname", enc(&bob_id)),
        &json!({"displayname": "Bob on B"}),
    )
    .expect(200);
    let (alice, alice_id) = new_user("alice2n");
    alice
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(&alice_id)),
            &json!({"displayname": "Alice on A"}),
        )
        .expect(200);
    // Each asks the other with a signed request, verified with a key fetched from it.
    let theirs = alice
        .get(&format!("/_matrix/client/v3/profile/{}", enc(&bob_id)))
        .expect(200);
    assert_eq!(theirs["displayname"], "Bob on B");
    let ours = bob
        .get(&format!("/_matrix/client/v3/profile/{}", enc(&alice_id)))
        .expect(200);
    assert_eq!(ours["displayname"], "Alice on A");
}

#[test]
fn a_deployed_server_contacts_no_loopback_peer() {
    let remote = Remote::start(48);
    remote.answer(
        "GET",
        "/_matrix/federation/v1/query/profile",
        200,
        json!({"displayname": "never"}),
    );
    let server = Server::start(Options {
        federation_loopback: "off",
        ..Options::default()
    });
    let (alice, _) = server
        .client()
        .register(&unique("alice"), "correct horse battery");
    alice
        .get(&format!("/_matrix/client/v3/profile/{}", enc(&remote.user("r"))))
        .expect_err(404, "M_NOT_FOUND");
    // Nor does it fetch the keys of a loopback server that signs a request to it.
    remote
        .request(
            &server,
            "POST",
            "/_matrix/federation/v1/user/keys/query",
            Some(&json!({"device_keys": {}})),
        )
        .expect_err(401, "M_UNAUTHORIZED");
    assert!(
        remote.seen().is_empty(),
        "the remote was never contacted: {:?}",
        remote.seen()
    );
}
