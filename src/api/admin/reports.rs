//! The reports users made, for the server's admins: `GET /_synapse/admin/v1/event_reports`
//! (and one by id) in Synapse's shapes, and `GET /_neurite/admin/v1/reports` for every
//! kind (events, rooms, users).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::api::auth::require_admin;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::platform::{rooms, Ctx};
use crate::roomserver::protocol::RoomRequest;
use crate::storage::reports::{self, Listing, Report};

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

fn int_param(req: &HttpRequest, name: &str, default: i64) -> Result<i64, MatrixError> {
    match req.query_param(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| MatrixError::invalid_param(format!("{name} must be a non-negative integer"))),
    }
}

/// Reads `from`, `limit`, `dir`, `user_id` and `room_id`.
fn listing<'a>(req: &'a HttpRequest, kind: Option<&'a str>) -> Result<Listing<'a>, MatrixError> {
    let offset = int_param(req, "from", 0)?;
    let limit = int_param(req, "limit", DEFAULT_LIMIT)?.clamp(1, MAX_LIMIT);
    let backwards = match req.query_param("dir") {
        None | Some("b") => true,
        Some("f") => false,
        Some(_) => return Err(MatrixError::invalid_param("dir must be f or b")),
    };
    Ok(Listing {
        kind,
        offset,
        limit,
        backwards,
        reporter: req.query_param("user_id"),
        room_id: req.query_param("room_id"),
    })
}

/// The rooms' names and canonical aliases, asked of each room once.
async fn room_names(ctx: &Ctx, list: &[Report]) -> BTreeMap<String, Value> {
    let ids: std::collections::BTreeSet<&str> = list.iter().filter_map(|r| r.room_id.as_deref()).collect();
    let ask = RoomRequest::Summary {
        user_id: String::new(),
    };
    let answers = futures_util::future::join_all(ids.iter().map(|id| rooms::call(ctx, id, &ask))).await;
    ids.into_iter()
        .zip(answers)
        .map(|(id, a)| (id.to_owned(), a.unwrap_or(Value::Null)))
        .collect()
}

fn entry(r: &Report, names: &BTreeMap<String, Value>, with_event: bool) -> Value {
    let summary = r.room_id.as_ref().and_then(|id| names.get(id));
    let field = |f: &str| summary.map(|s| s[f].clone()).unwrap_or(Value::Null);
    let mut out = json!({
        "id": r.id,
        "received_ts": r.received_ts,
        "room_id": r.room_id,
        "name": field("name"),
        "canonical_alias": field("canonical_alias"),
        "user_id": r.reporter,
        "reason": r.reason,
    });
    if r.kind == "event" {
        out["event_id"] = json!(r.event_id);
        out["score"] = json!(r.score);
        out["sender"] = json!(r.target_user_id);
        if with_event {
            out["event_json"] = r
                .event_json
                .as_deref()
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or(Value::Null);
        }
    } else {
        out["kind"] = json!(r.kind);
        if r.kind == "user" {
            out["target_user_id"] = json!(r.target_user_id);
        }
    }
    out
}

async fn page(ctx: &Ctx, req: &HttpRequest, kind: Option<&str>, key: &str) -> Result<Value, MatrixError> {
    require_admin(ctx, req).await?;
    let q = listing(req, kind)?;
    let (list, total) = reports::list(&ctx.db()?, &q).await?;
    let names = room_names(ctx, &list).await;
    let mut entries: Vec<Value> = list.iter().map(|r| entry(r, &names, false)).collect();
    if kind.is_none() {
        for (e, r) in entries.iter_mut().zip(&list) {
            e["kind"] = json!(r.kind);
        }
    }
    let mut body = json!({ key: entries, "total": total });
    let next = q.offset + list.len() as i64;
    if next < total {
        body["next_token"] = json!(next);
    }
    Ok(body)
}

/// `GET /_synapse/admin/v1/event_reports`
pub async fn event_reports(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    page(ctx, req, Some("event"), "event_reports").await
}

/// `GET /_neurite/admin/v1/reports`: reports of every kind (`kind` names one).
pub async fn all_reports(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let kind = match req.query_param("kind") {
        None => None,
        Some(k @ ("event" | "room" | "user")) => Some(k),
        Some(_) => return Err(MatrixError::invalid_param("kind must be event, room or user")),
    };
    page(ctx, req, kind, "reports").await
}

/// `GET /_synapse/admin/v1/event_reports/{reportId}`: one event report with the event.
pub async fn event_report(ctx: &Ctx, req: &HttpRequest, id: &str) -> Result<Value, MatrixError> {
    require_admin(ctx, req).await?;
    let id = id
        .parse::<i64>()
        .map_err(|_| MatrixError::invalid_param("The report id must be an integer"))?;
    let report = reports::get(&ctx.db()?, id)
        .await?
        .filter(|r| r.kind == "event")
        .ok_or_else(|| MatrixError::not_found("Event report not found"))?;
    let names = room_names(ctx, std::slice::from_ref(&report)).await;
    Ok(entry(&report, &names, true))
}
