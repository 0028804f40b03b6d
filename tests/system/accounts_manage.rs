//! Accounts: devices, password change, deactivation, 3PIDs, profiles, account data.

use serde_json::{json, Value};

use crate::accounts::{device_ids, login, login_body, login_from, login_ok, unique_ip, whoami, PW};
use crate::harness::{shared, unique, Client};

fn password_auth(user: &str, password: &str) -> Value {
    json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password})
}

fn delete_device(c: &Client, device: &str, auth: Option<Value>) -> crate::harness::Resp {
    let body = match auth {
        Some(a) => json!({ "auth": a }),
        None => json!({}),
    };
    let bytes = serde_json::to_vec(&body).expect("json");
    c.raw(
        "DELETE",
        &format!("/_matrix/client/v3/devices/{device}"),
        Some(&bytes),
        &[
            ("Content-Type", "application/json"),
            ("CF-Connecting-IP", &unique_ip()),
        ],
    )
}

#[test]
fn devices_list_get_and_rename() {
    let c = shared().client();
    let name = unique("devs");
    let (me, user_id) = c.register(&name, PW);
    let first = whoami(&me).expect(200)["device_id"]
        .as_str()
        .expect("device")
        .to_owned();
    let (_, second) = login_ok(&c, &name, PW);
    let mut expected = vec![first.clone(), second.clone()];
    expected.sort();
    assert_eq!(device_ids(&me), expected);
    let device = me.get(&format!("/_matrix/client/v3/devices/{first}")).expect(200);
    assert_eq!(device["device_id"], first.as_str());
    assert!(device["last_seen_ts"].is_number());

    me.put(
        &format!("/_matrix/client/v3/devices/{second}"),
        &json!({"display_name": "Tablet"}),
    )
    .expect(200);
    let path = format!("/_matrix/client/v3/devices/{second}");
    assert_eq!(me.get(&path).expect(200)["display_name"], "Tablet");
    // Bad input changes nothing.
    me.put(&path, &json!({"display_name": 7}))
        .expect_err(400, "M_BAD_JSON");
    me.raw("PUT", &path, Some(b"{"), &[])
        .expect_err(400, "M_NOT_JSON");
    assert_eq!(me.get(&path).expect(200)["display_name"], "Tablet");
    // Unknown devices, and other users' devices, are not found.
    me.get("/_matrix/client/v3/devices/NOPE")
        .expect_err(404, "M_NOT_FOUND");
    me.put("/_matrix/client/v3/devices/NOPE", &json!({"display_name": "x"}))
        .expect_err(404, "M_NOT_FOUND");
    let (other, _) = c.register(&unique("devother"), PW);
    other.get(&path).expect_err(404, "M_NOT_FOUND");
    other
        .put(&path, &json!({"display_name": "Stolen"}))
        .expect_err(404, "M_NOT_FOUND");
    assert_eq!(me.get(&path).expect(200)["display_name"], "Tablet");
    let _ = user_id;
}

#[test]
fn deleting_a_device_needs_the_password_and_kills_its_token() {
    let c = shared().client();
    let name = unique("deldev");
    let (me, user_id) = c.register(&name, PW);
    let (victim, victim_device) = login_ok(&c, &name, PW);

    let challenge = delete_device(&me, &victim_device, None);
    assert_eq!(challenge.status, 401, "{}", challenge.body);
    assert_eq!(challenge.body["flows"], json!([{"stages": ["m.login.password"]}]));
    let session = challenge.body["session"].as_str().expect("session").to_owned();

    let mut wrong = password_auth(&user_id, "not it");
    wrong["session"] = json!(session);
    delete_device(&me, &victim_device, Some(wrong)).expect_err(401, "M_FORBIDDEN");
    // Someone else's password does not do either: 403, not another challenge.
    let other = unique("deldevother");
    c.register(&other, PW);
    delete_device(&me, &victim_device, Some(password_auth(&other, PW))).expect_err(403, "M_FORBIDDEN");
    whoami(&victim).expect(200);
    // The session belongs to this deletion: it cannot authorize deleting another device.
    let (_, spare_device) = login_ok(&c, &name, PW);
    let mut elsewhere = password_auth(&user_id, PW);
    elsewhere["session"] = json!(session);
    delete_device(&me, &spare_device, Some(elsewhere)).expect_err(403, "M_FORBIDDEN");
    assert!(device_ids(&me).contains(&spare_device));

    let mut right = password_auth(&user_id, PW);
    right["session"] = json!(session);
    delete_device(&me, &victim_device, Some(right)).expect(200);
    whoami(&victim).expect_err(401, "M_UNKNOWN_TOKEN");
    assert!(!device_ids(&me).contains(&victim_device));
    delete_device(&me, "NOSUCHDEVICE", Some(password_auth(&name, PW))).expect_err(404, "M_NOT_FOUND");
}

