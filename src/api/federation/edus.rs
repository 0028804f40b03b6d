//! Received EDUs: typing and read receipts into their rooms, to-device messages into
//! the recipients' inboxes, presence and device-list / signing-key updates to the local
//! users who share a room with the user (`room_memberships` holds other servers'
//! members too). Each is about the sending server's own users only, and one that
//! cannot be applied is dropped (EDUs carry no per-item answer).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::platform::{log_error, rooms, users, Ctx};
use crate::roomserver::protocol::RoomRequest;
use crate::storage;
use crate::sync::protocol::{Note, NoteKind, UserRequest};

/// Most receipts, typing changes or recipients one EDU may carry that are applied.
const MAX_ITEMS: usize = 100;

fn server_of(user_id: &str) -> Option<&str> {
    let user = <&ruma::UserId>::try_from(user_id).ok()?;
    Some(user.server_name().as_str())
}

fn from_origin(user_id: &str, origin: &str) -> bool {
    server_of(user_id) == Some(origin)
}

/// Whether the room is one this server holds and its ACL lets `origin` in.
async fn room_accepts(ctx: &Ctx, room_id: &str, origin: &str) -> bool {
    if ruma::RoomId::parse(room_id).is_err() {
        return false;
    }
    if !super::pdus::known_room(ctx, room_id).await {
        return false;
    }
    let acl = RoomRequest::ServerAllowed {
        server_name: origin.to_owned(),
    };
    rooms::call(ctx, room_id, &acl)
        .await
        .is_ok_and(|answer| answer["allowed"] == Value::Bool(true))
}

/// Applies each EDU of a transaction from `origin`, in order.
pub async fn apply(ctx: &Ctx, origin: &str, edus: &[Value]) {
    for edu in edus {
        let content = &edu["content"];
        match edu["edu_type"].as_str().unwrap_or_default() {
            "m.typing" => typing(ctx, origin, content).await,
            "m.receipt" => receipts(ctx, origin, content).await,
            "m.direct_to_device" => to_device(ctx, origin, content).await,
            "m.presence" => presence(ctx, origin, content).await,
            "m.device_list_update" | "m.signing_key_update" => device_list(ctx, origin, content).await,
            _ => {}
        }
    }
}

async fn typing(ctx: &Ctx, origin: &str, content: &Value) {
    let (Some(room_id), Some(user_id), Some(typing)) = (
        content["room_id"].as_str(),
        content["user_id"].as_str(),
        content["typing"].as_bool(),
    ) else {
        return;
    };
    if !from_origin(user_id, origin) || !room_accepts(ctx, room_id, origin).await {
        return;
    }
    let timeout_ms = content["timeout"].as_u64().unwrap_or(30_000);
    let request = RoomRequest::Typing {
        user_id: user_id.to_owned(),
        typing,
        timeout_ms,
    };
    if let Err(e) = rooms::call(ctx, room_id, &request).await {
        log_error(&format!("typing of {user_id} in {room_id}: {e}"));
    }
}

async fn receipts(ctx: &Ctx, origin: &str, content: &Value) {
    let Some(by_room) = content.as_object() else {
        return;
    };
    let mut applied = 0;
    for (room_id, by_type) in by_room {
        if !room_accepts(ctx, room_id, origin).await {
            continue;
        }
        let Some(read) = by_type["m.read"].as_object() else {
            continue;
        };
        for (user_id, receipt) in read {
            if applied >= MAX_ITEMS || !from_origin(user_id, origin) {
                continue;
            }
            let Some(event_id) = receipt["event_ids"]
                .as_array()
                .and_then(|ids| ids.first())
                .and_then(Value::as_str)
            else {
                continue;
            };
            applied += 1;
            let request = RoomRequest::Receipt {
                user_id: user_id.clone(),
                receipt_type: "m.read".into(),
                event_id: event_id.to_owned(),
                thread_id: receipt["data"]["thread_id"].as_str().map(str::to_owned),
            };
            if let Err(e) = rooms::call(ctx, room_id, &request).await {
                log_error(&format!("receipt of {user_id} in {room_id}: {e}"));
            }
        }
    }
}

