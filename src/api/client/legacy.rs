//! The legacy Client-Server endpoints the spec still carries: `/initialSync` and a
//! room's `/initialSync` here, the old `/events` stream and `/events/{eventId}` in
//! `events`. Nothing here is stored or new in the rooms: the global ones are reshaped
//! /sync runs (their tokens are sync tokens), the per-room ones are the room's own
//! queries (their tokens are room tokens, `r<pos>`), so every token handed out works
//! with `/messages` and `/events`.

pub mod events;

use std::collections::BTreeMap;

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::api::auth::require_user;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::core::filter::{EventFilter, Filter, RoomFilter};
use crate::platform::{rooms, Ctx};
use crate::roomserver::protocol::{Dir, RoomRequest};
use crate::storage;

use super::membership::valid_room_id;
use super::sync;

/// Timeline length when the request names none (as /sync's default).
const DEFAULT_LIMIT: u32 = 10;
/// Most timeline events per room we answer (the room's own cap for a sync slice).
const MAX_LIMIT: u32 = 100;

fn limit_param(req: &HttpRequest) -> Result<u32, MatrixError> {
    match req.query_param("limit") {
        None | Some("") => Ok(DEFAULT_LIMIT),
        Some(l) => l
            .parse::<u32>()
            .map(|n| n.min(MAX_LIMIT))
            .map_err(|_| MatrixError::invalid_param("Invalid limit")),
    }
}

fn bool_param(req: &HttpRequest, name: &str) -> Result<bool, MatrixError> {
    match req.query_param(name) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(MatrixError::invalid_param(format!(
            "{name} must be true or false"
        ))),
    }
}

/// The event with its `room_id` (sync-format events have none), in the legacy shape.
fn with_room(event: &Value, room_id: &str) -> Value {
    let mut event = legacy_shape(event);
    if let Some(obj) = event.as_object_mut() {
        obj.insert("room_id".into(), json!(room_id));
    }
    event
}

/// An event as the legacy endpoints give it: the sender also as `user_id`, as the old
/// clients these endpoints serve read it.
pub(super) fn legacy_shape(event: &Value) -> Value {
    let mut event = event.clone();
    if let Some(obj) = event.as_object_mut() {
        if let Some(sender) = obj.get("sender").cloned() {
            obj.entry("user_id").or_insert(sender);
        }
    }
    event
}

fn list(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// `r<pos>` → `pos`.
fn room_pos(token: &str) -> Option<i64> {
    token
        .strip_prefix('r')
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n >= 0)
}

fn room_token_of(pos: i64) -> String {
    format!("r{pos}")
}

/// A joined or left room of an initial /sync as `initialSync` shows it: the timeline as
/// `messages` (with `room_id`s), and the state at its end, that is the state before the
/// timeline with the timeline's state events applied.
fn room_info(user_id: &str, room_id: &str, room: &Value, default_membership: &str, end: &Value) -> Value {
    let timeline: Vec<Value> = list(&room["timeline"]["events"])
        .iter()
        .map(|e| with_room(e, room_id))
        .collect();
    let mut state: BTreeMap<(String, String), Value> = BTreeMap::new();
    let before = list(&room["state"]["events"])
        .iter()
        .map(|e| with_room(e, room_id));
    for event in before.chain(timeline.iter().cloned()) {
        if let (Some(kind), Some(key)) = (event["type"].as_str(), event["state_key"].as_str()) {
            state.insert((kind.to_owned(), key.to_owned()), event);
        }
    }
    let membership = state
        .get(&("m.room.member".to_owned(), user_id.to_owned()))
        .and_then(|e| e["content"]["membership"].as_str())
        .unwrap_or(default_membership)
        .to_owned();
    let account_data = match room["account_data"]["events"] {
        Value::Array(ref events) => Value::Array(events.clone()),
        _ => json!([]),
    };
    json!({
        "room_id": room_id,
        "membership": membership,
        "messages": {
            "chunk": timeline,
            "start": room["timeline"]["prev_batch"],
            "end": end,
        },
        "state": state.into_values().collect::<Vec<Value>>(),
        "account_data": account_data,
    })
}

