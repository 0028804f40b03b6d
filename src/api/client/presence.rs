//! Presence, cheap by design: a user's status is one row in their own Durable Object.
//! Activity (a /sync) only updates that row; a *change* of presence or status message
//! is told once to each local user sharing a room, whose own object keeps the latest
//! presence of each such user for their /sync. Nothing is computed per sync.

use serde::Deserialize;
use serde_json::Value;

use crate::api::auth::require_user;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::platform::{users, Ctx};
use crate::sync::protocol::UserRequest;

#[derive(Deserialize)]
struct Body {
    presence: String,
    #[serde(default)]
    status_msg: Option<String>,
}

/// `PUT /_matrix/client/v3/presence/{userId}/status`
pub async fn put(ctx: &Ctx, req: &HttpRequest, user_id: &str) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    if session.user_id != user_id {
        return Err(MatrixError::forbidden("Cannot set another user's presence"));
    }
    let body: Body = req.json()?;
    if !matches!(body.presence.as_str(), "online" | "offline" | "unavailable") {
        return Err(MatrixError::invalid_param(
            "presence must be online, offline or unavailable",
        ));
    }
    if body.status_msg.as_ref().is_some_and(|m| m.len() > 1024) {
        return Err(MatrixError::invalid_param("status_msg is too long"));
    }
    let request = UserRequest::SetPresence {
        presence: body.presence,
        status_msg: body.status_msg,
        now_ms: ctx.now_ms(),
        user_id: user_id.to_owned(),
    };
    users::call(&ctx.env, user_id, &request).await?;
    Ok(Value::Object(Default::default()))
}

/// `GET /_matrix/client/v3/presence/{userId}/status`
pub async fn get(ctx: &Ctx, req: &HttpRequest, user_id: &str) -> Result<Value, MatrixError> {
    require_user(ctx, req).await?;
    <&ruma::UserId>::try_from(user_id).map_err(|_| MatrixError::invalid_param("Invalid user id"))?;
    let local = user_id
        .split_once(':')
        .is_some_and(|(_, server)| server == ctx.config.server_name);
    if !local
        || crate::storage::users::profile(&ctx.db()?, user_id)
            .await?
            .is_none()
    {
        return Err(MatrixError::not_found("Unknown user"));
    }
    users::call(
        &ctx.env,
        user_id,
        &UserRequest::GetPresence { now_ms: ctx.now_ms() },
    )
    .await
}
