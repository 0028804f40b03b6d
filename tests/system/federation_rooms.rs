//! What other servers ask about a room shared with them, and what this server sends
//! them: a scripted remote server whose users alice and bob share a room with carol.

use neurite::core::builder::NewEvent;
use neurite::core::pdu::Pdu;
use serde_json::{json, Value};

use crate::federation_send::{message, ok_for, server_key, shared_room};
use crate::harness::{enc, shared, unique};
use crate::remote::Remote;

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn other_servers_ask_about_a_shared_room() {
    let mut s = shared_room(56);
    let server = shared();
    let msgs: Vec<Pdu> = (0..4)
        .map(|i| s.gen.add(&mut s.main, "bob", message(&format!("q{i}"))))
        .collect();
    s.send(&unique("txn"), &msgs, json!([])).expect(200);
    let last = msgs[3].event_id().to_string();
    let room = enc(&s.room);
    let create = s.gen.log[0].event_id().to_string();
    let ask = |remote: &Remote, target: &str| remote.request(server, "GET", target, None);

    let state_ids = ask(
        &s.remote,
        &format!("/_matrix/federation/v1/state_ids/{room}?event_id={}", enc(&last)),
    )
    .expect(200);
    let pdu_ids = ids(&state_ids["pdu_ids"]);
    assert!(pdu_ids.contains(&create), "{state_ids}");
    assert_eq!(pdu_ids.len(), s.main.state.len(), "the state before the event");
    assert!(ids(&state_ids["auth_chain_ids"]).contains(&create));
    let state = ask(
        &s.remote,
        &format!("/_matrix/federation/v1/state/{room}?event_id={}", enc(&last)),
    )
    .expect(200);
    assert_eq!(state["pdus"].as_array().expect("pdus").len(), pdu_ids.len());
    let auth = ask(
        &s.remote,
        &format!("/_matrix/federation/v1/event_auth/{room}/{}", enc(&last)),
    )
    .expect(200);
    assert!(!auth["auth_chain"].as_array().expect("chain").is_empty());
    let backfill = ask(
        &s.remote,
        &format!("/_matrix/federation/v1/backfill/{room}?v={}&limit=3", enc(&last)),
    )
    .expect(200);
    assert_eq!(backfill["pdus"].as_array().expect("pdus").len(), 3, "{backfill}");
    assert_eq!(backfill["origin"], json!(server.server_name));
    let body =
        json!({"earliest_events": [msgs[0].event_id().to_string()], "latest_events": [last], "limit": 10});
    let missing = s
        .remote
        .request(
            server,
            "POST",
            &format!("/_matrix/federation/v1/get_missing_events/{room}"),
            Some(&body),
        )
        .expect(200);
    assert_eq!(
        missing["events"].as_array().expect("events").len(),
        2,
        "q1 and q2: {missing}"
    );

    // Refusals.
    let stranger = Remote::start(57);
    ask(
        &stranger,
        &format!("/_matrix/federation/v1/state_ids/{room}?event_id={}", enc(&last)),
    )
    .expect_err(403, "M_FORBIDDEN");
    ask(&s.remote, &format!("/_matrix/federation/v1/state_ids/{room}")).expect_err(400, "M_MISSING_PARAM");
    ask(
        &s.remote,
        "/_matrix/federation/v1/state_ids/not-a-room?event_id=%24x",
    )
    .expect_err(400, "M_INVALID_PARAM");
    let unknown = enc(&format!("!{}:{}", unique("nope"), server.server_name));
    ask(
        &s.remote,
        &format!(
            "/_matrix/federation/v1/state_ids/{unknown}?event_id={}",
            enc(&last)
        ),
    )
    .expect_err(404, "M_NOT_FOUND");
    ask(&s.remote, &format!("/_matrix/federation/v1/backfill/{room}")).expect_err(400, "M_MISSING_PARAM");

    // A local event, by id alone.
    let local = s
        .carol
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{room}/send/m.room.message/{}",
                unique("t")
            ),
            &json!({"msgtype": "m.text", "body": "from carol"}),
        )
        .expect(200)["event_id"]
        .as_str()
        .expect("event_id")
        .to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let event = loop {
        let resp = ask(
            &s.remote,
            &format!("/_matrix/federation/v1/event/{}", enc(&local)),
        );
        if resp.status == 200 {
            break resp.body;
        }
        resp.expect_err(404, "M_NOT_FOUND");
        assert!(
            std::time::Instant::now() < deadline,
            "the event never became known by id"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(event["pdus"][0]["sender"], json!(s.carol_id));
    ask(&s.remote, "/_matrix/federation/v1/event/%24unknown").expect_err(404, "M_NOT_FOUND");

    // Once the room's ACL denies the server, it may ask nothing and send nothing.
    let acl = s.gen.add(
        &mut s.main,
        "alice",
        NewEvent::state(
            "m.room.server_acl",
            "",
            json!({"allow": ["*"], "deny": ["127.0.0.1"], "allow_ip_literals": true}),
        ),
    );
    let answer = s
        .send(&unique("txn"), std::slice::from_ref(&acl), json!([]))
        .expect(200);
    assert!(ok_for(&answer, &acl), "{answer}");
    ask(
        &s.remote,
        &format!("/_matrix/federation/v1/state_ids/{room}?event_id={}", enc(&last)),
    )
    .expect_err(403, "M_FORBIDDEN");
    let after = s.gen.add(&mut s.main, "bob", message("denied"));
    let answer = s
        .send(&unique("txn"), std::slice::from_ref(&after), json!([]))
        .expect(200);
    assert!(
        answer["pdus"][after.event_id().as_str()]["error"].is_string(),
        "{answer}"
    );
    assert!(!s.timeline().contains(&after.event_id().to_string()));
}

/// The transactions the remote received from Neurite, in order: (target, body).
fn received(remote: &Remote) -> Vec<(String, Value)> {
    remote
        .seen()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.target.starts_with("/_matrix/federation/v1/send/"))
        .map(|r| (r.target, r.body.unwrap_or(Value::Null)))
        .collect()
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

#[test]
fn local_events_reach_the_other_servers_in_the_room() {
    let s = shared_room(59);
    let server = shared();
    // The remote fails the first attempt.
    s.remote.answer(
        "PUT",
        "/_matrix/federation/v1/send/",
        500,
        json!({"errcode": "M_UNKNOWN", "error": "not now"}),
    );
    let room = enc(&s.room);
    let event_id = s
        .carol
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{room}/send/m.room.message/{}",
                unique("t")
            ),
            &json!({"msgtype": "m.text", "body": "to the other side"}),
        )
        .expect(200)["event_id"]
        .as_str()
        .expect("event_id")
        .to_owned();
    // An attempt fails while the remote answers 500 (carol's message, or her join from
    // the set-up if it had not gone yet; one sent before the 500 was scripted got the
    // remote's 404 and was dropped); once the remote takes transactions, the very same
    // transaction comes again.
    wait_for("an attempt with carol's message", || {
        received(&s.remote)
            .into_iter()
            .find(|(_, b)| {
                b["pdus"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|p| p["content"]["body"] == "to the other side"))
            })
            .or_else(|| received(&s.remote).into_iter().nth(1))
    });
    s.remote
        .answer("PUT", "/_matrix/federation/v1/send/", 200, json!({"pdus": {}}));
    let first = wait_for("the same transaction again", || {
        let all = received(&s.remote);
        all.iter()
            .find(|(t, _)| all.iter().filter(|(u, _)| u == t).count() >= 2)
            .map(|(t, _)| t.clone())
    });
    let (target, body) = wait_for("a transaction with carol's message", || {
        received(&s.remote).into_iter().find(|(_, b)| {
            b["pdus"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["content"]["body"] == "to the other side"))
        })
    });
    assert_eq!(body["origin"], json!(server.server_name));
    // Signed by Neurite, the request and the event.
    let key = server_key();
    let seen = s
        .remote
        .seen()
        .into_iter()
        .find(|r| r.target == target)
        .expect("seen");
    let auth =
        neurite::core::xmatrix::parse(seen.authorization.as_deref().expect("signed")).expect("X-Matrix");
    let content = serde_json::from_value(body.clone()).expect("canonical");
    assert!(neurite::core::xmatrix::verify(
        &auth,
        &key.public_key_base64(),
        "PUT",
        &target,
        Some(content)
    ));
    let pdu = body["pdus"]
        .as_array()
        .expect("pdus")
        .iter()
        .find(|p| p["content"]["body"] == "to the other side")
        .expect("pdu")
        .clone();
    let rules = ruma::RoomVersionId::V12.rules().expect("rules");
    let keys = neurite::core::keys::public_key_map(&[(
        &server.server_name,
        &key.key_id(),
        &key.public_key_base64(),
    )])
    .expect("keys");
    let checked =
        neurite::core::verify::check_pdu(serde_json::from_value(pdu).expect("object"), &rules, &keys)
            .expect("a valid PDU signed by Neurite");
    assert_eq!(checked.pdu.event_id().as_str(), event_id);

    // The next event is a new transaction.
    s.carol
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{room}/send/m.room.message/{}",
                unique("t")
            ),
            &json!({"msgtype": "m.text", "body": "and more"}),
        )
        .expect(200);
    let (next, _) = wait_for("the next transaction", || {
        received(&s.remote).into_iter().find(|(_, b)| {
            b["pdus"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["content"]["body"] == "and more"))
        })
    });
    assert_ne!(next, first);
    // The remote's own events are not sent back to it.
    let echoed = received(&s.remote)
        .iter()
        .flat_map(|(_, b)| b["pdus"].as_array().cloned().unwrap_or_default())
        .any(|p| p["sender"].as_str().is_some_and(|u| u.ends_with(&s.remote.name)));
    assert!(!echoed);
}

