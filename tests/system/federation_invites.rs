//! Invites from other servers (`PUT /_matrix/federation/v2/invite`), against the real
//! worker and a scripted remote server: countersigned, shown in the invitee's /sync
//! with the stripped state, declined through the inviting server; bad invites refused
//! with nothing kept. An invite into a room held here goes in like any received event.

use neurite::core::builder::NewEvent;
use neurite::core::keys::SigningKey;
use neurite::core::pdu::Pdu;
use serde_json::{json, Value};

use crate::federation_send::{server_key, shared_room};
use crate::harness::{enc, new_user, shared, Client, Resp};
use crate::remote::Remote;
use crate::room_input::{Branch, Gen};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

fn wait_for<T>(what: &str, mut found: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(v) = found() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn stripped(pdu: &Pdu) -> Value {
    json!({
        "type": pdu.kind(),
        "state_key": pdu.state_key(),
        "sender": pdu.sender().as_str(),
        "content": pdu.content(),
    })
}

/// A remote's room named "Far away" and alice's invite of `invitee` in it.
fn remote_room_with_invite(seed: u8, invitee: &str) -> (Remote, Gen, Branch, Pdu) {
    let remote = Remote::start(seed);
    let key = SigningKey::parse(&remote.key.to_text()).expect("key");
    let (mut gen, mut main) = Gen::on(&remote.name, key, now_ms() - 60_000);
    let alice = remote.user("alice");
    gen.add(
        &mut main,
        "alice",
        NewEvent::state("m.room.name", "", json!({"name": "Far away"})),
    );
    let invite = gen.add(
        &mut main,
        "alice",
        NewEvent::state("m.room.member", invitee, json!({"membership": "invite"})),
    );
    assert_eq!(invite.sender().as_str(), alice);
    (remote, gen, main, invite)
}

fn send_invite(remote: &Remote, invite: &Value, event_id: &str, version: &str, state: Value) -> Resp {
    let room = invite["room_id"].as_str().expect("room").to_owned();
    let body = json!({ "room_version": version, "event": invite, "invite_room_state": state });
    remote.request(
        shared(),
        "PUT",
        &format!("/_matrix/federation/v2/invite/{}/{}", enc(&room), enc(event_id)),
        Some(&body),
    )
}

fn sync(client: &Client, since: Option<&str>) -> Value {
    let path = match since {
        Some(s) => format!("/_matrix/client/v3/sync?timeout=0&since={}", enc(s)),
        None => "/_matrix/client/v3/sync?timeout=0".to_owned(),
    };
    client.get(&path).expect(200)
}

#[test]
fn an_invite_from_another_server_is_shown_then_declined_through_it() {
    let server = shared();
    let (dave, dave_id) = new_user("invdave");
    let (remote, mut gen, main, invite) = remote_room_with_invite(71, &dave_id);
    let room = gen.room_id.to_string();
    let event_id = invite.event_id().to_string();
    let state = json!([
        stripped(&gen.log[0]),
        stripped(&main.state[&(ruma::events::StateEventType::RoomName, String::new())])
    ]);
    let before = sync(&dave, None)["next_batch"]
        .as_str()
        .expect("token")
        .to_owned();

    let answer = send_invite(
        &remote,
        &invite.to_federation_value(),
        &event_id,
        "12",
        state.clone(),
    )
    .expect(200);
    let signatures = &answer["event"]["signatures"];
    assert!(signatures[&remote.name].is_object(), "{answer}");
    assert!(
        signatures[&server.server_name][server_key().key_id()].is_string(),
        "countersigned: {answer}"
    );
    assert_eq!(answer["event"]["content"], json!({"membership": "invite"}));
    // Sent again (a retry): the same answer.
    let again = send_invite(&remote, &invite.to_federation_value(), &event_id, "12", state).expect(200);
    assert_eq!(again["event"], answer["event"]);

    let invited = wait_for("the invite in dave's sync", || {
        let s = sync(&dave, Some(&before));
        s["rooms"]["invite"].get(&room).cloned()
    });
    let events = invited["invite_state"]["events"]
        .as_array()
        .expect("events")
        .clone();
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Far away"),
        "{invited}"
    );
    let own = events
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == json!(dave_id))
        .expect("the invite itself");
    assert_eq!(own["sender"], json!(remote.user("alice")));
    assert_eq!(own["content"]["membership"], "invite");
    // Not a room dave is in.
    let mine = dave.get("/_matrix/client/v3/joined_rooms").expect(200);
    assert!(!mine["joined_rooms"]
        .as_array()
        .expect("rooms")
        .contains(&json!(room)));

    // Declined: the leave is made and sent through the inviting server.
    let dave_user = ruma::OwnedUserId::try_from(dave_id.as_str()).expect("user");
    let mut template = gen
        .add_as(
            &mut main.clone(),
            &dave_user,
            NewEvent::state("m.room.member", &dave_id, json!({"membership": "leave"})),
            &server.server_name,
            &server_key(),
        )
        .to_federation_value();
    for field in ["signatures", "hashes"] {
        template.as_object_mut().expect("object").remove(field);
    }
    remote.answer(
        "GET",
        "/_matrix/federation/v1/make_leave/",
        200,
        json!({"room_version": "12", "event": template}),
    );
    remote.answer("PUT", "/_matrix/federation/v2/send_leave/", 200, json!({}));
    let mid = sync(&dave, None)["next_batch"]
        .as_str()
        .expect("token")
        .to_owned();
    dave.post(
        &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
        &json!({}),
    )
    .expect(200);
    let sent = remote
        .seen()
        .into_iter()
        .find(|s| s.method == "PUT" && s.target.starts_with("/_matrix/federation/v2/send_leave/"))
        .expect("send_leave reached the inviting server");
    let leave = sent.body.expect("body");
    assert_eq!(leave["content"]["membership"], "leave");
    assert_eq!(leave["sender"], json!(dave_id));
    assert!(leave["signatures"][&server.server_name].is_object(), "{leave}");
    let after = wait_for("the declined room in dave's leave section", || {
        let s = sync(&dave, Some(&mid));
        s["rooms"]["leave"].get(&room).map(|_| s.clone())
    });
    assert!(after["rooms"]["invite"].get(&room).is_none(), "{after}");
    let fresh = sync(&dave, None);
    assert!(fresh["rooms"]["invite"].get(&room).is_none(), "{fresh}");
}

