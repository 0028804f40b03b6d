//! Our media for other servers: `GET /_matrix/federation/v1/media/download/{mediaId}`
//! and `/thumbnail/{mediaId}`, signed with `X-Matrix` like every federation request,
//! answered `multipart/mixed` (the metadata `{}`, then the bytes, streamed from R2).

use crate::api::error::internal;
use crate::api::federation::auth::authenticate;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::core::accounts::hex;
use crate::core::media::{content_disposition, is_thumbnail_type, multipart_frame, object_key};
use crate::platform::media::{self as r2, Answer, Body};
use crate::platform::{random_array, Ctx};

use super::download::{check_thumbnail_params, wait_local};
use super::timeout_ms;

/// `GET /_matrix/federation/v1/media/download/{mediaId}` (and, with `thumbnail`,
/// `/media/thumbnail/{mediaId}`: the image itself, as for clients).
pub async fn download(
    ctx: &Ctx,
    req: &HttpRequest,
    media_id: &str,
    thumbnail: bool,
) -> Result<Answer, MatrixError> {
    let origin = authenticate(ctx, req).await?;
    ctx.mark("auth");
    crate::federation::sender::heard_from(ctx, &origin).await;
    if thumbnail {
        check_thumbnail_params(req)?;
    }
    let row = wait_local(ctx, media_id, timeout_ms(req)?).await?;
    let content_type = row.content_type.as_deref().unwrap_or("application/octet-stream");
    if thumbnail && !is_thumbnail_type(content_type) {
        return Err(MatrixError::not_found("No thumbnail for this media"));
    }
    let key = object_key(&row.origin, &row.media_id);
    let stored = r2::get(ctx, &key, None)
        .await
        .map_err(internal)?
        .ok_or_else(|| internal(format!("media {key} has a record but no object")))?;
    let boundary = hex(&random_array::<16>().map_err(internal)?);
    let disposition = content_disposition(content_type, row.filename.as_deref());
    let frame = multipart_frame(&boundary, content_type, &disposition);
    Ok(Answer {
        status: 200,
        headers: vec![("Content-Type".into(), frame.content_type)],
        body: Body::Framed {
            prefix: frame.prefix,
            object: stored,
            suffix: frame.suffix,
        },
    })
}
