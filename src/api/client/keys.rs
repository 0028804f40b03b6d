//! End-to-end encryption keys: upload, query, claim and device-list changes.
//! Cross-signing lives in `cross_signing`, key backup in `key_backup`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::api::auth::require_user;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::core::e2ee::{self, CrossSigningKind, KeyCheck};
use crate::platform::Ctx;
use crate::storage::{cross_signing, device_lists, e2e_keys};

/// Most one-time keys (or fallback keys) one upload may carry.
const MAX_KEYS_PER_UPLOAD: usize = 1000;
/// Longest key id and longest key JSON accepted.
const MAX_KEY_ID: usize = 255;
const MAX_KEY_JSON: usize = 4096;
/// Most devices one claim may ask for.
const MAX_CLAIMS: usize = 2000;

/// The client-facing error of a failed key check.
pub fn key_error(e: KeyCheck) -> MatrixError {
    match e {
        KeyCheck::Invalid(text) => MatrixError::invalid_param(text),
        KeyCheck::BadSignature(text) => MatrixError::new("M_INVALID_SIGNATURE", text),
    }
}

/// Whether a user id belongs to this server.
pub fn is_local(user_id: &str, server_name: &str) -> bool {
    user_id.starts_with('@') && user_id.split_once(':').map(|(_, s)| s) == Some(server_name)
}

/// The server part of a user id, for `failures`.
fn server_of(user_id: &str) -> &str {
    user_id.split_once(':').map_or(user_id, |(_, s)| s)
}

/// Parses `one_time_keys` / `fallback_keys`: `{"<algorithm>:<id>": key}`.
fn parse_keys(value: Option<&Value>, field: &str) -> Result<Vec<e2e_keys::KeyEntry>, MatrixError> {
    let map = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(MatrixError::bad_json(format!("{field} must be an object"))),
    };
    if map.len() > MAX_KEYS_PER_UPLOAD {
        return Err(MatrixError::invalid_param(format!("Too many keys in {field}")));
    }
    map.iter()
        .map(|(full_id, key)| {
            let (algorithm, key_id) = e2ee::split_key_id(full_id)
                .filter(|_| full_id.len() <= MAX_KEY_ID)
                .ok_or_else(|| MatrixError::invalid_param(format!("Invalid key id in {field}: {full_id}")))?;
            if !key.is_string() && !key.is_object() {
                return Err(MatrixError::bad_json(format!(
                    "{field}.{full_id} must be a string or an object"
                )));
            }
            let mut key = key.clone();
            if let Some(obj) = key.as_object_mut() {
                obj.remove("unsigned");
            }
            let text = serde_json::to_string(&key).map_err(crate::api::error::internal)?;
            if text.len() > MAX_KEY_JSON {
                return Err(MatrixError::invalid_param(format!(
                    "{field}.{full_id} is too large"
                )));
            }
            Ok((algorithm.to_owned(), key_id.to_owned(), text))
        })
        .collect()
}

/// `POST /_matrix/client/v3/keys/upload`
pub async fn upload(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let body = req.json_value()?;
    let db = ctx.db()?;
    let (user_id, device_id) = (session.user_id.as_str(), session.device_id.as_str());

    let device_keys = match body.get("device_keys") {
        None | Some(Value::Null) => None,
        Some(value) => {
            let checked = e2ee::check_device_keys(value, user_id, device_id).map_err(key_error)?;
            let mut stored = value.clone();
            if let Some(obj) = stored.as_object_mut() {
                obj.remove("unsigned");
            }
            let text = serde_json::to_string(&stored).map_err(crate::api::error::internal)?;
            if text.len() > MAX_KEY_JSON {
                return Err(MatrixError::invalid_param("device_keys is too large"));
            }
            let existing = e2e_keys::device_keys(&db, user_id, device_id).await?;
            match existing {
                Some(e) if e.key_json == text => None,
                _ => Some((text, checked.ed25519)),
            }
        }
    };
    let one_time_keys = parse_keys(body.get("one_time_keys"), "one_time_keys")?;
    let fallback_field = if body.get("fallback_keys").is_some() {
        "fallback_keys"
    } else {
        "org.matrix.msc2732.fallback_keys"
    };
    let fallback_keys = parse_keys(body.get(fallback_field), fallback_field)?;
    let mut algorithms: Vec<&str> = fallback_keys.iter().map(|(a, _, _)| a.as_str()).collect();
    algorithms.sort_unstable();
    if algorithms.windows(2).any(|w| w[0] == w[1]) {
        return Err(MatrixError::invalid_param(
            "At most one fallback key per algorithm",
        ));
    }

    let keys_changed = device_keys.is_some();
    let stmts = e2e_keys::upload(&e2e_keys::Upload {
        user_id,
        device_id,
        device_keys,
        one_time_keys,
        fallback_keys,
    });
    if !stmts.is_empty() {
        db.batch(stmts).await?;
    }
    if keys_changed {
        wake_device_list_observers(ctx, &[user_id]).await;
        announce_device(ctx, user_id, &[device_id], false).await;
    }
    let counts = e2e_keys::one_time_key_counts(&db, user_id, device_id).await?;
    Ok(json!({ "one_time_key_counts": counts }))
}

