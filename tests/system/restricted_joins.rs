//! Restricted rooms: members of an allowed room (a space) may join without an invite,
//! a member of this server who may invite vouching for the join
//! (`join_authorised_via_users_server`) — for local users, and for other servers' users
//! through `make_join` / `send_join`, whose join this server countersigns.

use serde_json::{json, Value};

use crate::federation_joins::{joined, made, remote_joins};
use crate::harness::{create_room, enc, new_user, shared, Client};
use crate::remote::Remote;

/// A public space and a room restricted to its members, both made by `owner`; `extra`
/// adds fields to the room's creation request.
fn space_and_room(owner: &Client, extra: Value) -> (String, String) {
    let space = create_room(
        owner,
        json!({"preset": "public_chat", "creation_content": {"type": "m.space"}}),
    );
    let mut body = json!({"preset": "private_chat", "room_version": "10", "initial_state": [{
        "type": "m.room.join_rules", "state_key": "",
        "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]},
    }]});
    for (key, value) in extra.as_object().into_iter().flatten() {
        body[key] = value.clone();
    }
    (space.clone(), create_room(owner, body))
}

fn member_content(client: &Client, room: &str, user: &str) -> Value {
    client
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
            enc(room),
            enc(user)
        ))
        .expect(200)
}

#[test]
fn members_of_the_space_join_with_a_local_authoriser() {
    let (alice, alice_id) = new_user("rjowner");
    let (bob, bob_id) = new_user("rjbob");
    let (space, room) = space_and_room(&alice, json!({}));
    let join = |body: Value| bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), &body);

    // Not in the space: refused, even when the client names an authoriser itself.
    join(json!({})).expect_err(403, "M_FORBIDDEN");
    join(json!({"join_authorised_via_users_server": alice_id})).expect_err(403, "M_FORBIDDEN");
    assert!(joined(&alice, &room).get(&bob_id).is_none());

    // In the space: the join goes through, vouched for by the room's creator.
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&space)), &json!({}))
        .expect(200);
    join(json!({})).expect(200);
    assert!(joined(&alice, &room).get(&bob_id).is_some());
    let content = member_content(&alice, &room, &bob_id);
    assert_eq!(content["membership"], "join");
    assert_eq!(
        content["join_authorised_via_users_server"],
        json!(alice_id),
        "{content}"
    );

    // An invited user needs no condition and no authoriser.
    let (carol, carol_id) = new_user("rjcarol");
    alice
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            &json!({"user_id": carol_id}),
        )
        .expect(200);
    carol
        .post(&format!("/_matrix/client/v3/join/{}", enc(&room)), &json!({}))
        .expect(200);
    let content = member_content(&alice, &room, &carol_id);
    assert_eq!(content["membership"], "join");
    assert!(
        content.get("join_authorised_via_users_server").is_none(),
        "{content}"
    );
}

#[test]
fn nobody_here_may_invite_so_nobody_vouches() {
    let (alice, alice_id) = new_user("rjweak");
    // The creator gives up the power to invite (v10: creators are not privileged).
    let power = json!({"power_level_content_override": {"users": {alice_id.clone(): 50}, "invite": 100, "events": {}}});
    let (space, room) = space_and_room(&alice, power);
    let (bob, _) = new_user("rjbob2");
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&space)), &json!({}))
        .expect(200);
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), &json!({}))
        .expect_err(403, "M_FORBIDDEN");

    // Another server's user in the space is told to try another server.
    let remote = Remote::start(83);
    let visitor = remote.user("weakvisitor");
    remote_joins(&remote, &space, &visitor);
    let r = remote.request(
        shared(),
        "GET",
        &format!(
            "/_matrix/federation/v1/make_join/{}/{}?ver=10",
            enc(&room),
            enc(&visitor)
        ),
        None,
    );
    r.expect_err(400, "M_UNABLE_TO_GRANT_JOIN");
}

#[test]
fn other_servers_users_join_vouched_for_and_countersigned() {
    let server = shared();
    let (alice, alice_id) = new_user("rjfed");
    let (space, room) = space_and_room(&alice, json!({}));
    let remote = Remote::start(84);
    let visitor = remote.user("spacer");
    let make = |user: &str| {
        remote.request(
            server,
            "GET",
            &format!(
                "/_matrix/federation/v1/make_join/{}/{}?ver=10",
                enc(&room),
                enc(user)
            ),
            None,
        )
    };

    // Not in the space yet: 403.
    make(&visitor).expect_err(403, "M_FORBIDDEN");

    // In the space: the template names the local authoriser.
    remote_joins(&remote, &space, &visitor);
    let template = make(&visitor).expect(200);
    assert_eq!(
        template["event"]["content"]["join_authorised_via_users_server"],
        json!(alice_id),
        "{template}"
    );
    let (join, join_id) = made(&remote, &room, &visitor, "join", "?ver=10");
    assert_eq!(
        join["content"]["join_authorised_via_users_server"],
        json!(alice_id)
    );
    let answer = remote
        .request(
            server,
            "PUT",
            &format!(
                "/_matrix/federation/v2/send_join/{}/{}",
                enc(&room),
                enc(&join_id)
            ),
            Some(&join),
        )
        .expect(200);
    // The answer's event carries this server's countersignature besides the remote's.
    let signatures = &answer["event"]["signatures"];
    assert!(signatures[&remote.name].is_object(), "{answer}");
    assert!(signatures[&server.server_name].is_object(), "{answer}");
    assert!(joined(&alice, &room).get(&visitor).is_some());

    // A join made while in the space but sent after leaving it is checked again.
    let second = remote.user("leaver");
    remote_joins(&remote, &space, &second);
    let (join, join_id) = made(&remote, &room, &second, "join", "?ver=10");
    let (leave, leave_id) = made(&remote, &space, &second, "leave", "");
    remote
        .request(
            server,
            "PUT",
            &format!(
                "/_matrix/federation/v2/send_leave/{}/{}",
                enc(&space),
                enc(&leave_id)
            ),
            Some(&leave),
        )
        .expect(200);
    remote
        .request(
            server,
            "PUT",
            &format!(
                "/_matrix/federation/v2/send_join/{}/{}",
                enc(&room),
                enc(&join_id)
            ),
            Some(&join),
        )
        .expect_err(403, "M_FORBIDDEN");
    assert!(joined(&alice, &room).get(&second).is_none());

    // A room restricted to a room this server is not in cannot be vouched for.
    let elsewhere = "!unknownspace:elsewhere.example";
    let other = create_room(
        &alice,
        json!({"preset": "private_chat", "room_version": "10", "initial_state": [{
            "type": "m.room.join_rules", "state_key": "",
            "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": elsewhere}]},
        }]}),
    );
    remote
        .request(
            server,
            "GET",
            &format!(
                "/_matrix/federation/v1/make_join/{}/{}?ver=10",
                enc(&other),
                enc(&visitor)
            ),
            None,
        )
        .expect_err(400, "M_UNABLE_TO_AUTHORISE_JOIN");
}
