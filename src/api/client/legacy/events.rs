//! The old event stream: `GET /events` (the user's rooms as /sync runs from a sync
//! token, or one room, also peeked when world-readable, as the room's forward pages
//! from a room token) and `GET /events/{eventId}`.

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::api::auth::{require_user, Session};
use crate::api::client::membership::valid_room_id;
use crate::api::client::room_events::room_token;
use crate::api::client::sync::{self, MAX_TIMEOUT_MS};
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::core::filter::{EventFilter, Filter, RoomFilter};
use crate::platform::{rooms, Ctx};
use crate::roomserver::protocol::{Dir, RoomRequest};
use crate::storage;
use crate::sync::token::SyncToken;

use super::{invite_info, list, room_pos, room_token_of, summary, with_room};

/// `/events` waits this long when the request names no timeout (as other servers do).
const DEFAULT_EVENTS_TIMEOUT_MS: u64 = 30_000;
/// Events per room per `/events` answer.
const STREAM_PAGE: u32 = 100;
/// How often a peeking `/events` asks the room whether something new arrived.
const PEEK_POLL_MS: u64 = 300;
/// Most sync runs one `/events` long-poll makes (each waits; this bounds a loop over
/// answers that carry nothing to show).
const MAX_STREAM_ROUNDS: usize = 20;
/// Rooms asked at once when looking for an event by id.
const EVENT_LOOKUP_FANOUT: usize = 8;

fn timeout_param(req: &HttpRequest) -> Result<u64, MatrixError> {
    match req.query_param("timeout") {
        None | Some("") => Ok(DEFAULT_EVENTS_TIMEOUT_MS),
        Some(t) => t
            .parse::<u64>()
            .map(|n| n.min(MAX_TIMEOUT_MS))
            .map_err(|_| MatrixError::invalid_param("Invalid timeout")),
    }
}

/// What the stream shows of a /sync answer: the rooms' new timeline events and
/// ephemeral events, invites (the user's), and presence, each event with its `room_id`.
fn stream_events(user_id: &str, body: &Value) -> Vec<Value> {
    let mut chunk = Vec::new();
    for section in ["join", "leave"] {
        if let Some(map) = body["rooms"][section].as_object() {
            for (room_id, room) in map {
                let timeline = list(&room["timeline"]["events"]).iter();
                let ephemeral = list(&room["ephemeral"]["events"]).iter();
                chunk.extend(timeline.chain(ephemeral).map(|e| with_room(e, room_id)));
            }
        }
    }
    if let Some(map) = body["rooms"]["invite"].as_object() {
        for (room_id, room) in map {
            if let Some(invite) = invite_info(user_id, room_id, room)["invite"].as_object() {
                chunk.push(Value::Object(invite.clone()));
            }
        }
    }
    chunk.extend(
        list(&super::with_user_ids(&body["presence"]["events"]))
            .iter()
            .cloned(),
    );
    chunk
}

/// The user's current sync position: a sync run that asks for nothing.
async fn current_token(ctx: &Ctx, session: &Session) -> Result<SyncToken, MatrixError> {
    let nothing = EventFilter {
        types: Some(Vec::new()),
        ..EventFilter::default()
    };
    let filter = Filter {
        account_data: nothing.clone(),
        presence: nothing,
        room: RoomFilter {
            rooms: Some(Vec::new()),
            ..RoomFilter::default()
        },
        ..Filter::default()
    };
    let body = sync::run_for(ctx, session, None, 0, filter).await?;
    body["next_batch"]
        .as_str()
        .and_then(SyncToken::decode)
        .ok_or_else(|| crate::api::error::internal("sync answered no next_batch"))
}

/// `GET /_matrix/client/v3/events`
pub async fn stream(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let timeout_ms = timeout_param(req)?;
    let from = req.query_param("from").filter(|f| !f.is_empty());
    match req.query_param("room_id") {
        Some(room_id) => room_stream(ctx, &session, room_id, from, timeout_ms).await,
        // Guests follow the rooms they look at, one at a time; not an event stream of
        // their own.
        None if session.is_guest => Err(MatrixError::new(
            "M_GUEST_ACCESS_FORBIDDEN",
            "Guests must name the room they follow (room_id)",
        )),
        None => user_stream(ctx, &session, from, timeout_ms).await,
    }
}

/// The user's rooms: /sync runs from the token until one carries something to show or
/// the time is up.
async fn user_stream(
    ctx: &Ctx,
    session: &Session,
    from: Option<&str>,
    timeout_ms: u64,
) -> Result<Value, MatrixError> {
    let start = match from {
        Some(t) => SyncToken::decode(t).ok_or_else(|| MatrixError::invalid_param("Invalid from token"))?,
        None => current_token(ctx, session).await?,
    };
    let filter = Filter {
        room: RoomFilter {
            timeline: EventFilter {
                limit: Some(STREAM_PAGE),
                ..EventFilter::default()
            },
            ..RoomFilter::default()
        },
        ..Filter::default()
    };
    let deadline = ctx.now_ms().saturating_add(timeout_ms);
    let mut token = start;
    let mut chunk = Vec::new();
    for _ in 0..MAX_STREAM_ROUNDS {
        let wait = deadline.saturating_sub(ctx.now_ms());
        let body = sync::run_for(ctx, session, Some(token), wait, filter.clone()).await?;
        let before = token;
        if let Some(next) = body["next_batch"].as_str().and_then(SyncToken::decode) {
            token = token.max(next);
        }
        chunk = stream_events(&session.user_id, &body);
        if !chunk.is_empty() || token == before || ctx.now_ms() >= deadline {
            break;
        }
    }
    Ok(json!({
        "chunk": chunk,
        "start": from.map_or_else(|| start.encode(), str::to_owned),
        "end": token.encode(),
    }))
}

