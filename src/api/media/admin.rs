//! Operators' media endpoint (Synapse's admin API shape):
//! `DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}` removes a piece of media,
//! ours or a cached copy of another server's, from R2 and D1.

use serde_json::{json, Value};

use crate::api::auth::require_admin;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::core::media::{object_key, valid_media_id};
use crate::platform::media::delete;
use crate::platform::Ctx;
use crate::storage::media;

/// `DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}`
pub async fn delete_media(
    ctx: &Ctx,
    req: &HttpRequest,
    server: &str,
    media_id: &str,
) -> Result<Value, MatrixError> {
    require_admin(ctx, req).await?;
    if !valid_media_id(media_id) {
        return Err(MatrixError::not_found("Unknown media"));
    }
    let db = ctx.db()?;
    if media::get(&db, server, media_id).await?.is_none() {
        return Err(MatrixError::not_found("Unknown media"));
    }
    // The record first: once it is gone nothing serves the bytes, whatever happens next.
    media::remove(&db, server, media_id).await?;
    delete(ctx, &object_key(server, media_id)).await;
    Ok(json!({ "deleted_media": [media_id], "total": 1 }))
}