/// An invited room: the invite (the user's member event among the stripped state).
fn invite_info(user_id: &str, room_id: &str, room: &Value) -> Value {
    let invite = list(&room["invite_state"]["events"])
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == user_id)
        .map(|e| with_room(e, room_id));
    json!({
        "room_id": room_id,
        "membership": "invite",
        "invite": invite,
        "account_data": [],
    })
}

/// `GET /_matrix/client/v3/initialSync`
pub async fn initial_sync(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let limit = limit_param(req)?;
    let archived = bool_param(req, "archived")?;
    let filter = Filter {
        room: RoomFilter {
            include_leave: archived,
            timeline: EventFilter {
                limit: Some(limit),
                ..EventFilter::default()
            },
            ..RoomFilter::default()
        },
        ..Filter::default()
    };
    let body = sync::run_for(ctx, &session, None, 0, filter).await?;
    let end = body["next_batch"].clone();
    let user_id = session.user_id.as_str();
    let mut rooms = Vec::new();
    for (section, membership) in [("join", "join"), ("leave", "leave")] {
        if let Some(map) = body["rooms"][section].as_object() {
            for (room_id, room) in map {
                rooms.push(room_info(user_id, room_id, room, membership, &end));
            }
        }
    }
    if let Some(map) = body["rooms"]["invite"].as_object() {
        for (room_id, room) in map {
            rooms.push(invite_info(user_id, room_id, room));
        }
    }
    // Each room's directory visibility, from D1, at once.
    let db = ctx.db()?;
    let public = join_all(rooms.iter().map(|r| {
        let room_id = r["room_id"].as_str().unwrap_or_default().to_owned();
        let db = &db;
        async move { storage::rooms::is_public(db, &room_id).await }
    }))
    .await;
    for (room, public) in rooms.iter_mut().zip(public) {
        room["visibility"] = json!(if public? { "public" } else { "private" });
    }
    // The joined rooms' read receipts, each with its room id.
    let mut receipts = Vec::new();
    if let Some(map) = body["rooms"]["join"].as_object() {
        for (room_id, room) in map {
            for e in room["ephemeral"]["events"].as_array().into_iter().flatten() {
                if e["type"] == "m.receipt" {
                    receipts.push(with_room(e, room_id));
                }
            }
        }
    }
    Ok(json!({
        "end": end,
        "rooms": rooms,
        "receipts": receipts,
        "presence": with_user_ids(&body["presence"]["events"]),
        "account_data": body["account_data"]["events"],
    }))
}

/// Presence events as the legacy endpoints give them: the user id in the content too.
pub(super) fn with_user_ids(events: &Value) -> Value {
    let mut events = events.clone();
    if let Some(list) = events.as_array_mut() {
        for e in list.iter_mut().filter(|e| e["type"] == "m.presence") {
            let sender = e["sender"].clone();
            e["content"]["user_id"] = sender;
        }
    }
    events
}

/// The room's summary for `user_id`, which says their membership and whether the room
/// is world-readable. A room the server does not know is refused like one the user may
/// not see.
async fn summary(ctx: &Ctx, user_id: &str, room_id: &str) -> Result<Value, MatrixError> {
    let request = RoomRequest::Summary {
        user_id: user_id.to_owned(),
    };
    match rooms::call(ctx, room_id, &request).await {
        Err(e) if e.status() == 404 => Err(MatrixError::forbidden("You cannot see this room")),
        other => other,
    }
}

