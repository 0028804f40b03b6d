//! `GET /_matrix/federation/v1/user/devices/{userId}`, `POST /user/keys/query` and
//! `POST /user/keys/claim`: this server's users' devices and keys, for other servers.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::api::client::keys::{claim_local, is_local, local_keys};
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::platform::Ctx;

/// Most users one query names.
const MAX_USERS: usize = 1000;

fn object<'a>(body: &'a Value, field: &str) -> Result<&'a Map<String, Value>, MatrixError> {
    body.get(field)
        .and_then(Value::as_object)
        .ok_or_else(|| MatrixError::bad_json(format!("{field} must be an object")))
}

/// `GET /_matrix/federation/v1/user/devices/{userId}`
pub async fn devices(ctx: &Ctx, user_id: &str) -> Result<Value, MatrixError> {
    if ruma::UserId::parse(user_id).is_err() || !is_local(user_id, &ctx.config.server_name) {
        return Err(MatrixError::invalid_param("The user is not on this server"));
    }
    let wanted = BTreeMap::from([(user_id, Vec::new())]);
    let keys = local_keys(ctx, &wanted, None).await?;
    let mut devices = Vec::new();
    if let Some(by_device) = keys["device_keys"][user_id].as_object() {
        for (device_id, device_keys) in by_device {
            let mut device_keys = device_keys.clone();
            let name = device_keys
                .as_object_mut()
                .and_then(|o| o.remove("unsigned"))
                .and_then(|u| u["device_display_name"].as_str().map(str::to_owned));
            let mut entry = json!({ "device_id": device_id, "keys": device_keys });
            if let Some(name) = name {
                entry["device_display_name"] = json!(name);
            }
            devices.push(entry);
        }
    }
    // The same clock as the `m.device_list_update` EDUs this server sends: a fetch is
    // never older than an update announced before it.
    let mut out = json!({ "user_id": user_id, "stream_id": ctx.now_ms(), "devices": devices });
    for (field, name) in [
        ("master_keys", "master_key"),
        ("self_signing_keys", "self_signing_key"),
    ] {
        if let Some(key) = keys[field].get(user_id) {
            out[name] = key.clone();
        }
    }
    Ok(out)
}

/// `POST /_matrix/federation/v1/user/keys/query`
pub async fn keys_query(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let body = req.json_value()?;
    let requested = object(&body, "device_keys")?;
    if requested.len() > MAX_USERS {
        return Err(MatrixError::invalid_param("Too many users in one query"));
    }
    let mut wanted: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (user, devices) in requested {
        let devices = devices
            .as_array()
            .filter(|d| d.iter().all(Value::is_string))
            .ok_or_else(|| MatrixError::bad_json("device_keys values must be lists of device ids"))?;
        if is_local(user, &ctx.config.server_name) {
            wanted.insert(user, devices.iter().filter_map(Value::as_str).collect());
        }
    }
    let mut answer = local_keys(ctx, &wanted, None).await?;
    answer.remove("user_signing_keys");
    Ok(Value::Object(answer))
}

/// `POST /_matrix/federation/v1/user/keys/claim`
pub async fn keys_claim(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let body = req.json_value()?;
    let requested = object(&body, "one_time_keys")?;
    let mut wanted = Vec::new();
    for (user, devices) in requested {
        let devices = devices
            .as_object()
            .ok_or_else(|| MatrixError::bad_json("one_time_keys values must be objects"))?;
        if !is_local(user, &ctx.config.server_name) {
            continue;
        }
        for (device, algorithm) in devices {
            let algorithm = algorithm
                .as_str()
                .ok_or_else(|| MatrixError::bad_json("Algorithms must be strings"))?;
            wanted.push((user.as_str(), device.as_str(), algorithm));
        }
    }
    Ok(json!({ "one_time_keys": claim_local(ctx, &wanted).await? }))
}
