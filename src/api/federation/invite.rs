//! Invites of this server's users from other servers:
//! `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}`. The room (its Durable Object,
//! whether this server holds the room or not) verifies the invite and countersigns it;
//! a room not held here keeps it with its stripped state for the invitee, who sees it
//! in `/sync` and joins or declines through the inviting server. A room held here takes
//! the countersigned event through the input like any received event.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::platform::{log_error, rooms, Ctx};
use crate::roomserver::protocol::{RawPdu, RoomRequest};
use crate::storage;

use super::pdus::{gather_keys, input_one};

/// `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}`
pub async fn invite(
    ctx: &Ctx,
    req: &HttpRequest,
    origin: &str,
    (room_id, event_id): (&str, &str),
) -> Result<Value, MatrixError> {
    let body = req.json_value()?;
    let version = body["room_version"]
        .as_str()
        .ok_or_else(|| MatrixError::bad_json("room_version is required"))?;
    if crate::core::room_version::parse(version).is_none() {
        return Err(MatrixError::new(
            "M_INCOMPATIBLE_ROOM_VERSION",
            "This server does not support the room's version",
        )
        .with_extra("room_version", json!(version)));
    }
    let event = &body["event"];
    if !event.is_object() {
        return Err(MatrixError::bad_json("event is required"));
    }
    if ruma::RoomId::parse(room_id).is_err() || event["room_id"].as_str() != Some(room_id) {
        return Err(MatrixError::bad_json("The event is for another room"));
    }
    let invitee = event["state_key"].as_str().unwrap_or_default();
    let local =
        <&ruma::UserId>::try_from(invitee).is_ok_and(|u| u.server_name().as_str() == ctx.config.server_name);
    if !local {
        return Err(MatrixError::bad_json("The invitee is not a user of this server"));
    }
    if storage::users::profile(&ctx.db()?, invitee).await?.is_none() {
        return Err(MatrixError::not_found("Unknown user"));
    }
    let invite_state = body["invite_room_state"].as_array().cloned().unwrap_or_default();
    let mut keys = BTreeMap::new();
    let mut tried = BTreeMap::new();
    gather_keys(ctx, std::slice::from_ref(event), &mut keys, &mut tried).await;
    let request = RoomRequest::ReceiveInvite {
        event_id: event_id.to_owned(),
        pdu: RawPdu::from_value(event).map_err(|_| MatrixError::bad_json("event is not JSON"))?,
        room_version: version.to_owned(),
        invite_state,
        keys,
        origin: origin.to_owned(),
    };
    let answer = rooms::call(ctx, room_id, &request).await?;
    let signed = answer["event"].clone();
    if answer["held"] == true {
        // A room held here: the invite goes in like any event from the inviting server.
        match input_one(ctx, origin, room_id, &signed).await {
            Ok(result) if result.get("accepted").is_some() => {}
            Ok(result) => {
                if let Some(why) = result["rejected"].as_str() {
                    return Err(MatrixError::forbidden(format!(
                        "The invite is not allowed: {why}"
                    )));
                }
                log_error(&format!("invite {event_id} into {room_id}: {result}"));
            }
            Err(e) => log_error(&format!("invite {event_id} into {room_id}: {e}")),
        }
    }
    Ok(json!({ "event": signed }))
}
