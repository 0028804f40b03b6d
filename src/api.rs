//! The HTTP edge: request parsing, routing, the error table and the handlers.
//!
//! Everything here except `dispatch` and the handlers that reach storage is pure and
//! unit-tested natively; the Workers glue lives in `platform`.

pub mod client;
pub mod cors;
pub mod error;
pub mod federation;
pub mod http;
pub mod router;
pub mod wellknown;

pub use error::MatrixError;

use serde_json::Value;

use crate::platform::Ctx;
use http::{HttpRequest, HttpResponse, Method, MAX_JSON_BODY};
use router::{route, Endpoint};

/// Answers one request: CORS, body limit, routing, the handler, and the error edge.
pub async fn handle(ctx: &Ctx, req: HttpRequest) -> HttpResponse {
    let cors = cors::applies_to(&req.path);
    let response = if req.method == Method::Options && cors {
        HttpResponse::ok(&Value::Object(Default::default()))
    } else {
        match answer(ctx, &req).await {
            Ok(value) => HttpResponse::ok(&value),
            Err(err) => {
                if err.status() >= 500 {
                    crate::platform::log_error(&format!("{} {}: {err}", method_name(req.method), req.path));
                }
                HttpResponse::error(&err)
            }
        }
    };
    with_cors(&req.path, response)
}

/// Adds the CORS headers to answers on the paths browser clients use.
pub fn with_cors(path: &str, mut response: HttpResponse) -> HttpResponse {
    if cors::applies_to(path) {
        for (name, value) in cors::HEADERS {
            response = response.with_header(name, value);
        }
    }
    response
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Options => "OPTIONS",
        Method::Head => "HEAD",
        Method::Other => "?",
    }
}

async fn answer(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let route = route(req.method, &req.path)?;
    if req.body.len() > MAX_JSON_BODY {
        return Err(MatrixError::too_large(MAX_JSON_BODY));
    }
    let config = &ctx.config;
    match route.endpoint {
        Endpoint::ClientVersions => Ok(client::versions::get()),
        Endpoint::WellKnownClient => Ok(wellknown::client(config)),
        Endpoint::WellKnownServer => Ok(wellknown::server(config)),
        Endpoint::KeyServer => federation::keys::server(config, ctx.now_ms()),
        Endpoint::FederationVersion => Ok(federation::version::get()),
    }
}
