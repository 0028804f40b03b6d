//! Reports against the real worker: events (only by joined members who can see the
//! event), rooms and users (by anyone), kept for the admins and listed through
//! `/_synapse/admin/v1/event_reports` and `/_neurite/admin/v1/reports`; bad input is
//! refused and keeps nothing.

use serde_json::{json, Value};

use crate::harness::{create_room, enc, new_user, send_text, shared, unique, Client};

fn report_event(c: &Client, room: &str, event: &str, body: &Value) -> crate::harness::Resp {
    c.post(
        &format!("/_matrix/client/v3/rooms/{}/report/{}", enc(room), enc(event)),
        body,
    )
}

fn admin() -> Client {
    shared()
        .register_admin(&unique("reportadmin"), "correct horse battery")
        .0
}

/// The event reports about `room`, newest first.
fn event_reports(admin: &Client, room: &str) -> Vec<Value> {
    admin
        .get(&format!("/_synapse/admin/v1/event_reports?room_id={}", enc(room)))
        .expect(200)["event_reports"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn event_reports_are_kept_for_admins() {
    let (alice, alice_id) = new_user("reporter");
    let (bob, bob_id) = new_user("reported");
    let room = create_room(&alice, json!({"preset": "public_chat", "name": "Reported room"}));
    bob.post(
        &format!("/_matrix/client/v3/rooms/{}/join", enc(&room)),
        &json!({}),
    )
    .expect(200);
    let event = send_text(&bob, &room, "r1", "something nasty");
    report_event(&alice, &room, &event, &json!({"reason": "nasty", "score": -100})).expect(200);
    // reason and score are optional.
    report_event(&alice, &room, &event, &json!({})).expect(200);

    let admin = admin();
    let list = event_reports(&admin, &room);
    assert_eq!(list.len(), 2, "{list:?}");
    let first = &list[1];
    assert_eq!(first["event_id"], json!(event));
    assert_eq!(first["room_id"], json!(room));
    assert_eq!(first["user_id"], json!(alice_id));
    assert_eq!(first["sender"], json!(bob_id));
    assert_eq!(first["reason"], json!("nasty"));
    assert_eq!(first["score"], json!(-100));
    assert_eq!(first["name"], json!("Reported room"));
    assert!(first["received_ts"].as_u64().is_some());
    assert_eq!(list[0]["reason"], Value::Null);
    // Newest first by default; dir=f oldest first.
    assert!(list[0]["id"].as_i64() > list[1]["id"].as_i64());
    let forward = admin
        .get(&format!(
            "/_synapse/admin/v1/event_reports?dir=f&room_id={}",
            enc(&room)
        ))
        .expect(200);
    assert_eq!(forward["event_reports"][0]["id"], list[1]["id"]);
    assert_eq!(forward["total"], json!(2));

    // One report, with the event as the reporter saw it.
    let id = first["id"].as_i64().expect("id");
    let one = admin
        .get(&format!("/_synapse/admin/v1/event_reports/{id}"))
        .expect(200);
    assert_eq!(one["event_json"]["content"]["body"], json!("something nasty"));
    admin
        .get("/_synapse/admin/v1/event_reports/999999999")
        .expect_err(404, "M_NOT_FOUND");
    admin
        .get("/_synapse/admin/v1/event_reports/abc")
        .expect_err(400, "M_INVALID_PARAM");

    // Paging with from/limit.
    let page = admin
        .get(&format!(
            "/_synapse/admin/v1/event_reports?limit=1&room_id={}",
            enc(&room)
        ))
        .expect(200);
    assert_eq!(page["event_reports"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["next_token"], json!(1));
    let next = admin
        .get(&format!(
            "/_synapse/admin/v1/event_reports?limit=1&from=1&room_id={}",
            enc(&room)
        ))
        .expect(200);
    assert_eq!(next["event_reports"][0]["id"], list[1]["id"]);
    assert!(next.get("next_token").is_none());
    admin
        .get("/_synapse/admin/v1/event_reports?from=-1")
        .expect_err(400, "M_INVALID_PARAM");
    admin
        .get("/_synapse/admin/v1/event_reports?dir=x")
        .expect_err(400, "M_INVALID_PARAM");

    // Only admins list reports.
    alice
        .get("/_synapse/admin/v1/event_reports")
        .expect_err(403, "M_FORBIDDEN");
    shared()
        .client()
        .get("/_synapse/admin/v1/event_reports")
        .expect_err(401, "M_MISSING_TOKEN");
}

#[test]
fn event_reports_need_a_joined_member_who_sees_the_event() {
    let (alice, _) = new_user("reportown");
    let (carol, _) = new_user("reportout");
    let room = create_room(&alice, json!({"preset": "private_chat"}));
    let event = send_text(&alice, &room, "r1", "private words");

    // Not in the room: the event is not found for them.
    report_event(&carol, &room, &event, &json!({"reason": "x"})).expect_err(404, "M_NOT_FOUND");
    // An event id the room does not have.
    report_event(&alice, &room, "$nope:localhost", &json!({})).expect_err(404, "M_NOT_FOUND");
    // A room that does not exist.
    report_event(&alice, "!nowhere:localhost", &event, &json!({})).expect_err(404, "M_NOT_FOUND");

    // A member who joined after the event, in a room whose history is for joined
    // members only, cannot see it and so cannot report it.
    alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.history_visibility",
                enc(&room)
            ),
            &json!({"history_visibility": "joined"}),
        )
        .expect(200);
    let hidden = send_text(&alice, &room, "r2", "before carol");
    alice
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            &json!({"user_id": carol_id(&carol)}),
        )
        .expect(200);
    carol
        .post(
            &format!("/_matrix/client/v3/rooms/{}/join", enc(&room)),
            &json!({}),
        )
        .expect(200);
    report_event(&carol, &room, &hidden, &json!({})).expect_err(404, "M_NOT_FOUND");
    let seen = send_text(&alice, &room, "r3", "after carol");
    report_event(&carol, &room, &seen, &json!({"reason": "ok"})).expect(200);

    // A redacted event is not reported.
    alice
        .put(
            &format!("/_matrix/client/v3/rooms/{}/redact/{}/x1", enc(&room), enc(&seen)),
            &json!({}),
        )
        .expect(200);
    report_event(&carol, &room, &seen, &json!({})).expect_err(404, "M_NOT_FOUND");

    // Bad bodies.
    let fresh = send_text(&alice, &room, "r4", "fresh");
    report_event(&carol, &room, &fresh, &json!({"score": 5})).expect_err(400, "M_INVALID_PARAM");
    report_event(&carol, &room, &fresh, &json!({"score": "bad"})).expect_err(400, "M_INVALID_PARAM");
    report_event(&carol, &room, &fresh, &json!({"reason": 12})).expect_err(400, "M_BAD_JSON");
    report_event(&carol, &room, &fresh, &json!([1])).expect_err(400, "M_BAD_JSON");
    report_event(&carol, "not-a-room", &fresh, &json!({})).expect_err(400, "M_INVALID_PARAM");
    report_event(&carol, &room, "not-an-event", &json!({})).expect_err(400, "M_INVALID_PARAM");

    // Only the one good report was kept.
    let list = event_reports(&admin(), &room);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["reason"], json!("ok"));
}

