//! Accounts: closed and token-gated registration, Synapse-compatible shared-secret
//! registration and registration-token administration.

use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha1::Sha1;

use crate::accounts::{login, whoami, PW};
use crate::harness::{shared, unique, Client, Options, Resp, Server};

const ADMIN_REGISTER: &str = "/_synapse/admin/v1/register";
const TOKENS: &str = "/_synapse/admin/v1/registration_tokens";
const VALIDITY: &str = "/_matrix/client/v1/register/m.login.registration_token/validity";

fn closed_server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| {
        Server::start(Options {
            registration: "closed",
            guest_access: "off",
            ..Options::default()
        })
    })
}

fn token_server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| {
        Server::start(Options {
            registration: "token",
            ..Options::default()
        })
    })
}

fn shared_secret(server: &Server) -> String {
    std::fs::read_to_string(server.state_dir.join("registration_shared_secret"))
        .expect("run.sh writes the shared secret")
        .trim()
        .to_owned()
}

/// The MAC as Synapse's `register_new_matrix_user` computes it.
fn mac(secret: &str, nonce: &str, user: &str, password: &str, admin: bool) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(nonce.as_bytes());
    mac.update(b"\0");
    mac.update(user.as_bytes());
    mac.update(b"\0");
    mac.update(password.as_bytes());
    mac.update(b"\0");
    mac.update(if admin { b"admin" } else { b"notadmin" });
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn nonce(c: &Client) -> String {
    c.get(ADMIN_REGISTER).expect(200)["nonce"]
        .as_str()
        .expect("nonce")
        .to_owned()
}

fn admin_register(server: &Server, user: &str, admin: bool) -> Resp {
    let c = server.client();
    let nonce = nonce(&c);
    let mac = mac(&shared_secret(server), &nonce, user, PW, admin);
    c.post(
        ADMIN_REGISTER,
        &json!({"nonce": nonce, "username": user, "password": PW, "admin": admin, "mac": mac}),
    )
}

/// Registers through the shared secret and returns a client with the token.
fn admin_user(server: &Server, admin: bool) -> (Client, String) {
    let body = admin_register(server, &unique("admin"), admin).expect(200);
    let token = body["access_token"].as_str().expect("token");
    (
        server.client().with_token(token),
        body["user_id"].as_str().expect("user").to_owned(),
    )
}

#[test]
fn closed_server_refuses_client_registration() {
    let c = closed_server().client();
    c.post(
        "/_matrix/client/v3/register",
        &json!({"username": unique("x"), "password": PW}),
    )
    .expect_err(403, "M_FORBIDDEN");
    c.post(
        "/_matrix/client/v3/register",
        &json!({"username": unique("x"), "password": PW, "auth": {"type": "m.login.dummy"}}),
    )
    .expect_err(403, "M_FORBIDDEN");
    c.get(&format!(
        "/_matrix/client/v3/register/available?username={}",
        unique("x")
    ))
    .expect_err(403, "M_FORBIDDEN");
    c.get(&format!("{VALIDITY}?token=abc"))
        .expect_err(403, "M_FORBIDDEN");
    // Guest access is off on this server.
    c.post("/_matrix/client/v3/register?kind=guest", &json!({}))
        .expect_err(403, "M_GUEST_ACCESS_FORBIDDEN");
}

#[test]
fn shared_secret_registration_works_on_a_closed_server() {
    let server = closed_server();
    let c = server.client();
    let name = unique("ssr");
    let body = admin_register(server, &name, false).expect(200);
    let user_id = format!("@{name}:{}", server.server_name);
    assert_eq!(body["user_id"], user_id.as_str());
    assert_eq!(body["home_server"], server.server_name.as_str());
    let me = c.with_token(body["access_token"].as_str().expect("token"));
    assert_eq!(whoami(&me).expect(200)["device_id"], body["device_id"]);
    login(&c, &name, PW).expect(200);
    // Not an admin.
    me.get(TOKENS).expect_err(403, "M_FORBIDDEN");
    // The id is now taken.
    admin_register(server, &name, false).expect_err(400, "M_USER_IN_USE");
}