/// Parses `{"<user>": <T>}` maps of query and claim bodies.
fn object_field<'a>(body: &'a Value, field: &str) -> Result<&'a Map<String, Value>, MatrixError> {
    body.get(field)
        .and_then(Value::as_object)
        .ok_or_else(|| MatrixError::bad_json(format!("{field} must be an object")))
}

/// `POST /_matrix/client/v3/keys/query`
pub async fn query(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let body = req.json_value()?;
    let requested = object_field(&body, "device_keys")?;
    let server = &ctx.config.server_name;

    // user -> wanted device ids (empty: all); other servers' users by server.
    let mut wanted: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut remote: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut failures = Map::new();
    for (user, devices) in requested {
        let devices = devices
            .as_array()
            .filter(|d| d.iter().all(Value::is_string))
            .ok_or_else(|| MatrixError::bad_json("device_keys values must be lists of device ids"))?;
        if is_local(user, server) {
            wanted.insert(user, devices.iter().filter_map(Value::as_str).collect());
        } else if <&ruma::UserId>::try_from(user.as_str()).is_ok() {
            remote
                .entry(server_of(user).to_owned())
                .or_default()
                .insert(user.clone(), Value::Array(devices.clone()));
        }
    }
    let mut answer = local_keys(ctx, &wanted, Some(&session.user_id)).await?;
    super::remote_keys::query(ctx, remote, &mut answer, &mut failures).await;
    answer.insert("failures".into(), Value::Object(failures));
    Ok(Value::Object(answer))
}