#[test]
fn bad_invites_from_other_servers_are_refused() {
    let (dave, dave_id) = new_user("invbad");
    let (remote, gen, _, invite) = remote_room_with_invite(72, &dave_id);
    let room = gen.room_id.to_string();
    let event_id = invite.event_id().to_string();
    let event = invite.to_federation_value();
    let code = |r: Resp, status: u16| {
        assert_eq!(r.status, status, "{}", r.body);
        r.body["errcode"].as_str().unwrap_or_default().to_owned()
    };
    // A room version this server does not speak.
    let r = send_invite(&remote, &event, &event_id, "1", json!([]));
    assert_eq!(code(r, 400), "M_INCOMPATIBLE_ROOM_VERSION");
    // Forged: not the inviting server's signature.
    let mut forged = event.clone();
    forged["signatures"] = json!({ remote.name.clone(): { remote.key.key_id(): "AAAA" } });
    let r = send_invite(&remote, &forged, &event_id, "12", json!([]));
    assert_eq!(code(r, 403), "M_FORBIDDEN");
    // The path names another event.
    let r = send_invite(&remote, &event, "$another", "12", json!([]));
    assert_eq!(code(r, 400), "M_INVALID_PARAM");
    // Sent by a server that is not the inviter's.
    let stranger = Remote::start(73);
    let r = send_invite(&stranger, &event, &event_id, "12", json!([]));
    assert_eq!(code(r, 403), "M_FORBIDDEN");
    // An invite of a user this server does not have.
    let (other, _, _, nobody) =
        remote_room_with_invite(74, &format!("@nobody-here:{}", shared().server_name));
    let r = send_invite(
        &other,
        &nobody.to_federation_value(),
        nobody.event_id().as_str(),
        "12",
        json!([]),
    );
    assert_eq!(code(r, 404), "M_NOT_FOUND");
    // Nothing was kept: dave has no invite.
    let s = sync(&dave, None);
    assert!(s["rooms"]["invite"].get(&room).is_none(), "{s}");
}

