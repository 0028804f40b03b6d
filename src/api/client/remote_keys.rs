//! Other servers' users' keys for `/keys/query` and `/keys/claim`: asked of their
//! servers (`POST /_matrix/federation/v1/user/keys/query` and `/user/keys/claim`), all
//! servers at once. A server answers only for its own users; one that cannot be reached
//! is named in `failures`.

use std::collections::BTreeMap;

use futures_util::future::join_all;
use serde_json::{json, Map, Value};

use crate::federation::client::{request, FedError};
use crate::platform::{log_error, Ctx};
use crate::storage;

fn server_of(user_id: &str) -> Option<&str> {
    <&ruma::UserId>::try_from(user_id)
        .ok()
        .map(|u| u.server_name().as_str())
}

fn failure(server: &str, e: &FedError) -> Value {
    log_error(&format!("keys from {server}: {e}"));
    match e {
        FedError::Status { status, errcode, .. } => {
            json!({"errcode": errcode, "error": format!("{server} answered {status}")})
        }
        _ => json!({"errcode": "M_UNKNOWN", "error": format!("{server} could not be reached")}),
    }
}

/// Keeps the entries of `map` (user id → anything) that are `server`'s users.
fn own_users(map: &Value, server: &str) -> Map<String, Value> {
    map.as_object()
        .into_iter()
        .flatten()
        .filter(|(user, _)| server_of(user) == Some(server))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Device keys whose `user_id` and `device_id` are what they are filed under.
fn consistent_devices(by_user: Map<String, Value>) -> Map<String, Value> {
    by_user
        .into_iter()
        .map(|(user, devices)| {
            let kept: Map<String, Value> = devices
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(device, keys)| keys["user_id"] == json!(user) && keys["device_id"] == json!(device))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (user, Value::Object(kept))
        })
        .collect()
}

/// One user's keys as kept: all their devices and their cross-signing keys.
fn user_keys(answer: &Value, user: &str) -> Value {
    json!({
        "device_keys": answer["device_keys"][user],
        "master_key": answer["master_keys"][user],
        "self_signing_key": answer["self_signing_keys"][user],
    })
}

/// Merges one user's kept keys into a `/keys/query` answer: the devices `devices`
/// names (all when empty) and the cross-signing keys there are.
fn merge_user(answer: &mut Map<String, Value>, user: &str, keys: &Value, devices: &Value) {
    let wanted: Vec<&str> = devices
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let chosen: Map<String, Value> = keys["device_keys"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(device, _)| wanted.is_empty() || wanted.contains(&device.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (field, value) in [
        ("device_keys", Value::Object(chosen)),
        ("master_keys", keys["master_key"].clone()),
        ("self_signing_keys", keys["self_signing_key"].clone()),
    ] {
        if value.is_null() {
            continue;
        }
        if let Some(Value::Object(into)) = answer.get_mut(field) {
            into.insert(user.to_owned(), value);
        }
    }
}

/// What other servers answer for `/keys/query`: `wanted` is server → user → device
/// ids. Merged into `answer` (`device_keys`, `master_keys`, `self_signing_keys`) and
/// `failures`. Keys kept from an earlier answer (`storage::remote_devices`) are used
/// until their server says they changed; the rest are asked of their servers, for all
/// of each user's devices, and kept for the users who share a room with a local user.
pub async fn query(
    ctx: &Ctx,
    mut wanted: BTreeMap<String, Map<String, Value>>,
    answer: &mut Map<String, Value>,
    failures: &mut Map<String, Value>,
) {
    let started = ctx.now_ms();
    let db = ctx.db().ok();
    if let Some(db) = &db {
        let users: Vec<&str> = wanted
            .values()
            .flat_map(|u| u.keys().map(String::as_str))
            .collect();
        let kept = storage::remote_devices::kept(db, &users, started)
            .await
            .unwrap_or_else(|e| {
                log_error(&format!("kept remote keys: {e}"));
                Vec::new()
            });
        for (user, keys) in kept {
            let Some(server) = server_of(&user) else {
                continue;
            };
            if let Some(devices) = wanted.get_mut(server).and_then(|users| users.remove(&user)) {
                merge_user(answer, &user, &keys, &devices);
            }
        }
    }
    wanted.retain(|_, users| !users.is_empty());
    let asks = wanted.into_iter().map(|(server, users)| async move {
        let all: Map<String, Value> = users.keys().map(|u| (u.clone(), json!([]))).collect();
        let body = json!({ "device_keys": all });
        let result = request(
            ctx,
            &server,
            "POST",
            "/_matrix/federation/v1/user/keys/query",
            Some(&body),
        )
        .await;
        (server, users, result)
    });
    let mut keep = Vec::new();
    for (server, users, result) in join_all(asks).await {
        match result {
            Ok(mut keys) => {
                keys["device_keys"] =
                    Value::Object(consistent_devices(own_users(&keys["device_keys"], &server)));
                for (user, devices) in &users {
                    if server_of(user) != Some(server.as_str()) {
                        continue;
                    }
                    let mine = user_keys(&keys, user);
                    merge_user(answer, user, &mine, devices);
                    keep.push(storage::remote_devices::keep(user, &mine, started));
                }
            }
            Err(e) => {
                failures.insert(server.clone(), failure(&server, &e));
            }
        }
    }
    if let (Some(db), false) = (&db, keep.is_empty()) {
        if let Err(e) = db.batch(keep).await {
            log_error(&format!("keeping remote keys: {e}"));
        }
    }
}

/// What other servers answer for `/keys/claim`: `wanted` is server → user → device →
/// algorithm. Merged into `claimed` (user → device → {key id: key}) and `failures`.
pub async fn claim(
    ctx: &Ctx,
    wanted: BTreeMap<String, Map<String, Value>>,
    claimed: &mut Map<String, Value>,
    failures: &mut Map<String, Value>,
) {
    let asks = wanted.into_iter().map(|(server, users)| async move {
        let body = json!({ "one_time_keys": users });
        let result = request(
            ctx,
            &server,
            "POST",
            "/_matrix/federation/v1/user/keys/claim",
            Some(&body),
        )
        .await;
        (server, result)
    });
    for (server, result) in join_all(asks).await {
        match result {
            Ok(keys) => claimed.extend(own_users(&keys["one_time_keys"], &server)),
            Err(e) => {
                failures.insert(server.clone(), failure(&server, &e));
            }
        }
    }
}
