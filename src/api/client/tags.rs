//! Room tags: `/user/{userId}/rooms/{roomId}/tags`. Kept as the room's `m.tag` account
//! data (`core::tags`), so /sync shows every change; only the user themself reads or
//! changes them.

use serde_json::{json, Value};

use crate::api::auth::require_user;
use crate::api::error::internal;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::core::tags::{self, TagError, ACCOUNT_DATA_TYPE};
use crate::platform::Ctx;
use crate::storage::account_data;

/// Attempts of a read-modify-write before giving up on concurrent writers.
const ATTEMPTS: usize = 8;

async fn owner(ctx: &Ctx, req: &HttpRequest, user_id: &str, room_id: &str) -> Result<(), MatrixError> {
    let session = require_user(ctx, req).await?;
    if session.user_id != user_id {
        return Err(MatrixError::forbidden("Cannot access another user's tags"));
    }
    if <&ruma::RoomId>::try_from(room_id).is_err() {
        return Err(MatrixError::invalid_param("Invalid room id"));
    }
    Ok(())
}

/// `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags`
pub async fn get(ctx: &Ctx, req: &HttpRequest, user_id: &str, room_id: &str) -> Result<Value, MatrixError> {
    owner(ctx, req, user_id, room_id).await?;
    let stored = account_data::get(&ctx.db()?, user_id, Some(room_id), ACCOUNT_DATA_TYPE).await?;
    let content = stored.and_then(|text| serde_json::from_str::<Value>(&text).ok());
    Ok(json!({ "tags": tags::tags_of(content.as_ref()) }))
}

/// `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}`
pub async fn put(
    ctx: &Ctx,
    req: &HttpRequest,
    user_id: &str,
    room_id: &str,
    tag: &str,
) -> Result<Value, MatrixError> {
    owner(ctx, req, user_id, room_id).await?;
    let body = req.json_value()?;
    let value = tags::check_put(tag, &body).map_err(|e| match e {
        TagError::BadName => MatrixError::invalid_param("A tag must be 1 to 255 bytes long"),
        TagError::BadBody(why) => MatrixError::bad_json(why),
    })?;
    change(ctx, user_id, room_id, tag, Some(value)).await
}

/// `DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}`
pub async fn delete(
    ctx: &Ctx,
    req: &HttpRequest,
    user_id: &str,
    room_id: &str,
    tag: &str,
) -> Result<Value, MatrixError> {
    owner(ctx, req, user_id, room_id).await?;
    if tag.len() > tags::MAX_TAG_BYTES {
        return Err(MatrixError::invalid_param("A tag must be 1 to 255 bytes long"));
    }
    change(ctx, user_id, room_id, tag, None).await
}

/// Sets or removes one tag, read-modify-write against concurrent changes, and tells
/// the user's stream.
async fn change(
    ctx: &Ctx,
    user_id: &str,
    room_id: &str,
    tag: &str,
    value: Option<Value>,
) -> Result<Value, MatrixError> {
    let db = ctx.db()?;
    for _ in 0..ATTEMPTS {
        let read = account_data::get_versioned(&db, user_id, Some(room_id), ACCOUNT_DATA_TYPE).await?;
        let current = read
            .as_ref()
            .and_then(|(text, _)| serde_json::from_str::<Value>(text).ok());
        if value.is_none() && !tags::tags_of(current.as_ref()).contains_key(tag) {
            return Ok(json!({}));
        }
        let next = tags::apply(current.as_ref(), tag, value.clone());
        let text = serde_json::to_string(&next).map_err(internal)?;
        if text.len() > super::account_data::MAX_CONTENT {
            return Err(MatrixError::too_large(super::account_data::MAX_CONTENT));
        }
        let seen = read.map(|(_, id)| id);
        if let Some(pos) =
            account_data::put_if(&db, user_id, Some(room_id), ACCOUNT_DATA_TYPE, &text, seen).await?
        {
            super::receipts::notify_account_data(ctx, user_id, pos).await?;
            return Ok(json!({}));
        }
    }
    Err(MatrixError::limit_exceeded(100))
}
