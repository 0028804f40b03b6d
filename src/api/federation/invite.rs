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

use super::pdus::{event_id_of, gather_keys, input_one, Keys, PduResult};

/// Most invite ends one transaction may carry for rooms this server does not hold.
const MAX_RESCINDS: usize = 10;

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

/// A transaction's PDUs for a room this server does not hold: the end of a local
/// user's invite or knock there (their leave or ban, from the room's server) is taken
/// by the room's Durable Object, which checks it against the kept invite; anything
/// else is refused. The memberships projection is asked first, so a Durable Object is
/// asked only about a room where the user may be invited.
pub async fn rescinds(ctx: &Ctx, origin: &str, room_id: &str, pdus: &[Value]) -> Vec<PduResult> {
    let mut out = Vec::with_capacity(pdus.len());
    let mut asked = 0;
    for pdu in pdus {
        let event_id = event_id_of(pdu, None);
        let refused = |why: &str| PduResult {
            event_id: event_id.clone(),
            error: Some(why.to_owned()),
        };
        let user = pdu["state_key"].as_str().unwrap_or_default();
        let ends = pdu["type"] == "m.room.member"
            && matches!(pdu["content"]["membership"].as_str(), Some("leave" | "ban"))
            && server_of(user) == Some(ctx.config.server_name.as_str());
        if !ends || asked >= MAX_RESCINDS || !invited(ctx, room_id, user).await {
            out.push(refused("This server is not in the room"));
            continue;
        }
        asked += 1;
        let mut keys = Keys::new();
        gather_keys(ctx, std::slice::from_ref(pdu), &mut keys, &mut BTreeMap::new()).await;
        let Ok(raw) = RawPdu::from_value(pdu) else {
            out.push(refused("Not a PDU"));
            continue;
        };
        let request = RoomRequest::RescindInvite {
            pdu: raw,
            keys,
            origin: origin.to_owned(),
        };
        out.push(match rooms::call(ctx, room_id, &request).await {
            Ok(answer) => PduResult {
                event_id: answer["event_id"].as_str().map(str::to_owned).unwrap_or(event_id),
                error: None,
            },
            Err(e) => refused(&e.error),
        });
    }
    out
}

/// Whether the room may hold an invite or knock of `user_id`: the memberships
/// projection says so, or (it lags the room by moments) has no row yet for a user who
/// exists here. A membership it knows of that is neither is no invite to end.
async fn invited(ctx: &Ctx, room_id: &str, user_id: &str) -> bool {
    let Ok(db) = ctx.db() else {
        return false;
    };
    match storage::rooms::membership(&db, room_id, user_id).await {
        Ok(Some(m)) => m == "invite" || m == "knock",
        Ok(None) => storage::users::exists(&db, user_id).await.unwrap_or(false),
        Err(_) => false,
    }
}

fn server_of(user_id: &str) -> Option<&str> {
    <&ruma::UserId>::try_from(user_id)
        .ok()
        .map(|u| u.server_name().as_str())
}