#[test]
fn typing_receipts_and_to_device_messages_go_to_the_other_servers() {
    let mut s = shared_room(60);
    s.remote
        .answer("PUT", "/_matrix/federation/v1/send/", 200, json!({"pdus": {}}));
    let msg = s.gen.add(&mut s.main, "bob", message("read this"));
    s.send(&unique("txn"), std::slice::from_ref(&msg), json!([]))
        .expect(200);
    let room = enc(&s.room);
    let carol = enc(&s.carol_id);
    s.carol
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/typing/{carol}"),
            &json!({"typing": true, "timeout": 20000}),
        )
        .expect(200);
    s.carol
        .post(
            &format!(
                "/_matrix/client/v3/rooms/{room}/receipt/m.read/{}",
                enc(msg.event_id().as_str())
            ),
            &json!({}),
        )
        .expect(200);
    let bob = s.remote.user("bob");
    s.carol
        .put(
            &format!("/_matrix/client/v3/sendToDevice/m.test.secret/{}", unique("td")),
            &json!({"messages": {bob.clone(): {"BOBDEVICE": {"hello": "bob"}}}}),
        )
        .expect(200);
    let edus = |kind: &str| -> Vec<Value> {
        received(&s.remote)
            .iter()
            .flat_map(|(_, b)| b["edus"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["edu_type"] == kind)
            .collect()
    };
    let carol_id = s.carol_id.clone();
    wait_for("carol's typing", || {
        edus("m.typing")
            .iter()
            .any(|e| e["content"]["user_id"] == json!(carol_id) && e["content"]["typing"] == json!(true))
            .then_some(())
    });
    let msg_id = msg.event_id().to_string();
    wait_for("carol's receipt", || {
        edus("m.receipt")
            .iter()
            .any(|e| e["content"][&s.room]["m.read"][&carol_id]["event_ids"] == json!([msg_id]))
            .then_some(())
    });
    wait_for("carol's to-device message for bob", || {
        edus("m.direct_to_device")
            .iter()
            .any(|e| {
                e["content"]["sender"] == json!(carol_id)
                    && e["content"]["type"] == "m.test.secret"
                    && e["content"]["messages"][&bob]["BOBDEVICE"]["hello"] == "bob"
            })
            .then_some(())
    });
}

