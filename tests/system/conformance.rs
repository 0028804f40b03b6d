//! Client API conformance against the real worker: what Element sends at start-up and
//! before its first encrypted message, every token the server hands out accepted where
//! a position is asked for, and redactions only by those allowed to make them.

use serde_json::{json, Value};

use crate::e2ee::Device;
use crate::harness::{create_room, enc, new_user, send_text, shared, Client};

fn sync(c: &Client, since: Option<&str>) -> Value {
    let path = match since {
        Some(t) => format!("/_matrix/client/v3/sync?timeout=0&since={t}"),
        None => "/_matrix/client/v3/sync?timeout=0".to_owned(),
    };
    c.get(&path).expect(200)
}

fn next_batch(body: &Value) -> String {
    body["next_batch"].as_str().expect("next_batch").to_owned()
}

fn join(c: &Client, room: &str) {
    c.post(&format!("/_matrix/client/v3/join/{}", enc(room)), &json!({}))
        .expect(200);
}

fn members_at(c: &Client, room: &str, at: &str) -> Vec<(String, String)> {
    let body = c
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/members?not_membership=leave&at={}",
            enc(room),
            enc(at)
        ))
        .expect(200);
    body["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .map(|e| {
            (
                e["state_key"].as_str().unwrap_or_default().to_owned(),
                e["content"]["membership"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn event(c: &Client, room: &str, id: &str) -> Value {
    c.get(&format!(
        "/_matrix/client/v3/rooms/{}/event/{}",
        enc(room),
        enc(id)
    ))
    .expect(200)
}

fn redact(c: &Client, room: &str, id: &str, txn: &str) -> crate::harness::Resp {
    c.put(
        &format!("/_matrix/client/v3/rooms/{}/redact/{}/{txn}", enc(room), enc(id)),
        &json!({"reason": "test"}),
    )
}

#[test]
fn members_and_messages_take_sync_tokens() {
    let (alice, alice_id) = new_user("tokal");
    let (bob, bob_id) = new_user("tokbo");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    let before_bob = next_batch(&sync(&alice, None));
    join(&bob, &room);
    send_text(&alice, &room, "t1", "after bob joined");
    let after_bob = next_batch(&sync(&alice, Some(&before_bob)));

    // The member list at each sync token is the membership of that moment.
    let then = members_at(&alice, &room, &before_bob);
    assert_eq!(then, vec![(alice_id.clone(), "join".to_owned())]);
    let mut now = members_at(&alice, &room, &after_bob);
    now.sort();
    let mut want = vec![(alice_id.clone(), "join".to_owned()), (bob_id, "join".to_owned())];
    want.sort();
    assert_eq!(now, want);

    // `/messages` backwards from a sync token starts at that token.
    let page = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1&from={}",
            enc(&room),
            enc(&before_bob)
        ))
        .expect(200);
    let first = &page["chunk"][0];
    assert_ne!(first["type"], "m.room.message", "{page}");
    assert!(page["end"].is_string(), "more history follows: {page}");
    // Forwards from it: Bob's join comes first, then the message.
    let page = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=f&limit=10&from={}",
            enc(&room),
            enc(&before_bob)
        ))
        .expect(200);
    let types: Vec<&str> = page["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(types, vec!["m.room.member", "m.room.message"], "{page}");
    // `from` may be left out (spec v1.3): the newest events first.
    let page = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1",
            enc(&room)
        ))
        .expect(200);
    assert_eq!(page["chunk"][0]["content"]["body"], "after bob joined");
    // A token the server never issued is refused.
    alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/members?at=s1_x",
            enc(&room)
        ))
        .expect_err(400, "M_INVALID_PARAM");
}

