//! Device management: list, get, rename, delete (with user-interactive auth).

use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::auth::{require_user, uia};
use crate::api::client::login::MAX_DEVICE_FIELD;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::platform::Ctx;
use crate::storage::devices::{self, Device};

fn device_json(d: &Device) -> Value {
    json!({
        "device_id": d.device_id,
        "display_name": d.display_name,
        "last_seen_ip": d.last_seen_ip,
        "last_seen_ts": d.last_seen_ts,
    })
}

fn unknown_device() -> MatrixError {
    MatrixError::not_found("Unknown device")
}

/// `GET /_matrix/client/v3/devices`
pub async fn list(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let list = devices::list(&ctx.db()?, &session.user_id).await?;
    Ok(json!({ "devices": list.iter().map(device_json).collect::<Vec<_>>() }))
}

/// `GET /_matrix/client/v3/devices/{deviceId}`
pub async fn get(ctx: &Ctx, req: &HttpRequest, device_id: &str) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let device = devices::get(&ctx.db()?, &session.user_id, device_id)
        .await?
        .ok_or_else(unknown_device)?;
    Ok(device_json(&device))
}

#[derive(Deserialize)]
struct RenameBody {
    display_name: Option<String>,
}

/// `PUT /_matrix/client/v3/devices/{deviceId}`
pub async fn put(ctx: &Ctx, req: &HttpRequest, device_id: &str) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let body: RenameBody = req.json()?;
    let Some(name) = body.display_name else {
        // Nothing to change, but the device must still exist.
        devices::get(&ctx.db()?, &session.user_id, device_id)
            .await?
            .ok_or_else(unknown_device)?;
        return Ok(json!({}));
    };
    if name.len() > MAX_DEVICE_FIELD {
        return Err(MatrixError::invalid_param("Display name too long"));
    }
    if !devices::rename(&ctx.db()?, &session.user_id, device_id, Some(&name)).await? {
        return Err(unknown_device());
    }
    Ok(json!({}))
}

/// `DELETE /_matrix/client/v3/devices/{deviceId}`
pub async fn delete(ctx: &Ctx, req: &HttpRequest, device_id: &str) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let body = req.json_value()?;
    let db = ctx.db()?;
    if devices::get(&db, &session.user_id, device_id).await?.is_none() {
        return Err(unknown_device());
    }
    uia::require_password(ctx, req, &session, &body, &format!("delete device {device_id}")).await?;
    db.batch(devices::delete(&session.user_id, device_id)).await?;
    crate::api::auth::token_cache::forget_all();
    super::keys::wake_device_list_observers(ctx, &[&session.user_id]).await;
    super::keys::announce_device(ctx, &session.user_id, &[device_id], true).await;
    Ok(json!({}))
}

#[derive(Deserialize)]
struct DeleteDevicesBody {
    devices: Vec<String>,
}

/// `POST /_matrix/client/v3/delete_devices`
pub async fn delete_many(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let value = req.json_value()?;
    let body: DeleteDevicesBody = serde_json::from_value(value.clone())
        .map_err(|e| MatrixError::bad_json(format!("Invalid request body: {e}")))?;
    if body.devices.len() > 1000 {
        return Err(MatrixError::invalid_param("Too many devices"));
    }
    let mut listed = body.devices.clone();
    listed.sort();
    let operation = format!("delete devices {}", listed.join(" "));
    uia::require_password(ctx, req, &session, &value, &operation).await?;
    let stmts = body
        .devices
        .iter()
        .flat_map(|d| devices::delete(&session.user_id, d))
        .collect::<Vec<_>>();
    if !stmts.is_empty() {
        ctx.db()?.batch(stmts).await?;
        crate::api::auth::token_cache::forget_all();
        super::keys::wake_device_list_observers(ctx, &[&session.user_id]).await;
        let gone: Vec<&str> = body.devices.iter().map(String::as_str).collect();
        super::keys::announce_device(ctx, &session.user_id, &gone, true).await;
    }
    Ok(json!({}))
}