/// The device and cross-signing keys of local users (`user -> wanted device ids`,
/// empty for all), as `/keys/query` answers them to `viewer`: their own user-signing
/// key only to themselves; other servers (`None`) never get user-signing keys.
pub async fn local_keys(
    ctx: &Ctx,
    wanted: &BTreeMap<&str, Vec<&str>>,
    viewer: Option<&str>,
) -> Result<Map<String, Value>, MatrixError> {
    let users: Vec<&str> = wanted.keys().copied().collect();
    let db = ctx.db()?;
    let devices = e2e_keys::device_keys_of_users(&db, &users).await?;
    let xsign = cross_signing::keys_of_users(&db, &users).await?;
    let sigs = cross_signing::signatures_of_users(&db, &users, viewer.unwrap_or_default()).await?;

    // (target user, target key id) -> signer user -> signer key id -> signature
    type Extra = BTreeMap<String, BTreeMap<String, String>>;
    let mut extra: BTreeMap<(String, String), Extra> = BTreeMap::new();
    for s in sigs {
        extra
            .entry((s.target_user_id, s.target_key_id))
            .or_default()
            .entry(s.signer_user_id)
            .or_default()
            .insert(s.signer_key_id, s.signature);
    }
    let with_extra = |user: &str, key_id: &str, json: &str| -> Option<Map<String, Value>> {
        let mut obj: Map<String, Value> = serde_json::from_str(json).ok()?;
        if let Some(e) = extra.get(&(user.to_owned(), key_id.to_owned())) {
            e2ee::merge_signatures(&mut obj, e);
        }
        Some(obj)
    };

    let mut device_keys = Map::new();
    for user in &users {
        device_keys.insert((*user).to_owned(), json!({}));
    }
    for d in &devices {
        let filter = wanted.get(d.user_id.as_str());
        if filter.is_some_and(|f| !f.is_empty() && !f.contains(&d.device_id.as_str())) {
            continue;
        }
        let Some(mut obj) = with_extra(&d.user_id, &d.device_id, &d.key_json) else {
            continue;
        };
        if let Some(name) = &d.display_name {
            obj.insert("unsigned".into(), json!({ "device_display_name": name }));
        }
        if let Some(Value::Object(by_device)) = device_keys.get_mut(&d.user_id) {
            by_device.insert(d.device_id.clone(), Value::Object(obj));
        }
    }

    let mut answer = Map::new();
    answer.insert("device_keys".into(), Value::Object(device_keys));
    for kind in CrossSigningKind::ALL {
        answer.insert(kind.query_field().into(), json!({}));
    }
    for k in &xsign {
        let Some(kind) = CrossSigningKind::from_usage(&k.kind) else {
            continue;
        };
        if kind == CrossSigningKind::UserSigning && Some(k.user_id.as_str()) != viewer {
            continue;
        }
        let Some(obj) = with_extra(&k.user_id, &k.public_key, &k.key_json) else {
            continue;
        };
        if let Some(Value::Object(map)) = answer.get_mut(kind.query_field()) {
            map.insert(k.user_id.clone(), Value::Object(obj));
        }
    }
    Ok(answer)
}

/// `POST /_matrix/client/v3/keys/claim`
pub async fn claim(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    require_user(ctx, req).await?;
    let body = req.json_value()?;
    let requested = object_field(&body, "one_time_keys")?;
    let server = &ctx.config.server_name;

    let mut wanted: Vec<(&str, &str, &str)> = Vec::new();
    let mut failures = Map::new();
    let mut remote: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for (user, devices) in requested {
        let devices = devices
            .as_object()
            .ok_or_else(|| MatrixError::bad_json("one_time_keys values must be objects"))?;
        if !is_local(user, server) {
            if <&ruma::UserId>::try_from(user.as_str()).is_ok() {
                remote
                    .entry(server_of(user).to_owned())
                    .or_default()
                    .insert(user.clone(), Value::Object(devices.clone()));
            }
            continue;
        }
        for (device, algorithm) in devices {
            let algorithm = algorithm
                .as_str()
                .ok_or_else(|| MatrixError::bad_json("Algorithms must be strings"))?;
            wanted.push((user, device, algorithm));
        }
    }
    let mut claimed = claim_local(ctx, &wanted).await?;
    super::remote_keys::claim(ctx, remote, &mut claimed, &mut failures).await;
    Ok(json!({ "one_time_keys": claimed, "failures": failures }))
}

/// Claims one key per `(user, device, algorithm)` of local users: `user -> device ->
/// {key id: key}`.
pub async fn claim_local(
    ctx: &Ctx,
    wanted: &[(&str, &str, &str)],
) -> Result<Map<String, Value>, MatrixError> {
    if wanted.len() > MAX_CLAIMS {
        return Err(MatrixError::invalid_param("Too many devices in one claim"));
    }
    let db = ctx.db()?;
    let mut claimed: Map<String, Value> = Map::new();
    for &(user, device, algorithm) in wanted {
        let Some(key) = e2e_keys::claim(&db, user, device, algorithm).await? else {
            continue;
        };
        let value: Value = serde_json::from_str(&key.key_json).map_err(crate::api::error::internal)?;
        let by_device = claimed.entry(user.to_owned()).or_insert_with(|| json!({}));
        if let Value::Object(by_device) = by_device {
            by_device.insert(device.to_owned(), json!({ key.full_key_id: value }));
        }
    }
    Ok(claimed)
}