#[test]
fn no_bridges_no_turn_and_cross_signing_advertised() {
    let (alice, _) = new_user("startup");
    let versions = shared().client().get("/_matrix/client/versions").expect(200);
    assert_eq!(
        versions["unstable_features"]["org.matrix.e2e_cross_signing"],
        true
    );
    assert_eq!(
        alice.get("/_matrix/client/v3/thirdparty/protocols").expect(200),
        json!({})
    );
    assert_eq!(
        alice.get("/_matrix/client/r0/voip/turnServer").expect(200),
        json!({})
    );
    alice
        .get("/_matrix/client/v3/thirdparty/protocol/irc")
        .expect_err(404, "M_NOT_FOUND");
    assert_eq!(
        alice
            .get("/_matrix/client/v3/thirdparty/location?alias=%23a%3Ab")
            .expect(200),
        json!([])
    );
    // Both need an access token, like every client endpoint that is not discovery.
    shared()
        .client()
        .get("/_matrix/client/v3/thirdparty/protocols")
        .expect_err(401, "M_MISSING_TOKEN");
    shared()
        .client()
        .get("/_matrix/client/v3/voip/turnServer")
        .expect_err(401, "M_MISSING_TOKEN");
}

/// Element Web's start-up and its first message in a new encrypted room, as requests:
/// the member list at the sync token, the devices' keys, an Olm key claim, the room
/// key as to-device, then the encrypted event. Bob receives both.
#[test]
fn element_start_up_and_first_encrypted_send() {
    let mut alice = Device::register("elal");
    let mut bob = Device::register("elbo");
    let a = alice.client.clone();
    // Start-up.
    shared().client().get("/_matrix/client/versions").expect(200);
    a.get("/_matrix/client/v3/capabilities").expect(200);
    a.get("/_matrix/client/v3/pushrules/").expect(200);
    let filter = a
        .post(
            &format!("/_matrix/client/v3/user/{}/filter", enc(&alice.user_id)),
            &json!({"room": {"state": {"lazy_load_members": true}, "timeline": {"limit": 20}}}),
        )
        .expect(200)["filter_id"]
        .as_str()
        .expect("filter_id")
        .to_owned();
    a.get(&format!("/_matrix/client/v3/sync?filter={filter}&timeout=0"))
        .expect(200);
    a.get("/_matrix/client/v3/thirdparty/protocols").expect(200);
    a.get("/_matrix/client/v3/voip/turnServer").expect(200);
    alice.upload(5, true);
    bob.upload(5, true);
    // Bob is invited to a new encrypted room and joins.
    let room = create_room(
        &a,
        json!({
            "preset": "private_chat",
            "invite": [bob.user_id],
            "initial_state": [{"type": "m.room.encryption", "state_key": "",
                               "content": {"algorithm": "m.megolm.v1.aes-sha2"}}],
        }),
    );
    join(&bob.client, &room);
    let bob_since = next_batch(&sync(&bob.client, None));
    // Alice's client: a sync, then the members at its token before sharing the key.
    let token = next_batch(
        &a.get(&format!("/_matrix/client/v3/sync?filter={filter}&timeout=0"))
            .expect(200),
    );
    let members = members_at(&a, &room, &token);
    assert!(
        members.contains(&(bob.user_id.clone(), "join".to_owned())),
        "{members:?}"
    );
    let keys = alice.query(&bob.user_id);
    assert!(
        keys["device_keys"][&bob.user_id][&bob.device_id].is_object(),
        "{keys}"
    );
    let (key_id, _) = Device::claim(&a, &bob).expect("a one-time key of Bob's");
    assert!(key_id.starts_with("signed_curve25519:"));
    a.put(
        "/_matrix/client/v3/sendToDevice/m.room.encrypted/elstart1",
        &json!({"messages": {bob.user_id.clone(): {bob.device_id.clone(): {
            "algorithm": "m.olm.v1.curve25519-aes-sha2",
            "sender_key": alice.curve25519(),
            "ciphertext": {"x": {"type": 0, "body": "room key"}}
        }}}}),
    )
    .expect(200);
    let sent = a
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.encrypted/elstart2",
                enc(&room)
            ),
            &json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgA", "device_id": alice.device_id,
                    "sender_key": alice.curve25519(), "session_id": "s1"}),
        )
        .expect(200)["event_id"]
        .as_str()
        .expect("event_id")
        .to_owned();
    // Bob's next sync has the room key and the encrypted event.
    let body = sync(&bob.client, Some(&bob_since));
    let to_device = body["to_device"]["events"].as_array().expect("to_device");
    assert!(
        to_device
            .iter()
            .any(|e| e["type"] == "m.room.encrypted" && e["sender"] == json!(alice.user_id)),
        "{body}"
    );
    let timeline = body["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .expect("timeline");
    assert!(timeline.iter().any(|e| e["event_id"] == json!(sent)), "{body}");
}

