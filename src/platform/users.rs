//! Calls to a User Durable Object (binding `USERS`, one object per local user id), with
//! typed requests and answers.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::api::MatrixError;
use crate::sync::protocol::{Note, UserRequest};

use super::{env, log_error};

fn internal(detail: impl std::fmt::Display) -> MatrixError {
    log_error(&format!("user call: {detail}"));
    MatrixError::internal()
}

/// Sends `request` to the user's Durable Object and returns its JSON answer.
pub async fn call(env: &worker::Env, user_id: &str, request: &UserRequest) -> Result<Value, MatrixError> {
    let namespace = env.durable_object(env::USERS).map_err(internal)?;
    let stub = namespace
        .id_from_name(user_id)
        .and_then(|id| id.get_stub())
        .map_err(internal)?;
    let body = serde_json::to_string(request).map_err(internal)?;
    let mut init = worker::RequestInit::new();
    init.with_method(worker::Method::Post)
        .with_body(Some(wasm_bindgen::JsValue::from_str(&body)));
    let req = worker::Request::new_with_init("https://user/", &init).map_err(internal)?;
    let mut resp = stub.fetch_with_request(req).await.map_err(internal)?;
    let status = resp.status_code();
    let text = resp.text().await.map_err(internal)?;
    let value: Value = serde_json::from_str(&text).map_err(internal)?;
    if status == 200 {
        return Ok(value);
    }
    let errcode = value["errcode"].as_str().unwrap_or("M_UNKNOWN");
    let error = value["error"].as_str().unwrap_or("");
    if status >= 500 {
        return Err(internal(format!("user {user_id}: {error}")));
    }
    Err(MatrixError::from_parts(status, errcode, error))
}

/// Delivers notes to each user's Durable Object, concurrently. Failures are logged:
/// the log consumer delivers the same notes again (they are idempotent).
pub async fn notify_all(env: &worker::Env, notes: BTreeMap<String, Vec<Note>>) -> Result<(), MatrixError> {
    let calls = notes.into_iter().map(|(user, notes)| async move {
        let result = call(env, &user, &UserRequest::Notify { notes }).await;
        result.map(|_| ())
    });
    let results = futures_util::future::join_all(calls).await;
    results
        .into_iter()
        .collect::<Result<Vec<()>, MatrixError>>()
        .map(|_| ())
}
