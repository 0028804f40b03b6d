//! Authenticating another server's request before any handler runs: the `X-Matrix`
//! header parsed, the destination checked against this server's name, the origin
//! checked against the federation allow and deny lists, its key found (fetched on a
//! miss) and valid now, and the signature checked over method, target, origin,
//! destination and body.

use ruma::CanonicalJsonValue;

use crate::api::http::{HttpRequest, Method};
use crate::api::MatrixError;
use crate::core::xmatrix;
use crate::federation::keys::{self, Use};
use crate::platform::{log_error, Ctx};

fn unauthorized(error: impl Into<String>) -> MatrixError {
    MatrixError::new("M_UNAUTHORIZED", error)
}

fn method_text(method: Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Options => "OPTIONS",
        Method::Other => "OTHER",
    }
}

/// The request's origin server, once its signature is verified.
pub async fn authenticate(ctx: &Ctx, req: &HttpRequest) -> Result<String, MatrixError> {
    let header = req
        .header("authorization")
        .ok_or_else(|| unauthorized("Missing X-Matrix authorization"))?;
    let auth = xmatrix::parse(header).map_err(|e| unauthorized(e.to_string()))?;
    let config = &ctx.config;
    if auth
        .destination
        .as_deref()
        .is_some_and(|d| d != config.server_name)
    {
        return Err(unauthorized("The request is for another server"));
    }
    if !config.federation.server_allowed(&auth.origin) {
        return Err(MatrixError::forbidden(
            "Federation with this server is not allowed",
        ));
    }
    if auth.origin == config.server_name {
        return Err(unauthorized(
            "Requests from this server's own name are not accepted",
        ));
    }
    let content = if req.body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(serde_json::from_slice::<CanonicalJsonValue>(&req.body).map_err(|_| MatrixError::not_json())?)
    };
    let key = match keys::key(ctx, &auth.origin, &auth.key, Use::Request).await {
        Ok(Some(key)) => key,
        Ok(None) => return Err(unauthorized("Unknown or expired key")),
        Err(e) => {
            log_error(&format!("key lookup for {}: {e}", auth.origin));
            return Err(MatrixError::internal());
        }
    };
    if !xmatrix::verify(&auth, &key.key, method_text(req.method), &req.target(), content) {
        return Err(unauthorized("Invalid X-Matrix signature"));
    }
    Ok(auth.origin)
}
