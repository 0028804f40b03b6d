//! `POST /_matrix/client/v3/user/{userId}/openid/request_token`: a token that lets
//! another service (an integration manager, a widget) learn who the user is, through
//! `/_matrix/federation/v1/openid/userinfo`.

use serde_json::{json, Value};

use crate::api::auth::require_user;
use crate::api::error::internal;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::core::accounts::token::{access_token, token_hash, TOKEN_BYTES};
use crate::platform::{random_array, Ctx};
use crate::storage::openid;

/// How long an OpenID token is valid, in seconds.
pub const EXPIRES_IN_S: u64 = 3600;

/// `POST /_matrix/client/v3/user/{userId}/openid/request_token`
pub async fn request_token(ctx: &Ctx, req: &HttpRequest, user_id: &str) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    if session.user_id != user_id {
        return Err(MatrixError::forbidden("Cannot request a token for another user"));
    }
    let token = access_token(&random_array::<TOKEN_BYTES>().map_err(internal)?);
    let now = ctx.now_ms();
    openid::create(
        &ctx.db()?,
        &token_hash(&token),
        user_id,
        now + EXPIRES_IN_S * 1000,
        now,
    )
    .await?;
    Ok(json!({
        "access_token": token,
        "token_type": "Bearer",
        "matrix_server_name": ctx.config.server_name,
        "expires_in": EXPIRES_IN_S,
    }))
}
