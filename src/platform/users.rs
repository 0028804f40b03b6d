//! Calls to a User Durable Object (binding `USERS`, one object per local user id), with
//! typed requests and answers.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::api::MatrixError;
use crate::sync::protocol::{Note, UserRequest};

use super::{call_object, env};

/// Sends `request` to the user's Durable Object and returns its JSON answer.
pub async fn call(env: &worker::Env, user_id: &str, request: &UserRequest) -> Result<Value, MatrixError> {
    let body = serde_json::to_string(request).map_err(|_| MatrixError::internal())?;
    call_object(env::USERS, env, user_id, body).await
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
