//! `GET /_matrix/client/v3/capabilities`

use serde_json::{json, Value};

use crate::api::auth::require_user;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::platform::Ctx;

/// The capabilities body (pure, for tests).
pub fn body() -> Value {
    json!({
        "capabilities": {
            "m.change_password": { "enabled": true },
            "m.room_versions": {
                "default": "12",
                "available": { "10": "stable", "11": "stable", "12": "stable" }
            },
            "m.set_displayname": { "enabled": true },
            "m.set_avatar_url": { "enabled": true },
            "m.3pid_changes": { "enabled": false }
        }
    })
}

/// `GET /_matrix/client/v3/capabilities`
pub async fn get(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    require_user(ctx, req).await?;
    Ok(body())
}