#[test]
fn only_the_sender_or_a_moderator_redacts() {
    let (alice, _) = new_user("redal");
    let (bob, _) = new_user("redbo");
    let (carol, carol_id) = new_user("redca");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    join(&bob, &room);
    join(&carol, &room);
    let msg = send_text(&alice, &room, "r1", "alice's words");
    // Bob (power 0) cannot redact Alice's message: 403, and it keeps its content.
    redact(&bob, &room, &msg, "x1").expect_err(403, "M_FORBIDDEN");
    assert_eq!(event(&bob, &room, &msg)["content"]["body"], "alice's words");
    let page = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1",
            enc(&room)
        ))
        .expect(200);
    assert_eq!(
        page["chunk"][0]["event_id"],
        json!(msg),
        "no redaction event was sent: {page}"
    );
    // Bob may redact his own message.
    let own = send_text(&bob, &room, "r2", "bob's words");
    redact(&bob, &room, &own, "x2").expect(200);
    assert!(event(&alice, &room, &own)["content"].get("body").is_none());
    // Carol, made moderator, may redact Alice's message.
    let mut power = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.power_levels/",
            enc(&room)
        ))
        .expect(200);
    power["users"][&carol_id] = json!(50);
    alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.power_levels/",
                enc(&room)
            ),
            &power,
        )
        .expect(200);
    redact(&carol, &room, &msg, "x3").expect(200);
    let redacted = event(&bob, &room, &msg);
    assert!(redacted["content"].get("body").is_none(), "{redacted}");
    // An unknown event id: nothing to redact.
    redact(&alice, &room, "$nosuchevent", "x4").expect_err(400, "M_INVALID_PARAM");
}

#[test]
fn a_redaction_through_another_room_is_refused() {
    let (alice, _) = new_user("redor");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    let other = create_room(&alice, json!({"preset": "public_chat"}));
    let msg = send_text(&alice, &room, "o1", "stays");
    redact(&alice, &other, &msg, "o2").expect_err(400, "M_INVALID_PARAM");
    assert_eq!(event(&alice, &room, &msg)["content"]["body"], "stays");
    let page = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1",
            enc(&other)
        ))
        .expect(200);
    assert_ne!(page["chunk"][0]["type"], "m.room.redaction", "{page}");
}

#[test]
fn the_same_state_twice_and_joining_twice_make_no_new_event() {
    let (alice, _) = new_user("idal");
    let (bob, _) = new_user("idbo");
    let room = create_room(&alice, json!({"preset": "public_chat"}));
    let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.topic/", enc(&room));
    let first = alice.put(&path, &json!({"topic": "same"})).expect(200)["event_id"].clone();
    let again = alice.put(&path, &json!({"topic": "same"})).expect(200)["event_id"].clone();
    assert_eq!(first, again);
    let changed = alice.put(&path, &json!({"topic": "other"})).expect(200)["event_id"].clone();
    assert_ne!(first, changed);
    join(&bob, &room);
    let latest = |c: &Client| {
        c.get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1",
            enc(&room)
        ))
        .expect(200)["chunk"][0]["event_id"]
            .clone()
    };
    let after_first_join = latest(&bob);
    join(&bob, &room);
    assert_eq!(latest(&bob), after_first_join, "a second join made an event");
}

