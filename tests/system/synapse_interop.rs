//! Neurite and a real Synapse (pinned, from PyPI, installed on first use under
//! `target/bench/synapse/`) on loopback: each fetches the other's keys and verifies
//! the other's signed requests. Neurite serves HTTPS with a self-signed certificate
//! (Synapse federates only over HTTPS); Synapse serves plain HTTP, which Neurite's
//! local-development setting allows for loopback peers.

use std::sync::OnceLock;

use serde_json::json;

use crate::harness::{enc, unique, Client, Options, Server};
use crate::synapse::{install, Install, Synapse};

pub(crate) fn synapse_install() -> &'static Install {
    static INSTALL: OnceLock<Install> = OnceLock::new();
    INSTALL.get_or_init(|| install().unwrap_or_else(|e| panic!("installing Synapse: {e}")))
}

#[test]
fn synapse_and_neurite_verify_each_others_signed_requests() {
    let synapse = Synapse::start_federating(synapse_install()).unwrap_or_else(|e| panic!("{e}"));
    let neurite = Server::start(Options {
        https: true,
        ..Options::default()
    });
    let (alice, alice_id) = neurite
        .client()
        .register(&unique("alice"), "correct horse battery");
    alice
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(&alice_id)),
            &json!({"displayname": "Alice on Neurite"}),
        )
        .expect(200);
    let synapse_client = Client {
        base: synapse.base_url(),
        token: None,
    };
    let (bob, bob_id) = synapse_client.register(&unique("bob"), "correct horse battery");
    bob.put(
        &format!("/_matrix/client/v3/profile/{}/displayname", enc(&bob_id)),
        &json!({"displayname": "Bob on Synapse"}),
    )
    .expect(200);

    // Synapse asks Neurite (a request Synapse signed and Neurite verified, with the key
    // it fetched from Synapse).
    let profile = bob
        .get(&format!("/_matrix/client/v3/profile/{}", enc(&alice_id)))
        .expect(200);
    assert_eq!(profile["displayname"], "Alice on Neurite", "{profile}");
    // Neurite asks Synapse (signed by Neurite; Synapse fetched Neurite's key over HTTPS).
    let profile = alice
        .get(&format!("/_matrix/client/v3/profile/{}", enc(&bob_id)))
        .expect(200);
    assert_eq!(profile["displayname"], "Bob on Synapse", "{profile}");

    // Synapse's key query for a Neurite user goes through without a failure.
    let keys = bob
        .post(
            "/_matrix/client/v3/keys/query",
            &json!({"device_keys": {alice_id.clone(): []}}),
        )
        .expect(200);
    assert_eq!(keys["failures"], json!({}), "{keys}");
    assert!(keys["device_keys"].get(&alice_id).is_some(), "{keys}");

    // Each now holds the other's key.
    let notary = neurite
        .client()
        .get(&format!("/_matrix/key/v2/query/{}", enc(&synapse.server_name)))
        .expect(200);
    assert_eq!(
        notary["server_keys"][0]["server_name"],
        json!(synapse.server_name),
        "{notary}"
    );
    let theirs = synapse_client
        .get(&format!("/_matrix/key/v2/query/{}", enc(&neurite.server_name)))
        .expect(200);
    assert_eq!(
        theirs["server_keys"][0]["server_name"],
        json!(neurite.server_name),
        "{theirs}"
    );
}

/// Bodies of the newest messages of a room as `client` reads them.
pub(crate) fn bodies(client: &Client, room: &str) -> Vec<String> {
    let page = client.get(&format!(
        "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
        enc(room)
    ));
    if page.status != 200 {
        return Vec::new();
    }
    page.body["chunk"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

/// A Synapse and a Neurite that federate with each other, each with a fresh user:
/// `(synapse, neurite, alice on Neurite, her id, bob on Synapse, his id)`.
pub(crate) fn federating_pair() -> (Synapse, Server, Client, String, Client, String) {
    let synapse = Synapse::start_federating(synapse_install()).unwrap_or_else(|e| panic!("{e}"));
    let neurite = Server::start(Options {
        https: true,
        ..Options::default()
    });
    let (alice, alice_id) = neurite
        .client()
        .register(&unique("alice"), "correct horse battery");
    let synapse_client = Client {
        base: synapse.base_url(),
        token: None,
    };
    let (bob, bob_id) = synapse_client.register(&unique("bob"), "correct horse battery");
    (synapse, neurite, alice, alice_id, bob, bob_id)
}

pub(crate) fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

#[test]
fn a_synapse_user_joins_a_neurite_room_and_they_talk() {
    let synapse = Synapse::start_federating(synapse_install()).unwrap_or_else(|e| panic!("{e}"));
    let neurite = Server::start(Options {
        https: true,
        ..Options::default()
    });
    let (alice, _) = neurite
        .client()
        .register(&unique("alice"), "correct horse battery");
    let room = alice
        .post(
            "/_matrix/client/v3/createRoom",
            &json!({"preset": "public_chat", "name": "Across"}),
        )
        .expect(200)["room_id"]
        .as_str()
        .expect("room_id")
        .to_owned();
    let synapse_client = Client {
        base: synapse.base_url(),
        token: None,
    };
    let (bob, bob_id) = synapse_client.register(&unique("bob"), "correct horse battery");
    // Synapse asks Neurite for a join template, signs it and sends it back.
    let joined = bob.post(
        &format!(
            "/_matrix/client/v3/join/{}?server_name={}",
            enc(&room),
            enc(&neurite.server_name)
        ),
        &json!({}),
    );
    assert_eq!(joined.status, 200, "{}", joined.body);
    eventually("bob among the room's members on Neurite", || {
        alice
            .get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)))
            .body["joined"]
            .get(&bob_id)
            .is_some()
    });
    alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
                enc(&room),
                unique("t")
            ),
            &json!({"msgtype": "m.text", "body": "hello from Neurite"}),
        )
        .expect(200);
    eventually("Neurite's message on Synapse", || {
        bodies(&bob, &room).iter().any(|b| b == "hello from Neurite")
    });
    bob.put(
        &format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
            enc(&room),
            unique("t")
        ),
        &json!({"msgtype": "m.text", "body": "hello from Synapse"}),
    )
    .expect(200);
    eventually("Synapse's message on Neurite", || {
        bodies(&alice, &room).iter().any(|b| b == "hello from Synapse")
    });
}

