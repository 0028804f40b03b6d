//! Accounts: registration (open mode), login, sessions, tokens, rate limits,
//! capabilities. Devices, password, profile and account data are in
//! `accounts_manage.rs`; closed/token modes and the admin API in `accounts_admin.rs`.

use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{json, Value};

use crate::harness::{shared, unique, Client, Resp};

pub const PW: &str = "correct horse battery";

pub fn login_body(user: &str, password: &str) -> Value {
    json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password})
}

/// Logs in from a given client address (so failed attempts in one test do not eat the
/// shared server's per-address budget of another).
pub fn login_from(c: &Client, ip: &str, body: &Value) -> Resp {
    let bytes = serde_json::to_vec(body).expect("serialize");
    c.raw(
        "POST",
        "/_matrix/client/v3/login",
        Some(&bytes),
        &[("Content-Type", "application/json"), ("CF-Connecting-IP", ip)],
    )
}

pub fn login(c: &Client, user: &str, password: &str) -> Resp {
    c.post("/_matrix/client/v3/login", &login_body(user, password))
}

/// Logs in and returns a client holding the new token, and the device id.
pub fn login_ok(c: &Client, user: &str, password: &str) -> (Client, String) {
    let body = login(c, user, password).expect(200);
    let token = body["access_token"].as_str().expect("access_token");
    (
        c.with_token(token),
        body["device_id"].as_str().expect("device_id").to_owned(),
    )
}

pub fn whoami(c: &Client) -> Resp {
    c.get("/_matrix/client/v3/account/whoami")
}

/// A unique fake client address.
pub fn unique_ip() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    format!("198.51.{}.{}", (n / 250) % 250, n % 250 + 1)
}