/// `GET /_matrix/client/v3/rooms/{roomId}/initialSync`
pub async fn room_initial_sync(ctx: &Ctx, req: &HttpRequest, room_id: &str) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    valid_room_id(room_id)?;
    let limit = limit_param(req)?;
    let user_id = session.user_id.as_str();
    let summary = summary(ctx, user_id, room_id).await?;
    let membership = summary["membership"].as_str().map(str::to_owned);
    let world_readable = summary["world_readable"] == true;
    let joined = membership.as_deref() == Some("join");
    let was_member = matches!(membership.as_deref(), Some("join" | "leave" | "ban"));
    if !was_member && !world_readable {
        return Err(MatrixError::forbidden("You are not a member of this room"));
    }
    // The newest page and the state (the room decides what a former member still sees),
    // the directory visibility, account data and the members' presence, concurrently.
    let page_request = RoomRequest::Messages {
        user_id: user_id.to_owned(),
        from: None,
        to: None,
        dir: Dir::Backward,
        limit: limit.max(1),
        filter: None,
    };
    let state_request = RoomRequest::State {
        user_id: user_id.to_owned(),
    };
    let page = rooms::call(ctx, room_id, &page_request);
    let state = rooms::call(ctx, room_id, &state_request);
    let db = ctx.db()?;
    let presence = async {
        if joined {
            storage::presence::of_members(&db, &[room_id.to_owned()], "").await
        } else {
            Ok(Vec::new())
        }
    };
    let (page, state, public, account, presence) = futures_util::future::join5(
        page,
        state,
        storage::rooms::is_public(&db, room_id),
        storage::account_data::of_room(&db, user_id, room_id),
        presence,
    )
    .await;
    let (page, state) = (page?, state?);
    let mut chunk: Vec<Value> = list(&page["chunk"]).iter().map(legacy_shape).collect();
    chunk.truncate(limit as usize);
    chunk.reverse();
    let end = page["start"].clone();
    let start = if limit == 0 {
        end.clone()
    } else {
        match &page["end"] {
            Value::String(s) => json!(s),
            _ => json!(room_token_of(0)),
        }
    };
    let account_data: Vec<Value> = account?
        .into_iter()
        .map(|e| {
            let content: Value = serde_json::from_str(&e.content).unwrap_or_else(|_| json!({}));
            json!({ "type": e.kind, "content": content })
        })
        .collect();
    let now = ctx.now_ms();
    // Every joined member's presence; one who never set any is offline.
    let presence: Vec<Value> = presence?
        .into_iter()
        .map(|m| {
            let content: Value = m
                .content
                .as_deref()
                .and_then(|c| serde_json::from_str(c).ok())
                .unwrap_or_else(|| json!({}));
            crate::sync::stream::presence_event(&m.user_id, &content, now)
        })
        .collect();
    let state: Vec<Value> = list(&state).iter().map(legacy_shape).collect();
    let presence = with_user_ids(&Value::Array(presence));
    let mut body = json!({
        "room_id": room_id,
        "messages": { "chunk": chunk, "start": start, "end": end },
        "state": state,
        "presence": presence,
        // Receipts are not part of a room's initial sync (the global one has them).
        "receipts": [],
        "account_data": account_data,
        "visibility": if public? { "public" } else { "private" },
    });
    if let Some(m) = membership {
        body["membership"] = json!(m);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client-format event for the reshaping tests (also `legacy/events.rs`'s).
    pub(in crate::api::client::legacy) fn ev(kind: &str, key: Option<&str>, content: Value) -> Value {
        let mut e =
            json!({ "type": kind, "sender": "@a:hs", "event_id": format!("${kind}"), "content": content });
        if let Some(k) = key {
            e["state_key"] = json!(k);
        }
        e
    }

    #[test]
    fn room_info_applies_the_timeline_to_the_state_before_it() {
        let room = json!({
            "timeline": {
                "events": [
                    ev("m.room.message", None, json!({"body": "hi"})),
                    ev("m.room.name", Some(""), json!({"name": "new"})),
                ],
                "prev_batch": "r3",
            },
            "state": { "events": [
                ev("m.room.name", Some(""), json!({"name": "old"})),
                ev("m.room.member", Some("@a:hs"), json!({"membership": "ban"})),
            ] },
        });
        let info = room_info("@a:hs", "!r:hs", &room, "leave", &json!("s1_0_0_0"));
        assert_eq!(info["membership"], "ban");
        assert_eq!(info["messages"]["start"], "r3");
        assert_eq!(info["messages"]["end"], "s1_0_0_0");
        assert_eq!(info["messages"]["chunk"][0]["room_id"], "!r:hs");
        let state = info["state"].as_array().expect("state");
        assert_eq!(state.len(), 2);
        let name = state.iter().find(|e| e["type"] == "m.room.name").expect("name");
        assert_eq!(name["content"]["name"], "new");
        assert!(state.iter().all(|e| e["room_id"] == "!r:hs"));
        assert_eq!(info["account_data"], json!([]));
    }

    #[test]
    fn room_tokens_parse() {
        assert_eq!(room_pos("r12"), Some(12));
        assert_eq!(room_pos(&room_token_of(7)), Some(7));
        for bad in ["", "r", "r-1", "s1_2_3", "12", "rx"] {
            assert_eq!(room_pos(bad), None, "{bad}");
        }
    }
}
