//! Account data, global and per room. Stored in D1 with a per-user stream id so /sync
//! can read what changed since its last position (`storage::account_data::changed_since`).

use serde_json::{json, Value};

use crate::api::auth::require_user;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::platform::Ctx;
use crate::storage::account_data;

/// Largest stored content, in bytes (an event's limit).
pub const MAX_CONTENT: usize = 65_536;
pub const MAX_TYPE: usize = 255;

async fn owner(ctx: &Ctx, req: &HttpRequest, user_id: &str) -> Result<(), MatrixError> {
    let session = require_user(ctx, req).await?;
    if session.user_id != user_id {
        return Err(MatrixError::forbidden(
            "Cannot access another user's account data",
        ));
    }
    Ok(())
}

fn check_room_id(room_id: Option<&str>) -> Result<(), MatrixError> {
    match room_id {
        Some(r) if !r.starts_with('!') || r.len() > 255 => Err(MatrixError::invalid_param("Invalid room id")),
        _ => Ok(()),
    }
}

/// `GET /_matrix/client/v3/user/{userId}/account_data/{type}` and
/// `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`
pub async fn get(
    ctx: &Ctx,
    req: &HttpRequest,
    user_id: &str,
    room_id: Option<&str>,
    kind: &str,
) -> Result<Value, MatrixError> {
    owner(ctx, req, user_id).await?;
    check_room_id(room_id)?;
    if room_id.is_none() && kind == crate::core::push::ACCOUNT_DATA_TYPE {
        // Readable as normal, with the server defaults when the user never set any.
        return super::push_rules::content_of(ctx, user_id).await;
    }
    let content = account_data::get(&ctx.db()?, user_id, room_id, kind)
        .await?
        .ok_or_else(|| MatrixError::not_found("Account data not found"))?;
    serde_json::from_str(&content).map_err(crate::api::error::internal)
}

/// `PUT /_matrix/client/v3/user/{userId}/account_data/{type}` and
/// `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`
pub async fn put(
    ctx: &Ctx,
    req: &HttpRequest,
    user_id: &str,
    room_id: Option<&str>,
    kind: &str,
) -> Result<Value, MatrixError> {
    owner(ctx, req, user_id).await?;
    check_room_id(room_id)?;
    let content = req.json_value()?;
    if kind == "m.fully_read" || kind == "m.push_rules" {
        // The spec answers 405 with M_BAD_JSON for server-controlled types.
        return Err(MatrixError::bad_json(format!("Cannot set {kind} through this API")).with_status(405));
    }
    if kind.len() > MAX_TYPE {
        return Err(MatrixError::invalid_param("Account data type is too long"));
    }
    let text = serde_json::to_string(&content).map_err(crate::api::error::internal)?;
    if text.len() > MAX_CONTENT {
        return Err(MatrixError::too_large(MAX_CONTENT));
    }
    let pos = account_data::put(&ctx.db()?, user_id, room_id, kind, &text).await?;
    super::receipts::notify_account_data(ctx, user_id, pos).await?;
    Ok(json!({}))
}