#[test]
fn shared_secret_registration_checks_nonce_and_mac() {
    let server = closed_server();
    let c = server.client();
    let secret = shared_secret(server);
    let name = unique("mac");

    // Wrong MAC (admin flag flipped): refused, nothing created.
    let n = nonce(&c);
    let bad = mac(&secret, &n, &name, PW, false);
    c.post(
        ADMIN_REGISTER,
        &json!({"nonce": n, "username": name, "password": PW, "admin": true, "mac": bad}),
    )
    .expect_err(403, "M_FORBIDDEN");
    // The nonce was used up by that attempt.
    let good = mac(&secret, &n, &name, PW, true);
    let reused = c.post(
        ADMIN_REGISTER,
        &json!({"nonce": n, "username": name, "password": PW, "admin": true, "mac": good}),
    );
    assert_eq!(reused.status, 400, "{}", reused.body);
    let unknown = c.post(
        ADMIN_REGISTER,
        &json!({"nonce": "made-up", "username": name, "password": PW, "admin": true, "mac": good}),
    );
    assert_eq!(unknown.status, 400, "{}", unknown.body);
    // Bad bodies.
    c.post(ADMIN_REGISTER, &json!({"username": name}))
        .expect_err(400, "M_BAD_JSON");
    c.raw("POST", ADMIN_REGISTER, Some(b"{"), &[])
        .expect_err(400, "M_NOT_JSON");
    // Invalid usernames are refused even with a right MAC.
    let n = nonce(&c);
    let m = mac(&secret, &n, "Bad Name", PW, false);
    c.post(
        ADMIN_REGISTER,
        &json!({"nonce": n, "username": "Bad Name", "password": PW, "mac": m}),
    )
    .expect_err(400, "M_INVALID_USERNAME");
    // None of that created the account; a correct request does.
    login(&c, &name, PW).expect_err(403, "M_FORBIDDEN");
    admin_register(server, &name, true).expect(200);
}

#[test]
fn token_server_requires_a_registration_token() {
    let server = token_server();
    let c = server.client();
    let (admin, _) = admin_user(server, true);

    let name = unique("tok");
    let first = c.post(
        "/_matrix/client/v3/register",
        &json!({"username": name, "password": PW}),
    );
    assert_eq!(first.status, 401, "{}", first.body);
    assert_eq!(
        first.body["flows"],
        json!([{"stages": ["m.login.registration_token"]}])
    );
    // The dummy stage is not enough here.
    c.post(
        "/_matrix/client/v3/register",
        &json!({"username": name, "password": PW, "auth": {"type": "m.login.dummy"}}),
    )
    .expect_err(401, "M_FORBIDDEN");

    let token = admin
        .post(&format!("{TOKENS}/new"), &json!({"uses_allowed": 1}))
        .expect(200);
    let token = token["token"].as_str().expect("token").to_owned();
    assert_eq!(token.len(), 16);
    assert_eq!(
        c.get(&format!("{VALIDITY}?token={token}")).expect(200),
        json!({"valid": true})
    );
    assert_eq!(
        c.get(&format!("{VALIDITY}?token=nope")).expect(200),
        json!({"valid": false})
    );
    c.get(VALIDITY).expect_err(400, "M_MISSING_PARAM");

    let auth =
        |t: &str| json!({"type": "m.login.registration_token", "token": t, "session": first.body["session"]});
    c.post(
        "/_matrix/client/v3/register",
        &json!({"username": name, "password": PW, "auth": auth("wrong")}),
    )
    .expect_err(401, "M_FORBIDDEN");
    let ok = c
        .post(
            "/_matrix/client/v3/register",
            &json!({"username": name, "password": PW, "auth": auth(&token)}),
        )
        .expect(200);
    whoami(&c.with_token(ok["access_token"].as_str().expect("token"))).expect(200);
    // Used up.
    assert_eq!(
        c.get(&format!("{VALIDITY}?token={token}")).expect(200),
        json!({"valid": false})
    );
    c.post(
        "/_matrix/client/v3/register",
        &json!({"username": unique("tok2"), "password": PW, "auth": auth(&token)}),
    )
    .expect_err(401, "M_FORBIDDEN");
    let record = admin.get(&format!("{TOKENS}/{token}")).expect(200);
    assert_eq!(
        (record["uses_allowed"].clone(), record["completed"].clone()),
        (json!(1), json!(1))
    );
}

#[test]
fn a_failed_registration_does_not_use_up_the_token() {
    let server = token_server();
    let c = server.client();
    let (admin, _) = admin_user(server, true);
    let token = unique("t");
    admin
        .post(
            &format!("{TOKENS}/new"),
            &json!({"token": token, "uses_allowed": 1}),
        )
        .expect(200);
    let auth = json!({"type": "m.login.registration_token", "token": token});
    // Missing password after the stage: refused, token untouched.
    c.post(
        "/_matrix/client/v3/register",
        &json!({"username": unique("f"), "auth": auth}),
    )
    .expect_err(400, "M_MISSING_PARAM");
    assert_eq!(
        c.get(&format!("{VALIDITY}?token={token}")).expect(200),
        json!({"valid": true})
    );
}

