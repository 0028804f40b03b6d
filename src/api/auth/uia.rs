//! User-interactive authentication. Every flow Neurite offers is a single stage, done
//! in the request that carries it, so no session state is stored: the `session` id in
//! the 401 answer only lets clients follow the protocol. A request without `auth` gets
//! the 401 challenge; a failed stage gets the challenge again with `M_FORBIDDEN`.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::MatrixError;
use crate::core::accounts::token::{random_string, ALPHANUMERIC};

pub const DUMMY: &str = "m.login.dummy";
pub const REGISTRATION_TOKEN: &str = "m.login.registration_token";
pub const PASSWORD: &str = "m.login.password";

/// The `auth` object of a request (the fields of the stages we support).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthDict {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub session: Option<String>,
    /// `m.login.registration_token`
    pub token: Option<String>,
    /// `m.login.password`
    pub password: Option<String>,
    pub identifier: Option<Identifier>,
    /// Legacy `m.login.password` field.
    pub user: Option<String>,
}

/// A login identifier; only `m.id.user` is supported.
#[derive(Debug, Clone, Deserialize)]
pub struct Identifier {
    #[serde(rename = "type")]
    pub kind: String,
    pub user: Option<String>,
}

/// An identifier type other than `m.id.user`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsupportedIdentifier;

impl AuthDict {
    /// The user the client names: `identifier.user` for `m.id.user`, else the legacy
    /// `user`. `Err` for other identifier types.
    pub fn named_user(&self) -> Result<Option<&str>, UnsupportedIdentifier> {
        match &self.identifier {
            Some(id) if id.kind == "m.id.user" => Ok(id.user.as_deref()),
            Some(_) => Err(UnsupportedIdentifier),
            None => Ok(self.user.as_deref()),
        }
    }
}

/// Parses the optional `auth` field of a request body; wrong types are `M_BAD_JSON`.
pub fn parse_auth(body: &Value) -> Result<Option<AuthDict>, MatrixError> {
    match body.get("auth") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value.clone())
            .map(Some)
            .map_err(|e| MatrixError::bad_json(format!("Invalid auth: {e}"))),
    }
}

/// A fresh session id for a challenge.
pub fn new_session(random: &[u8; 24]) -> String {
    random_string(random, ALPHANUMERIC)
}

/// The challenge body: one single-stage flow per allowed stage.
pub fn challenge_body(stages: &[&str], session: &str, params: Value) -> Map<String, Value> {
    let flows: Vec<Value> = stages.iter().map(|s| json!({ "stages": [s] })).collect();
    let mut body = Map::new();
    body.insert("flows".into(), Value::Array(flows));
    body.insert("params".into(), params);
    body.insert("session".into(), json!(session));
    body.insert("completed".into(), json!([]));
    body
}

/// The 401 challenge, for a request without `auth` (or with an unsupported stage).
pub fn challenge(stages: &[&str], session: &str, params: Value) -> MatrixError {
    MatrixError::auth_challenge(challenge_body(stages, session, params))
}

/// The 401 answer to a failed stage: the challenge plus `errcode`/`error`.
pub fn failed(
    stages: &[&str],
    session: &str,
    params: Value,
    errcode: &'static str,
    error: &str,
) -> MatrixError {
    let mut err = MatrixError::new(errcode, error).with_status(401);
    for (k, v) in challenge_body(stages, session, params) {
        err = err.with_extra(&k, v);
    }
    err
}

/// The session id to answer with: the client's, or a fresh one.
pub fn session_of(auth: Option<&AuthDict>) -> Result<String, MatrixError> {
    match auth.and_then(|a| a.session.clone()) {
        Some(s) => Ok(s),
        None => {
            let random = crate::platform::random_array::<24>().map_err(crate::api::error::internal)?;
            Ok(new_session(&random))
        }
    }
}

/// Length of a bound session's random part.
const SESSION_NONCE: usize = 24;

/// The tag that binds a session to one user and one operation: the server's signature
/// (deterministic, keyed by its secret) over both and the nonce, as letters and digits.
fn session_tag(key: &crate::core::keys::SigningKey, user: &str, operation: &str, nonce: &str) -> String {
    key.sign_bytes(format!("uia\0{user}\0{operation}\0{nonce}").as_bytes())
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(22)
        .collect()
}

/// A session id bound to `user` and `operation` (no state is stored: the id carries
/// its own proof). A client must finish an operation with the session it started it
/// with; a session offered for another operation (or user) is refused.
pub fn bound_session(
    key: &crate::core::keys::SigningKey,
    user: &str,
    operation: &str,
    offered: Option<&str>,
) -> Result<String, MatrixError> {
    match offered {
        Some(id) => {
            let bound = id.len() > SESSION_NONCE
                && id.is_char_boundary(SESSION_NONCE)
                && session_tag(key, user, operation, &id[..SESSION_NONCE]) == id[SESSION_NONCE..];
            if bound {
                Ok(id.to_owned())
            } else {
                Err(MatrixError::forbidden(
                    "This authentication session belongs to another request",
                ))
            }
        }
        None => {
            let random = crate::platform::random_array::<24>().map_err(crate::api::error::internal)?;
            let nonce = new_session(&random);
            let tag = session_tag(key, user, operation, &nonce);
            Ok(format!("{nonce}{tag}"))
        }
    }
}

