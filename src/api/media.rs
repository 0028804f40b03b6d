//! The content repository: uploads (`upload`), downloads and thumbnails for clients
//! (`download`), our media for other servers (`federation`), other servers' media
//! fetched and cached here (`remote`), and deletion by operators (`admin`). Bodies are
//! streams (`platform::media`), so these endpoints have their own route table and
//! answers instead of the JSON edge's.

pub mod admin;
pub mod download;
pub mod federation;
pub mod remote;
pub mod upload;

use serde_json::{json, Value};

use super::error::MatrixError;
use super::http::{HttpRequest, Method};
use super::router::match_pattern;
use crate::platform::media::{Answer, Incoming};
use crate::platform::Ctx;

/// Whether a path belongs to the media endpoints.
pub fn serves(path: &str) -> bool {
    path.starts_with("/_matrix/media/")
        || path.starts_with("/_matrix/client/v1/media/")
        || path.starts_with("/_matrix/federation/v1/media/")
        || path.starts_with("/_synapse/admin/v1/media/")
        || path == "/_synapse/admin/v1/purge_media_cache"
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Config,
    Upload,
    Create,
    UploadTo,
    Download,
    DownloadNamed,
    LegacyDownload,
    LegacyDownloadNamed,
    Thumbnail,
    LegacyThumbnail,
    FederationDownload,
    FederationThumbnail,
    AdminDelete,
    AdminPurgeCache,
}

use Endpoint as E;
use Method::{Delete, Get, Post, Put};

const ROUTES: &[(Method, &str, Endpoint)] = &[
    (Get, "/_matrix/client/v1/media/config", E::Config),
    (Get, "/_matrix/media/v3/config", E::Config),
    (Post, "/_matrix/media/v3/upload", E::Upload),
    (Post, "/_matrix/media/v1/create", E::Create),
    (
        Put,
        "/_matrix/media/v3/upload/{serverName}/{mediaId}",
        E::UploadTo,
    ),
    (
        Get,
        "/_matrix/client/v1/media/download/{serverName}/{mediaId}",
        E::Download,
    ),
    (
        Get,
        "/_matrix/client/v1/media/download/{serverName}/{mediaId}/{fileName}",
        E::DownloadNamed,
    ),
    // An empty file name (a trailing slash, as some clients send) is none.
    (
        Get,
        "/_matrix/client/v1/media/download/{serverName}/{mediaId}/",
        E::Download,
    ),
    (
        Get,
        "/_matrix/media/v3/download/{serverName}/{mediaId}",
        E::LegacyDownload,
    ),
    (
        Get,
        "/_matrix/media/v3/download/{serverName}/{mediaId}/",
        E::LegacyDownload,
    ),
    (
        Get,
        "/_matrix/media/v3/download/{serverName}/{mediaId}/{fileName}",
        E::LegacyDownloadNamed,
    ),
    (
        Get,
        "/_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}",
        E::Thumbnail,
    ),
    (
        Get,
        "/_matrix/media/v3/thumbnail/{serverName}/{mediaId}",
        E::LegacyThumbnail,
    ),
    (
        Get,
        "/_matrix/federation/v1/media/download/{mediaId}",
        E::FederationDownload,
    ),
    (
        Get,
        "/_matrix/federation/v1/media/thumbnail/{mediaId}",
        E::FederationThumbnail,
    ),
    (
        Delete,
        "/_synapse/admin/v1/media/{serverName}/{mediaId}",
        E::AdminDelete,
    ),
    (Post, "/_synapse/admin/v1/purge_media_cache", E::AdminPurgeCache),
];

fn route(method: Method, path: &str) -> Result<(Endpoint, Vec<String>), MatrixError> {
    let path = match path.strip_prefix("/_matrix/media/r0/") {
        Some(rest) => format!("/_matrix/media/v3/{rest}"),
        None => path.to_owned(),
    };
    let mut known = false;
    for (m, pattern, endpoint) in ROUTES {
        if let Some(params) = match_pattern(pattern, &path) {
            let params = params?;
            if *m == method || (method == Method::Head && *m == Get) {
                return Ok((*endpoint, params));
            }
            known = true;
        }
    }
    Err(if known {
        MatrixError::method_not_allowed()
    } else {
        MatrixError::unrecognized()
    })
}

/// Answers one media request.
pub async fn handle(ctx: &Ctx, req: HttpRequest, body: Incoming) -> Answer {
    if req.method == Method::Options {
        return Answer::json(200, &json!({}));
    }
    match answer(ctx, &req, body).await {
        Ok(answer) => answer,
        Err(err) => {
            if err.status() >= 500 && err.status() != 502 && err.status() != 504 {
                crate::platform::log_error(&format!("{} {}: {err}", req.method_text(), req.path));
            }
            Answer::error(&err)
        }
    }
}

async fn answer(ctx: &Ctx, req: &HttpRequest, body: Incoming) -> Result<Answer, MatrixError> {
    let (endpoint, params) = route(req.method, &req.path)?;
    let p = |i: usize| params.get(i).map(String::as_str).unwrap_or_default();
    // Guests may read media, not upload it.
    ctx.guest_allowed.set(!matches!(
        endpoint,
        E::Upload | E::Create | E::UploadTo | E::AdminDelete | E::AdminPurgeCache
    ));
    let json = |value: Value| Answer::json(200, &value);
    match endpoint {
        E::Config => upload::config(ctx, req).await.map(json),
        E::Upload => upload::upload(ctx, req, body).await.map(json),
        E::Create => upload::create(ctx, req).await.map(json),
        E::UploadTo => upload::upload_to(ctx, req, body, p(0), p(1)).await.map(json),
        E::Download => download::download(ctx, req, (p(0), p(1)), None, false).await,
        E::DownloadNamed => download::download(ctx, req, (p(0), p(1)), Some(p(2)), false).await,
        E::LegacyDownload => download::download(ctx, req, (p(0), p(1)), None, true).await,
        E::LegacyDownloadNamed => download::download(ctx, req, (p(0), p(1)), Some(p(2)), true).await,
        E::Thumbnail => download::thumbnail(ctx, req, (p(0), p(1)), false).await,
        E::LegacyThumbnail => download::thumbnail(ctx, req, (p(0), p(1)), true).await,
        E::FederationDownload => federation::download(ctx, req, p(0), false).await,
        E::FederationThumbnail => federation::download(ctx, req, p(0), true).await,
        E::AdminDelete => admin::delete_media(ctx, req, p(0), p(1)).await.map(json),
        E::AdminPurgeCache => admin::purge_cache(ctx, req).await.map(json),
    }
}

/// `timeout_ms`: how long a download waits for an async upload to arrive (the spec's
/// default 20 s, at most a minute).
fn timeout_ms(req: &HttpRequest) -> Result<u64, MatrixError> {
    match req.query_param("timeout_ms") {
        None => Ok(20_000),
        Some(text) => text
            .parse::<u64>()
            .map(|t| t.min(60_000))
            .map_err(|_| MatrixError::invalid_param("timeout_ms must be a number of milliseconds")),
    }
}

impl HttpRequest {
    fn method_text(&self) -> &'static str {
        match self.method {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Head => "HEAD",
            Method::Other => "?",
        }
    }
}