#[test]
fn registration_token_admin_api() {
    let server = token_server();
    let (admin, _) = admin_user(server, true);
    let (user, _) = admin_user(server, false);
    let c = server.client();

    let name = unique("custom");
    let created = admin
        .post(
            &format!("{TOKENS}/new"),
            &json!({"token": name, "expiry_time": 4_102_444_800_000_i64}),
        )
        .expect(200);
    assert_eq!(
        created,
        json!({"token": name, "uses_allowed": null, "pending": 0, "completed": 0, "expiry_time": 4_102_444_800_000_i64})
    );
    let generated = admin
        .post(&format!("{TOKENS}/new"), &json!({"length": 40}))
        .expect(200);
    assert_eq!(generated["token"].as_str().map(str::len), Some(40));

    let listed = admin.get(TOKENS).expect(200);
    let names: Vec<&str> = listed["registration_tokens"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|t| t["token"].as_str())
        .collect();
    assert!(names.contains(&name.as_str()), "{names:?}");
    assert_eq!(admin.get(&format!("{TOKENS}/{name}")).expect(200), created);

    // Bad input.
    admin
        .post(&format!("{TOKENS}/new"), &json!({"token": name}))
        .expect_err(400, "M_INVALID_PARAM");
    for body in [
        json!({"token": "has space"}),
        json!({"token": "x".repeat(65)}),
        json!({"uses_allowed": -1}),
        json!({"expiry_time": 1}),
        json!({"length": 0}),
        json!({"length": 65}),
    ] {
        admin
            .post(&format!("{TOKENS}/new"), &body)
            .expect_err(400, "M_INVALID_PARAM");
    }
    admin
        .post(&format!("{TOKENS}/new"), &json!({"uses_allowed": "many"}))
        .expect_err(400, "M_BAD_JSON");

    // Admins only.
    user.get(TOKENS).expect_err(403, "M_FORBIDDEN");
    user.post(&format!("{TOKENS}/new"), &json!({}))
        .expect_err(403, "M_FORBIDDEN");
    user.get(&format!("{TOKENS}/{name}"))
        .expect_err(403, "M_FORBIDDEN");
    user.delete(&format!("{TOKENS}/{name}"))
        .expect_err(403, "M_FORBIDDEN");
    c.get(TOKENS).expect_err(401, "M_MISSING_TOKEN");
    assert_eq!(admin.get(&format!("{TOKENS}/{name}")).expect(200), created);

    // Update: given fields change, absent ones stay, null clears.
    let updated = admin
        .put(&format!("{TOKENS}/{name}"), &json!({"uses_allowed": 3}))
        .expect(200);
    assert_eq!(updated["uses_allowed"], 3);
    assert_eq!(updated["expiry_time"], 4_102_444_800_000_i64);
    admin
        .put(&format!("{TOKENS}/{name}"), &json!({"uses_allowed": "x"}))
        .expect_err(400, "M_BAD_JSON");
    admin
        .put(&format!("{TOKENS}/{name}"), &json!({"expiry_time": 5}))
        .expect_err(400, "M_INVALID_PARAM");
    user.put(&format!("{TOKENS}/{name}"), &json!({"uses_allowed": 0}))
        .expect_err(403, "M_FORBIDDEN");
    admin
        .put(&format!("{TOKENS}/unknown-token"), &json!({"uses_allowed": 1}))
        .expect_err(404, "M_NOT_FOUND");
    let cleared = admin
        .put(&format!("{TOKENS}/{name}"), &json!({"expiry_time": null}))
        .expect(200);
    assert_eq!(
        (cleared["uses_allowed"].clone(), cleared["expiry_time"].clone()),
        (json!(3), Value::Null)
    );
    assert_eq!(admin.get(&format!("{TOKENS}/{name}")).expect(200), cleared);

    admin.delete(&format!("{TOKENS}/{name}")).expect(200);
    admin
        .get(&format!("{TOKENS}/{name}"))
        .expect_err(404, "M_NOT_FOUND");
    admin
        .delete(&format!("{TOKENS}/{name}"))
        .expect_err(404, "M_NOT_FOUND");
    assert_eq!(
        c.get(&format!("{VALIDITY}?token={name}")).expect(200),
        json!({"valid": false})
    );
}

#[test]
fn token_validity_is_forbidden_on_an_open_server() {
    shared()
        .client()
        .get(&format!("{VALIDITY}?token=abc"))
        .expect_err(403, "M_FORBIDDEN");
}