#[test]
fn delete_devices_in_bulk() {
    let c = shared().client();
    let name = unique("bulk");
    let (me, _) = c.register(&name, PW);
    let (a, da) = login_ok(&c, &name, PW);
    let (b, db) = login_ok(&c, &name, PW);
    let other_name = unique("bulkother");
    let (other, _) = c.register(&other_name, PW);
    let other_device = whoami(&other).expect(200)["device_id"]
        .as_str()
        .expect("d")
        .to_owned();

    me.post("/_matrix/client/v3/delete_devices", &json!({"devices": [da, db]}))
        .expect(401);
    me.post(
        "/_matrix/client/v3/delete_devices",
        &json!({"devices": "all", "auth": password_auth(&name, PW)}),
    )
    .expect_err(400, "M_BAD_JSON");
    me.post(
        "/_matrix/client/v3/delete_devices",
        &json!({"auth": password_auth(&name, PW)}),
    )
    .expect_err(400, "M_BAD_JSON");
    whoami(&a).expect(200);
    me.post(
        "/_matrix/client/v3/delete_devices",
        &json!({"devices": [da, db, other_device], "auth": password_auth(&name, PW)}),
    )
    .expect(200);
    whoami(&a).expect_err(401, "M_UNKNOWN_TOKEN");
    whoami(&b).expect_err(401, "M_UNKNOWN_TOKEN");
    whoami(&me).expect(200);
    // Another user's device id in the list is not theirs to delete.
    whoami(&other).expect(200);
    assert_eq!(device_ids(&other), vec![other_device]);
}

#[test]
fn password_change_logs_out_other_devices_by_default() {
    let c = shared().client();
    let name = unique("pw");
    let (me, user_id) = c.register(&name, PW);
    let (other, _) = login_ok(&c, &name, PW);
    let path = "/_matrix/client/v3/account/password";

    me.post(path, &json!({"new_password": "new one"})).expect(401);
    let ip = unique_ip();
    let bytes =
        serde_json::to_vec(&json!({"new_password": "new one", "auth": password_auth(&user_id, "bad")}))
            .expect("json");
    me.raw("POST", path, Some(&bytes), &[("CF-Connecting-IP", &ip)])
        .expect_err(401, "M_FORBIDDEN");
    me.post(
        path,
        &json!({"new_password": 5, "auth": password_auth(&user_id, PW)}),
    )
    .expect_err(400, "M_BAD_JSON");
    me.post(path, &json!({"auth": password_auth(&user_id, PW)}))
        .expect_err(400, "M_MISSING_PARAM");
    // Nothing changed so far.
    whoami(&other).expect(200);
    login(&c, &name, PW).expect(200);

    me.post(
        path,
        &json!({"new_password": "new one", "auth": password_auth(&user_id, PW)}),
    )
    .expect(200);
    whoami(&me).expect(200);
    whoami(&other).expect_err(401, "M_UNKNOWN_TOKEN");
    login_from(&c, &unique_ip(), &login_body(&name, PW)).expect_err(403, "M_FORBIDDEN");
    let (again, _) = login_ok(&c, &name, "new one");

    // logout_devices: false keeps the other sessions.
    me.post(
        path,
        &json!({"new_password": "third", "logout_devices": false, "auth": password_auth(&user_id, "new one")}),
    )
    .expect(200);
    whoami(&again).expect(200);
    login(&c, &name, "third").expect(200);
}

