//! Calls from the edge to a Room Durable Object (binding `ROOMS`, one object per room
//! id), with typed requests and answers.

use serde_json::Value;

use crate::api::MatrixError;
use crate::roomserver::protocol::RoomRequest;

use super::{env, log_error, Ctx};

fn internal(detail: impl std::fmt::Display) -> MatrixError {
    log_error(&format!("room call: {detail}"));
    MatrixError::internal()
}

/// Sends `request` to the room's Durable Object and returns its JSON answer, or the
/// Matrix error it answered with.
pub async fn call(ctx: &Ctx, room_id: &str, request: &RoomRequest) -> Result<Value, MatrixError> {
    let namespace = ctx.env.durable_object(env::ROOMS).map_err(internal)?;
    let stub = namespace
        .id_from_name(room_id)
        .and_then(|id| id.get_stub())
        .map_err(internal)?;
    let body = serde_json::to_string(request).map_err(internal)?;
    let mut init = worker::RequestInit::new();
    init.with_method(worker::Method::Post)
        .with_body(Some(wasm_bindgen::JsValue::from_str(&body)));
    let req = worker::Request::new_with_init("https://room/", &init).map_err(internal)?;
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
        log_error(&format!("room {room_id}: {error}"));
        return Err(MatrixError::internal());
    }
    Err(MatrixError::from_parts(status, errcode, error))
}