#[test]
fn a_neurite_user_joins_a_synapse_room_by_alias_and_they_talk() {
    let synapse = Synapse::start_federating(synapse_install()).unwrap_or_else(|e| panic!("{e}"));
    let neurite = Server::start(Options {
        https: true,
        ..Options::default()
    });
    let synapse_client = Client {
        base: synapse.base_url(),
        token: None,
    };
    let (bob, _) = synapse_client.register(&unique("bob"), "correct horse battery");
    let alias_local = unique("meet");
    let room = bob
        .post(
            "/_matrix/client/v3/createRoom",
            &json!({"preset": "public_chat", "room_alias_name": alias_local, "name": "On Synapse"}),
        )
        .expect(200)["room_id"]
        .as_str()
        .expect("room_id")
        .to_owned();
    bob.put(
        &format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
            enc(&room),
            unique("t")
        ),
        &json!({"msgtype": "m.text", "body": "before alice"}),
    )
    .expect(200);
    let (alice, alice_id) = neurite
        .client()
        .register(&unique("alice"), "correct horse battery");
    let alias = format!("#{alias_local}:{}", synapse.server_name);
    // The alias is asked of Synapse, the join goes through it, the room starts here.
    let joined = alice.post(&format!("/_matrix/client/v3/join/{}", enc(&alias)), &json!({}));
    assert_eq!(joined.status, 200, "{}", joined.body);
    assert_eq!(joined.body["room_id"], json!(room));
    let mine = alice.get("/_matrix/client/v3/joined_rooms").expect(200);
    assert!(
        mine["joined_rooms"]
            .as_array()
            .expect("rooms")
            .contains(&json!(room)),
        "{mine}"
    );
    eventually("alice among the members on Synapse", || {
        bob.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)))
            .body["joined"]
            .get(&alice_id)
            .is_some()
    });
    bob.put(
        &format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
            enc(&room),
            unique("t")
        ),
        &json!({"msgtype": "m.text", "body": "welcome, alice"}),
    )
    .expect(200);
    eventually("Synapse's message on Neurite", || {
        bodies(&alice, &room).iter().any(|b| b == "welcome, alice")
    });
    alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
                enc(&room),
                unique("t")
            ),
            &json!({"msgtype": "m.text", "body": "thanks, bob"}),
        )
        .expect(200);
    eventually("Neurite's message on Synapse", || {
        bodies(&bob, &room).iter().any(|b| b == "thanks, bob")
    });
}

#[test]
fn a_neurite_user_invites_a_synapse_user_into_a_private_room() {
    let synapse = Synapse::start_federating(synapse_install()).unwrap_or_else(|e| panic!("{e}"));
    let neurite = Server::start(Options {
        https: true,
        ..Options::default()
    });
    let (alice, _) = neurite
        .client()
        .register(&unique("alice"), "correct horse battery");
    let room = alice
        .post(
            "/_matrix/client/v3/createRoom",
            &json!({"preset": "private_chat", "name": "Invited"}),
        )
        .expect(200)["room_id"]
        .as_str()
        .expect("room_id")
        .to_owned();
    let synapse_client = Client {
        base: synapse.base_url(),
        token: None,
    };
    let (bob, bob_id) = synapse_client.register(&unique("bob"), "correct horse battery");
    // Invite-only: Synapse cannot join bob before he is invited.
    let early = bob.post(
        &format!(
            "/_matrix/client/v3/join/{}?server_name={}",
            enc(&room),
            enc(&neurite.server_name)
        ),
        &json!({}),
    );
    assert_eq!(early.status, 403, "{}", early.body);
    alice
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            &json!({"user_id": bob_id}),
        )
        .expect(200);
    eventually("the invite in bob's Synapse sync", || {
        let sync = bob.get("/_matrix/client/v3/sync?timeout=0");
        sync.body["rooms"]["invite"].get(&room).is_some()
    });
    let joined = bob.post(
        &format!("/_matrix/client/v3/rooms/{}/join", enc(&room)),
        &json!({}),
    );
    assert_eq!(joined.status, 200, "{}", joined.body);
    bob.put(
        &format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
            enc(&room),
            unique("t")
        ),
        &json!({"msgtype": "m.text", "body": "thanks for the invite"}),
    )
    .expect(200);
    eventually("bob's message on Neurite", || {
        bodies(&alice, &room).iter().any(|b| b == "thanks for the invite")
    });
}