/// `GET /_matrix/client/v3/keys/changes`: users whose keys changed after `from`
/// (changes after `to` are reported too: over-reporting is harmless, and only the
/// latest change per user is kept).
pub async fn changes(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let from = req
        .query_param("from")
        .ok_or_else(|| MatrixError::missing_param("Missing from"))?;
    let from = device_list_position(from).ok_or_else(|| MatrixError::invalid_param("Invalid from token"))?;
    if let Some(to) = req.query_param("to") {
        device_list_position(to).ok_or_else(|| MatrixError::invalid_param("Invalid to token"))?;
    }
    let changes = device_lists::changes(&ctx.db()?, &session.user_id, from).await?;
    Ok(json!({ "changed": changes.changed, "left": changes.left }))
}

/// The device-list position in a `/keys/changes` token: a sync token's device-list
/// part, or a plain position.
fn device_list_position(token: &str) -> Option<i64> {
    crate::sync::token::SyncToken::decode(token)
        .map(|t| t.device_lists)
        .or_else(|| e2ee::device_list_position(token))
}

/// Tells the other servers sharing a room with local user `user_id` that one of their
/// devices changed (`m.device_list_update`; they fetch the devices again with
/// `/user/devices`). Best effort.
pub async fn announce_device(ctx: &Ctx, user_id: &str, devices: &[&str], deleted: bool) {
    for device in devices {
        let edu = json!({"edu_type": "m.device_list_update", "content": {
            "user_id": user_id,
            "device_id": device,
            "stream_id": ctx.now_ms(),
            "prev_id": [],
            "deleted": deleted,
        }});
        crate::federation::sender::send_user_edu(ctx, user_id, edu).await;
    }
}

/// Wakes the waiting /syncs of every local user who follows the device lists of
/// `users` (the users themselves and everyone sharing a joined room with them), after
/// a change was recorded in D1. Best effort: the change is in D1 either way and shows
/// in their next /sync.
pub async fn wake_device_list_observers(ctx: &Ctx, users: &[&str]) {
    let Ok(db) = ctx.db() else {
        return;
    };
    let observers = match crate::storage::rooms::room_mates(&db, users).await {
        Ok(observers) => observers,
        Err(e) => {
            crate::platform::log_error(&format!("device lists: observers: {e}"));
            return;
        }
    };
    let note = crate::sync::protocol::Note {
        room_id: String::new(),
        kind: crate::sync::protocol::NoteKind::DeviceLists,
        pos: i64::try_from(ctx.now_ms()).unwrap_or(i64::MAX),
        membership: None,
        content: None,
    };
    let notes = observers.into_iter().map(|u| (u, vec![note.clone()])).collect();
    if crate::platform::users::notify_all(&ctx.env, notes).await.is_err() {
        crate::platform::log_error("device lists: some observers were not woken");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locality_and_servers() {
        assert!(is_local("@a:hs.org", "hs.org"));
        assert!(is_local("@a:localhost:8080", "localhost:8080"));
        assert!(!is_local("@a:other.org", "hs.org"));
        assert!(!is_local("a:hs.org", "hs.org"));
        assert_eq!(server_of("@a:localhost:8080"), "localhost:8080");
    }

    #[test]
    fn parses_uploaded_keys() {
        let v = json!({"signed_curve25519:AAAA": {"key": "k", "signatures": {}}, "curve25519:B": "k2"});
        let keys = parse_keys(Some(&v), "one_time_keys").expect("ok");
        assert_eq!(keys.len(), 2);
        assert!(keys.contains(&("curve25519".into(), "B".into(), "\"k2\"".into())));
        assert_eq!(
            parse_keys(Some(&json!({"nocolon": "k"})), "f")
                .unwrap_err()
                .errcode,
            "M_INVALID_PARAM"
        );
        assert_eq!(
            parse_keys(Some(&json!({"a:b": 5})), "f").unwrap_err().errcode,
            "M_BAD_JSON"
        );
        assert_eq!(
            parse_keys(Some(&json!([])), "f").unwrap_err().errcode,
            "M_BAD_JSON"
        );
        assert!(parse_keys(None, "f").expect("ok").is_empty());
    }
}
