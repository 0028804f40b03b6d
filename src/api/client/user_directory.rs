//! `POST /_matrix/client/v3/user_directory/search`: the users a searcher may find, by
//! id or display name (`storage::user_directory`): those sharing a joined room with
//! them and those joined to an open room (`public` or `world_readable`), and every
//! local account when `USER_DIRECTORY_SEARCH_ALL_USERS` is `on`.

use serde_json::{json, Value};

use crate::api::auth::require_user;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::core::user_directory::{matches, parse, patterns, rows_for};
use crate::platform::Ctx;
use crate::storage::user_directory;

/// `POST /_matrix/client/v3/user_directory/search`
pub async fn search(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let body = req.json_value()?;
    let search = parse(&body).map_err(|(code, why)| MatrixError::new(code, why))?;
    if search.term.is_empty() {
        return Ok(json!({ "results": [], "limited": false }));
    }
    let found: Vec<_> = user_directory::search(
        &ctx.db()?,
        &session.user_id,
        &patterns(&search.term),
        rows_for(&search.term, search.limit),
        ctx.config.user_directory_search_all,
    )
    .await?
    .into_iter()
    .filter(|f| matches(&search.term, &f.user_id, f.displayname.as_deref()))
    .collect();
    let limited = found.len() as u64 > search.limit;
    let results: Vec<Value> = found
        .into_iter()
        .take(search.limit as usize)
        .map(|f| {
            let mut entry = json!({ "user_id": f.user_id });
            if let Some(name) = f.displayname {
                entry["display_name"] = json!(name);
            }
            if let Some(url) = f.avatar_url {
                entry["avatar_url"] = json!(url);
            }
            entry
        })
        .collect();
    Ok(json!({ "results": results, "limited": limited }))
}
