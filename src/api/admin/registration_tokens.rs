//! `/_synapse/admin/v1/registration_tokens`: list, create, read, update and delete
//! registration tokens (admins only), in Synapse's shapes.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::auth::require_admin;
use crate::api::error::internal;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::core::accounts::token::{random_string, ALPHANUMERIC};
use crate::platform::{random_array, Ctx};
use crate::storage::registration::{self, RegistrationToken};

pub const MAX_TOKEN_LEN: usize = 64;

/// Whether `token` uses only `[A-Za-z0-9._~-]` and is 1..=64 characters.
pub fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
}

fn to_json(token: &RegistrationToken) -> Result<Value, MatrixError> {
    serde_json::to_value(token).map_err(internal)
}

/// `GET /_synapse/admin/v1/registration_tokens`
pub async fn list(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    require_admin(ctx, req).await?;
    let valid = match req.query_param("valid") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(MatrixError::invalid_param("valid must be true or false")),
    };
    let now = ctx.now_ms();
    let tokens = registration::list_tokens(&ctx.db()?)
        .await?
        .into_iter()
        .filter(|t| valid.is_none_or(|v| t.is_valid(now) == v))
        .map(|t| to_json(&t))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({ "registration_tokens": tokens }))
}

#[derive(Deserialize)]
struct NewBody {
    token: Option<String>,
    uses_allowed: Option<i64>,
    expiry_time: Option<i64>,
    length: Option<i64>,
}

/// `POST /_synapse/admin/v1/registration_tokens/new`
pub async fn create(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    require_admin(ctx, req).await?;
    let body: NewBody = req.json()?;
    if body.uses_allowed.is_some_and(|n| n < 0) {
        return Err(MatrixError::invalid_param(
            "uses_allowed must be a non-negative integer or null",
        ));
    }
    let now = i64::try_from(ctx.now_ms()).unwrap_or(i64::MAX);
    if body.expiry_time.is_some_and(|t| t <= now) {
        return Err(MatrixError::invalid_param("expiry_time must not be in the past"));
    }
    let token = match body.token {
        Some(t) => {
            if body.length.is_some() {
                return Err(MatrixError::invalid_param(
                    "token and length cannot both be given",
                ));
            }
            if !valid_token(&t) {
                return Err(MatrixError::invalid_param(
                    "token must be 1-64 characters from A-Z, a-z, 0-9, '.', '_', '~' and '-'",
                ));
            }
            t
        }
        None => {
            let length = body.length.unwrap_or(16);
            let length = usize::try_from(length)
                .ok()
                .filter(|l| (1..=MAX_TOKEN_LEN).contains(l))
                .ok_or_else(|| MatrixError::invalid_param("length must be between 1 and 64"))?;
            let random = random_array::<MAX_TOKEN_LEN>().map_err(internal)?;
            random_string(&random[..length], ALPHANUMERIC)
        }
    };
    let record = RegistrationToken {
        token,
        uses_allowed: body.uses_allowed,
        pending: 0,
        completed: 0,
        expiry_time: body.expiry_time,
    };
    if !registration::create_token(&ctx.db()?, &record).await? {
        return Err(MatrixError::invalid_param("Token already exists"));
    }
    to_json(&record)
}

/// `GET /_synapse/admin/v1/registration_tokens/{token}`
pub async fn get(ctx: &Ctx, req: &HttpRequest, token: &str) -> Result<Value, MatrixError> {
    require_admin(ctx, req).await?;
    let record = registration::get_token(&ctx.db()?, token)
        .await?
        .ok_or_else(|| MatrixError::not_found("No such registration token"))?;
    to_json(&record)
}

/// An optional, nullable non-negative integer field: `Ok(None)` when absent, `Ok(Some(None))`
/// when null.
fn nullable_int(body: &Value, key: &str) -> Result<Option<Option<i64>>, MatrixError> {
    match body.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => match v.as_i64() {
            Some(n) => Ok(Some(Some(n))),
            None => Err(MatrixError::bad_json(format!("{key} must be an integer or null"))),
        },
    }
}

/// `PUT /_synapse/admin/v1/registration_tokens/{token}`
pub async fn update(ctx: &Ctx, req: &HttpRequest, token: &str) -> Result<Value, MatrixError> {
    require_admin(ctx, req).await?;
    let body = req.json_value()?;
    let uses_allowed = nullable_int(&body, "uses_allowed")?;
    let expiry_time = nullable_int(&body, "expiry_time")?;
    if uses_allowed.flatten().is_some_and(|n| n < 0) {
        return Err(MatrixError::invalid_param(
            "uses_allowed must be a non-negative integer or null",
        ));
    }
    let now = i64::try_from(ctx.now_ms()).unwrap_or(i64::MAX);
    if expiry_time.flatten().is_some_and(|t| t <= now) {
        return Err(MatrixError::invalid_param("expiry_time must not be in the past"));
    }
    let db = ctx.db()?;
    let current = registration::get_token(&db, token)
        .await?
        .ok_or_else(|| MatrixError::not_found("No such registration token"))?;
    let updated = RegistrationToken {
        uses_allowed: uses_allowed.unwrap_or(current.uses_allowed),
        expiry_time: expiry_time.unwrap_or(current.expiry_time),
        ..current
    };
    if !registration::update_token(&db, token, updated.uses_allowed, updated.expiry_time).await? {
        return Err(MatrixError::not_found("No such registration token"));
    }
    to_json(&updated)
}

/// `DELETE /_synapse/admin/v1/registration_tokens/{token}`
pub async fn delete(ctx: &Ctx, req: &HttpRequest, token: &str) -> Result<Value, MatrixError> {
    require_admin(ctx, req).await?;
    if !registration::delete_token(&ctx.db()?, token).await? {
        return Err(MatrixError::not_found("No such registration token"));
    }
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::valid_token;

    #[test]
    fn token_grammar() {
        assert!(valid_token("abc-DEF_1.2~"));
        assert!(valid_token(&"a".repeat(64)));
        assert!(!valid_token(&"a".repeat(65)));
        assert!(!valid_token(""));
        assert!(!valid_token("a b"));
        assert!(!valid_token("a/b"));
    }
}
