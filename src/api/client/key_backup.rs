//! Server-side key backup: versions (`/room_keys/version`) and the session keys in
//! them (`/room_keys/keys` at all, room and session level). Keys can only be written
//! to the newest version; older ones stay readable and deletable.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::api::auth::require_user;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::platform::Ctx;
use crate::storage::key_backup::{self, Key, Version};

/// Most session keys one upload may carry.
const MAX_KEYS: usize = 10_000;

fn unknown_version() -> MatrixError {
    MatrixError::not_found("Unknown backup version")
}

/// Version ids are decimal integers; anything else names no backup.
fn parse_version(text: &str) -> Result<i64, MatrixError> {
    text.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(unknown_version)
}

fn version_json(v: &Version) -> Value {
    let auth_data: Value = serde_json::from_str(&v.auth_data).unwrap_or_else(|_| json!({}));
    json!({
        "algorithm": v.algorithm,
        "auth_data": auth_data,
        "count": v.count,
        "etag": v.etag.to_string(),
        "version": v.version.to_string(),
    })
}

/// `algorithm` and `auth_data` of a create or update body.
fn parse_config(body: &Value) -> Result<(String, String), MatrixError> {
    let algorithm = body
        .get("algorithm")
        .and_then(Value::as_str)
        .ok_or_else(|| MatrixError::bad_json("algorithm must be a string"))?;
    let auth_data = body
        .get("auth_data")
        .filter(|v| v.is_object())
        .ok_or_else(|| MatrixError::bad_json("auth_data must be an object"))?;
    let text = serde_json::to_string(auth_data).map_err(crate::api::error::internal)?;
    if algorithm.len() > 255 || text.len() > 65536 {
        return Err(MatrixError::invalid_param("Backup configuration too large"));
    }
    Ok((algorithm.to_owned(), text))
}

/// `POST /_matrix/client/v3/room_keys/version`
pub async fn create_version(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let (algorithm, auth_data) = parse_config(&req.json_value()?)?;
    let version = key_backup::create(&ctx.db()?, &session.user_id, &algorithm, &auth_data).await?;
    Ok(json!({ "version": version.to_string() }))
}

/// `GET /_matrix/client/v3/room_keys/version` (the newest) and
/// `GET /_matrix/client/v3/room_keys/version/{version}`
pub async fn get_version(ctx: &Ctx, req: &HttpRequest, version: Option<&str>) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let db = ctx.db()?;
    let found = match version {
        None => key_backup::latest(&db, &session.user_id).await?,
        Some(v) => key_backup::get(&db, &session.user_id, parse_version(v)?).await?,
    };
    found
        .map(|v| version_json(&v))
        .ok_or_else(|| MatrixError::not_found("No backup found"))
}

/// `PUT /_matrix/client/v3/room_keys/version/{version}`
pub async fn update_version(ctx: &Ctx, req: &HttpRequest, version: &str) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let body = req.json_value()?;
    let (algorithm, auth_data) = parse_config(&body)?;
    let number = parse_version(version)?;
    if let Some(v) = body.get("version") {
        if v.as_str() != Some(version) {
            return Err(MatrixError::invalid_param("version does not match the path"));
        }
    }
    let db = ctx.db()?;
    let current = key_backup::get(&db, &session.user_id, number)
        .await?
        .ok_or_else(unknown_version)?;
    if current.algorithm != algorithm {
        return Err(MatrixError::invalid_param("Algorithm does not match"));
    }
    if !key_backup::update(&db, &session.user_id, number, &auth_data).await? {
        return Err(unknown_version());
    }
    Ok(json!({}))
}

/// `DELETE /_matrix/client/v3/room_keys/version/{version}`
pub async fn delete_version(ctx: &Ctx, req: &HttpRequest, version: &str) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let number = parse_version(version)?;
    if !key_backup::delete(&ctx.db()?, &session.user_id, number).await? {
        return Err(unknown_version());
    }
    Ok(json!({}))
}

/// Which keys a `/room_keys/keys` request addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level<'a> {
    All,
    Room(&'a str),
    Session(&'a str, &'a str),
}

