//! The room directory: aliases and the public room list.

use serde_json::{json, Value};

use crate::api::auth::require_user;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::platform::{rooms, Ctx};
use crate::roomserver::protocol::{EventSpec, RoomRequest};
use crate::storage;

use super::membership::valid_room_id;

fn parse_alias<'a>(ctx: &Ctx, alias: &'a str) -> Result<&'a str, MatrixError> {
    let parsed =
        ruma::RoomAliasId::parse(alias).map_err(|_| MatrixError::invalid_param("Invalid room alias"))?;
    if parsed.server_name().as_str() != ctx.config.server_name {
        return Err(MatrixError::new("M_INVALID_PARAM", "Alias is not on this server"));
    }
    Ok(alias)
}

/// `GET /_matrix/client/v3/directory/room/{roomAlias}`
pub async fn get_alias(ctx: &Ctx, alias: &str) -> Result<Value, MatrixError> {
    let alias = parse_alias(ctx, alias)?;
    let room_id = storage::rooms::resolve_alias(&ctx.db()?, alias)
        .await?
        .ok_or_else(|| MatrixError::not_found("Room alias not found"))?;
    Ok(json!({ "room_id": room_id, "servers": [ctx.config.server_name] }))
}

/// `PUT /_matrix/client/v3/directory/room/{roomAlias}`
pub async fn put_alias(ctx: &Ctx, req: &HttpRequest, alias: &str) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let alias = parse_alias(ctx, alias)?;
    #[derive(serde::Deserialize)]
    struct Body {
        room_id: String,
    }
    let body: Body = req.json()?;
    valid_room_id(&body.room_id)?;
    // The room must exist and the user must be in it.
    let answer = rooms::call(
        ctx,
        &body.room_id,
        &RoomRequest::Membership {
            user_id: session.user_id.clone(),
        },
    )
    .await?;
    if answer["membership"] != "join" {
        return Err(MatrixError::forbidden("You are not joined to this room"));
    }
    if !storage::rooms::create_alias(&ctx.db()?, alias, &body.room_id, &session.user_id).await? {
        return Err(MatrixError::new("M_UNKNOWN", "Room alias already exists").with_status(409));
    }
    Ok(json!({}))
}

/// `DELETE /_matrix/client/v3/directory/room/{roomAlias}`
pub async fn delete_alias(ctx: &Ctx, req: &HttpRequest, alias: &str) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let alias = parse_alias(ctx, alias)?;
    let db = ctx.db()?;
    let row = storage::rooms::alias(&db, alias)
        .await?
        .ok_or_else(|| MatrixError::not_found("Room alias not found"))?;
    // The alias's creator, a server admin, or a member with the power to change the
    // room's canonical alias.
    if row.creator != session.user_id
        && !session.is_admin
        && !may_send_state(ctx, &row.room_id, &session.user_id, "m.room.canonical_alias").await?
    {
        return Err(MatrixError::forbidden(
            "Only the alias's creator or a room moderator may delete it",
        ));
    }
    storage::rooms::delete_alias(&db, alias).await?;
    drop_from_canonical_alias(ctx, &row.room_id, &session.user_id, alias).await;
    Ok(json!({}))
}

