//! `GET`/`POST /_synapse/admin/v1/register`: shared-secret registration as Synapse
//! implements it (nonce, then HMAC-SHA1 over nonce, user, password and admin flag).

use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::auth::client_ip;
use crate::api::client::register::{check_new_password, create_account, NewAccount};
use crate::api::error::internal;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::core::accounts::hex;
use crate::core::accounts::shared_secret::{verify, MacInput};
use crate::core::accounts::username::validate_localpart;
use crate::platform::crypto::hash_password;
use crate::platform::{random_array, Ctx};
use crate::storage::{registration, users};

fn secret(ctx: &Ctx) -> Result<&str, MatrixError> {
    ctx.config.registration_shared_secret.as_deref().ok_or_else(|| {
        MatrixError::new("M_UNKNOWN", "Shared secret registration is not enabled").with_status(400)
    })
}

/// `GET /_synapse/admin/v1/register`
pub async fn nonce(ctx: &Ctx) -> Result<Value, MatrixError> {
    secret(ctx)?;
    let nonce = hex(&random_array::<16>().map_err(internal)?);
    registration::create_nonce(&ctx.db()?, &nonce, ctx.now_ms()).await?;
    Ok(json!({ "nonce": nonce }))
}

#[derive(Deserialize)]
struct Body {
    nonce: String,
    username: String,
    password: String,
    #[serde(default)]
    admin: bool,
    displayname: Option<String>,
    user_type: Option<String>,
    mac: String,
}

/// `POST /_synapse/admin/v1/register`
pub async fn register(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let secret = secret(ctx)?;
    let body: Body = req.json()?;
    let db = ctx.db()?;
    if !registration::take_nonce(&db, &body.nonce, ctx.now_ms()).await? {
        return Err(MatrixError::new("M_UNKNOWN", "Unrecognised nonce").with_status(400));
    }
    let input = MacInput {
        nonce: &body.nonce,
        username: &body.username,
        password: &body.password,
        admin: body.admin,
        user_type: body.user_type.as_deref(),
    };
    if !verify(secret, &input, &body.mac) {
        return Err(MatrixError::forbidden("HMAC incorrect"));
    }
    check_new_password(&body.password)?;
    if body.displayname.as_ref().is_some_and(|d| d.len() > 1024) {
        return Err(MatrixError::invalid_param("Display name is too long"));
    }
    let user_id = validate_localpart(&body.username, &ctx.config.server_name)
        .map_err(|e| MatrixError::new("M_INVALID_USERNAME", e.message()))?;
    if users::exists(&db, &user_id).await? {
        return Err(MatrixError::new("M_USER_IN_USE", "User ID already taken"));
    }
    let hash = hash_password(&body.password).await.map_err(internal)?;
    let login = create_account(
        ctx,
        &db,
        &NewAccount {
            user_id: &user_id,
            password_hash: &hash,
            is_admin: body.admin,
            user_type: body.user_type.as_deref(),
            displayname: body.displayname.as_deref().filter(|d| !d.is_empty()),
            login: Some((None, None)),
            ip: client_ip(req),
            guest: false,
        },
    )
    .await?;
    let (token, device_id) = login.ok_or_else(MatrixError::internal)?;
    Ok(json!({
        "access_token": token,
        "user_id": user_id,
        "home_server": ctx.config.server_name,
        "device_id": device_id,
    }))
}
