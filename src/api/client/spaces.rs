//! Spaces and room summaries: `GET /_matrix/client/v1/rooms/{roomId}/hierarchy` (the
//! space tree depth first, over the rooms this server holds) and
//! `GET /_matrix/client/v1/room_summary/{roomIdOrAlias}` (also on MSC3266's unstable
//! paths). Each room answers `RoomRequest::SpaceEntry`; who sees which room is
//! `core::spaces::accessible`. Children held elsewhere are asked of other servers
//! (`remote_spaces`).

use std::collections::{BTreeSet, HashMap};

use serde_json::{json, Value};

use crate::api::auth::{access_token, require_user};
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::core::spaces::{self, Facts, Token};
use crate::platform::{rooms, Ctx};
use crate::roomserver::protocol::RoomRequest;

/// A room's `SpaceEntry` for `user_id` (empty: no user), or `None` when this server
/// does not hold it.
pub async fn entry(ctx: &Ctx, room_id: &str, user_id: &str) -> Result<Option<Value>, MatrixError> {
    let ask = RoomRequest::SpaceEntry {
        user_id: user_id.to_owned(),
    };
    match rooms::call(ctx, room_id, &ask).await {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.status() == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `user_id` may see the room of `entry`: for a restricted room, whether they
/// are joined to one of the rooms it allows (D1's memberships).
pub async fn may_see(ctx: &Ctx, entry: &Value, user_id: &str) -> Result<bool, MatrixError> {
    let mut facts = Facts::of(entry);
    if !spaces::accessible(&facts) && spaces::is_restricted(entry) && !user_id.is_empty() {
        let db = ctx.db()?;
        for allowed in entry["allowed_room_ids"].as_array().into_iter().flatten() {
            let Some(allowed) = allowed.as_str() else {
                continue;
            };
            if crate::storage::rooms::membership(&db, allowed, user_id)
                .await?
                .as_deref()
                == Some("join")
            {
                facts.in_allowed_room = true;
                break;
            }
        }
    }
    Ok(spaces::accessible(&facts))
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

fn int_param(req: &HttpRequest, name: &str, min: u64) -> Result<Option<u64>, MatrixError> {
    match req.query_param(name) {
        None => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| *n >= min)
            .map(Some)
            .ok_or_else(|| {
                MatrixError::invalid_param(format!("{name} must be an integer of at least {min}"))
            }),
    }
}

/// `GET /_matrix/client/v1/rooms/{roomId}/hierarchy`
pub async fn hierarchy(ctx: &Ctx, req: &HttpRequest, room_id: &str) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let user = session.user_id.as_str();
    if <&ruma::RoomId>::try_from(room_id).is_err() {
        return Err(MatrixError::invalid_param("Invalid room id"));
    }
    let suggested_only = bool_param(req, "suggested_only")?;
    let limit = int_param(req, "limit", 1)?
        .unwrap_or(spaces::DEFAULT_LIMIT)
        .min(spaces::MAX_LIMIT);
    let max_depth = int_param(req, "max_depth", 0)?
        .unwrap_or(spaces::MAX_DEPTH)
        .min(spaces::MAX_DEPTH);
    let skip = match req.query_param("from") {
        None => 0,
        Some(from) => {
            let token =
                Token::parse(from).ok_or_else(|| MatrixError::invalid_param("Unknown pagination token"))?;
            if token.max_depth != max_depth || token.suggested_only != suggested_only {
                return Err(MatrixError::invalid_param(
                    "suggested_only and max_depth cannot change on paginated requests",
                ));
            }
            token.skip
        }
    };
    let forbidden = || MatrixError::forbidden("You are not allowed to view this room");
    let root = entry(ctx, room_id, user).await?.ok_or_else(forbidden)?;
    if !may_see(ctx, &root, user).await? {
        return Err(forbidden());
    }
    let mut known: HashMap<String, Option<Value>> = HashMap::new();
    known.insert(room_id.to_owned(), Some(root));
    let mut stack: Vec<(String, u64)> = vec![(room_id.to_owned(), 0)];
    let mut seen = BTreeSet::new();
    let mut counted = 0u64;
    let mut rooms_out = Vec::new();
    let mut more = false;
    while let Some((id, depth)) = stack.pop() {
        if seen.len() >= spaces::MAX_VISITED {
            break;
        }
        if !seen.insert(id.clone()) {
            continue;
        }
        let Some(Some(room)) = known.remove(&id) else {
            continue;
        };
        if id != room_id && !may_see(ctx, &room, user).await? {
            continue;
        }
        counted += 1;
        if counted > skip + limit {
            more = true;
            break;
        }
        let children = spaces::ordered_children(
            room["children_state"].as_array().map_or(&[][..], Vec::as_slice),
            suggested_only,
        );
        if depth < max_depth {
            // The children's entries at once, one request per room.
            let ids: Vec<String> = children
                .iter()
                .filter_map(|c| c["state_key"].as_str())
                .filter(|c| {
                    !seen.contains(*c) && !known.contains_key(*c) && <&ruma::RoomId>::try_from(*c).is_ok()
                })
                .map(str::to_owned)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let answers = futures_util::future::join_all(ids.iter().map(|c| entry(ctx, c, user))).await;
            let mut elsewhere = Vec::new();
            for (c, answer) in ids.into_iter().zip(answers) {
                match answer? {
                    Some(e) => {
                        known.insert(c, Some(e));
                    }
                    None => elsewhere.push(c),
                }
            }
            remote_children(ctx, &children, elsewhere, suggested_only, &mut known).await;
            for child in children.iter().rev() {
                if let Some(c) = child["state_key"].as_str() {
                    if !seen.contains(c) {
                        stack.push((c.to_owned(), depth + 1));
                    }
                }
            }
        }
        if counted > skip {
            rooms_out.push(spaces::chunk_entry(&room, children));
        }
    }
    let mut body = json!({ "rooms": rooms_out });
    if more {
        let token = Token {
            skip: skip + limit,
            max_depth,
            suggested_only,
        };
        body["next_batch"] = json!(token.encode());
    }
    Ok(body)
}

/// Children this server does not hold, asked of the servers their child events name
/// (`remote_spaces`); what those answer about their own children is kept too.
async fn remote_children(
    ctx: &Ctx,
    children: &[Value],
    ids: Vec<String>,
    suggested_only: bool,
    known: &mut HashMap<String, Option<Value>>,
) {
    let via_of = |id: &str| -> Vec<String> {
        children
            .iter()
            .find(|c| c["state_key"] == id)
            .and_then(|c| c["content"]["via"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let vias: Vec<Vec<String>> = ids.iter().map(|id| via_of(id)).collect();
    let answers = futures_util::future::join_all(
        ids.iter()
            .zip(&vias)
            .map(|(id, via)| super::remote_spaces::fetch(ctx, id, via, suggested_only)),
    )
    .await;
    for (id, answer) in ids.into_iter().zip(answers) {
        let Some(remote) = answer else {
            known.insert(id, None);
            continue;
        };
        for child in remote.children {
            if let Some(child_id) = child["room_id"].as_str() {
                known
                    .entry(child_id.to_owned())
                    .or_insert_with(|| Some(child.clone()));
            }
        }
        for hidden in remote.inaccessible {
            known.entry(hidden).or_insert(None);
        }
        known.insert(id, Some(remote.room));
    }
}

/// `GET /_matrix/client/v1/room_summary/{roomIdOrAlias}` (and MSC3266's unstable
/// paths): without an access token, only rooms anyone may see.
pub async fn summary(ctx: &Ctx, req: &HttpRequest, id_or_alias: &str) -> Result<Value, MatrixError> {
    let user_id = match access_token(req) {
        Some(_) => require_user(ctx, req).await?.user_id,
        None => String::new(),
    };
    let not_found = || MatrixError::not_found("Room not found or not accessible");
    let room_id = if id_or_alias.starts_with('#') {
        if <&ruma::RoomAliasId>::try_from(id_or_alias).is_err() {
            return Err(MatrixError::invalid_param("Invalid room alias"));
        }
        crate::storage::rooms::resolve_alias(&ctx.db()?, id_or_alias)
            .await?
            .ok_or_else(not_found)?
    } else if <&ruma::RoomId>::try_from(id_or_alias).is_ok() {
        id_or_alias.to_owned()
    } else {
        return Err(MatrixError::invalid_param("Invalid room id or alias"));
    };
    let room = match entry(ctx, &room_id, &user_id).await? {
        Some(room) => room,
        // A room held elsewhere: asked of the servers the client names.
        None => {
            let via: Vec<String> = req.query_params("via").map(str::to_owned).collect();
            super::remote_spaces::fetch(ctx, &room_id, &via, false)
                .await
                .ok_or_else(not_found)?
                .room
        }
    };
    if !may_see(ctx, &room, &user_id).await? {
        return Err(not_found());
    }
    let mut out = spaces::chunk_entry(&room, Vec::new());
    if let Some(object) = out.as_object_mut() {
        object.remove("children_state");
        if !user_id.is_empty() {
            if let Some(m) = room["membership"].as_str() {
                object.insert("membership".into(), json!(m));
            }
        }
    }
    Ok(out)
}