/// Whether `user` is joined to the room with the power to send `event_type` state.
async fn may_send_state(ctx: &Ctx, room_id: &str, user: &str, event_type: &str) -> Result<bool, MatrixError> {
    let request = RoomRequest::MaySendState {
        user_id: user.to_owned(),
        event_type: event_type.to_owned(),
    };
    match rooms::call(ctx, room_id, &request).await {
        Ok(answer) => Ok(answer["allowed"] == true),
        Err(e) if e.status() == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// A deleted alias no longer names the room: it leaves the room's canonical alias
/// event (sent as the user who deleted it). If they may not change that event, it
/// stays (a client shows an alias that no longer resolves; the room is unharmed).
async fn drop_from_canonical_alias(ctx: &Ctx, room_id: &str, user: &str, alias: &str) {
    let request = RoomRequest::StateEvent {
        user_id: user.to_owned(),
        event_type: "m.room.canonical_alias".into(),
        state_key: String::new(),
        whole_event: false,
    };
    let Ok(mut content) = rooms::call(ctx, room_id, &request).await else {
        return;
    };
    let mut changed = false;
    if content["alias"] == alias {
        if let Some(obj) = content.as_object_mut() {
            obj.remove("alias");
        }
        changed = true;
    }
    if let Some(alt) = content["alt_aliases"].as_array_mut() {
        let before = alt.len();
        alt.retain(|a| a != alias);
        changed |= alt.len() != before;
    }
    if !changed {
        return;
    }
    let send = RoomRequest::Send {
        sender: user.to_owned(),
        device_id: None,
        txn_id: None,
        event: EventSpec::state("m.room.canonical_alias", "", content),
    };
    if let Err(e) = rooms::call(ctx, room_id, &send).await {
        crate::platform::log_error(&format!("directory: canonical alias of {room_id} kept: {e}"));
    }
}

/// `GET /_matrix/client/v3/rooms/{roomId}/aliases`
pub async fn room_aliases(ctx: &Ctx, req: &HttpRequest, room_id: &str) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    valid_room_id(room_id)?;
    // Members (and anyone, for a world-readable room) may list its aliases: the room's
    // read check decides, as for its state.
    let request = RoomRequest::StateEvent {
        user_id: session.user_id,
        event_type: "m.room.create".into(),
        state_key: String::new(),
        whole_event: false,
    };
    rooms::call(ctx, room_id, &request).await?;
    let aliases = storage::rooms::aliases_of(&ctx.db()?, room_id).await?;
    Ok(json!({ "aliases": aliases }))
}

/// `GET /_matrix/client/v3/directory/list/room/{roomId}`
pub async fn get_visibility(ctx: &Ctx, room_id: &str) -> Result<Value, MatrixError> {
    valid_room_id(room_id)?;
    let public = storage::rooms::is_public(&ctx.db()?, room_id).await?;
    Ok(json!({ "visibility": if public { "public" } else { "private" } }))
}

/// `PUT /_matrix/client/v3/directory/list/room/{roomId}`
pub async fn put_visibility(ctx: &Ctx, req: &HttpRequest, room_id: &str) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    valid_room_id(room_id)?;
    let body = req.json_value()?;
    let public = match body.get("visibility").and_then(Value::as_str) {
        Some("public") => true,
        Some("private") => false,
        _ => return Err(MatrixError::bad_json("visibility must be public or private")),
    };
    let answer = rooms::call(
        ctx,
        room_id,
        &RoomRequest::Membership {
            user_id: session.user_id.clone(),
        },
    )
    .await?;
    if answer["membership"] != "join" {
        return Err(MatrixError::forbidden("You are not joined to this room"));
    }
    // Publishing a room is a moderator's decision, as changing its canonical alias is.
    if !session.is_admin && !may_send_state(ctx, room_id, &session.user_id, "m.room.canonical_alias").await? {
        return Err(MatrixError::forbidden(
            "You need the power to change the room's canonical alias to publish it",
        ));
    }
    storage::rooms::set_public(&ctx.db()?, room_id, public, ctx.now_ms()).await?;
    Ok(json!({}))
}

/// `GET /_matrix/client/v3/publicRooms` (and `POST` with a body)
pub async fn public_rooms(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let (limit, since, search) = if req.body.is_empty() {
        (
            req.query_param("limit").map(str::to_owned),
            req.query_param("since").map(str::to_owned),
            None,
        )
    } else {
        let body = req.json_value()?;
        let search = match body.get("filter").and_then(|f| f.get("generic_search_term")) {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) => Some(t.to_lowercase()),
            Some(_) => return Err(MatrixError::bad_json("generic_search_term must be a string")),
        };
        (
            body.get("limit").map(|v| v.to_string()),
            body.get("since").and_then(Value::as_str).map(str::to_owned),
            search,
        )
    };
    let limit = match limit {
        Some(l) => l
            .parse::<i64>()
            .map_err(|_| MatrixError::invalid_param("Invalid limit"))?
            .clamp(1, 100),
        None => 100,
    };
    let offset = match since {
        Some(s) => s
            .strip_prefix('o')
            .and_then(|n| n.parse::<i64>().ok())
            .ok_or_else(|| MatrixError::invalid_param("Invalid since token"))?,
        None => 0,
    };
    let (ids, total) = storage::rooms::public_rooms(&ctx.db()?, limit, offset).await?;
    // One Durable Object per room: fetch the summaries concurrently.
    let directory = RoomRequest::Summary {
        user_id: String::new(),
    };
    let summaries =
        futures_util::future::join_all(ids.iter().map(|id| rooms::call(ctx, id, &directory))).await;
    let mut chunk = Vec::new();
    for (id, summary) in ids.iter().zip(summaries) {
        if let Ok(summary) = summary {
            let mut entry = json!({
                "room_id": id,
                "num_joined_members": summary["num_joined_members"],
                "world_readable": summary["world_readable"],
                "guest_can_join": summary["guest_can_join"],
                "join_rule": summary["join_rule"],
            });
            for field in ["name", "topic", "avatar_url", "canonical_alias", "room_type"] {
                if !summary[field].is_null() {
                    entry[field] = summary[field].clone();
                }
            }
            if let Some(term) = &search {
                let matches = ["name", "topic", "canonical_alias"]
                    .iter()
                    .filter_map(|f| summary[*f].as_str())
                    .any(|v| v.to_lowercase().contains(term.as_str()));
                if !matches {
                    continue;
                }
            }
            chunk.push(entry);
        }
    }
    let mut body = json!({ "chunk": chunk, "total_room_count_estimate": total });
    if offset + (ids.len() as i64) < total {
        body["next_batch"] = json!(format!("o{}", offset + ids.len() as i64));
    }
    if offset > 0 {
        body["prev_batch"] = json!(format!("o{}", (offset - limit).max(0)));
    }
    Ok(body)
}