fn carol_id(c: &Client) -> String {
    c.get("/_matrix/client/v3/account/whoami").expect(200)["user_id"]
        .as_str()
        .expect("user_id")
        .to_owned()
}

#[test]
fn rooms_and_users_are_reported_by_anyone() {
    let (alice, alice_id) = new_user("roomreported");
    let (dave, dave_id) = new_user("roomreporter");
    let room = create_room(&alice, json!({"preset": "private_chat"}));
    // Dave is in no room with Alice, and still reports both.
    dave.post(
        &format!("/_matrix/client/v3/rooms/{}/report", enc(&room)),
        &json!({"reason": "bad room"}),
    )
    .expect(200);
    dave.post(
        &format!("/_matrix/client/v3/users/{}/report", enc(&alice_id)),
        &json!({"reason": ""}),
    )
    .expect(200);

    // The spec's refusals.
    dave.post(
        &format!("/_matrix/client/v3/rooms/{}/report", enc(&room)),
        &json!({}),
    )
    .expect_err(400, "M_MISSING_PARAM");
    dave.post(
        "/_matrix/client/v3/rooms/%21unknown%3Alocalhost/report",
        &json!({"reason": "x"}),
    )
    .expect_err(404, "M_NOT_FOUND");
    dave.post(
        &format!(
            "/_matrix/client/v3/users/{}/report",
            enc("@nobody-here:localhost")
        ),
        &json!({"reason": "x"}),
    )
    .expect_err(404, "M_NOT_FOUND");
    dave.post(
        &format!("/_matrix/client/v3/users/{}/report", enc("not a user")),
        &json!({"reason": "x"}),
    )
    .expect_err(400, "M_INVALID_PARAM");
    dave.post(
        &format!("/_matrix/client/v3/users/{}/report", enc(&alice_id)),
        &json!({"reason": false}),
    )
    .expect_err(400, "M_BAD_JSON");

    let admin = admin();
    let all = admin
        .get(&format!("/_neurite/admin/v1/reports?user_id={}", enc(&dave_id)))
        .expect(200);
    let list = all["reports"].as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["kind"], json!("user"));
    assert_eq!(list[0]["target_user_id"], json!(alice_id));
    assert_eq!(list[0]["reason"], json!(""));
    assert_eq!(list[1]["kind"], json!("room"));
    assert_eq!(list[1]["room_id"], json!(room));
    assert_eq!(list[1]["reason"], json!("bad room"));
    let rooms_only = admin
        .get(&format!(
            "/_neurite/admin/v1/reports?kind=room&user_id={}",
            enc(&dave_id)
        ))
        .expect(200);
    assert_eq!(rooms_only["total"], json!(1));
    admin
        .get("/_neurite/admin/v1/reports?kind=other")
        .expect_err(400, "M_INVALID_PARAM");
    // Room and user reports are not event reports.
    let events = admin
        .get(&format!(
            "/_synapse/admin/v1/event_reports?user_id={}",
            enc(&dave_id)
        ))
        .expect(200);
    assert_eq!(events["total"], json!(0));
    dave.get("/_neurite/admin/v1/reports")
        .expect_err(403, "M_FORBIDDEN");
}