/// Every write that needs power is refused without it, and changes nothing: state,
/// power levels (no raising oneself, no granting above one's own level), kicks and
/// bans (not of someone at or above one's level), invites (when they need power),
/// upgrades and tombstones.
#[test]
fn writes_that_need_power_are_refused_without_it() {
    let (alice, alice_id) = new_user("pwal");
    let (bob, bob_id) = new_user("pwbo");
    let (carol, carol_id) = new_user("pwca");
    let (dave, dave_id) = new_user("pwda");
    let room = create_room(&alice, json!({"preset": "public_chat", "name": "before"}));
    let r = enc(&room);
    for c in [&bob, &carol] {
        join(c, &room);
    }
    let state = |t: &str| format!("/_matrix/client/v3/rooms/{r}/state/{t}/");
    let power = alice.get(&state("m.room.power_levels")).expect(200);
    // Bob (power 0): no state, no power levels, no kick, ban, unban, tombstone, upgrade.
    bob.put(&state("m.room.name"), &json!({"name": "bob's"}))
        .expect_err(403, "M_FORBIDDEN");
    let mut raised = power.clone();
    raised["users"][&bob_id] = json!(100);
    bob.put(&state("m.room.power_levels"), &raised)
        .expect_err(403, "M_FORBIDDEN");
    for action in ["kick", "ban"] {
        bob.post(
            &format!("/_matrix/client/v3/rooms/{r}/{action}"),
            &json!({"user_id": carol_id}),
        )
        .expect_err(403, "M_FORBIDDEN");
    }
    bob.put(
        &state("m.room.tombstone"),
        &json!({"body": "gone", "replacement_room": "!elsewhere:example.org"}),
    )
    .expect_err(403, "M_FORBIDDEN");
    bob.post(
        &format!("/_matrix/client/v3/rooms/{r}/upgrade"),
        &json!({"new_version": "12"}),
    )
    .expect_err(403, "M_FORBIDDEN");
    // Invites need power once the room says so.
    let mut strict = power.clone();
    strict["invite"] = json!(50);
    alice.put(&state("m.room.power_levels"), &strict).expect(200);
    bob.post(
        &format!("/_matrix/client/v3/rooms/{r}/invite"),
        &json!({"user_id": dave_id}),
    )
    .expect_err(403, "M_FORBIDDEN");
    // Carol as moderator (50): no granting 100, no kicking or banning Alice's equals.
    let mut moderated = strict.clone();
    moderated["users"][&carol_id] = json!(50);
    alice.put(&state("m.room.power_levels"), &moderated).expect(200);
    let mut grant = moderated.clone();
    grant["users"][&bob_id] = json!(100);
    carol
        .put(&state("m.room.power_levels"), &grant)
        .expect_err(403, "M_FORBIDDEN");
    let mut peer = moderated.clone();
    peer["users"][&bob_id] = json!(50);
    alice.put(&state("m.room.power_levels"), &peer).expect(200);
    carol
        .post(
            &format!("/_matrix/client/v3/rooms/{r}/kick"),
            &json!({"user_id": bob_id}),
        )
        .expect_err(403, "M_FORBIDDEN");
    // Nothing changed: the name, Bob's membership and the power levels are Alice's.
    assert_eq!(alice.get(&state("m.room.name")).expect(200)["name"], "before");
    let bob_member = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{r}/state/m.room.member/{}",
            enc(&bob_id)
        ))
        .expect(200);
    assert_eq!(bob_member["membership"], "join");
    let now = alice.get(&state("m.room.power_levels")).expect(200);
    assert_eq!(now["users"][&bob_id], 50);
    alice
        .get(&state("m.room.tombstone"))
        .expect_err(404, "M_NOT_FOUND");
    // The rightful one works: with Bob back at 0, Carol (50) may kick him.
    alice.put(&state("m.room.power_levels"), &moderated).expect(200);
    carol
        .post(
            &format!("/_matrix/client/v3/rooms/{r}/kick"),
            &json!({"user_id": bob_id}),
        )
        .expect(200);
    let _ = (dave, alice_id);
}
