//! Downloads and thumbnails for clients: the authenticated `/_matrix/client/v1/media/*`
//! and the legacy unauthenticated `/_matrix/media/v3/*` (served only for media the
//! freeze allows, `MEDIA_LEGACY_DOWNLOAD`). Our own media is read from R2; other
//! servers' media is fetched once (`remote`) and then read from R2 like ours.
//!
//! Thumbnails are not generated: the thumbnail endpoints answer with the image itself
//! when it is of a type a thumbnail may have (never smaller than asked, as the spec
//! requires), and 404 otherwise.

use crate::api::auth::require_user;
use crate::api::error::internal;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::core::media::{
    content_disposition, is_thumbnail_type, object_key, parse_range, valid_media_id, RangeAsk,
    CONTENT_SECURITY_POLICY,
};
use crate::core::server_name::ServerName;
use crate::platform::media::{self as r2, Answer, Body};
use crate::platform::Ctx;
use crate::storage::media::{self, Media};

use super::{remote, timeout_ms};

/// How often a download waiting for an async upload looks again.
const POLL_MS: u64 = 250;

fn unknown() -> MatrixError {
    MatrixError::not_found("Unknown media")
}

/// Our own media, waiting up to `timeout` ms for a pending async upload: 404 for an
/// unknown or expired id, 504 `M_NOT_YET_UPLOADED` when the time runs out.
pub async fn wait_local(ctx: &Ctx, media_id: &str, timeout: u64) -> Result<Media, MatrixError> {
    if !valid_media_id(media_id) {
        return Err(unknown());
    }
    let db = ctx.db()?;
    let deadline = ctx.now_ms().saturating_add(timeout);
    loop {
        let row = media::get(&db, &ctx.config.server_name, media_id)
            .await?
            .ok_or_else(unknown)?;
        let now = ctx.now_ms();
        if row.ready() {
            return Ok(row);
        }
        if row.expired(now) {
            return Err(unknown());
        }
        if now >= deadline {
            return Err(MatrixError::new(
                "M_NOT_YET_UPLOADED",
                "Content has not yet been uploaded",
            ));
        }
        r2::sleep(POLL_MS.min(deadline - now)).await;
    }
}

/// The media `mxc://{server}/{media_id}`, fetched from its server when it is another
/// server's and not cached here (unless `allow_remote` is false).
async fn find(
    ctx: &Ctx,
    req: &HttpRequest,
    server: &str,
    media_id: &str,
    allow_remote: bool,
) -> Result<Media, MatrixError> {
    if !valid_media_id(media_id) || ServerName::parse(server).is_none() {
        return Err(unknown());
    }
    let timeout = timeout_ms(req)?;
    if server == ctx.config.server_name {
        return wait_local(ctx, media_id, timeout).await;
    }
    let cached = media::get(&ctx.db()?, server, media_id)
        .await?
        .filter(Media::ready);
    let stale = cached.as_ref().is_some_and(|row| {
        ctx.config
            .media
            .remote_retention_ms
            .is_some_and(|keep| row.created_ts.saturating_add(keep as i64) < ctx.now_ms() as i64)
    });
    match cached {
        Some(row) if !stale || !allow_remote => Ok(row),
        // Kept past the retention period: fetched again, the old copy served if that fails.
        Some(row) => Ok(remote::fetch(ctx, server, media_id, timeout).await.unwrap_or(row)),
        None if !allow_remote => Err(unknown()),
        None => remote::fetch(ctx, server, media_id, timeout).await,
    }
}

/// Whether the legacy endpoints serve this media.
fn legacy_allowed(ctx: &Ctx, row: &Media) -> Result<(), MatrixError> {
    let created = u64::try_from(row.created_ts).unwrap_or(0);
    if ctx.config.media.legacy_download.serves(created) {
        Ok(())
    } else {
        Err(MatrixError::not_found(
            "Unauthenticated media downloads are frozen: use /_matrix/client/v1/media",
        ))
    }
}

