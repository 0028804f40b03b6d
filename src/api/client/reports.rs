//! Reporting content to the server's admins: `/rooms/{roomId}/report/{eventId}`,
//! `/rooms/{roomId}/report` and `/users/{userId}/report`. Reports are kept in D1
//! (`storage::reports`) and listed by the admin endpoints (`api/admin/reports.rs`).

use serde_json::{json, Value};

use crate::api::auth::require_user;
use crate::api::error::internal;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::core::reports::{check, ReportBody};
use crate::platform::{rooms, Ctx};
use crate::roomserver::protocol::RoomRequest;
use crate::storage::reports::{self, NewReport};

fn body(req: &HttpRequest, reason_required: bool, score_allowed: bool) -> Result<ReportBody, MatrixError> {
    let value = req.json_value()?;
    check(&value, reason_required, score_allowed).map_err(|(code, why)| MatrixError::new(code, why))
}

fn event_not_found() -> MatrixError {
    MatrixError::not_found("The event was not found or you are not joined to the room")
}

/// `POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}`: only a member joined now
/// reports an event, and only one they may see (404 otherwise, as for an unknown
/// event; a redacted event is not reported either).
pub async fn report_event(
    ctx: &Ctx,
    req: &HttpRequest,
    room_id: &str,
    event_id: &str,
) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    if <&ruma::RoomId>::try_from(room_id).is_err() {
        return Err(MatrixError::invalid_param("Invalid room id"));
    }
    if <&ruma::EventId>::try_from(event_id).is_err() {
        return Err(MatrixError::invalid_param("Invalid event id"));
    }
    let body = body(req, false, true)?;
    let user_id = session.user_id.clone();
    let membership = rooms::call(
        ctx,
        room_id,
        &RoomRequest::Membership {
            user_id: user_id.clone(),
        },
    )
    .await
    .map_err(|_| event_not_found())?;
    if membership["membership"].as_str() != Some("join") {
        return Err(event_not_found());
    }
    let event = rooms::call(
        ctx,
        room_id,
        &RoomRequest::Event {
            user_id: user_id.clone(),
            event_id: event_id.to_owned(),
        },
    )
    .await
    .map_err(|e| {
        if e.status() == 404 || e.status() == 403 {
            event_not_found()
        } else {
            e
        }
    })?;
    if !event["unsigned"]["redacted_because"].is_null() {
        return Err(event_not_found());
    }
    let event_json = serde_json::to_string(&event).map_err(internal)?;
    reports::add(
        &ctx.db()?,
        &NewReport {
            kind: "event",
            received_ts: ctx.now_ms(),
            reporter: &user_id,
            room_id: Some(room_id),
            event_id: Some(event_id),
            target_user_id: event["sender"].as_str(),
            reason: body.reason.as_deref(),
            score: body.score,
            event_json: Some(&event_json),
        },
    )
    .await?;
    Ok(json!({}))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/report`: any user reports a room this server
/// knows, joined to it or not.
pub async fn report_room(ctx: &Ctx, req: &HttpRequest, room_id: &str) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    if <&ruma::RoomId>::try_from(room_id).is_err() {
        return Err(MatrixError::invalid_param("Invalid room id"));
    }
    let body = body(req, true, false)?;
    let db = ctx.db()?;
    if !crate::storage::rooms::known(&db, room_id).await? {
        return Err(MatrixError::not_found("The room was not found"));
    }
    reports::add(
        &db,
        &NewReport {
            kind: "room",
            received_ts: ctx.now_ms(),
            reporter: &session.user_id,
            room_id: Some(room_id),
            event_id: None,
            target_user_id: None,
            reason: body.reason.as_deref(),
            score: None,
            event_json: None,
        },
    )
    .await?;
    Ok(json!({}))
}

/// `POST /_matrix/client/v3/users/{userId}/report`: any user reports a user this server
/// knows (a local account, or another server's user seen in a room here), sharing a
/// room with them or not.
pub async fn report_user(ctx: &Ctx, req: &HttpRequest, user_id: &str) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    if <&ruma::UserId>::try_from(user_id).is_err() {
        return Err(MatrixError::invalid_param("Invalid user id"));
    }
    let body = body(req, true, false)?;
    let db = ctx.db()?;
    if !reports::user_known(&db, user_id).await? {
        return Err(MatrixError::not_found("The user was not found"));
    }
    reports::add(
        &db,
        &NewReport {
            kind: "user",
            received_ts: ctx.now_ms(),
            reporter: &session.user_id,
            room_id: None,
            event_id: None,
            target_user_id: Some(user_id),
            reason: body.reason.as_deref(),
            score: None,
            event_json: None,
        },
    )
    .await?;
    Ok(json!({}))
}
