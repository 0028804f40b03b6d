//! `GET /_matrix/federation/v1/query/profile` and `/query/directory`: what other
//! servers ask about this server's users and aliases.

use serde_json::{json, Value};

use crate::api::client::keys::is_local;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::platform::Ctx;
use crate::storage::{rooms, users};

/// `GET /_matrix/federation/v1/query/profile`
pub async fn profile(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let user_id = req
        .query_param("user_id")
        .ok_or_else(|| MatrixError::missing_param("user_id is required"))?;
    if ruma::UserId::parse(user_id).is_err() {
        return Err(MatrixError::invalid_param("user_id is not a user id"));
    }
    if !is_local(user_id, &ctx.config.server_name) {
        return Err(MatrixError::invalid_param("The user is not on this server"));
    }
    let field = req.query_param("field");
    if field.is_some_and(|f| f != "displayname" && f != "avatar_url") {
        return Err(MatrixError::invalid_param(
            "field must be displayname or avatar_url",
        ));
    }
    let profile = users::profile(&ctx.db()?, user_id)
        .await?
        .ok_or_else(|| MatrixError::not_found("Profile not found"))?;
    let mut out = serde_json::Map::new();
    if field.is_none_or(|f| f == "displayname") {
        if let Some(name) = profile.displayname {
            out.insert("displayname".into(), json!(name));
        }
    }
    if field.is_none_or(|f| f == "avatar_url") {
        if let Some(url) = profile.avatar_url {
            out.insert("avatar_url".into(), json!(url));
        }
    }
    Ok(Value::Object(out))
}

/// `GET /_matrix/federation/v1/query/directory`
pub async fn directory(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let alias = req
        .query_param("room_alias")
        .ok_or_else(|| MatrixError::missing_param("room_alias is required"))?;
    let parsed =
        ruma::RoomAliasId::parse(alias).map_err(|_| MatrixError::invalid_param("Invalid room alias"))?;
    if parsed.server_name().as_str() != ctx.config.server_name {
        return Err(MatrixError::invalid_param("The alias is not on this server"));
    }
    let room_id = rooms::resolve_alias(&ctx.db()?, alias)
        .await?
        .ok_or_else(|| MatrixError::not_found("Room alias not found"))?;
    Ok(json!({ "room_id": room_id, "servers": [ctx.config.server_name] }))
}
