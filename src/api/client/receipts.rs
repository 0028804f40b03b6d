//! Typing notifications, read receipts and read markers. Typing and receipts live in
//! the Room Durable Object, which wakes the members' streams; `m.fully_read` is room
//! account data.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::auth::require_user;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::platform::{rooms, users, Ctx};
use crate::roomserver::protocol::RoomRequest;
use crate::storage::account_data;
use crate::sync::protocol::{Note, NoteKind, UserRequest};

use super::membership::valid_room_id;

#[derive(Deserialize)]
struct TypingBody {
    typing: bool,
    #[serde(default)]
    timeout: Option<u64>,
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}`
pub async fn typing(
    ctx: &Ctx,
    req: &HttpRequest,
    room_id: &str,
    user_id: &str,
) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    valid_room_id(room_id)?;
    if session.user_id != user_id {
        return Err(MatrixError::forbidden("Cannot set another user's typing state"));
    }
    let body: TypingBody = req.json()?;
    let timeout_ms = body.timeout.unwrap_or(30_000);
    let request = RoomRequest::Typing {
        user_id: session.user_id.clone(),
        typing: body.typing,
        timeout_ms,
    };
    rooms::call(ctx, room_id, &request).await?;
    let edu = json!({"edu_type": "m.typing", "content": {
        "room_id": room_id, "user_id": session.user_id, "typing": body.typing, "timeout": timeout_ms,
    }});
    crate::federation::sender::send_room_edu(ctx, room_id, edu).await;
    Ok(json!({}))
}

#[derive(Deserialize, Default)]
struct ReceiptBody {
    #[serde(default)]
    thread_id: Option<String>,
}

fn check_event_id(event_id: &str) -> Result<(), MatrixError> {
    <&ruma::EventId>::try_from(event_id)
        .map(|_| ())
        .map_err(|_| MatrixError::invalid_param("Invalid event id"))
}

/// Sets `m.fully_read` (room account data) and wakes the user's stream.
async fn fully_read(ctx: &Ctx, user_id: &str, room_id: &str, event_id: &str) -> Result<(), MatrixError> {
    let content = json!({ "event_id": event_id }).to_string();
    let pos = account_data::put(&ctx.db()?, user_id, Some(room_id), "m.fully_read", &content).await?;
    notify_account_data(ctx, user_id, pos).await
}

/// Wakes the user's stream after an account-data write at stream id `pos`.
pub async fn notify_account_data(ctx: &Ctx, user_id: &str, pos: i64) -> Result<(), MatrixError> {
    let note = Note {
        room_id: String::new(),
        kind: NoteKind::AccountData,
        pos,
        membership: None,
        content: None,
    };
    users::call(&ctx.env, user_id, &UserRequest::Notify { notes: vec![note] }).await?;
    Ok(())
}

async fn receipt_of(
    ctx: &Ctx,
    user_id: &str,
    room_id: &str,
    receipt_type: &str,
    event_id: &str,
    thread_id: Option<String>,
) -> Result<(), MatrixError> {
    match receipt_type {
        "m.fully_read" => fully_read(ctx, user_id, room_id, event_id).await,
        "m.read" | "m.read.private" => {
            if thread_id.as_deref().is_some_and(str::is_empty) {
                return Err(MatrixError::invalid_param("thread_id must not be empty"));
            }
            let request = RoomRequest::Receipt {
                user_id: user_id.to_owned(),
                receipt_type: receipt_type.to_owned(),
                event_id: event_id.to_owned(),
                thread_id: thread_id.clone(),
            };
            let answer = rooms::call(ctx, room_id, &request).await?;
            // Public receipts that moved go to the room's other servers too.
            if receipt_type == "m.read" && answer["moved"] == true {
                let mut data = json!({ "ts": ctx.now_ms() });
                if let Some(thread) = thread_id {
                    data["thread_id"] = json!(thread);
                }
                let edu = json!({"edu_type": "m.receipt", "content": {
                    room_id: {"m.read": {user_id: {"event_ids": [event_id], "data": data}}},
                }});
                crate::federation::sender::send_room_edu(ctx, room_id, edu).await;
            }
            Ok(())
        }
        _ => Err(MatrixError::invalid_param("Unknown receipt type")),
    }
}

/// `POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}`
pub async fn receipt(
    ctx: &Ctx,
    req: &HttpRequest,
    room_id: &str,
    receipt_type: &str,
    event_id: &str,
) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    valid_room_id(room_id)?;
    check_event_id(event_id)?;
    let body: ReceiptBody = req.json()?;
    receipt_of(
        ctx,
        &session.user_id,
        room_id,
        receipt_type,
        event_id,
        body.thread_id,
    )
    .await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
struct MarkersBody {
    #[serde(default, rename = "m.fully_read")]
    fully_read: Option<String>,
    #[serde(default, rename = "m.read")]
    read: Option<String>,
    #[serde(default, rename = "m.read.private")]
    read_private: Option<String>,
}

/// `POST /_matrix/client/v3/rooms/{roomId}/read_markers`
pub async fn read_markers(ctx: &Ctx, req: &HttpRequest, room_id: &str) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    valid_room_id(room_id)?;
    let body: MarkersBody = req.json()?;
    for (kind, event) in [
        ("m.fully_read", body.fully_read),
        ("m.read", body.read),
        ("m.read.private", body.read_private),
    ] {
        if let Some(event_id) = event {
            check_event_id(&event_id)?;
            receipt_of(ctx, &session.user_id, room_id, kind, &event_id, None).await?;
        }
    }
    Ok(json!({}))
}