#[test]
fn neurite_clients_query_and_claim_keys_of_synapse_users() {
    let synapse = Synapse::start_federating(synapse_install()).unwrap_or_else(|e| panic!("{e}"));
    let neurite = Server::start(Options {
        https: true,
        ..Options::default()
    });
    let synapse_client = Client {
        base: synapse.base_url(),
        token: None,
    };
    let mut bob = crate::e2ee::Device::register_on(&synapse_client, "bobkeys");
    bob.upload(1, false);
    let (alice, _) = neurite
        .client()
        .register(&unique("alice"), "correct horse battery");
    let query = json!({"device_keys": {bob.user_id.clone(): [], "@nobody:127.0.0.1:1": []}});
    let keys = alice.post("/_matrix/client/v3/keys/query", &query).expect(200);
    let device = &keys["device_keys"][&bob.user_id][&bob.device_id];
    assert_eq!(
        device["keys"][format!("ed25519:{}", bob.device_id)],
        json!(bob.ed25519()),
        "{keys}"
    );
    assert!(
        keys["failures"].get("127.0.0.1:1").is_some(),
        "an unreachable server is a failure: {keys}"
    );
    let claim = json!({"one_time_keys": {bob.user_id.clone(): {bob.device_id.clone(): "signed_curve25519"}}});
    let claimed = alice.post("/_matrix/client/v3/keys/claim", &claim).expect(200);
    let one = claimed["one_time_keys"][&bob.user_id][&bob.device_id]
        .as_object()
        .expect("claimed");
    assert_eq!(one.len(), 1, "{claimed}");
    assert!(one.keys().all(|k| k.starts_with("signed_curve25519:")));
}

#[test]
fn synapse_invites_neurite_users_who_join_or_decline() {
    let synapse = Synapse::start_federating(synapse_install()).unwrap_or_else(|e| panic!("{e}"));
    let neurite = Server::start(Options {
        https: true,
        ..Options::default()
    });
    let synapse_client = Client {
        base: synapse.base_url(),
        token: None,
    };
    let (bob, _) = synapse_client.register(&unique("bob"), "correct horse battery");
    let room = bob
        .post(
            "/_matrix/client/v3/createRoom",
            &json!({"preset": "private_chat", "name": "From Synapse"}),
        )
        .expect(200)["room_id"]
        .as_str()
        .expect("room_id")
        .to_owned();
    let (alice, alice_id) = neurite
        .client()
        .register(&unique("alice"), "correct horse battery");
    let (carol, carol_id) = neurite
        .client()
        .register(&unique("carol"), "correct horse battery");
    for who in [&alice_id, &carol_id] {
        bob.post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            &json!({"user_id": who}),
        )
        .expect(200);
    }
    let invite_of = |client: &Client| {
        let sync = client.get("/_matrix/client/v3/sync?timeout=0").expect(200);
        sync["rooms"]["invite"].get(&room).cloned()
    };
    let mut shown = None;
    eventually("the invite in alice's Neurite sync", || {
        shown = invite_of(&alice);
        shown.is_some()
    });
    let events = shown.expect("invite")["invite_state"]["events"].clone();
    assert!(
        events
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "From Synapse"),
        "{events}"
    );
    // Alice accepts: the join goes through the inviting server, with no server named.
    let joined = alice.post(
        &format!("/_matrix/client/v3/rooms/{}/join", enc(&room)),
        &json!({}),
    );
    assert_eq!(joined.status, 200, "{}", joined.body);
    eventually("alice joined on Synapse", || {
        bob.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)))
            .body["joined"]
            .get(&alice_id)
            .is_some()
    });
    alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
                enc(&room),
                unique("t")
            ),
            &json!({"msgtype": "m.text", "body": "glad to be here"}),
        )
        .expect(200);
    eventually("alice's message on Synapse", || {
        bodies(&bob, &room).iter().any(|b| b == "glad to be here")
    });
    // Carol declines: the leave goes through Synapse, and the invite is gone here.
    eventually("the invite in carol's Neurite sync", || {
        invite_of(&carol).is_some()
    });
    carol
        .post(
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
            &json!({}),
        )
        .expect(200);
    eventually("carol's leave on Synapse", || {
        let member = bob.get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
            enc(&room),
            enc(&carol_id)
        ));
        member.status == 200 && member.body["membership"] == "leave"
    });
    assert!(invite_of(&carol).is_none(), "the declined invite is gone");
}
