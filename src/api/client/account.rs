//! Account management: password change, deactivation, and the third-party-identifier
//! endpoints (Neurite has no 3PIDs: an empty list, and refusals for the rest).

use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::auth::{require_user, uia};
use crate::api::client::register::check_new_password;
use crate::api::error::internal;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::platform::crypto::hash_password;
use crate::platform::Ctx;
use crate::storage::{devices, users};

#[derive(Deserialize)]
struct PasswordBody {
    new_password: Option<String>,
    logout_devices: Option<bool>,
}

/// `POST /_matrix/client/v3/account/password`
pub async fn change_password(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let value = req.json_value()?;
    let body: PasswordBody = serde_json::from_value(value.clone())
        .map_err(|e| MatrixError::bad_json(format!("Invalid request body: {e}")))?;
    if let Some(p) = &body.new_password {
        check_new_password(p)?;
    }
    uia::require_password(ctx, req, &session, &value, "change password").await?;
    let new_password = body
        .new_password
        .ok_or_else(|| MatrixError::missing_param("Missing new_password"))?;
    let hash = hash_password(&new_password).await.map_err(internal)?;
    let mut stmts = vec![users::set_password(&session.user_id, &hash)];
    if body.logout_devices.unwrap_or(true) {
        stmts.extend(devices::delete_all_except(
            &session.user_id,
            Some(&session.device_id),
        ));
    }
    ctx.db()?.batch(stmts).await?;
    crate::api::auth::token_cache::forget_all();
    Ok(json!({}))
}

#[derive(Deserialize)]
struct DeactivateBody {
    #[serde(default)]
    erase: bool,
    #[allow(dead_code)]
    id_server: Option<String>,
}

/// `POST /_matrix/client/v3/account/deactivate`
pub async fn deactivate(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let value = req.json_value()?;
    let body: DeactivateBody = serde_json::from_value(value.clone())
        .map_err(|e| MatrixError::bad_json(format!("Invalid request body: {e}")))?;
    uia::require_password(ctx, req, &session, &value, "deactivate").await?;
    let rooms = crate::storage::rooms::joined_rooms(&ctx.db()?, &session.user_id).await?;
    if body.erase {
        // Each room the user is in serves their events redacted from now on to those
        // who were not joined when they were sent.
        let request = crate::roomserver::protocol::RoomRequest::EraseSender {
            user_id: session.user_id.clone(),
        };
        for room_id in &rooms {
            crate::platform::rooms::call(ctx, room_id, &request).await?;
        }
    }
    // A deactivated account leaves every room it is in (one that fails is logged).
    for room_id in &rooms {
        let leave = json!({ "membership": "leave" });
        if let Err(e) = super::membership::member_event(ctx, &session, room_id, &session.user_id, leave).await
        {
            crate::platform::log_error(&format!(
                "deactivation of {}: leaving {room_id}: {e}",
                session.user_id
            ));
        }
    }
    let mut stmts = users::deactivate(&session.user_id);
    stmts.extend(devices::delete_all_except(&session.user_id, None));
    ctx.db()?.batch(stmts).await?;
    crate::api::auth::token_cache::forget_all();
    Ok(json!({ "id_server_unbind_result": "no-support" }))
}

/// `GET /_matrix/client/v3/account/3pid`
pub async fn threepids(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    require_user(ctx, req).await?;
    Ok(json!({ "threepids": [] }))
}

/// `POST /_matrix/client/v3/account/3pid/email/requestToken` and the other
/// `requestToken` endpoints: this server does not accept third-party identifiers.
pub fn request_token(req: &HttpRequest) -> Result<Value, MatrixError> {
    req.json_value()?;
    Err(MatrixError::new(
        "M_THREEPID_DENIED",
        "Third-party identifiers are not supported on this server",
    ))
}

/// `POST /_matrix/client/v3/account/3pid/add` (and `/account/3pid`, `/bind`): no
/// validation session can exist, so nothing can be added.
pub async fn add_threepid(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    require_user(ctx, req).await?;
    req.json_value()?;
    Err(MatrixError::new(
        "M_THREEPID_AUTH_FAILED",
        "Third-party identifiers are not supported on this server",
    ))
}

/// `POST /_matrix/client/v3/account/3pid/delete` (and `/unbind`): there is nothing to
/// remove.
pub async fn remove_threepid(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    require_user(ctx, req).await?;
    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Body {
        medium: String,
        address: String,
    }
    let _: Body = req.json()?;
    Ok(json!({ "id_server_unbind_result": "no-support" }))
}
