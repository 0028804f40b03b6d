//! Sending and reading room events: send, state, redact, messages, context, single
//! events and member lists. The room decides; these handlers authenticate, validate
//! the request's shape, and translate.

use serde_json::{json, Value};

use crate::api::auth::require_user;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::platform::{rooms, users, Ctx};
use crate::roomserver::protocol::{Dir, EventSpec, RoomRequest};
use crate::sync::protocol::UserRequest;
use crate::sync::token::SyncToken;

use super::membership::{project_sent, valid_room_id};

/// Longest event type / state key we accept, in bytes (the PDU format's limit).
const MAX_ID_FIELD: usize = 255;

fn check_type(event_type: &str) -> Result<(), MatrixError> {
    if event_type.is_empty() || event_type.len() > MAX_ID_FIELD {
        return Err(MatrixError::invalid_param("Invalid event type"));
    }
    Ok(())
}

fn content_of(req: &HttpRequest) -> Result<Value, MatrixError> {
    let content = req.json_value()?;
    if !content.is_object() {
        return Err(MatrixError::bad_json("Event content must be a JSON object"));
    }
    Ok(content)
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}`, and the older
/// `POST /_matrix/client/v3/rooms/{roomId}/send/{eventType}` without a transaction id
/// (not idempotent: each request is a new event).
pub async fn send(
    ctx: &Ctx,
    req: &HttpRequest,
    room_id: &str,
    event_type: &str,
    txn_id: Option<&str>,
) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    ctx.mark("auth");
    valid_room_id(room_id)?;
    check_type(event_type)?;
    // Guests send messages (encrypted ones included), nothing else.
    if session.is_guest && event_type != "m.room.message" && event_type != "m.room.encrypted" {
        return Err(MatrixError::new(
            "M_GUEST_ACCESS_FORBIDDEN",
            "Guests may only send messages",
        ));
    }
    let content = content_of(req)?;
    let request = RoomRequest::Send {
        sender: session.user_id.clone(),
        device_id: Some(session.device_id.clone()),
        txn_id: txn_id.map(str::to_owned),
        event: EventSpec {
            event_type: event_type.to_owned(),
            state_key: None,
            content,
            redacts: None,
        },
    };
    let answer = rooms::call(ctx, room_id, &request).await?;
    ctx.mark("room");
    Ok(json!({ "event_id": answer["event_id"] }))
}

/// The aliases an `m.room.canonical_alias` names must be valid and point to the room
/// (400 `M_BAD_ALIAS` otherwise).
async fn check_canonical_alias(ctx: &Ctx, room_id: &str, content: &Value) -> Result<(), MatrixError> {
    let mut aliases = Vec::new();
    match content.get("alias") {
        None | Some(Value::Null) => {}
        Some(Value::String(a)) => aliases.push(a.clone()),
        Some(_) => return Err(MatrixError::bad_json("alias must be a string")),
    }
    match content.get("alt_aliases") {
        None => {}
        Some(Value::Array(list)) => {
            for a in list {
                let a = a
                    .as_str()
                    .ok_or_else(|| MatrixError::bad_json("alt_aliases must be strings"))?;
                aliases.push(a.to_owned());
            }
        }
        Some(_) => return Err(MatrixError::bad_json("alt_aliases must be a list")),
    }
    let db = ctx.db()?;
    for alias in aliases {
        let bad = || MatrixError::new("M_BAD_ALIAS", format!("{alias} does not point to this room"));
        ruma::RoomAliasId::parse(&alias).map_err(|_| MatrixError::invalid_param("Invalid room alias"))?;
        match crate::storage::rooms::resolve_alias(&db, &alias).await? {
            Some(r) if r == room_id => {}
            _ => return Err(bad()),
        }
    }
    Ok(())
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`
pub async fn put_state(
    ctx: &Ctx,
    req: &HttpRequest,
    room_id: &str,
    event_type: &str,
    state_key: &str,
) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    valid_room_id(room_id)?;
    check_type(event_type)?;
    if state_key.len() > MAX_ID_FIELD {
        return Err(MatrixError::invalid_param("State key too long"));
    }
    let content = content_of(req)?;
    if event_type == "m.room.canonical_alias" {
        check_canonical_alias(ctx, room_id, &content).await?;
    }
    let membership = content["membership"].as_str().unwrap_or_default().to_owned();
    let request = RoomRequest::Send {
        sender: session.user_id.clone(),
        device_id: None,
        txn_id: None,
        event: EventSpec::state(event_type, state_key, content),
    };
    let answer = rooms::call(ctx, room_id, &request).await?;
    if event_type == "m.room.member" {
        project_sent(ctx, room_id, state_key, &membership, &answer).await?;
    }
    if event_type == "m.room.guest_access" && state_key.is_empty() && guests_revoked(&answer, req) {
        super::membership::remove_guests(ctx, room_id, &session.user_id).await;
    }
    Ok(json!({ "event_id": answer["event_id"] }))
}

