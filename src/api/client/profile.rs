//! Profiles: display name and avatar of local users. Only the user may change their
//! own; a change is propagated as new member events into the user's joined rooms.

use serde_json::{json, Map, Value};

use crate::api::auth::require_user;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::platform::Ctx;
use crate::storage::users::{self, Profile};

/// Longest display name, in bytes (Synapse's limit is 256 characters).
pub const MAX_DISPLAYNAME: usize = 256 * 4;
pub const MAX_AVATAR_URL: usize = 1000;

/// Which profile field an endpoint reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Displayname,
    AvatarUrl,
}

impl Field {
    fn key(self) -> &'static str {
        match self {
            Field::Displayname => "displayname",
            Field::AvatarUrl => "avatar_url",
        }
    }
}

/// A local user's profile from D1; another server's user's from their server
/// (`/_matrix/federation/v1/query/profile`).
async fn load(ctx: &Ctx, user_id: &str) -> Result<Profile, MatrixError> {
    let user =
        <&ruma::UserId>::try_from(user_id).map_err(|_| MatrixError::invalid_param("Invalid user id"))?;
    let server = user.server_name().as_str();
    if server != ctx.config.server_name {
        let target = format!(
            "/_matrix/federation/v1/query/profile?user_id={}",
            crate::api::http::percent_encode(user_id)
        );
        let answer = crate::federation::client::request(ctx, server, "GET", &target, None)
            .await
            .map_err(|e| {
                crate::platform::log_error(&format!("profile of {user_id}: {e}"));
                MatrixError::not_found("Profile not found")
            })?;
        let text = |field: &str| answer.get(field).and_then(Value::as_str).map(str::to_owned);
        return Ok(Profile {
            displayname: text("displayname"),
            avatar_url: text("avatar_url"),
        });
    }
    users::profile(&ctx.db()?, user_id)
        .await?
        .ok_or_else(|| MatrixError::not_found("Profile not found"))
}

fn to_json(profile: &Profile, fields: &[Field]) -> Value {
    let mut out = Map::new();
    for field in fields {
        let value = match field {
            Field::Displayname => &profile.displayname,
            Field::AvatarUrl => &profile.avatar_url,
        };
        if let Some(v) = value {
            out.insert(field.key().into(), json!(v));
        }
    }
    Value::Object(out)
}

/// `GET /_matrix/client/v3/profile/{userId}`
pub async fn get(ctx: &Ctx, user_id: &str) -> Result<Value, MatrixError> {
    let profile = load(ctx, user_id).await?;
    Ok(to_json(&profile, &[Field::Displayname, Field::AvatarUrl]))
}

/// `GET /_matrix/client/v3/profile/{userId}/displayname` and `.../avatar_url`
pub async fn get_field(ctx: &Ctx, user_id: &str, field: Field) -> Result<Value, MatrixError> {
    let profile = load(ctx, user_id).await?;
    Ok(to_json(&profile, &[field]))
}

/// `PUT /_matrix/client/v3/profile/{userId}/displayname` and `.../avatar_url`
pub async fn put_field(
    ctx: &Ctx,
    req: &HttpRequest,
    user_id: &str,
    field: Field,
) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    if session.user_id != user_id {
        return Err(MatrixError::forbidden("Cannot change another user's profile"));
    }
    let body = req.json_value()?;
    let value = match body.get(field.key()) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(MatrixError::bad_json(format!("{} must be a string", field.key()))),
    };
    // An empty string clears the field, as clients use it.
    let value = value.filter(|v| !v.is_empty());
    let db = ctx.db()?;
    match field {
        Field::Displayname => {
            if value.is_some_and(|v| v.len() > MAX_DISPLAYNAME) {
                return Err(MatrixError::invalid_param("Display name is too long"));
            }
            users::set_displayname(&db, user_id, value).await?;
        }
        Field::AvatarUrl => {
            if value.is_some_and(|v| v.len() > MAX_AVATAR_URL || !v.starts_with("mxc://")) {
                return Err(MatrixError::invalid_param("avatar_url must be an mxc:// URI"));
            }
            users::set_avatar_url(&db, user_id, value).await?;
        }
    }
    super::membership::propagate_profile(ctx, &session.user_id).await;
    Ok(json!({}))
}
