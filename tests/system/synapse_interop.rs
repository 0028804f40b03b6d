//! Neurite and a real Synapse (pinned, from PyPI, installed on first use under
//! `target/bench/synapse/`) on loopback: each fetches the other's keys and verifies
//! the other's signed requests. Neurite serves HTTPS with a self-signed certificate
//! (Synapse federates only over HTTPS); Synapse serves plain HTTP, which Neurite's
//! local-development setting allows for loopback peers.

use std::sync::OnceLock;

use serde_json::json;

use crate::harness::{enc, unique, Client, Options, Server};
use crate::synapse::{install, Install, Synapse};

fn synapse_install() -> &'static Install {
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
