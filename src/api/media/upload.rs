//! Uploads: direct (`POST /upload`) and asynchronous (`POST /create`, then `PUT
//! /upload/{serverName}/{mediaId}`), and the repository's configuration. The body goes
//! to R2 as the stream it arrives as; its `Content-Length` must be given and within
//! the limit (`MEDIA_MAX_UPLOAD_SIZE`).

use serde_json::{json, Value};

use crate::api::auth::{require_user, Session};
use crate::api::error::internal;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::core::media::{clean_content_type, clean_filename, media_id_from, object_key, valid_media_id};
use crate::platform::media::{delete, put_stream, Incoming};
use crate::platform::{random_array, Ctx};
use crate::storage::media;
use crate::storage::rate_limits::{self, Limit};

/// Uploads and creates per user: at most 60 a minute.
const UPLOAD_LIMIT: Limit = Limit {
    max_failures: 60,
    window_ms: 60_000,
};
/// Async uploads a user may have pending at once.
pub const MAX_PENDING: u64 = 20;
/// How long a created media id waits for its bytes (the spec's recommended 24 hours).
pub const UNUSED_EXPIRY_MS: u64 = 24 * 3600 * 1000;

/// `GET /_matrix/client/v1/media/config` (and the legacy `/_matrix/media/v3/config`)
pub async fn config(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    require_user(ctx, req).await?;
    Ok(json!({ "m.upload.size": ctx.config.media.max_upload_size }))
}

/// What an upload request says about its body.
struct Declared {
    length: u64,
    content_type: String,
    filename: Option<String>,
}

fn declared(ctx: &Ctx, req: &HttpRequest) -> Result<Declared, MatrixError> {
    let max = ctx.config.media.max_upload_size;
    let length = match req.header("content-length") {
        None => {
            return Err(
                MatrixError::new("M_UNKNOWN", "Content-Length is required for uploads").with_status(411),
            )
        }
        Some(text) => text
            .trim()
            .parse::<u64>()
            .map_err(|_| MatrixError::invalid_param("Content-Length is not a number"))?,
    };
    if length > max {
        return Err(MatrixError::new(
            "M_TOO_LARGE",
            format!("Uploads are limited to {max} bytes"),
        ));
    }
    let content_type = match req.header("content-type") {
        None => "application/octet-stream".to_owned(),
        Some(text) => {
            clean_content_type(text).ok_or_else(|| MatrixError::invalid_param("Invalid Content-Type"))?
        }
    };
    let filename = match req.query_param("filename") {
        None | Some("") => None,
        Some(name) => {
            Some(clean_filename(name).ok_or_else(|| MatrixError::invalid_param("Invalid filename"))?)
        }
    };
    Ok(Declared {
        length,
        content_type,
        filename,
    })
}

/// Refuses an upload that would take the user past their quota (`MEDIA_USER_QUOTA`).
async fn check_quota(ctx: &Ctx, session: &Session, length: u64) -> Result<(), MatrixError> {
    let Some(quota) = ctx.config.media.user_quota else {
        return Ok(());
    };
    let used = media::used_bytes(&ctx.db()?, &session.user_id).await?;
    if used.saturating_add(length) > quota {
        return Err(MatrixError::forbidden(format!(
            "This upload would take you past your quota of {quota} bytes"
        )));
    }
    Ok(())
}

/// Counts an upload or create against the user's rate limit.
async fn rate_limit(ctx: &Ctx, session: &Session) -> Result<(), MatrixError> {
    let db = ctx.db()?;
    let key = format!("media:{}", session.user_id);
    let now = ctx.now_ms();
    let status = rate_limits::status(&db, &[(&key, UPLOAD_LIMIT)], now).await?;
    if let Some(wait) = status.blocked_for {
        return Err(MatrixError::limit_exceeded(wait));
    }
    rate_limits::record_failures(&db, &[(&key, UPLOAD_LIMIT)], now).await?;
    Ok(())
}

fn new_media_id() -> Result<String, MatrixError> {
    Ok(media_id_from(&random_array::<24>().map_err(internal)?))
}