#[test]
fn deactivation_is_final() {
    let server = shared();
    let c = server.client();
    let name = unique("deact");
    let (me, user_id) = c.register(&name, PW);
    let (other, _) = login_ok(&c, &name, PW);
    let (friend, _) = c.register(&unique("deactf"), PW);
    let room = crate::harness::create_room(&friend, json!({"preset": "public_chat"}));
    me.post(
        &format!("/_matrix/client/v3/join/{}", crate::harness::enc(&room)),
        &json!({}),
    )
    .expect(200);
    let path = "/_matrix/client/v3/account/deactivate";
    me.post(path, &json!({})).expect(401);
    me.post(
        path,
        &json!({"erase": "yes", "auth": password_auth(&user_id, PW)}),
    )
    .expect_err(400, "M_BAD_JSON");
    whoami(&me).expect(200);
    let body = me
        .post(path, &json!({"auth": password_auth(&user_id, PW)}))
        .expect(200);
    assert_eq!(body["id_server_unbind_result"], "no-support");
    whoami(&me).expect_err(401, "M_UNKNOWN_TOKEN");
    whoami(&other).expect_err(401, "M_UNKNOWN_TOKEN");
    // The account left its rooms.
    let member = friend
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
            crate::harness::enc(&room),
            crate::harness::enc(&user_id)
        ))
        .expect(200);
    assert_eq!(member["membership"], "leave");
    login_from(&c, &unique_ip(), &login_body(&name, PW)).expect_err(403, "M_FORBIDDEN");
    c.post(
        "/_matrix/client/v3/register",
        &json!({"username": name, "password": PW, "auth": {"type": "m.login.dummy"}}),
    )
    .expect_err(400, "M_USER_IN_USE");
    c.get(&format!("/_matrix/client/v3/profile/{user_id}"))
        .expect_err(404, "M_NOT_FOUND");
}

#[test]
fn third_party_ids_are_not_supported() {
    let c = shared().client();
    let (me, _) = c.register(&unique("tpid"), PW);
    assert_eq!(
        me.get("/_matrix/client/v3/account/3pid").expect(200),
        json!({"threepids": []})
    );
    c.get("/_matrix/client/v3/account/3pid")
        .expect_err(401, "M_MISSING_TOKEN");
    let request = json!({"client_secret": "s", "email": "a@example.org", "send_attempt": 1});
    for path in [
        "/_matrix/client/v3/account/3pid/email/requestToken",
        "/_matrix/client/v3/account/3pid/msisdn/requestToken",
        "/_matrix/client/v3/account/password/email/requestToken",
        "/_matrix/client/v3/account/password/msisdn/requestToken",
        "/_matrix/client/v3/register/email/requestToken",
        "/_matrix/client/v3/register/msisdn/requestToken",
    ] {
        c.post(path, &request).expect_err(403, "M_THREEPID_DENIED");
    }
    me.post(
        "/_matrix/client/v3/account/3pid/add",
        &json!({"client_secret": "s", "sid": "1"}),
    )
    .expect_err(403, "M_THREEPID_AUTH_FAILED");
    let body = me
        .post(
            "/_matrix/client/v3/account/3pid/delete",
            &json!({"medium": "email", "address": "a@example.org"}),
        )
        .expect(200);
    assert_eq!(body["id_server_unbind_result"], "no-support");
    me.post("/_matrix/client/v3/account/3pid/delete", &json!({"medium": 1}))
        .expect_err(400, "M_BAD_JSON");
    assert_eq!(
        me.get("/_matrix/client/v3/account/3pid").expect(200),
        json!({"threepids": []})
    );
}

#[test]
fn profiles() {
    let c = shared().client();
    let name = unique("prof");
    let (me, user_id) = c.register(&name, PW);
    let base = format!("/_matrix/client/v3/profile/{user_id}");
    assert_eq!(c.get(&base).expect(200), json!({"displayname": name}));

    me.put(
        &format!("{base}/displayname"),
        &json!({"displayname": "Alice A."}),
    )
    .expect(200);
    me.put(
        &format!("{base}/avatar_url"),
        &json!({"avatar_url": "mxc://example.org/abc"}),
    )
    .expect(200);
    let want = json!({"displayname": "Alice A.", "avatar_url": "mxc://example.org/abc"});
    assert_eq!(c.get(&base).expect(200), want);
    assert_eq!(
        c.get(&format!("{base}/displayname")).expect(200),
        json!({"displayname": "Alice A."})
    );
    assert_eq!(
        c.get(&format!("{base}/avatar_url")).expect(200),
        json!({"avatar_url": "mxc://example.org/abc"})
    );

    // Bad input and other users change nothing.
    me.put(&format!("{base}/displayname"), &json!({"displayname": 3}))
        .expect_err(400, "M_BAD_JSON");
    me.raw("PUT", &format!("{base}/displayname"), Some(b"nope"), &[])
        .expect_err(400, "M_NOT_JSON");
    me.put(
        &format!("{base}/avatar_url"),
        &json!({"avatar_url": "https://evil.example/x.png"}),
    )
    .expect_err(400, "M_INVALID_PARAM");
    let (other, _) = c.register(&unique("profother"), PW);
    other
        .put(&format!("{base}/displayname"), &json!({"displayname": "Mallory"}))
        .expect_err(403, "M_FORBIDDEN");
    c.put(&format!("{base}/displayname"), &json!({"displayname": "Anon"}))
        .expect_err(401, "M_MISSING_TOKEN");
    assert_eq!(c.get(&base).expect(200), want);

    // Clearing a field.
    me.put(&format!("{base}/avatar_url"), &json!({"avatar_url": ""}))
        .expect(200);
    assert_eq!(c.get(&base).expect(200), json!({"displayname": "Alice A."}));

    let ghost = format!(
        "/_matrix/client/v3/profile/@{}:{}",
        unique("ghost"),
        shared().server_name
    );
    for path in [
        ghost.clone(),
        format!("{ghost}/displayname"),
        format!("{ghost}/avatar_url"),
    ] {
        c.get(&path).expect_err(404, "M_NOT_FOUND");
    }
}

