//! Other servers' questions about a room's DAG: `/state`, `/state_ids`,
//! `/event_auth`, `/backfill` and `/get_missing_events`. The room checks that the
//! asking server may ask (ACL; a member joined, or world-readable history).

use serde_json::{json, Value};

use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::platform::{rooms, Ctx};
use crate::roomserver::protocol::{FederationQuery, RoomRequest};
use crate::storage;

/// Most events `/backfill` and `/get_missing_events` answer.
const MAX_LIMIT: u32 = 100;

async fn ask(ctx: &Ctx, origin: &str, room_id: &str, query: FederationQuery) -> Result<Value, MatrixError> {
    if ruma::RoomId::parse(room_id).is_err() {
        return Err(MatrixError::invalid_param("Invalid room id"));
    }
    if !storage::rooms::known(&ctx.db()?, room_id).await? {
        return Err(MatrixError::not_found("Unknown room"));
    }
    let request = RoomRequest::Federation {
        origin: Some(origin.to_owned()),
        query,
    };
    rooms::call(ctx, room_id, &request).await
}

fn event_id_param(req: &HttpRequest) -> Result<String, MatrixError> {
    let id = req
        .query_param("event_id")
        .ok_or_else(|| MatrixError::missing_param("event_id is required"))?;
    ruma::EventId::parse(id).map_err(|_| MatrixError::invalid_param("Invalid event id"))?;
    Ok(id.to_owned())
}

fn limit(value: Option<&Value>, text: Option<&str>, default: u32) -> Result<u32, MatrixError> {
    let parsed = match (value, text) {
        (Some(v), _) => v.as_u64(),
        (None, Some(t)) => t.parse::<u64>().ok(),
        (None, None) => Some(u64::from(default)),
    };
    parsed
        .map(|l| l.min(u64::from(MAX_LIMIT)) as u32)
        .ok_or_else(|| MatrixError::invalid_param("limit must be a non-negative integer"))
}

/// `GET /_matrix/federation/v1/event/{eventId}`: any event of a room this server
/// indexed (its new events), as its PDU.
pub async fn event(ctx: &Ctx, origin: &str, event_id: &str) -> Result<Value, MatrixError> {
    ruma::EventId::parse(event_id).map_err(|_| MatrixError::invalid_param("Invalid event id"))?;
    let room_id = storage::federation::room_of_event(&ctx.db()?, event_id)
        .await?
        .ok_or_else(|| MatrixError::not_found("Unknown event"))?;
    let query = FederationQuery::Event {
        event_id: event_id.to_owned(),
    };
    let answer = ask(ctx, origin, &room_id, query).await?;
    Ok(json!({
        "origin": ctx.config.server_name,
        "origin_server_ts": ctx.now_ms(),
        "pdus": [answer["pdu"]],
    }))
}

/// `GET /_matrix/federation/v1/state/{roomId}`
pub async fn state(ctx: &Ctx, req: &HttpRequest, origin: &str, room_id: &str) -> Result<Value, MatrixError> {
    let event_id = event_id_param(req)?;
    ask(ctx, origin, room_id, FederationQuery::State { event_id }).await
}

/// `GET /_matrix/federation/v1/state_ids/{roomId}`
pub async fn state_ids(
    ctx: &Ctx,
    req: &HttpRequest,
    origin: &str,
    room_id: &str,
) -> Result<Value, MatrixError> {
    let event_id = event_id_param(req)?;
    ask(ctx, origin, room_id, FederationQuery::StateIds { event_id }).await
}

/// `GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}`
pub async fn event_auth(
    ctx: &Ctx,
    origin: &str,
    room_id: &str,
    event_id: &str,
) -> Result<Value, MatrixError> {
    ruma::EventId::parse(event_id).map_err(|_| MatrixError::invalid_param("Invalid event id"))?;
    let query = FederationQuery::EventAuth {
        event_id: event_id.to_owned(),
    };
    ask(ctx, origin, room_id, query).await
}

/// `GET /_matrix/federation/v1/backfill/{roomId}`
pub async fn backfill(
    ctx: &Ctx,
    req: &HttpRequest,
    origin: &str,
    room_id: &str,
) -> Result<Value, MatrixError> {
    let from: Vec<String> = req.query_params("v").map(str::to_owned).collect();
    if from.is_empty() {
        return Err(MatrixError::missing_param("v is required"));
    }
    if from.len() > 100 || from.iter().any(|id| ruma::EventId::parse(id).is_err()) {
        return Err(MatrixError::invalid_param("v must name at most 100 event ids"));
    }
    let limit = limit(None, req.query_param("limit"), 10)?;
    let answer = ask(ctx, origin, room_id, FederationQuery::Backfill { from, limit }).await?;
    Ok(json!({
        "origin": ctx.config.server_name,
        "origin_server_ts": ctx.now_ms(),
        "pdus": answer["pdus"],
    }))
}

/// `POST /_matrix/federation/v1/get_missing_events/{roomId}`
pub async fn missing_events(
    ctx: &Ctx,
    req: &HttpRequest,
    origin: &str,
    room_id: &str,
) -> Result<Value, MatrixError> {
    let body = req.json_value()?;
    let ids = |field: &str| -> Result<Vec<String>, MatrixError> {
        let list = body
            .get(field)
            .and_then(Value::as_array)
            .filter(|l| l.len() <= 100)
            .ok_or_else(|| {
                MatrixError::bad_json(format!("{field} must be a list of at most 100 event ids"))
            })?;
        list.iter()
            .map(|v| {
                v.as_str()
                    .filter(|id| ruma::EventId::parse(*id).is_ok())
                    .map(str::to_owned)
                    .ok_or_else(|| MatrixError::bad_json(format!("{field} must hold event ids")))
            })
            .collect()
    };
    let earliest = ids("earliest_events")?;
    let latest = ids("latest_events")?;
    let limit = limit(body.get("limit"), None, 10)?;
    let min_depth = match body.get("min_depth") {
        None => 0,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| MatrixError::bad_json("min_depth must be an integer"))?,
    };
    let query = FederationQuery::MissingEvents {
        earliest,
        latest,
        limit,
        min_depth,
    };
    ask(ctx, origin, room_id, query).await
}
