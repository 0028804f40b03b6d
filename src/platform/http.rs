//! Conversion between Workers' `Request`/`Response` and the edge's own types, and the
//! fetch entry point.

use crate::api::http::{parse_query, HttpRequest, HttpResponse, Method, MAX_JSON_BODY};
use crate::api::{self, MatrixError};

use super::{log_error, Ctx};

/// Serves one HTTP request from the outside world.
pub async fn serve(mut req: worker::Request, env: worker::Env) -> worker::Result<worker::Response> {
    let response = match Ctx::new(env) {
        // Media bodies are streamed, never read whole here.
        Ok(ctx) if api::media::serves(&req.path()) => return super::media::serve(&ctx, &req).await,
        Ok(ctx) => match read_request(&mut req).await {
            Ok(request) => api::handle(&ctx, request).await,
            Err(err) => {
                let path = req.path();
                api::with_cors(&path, HttpResponse::error(&err))
            }
        },
        Err(detail) => {
            log_error(&format!("configuration error: {detail}"));
            HttpResponse::error(&MatrixError::internal())
        }
    };
    to_worker(response)
}

async fn read_request(req: &mut worker::Request) -> Result<HttpRequest, MatrixError> {
    let url = req.url().map_err(|_| MatrixError::invalid_param("Invalid URL"))?;
    let headers: Vec<(String, String)> = req.headers().entries().collect();
    let declared = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_JSON_BODY) {
        return Err(MatrixError::too_large(MAX_JSON_BODY));
    }
    let body = req
        .bytes()
        .await
        .map_err(|_| MatrixError::bad_json("Unreadable request body"))?;
    if body.len() > MAX_JSON_BODY {
        return Err(MatrixError::too_large(MAX_JSON_BODY));
    }
    Ok(HttpRequest {
        method: Method::parse(req.method().as_ref()),
        path: url.path().to_owned(),
        query: url.query().map(parse_query).unwrap_or_default(),
        raw_query: url.query().map(str::to_owned),
        headers,
        body,
    })
}

pub fn to_worker(response: HttpResponse) -> worker::Result<worker::Response> {
    let headers = worker::Headers::new();
    for (name, value) in &response.headers {
        headers.append(name, value)?;
    }
    Ok(worker::Response::from_bytes(response.body)?
        .with_status(response.status)
        .with_headers(headers))
}