/// One room, for a member or a peeker of a world-readable room: the room's forward
/// pages from the token, asked again every `PEEK_POLL_MS` until something arrives or
/// the time is up. Tokens are room tokens (a sync token is read as the room position
/// the user's stream had reached).
async fn room_stream(
    ctx: &Ctx,
    session: &Session,
    room_id: &str,
    from: Option<&str>,
    timeout_ms: u64,
) -> Result<Value, MatrixError> {
    valid_room_id(room_id)?;
    let user_id = session.user_id.as_str();
    let summary = summary(ctx, user_id, room_id).await?;
    if summary["membership"] != "join" && summary["world_readable"] != true {
        return Err(MatrixError::forbidden(
            "You are not a member of this room and it is not world-readable",
        ));
    }
    let messages = |from: Option<String>, to: Option<String>, dir: Dir, limit: u32| RoomRequest::Messages {
        user_id: user_id.to_owned(),
        from,
        to,
        dir,
        limit,
        filter: None,
    };
    // The room's latest position, as the start of an empty backward page.
    let head = || async {
        let answer = rooms::call(ctx, room_id, &messages(None, None, Dir::Backward, 1)).await?;
        answer["start"]
            .as_str()
            .and_then(room_pos)
            .ok_or_else(|| crate::api::error::internal("room answered no start token"))
    };
    let mut pos = match room_token(ctx, user_id, room_id, from).await? {
        Some(t) => room_pos(&t).ok_or_else(|| MatrixError::invalid_param("Invalid from token"))?,
        None => head().await?,
    };
    let start = from.map_or_else(|| room_token_of(pos), str::to_owned);
    let deadline = ctx.now_ms().saturating_add(timeout_ms);
    loop {
        let latest = head().await?;
        if latest > pos {
            let request = messages(
                Some(room_token_of(pos)),
                Some(room_token_of(latest)),
                Dir::Forward,
                STREAM_PAGE,
            );
            let page = rooms::call(ctx, room_id, &request).await?;
            pos = page["end"]
                .as_str()
                .and_then(room_pos)
                .unwrap_or(latest)
                .max(pos + 1);
            let chunk = list(&page["chunk"]);
            if !chunk.is_empty() {
                return Ok(json!({ "chunk": chunk, "start": start, "end": room_token_of(pos) }));
            }
            continue;
        }
        let left = deadline.saturating_sub(ctx.now_ms());
        if left == 0 {
            return Ok(json!({ "chunk": [], "start": start, "end": room_token_of(pos) }));
        }
        crate::platform::sleep(left.min(PEEK_POLL_MS)).await;
    }
}

/// `GET /_matrix/client/v3/events/{eventId}`
pub async fn event(ctx: &Ctx, req: &HttpRequest, event_id: &str) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    <&ruma::EventId>::try_from(event_id).map_err(|_| MatrixError::invalid_param("Invalid event id"))?;
    // The edge does not know the event's room: ask the user's joined rooms, a few at a
    // time, until one has it.
    let room_ids = storage::rooms::joined_rooms(&ctx.db()?, &session.user_id).await?;
    let request = RoomRequest::Event {
        user_id: session.user_id.clone(),
        event_id: event_id.to_owned(),
    };
    let mut failure = None;
    for batch in room_ids.chunks(EVENT_LOOKUP_FANOUT) {
        let answers = join_all(batch.iter().map(|room_id| rooms::call(ctx, room_id, &request))).await;
        for answer in answers {
            match answer {
                Ok(event) => return Ok(event),
                Err(e) if e.status() >= 500 => failure = Some(e),
                Err(_) => {}
            }
        }
    }
    Err(failure.unwrap_or_else(|| MatrixError::not_found("Event not found")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::ev;
    use super::*;

    #[test]
    fn the_stream_flattens_rooms_invites_and_presence() {
        let body = json!({
            "rooms": {
                "join": { "!j:hs": {
                    "timeline": { "events": [ev("m.room.message", None, json!({}))] },
                    "ephemeral": { "events": [{ "type": "m.typing", "content": { "user_ids": [] } }] },
                } },
                "leave": { "!l:hs": {
                    "timeline": { "events": [ev("m.room.member", Some("@a:hs"), json!({"membership": "leave"}))] },
                } },
                "invite": { "!i:hs": { "invite_state": { "events": [
                    ev("m.room.name", Some(""), json!({})),
                    ev("m.room.member", Some("@a:hs"), json!({"membership": "invite"})),
                ] } } },
            },
            "presence": { "events": [{ "type": "m.presence", "sender": "@b:hs", "content": {} }] },
        });
        let chunk = stream_events("@a:hs", &body);
        let rooms: Vec<&str> = chunk
            .iter()
            .map(|e| e["room_id"].as_str().unwrap_or("-"))
            .collect();
        assert_eq!(rooms, ["!j:hs", "!j:hs", "!l:hs", "!i:hs", "-"]);
        assert_eq!(chunk[3]["content"]["membership"], "invite");
        assert_eq!(chunk[4]["type"], "m.presence");
    }
}
