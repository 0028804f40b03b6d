//! Other servers' media: fetched from the origin with a signed
//! `GET /_matrix/federation/v1/media/download/{mediaId}` (a `multipart/mixed` answer,
//! whose media part may be a `Location` to follow), or, from servers without it, the
//! legacy `GET /_matrix/media/v3/download/{serverName}/{mediaId}?allow_remote=false`;
//! then kept in R2 and D1 and served like our own. Everything read from the other
//! server is bounded: the answer's size (the upload limit, at most the federation
//! client's 32 MB), its content type and file name.

use crate::api::http::percent_encode;
use crate::api::MatrixError;
use crate::core::http1::Response;
use crate::core::media::{clean_content_type, disposition_filename, object_key, parse_multipart, MediaPart};
use crate::federation::client::{self, FedError, MAX_RESPONSE};
use crate::platform::media::put_bytes;
use crate::platform::{log_error, Ctx};
use crate::storage::media::{self, Media};

/// Room for the multipart framing around the bytes.
const FRAMING: usize = 64 * 1024;

fn too_large() -> MatrixError {
    MatrixError::new("M_TOO_LARGE", "The remote media is too large").with_status(502)
}

fn unavailable(server: &str, detail: impl std::fmt::Display) -> MatrixError {
    log_error(&format!("remote media from {server}: {detail}"));
    MatrixError::new("M_UNKNOWN", "The media's server did not provide it").with_status(502)
}

fn from_fed(server: &str, err: FedError) -> MatrixError {
    match err {
        FedError::Forbidden(_) => MatrixError::not_found("Media from this server is not available here"),
        FedError::Unreachable(detail) if detail.contains("larger than") => too_large(),
        other => unavailable(server, other),
    }
}

/// The bytes, content type and file name of a successful answer.
struct Fetched {
    body: Vec<u8>,
    content_type: Option<String>,
    filename: Option<String>,
}

fn plain(response: Response) -> Fetched {
    let content_type = response.header("content-type").and_then(clean_content_type);
    let filename = response
        .header("content-disposition")
        .and_then(disposition_filename);
    Fetched {
        body: response.body,
        content_type,
        filename,
    }
}

/// An error answer of the other server, as ours.
fn remote_error(server: &str, response: &Response) -> MatrixError {
    let errcode = serde_json::from_slice::<serde_json::Value>(&response.body)
        .ok()
        .and_then(|v| v["errcode"].as_str().map(str::to_owned));
    match (response.status, errcode.as_deref()) {
        (404, _) => MatrixError::not_found("Unknown media"),
        (504, _) | (_, Some("M_NOT_YET_UPLOADED")) => {
            MatrixError::new("M_NOT_YET_UPLOADED", "Content has not yet been uploaded")
        }
        (502 | 413, _) | (_, Some("M_TOO_LARGE")) => too_large(),
        (status, code) => unavailable(server, format!("{status} {}", code.unwrap_or("?"))),
    }
}

/// Fetches `mxc://{server}/{media_id}` from its server, keeps it, and returns its record.
pub async fn fetch(ctx: &Ctx, server: &str, media_id: &str, timeout_ms: u64) -> Result<Media, MatrixError> {
    let limit = usize::try_from(ctx.config.media.max_upload_size)
        .unwrap_or(usize::MAX)
        .min(MAX_RESPONSE);
    let target = format!("/_matrix/federation/v1/media/download/{media_id}?timeout_ms={timeout_ms}");
    let response = client::get_raw(ctx, server, &target, limit + FRAMING)
        .await
        .map_err(|e| from_fed(server, e))?;
    let fetched = match response.status {
        200 => {
            let content_type = response.header("content-type").unwrap_or_default().to_owned();
            match parse_multipart(&content_type, &response.body).map_err(|e| unavailable(server, e))? {
                MediaPart::Bytes {
                    content_type,
                    filename,
                    body,
                } => Fetched {
                    body,
                    content_type,
                    filename,
                },
                MediaPart::Location(url) => {
                    let located = client::get_url(ctx, &url, limit)
                        .await
                        .map_err(|e| from_fed(server, e))?;
                    if located.status != 200 {
                        return Err(unavailable(server, format!("{url} answered {}", located.status)));
                    }
                    plain(located)
                }
            }
        }
        // A server without the federation media endpoints: the legacy download.
        400 | 401 | 403 | 404 | 405 | 501 => {
            let legacy = format!(
                "/_matrix/media/v3/download/{}/{media_id}?allow_remote=false&timeout_ms={timeout_ms}",
                percent_encode(server)
            );
            let response = client::get_raw(ctx, server, &legacy, limit)
                .await
                .map_err(|e| from_fed(server, e))?;
            if response.status != 200 {
                return Err(remote_error(server, &response));
            }
            plain(response)
        }
        _ => return Err(remote_error(server, &response)),
    };
    if fetched.body.len() > limit {
        return Err(too_large());
    }
    let content_type = fetched
        .content_type
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let key = object_key(server, media_id);
    let size = put_bytes(ctx, &key, fetched.body, &content_type)
        .await
        .map_err(crate::api::error::internal)?;
    let db = ctx.db()?;
    media::insert_ready(
        &db,
        server,
        media_id,
        None,
        &content_type,
        fetched.filename.as_deref(),
        size,
        ctx.now_ms(),
    )
    .await?;
    if let Some(keep) = ctx.config.media.remote_retention_ms {
        sweep(ctx, ctx.now_ms().saturating_sub(keep)).await;
    }
    media::get(&db, server, media_id)
        .await?
        .ok_or_else(|| crate::api::error::internal("cached media has no record"))
}

/// Copies swept per fetch at most.
const SWEEP_BATCH: u32 = 20;

/// Forgets a few copies of other servers' media cached before `before_ms` (the
/// retention period), as each new copy arrives: the cache stays bounded in time on a
/// server that keeps fetching, with no scheduled job.
async fn sweep(ctx: &Ctx, before_ms: u64) {
    let swept = async {
        let db = ctx.db()?;
        for (origin, media_id) in
            media::cached_before(&db, &ctx.config.server_name, before_ms, SWEEP_BATCH).await?
        {
            media::remove(&db, &origin, &media_id).await?;
            crate::platform::media::delete(ctx, &object_key(&origin, &media_id)).await;
        }
        Ok::<(), crate::storage::StorageError>(())
    };
    if let Err(e) = swept.await {
        log_error(&format!("sweeping cached media: {e}"));
    }
}
