//! Invites by email through an identity server, against the real worker: a scripted
//! identity server (loopback, plain HTTP in local development) answers the lookup and
//! keeps the invite; its signed binding, handed to `/3pid/onbind`, becomes the user's
//! invite even after the inviter left, and a binding it did not sign changes nothing.

use neurite::core::canonical::parse_object;
use neurite::core::third_party::lookup_address;
use serde_json::{json, Value};

use crate::harness::{create_room, enc, new_user, shared, Client};
use crate::remote::Remote;

const PEPPER: &str = "matrixrocks";

fn identity_server(seed: u8, token: &str) -> Remote {
    let idp = Remote::start(seed);
    idp.answer(
        "GET",
        "/_matrix/identity/v2/hash_details",
        200,
        json!({"lookup_pepper": PEPPER, "algorithms": ["none", "sha256"]}),
    );
    idp.answer(
        "POST",
        "/_matrix/identity/v2/lookup",
        200,
        json!({"mappings": {}}),
    );
    idp.answer(
        "POST",
        "/_matrix/identity/v2/store-invite",
        200,
        json!({
            "token": token,
            "display_name": "b...@example.org",
            "public_keys": [{
                "public_key": idp.key.public_key_base64(),
                "key_validity_url": format!("https://{}/_matrix/identity/v2/pubkey/isvalid", idp.name),
            }],
        }),
    );
    idp
}

fn invite_body(idp: &Remote, address: &str) -> Value {
    json!({"id_server": idp.name, "id_access_token": "idtoken", "medium": "email", "address": address})
}

/// The identity server's signed binding of `mxid` to the invite `token`, signed with
/// `key` (its own, or a forger's).
fn signed(idp: &Remote, key: &neurite::core::keys::SigningKey, mxid: &str, token: &str) -> Value {
    let mut object = parse_object(&json!({"mxid": mxid, "token": token}).to_string()).expect("object");
    key.sign_object(&idp.name, &mut object).expect("sign");
    serde_json::to_value(&object).expect("json")
}

fn onbind(mxid: &str, address: &str, invites: Vec<Value>) -> u16 {
    let body = json!({"medium": "email", "address": address, "mxid": mxid, "invites": invites});
    shared()
        .client()
        .raw(
            "PUT",
            "/_matrix/federation/v1/3pid/onbind",
            Some(body.to_string().as_bytes()),
            &[("Content-Type", "application/json")],
        )
        .status
}

fn membership(c: &Client, room: &str, user: &str) -> Option<Value> {
    let r = c.get(&format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
        enc(room),
        enc(user)
    ));
    (r.status == 200).then_some(r.body)
}

#[test]
fn an_unbound_address_is_invited_and_the_binding_lets_the_user_in() {
    let (alice, alice_id) = new_user("tpa");
    let (bob, bob_id) = new_user("tpb");
    let (carol, carol_id) = new_user("tpc");
    let idp = identity_server(61, "tok-bob");
    let room = create_room(&alice, json!({"preset": "private_chat", "name": "Invites"}));
    let address = "bob@example.org";
    alice
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            &invite_body(&idp, address),
        )
        .expect(200);
    // The identity server was asked with the access token, the hashed address first.
    let seen = idp.seen();
    let lookup = seen
        .iter()
        .find(|s| s.target == "/_matrix/identity/v2/lookup")
        .expect("lookup asked");
    assert_eq!(lookup.authorization.as_deref(), Some("Bearer idtoken"));
    let (_, hashed) = lookup_address(address, "email", PEPPER, &["sha256"]).expect("hash");
    let asked = lookup.body.clone().expect("lookup body");
    assert_eq!(asked["addresses"], json!([hashed]));
    assert_eq!(asked["algorithm"], "sha256");
    let stored = seen
        .iter()
        .find(|s| s.target == "/_matrix/identity/v2/store-invite")
        .and_then(|s| s.body.clone())
        .expect("store-invite asked");
    assert_eq!(
        (
            stored["address"].as_str(),
            stored["room_id"].as_str(),
            stored["sender"].as_str()
        ),
        (Some(address), Some(room.as_str()), Some(alice_id.as_str()))
    );
    // The room holds the pending invite with the identity server's key.
    let pending = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.third_party_invite/tok-bob",
            enc(&room)
        ))
        .expect(200);
    assert_eq!(pending["display_name"], "b...@example.org");
    assert_eq!(pending["public_key"], idp.key.public_key_base64());
    assert!(membership(&alice, &room, &bob_id).is_none());

    // The inviter leaves; the invite still stands.
    alice
        .post(
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
            &json!({}),
        )
        .expect(200);

    // A binding the identity server did not sign: accepted by the endpoint, no invite.
    let forger = neurite::core::keys::SigningKey::from_seed([99; 32], "r61").expect("key");
    let forged = json!({"medium": "email", "address": address, "mxid": carol_id, "room_id": room,
        "sender": alice_id, "signed": signed(&idp, &forger, &carol_id, "tok-bob")});
    assert_eq!(onbind(&carol_id, address, vec![forged]), 200);
    assert!(
        carol
            .post(
                &format!("/_matrix/client/v3/rooms/{}/join", enc(&room)),
                &json!({})
            )
            .status
            >= 400
    );

    // The real binding: Bob is invited by Alice, with the third-party invite in the event.
    let real = json!({"medium": "email", "address": address, "mxid": bob_id, "room_id": room,
        "sender": alice_id, "signed": signed(&idp, &idp.key, &bob_id, "tok-bob")});
    assert_eq!(onbind(&bob_id, address, vec![real]), 200);
    let invite = bob
        .get("/_matrix/client/v3/sync?timeout=0&set_presence=offline")
        .expect(200);
    let invited = &invite["rooms"]["invite"][&room]["invite_state"]["events"];
    assert!(
        invited.as_array().is_some_and(|l| l
            .iter()
            .any(|e| e["type"] == "m.room.member" && e["state_key"] == bob_id.as_str())),
        "{invite}"
    );
    bob.post(
        &format!("/_matrix/client/v3/rooms/{}/join", enc(&room)),
        &json!({}),
    )
    .expect(200);
    let member = bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.member/{}?format=event",
            enc(&room),
            enc(&bob_id)
        ))
        .expect(200);
    assert_eq!(member["content"]["membership"], "join");
    // The invite before the join carried the binding.
    let history = bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=20",
            enc(&room)
        ))
        .expect(200);
    let event = history["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "invite")
        .expect("the invite")
        .clone();
    assert_eq!(event["sender"], alice_id.as_str());
    assert_eq!(
        event["content"]["third_party_invite"]["signed"]["mxid"],
        bob_id.as_str()
    );
    assert_eq!(
        event["content"]["third_party_invite"]["display_name"],
        "b...@example.org"
    );
}