impl<'a> Level<'a> {
    fn room(self) -> Option<&'a str> {
        match self {
            Level::All => None,
            Level::Room(r) | Level::Session(r, _) => Some(r),
        }
    }
    fn session(self) -> Option<&'a str> {
        match self {
            Level::Session(_, s) => Some(s),
            _ => None,
        }
    }
}

/// Parses one `KeyBackupData`.
fn parse_key(room_id: &str, session_id: &str, value: &Value) -> Result<Key, MatrixError> {
    let bad = |field: &str| MatrixError::bad_json(format!("Invalid {field} for session {session_id}"));
    let int = |field: &str| {
        value
            .get(field)
            .and_then(Value::as_i64)
            .filter(|n| *n >= 0)
            .ok_or_else(|| bad(field))
    };
    let is_verified = value
        .get("is_verified")
        .and_then(Value::as_bool)
        .ok_or_else(|| bad("is_verified"))?;
    let session_data = value
        .get("session_data")
        .filter(|v| v.is_object())
        .ok_or_else(|| bad("session_data"))?;
    Ok(Key {
        room_id: room_id.to_owned(),
        session_id: session_id.to_owned(),
        first_message_index: int("first_message_index")?,
        forwarded_count: int("forwarded_count")?,
        is_verified: i64::from(is_verified),
        session_data: serde_json::to_string(session_data).map_err(crate::api::error::internal)?,
    })
}

/// Parses `{"<session>": KeyBackupData}`.
fn parse_sessions(room_id: &str, value: Option<&Value>, out: &mut Vec<Key>) -> Result<(), MatrixError> {
    let sessions = value
        .and_then(Value::as_object)
        .ok_or_else(|| MatrixError::bad_json("sessions must be an object"))?;
    for (session_id, data) in sessions {
        out.push(parse_key(room_id, session_id, data)?);
    }
    Ok(())
}

/// The keys of a PUT body at the given level.
fn parse_upload(level: Level<'_>, body: &Value) -> Result<Vec<Key>, MatrixError> {
    let mut keys = Vec::new();
    match level {
        Level::Session(room, session) => keys.push(parse_key(room, session, body)?),
        Level::Room(room) => parse_sessions(room, body.get("sessions"), &mut keys)?,
        Level::All => {
            let rooms = body
                .get("rooms")
                .and_then(Value::as_object)
                .ok_or_else(|| MatrixError::bad_json("rooms must be an object"))?;
            for (room, data) in rooms {
                parse_sessions(room, data.get("sessions"), &mut keys)?;
            }
        }
    }
    if keys.len() > MAX_KEYS {
        return Err(MatrixError::invalid_param("Too many keys in one upload"));
    }
    Ok(keys)
}

fn version_param(req: &HttpRequest) -> Result<&str, MatrixError> {
    req.query_param("version")
        .ok_or_else(|| MatrixError::missing_param("Missing version"))
}

async fn etag_and_count(db: &crate::storage::Db, user_id: &str, version: i64) -> Result<Value, MatrixError> {
    let v = key_backup::get(db, user_id, version)
        .await?
        .ok_or_else(unknown_version)?;
    Ok(json!({ "etag": v.etag.to_string(), "count": v.count }))
}

/// `PUT /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]]`
pub async fn put_keys(ctx: &Ctx, req: &HttpRequest, level: Level<'_>) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let version_text = version_param(req)?;
    let keys = parse_upload(level, &req.json_value()?)?;
    let db = ctx.db()?;
    let user_id = session.user_id.as_str();
    let version = parse_version(version_text)?;
    key_backup::get(&db, user_id, version)
        .await?
        .ok_or_else(unknown_version)?;
    let latest = key_backup::latest(&db, user_id).await?;
    if let Some(latest) = latest.filter(|l| l.version != version) {
        return Err(MatrixError::new(
            "M_WRONG_ROOM_KEYS_VERSION",
            "Keys can only be written to the current backup version",
        )
        .with_extra("current_version", json!(latest.version.to_string())));
    }
    if !keys.is_empty() {
        key_backup::put_keys(&db, user_id, version, &keys).await?;
    }
    etag_and_count(&db, user_id, version).await
}

