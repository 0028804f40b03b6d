//! Other servers' users joining and leaving a room here through `make_join` /
//! `send_join` and `make_leave` / `send_leave`, in both versions of the send
//! endpoints (v1 answers `[200, body]`), against the real worker and a scripted remote.

use neurite::core::builder::{complete_template, Signer};
use serde_json::{json, Value};

use crate::harness::{create_room, enc, new_user, shared, Client};
use crate::remote::Remote;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

pub(crate) fn joined(client: &Client, room: &str) -> Value {
    client
        .get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(room)))
        .expect(200)["joined"]
        .clone()
}

/// `make_<membership>` asked by `remote` for `user`, completed and signed by it.
pub(crate) fn made(
    remote: &Remote,
    room: &str,
    user: &str,
    membership: &str,
    query: &str,
) -> (Value, String) {
    let target = format!(
        "/_matrix/federation/v1/make_{membership}/{}/{}{query}",
        enc(room),
        enc(user)
    );
    let template = remote.request(shared(), "GET", &target, None).expect(200);
    let version = template["room_version"].as_str().expect("version").to_owned();
    let (_, rules) = neurite::core::room_version::parse(&version).expect("rules");
    let user_id = ruma::OwnedUserId::try_from(user).expect("user");
    let signer = Signer {
        server_name: &remote.name,
        key: &remote.key,
        now_ms: now_ms(),
    };
    let (event, id) = complete_template(
        &template["event"],
        &user_id,
        json!({"membership": membership}),
        &rules,
        signer,
    )
    .expect("completed");
    (serde_json::to_value(event).expect("json"), id.to_string())
}

/// `user` of `remote` joins `room` (here) through make_join and send_join v2.
pub(crate) fn remote_joins(remote: &Remote, room: &str, user: &str) {
    let (join, id) = made(remote, room, user, "join", "?ver=12");
    remote
        .request(
            shared(),
            "PUT",
            &format!("/_matrix/federation/v2/send_join/{}/{}", enc(room), enc(&id)),
            Some(&join),
        )
        .expect(200);
}

#[test]
fn other_servers_join_and_leave_through_both_versions() {
    let server = shared();
    let (alice, _) = new_user("joinhost");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    let remote = Remote::start(81);
    let visitor = remote.user("visitor");

    // A joining server must say it speaks the room's version.
    let refused = remote.request(
        server,
        "GET",
        &format!(
            "/_matrix/federation/v1/make_join/{}/{}",
            enc(&room),
            enc(&visitor)
        ),
        None,
    );
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(refused.body["errcode"], "M_INCOMPATIBLE_ROOM_VERSION");
    assert!(refused.body["room_version"].is_string(), "{}", refused.body);

    // v1 send_join: the answer is [200, {state, auth_chain, …}].
    let (join, join_id) = made(&remote, &room, &visitor, "join", "?ver=10&ver=11&ver=12");
    let answer = remote
        .request(
            server,
            "PUT",
            &format!(
                "/_matrix/federation/v1/send_join/{}/{}",
                enc(&room),
                enc(&join_id)
            ),
            Some(&join),
        )
        .expect(200);
    assert_eq!(answer[0], 200, "{answer}");
    let state = answer[1]["state"].as_array().expect("state");
    assert!(state.iter().any(|e| e["type"] == "m.room.create"), "{answer}");
    assert!(!answer[1]["auth_chain"].as_array().expect("chain").is_empty());
    assert!(joined(&alice, &room).get(&visitor).is_some());

    // v1 send_leave: [200, {}].
    let (leave, leave_id) = made(&remote, &room, &visitor, "leave", "");
    let answer = remote
        .request(
            server,
            "PUT",
            &format!(
                "/_matrix/federation/v1/send_leave/{}/{}",
                enc(&room),
                enc(&leave_id)
            ),
            Some(&leave),
        )
        .expect(200);
    assert_eq!(answer, json!([200, {}]));
    assert!(joined(&alice, &room).get(&visitor).is_none());

    // And back in through v2, whose answer is the object itself.
    let (join, join_id) = made(&remote, &room, &visitor, "join", "?ver=12");
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
    assert!(answer["state"].is_array(), "{answer}");
    assert_eq!(answer["event"]["event_id"], Value::Null);
    assert!(joined(&alice, &room).get(&visitor).is_some());
    // A join made for someone else's user is refused.
    let (mut forged, forged_id) = made(&remote, &room, &remote.user("other"), "join", "?ver=12");
    forged["sender"] = json!(format!("@mallory:{}", server.server_name));
    let r = remote.request(
        server,
        "PUT",
        &format!(
            "/_matrix/federation/v2/send_join/{}/{}",
            enc(&room),
            enc(&forged_id)
        ),
        Some(&forged),
    );
    assert!(r.status == 400 || r.status == 403, "{} {}", r.status, r.body);
}

#[test]
fn other_servers_knock_and_are_shown_the_room() {
    let server = shared();
    let (alice, _) = new_user("knockhost");
    let room = create_room(
        &alice,
        json!({
            "preset": "private_chat",
            "name": "Knock first",
            "initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}],
        }),
    );
    let remote = Remote::start(82);
    let visitor = remote.user("knocker");
    let (knock, knock_id) = made(&remote, &room, &visitor, "knock", "?ver=12");
    assert_eq!(knock["content"]["membership"], "knock");
    let answer = remote
        .request(
            server,
            "PUT",
            &format!(
                "/_matrix/federation/v1/send_knock/{}/{}",
                enc(&room),
                enc(&knock_id)
            ),
            Some(&knock),
        )
        .expect(200);
    let state = answer["knock_room_state"].as_array().expect("stripped state");
    assert!(
        state
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Knock first"),
        "{answer}"
    );
    assert!(state.iter().any(|e| e["type"] == "m.room.join_rules"), "{answer}");
    let member = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
            enc(&room),
            enc(&visitor)
        ))
        .expect(200);
    assert_eq!(member["membership"], "knock");
    // A room that does not take knocks refuses the template.
    let closed = create_room(&alice, json!({"preset": "private_chat"}));
    let r = remote.request(
        server,
        "GET",
        &format!(
            "/_matrix/federation/v1/make_knock/{}/{}?ver=12",
            enc(&closed),
            enc(&visitor)
        ),
        None,
    );
    assert_eq!(r.status, 403, "{}", r.body);
}
