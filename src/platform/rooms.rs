//! Calls from the edge to a Room Durable Object (binding `ROOMS`, one object per room
//! id), with typed requests and answers.

use serde_json::Value;

use crate::api::MatrixError;
use crate::roomserver::protocol::RoomRequest;

use super::{call_object_timed, env, Ctx};

/// Sends `request` to the room's Durable Object and returns its JSON answer, or the
/// Matrix error it answered with.
pub async fn call(ctx: &Ctx, room_id: &str, request: &RoomRequest) -> Result<Value, MatrixError> {
    let body = serde_json::to_string(request).map_err(|_| MatrixError::internal())?;
    call_object_timed(env::ROOMS, &ctx.env, room_id, body, Some((&ctx.timings, "room"))).await
}
