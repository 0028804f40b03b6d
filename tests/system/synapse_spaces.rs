//! Restricted rooms across Neurite and a real Synapse: a Synapse user who is in a
//! Neurite space joins a room restricted to the space (Neurite vouches for the join and
//! countersigns it), and a Neurite user in a Synapse space joins a Synapse room
//! restricted to it (Synapse vouches).

use serde_json::{json, Value};

use crate::harness::{enc, Client};
use crate::synapse_interop::{eventually, federating_pair};

fn create(client: &Client, body: Value) -> String {
    client.post("/_matrix/client/v3/createRoom", &body).expect(200)["room_id"]
        .as_str()
        .expect("room_id")
        .to_owned()
}

/// A public space and a version-10 room restricted to its members.
fn space_and_room(owner: &Client) -> (String, String) {
    let space = create(
        owner,
        json!({"preset": "public_chat", "creation_content": {"type": "m.space"}}),
    );
    let room = create(
        owner,
        json!({"preset": "private_chat", "room_version": "10", "initial_state": [{
            "type": "m.room.join_rules", "state_key": "",
            "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]},
        }]}),
    );
    (space, room)
}

fn join(client: &Client, room: &str, via: &str) -> crate::harness::Resp {
    client.post(
        &format!("/_matrix/client/v3/join/{}?server_name={}", enc(room), enc(via)),
        &json!({}),
    )
}

fn member(client: &Client, room: &str, user: &str) -> Value {
    let r = client.get(&format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
        enc(room),
        enc(user)
    ));
    if r.status == 200 {
        r.body
    } else {
        Value::Null
    }
}

#[test]
fn members_of_a_space_join_its_restricted_rooms_across_servers() {
    let (synapse, neurite, alice, alice_id, bob, bob_id) = federating_pair();

    // Neurite's space: bob (Synapse) is refused before he is in it, let in after.
    let (space, room) = space_and_room(&alice);
    let refused = join(&bob, &room, &neurite.server_name);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(join(&bob, &space, &neurite.server_name).status, 200);
    let entered = join(&bob, &room, &neurite.server_name);
    assert_eq!(entered.status, 200, "{}", entered.body);
    eventually("bob joined the restricted room on Neurite", || {
        member(&alice, &room, &bob_id)["membership"] == "join"
    });
    assert_eq!(
        member(&alice, &room, &bob_id)["join_authorised_via_users_server"],
        json!(alice_id)
    );

    // Synapse's space: alice (Neurite) joins the space, then the restricted room.
    let (space2, room2) = space_and_room(&bob);
    let refused = join(&alice, &room2, &synapse.server_name);
    assert_eq!(refused.status, 403, "{}", refused.body);
    let entered = join(&alice, &space2, &synapse.server_name);
    assert_eq!(entered.status, 200, "{}", entered.body);
    eventually("alice in Synapse's space, as Synapse sees it", || {
        member(&bob, &space2, &alice_id)["membership"] == "join"
    });
    let entered = join(&alice, &room2, &synapse.server_name);
    assert_eq!(entered.status, 200, "{}", entered.body);
    eventually("alice joined the restricted room on Synapse", || {
        member(&bob, &room2, &alice_id)["membership"] == "join"
    });
    assert_eq!(
        member(&alice, &room2, &alice_id)["join_authorised_via_users_server"],
        json!(bob_id)
    );
}
