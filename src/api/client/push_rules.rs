//! Push rules. A user's ruleset is their global `m.push_rules` account data in D1 (so
//! /sync delivers it like any account data); a user who never edited a rule has none
//! stored and gets the server defaults. Each edit loads the ruleset, applies one change
//! (`core::push::edit`) and stores the whole ruleset again, only if nobody wrote it in
//! between (clients send several edits at once); otherwise it starts over.
//!
//! /sync reads the ruleset too (`for_sync`) and hands it to each room (`for_room`),
//! which counts notifications with it.

use ruma::push::{RuleKind, Ruleset};
use ruma::UserId;
use serde_json::{json, Value};

use crate::api::auth::require_user;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::core::push::edit::{self, EditError};
use crate::core::push::{self, ACCOUNT_DATA_TYPE};
use crate::platform::Ctx;
use crate::storage::{account_data, Db};

use super::account_data::MAX_CONTENT;
use super::receipts::notify_account_data;

fn user_id(text: &str) -> Result<&UserId, MatrixError> {
    <&UserId>::try_from(text).map_err(crate::api::error::internal)
}

fn refusal(e: EditError) -> MatrixError {
    match e {
        EditError::NotFound => MatrixError::not_found("The push rule was not found."),
        EditError::Invalid(text) => MatrixError::invalid_param(text),
        EditError::UnknownPosition(text) => MatrixError::new("M_UNKNOWN", text).with_status(400),
    }
}

/// The stored account-data content, parsed (`None`: never stored, or unreadable).
async fn stored(db: &Db, user: &str) -> Result<Option<Value>, MatrixError> {
    Ok(account_data::get(db, user, None, ACCOUNT_DATA_TYPE)
        .await?
        .and_then(|text| serde_json::from_str(&text).ok()))
}

async fn load(ctx: &Ctx, user: &str) -> Result<Ruleset, MatrixError> {
    let content = stored(&ctx.db()?, user).await?;
    Ok(push::ruleset(user_id(user)?, content.as_ref()))
}

/// Attempts at a read-modify-write before giving up on concurrent writers; between
/// attempts a short random wait, so writers that collided spread out.
const EDIT_ATTEMPTS: u64 = 12;

/// Applies `change` to the stored ruleset and stores the result, atomically with
/// respect to other edits. A refused change stores nothing.
async fn edit_rules(
    ctx: &Ctx,
    user: &str,
    change: impl Fn(&mut Ruleset) -> Result<(), EditError>,
) -> Result<Value, MatrixError> {
    let db = ctx.db()?;
    for attempt in 0..EDIT_ATTEMPTS {
        if attempt > 0 {
            let jitter = crate::platform::random_array::<1>().map_or(0, |[b]| u64::from(b) % 20);
            crate::platform::sleep(5 + attempt * 5 + jitter).await;
        }
        let read = account_data::get_global_versioned(&db, user, ACCOUNT_DATA_TYPE).await?;
        let content = read
            .as_ref()
            .and_then(|(text, _)| serde_json::from_str(text).ok());
        let mut rules = push::ruleset(user_id(user)?, content.as_ref());
        change(&mut rules).map_err(refusal)?;
        let text = serde_json::to_string(&push::content(&rules)).map_err(crate::api::error::internal)?;
        if text.len() > MAX_CONTENT {
            return Err(MatrixError::too_large(MAX_CONTENT));
        }
        let seen = read.map(|(_, stream_id)| stream_id);
        if let Some(pos) = account_data::put_global_if(&db, user, ACCOUNT_DATA_TYPE, &text, seen).await? {
            notify_account_data(ctx, user, pos).await?;
            return Ok(json!({}));
        }
    }
    Err(MatrixError::limit_exceeded(100))
}

/// The user's ruleset as the `m.push_rules` account data content: what
/// `GET /pushrules/` answers and `GET …/account_data/m.push_rules` reads.
pub async fn content_of(ctx: &Ctx, user: &str) -> Result<Value, MatrixError> {
    Ok(push::content(&load(ctx, user).await?))
}

/// `GET /_matrix/client/v3/pushrules/`
pub async fn get_all(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    content_of(ctx, &session.user_id).await
}

/// `GET /_matrix/client/v3/pushrules/global/`
pub async fn get_global(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    Ok(push::ruleset_json(&load(ctx, &session.user_id).await?))
}

/// Which part of a rule a request reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Rule,
    Enabled,
    Actions,
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}` (and `/enabled`, `/actions`)
pub async fn get(
    ctx: &Ctx,
    req: &HttpRequest,
    kind: &str,
    rule_id: &str,
    part: Part,
) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let kind: RuleKind = edit::kind(kind).map_err(refusal)?;
    let rules = load(ctx, &session.user_id).await?;
    match part {
        Part::Rule => edit::get(&rules, &kind, rule_id),
        Part::Enabled => edit::enabled(&rules, &kind, rule_id),
        Part::Actions => edit::actions(&rules, &kind, rule_id),
    }
    .map_err(refusal)
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}` (and `/enabled`, `/actions`)
pub async fn put(
    ctx: &Ctx,
    req: &HttpRequest,
    kind: &str,
    rule_id: &str,
    part: Part,
) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let body = req.json_value()?;
    let kind: RuleKind = edit::kind(kind).map_err(refusal)?;
    let (before, after) = (req.query_param("before"), req.query_param("after"));
    edit_rules(ctx, &session.user_id, |rules| match part {
        Part::Rule => edit::put(rules, &kind, rule_id, &body, before, after),
        Part::Enabled => edit::set_enabled(rules, &kind, rule_id, &body),
        Part::Actions => edit::set_actions(rules, &kind, rule_id, &body),
    })
    .await
}

/// `DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
pub async fn delete(ctx: &Ctx, req: &HttpRequest, kind: &str, rule_id: &str) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let kind: RuleKind = edit::kind(kind).map_err(refusal)?;
    edit_rules(ctx, &session.user_id, |rules| edit::delete(rules, &kind, rule_id)).await
}

// ---- for /sync ----

/// The user's ruleset for counting, as JSON (the `global` part, with the current
/// server defaults merged in), or `None` when they never edited a rule: rooms then use
/// the server defaults themselves and the request stays small.
pub async fn for_sync(db: &Db, user: &str) -> Result<Option<Value>, MatrixError> {
    let Some(content) = stored(db, user).await? else {
        return Ok(None);
    };
    Ok(Some(push::ruleset_json(&push::ruleset(
        user_id(user)?,
        Some(&content),
    ))))
}

/// What one room needs of the ruleset: room rules for other rooms are dropped, so a user
/// who muted many rooms does not send all of them to every room.
pub fn for_room(rules: Option<&Value>, room_id: &str) -> Option<Value> {
    let mut rules = rules?.clone();
    if let Some(list) = rules.get_mut("room").and_then(Value::as_array_mut) {
        list.retain(|r| r.get("rule_id").and_then(Value::as_str) == Some(room_id));
    }
    Some(rules)
}

/// The `m.push_rules` event an initial /sync shows when the user has none stored (the
/// server defaults), as other servers do; `None` when one is stored (it comes with the
/// rest of the account data).
pub fn initial_event(user: &str, rules: Option<&Value>) -> Option<Value> {
    if rules.is_some() {
        return None;
    }
    let user = <&UserId>::try_from(user).ok()?;
    Some(json!({ "type": ACCOUNT_DATA_TYPE, "content": push::content(&Ruleset::server_default(user)) }))
}