#[test]
fn a_local_device_change_is_announced_to_the_other_servers() {
    let s = shared_room(62);
    s.remote
        .answer("PUT", "/_matrix/federation/v1/send/", 200, json!({"pdus": {}}));
    let device_id = s.carol.get("/_matrix/client/v3/account/whoami").expect(200)["device_id"]
        .as_str()
        .expect("device")
        .to_owned();
    let mut device = crate::e2ee::Device {
        client: s.carol.clone(),
        user_id: s.carol_id.clone(),
        device_id: device_id.clone(),
        account: vodozemac::olm::Account::new(),
    };
    device.upload(1, false);
    let carol_id = s.carol_id.clone();
    wait_for("carol's device-list update", || {
        received(&s.remote)
            .iter()
            .flat_map(|(_, b)| b["edus"].as_array().cloned().unwrap_or_default())
            .any(|e| {
                e["edu_type"] == "m.device_list_update"
                    && e["content"]["user_id"] == json!(carol_id)
                    && e["content"]["device_id"] == json!(device_id)
            })
            .then_some(())
    });
    // What the remote fetches next: carol's devices, with the keys just uploaded.
    let devices = s
        .remote
        .request(
            shared(),
            "GET",
            &format!("/_matrix/federation/v1/user/devices/{}", enc(&s.carol_id)),
            None,
        )
        .expect(200);
    assert_eq!(devices["devices"][0]["device_id"], json!(device.device_id));
    assert!(devices["stream_id"].as_u64().is_some_and(|s| s > 0));
}

