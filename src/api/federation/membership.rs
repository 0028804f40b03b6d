//! Other servers' users joining and leaving this server's rooms:
//! `GET /_matrix/federation/v1/make_join/{roomId}/{userId}` and
//! `PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}`, and the same pair for
//! leaving (`make_leave`, `send_leave`). The room makes the template (the event it would
//! accept now); the user's server signs it and sends it back; the room inputs it like
//! any received event, and a join is answered with the state before it and its auth
//! chain. Knocks (`make_knock`, `send_knock`) go the same way, answered with the
//! room's stripped state.

use serde_json::{json, Value};

use crate::api::http::HttpRequest;
use crate::api::{restricted, MatrixError};
use crate::platform::{rooms, Ctx};
use crate::roomserver::protocol::{FederationQuery, RoomRequest};

use super::pdus::{input_one, known_room};

fn server_of(user_id: &str) -> Option<&str> {
    <&ruma::UserId>::try_from(user_id)
        .ok()
        .map(|u| u.server_name().as_str())
}

/// The checks before the room is asked: a valid room this server holds, a user of the
/// asking server, a server the room's ACL admits.
async fn admit(ctx: &Ctx, origin: &str, room_id: &str, user_id: &str) -> Result<(), MatrixError> {
    if ruma::RoomId::parse(room_id).is_err() {
        return Err(MatrixError::invalid_param("Invalid room id"));
    }
    if server_of(user_id) != Some(origin) {
        return Err(MatrixError::forbidden("The user is not on the asking server"));
    }
    if !known_room(ctx, room_id).await {
        return Err(MatrixError::not_found("Unknown room"));
    }
    let acl = RoomRequest::ServerAllowed {
        server_name: origin.to_owned(),
    };
    if rooms::call(ctx, room_id, &acl).await?["allowed"] != json!(true) {
        return Err(MatrixError::forbidden("The room's server ACL denies this server"));
    }
    Ok(())
}

/// `GET /_matrix/federation/v1/make_join/{roomId}/{userId}` and `make_leave`
pub async fn make(
    ctx: &Ctx,
    req: &HttpRequest,
    origin: &str,
    (room_id, user_id): (&str, &str),
    membership: &str,
) -> Result<Value, MatrixError> {
    admit(ctx, origin, room_id, user_id).await?;
    // A restricted room's join names the local user who vouches for it.
    let authorised_via = match membership {
        "join" => restricted::authorise(ctx, room_id, user_id).await?.via,
        _ => None,
    };
    let request = RoomRequest::MakeMembership {
        user_id: user_id.to_owned(),
        membership: membership.to_owned(),
        authorised_via,
    };
    let answer = rooms::call(ctx, room_id, &request).await?;
    if membership == "join" || membership == "knock" {
        // The versions the joining server supports (`ver`, repeated; none means "1").
        let supported: Vec<&str> = req.query_params("ver").collect();
        let version = answer["room_version"].as_str().unwrap_or_default();
        if !supported.contains(&version) {
            return Err(MatrixError::new(
                "M_INCOMPATIBLE_ROOM_VERSION",
                "Your server does not support this room's version",
            )
            .with_extra("room_version", json!(version)));
        }
    }
    Ok(answer)
}

/// The event of a `send_join` / `send_leave`, checked against the path and origin.
fn check_event<'a>(
    body: &'a Value,
    origin: &str,
    room_id: &str,
    membership: &str,
) -> Result<&'a str, MatrixError> {
    let field = |name: &str| body.get(name).and_then(Value::as_str);
    if field("type") != Some("m.room.member") || body["content"]["membership"].as_str() != Some(membership) {
        return Err(MatrixError::bad_json(format!(
            "The event must be an m.room.member {membership}"
        )));
    }
    if field("room_id") != Some(room_id) {
        return Err(MatrixError::bad_json("The event is for another room"));
    }
    let sender = field("sender").ok_or_else(|| MatrixError::bad_json("The event has no sender"))?;
    if field("state_key") != Some(sender) {
        return Err(MatrixError::bad_json("The event's state_key must be its sender"));
    }
    if server_of(sender) != Some(origin) {
        return Err(MatrixError::forbidden(
            "The event's sender is not on the sending server",
        ));
    }
    Ok(sender)
}

/// Inputs the event; a refusal is 403, a mismatch with the path 400.
async fn accept(
    ctx: &Ctx,
    origin: &str,
    room_id: &str,
    event_id: &str,
    body: &Value,
) -> Result<(), MatrixError> {
    let result = input_one(ctx, origin, room_id, body).await?;
    if let Some(error) = result["error"].as_str() {
        return Err(MatrixError::forbidden(format!("The event was refused: {error}")));
    }
    if let Some(why) = result["rejected"]
        .as_str()
        .or_else(|| result["soft_failed"].as_str())
    {
        return Err(MatrixError::forbidden(format!("The event is not allowed: {why}")));
    }
    if result.get("accepted").is_none() {
        return Err(MatrixError::bad_json(format!(
            "The event could not be taken: {result}"
        )));
    }
    if result["event_id"].as_str() != Some(event_id) {
        return Err(MatrixError::bad_json("The event's id is not the one in the path"));
    }
    Ok(())
}

