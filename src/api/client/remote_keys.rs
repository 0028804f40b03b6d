//! Other servers' users' keys for `/keys/query` and `/keys/claim`: asked of their
//! servers (`POST /_matrix/federation/v1/user/keys/query` and `/user/keys/claim`), all
//! servers at once. A server answers only for its own users; one that cannot be reached
//! is named in `failures`.

use std::collections::BTreeMap;

use futures_util::future::join_all;
use serde_json::{json, Map, Value};

use crate::federation::client::{request, FedError};
use crate::platform::{log_error, Ctx};

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

/// What other servers answer for `/keys/query`: `wanted` is server → user → device
/// ids. Merged into `answer` (`device_keys`, `master_keys`, `self_signing_keys`) and
/// `failures`.
pub async fn query(
    ctx: &Ctx,
    wanted: BTreeMap<String, Map<String, Value>>,
    answer: &mut Map<String, Value>,
    failures: &mut Map<String, Value>,
) {
    let asks = wanted.into_iter().map(|(server, users)| async move {
        let body = json!({ "device_keys": users });
        let result = request(
            ctx,
            &server,
            "POST",
            "/_matrix/federation/v1/user/keys/query",
            Some(&body),
        )
        .await;
        (server, result)
    });
    for (server, result) in join_all(asks).await {
        match result {
            Ok(keys) => {
                let devices = consistent_devices(own_users(&keys["device_keys"], &server));
                for (field, found) in [
                    ("device_keys", devices),
                    ("master_keys", own_users(&keys["master_keys"], &server)),
                    (
                        "self_signing_keys",
                        own_users(&keys["self_signing_keys"], &server),
                    ),
                ] {
                    if let Some(Value::Object(into)) = answer.get_mut(field) {
                        into.extend(found);
                    }
                }
            }
            Err(e) => {
                failures.insert(server.clone(), failure(&server, &e));
            }
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