#[test]
fn presence_and_cross_signing_changes_go_to_the_other_servers() {
    let s = shared_room(63);
    s.remote
        .answer("PUT", "/_matrix/federation/v1/send/", 200, json!({"pdus": {}}));
    let edus = |kind: &str| -> Vec<Value> {
        received(&s.remote)
            .iter()
            .flat_map(|(_, b)| b["edus"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["edu_type"] == kind)
            .collect()
    };
    s.carol
        .put(
            &format!("/_matrix/client/v3/presence/{}/status", enc(&s.carol_id)),
            &json!({"presence": "unavailable", "status_msg": "out for lunch"}),
        )
        .expect(200);
    let carol_id = s.carol_id.clone();
    let push = wait_for("carol's presence at the remote", || {
        edus("m.presence")
            .iter()
            .flat_map(|e| e["content"]["push"].as_array().cloned().unwrap_or_default())
            .find(|p| p["user_id"] == json!(carol_id) && p["presence"] == "unavailable")
    });
    assert_eq!(push["status_msg"], "out for lunch", "{push}");
    assert!(push["last_active_ago"].as_u64().is_some(), "{push}");

    let (master, ssk, usk) = (
        vodozemac::Ed25519SecretKey::new(),
        vodozemac::Ed25519SecretKey::new(),
        vodozemac::Ed25519SecretKey::new(),
    );
    use crate::e2ee_cross_signing_backup::cross_key;
    let upload = json!({
        "master_key": cross_key(&carol_id, "master", &master, None),
        "self_signing_key": cross_key(&carol_id, "self_signing", &ssk, Some(&master)),
        "user_signing_key": cross_key(&carol_id, "user_signing", &usk, Some(&master)),
    });
    s.carol
        .post("/_matrix/client/v3/keys/device_signing/upload", &upload)
        .expect(200);
    let update = wait_for("carol's signing-key update at the remote", || {
        edus("m.signing_key_update")
            .into_iter()
            .find(|e| e["content"]["user_id"] == json!(carol_id))
    });
    assert_eq!(update["content"]["master_key"], upload["master_key"]);
    assert_eq!(update["content"]["self_signing_key"], upload["self_signing_key"]);
    assert!(
        update["content"].get("user_signing_key").is_none(),
        "the user-signing key is the user's own: {update}"
    );
}
