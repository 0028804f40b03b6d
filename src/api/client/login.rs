//! Login and sessions: `/login`, `/logout`, `/logout/all`, `/account/whoami`, and the
//! password check (with failed-attempt rate limits) that user-interactive auth shares.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::auth::uia::Identifier;
use crate::api::auth::{client_ip, require_user, Session};
use crate::api::error::internal;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::core::accounts::password::MAX_PASSWORD_BYTES;
use crate::core::accounts::token::{access_token, device_id, token_hash, DEVICE_ID_LEN, TOKEN_BYTES};
use crate::core::accounts::username::login_user_id;
use crate::platform::crypto::verify_password;
use crate::platform::{random_array, Ctx};
use crate::storage::rate_limits::{self, Limit};
use crate::storage::{devices, users, Db, Stmt};

/// Failed password checks allowed per account per window.
pub const ACCOUNT_LIMIT: Limit = Limit {
    max_failures: 5,
    window_ms: 60_000,
};
/// Failed password checks allowed per client address per window.
pub const ADDRESS_LIMIT: Limit = Limit {
    max_failures: 30,
    window_ms: 60_000,
};

/// The one answer for an unknown user and a wrong password.
fn invalid_login() -> MatrixError {
    MatrixError::forbidden("Invalid username or password")
}

/// Checks a password for a login or a user-interactive-auth stage: 429 while the account
/// or address is over its failure limit, 403 for an unknown/deactivated user or a wrong
/// password (counted as a failure), `Ok` otherwise.
pub async fn check_password(
    ctx: &Ctx,
    db: &Db,
    user_id: Option<&str>,
    password: &str,
    ip: &str,
) -> Result<(), MatrixError> {
    let now = ctx.now_ms();
    let user_key = user_id.map(|u| format!("user:{u}"));
    let ip_key = format!("ip:{ip}");
    let mut keys: Vec<(&str, Limit)> = vec![(&ip_key, ADDRESS_LIMIT)];
    if let Some(k) = &user_key {
        keys.insert(0, (k, ACCOUNT_LIMIT));
    }
    let status = rate_limits::status(db, &keys, now).await?;
    if let Some(wait) = status.blocked_for {
        return Err(MatrixError::limit_exceeded(wait));
    }
    let stored = match user_id {
        Some(u) => users::get(db, u)
            .await?
            .filter(|u| !u.deactivated)
            .map(|u| u.password_hash),
        None => None,
    };
    let ok = password.len() <= MAX_PASSWORD_BYTES
        && verify_password(stored.as_deref(), password)
            .await
            .map_err(internal)?;
    if ok {
        if let Some(k) = user_key.as_deref().filter(|_| status.first_has_failures) {
            db.batch(vec![rate_limits::clear(k)]).await?;
        }
        Ok(())
    } else {
        rate_limits::record_failures(db, &keys, now).await?;
        Err(invalid_login())
    }
}

/// A new access token for `user_id` on a device (given or generated): the statements to
/// batch, the token and the device id.
pub fn new_login(
    ctx: &Ctx,
    user_id: &str,
    device: Option<&str>,
    display_name: Option<&str>,
    ip: &str,
) -> Result<(Vec<Stmt>, String, String), MatrixError> {
    let device_id = match device.filter(|d| !d.is_empty()) {
        Some(d) => d.to_owned(),
        None => device_id(&random_array::<DEVICE_ID_LEN>().map_err(internal)?),
    };
    let token = access_token(&random_array::<TOKEN_BYTES>().map_err(internal)?);
    let hash = token_hash(&token);
    let stmts = devices::login(&devices::Login {
        user_id,
        device_id: &device_id,
        display_name,
        token_hash: &hash,
        ip,
        now_ms: ctx.now_ms(),
    });
    Ok((stmts, token, device_id))
}

/// Longest device id or display name we store.
pub const MAX_DEVICE_FIELD: usize = 512;

/// `GET /_matrix/client/v3/login`
pub fn flows() -> Value {
    json!({ "flows": [{ "type": "m.login.password" }] })
}

#[derive(Deserialize)]
struct LoginBody {
    #[serde(rename = "type")]
    kind: String,
    identifier: Option<Identifier>,
    user: Option<String>,
    password: Option<String>,
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    refresh_token: bool,
}

/// `POST /_matrix/client/v3/login`
pub async fn login(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let body: LoginBody = req.json()?;
    if body.kind != "m.login.password" {
        return Err(MatrixError::new("M_UNKNOWN", "Unknown login type").with_status(400));
    }
    let name = match &body.identifier {
        Some(id) if id.kind == "m.id.user" => id.user.as_deref(),
        Some(_) => {
            return Err(
                MatrixError::new("M_UNKNOWN", "Only m.id.user identifiers are supported").with_status(400),
            )
        }
        None => body.user.as_deref(),
    };
    let name = name.ok_or_else(|| MatrixError::missing_param("Missing user identifier"))?;
    let password = body
        .password
        .as_deref()
        .ok_or_else(|| MatrixError::missing_param("Missing password"))?;
    check_device_fields(
        body.device_id.as_deref(),
        body.initial_device_display_name.as_deref(),
    )?;
    let server = &ctx.config.server_name;
    let user_id = login_user_id(name, server);
    let ip = client_ip(req);
    let db = ctx.db()?;
    check_password(ctx, &db, user_id.as_deref(), password, ip).await?;
    let user_id = user_id.ok_or_else(invalid_login)?;
    let (stmts, token, device_id) = new_login(
        ctx,
        &user_id,
        body.device_id.as_deref(),
        body.initial_device_display_name.as_deref(),
        ip,
    )?;
    db.batch(stmts).await?;
    // Logging in on an existing device replaces its token.
    crate::api::auth::token_cache::forget_all();
    Ok(json!({
        "user_id": user_id,
        "access_token": token,
        "device_id": device_id,
        "home_server": server,
        "well_known": { "m.homeserver": { "base_url": ctx.config.base_url() } },
    }))
}

/// Refuses absurdly long device ids and names (client input, so 400, not storage).
pub fn check_device_fields(device_id: Option<&str>, display_name: Option<&str>) -> Result<(), MatrixError> {
    if device_id.is_some_and(|d| d.len() > MAX_DEVICE_FIELD)
        || display_name.is_some_and(|d| d.len() > MAX_DEVICE_FIELD)
    {
        return Err(MatrixError::invalid_param("Device id or display name too long"));
    }
    Ok(())
}

/// `POST /_matrix/client/v3/logout`
pub async fn logout(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    ctx.db()?
        .batch(devices::delete(&session.user_id, &session.device_id))
        .await?;
    crate::api::auth::token_cache::forget_all();
    Ok(json!({}))
}

/// `POST /_matrix/client/v3/logout/all`
pub async fn logout_all(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    ctx.db()?
        .batch(devices::delete_all_except(&session.user_id, None))
        .await?;
    crate::api::auth::token_cache::forget_all();
    Ok(json!({}))
}

/// `GET /_matrix/client/v3/account/whoami`
pub async fn whoami(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let Session {
        user_id,
        device_id,
        is_guest,
        ..
    } = require_user(ctx, req).await?;
    Ok(json!({ "user_id": user_id, "device_id": device_id, "is_guest": is_guest }))
}
