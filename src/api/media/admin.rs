//! Operators' media endpoints (Synapse's admin API shape):
//! `DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}` removes a piece of media,
//! ours or a cached copy of another server's, from R2 and D1;
//! `POST /_synapse/admin/v1/purge_media_cache?before_ts=` forgets the copies of other
//! servers' media cached before a moment (they are fetched again when asked for).

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

/// Cached copies forgotten per purge request at most (the rest in the next).
const PURGE_BATCH: u32 = 500;

/// `POST /_synapse/admin/v1/purge_media_cache?before_ts=<ms>`
pub async fn purge_cache(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    require_admin(ctx, req).await?;
    let before = req
        .query_param("before_ts")
        .ok_or_else(|| MatrixError::missing_param("before_ts is required"))?
        .parse::<u64>()
        .map_err(|_| MatrixError::invalid_param("before_ts must be a time in ms"))?;
    let db = ctx.db()?;
    let cached = media::cached_before(&db, &ctx.config.server_name, before, PURGE_BATCH).await?;
    for (origin, media_id) in &cached {
        media::remove(&db, origin, media_id).await?;
        delete(ctx, &object_key(origin, media_id)).await;
    }
    Ok(json!({ "deleted": cached.len() }))
}