async fn to_device(ctx: &Ctx, origin: &str, content: &Value) {
    let (Some(sender), Some(event_type), Some(messages)) = (
        content["sender"].as_str(),
        content["type"].as_str(),
        content["messages"].as_object(),
    ) else {
        return;
    };
    if !from_origin(sender, origin) || event_type.is_empty() || event_type.len() > 255 {
        return;
    }
    let message_id = content["message_id"].as_str().unwrap_or_default();
    let server = &ctx.config.server_name;
    for (user_id, by_device) in messages.iter().take(MAX_ITEMS) {
        if server_of(user_id) != Some(server.as_str()) {
            continue;
        }
        let Some(by_device) = by_device.as_object() else {
            continue;
        };
        let mut out = BTreeMap::new();
        for (device, message) in by_device {
            if !message.is_object() {
                continue;
            }
            if device == "*" {
                let Ok(db) = ctx.db() else { continue };
                for d in storage::devices::list(&db, user_id).await.unwrap_or_default() {
                    out.insert(d.device_id, message.clone());
                }
            } else {
                out.insert(device.clone(), message.clone());
            }
        }
        if out.is_empty() {
            continue;
        }
        let request = UserRequest::ToDevice {
            sender: sender.to_owned(),
            sender_device: String::new(),
            txn_id: format!("{origin} {message_id}"),
            event_type: event_type.to_owned(),
            messages: out,
        };
        if let Err(e) = users::call(&ctx.env, user_id, &request).await {
            log_error(&format!("to-device for {user_id}: {e}"));
        }
    }
}

/// `m.presence`: each pushed presence of the origin's users, to the local users who
/// share a room with them.
async fn presence(ctx: &Ctx, origin: &str, content: &Value) {
    let Some(push) = content["push"].as_array() else {
        return;
    };
    let Ok(db) = ctx.db() else {
        return;
    };
    let now = ctx.now_ms();
    let mut notes: BTreeMap<String, Vec<Note>> = BTreeMap::new();
    for entry in push.iter().take(MAX_ITEMS) {
        let (Some(user_id), Some(state)) = (entry["user_id"].as_str(), entry["presence"].as_str()) else {
            continue;
        };
        if !from_origin(user_id, origin) || !matches!(state, "online" | "unavailable" | "offline") {
            continue;
        }
        let ago = entry["last_active_ago"].as_u64().unwrap_or(0);
        let mut presence = serde_json::json!({
            "presence": state,
            "last_active": now.saturating_sub(ago),
            "currently_active": entry["currently_active"].as_bool().unwrap_or(false),
        });
        if let Some(msg) = entry["status_msg"].as_str() {
            presence["status_msg"] = Value::from(msg);
        }
        let mates = match storage::rooms::room_mates(&db, &[user_id]).await {
            Ok(mates) => mates,
            Err(e) => {
                log_error(&format!("presence of {user_id}: room mates: {e}"));
                continue;
            }
        };
        let note = Note {
            room_id: user_id.to_owned(),
            kind: NoteKind::Presence,
            pos: i64::try_from(now).unwrap_or(i64::MAX),
            membership: None,
            content: Some(presence),
        };
        for mate in mates {
            notes.entry(mate).or_default().push(note.clone());
        }
    }
    if !notes.is_empty() && users::notify_all(&ctx.env, notes).await.is_err() {
        log_error("presence notes failed for some users");
    }
}

/// `m.device_list_update` and `m.signing_key_update`: the user's devices or
/// cross-signing keys changed; the local users sharing a room with them hear of it in
/// `device_lists.changed` (and query the keys again).
async fn device_list(ctx: &Ctx, origin: &str, content: &Value) {
    let Some(user_id) = content["user_id"].as_str() else {
        return;
    };
    if !from_origin(user_id, origin) {
        return;
    }
    let Ok(db) = ctx.db() else {
        return;
    };
    let statements = vec![
        storage::device_lists::changed(user_id),
        storage::remote_devices::changed(user_id, ctx.now_ms()),
    ];
    if let Err(e) = db.batch(statements).await {
        log_error(&format!("device list change of {user_id}: {e}"));
        return;
    }
    crate::api::client::keys::wake_device_list_observers(ctx, &[user_id]).await;
}
