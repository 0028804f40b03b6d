//! Guest access against the real worker (on for local runs): guest registration, the
//! guest API's limits, `m.room.guest_access`, removal when it is revoked, and the
//! upgrade to a full account.

use serde_json::{json, Value};

use crate::harness::{create_room, enc, new_user, send_text, shared, Client};

fn register_guest() -> (Client, String) {
    let body = shared()
        .client()
        .post("/_matrix/client/v3/register?kind=guest", &json!({}))
        .expect(200);
    let token = body["access_token"].as_str().expect("access_token");
    (
        shared().client().with_token(token),
        body["user_id"].as_str().expect("user_id").to_owned(),
    )
}

fn joined(c: &Client, room: &str) -> Value {
    c.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(room)))
        .expect(200)["joined"]
        .clone()
}

fn set_guest_access(c: &Client, room: &str, value: &str) {
    c.put(
        &format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.guest_access/",
            enc(room)
        ),
        &json!({"guest_access": value}),
    )
    .expect(200);
}

#[test]
fn guests_join_talk_and_leave_as_the_room_allows() {
    let (alice, _) = new_user("gual");
    let (guest, guest_id) = register_guest();
    let localpart = guest_id
        .trim_start_matches('@')
        .split(':')
        .next()
        .unwrap_or_default();
    assert!(localpart.bytes().all(|b| b.is_ascii_digit()), "{guest_id}");
    let who = guest.get("/_matrix/client/v3/account/whoami").expect(200);
    assert_eq!(who["is_guest"], true);

    // What guests may not do.
    guest
        .post("/_matrix/client/v3/createRoom", &json!({}))
        .expect_err(403, "M_GUEST_ACCESS_FORBIDDEN");
    guest
        .get("/_matrix/client/v3/events?timeout=0")
        .expect_err(403, "M_GUEST_ACCESS_FORBIDDEN");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    let join = format!("/_matrix/client/v3/join/{}", enc(&room));
    guest
        .post(&join, &json!({}))
        .expect_err(403, "M_GUEST_ACCESS_FORBIDDEN");

    // A room that lets guests in.
    set_guest_access(&alice, &room, "can_join");
    guest.post(&join, &json!({})).expect(200);
    assert!(joined(&alice, &room).get(&guest_id).is_some());
    let msg = send_text(&guest, &room, "g1", "hello from a guest");
    guest
        .put(
            &format!("/_matrix/client/v3/rooms/{}/send/m.custom/g2", enc(&room)),
            &json!({}),
        )
        .expect_err(403, "M_GUEST_ACCESS_FORBIDDEN");
    guest
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.topic/", enc(&room)),
            &json!({"topic": "guest topic"}),
        )
        .expect_err(403, "M_GUEST_ACCESS_FORBIDDEN");
    let body = guest.get("/_matrix/client/v3/sync?timeout=0").expect(200);
    let timeline = body["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .expect("timeline");
    assert!(timeline.iter().any(|e| e["event_id"] == json!(msg)), "{body}");

    // Revoked: the guest is out and cannot come back.
    set_guest_access(&alice, &room, "forbidden");
    assert!(
        joined(&alice, &room).get(&guest_id).is_none(),
        "guest still joined"
    );
    guest
        .post(&join, &json!({}))
        .expect_err(403, "M_GUEST_ACCESS_FORBIDDEN");
}

#[test]
fn a_guest_upgrades_itself_and_only_itself() {
    let (guest, guest_id) = register_guest();
    let (other, _) = register_guest();
    let localpart = guest_id
        .trim_start_matches('@')
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let token_of = |c: &Client| c.token.clone().expect("token");
    let register = |body: Value| shared().client().post("/_matrix/client/v3/register", &body);
    // Another guest's token cannot upgrade this account.
    register(
        json!({"username": localpart, "password": "SIR Arthur David", "guest_access_token": token_of(&other),
                    "auth": {"type": "m.login.dummy"}}),
    )
    .expect_err(403, "M_FORBIDDEN");
    let challenge = register(json!({"username": localpart, "password": "SIR Arthur David",
                                    "guest_access_token": token_of(&guest)}));
    assert_eq!(challenge.status, 401, "{}", challenge.body);
    let upgraded = register(json!({"username": localpart, "password": "SIR Arthur David",
                                   "guest_access_token": token_of(&guest), "auth": {"type": "m.login.dummy"}}))
    .expect(200);
    assert_eq!(upgraded["user_id"], json!(guest_id));
    let full = shared()
        .client()
        .with_token(upgraded["access_token"].as_str().expect("access_token"));
    assert_eq!(
        full.get("/_matrix/client/v3/account/whoami").expect(200)["is_guest"],
        false
    );
    create_room(&full, json!({}));
    // The password now logs in.
    shared()
        .client()
        .post(
            "/_matrix/client/v3/login",
            &json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart},
                    "password": "SIR Arthur David"}),
        )
        .expect(200);
}