#[test]
fn account_data_global_and_per_room() {
    let c = shared().client();
    let (me, user_id) = c.register(&unique("ad"), PW);
    let global = format!("/_matrix/client/v3/user/{user_id}/account_data/org.example.config");
    let room = format!("/_matrix/client/v3/user/{user_id}/rooms/!room:example.org/account_data/m.tag");

    me.get(&global).expect_err(404, "M_NOT_FOUND");
    me.put(&global, &json!({"theme": "dark"})).expect(200);
    assert_eq!(me.get(&global).expect(200), json!({"theme": "dark"}));
    me.put(&global, &json!({"theme": "light", "n": [1, 2]}))
        .expect(200);
    assert_eq!(
        me.get(&global).expect(200),
        json!({"theme": "light", "n": [1, 2]})
    );

    me.get(&room).expect_err(404, "M_NOT_FOUND");
    me.put(&room, &json!({"tags": {"u.work": {"order": 0.5}}}))
        .expect(200);
    assert_eq!(
        me.get(&room).expect(200),
        json!({"tags": {"u.work": {"order": 0.5}}})
    );
    // Room data does not fall back to, or leak into, global data of the same type.
    me.get(&format!("/_matrix/client/v3/user/{user_id}/account_data/m.tag"))
        .expect_err(404, "M_NOT_FOUND");

    // Others may neither read nor write it.
    let (other, other_id) = c.register(&unique("adother"), PW);
    other.get(&global).expect_err(403, "M_FORBIDDEN");
    other
        .put(&global, &json!({"theme": "pwned"}))
        .expect_err(403, "M_FORBIDDEN");
    other.get(&room).expect_err(403, "M_FORBIDDEN");
    other.put(&room, &json!({})).expect_err(403, "M_FORBIDDEN");
    c.get(&global).expect_err(401, "M_MISSING_TOKEN");

    // Server-controlled types, bad bodies and bad room ids are refused.
    for kind in ["m.fully_read", "m.push_rules"] {
        me.put(
            &format!("/_matrix/client/v3/user/{user_id}/account_data/{kind}"),
            &json!({}),
        )
        .expect_err(405, "M_BAD_JSON");
        me.put(
            &format!("/_matrix/client/v3/user/{user_id}/rooms/!room:example.org/account_data/{kind}"),
            &json!({"event_id": "$x"}),
        )
        .expect_err(405, "M_BAD_JSON");
    }
    me.raw("PUT", &global, Some(b"[1, 2]"), &[])
        .expect_err(400, "M_BAD_JSON");
    me.raw("PUT", &global, Some(b"{oops"), &[])
        .expect_err(400, "M_NOT_JSON");
    me.put(
        &format!("/_matrix/client/v3/user/{user_id}/rooms/not-a-room/account_data/m.tag"),
        &json!({}),
    )
    .expect_err(400, "M_INVALID_PARAM");
    assert_eq!(
        me.get(&global).expect(200),
        json!({"theme": "light", "n": [1, 2]})
    );
    other
        .get(&format!(
            "/_matrix/client/v3/user/{other_id}/account_data/org.example.config"
        ))
        .expect_err(404, "M_NOT_FOUND");
}