#[test]
fn an_invite_into_a_room_held_here_goes_in_as_an_event() {
    let mut s = shared_room(75);
    let (erin, erin_id) = new_user("inverin");
    let invite = s.gen.add(
        &mut s.main,
        "alice",
        NewEvent::state("m.room.member", &erin_id, json!({"membership": "invite"})),
    );
    let event_id = invite.event_id().to_string();
    let answer = send_invite(
        &s.remote,
        &invite.to_federation_value(),
        &event_id,
        "12",
        json!([]),
    )
    .expect(200);
    assert!(answer["event"]["signatures"][&shared().server_name].is_object());
    wait_for("the invite in erin's sync", || {
        sync(&erin, None)["rooms"]["invite"].get(&s.room).cloned()
    });
    // Erin joins the room held here; carol (local) sees her.
    erin.post(
        &format!("/_matrix/client/v3/rooms/{}/join", enc(&s.room)),
        &json!({}),
    )
    .expect(200);
    let members = s
        .carol
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/joined_members",
            enc(&s.room)
        ))
        .expect(200);
    assert!(members["joined"].get(&erin_id).is_some(), "{members}");
}

fn send_pdus(remote: &Remote, pdus: &[Value]) -> Value {
    let body = json!({"origin": remote.name, "origin_server_ts": now_ms(), "pdus": pdus, "edus": []});
    remote
        .request(
            shared(),
            "PUT",
            &format!("/_matrix/federation/v1/send/{}", crate::harness::unique("txn")),
            Some(&body),
        )
        .expect(200)
}

#[test]
fn an_invite_rescinded_by_its_server_ends_here() {
    let (erin, erin_id) = new_user("rescinded");
    let (remote, mut gen, mut main, invite) = remote_room_with_invite(87, &erin_id);
    let room = gen.room_id.to_string();
    let state = json!([stripped(&gen.log[0])]);
    send_invite(
        &remote,
        &invite.to_federation_value(),
        invite.event_id().as_str(),
        "12",
        state,
    )
    .expect(200);
    wait_for("the invite in erin's sync", || {
        sync(&erin, None)["rooms"]["invite"].get(&room).cloned()
    });

    // Not an end of the invite, or not from the room's server: refused, nothing changes.
    let topic = gen.add(
        &mut main,
        "alice",
        NewEvent::state("m.room.topic", "", json!({"topic": "t"})),
    );
    let mut forged = gen
        .add(
            &mut main.clone(),
            "alice",
            NewEvent::state("m.room.member", &erin_id, json!({"membership": "leave"})),
        )
        .to_federation_value();
    forged["signatures"] = json!({});
    let answer = send_pdus(&remote, &[topic.to_federation_value(), forged]);
    let results = answer["pdus"].as_object().expect("results");
    assert!(results.values().all(|r| r["error"].is_string()), "{answer}");
    assert!(sync(&erin, None)["rooms"]["invite"].get(&room).is_some());
    let other = Remote::start(88);
    let body = json!({
        "origin": other.name, "origin_server_ts": now_ms(), "edus": [],
        "pdus": [gen.add(&mut main.clone(), "alice", NewEvent::state("m.room.member", &erin_id, json!({"membership": "leave"}))).to_federation_value()],
    });
    let answer = other
        .request(
            shared(),
            "PUT",
            &format!("/_matrix/federation/v1/send/{}", crate::harness::unique("txn")),
            Some(&body),
        )
        .expect(200);
    assert!(
        answer["pdus"]
            .as_object()
            .expect("results")
            .values()
            .all(|r| r["error"].is_string()),
        "{answer}"
    );
    assert!(sync(&erin, None)["rooms"]["invite"].get(&room).is_some());

    // The inviter takes it back: the invite is gone and the room shows as left.
    let rescind = gen.add(
        &mut main,
        "alice",
        NewEvent::state("m.room.member", &erin_id, json!({"membership": "leave"})),
    );
    let answer = send_pdus(&remote, &[rescind.to_federation_value()]);
    assert_eq!(answer["pdus"][rescind.event_id().as_str()], json!({}), "{answer}");
    let after = sync(&erin, None);
    assert!(after["rooms"]["invite"].get(&room).is_none(), "{after}");
    // Joining now finds nothing to accept.
    let r = erin.post(
        &format!("/_matrix/client/v3/rooms/{}/join", enc(&room)),
        &json!({}),
    );
    assert!(r.status >= 400 && r.status < 500, "{} {}", r.status, r.body);
}