pub fn device_ids(c: &Client) -> Vec<String> {
    let body = c.get("/_matrix/client/v3/devices").expect(200);
    let mut ids: Vec<String> = body["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| d["device_id"].as_str().expect("device_id").to_owned())
        .collect();
    ids.sort();
    ids
}

const REGISTER: &str = "/_matrix/client/v3/register";

#[test]
fn register_answers_the_dummy_flow_then_creates_the_account() {
    let server = shared();
    let c = server.client();
    let name = unique("reg");
    let first = c.post(REGISTER, &json!({"username": name, "password": PW}));
    assert_eq!(first.status, 401, "{}", first.body);
    assert_eq!(first.body["flows"], json!([{"stages": ["m.login.dummy"]}]));
    assert!(first.body.get("errcode").is_none(), "{}", first.body);
    let session = first.body["session"].as_str().expect("session").to_owned();
    let body = c
        .post(
            REGISTER,
            &json!({"username": name, "password": PW, "auth": {"type": "m.login.dummy", "session": session}}),
        )
        .expect(200);
    let user_id = format!("@{name}:{}", server.server_name);
    assert_eq!(body["user_id"], user_id.as_str());
    assert_eq!(body["home_server"], server.server_name.as_str());
    let me = whoami(&c.with_token(body["access_token"].as_str().expect("token"))).expect(200);
    assert_eq!(me["user_id"], user_id.as_str());
    assert_eq!(me["device_id"], body["device_id"]);
    // The display name starts as the localpart.
    let profile = c
        .get(&format!("/_matrix/client/v3/profile/{user_id}"))
        .expect(200);
    assert_eq!(profile["displayname"], name.as_str());
}

#[test]
fn register_lower_cases_and_checks_the_username_grammar() {
    let c = shared().client();
    let name = unique("MiXed");
    let (_, user_id) = c.register(&name, PW);
    assert!(
        user_id.starts_with(&format!("@{}:", name.to_lowercase())),
        "{user_id}"
    );
    for bad in ["a b", "a:b", "ünï", "12345", "a#b"] {
        c.post(
            REGISTER,
            &json!({"username": bad, "password": PW, "auth": {"type": "m.login.dummy"}}),
        )
        .expect_err(400, "M_INVALID_USERNAME");
    }
    // The whole id may be 255 bytes, not one more.
    let server = &shared().server_name;
    let room = 255 - 2 - server.len();
    let prefix = unique("long");
    let fits = format!("{prefix}{}", "x".repeat(room - prefix.len()));
    let over = format!("{fits}y");
    c.post(
        REGISTER,
        &json!({"username": over, "password": PW, "auth": {"type": "m.login.dummy"}}),
    )
    .expect_err(400, "M_INVALID_USERNAME");
    let (_, user_id) = c.register(&fits, PW);
    assert_eq!(user_id.len(), 255);
}

#[test]
fn taken_ids_are_refused_and_the_owner_keeps_the_account() {
    let c = shared().client();
    let name = unique("taken");
    c.register(&name, PW);
    c.post(
        REGISTER,
        &json!({"username": name, "password": "other", "auth": {"type": "m.login.dummy"}}),
    )
    .expect_err(400, "M_USER_IN_USE");
    // Checked before user-interactive auth, too.
    c.post(REGISTER, &json!({"username": name, "password": "other"}))
        .expect_err(400, "M_USER_IN_USE");
    c.get(&format!("/_matrix/client/v3/register/available?username={name}"))
        .expect_err(400, "M_USER_IN_USE");
    login(&c, &name, PW).expect(200);
}

#[test]
fn register_available() {
    let c = shared().client();
    let body = c
        .get(&format!(
            "/_matrix/client/v3/register/available?username={}",
            unique("free")
        ))
        .expect(200);
    assert_eq!(body, json!({"available": true}));
    c.get("/_matrix/client/v3/register/available")
        .expect_err(400, "M_MISSING_PARAM");
    c.get("/_matrix/client/v3/register/available?username=a%20b")
        .expect_err(400, "M_INVALID_USERNAME");
}

#[test]
fn unknown_registration_kinds_are_refused() {
    let c = shared().client();
    c.post(&format!("{REGISTER}?kind=robot"), &json!({}))
        .expect_err(400, "M_INVALID_PARAM");
}

#[test]
fn inhibit_login_creates_no_session() {
    let c = shared().client();
    let name = unique("inhibit");
    let body = c
        .post(
            REGISTER,
            &json!({"username": name, "password": PW, "inhibit_login": true, "auth": {"type": "m.login.dummy"}}),
        )
        .expect(200);
    assert!(
        body.get("access_token").is_none() && body.get("device_id").is_none(),
        "{body}"
    );
    let (me, device) = login_ok(&c, &name, PW);
    assert_eq!(device_ids(&me), vec![device]);
}

#[test]
fn register_uses_the_given_device_id_and_name() {
    let c = shared().client();
    let body = c
        .post(
            REGISTER,
            &json!({"username": unique("dev"), "password": PW, "device_id": "MYPHONE",
                    "initial_device_display_name": "Phone", "auth": {"type": "m.login.dummy"}}),
        )
        .expect(200);
    assert_eq!(body["device_id"], "MYPHONE");
    let me = c.with_token(body["access_token"].as_str().expect("token"));
    let device = me.get("/_matrix/client/v3/devices/MYPHONE").expect(200);
    assert_eq!(device["display_name"], "Phone");
}

#[test]
fn register_bad_inputs_change_nothing() {
    let c = shared().client();
    let name = unique("badreg");
    let resp = c.raw(
        "POST",
        REGISTER,
        Some(b"{not json"),
        &[("Content-Type", "application/json")],
    );
    resp.expect_err(400, "M_NOT_JSON");
    for body in [
        json!({"username": 5, "password": PW, "auth": {"type": "m.login.dummy"}}),
        json!({"username": name, "password": ["x"], "auth": {"type": "m.login.dummy"}}),
        json!({"username": name, "password": PW, "auth": "dummy"}),
        json!({"username": name, "password": PW, "inhibit_login": "yes", "auth": {"type": "m.login.dummy"}}),
    ] {
        c.post(REGISTER, &body).expect_err(400, "M_BAD_JSON");
    }
    c.post(
        REGISTER,
        &json!({"username": name, "auth": {"type": "m.login.dummy"}}),
    )
    .expect_err(400, "M_MISSING_PARAM");
    // An unsupported stage is a failed stage: 401 with the flows again.
    let wrong = c.post(
        REGISTER,
        &json!({"username": name, "password": PW, "auth": {"type": "m.login.password"}}),
    );
    wrong.expect_err(401, "M_FORBIDDEN");
    assert!(wrong.body["flows"].is_array());
    // None of that took the name.
    c.get(&format!("/_matrix/client/v3/register/available?username={name}"))
        .expect(200);
}

#[test]
fn login_flows_offer_password() {
    let body = shared().client().get("/_matrix/client/v3/login").expect(200);
    let types: Vec<&str> = body["flows"]
        .as_array()
        .expect("flows")
        .iter()
        .filter_map(|f| f["type"].as_str())
        .collect();
    assert_eq!(types, vec!["m.login.password"]);
}

#[test]
fn login_by_user_id_localpart_or_legacy_user() {
    let server = shared();
    let c = server.client();
    let name = unique("login");
    let (_, user_id) = c.register(&name, PW);
    let mut devices = Vec::new();
    for body in [
        login_body(&user_id, PW),
        login_body(&name, PW),
        login_body(&name.to_uppercase(), PW),
        json!({"type": "m.login.password", "user": name, "password": PW}),
        json!({"type": "m.login.password", "user": user_id, "password": PW, "refresh_token": true}),
    ] {
        let resp = c.post("/_matrix/client/v3/login", &body).expect(200);
        assert_eq!(resp["user_id"], user_id.as_str());
        assert!(resp.get("refresh_token").is_none());
        assert_eq!(resp["well_known"]["m.homeserver"]["base_url"], server.base_url());
        let me = c.with_token(resp["access_token"].as_str().expect("token"));
        assert_eq!(whoami(&me).expect(200)["device_id"], resp["device_id"]);
        devices.push(resp["device_id"].as_str().expect("device").to_owned());
    }
    devices.sort();
    devices.dedup();
    assert_eq!(devices.len(), 5, "each login without device_id gets a new device");
}

#[test]
fn wrong_password_and_unknown_user_get_the_same_answer() {
    let c = shared().client();
    let name = unique("same");
    c.register(&name, PW);
    let ip = unique_ip();
    let wrong = login_from(&c, &ip, &login_body(&name, "nope"));
    let unknown = login_from(&c, &ip, &login_body(&unique("ghost"), PW));
    let foreign = login_from(&c, &ip, &login_body("@someone:elsewhere.example", PW));
    wrong.expect_err(403, "M_FORBIDDEN");
    assert_eq!(wrong.body, unknown.body);
    assert_eq!((wrong.status, &wrong.body), (foreign.status, &foreign.body));
    login(&c, &name, PW).expect(200);
}

#[test]
fn login_bad_inputs() {
    let c = shared().client();
    let name = unique("badlogin");
    c.register(&name, PW);
    c.raw(
        "POST",
        "/_matrix/client/v3/login",
        Some(b"nope"),
        &[("Content-Type", "application/json")],
    )
    .expect_err(400, "M_NOT_JSON");
    c.post(
        "/_matrix/client/v3/login",
        &json!({"identifier": {"type": "m.id.user", "user": name}, "password": PW}),
    )
    .expect_err(400, "M_BAD_JSON");
    c.post(
        "/_matrix/client/v3/login",
        &json!({"type": "m.login.password", "user": name, "password": 12}),
    )
    .expect_err(400, "M_BAD_JSON");
    c.post(
        "/_matrix/client/v3/login",
        &json!({"type": "m.login.password", "user": name}),
    )
    .expect_err(400, "M_MISSING_PARAM");
    c.post(
        "/_matrix/client/v3/login",
        &json!({"type": "m.login.password", "password": PW}),
    )
    .expect_err(400, "M_MISSING_PARAM");
    c.post(
        "/_matrix/client/v3/login",
        &json!({"type": "m.login.token", "token": "x"}),
    )
    .expect_err(400, "M_UNKNOWN");
    c.post(
        "/_matrix/client/v3/login",
        &json!({"type": "m.login.password", "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "a@b.c"}, "password": PW}),
    )
    .expect_err(400, "M_UNKNOWN");
    login(&c, &name, PW).expect(200);
}

#[test]
fn login_reuses_a_known_device_and_revokes_its_old_token() {
    let c = shared().client();
    let name = unique("reuse");
    let (first, _) = c.register(&name, PW);
    let body = json!({"type": "m.login.password", "user": name, "password": PW, "device_id": "LAPTOP",
                      "initial_device_display_name": "Laptop"});
    let a = c.post("/_matrix/client/v3/login", &body).expect(200);
    assert_eq!(a["device_id"], "LAPTOP");
    let old = c.with_token(a["access_token"].as_str().expect("token"));
    let mut again = body.clone();
    again["initial_device_display_name"] = json!("Renamed?");
    let b = c.post("/_matrix/client/v3/login", &again).expect(200);
    assert_eq!(b["device_id"], "LAPTOP");
    whoami(&old).expect_err(401, "M_UNKNOWN_TOKEN");
    let new = c.with_token(b["access_token"].as_str().expect("token"));
    whoami(&new).expect(200);
    assert_eq!(device_ids(&first).iter().filter(|d| *d == "LAPTOP").count(), 1);
    let device = new.get("/_matrix/client/v3/devices/LAPTOP").expect(200);
    assert_eq!(
        device["display_name"], "Laptop",
        "an existing device keeps its name"
    );
}

#[test]
fn missing_and_unknown_tokens() {
    let c = shared().client();
    whoami(&c).expect_err(401, "M_MISSING_TOKEN");
    let resp = whoami(&c.with_token("nrt_not_a_real_token"));
    resp.expect_err(401, "M_UNKNOWN_TOKEN");
    assert_eq!(resp.body["soft_logout"], false);
    // The query parameter works as well as the header.
    let (me, _) = c.register(&unique("query"), PW);
    let token = me.token.clone().expect("token");
    c.get(&format!("/_matrix/client/v3/account/whoami?access_token={token}"))
        .expect(200);
    c.get("/_matrix/client/v3/account/whoami?access_token=bogus")
        .expect_err(401, "M_UNKNOWN_TOKEN");
}

#[test]
fn logout_kills_the_token_and_device_and_logout_all_kills_every_one() {
    let c = shared().client();
    let name = unique("logout");
    let (first, _) = c.register(&name, PW);
    let (second, second_device) = login_ok(&c, &name, PW);
    let (third, _) = login_ok(&c, &name, PW);
    second.post("/_matrix/client/v3/logout", &json!({})).expect(200);
    whoami(&second).expect_err(401, "M_UNKNOWN_TOKEN");
    assert!(!device_ids(&first).contains(&second_device));
    whoami(&third).expect(200);
    first
        .post("/_matrix/client/v3/logout/all", &json!({}))
        .expect(200);
    whoami(&first).expect_err(401, "M_UNKNOWN_TOKEN");
    whoami(&third).expect_err(401, "M_UNKNOWN_TOKEN");
    let (fresh, device) = login_ok(&c, &name, PW);
    assert_eq!(device_ids(&fresh), vec![device]);
    c.post("/_matrix/client/v3/logout", &json!({}))
        .expect_err(401, "M_MISSING_TOKEN");
}

#[test]
fn failed_logins_are_limited_per_account() {
    let c = shared().client();
    let name = unique("limited");
    c.register(&name, PW);
    for _ in 0..5 {
        login_from(&c, &unique_ip(), &login_body(&name, "wrong")).expect_err(403, "M_FORBIDDEN");
    }
    let limited = login_from(&c, &unique_ip(), &login_body(&name, PW));
    limited.expect_err(429, "M_LIMIT_EXCEEDED");
    let wait = limited.body["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(wait > 0 && wait <= 60_000, "{wait}");
    // Other accounts are unaffected.
    let other = unique("unlimited");
    c.register(&other, PW);
    login(&c, &other, PW).expect(200);
}

#[test]
fn failed_logins_are_limited_per_address() {
    let c = shared().client();
    let name = unique("addr");
    c.register(&name, PW);
    let ip = unique_ip();
    for _ in 0..30 {
        login_from(&c, &ip, &login_body(&unique("nobody"), PW)).expect_err(403, "M_FORBIDDEN");
    }
    login_from(&c, &ip, &login_body(&name, PW)).expect_err(429, "M_LIMIT_EXCEEDED");
    login_from(&c, &unique_ip(), &login_body(&name, PW)).expect(200);
}

#[test]
fn capabilities() {
    let c = shared().client();
    c.get("/_matrix/client/v3/capabilities")
        .expect_err(401, "M_MISSING_TOKEN");
    let (me, _) = c.register(&unique("caps"), PW);
    let caps = me.get("/_matrix/client/v3/capabilities").expect(200)["capabilities"].clone();
    assert_eq!(caps["m.change_password"]["enabled"], true);
    assert_eq!(caps["m.room_versions"]["default"], "12");
    for v in ["10", "11", "12"] {
        assert_eq!(caps["m.room_versions"]["available"][v], "stable");
    }
    assert_eq!(caps["m.set_displayname"]["enabled"], true);
    assert_eq!(caps["m.set_avatar_url"]["enabled"], true);
    assert_eq!(caps["m.3pid_changes"]["enabled"], false);
}