/// Runs the `m.login.password` stage for an authenticated request: answers the
/// challenge when `auth` is missing, and checks the password of the session's own user
/// (the identifier, if given, must name that user: 403 otherwise), within a session
/// bound to `operation` (a text naming the request and its target, e.g. the device
/// to delete). Failed checks count towards the
/// login rate limits.
pub async fn require_password(
    ctx: &crate::platform::Ctx,
    req: &crate::api::http::HttpRequest,
    session: &super::Session,
    body: &Value,
    operation: &str,
) -> Result<(), MatrixError> {
    let auth = parse_auth(body)?;
    let session_id = bound_session(
        &ctx.config.signing_key,
        &session.user_id,
        operation,
        auth.as_ref().and_then(|a| a.session.as_deref()),
    )?;
    let stages = [PASSWORD];
    let Some(auth) = auth else {
        return Err(challenge(&stages, &session_id, json!({})));
    };
    if auth.kind.as_deref() != Some(PASSWORD) {
        return Err(failed(
            &stages,
            &session_id,
            json!({}),
            "M_FORBIDDEN",
            "Unsupported authentication type",
        ));
    }
    let server = &ctx.config.server_name;
    let named = auth.named_user().map_err(|_| {
        failed(
            &stages,
            &session_id,
            json!({}),
            "M_FORBIDDEN",
            "Unsupported identifier type",
        )
    })?;
    if let Some(named) = named {
        let named = crate::core::accounts::username::login_user_id(named, server);
        if named.as_deref() != Some(session.user_id.as_str()) {
            // Another account's credentials cannot authorize this one's request.
            return Err(MatrixError::forbidden(
                "The authentication names another user than the requester",
            ));
        }
    }
    let Some(password) = auth.password.as_deref() else {
        return Err(failed(
            &stages,
            &session_id,
            json!({}),
            "M_FORBIDDEN",
            "Missing password",
        ));
    };
    let db = ctx.db()?;
    let ip = super::client_ip(req);
    match crate::api::client::login::check_password(ctx, &db, Some(&session.user_id), password, ip).await {
        Ok(()) => Ok(()),
        Err(e) if e.errcode == "M_FORBIDDEN" => {
            Err(failed(&stages, &session_id, json!({}), "M_FORBIDDEN", &e.error))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_has_flows_session_and_no_errcode() {
        let err = challenge(&[PASSWORD], "abc", json!({}));
        assert_eq!(err.status(), 401);
        let body = err.body();
        assert_eq!(body["flows"], json!([{ "stages": ["m.login.password"] }]));
        assert_eq!(body["session"], "abc");
        assert_eq!(body["completed"], json!([]));
        assert!(body.get("errcode").is_none(), "{body}");
    }

    #[test]
    fn failed_stage_keeps_the_challenge_and_adds_the_error() {
        let err = failed(&[PASSWORD], "s", json!({}), "M_FORBIDDEN", "Invalid password");
        assert_eq!(err.status(), 401);
        let body = err.body();
        assert_eq!(body["errcode"], "M_FORBIDDEN");
        assert_eq!(body["session"], "s");
        assert!(body["flows"].is_array());
    }

    #[test]
    fn parses_auth_and_names_the_user() {
        let body = json!({"auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "al"}, "password": "p", "session": "x"}});
        let auth = parse_auth(&body).expect("ok").expect("some");
        assert_eq!(auth.kind.as_deref(), Some(PASSWORD));
        assert_eq!(auth.named_user(), Ok(Some("al")));
        let legacy = parse_auth(&json!({"auth": {"type": "m.login.password", "user": "bo"}}))
            .expect("ok")
            .expect("some");
        assert_eq!(legacy.named_user(), Ok(Some("bo")));
        let other = parse_auth(&json!({"auth": {"identifier": {"type": "m.id.thirdparty"}}}))
            .expect("ok")
            .expect("some");
        assert_eq!(other.named_user(), Err(UnsupportedIdentifier));
        assert!(parse_auth(&json!({})).expect("ok").is_none());
        assert_eq!(
            parse_auth(&json!({"auth": {"password": 5}})).unwrap_err().errcode,
            "M_BAD_JSON"
        );
        assert_eq!(
            parse_auth(&json!({"auth": "x"})).unwrap_err().errcode,
            "M_BAD_JSON"
        );
    }

    #[test]
    fn sessions_are_alphanumeric() {
        let s = new_session(&[7; 24]);
        assert_eq!(s.len(), 24);
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}