#[test]
fn a_bound_address_invites_its_user_directly_also_from_create_room() {
    let (alice, _) = new_user("tpd");
    let (dave, dave_id) = new_user("tpe");
    let idp = identity_server(62, "unused");
    let address = "dave@example.org";
    let (_, hashed) = lookup_address(address, "email", PEPPER, &["sha256"]).expect("hash");
    idp.answer(
        "POST",
        "/_matrix/identity/v2/lookup",
        200,
        json!({"mappings": { hashed.clone(): dave_id }}),
    );
    let room = create_room(
        &alice,
        json!({"preset": "private_chat", "invite_3pid": [invite_body(&idp, address)]}),
    );
    assert_eq!(
        membership(&alice, &room, &dave_id).map(|m| m["membership"].clone()),
        Some(json!("invite"))
    );
    assert!(
        idp.seen()
            .iter()
            .all(|s| s.target != "/_matrix/identity/v2/store-invite"),
        "a bound address is not stored as an invite"
    );
    dave.post(
        &format!("/_matrix/client/v3/rooms/{}/join", enc(&room)),
        &json!({}),
    )
    .expect(200);
}

#[test]
fn bad_third_party_invites_are_refused_and_change_nothing() {
    let (alice, _) = new_user("tpf");
    let (eve, _) = new_user("tpg");
    let idp = identity_server(63, "tok");
    let room = create_room(&alice, json!({"preset": "private_chat"}));
    let path = format!("/_matrix/client/v3/rooms/{}/invite", enc(&room));
    // Fields missing or empty.
    let mut no_token = invite_body(&idp, "x@example.org");
    no_token
        .as_object_mut()
        .expect("object")
        .remove("id_access_token");
    assert_eq!(alice.post(&path, &no_token).status, 400);
    let mut empty = invite_body(&idp, "x@example.org");
    empty["address"] = json!("");
    alice.post(&path, &empty).expect_err(400, "M_MISSING_PARAM");
    // Not a member: refused before any identity server is asked.
    idp.forget_seen();
    eve.post(&path, &invite_body(&idp, "x@example.org"))
        .expect_err(403, "M_FORBIDDEN");
    assert!(idp.seen().is_empty());
    // An identity server that refuses the token.
    idp.answer(
        "GET",
        "/_matrix/identity/v2/hash_details",
        401,
        json!({"errcode": "M_UNAUTHORIZED"}),
    );
    alice
        .post(&path, &invite_body(&idp, "x@example.org"))
        .expect_err(403, "M_FORBIDDEN");
    // A bad onbind body.
    let r = shared().client().raw(
        "PUT",
        "/_matrix/federation/v1/3pid/onbind",
        Some(b"{\"invites\": 3}"),
        &[("Content-Type", "application/json")],
    );
    assert_eq!(r.status, 400);
    // Nothing was stored in the room.
    let state = alice
        .get(&format!("/_matrix/client/v3/rooms/{}/state", enc(&room)))
        .expect(200);
    assert!(state
        .as_array()
        .expect("state")
        .iter()
        .all(|e| e["type"] != "m.room.third_party_invite"));
}
