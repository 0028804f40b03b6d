//! Media bytes in R2 (the `MEDIA` bucket) and the media endpoints' HTTP glue: request
//! bodies handed to R2 as the stream they arrive as, and objects streamed back, so an
//! upload or a download is never held whole in the isolate.

use futures_util::StreamExt;

use crate::api::http::{parse_query, HttpRequest, Method};
use crate::api::{self, MatrixError};

use super::{env, log_error, Ctx};

/// A request body not read yet.
pub struct Incoming(Option<worker::web_sys::ReadableStream>);

/// A stored object, opened for reading (whole or a range).
pub struct Stored {
    object: worker::Object,
    /// The object's whole size.
    pub size: u64,
}

/// What a media answer carries.
pub enum Body {
    Bytes(Vec<u8>),
    Object(Stored),
    /// An object between two pieces of framing (a `multipart/mixed` answer).
    Framed {
        prefix: Vec<u8>,
        object: Stored,
        suffix: Vec<u8>,
    },
}

pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Answer {
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: Body::Bytes(serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())),
        }
    }

    pub fn error(err: &MatrixError) -> Self {
        let mut answer = Self::json(err.status(), &err.body());
        if let Some(Some(retry)) = err.extra.get("retry_after_ms").map(serde_json::Value::as_u64) {
            answer
                .headers
                .push(("Retry-After".into(), retry.div_ceil(1000).to_string()));
        }
        answer
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

fn bucket(ctx: &Ctx) -> Result<worker::Bucket, String> {
    ctx.env.bucket(env::MEDIA).map_err(|e| format!("R2 binding: {e}"))
}

/// Writes a request body of a known length to `key`; the size R2 stored.
pub async fn put_stream(ctx: &Ctx, key: &str, body: Incoming, content_type: &str) -> Result<u64, String> {
    let data = match body.0 {
        Some(stream) => worker::Data::ReadableStream(stream),
        None => worker::Data::Empty,
    };
    put(ctx, key, data, content_type).await
}

/// Writes bytes held in memory (another server's media, bounded) to `key`.
pub async fn put_bytes(ctx: &Ctx, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<u64, String> {
    put(ctx, key, worker::Data::Bytes(bytes), content_type).await
}

async fn put(ctx: &Ctx, key: &str, data: worker::Data, content_type: &str) -> Result<u64, String> {
    let metadata = worker::HttpMetadata {
        content_type: Some(content_type.to_owned()),
        ..Default::default()
    };
    let object = bucket(ctx)?
        .put(key, data)
        .http_metadata(metadata)
        .execute()
        .await
        .map_err(|e| format!("R2 put {key}: {e}"))?
        .ok_or_else(|| format!("R2 put {key}: no object"))?;
    Ok(object.size())
}

/// Opens `key` for reading, the bytes `start..=end` if a range is given.
pub async fn get(ctx: &Ctx, key: &str, range: Option<(u64, u64)>) -> Result<Option<Stored>, String> {
    let bucket = bucket(ctx)?;
    let mut get = bucket.get(key);
    if let Some((start, end)) = range {
        get = get.range(worker::Range::OffsetWithLength {
            offset: start,
            length: end - start + 1,
        });
    }
    let Some(object) = get.execute().await.map_err(|e| format!("R2 get {key}: {e}"))? else {
        return Ok(None);
    };
    let size = object.size();
    Ok(Some(Stored { object, size }))
}

/// Removes `key` (an upload whose record could not be written).
pub async fn delete(ctx: &Ctx, key: &str) {
    if let Err(e) = async { bucket(ctx)?.delete(key).await.map_err(|e| e.to_string()) }.await {
        log_error(&format!("R2 delete {key}: {e}"));
    }
}

/// Waits `ms` milliseconds (polling for an async upload to arrive).
pub async fn sleep(ms: u64) {
    worker::Delay::from(std::time::Duration::from_millis(ms)).await;
}

/// Serves a media request (`api::media::serves` said it is one).
pub async fn serve(ctx: &Ctx, req: &worker::Request) -> worker::Result<worker::Response> {
    let url = match req.url() {
        Ok(url) => url,
        Err(_) => return to_worker(Answer::error(&MatrixError::invalid_param("Invalid URL"))),
    };
    let head = HttpRequest {
        method: Method::parse(req.method().as_ref()),
        path: url.path().to_owned(),
        query: url.query().map(parse_query).unwrap_or_default(),
        raw_query: url.query().map(str::to_owned),
        headers: req.headers().entries().collect(),
        body: Vec::new(),
    };
    let body = Incoming(req.inner().body());
    let path = head.path.clone();
    let mut answer = api::media::handle(ctx, head, body).await;
    if let Some(value) = ctx.timings.header() {
        answer = answer.with_header("Server-Timing", &value);
    }
    if api::cors::applies_to(&path) {
        for (name, value) in api::cors::HEADERS {
            answer = answer.with_header(name, value);
        }
    }
    to_worker(answer)
}

fn to_worker(answer: Answer) -> worker::Result<worker::Response> {
    let headers = worker::Headers::new();
    for (name, value) in &answer.headers {
        headers.append(name, value)?;
    }
    let response = match answer.body {
        Body::Bytes(bytes) => worker::Response::from_bytes(bytes)?,
        Body::Object(stored) => match stored.object.body() {
            Some(body) => worker::Response::from_body(body.response_body()?)?,
            None => worker::Response::empty()?,
        },
        Body::Framed {
            prefix,
            object,
            suffix,
        } => {
            let inner = match object.object.body() {
                Some(body) => body.stream()?.boxed_local(),
                None => futures_util::stream::empty().boxed_local(),
            };
            let stream = futures_util::stream::once(async move { Ok(prefix) })
                .chain(inner)
                .chain(futures_util::stream::once(async move { Ok(suffix) }));
            worker::Response::from_stream(stream)?
        }
    };
    Ok(response.with_status(answer.status).with_headers(headers))
}