/// The `send_join` / `send_leave` steps before the answer: the event checked against
/// the path and origin, the server admitted, the event input. Answers the event.
async fn take_membership(
    ctx: &Ctx,
    req: &HttpRequest,
    origin: &str,
    (room_id, event_id): (&str, &str),
    membership: &str,
) -> Result<Value, MatrixError> {
    let mut body = req.json_value()?;
    let sender = check_event(&body, origin, room_id, membership)?.to_owned();
    admit(ctx, origin, room_id, &sender).await?;
    if membership == "join" {
        vouch(ctx, room_id, &sender, &mut body).await?;
    }
    accept(ctx, origin, room_id, event_id, &body).await?;
    Ok(body)
}

/// A join naming a user of this server as its authoriser (a restricted room's join):
/// the join rules' conditions checked again (a `send_join` need not follow this
/// server's `make_join`), then the event countersigned, as the auth rules require of
/// the authoriser's server. A join naming another server's user is left to the auth
/// rules (which want that server's signature).
async fn vouch(ctx: &Ctx, room_id: &str, sender: &str, body: &mut Value) -> Result<(), MatrixError> {
    let Some(via) = body["content"]["join_authorised_via_users_server"].as_str() else {
        return Ok(());
    };
    if server_of(via) != Some(ctx.config.server_name.as_str()) {
        return Ok(());
    }
    let authorisation = restricted::authorise(ctx, room_id, sender).await?;
    let rules = ruma::RoomVersionId::try_from(authorisation.room_version.as_str())
        .ok()
        .and_then(|v| crate::core::room_version::rules_for(&v))
        .ok_or_else(|| MatrixError::new("M_UNSUPPORTED_ROOM_VERSION", "Unsupported room version"))?;
    let mut object = match ruma::CanonicalJsonValue::try_from(body.clone()) {
        Ok(ruma::CanonicalJsonValue::Object(o)) => o,
        _ => return Err(MatrixError::bad_json("The event is not canonical JSON")),
    };
    let server = &ctx.config.server_name;
    crate::core::event_hash::countersign(&mut object, &rules.redaction, server, &ctx.config.signing_key)
        .map_err(|e| MatrixError::bad_json(format!("The event cannot be signed: {e}")))?;
    *body = serde_json::to_value(object).map_err(|_| MatrixError::internal())?;
    Ok(())
}

/// `PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}`
pub async fn send_join(
    ctx: &Ctx,
    req: &HttpRequest,
    origin: &str,
    (room_id, event_id): (&str, &str),
) -> Result<Value, MatrixError> {
    let body = take_membership(ctx, req, origin, (room_id, event_id), "join").await?;
    let query = RoomRequest::Federation {
        origin: None,
        query: FederationQuery::State {
            event_id: event_id.to_owned(),
        },
    };
    let state = rooms::call(ctx, room_id, &query).await?;
    let mut servers: Vec<String> = vec![ctx.config.server_name.clone()];
    for pdu in state["pdus"].as_array().into_iter().flatten() {
        if pdu["type"] == "m.room.member" && pdu["content"]["membership"] == "join" {
            if let Some(server) = pdu["state_key"].as_str().and_then(server_of) {
                if !servers.iter().any(|s| s == server) {
                    servers.push(server.to_owned());
                }
            }
        }
    }
    Ok(json!({
        "origin": ctx.config.server_name,
        "state": state["pdus"],
        "auth_chain": state["auth_chain"],
        "event": body,
        "members_omitted": false,
        "servers_in_room": servers,
    }))
}

/// `PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}`
pub async fn send_leave(
    ctx: &Ctx,
    req: &HttpRequest,
    origin: &str,
    (room_id, event_id): (&str, &str),
) -> Result<Value, MatrixError> {
    take_membership(ctx, req, origin, (room_id, event_id), "leave").await?;
    Ok(json!({}))
}

/// `PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}`: the knock taken, answered
/// with the room's stripped state for the knocking user.
pub async fn send_knock(
    ctx: &Ctx,
    req: &HttpRequest,
    origin: &str,
    (room_id, event_id): (&str, &str),
) -> Result<Value, MatrixError> {
    let body = take_membership(ctx, req, origin, (room_id, event_id), "knock").await?;
    let user_id = body["sender"].as_str().unwrap_or_default().to_owned();
    let state = rooms::call(ctx, room_id, &RoomRequest::StrippedState { user_id }).await?;
    Ok(json!({ "knock_room_state": state["state"] }))
}