/// Whether a guest access event just sent closes the room to guests.
fn guests_revoked(answer: &Value, req: &HttpRequest) -> bool {
    answer["event_id"].is_string()
        && req
            .json_value()
            .is_ok_and(|c| c["guest_access"].as_str() != Some("can_join"))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`
pub async fn get_state(
    ctx: &Ctx,
    req: &HttpRequest,
    room_id: &str,
    event_type: &str,
    state_key: &str,
) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    valid_room_id(room_id)?;
    let whole_event = match req.query_param("format") {
        None | Some("content") => false,
        Some("event") => true,
        Some(_) => return Err(MatrixError::invalid_param("format must be content or event")),
    };
    let request = RoomRequest::StateEvent {
        user_id: session.user_id,
        event_type: event_type.to_owned(),
        state_key: state_key.to_owned(),
        whole_event,
    };
    rooms::call(ctx, room_id, &request).await
}

/// `GET /_matrix/client/v3/rooms/{roomId}/state`
pub async fn all_state(ctx: &Ctx, req: &HttpRequest, room_id: &str) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    valid_room_id(room_id)?;
    rooms::call(
        ctx,
        room_id,
        &RoomRequest::State {
            user_id: session.user_id,
        },
    )
    .await
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}`
pub async fn redact(
    ctx: &Ctx,
    req: &HttpRequest,
    room_id: &str,
    event_id: &str,
    txn_id: &str,
) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    valid_room_id(room_id)?;
    <&ruma::EventId>::try_from(event_id).map_err(|_| MatrixError::invalid_param("Invalid event id"))?;
    let mut content = if req.body.is_empty() {
        json!({})
    } else {
        content_of(req)?
    };
    if let Some(obj) = content.as_object_mut() {
        obj.retain(|k, _| k == "reason");
    }
    let request = RoomRequest::Send {
        sender: session.user_id.clone(),
        device_id: Some(session.device_id.clone()),
        txn_id: Some(format!("redact:{txn_id}")),
        event: EventSpec {
            event_type: "m.room.redaction".into(),
            state_key: None,
            content,
            redacts: Some(event_id.to_owned()),
        },
    };
    let answer = rooms::call(ctx, room_id, &request).await?;
    Ok(json!({ "event_id": answer["event_id"] }))
}

