//! Third-party networks (`/thirdparty/*`) and VoIP (`/voip/turnServer`). Neurite has
//! no bridges (application services) and no TURN server configured, so these answer
//! what the spec gives for that case: no protocols, nothing found, no TURN servers.

use serde_json::{json, Value};

use crate::api::auth::require_user;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::platform::Ctx;

fn no_protocol(protocol: &str) -> MatrixError {
    MatrixError::not_found(format!("No bridge serves the protocol {protocol}"))
}

/// `GET /_matrix/client/v3/thirdparty/protocols`
pub async fn protocols(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    require_user(ctx, req).await?;
    Ok(json!({}))
}

/// `GET /_matrix/client/v3/thirdparty/protocol/{protocol}`, and the location and user
/// lookups of one protocol (`/thirdparty/location/{protocol}`, `/thirdparty/user/{protocol}`).
pub async fn protocol(ctx: &Ctx, req: &HttpRequest, protocol: &str) -> Result<Value, MatrixError> {
    require_user(ctx, req).await?;
    Err(no_protocol(protocol))
}

/// `GET /_matrix/client/v3/thirdparty/location` and `GET /_matrix/client/v3/thirdparty/user`
/// (reverse lookups by alias or user id): nothing is bridged, so the list is empty.
pub async fn reverse_lookup(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    require_user(ctx, req).await?;
    Ok(json!([]))
}

/// `GET /_matrix/client/v3/voip/turnServer`: with no TURN server configured the answer
/// is an empty object, which clients read as "no TURN" (calls then use STUN or direct
/// connections only).
pub async fn turn_server(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    require_user(ctx, req).await?;
    Ok(json!({}))
}