fn key_json(k: &Key) -> Value {
    let session_data: Value = serde_json::from_str(&k.session_data).unwrap_or_else(|_| json!({}));
    json!({
        "first_message_index": k.first_message_index,
        "forwarded_count": k.forwarded_count,
        "is_verified": k.is_verified != 0,
        "session_data": session_data,
    })
}

/// `GET /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]]`
pub async fn get_keys(ctx: &Ctx, req: &HttpRequest, level: Level<'_>) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let version = parse_version(version_param(req)?)?;
    let db = ctx.db()?;
    let user_id = session.user_id.as_str();
    key_backup::get(&db, user_id, version)
        .await?
        .ok_or_else(unknown_version)?;
    let keys = key_backup::get_keys(&db, user_id, version, level.room(), level.session()).await?;
    Ok(match level {
        Level::Session(..) => keys
            .first()
            .map(key_json)
            .ok_or_else(|| MatrixError::not_found("No key found for this session"))?,
        Level::Room(_) => {
            let sessions: Map<String, Value> =
                keys.iter().map(|k| (k.session_id.clone(), key_json(k))).collect();
            json!({ "sessions": sessions })
        }
        Level::All => {
            let mut rooms: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
            for k in &keys {
                rooms
                    .entry(&k.room_id)
                    .or_default()
                    .insert(k.session_id.clone(), key_json(k));
            }
            let rooms: Map<String, Value> = rooms
                .into_iter()
                .map(|(r, s)| (r.to_owned(), json!({ "sessions": s })))
                .collect();
            json!({ "rooms": rooms })
        }
    })
}

/// `DELETE /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]]`
pub async fn delete_keys(ctx: &Ctx, req: &HttpRequest, level: Level<'_>) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let version = parse_version(version_param(req)?)?;
    let db = ctx.db()?;
    let user_id = session.user_id.as_str();
    key_backup::get(&db, user_id, version)
        .await?
        .ok_or_else(unknown_version)?;
    key_backup::delete_keys(&db, user_id, version, level.room(), level.session()).await?;
    etag_and_count(&db, user_id, version).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(fmi: i64) -> Value {
        json!({"first_message_index": fmi, "forwarded_count": 0, "is_verified": false, "session_data": {"c": "x"}})
    }

    #[test]
    fn parses_uploads_at_each_level() {
        let all = json!({"rooms": {"!a:hs": {"sessions": {"s1": data(1), "s2": data(2)}}, "!b:hs": {"sessions": {}}}});
        assert_eq!(parse_upload(Level::All, &all).expect("ok").len(), 2);
        let room = json!({"sessions": {"s1": data(1)}});
        let keys = parse_upload(Level::Room("!a:hs"), &room).expect("ok");
        assert_eq!(
            (keys[0].room_id.as_str(), keys[0].session_id.as_str()),
            ("!a:hs", "s1")
        );
        let one = parse_upload(Level::Session("!a:hs", "s9"), &data(3)).expect("ok");
        assert_eq!(one[0].first_message_index, 3);
    }

    #[test]
    fn refuses_malformed_key_data() {
        let mut bad = data(1);
        bad["is_verified"] = json!("yes");
        assert_eq!(
            parse_upload(Level::Session("!a:hs", "s"), &bad)
                .unwrap_err()
                .errcode,
            "M_BAD_JSON"
        );
        assert_eq!(
            parse_upload(Level::Session("!a:hs", "s"), &data(-1))
                .unwrap_err()
                .errcode,
            "M_BAD_JSON"
        );
        assert_eq!(
            parse_upload(Level::All, &json!({"rooms": []}))
                .unwrap_err()
                .errcode,
            "M_BAD_JSON"
        );
        assert_eq!(parse_version("x").unwrap_err().errcode, "M_NOT_FOUND");
        assert_eq!(parse_version("0").unwrap_err().errcode, "M_NOT_FOUND");
        assert_eq!(parse_version("12"), Ok(12));
    }
}