/// A position token as the room reads it. Room tokens (`r<pos>`, from `/messages`,
/// `/context` and a timeline's `prev_batch`) pass unchanged; a sync token (`next_batch`)
/// becomes the room position the user's stream had reached at that token, so every
/// token the server hands out works wherever a position is asked for. A room the
/// user's stream did not know then (a peek into a world-readable room) reads as no
/// position: the room's latest.
pub(super) async fn room_token(
    ctx: &Ctx,
    user_id: &str,
    room_id: &str,
    token: Option<&str>,
) -> Result<Option<String>, MatrixError> {
    let Some(token) = token else {
        return Ok(None);
    };
    if !token.starts_with('s') {
        return Ok(Some(token.to_owned()));
    }
    let sync =
        SyncToken::decode(token).ok_or_else(|| MatrixError::invalid_param("Invalid pagination token"))?;
    let request = UserRequest::RoomPosition {
        room_id: room_id.to_owned(),
        stream: sync.stream,
    };
    let answer = users::call(&ctx.env, user_id, &request).await?;
    Ok(answer["room_pos"].as_i64().map(|pos| format!("r{pos}")))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/messages`
pub async fn messages(ctx: &Ctx, req: &HttpRequest, room_id: &str) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    valid_room_id(room_id)?;
    let dir = match req.query_param("dir") {
        Some("b") | None => Dir::Backward,
        Some("f") => Dir::Forward,
        Some(_) => return Err(MatrixError::invalid_param("dir must be b or f")),
    };
    let limit = match req.query_param("limit") {
        Some(l) => l
            .parse::<u32>()
            .map_err(|_| MatrixError::invalid_param("Invalid limit"))?,
        None => 10,
    };
    let filter = match req.query_param("filter") {
        Some(f) => {
            Some(serde_json::from_str::<Value>(f).map_err(|_| MatrixError::invalid_param("Invalid filter"))?)
        }
        None => None,
    };
    let (from, to) = futures_util::future::join(
        room_token(ctx, &session.user_id, room_id, req.query_param("from")),
        room_token(ctx, &session.user_id, room_id, req.query_param("to")),
    )
    .await;
    let (from, to) = (from?, to?);
    let request = RoomRequest::Messages {
        user_id: session.user_id.clone(),
        from,
        to,
        dir,
        limit,
        filter,
    };
    let answer = rooms::call(ctx, room_id, &request).await?;
    // Paged back past what this server has: other servers are asked for the history,
    // and the page is read again with it.
    let history_from = super::remote_history::history_from(&answer);
    if !history_from.is_empty() && super::remote_history::fetch(ctx, room_id, &history_from, limit).await {
        return Ok(super::remote_history::strip(
            rooms::call(ctx, room_id, &request).await?,
        ));
    }
    Ok(super::remote_history::strip(answer))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}`
pub async fn context(
    ctx: &Ctx,
    req: &HttpRequest,
    room_id: &str,
    event_id: &str,
) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    valid_room_id(room_id)?;
    let limit = match req.query_param("limit") {
        Some(l) => l
            .parse::<u32>()
            .map_err(|_| MatrixError::invalid_param("Invalid limit"))?,
        None => 10,
    };
    let filter = match req.query_param("filter") {
        Some(f) => {
            Some(serde_json::from_str::<Value>(f).map_err(|_| MatrixError::invalid_param("Invalid filter"))?)
        }
        None => None,
    };
    let request = RoomRequest::Context {
        user_id: session.user_id,
        event_id: event_id.to_owned(),
        limit,
        filter,
    };
    rooms::call(ctx, room_id, &request).await
}

/// `GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}`
pub async fn event(
    ctx: &Ctx,
    req: &HttpRequest,
    room_id: &str,
    event_id: &str,
) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    valid_room_id(room_id)?;
    let request = RoomRequest::Event {
        user_id: session.user_id,
        event_id: event_id.to_owned(),
    };
    rooms::call(ctx, room_id, &request).await
}

/// `GET /_matrix/client/v3/rooms/{roomId}/members`
pub async fn members(ctx: &Ctx, req: &HttpRequest, room_id: &str) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    valid_room_id(room_id)?;
    let membership_param = |name: &str| -> Result<Option<String>, MatrixError> {
        match req.query_param(name) {
            None => Ok(None),
            Some(m @ ("join" | "invite" | "knock" | "leave" | "ban")) => Ok(Some(m.to_owned())),
            Some(_) => Err(MatrixError::invalid_param(format!("Invalid {name}"))),
        }
    };
    let at = room_token(ctx, &session.user_id, room_id, req.query_param("at")).await?;
    let request = RoomRequest::Members {
        user_id: session.user_id,
        at,
        membership: membership_param("membership")?,
        not_membership: membership_param("not_membership")?,
    };
    rooms::call(ctx, room_id, &request).await
}

/// `GET /_matrix/client/v3/rooms/{roomId}/joined_members`
pub async fn joined_members(ctx: &Ctx, req: &HttpRequest, room_id: &str) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    valid_room_id(room_id)?;
    rooms::call(
        ctx,
        room_id,
        &RoomRequest::JoinedMembers {
            user_id: session.user_id,
        },
    )
    .await
}