/// The body did not arrive whole (the client went away, or sent less than it said).
fn incomplete(detail: &str) -> MatrixError {
    crate::platform::log_error(detail);
    MatrixError::new("M_UNKNOWN", "The upload did not complete").with_status(400)
}

/// Streams the body to `key` and checks it is the declared length.
async fn store(ctx: &Ctx, key: &str, body: Incoming, declared: &Declared) -> Result<u64, MatrixError> {
    let size = put_stream(ctx, key, body, &declared.content_type)
        .await
        .map_err(|e| incomplete(&e))?;
    if size != declared.length {
        delete(ctx, key).await;
        return Err(incomplete(&format!(
            "{key}: {size} bytes stored, {} declared",
            declared.length
        )));
    }
    Ok(size)
}

/// `POST /_matrix/media/v3/upload`
pub async fn upload(ctx: &Ctx, req: &HttpRequest, body: Incoming) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let declared = declared(ctx, req)?;
    check_quota(ctx, &session, declared.length).await?;
    rate_limit(ctx, &session).await?;
    let server = &ctx.config.server_name;
    let media_id = new_media_id()?;
    let key = object_key(server, &media_id);
    let size = store(ctx, &key, body, &declared).await?;
    let db = ctx.db()?;
    let stored = media::insert_ready(
        &db,
        server,
        &media_id,
        Some(&session.user_id),
        &declared.content_type,
        declared.filename.as_deref(),
        size,
        ctx.now_ms(),
    )
    .await;
    if let Err(e) = stored {
        delete(ctx, &key).await;
        return Err(e.into());
    }
    Ok(json!({ "content_uri": format!("mxc://{server}/{media_id}") }))
}

/// `POST /_matrix/media/v1/create`
pub async fn create(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let db = ctx.db()?;
    let now = ctx.now_ms();
    if media::pending_count(&db, &session.user_id, now).await? >= MAX_PENDING {
        return Err(MatrixError::new(
            "M_LIMIT_EXCEEDED",
            format!("At most {MAX_PENDING} uploads may be pending"),
        ));
    }
    rate_limit(ctx, &session).await?;
    let server = &ctx.config.server_name;
    let media_id = new_media_id()?;
    let expires = now + UNUSED_EXPIRY_MS;
    media::insert_pending(&db, server, &media_id, &session.user_id, now, expires).await?;
    Ok(json!({
        "content_uri": format!("mxc://{server}/{media_id}"),
        "unused_expires_at": expires,
    }))
}

/// `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}`
pub async fn upload_to(
    ctx: &Ctx,
    req: &HttpRequest,
    body: Incoming,
    server: &str,
    media_id: &str,
) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let unknown = || MatrixError::not_found("Unknown media ID");
    if server != ctx.config.server_name || !valid_media_id(media_id) {
        return Err(unknown());
    }
    let db = ctx.db()?;
    let now = ctx.now_ms();
    let row = media::get(&db, server, media_id).await?.ok_or_else(unknown)?;
    if row.owner.as_deref() != Some(session.user_id.as_str()) {
        return Err(MatrixError::forbidden(
            "This media ID was created by another user",
        ));
    }
    let overwrite = || MatrixError::new("M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded");
    if row.ready() {
        return Err(overwrite());
    }
    if row.expired(now) {
        return Err(MatrixError::not_found("This media ID has expired"));
    }
    let declared = declared(ctx, req)?;
    check_quota(ctx, &session, declared.length).await?;
    rate_limit(ctx, &session).await?;
    if !media::claim_upload(&db, server, media_id, &session.user_id, now).await? {
        // Another request is uploading it, or just did.
        return Err(overwrite());
    }
    let key = object_key(server, media_id);
    let size = match store(ctx, &key, body, &declared).await {
        Ok(size) => size,
        Err(e) => {
            media::release_upload(&db, server, media_id).await?;
            return Err(e);
        }
    };
    media::complete_upload(
        &db,
        server,
        media_id,
        &declared.content_type,
        declared.filename.as_deref(),
        size,
        ctx.now_ms(),
    )
    .await?;
    Ok(json!({}))
}
