//! Filters, stored in the user's Durable Object and used by /sync.

use serde_json::{json, Value};

use crate::api::auth::require_user;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::core::filter::Filter;
use crate::platform::{users, Ctx};
use crate::sync::protocol::UserRequest;

async fn owner(ctx: &Ctx, req: &HttpRequest, user_id: &str) -> Result<(), MatrixError> {
    let session = require_user(ctx, req).await?;
    if session.user_id != user_id {
        return Err(MatrixError::forbidden("Cannot use another user's filters"));
    }
    Ok(())
}

/// `POST /_matrix/client/v3/user/{userId}/filter`
pub async fn create(ctx: &Ctx, req: &HttpRequest, user_id: &str) -> Result<Value, MatrixError> {
    owner(ctx, req, user_id).await?;
    let value = req.json_value()?;
    Filter::parse(&value).map_err(MatrixError::bad_json)?;
    if value.to_string().len() > 65_536 {
        return Err(MatrixError::too_large(65_536));
    }
    let answer = users::call(&ctx.env, user_id, &UserRequest::PutFilter { filter: value }).await?;
    Ok(json!({ "filter_id": answer["filter_id"] }))
}

/// `GET /_matrix/client/v3/user/{userId}/filter/{filterId}`
pub async fn get(ctx: &Ctx, req: &HttpRequest, user_id: &str, filter_id: &str) -> Result<Value, MatrixError> {
    owner(ctx, req, user_id).await?;
    let request = UserRequest::GetFilter {
        filter_id: filter_id.to_owned(),
    };
    users::call(&ctx.env, user_id, &request).await.map_err(|e| {
        if e.status() == 404 {
            MatrixError::not_found("Filter not found")
        } else {
            e
        }
    })
}