/// `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]`, and with
/// `legacy` the unauthenticated `GET /_matrix/media/v3/download/...`
pub async fn download(
    ctx: &Ctx,
    req: &HttpRequest,
    (server, media_id): (&str, &str),
    filename: Option<&str>,
    legacy: bool,
) -> Result<Answer, MatrixError> {
    if !legacy {
        require_user(ctx, req).await?;
    }
    let allow_remote = !legacy || req.query_param("allow_remote") != Some("false");
    let row = find(ctx, req, server, media_id, allow_remote).await?;
    if legacy {
        legacy_allowed(ctx, &row)?;
    }
    let filename = filename.or(row.filename.as_deref());
    serve(ctx, req, &row, filename, legacy).await
}

/// `GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}`, and with `legacy`
/// `GET /_matrix/media/v3/thumbnail/...`
pub async fn thumbnail(
    ctx: &Ctx,
    req: &HttpRequest,
    (server, media_id): (&str, &str),
    legacy: bool,
) -> Result<Answer, MatrixError> {
    if !legacy {
        require_user(ctx, req).await?;
    }
    check_thumbnail_params(req)?;
    let allow_remote = !legacy || req.query_param("allow_remote") != Some("false");
    let row = find(ctx, req, server, media_id, allow_remote).await?;
    if legacy {
        legacy_allowed(ctx, &row)?;
    }
    if !is_thumbnail_type(row.content_type.as_deref().unwrap_or_default()) {
        return Err(MatrixError::not_found("No thumbnail for this media"));
    }
    let name = row.filename.clone().unwrap_or_else(|| "thumbnail".to_owned());
    serve(ctx, req, &row, Some(&name), legacy).await
}

/// `width` and `height` (required positive integers) and `method` (`crop` or `scale`).
pub fn check_thumbnail_params(req: &HttpRequest) -> Result<(), MatrixError> {
    for name in ["width", "height"] {
        let value = req
            .query_param(name)
            .ok_or_else(|| MatrixError::missing_param(format!("{name} is required")))?;
        if !value.parse::<u32>().is_ok_and(|v| v > 0) {
            return Err(MatrixError::invalid_param(format!(
                "{name} must be a positive integer"
            )));
        }
    }
    match req.query_param("method") {
        None | Some("crop") | Some("scale") => Ok(()),
        Some(_) => Err(MatrixError::invalid_param("method must be crop or scale")),
    }
}

/// The headers every piece of media is served with.
pub fn media_headers(content_type: &str, disposition: &str, public: bool) -> Vec<(String, String)> {
    let cache = if public {
        "public, max-age=31536000, immutable"
    } else {
        "private, max-age=31536000, immutable"
    };
    [
        ("Content-Type", content_type),
        ("Content-Disposition", disposition),
        ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
        ("Cross-Origin-Resource-Policy", "cross-origin"),
        ("X-Content-Type-Options", "nosniff"),
        ("Cache-Control", cache),
        ("Accept-Ranges", "bytes"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Streams a stored object back, whole or the range the request asks for.
async fn serve(
    ctx: &Ctx,
    req: &HttpRequest,
    row: &Media,
    filename: Option<&str>,
    public: bool,
) -> Result<Answer, MatrixError> {
    let content_type = row.content_type.as_deref().unwrap_or("application/octet-stream");
    let size = u64::try_from(row.size.unwrap_or(0)).unwrap_or(0);
    let key = object_key(&row.origin, &row.media_id);
    let (status, range) = match parse_range(req.header("range"), size) {
        RangeAsk::Whole => (200, None),
        RangeAsk::Part { start, end } => (206, Some((start, end))),
        RangeAsk::Unsatisfiable => {
            let err = MatrixError::invalid_param("Range not satisfiable").with_status(416);
            return Ok(Answer::error(&err).with_header("Content-Range", &format!("bytes */{size}")));
        }
    };
    let stored = r2::get(ctx, &key, range)
        .await
        .map_err(internal)?
        .ok_or_else(|| internal(format!("media {key} has a record but no object")))?;
    let mut headers = media_headers(content_type, &content_disposition(content_type, filename), public);
    let length = match range {
        Some((start, end)) => {
            headers.push((
                "Content-Range".into(),
                format!("bytes {start}-{end}/{}", stored.size),
            ));
            end - start + 1
        }
        None => stored.size,
    };
    headers.push(("Content-Length".into(), length.to_string()));
    Ok(Answer {
        status,
        headers,
        body: Body::Object(stored),
    })
}
