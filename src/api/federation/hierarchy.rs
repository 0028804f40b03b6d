//! `GET /_matrix/federation/v1/hierarchy/{roomId}`: a space held here and its direct
//! children, for another server's `/hierarchy`. No pagination: every child this
//! server holds and the asking server could peek at or join is answered, the ones it
//! could not are listed as `inaccessible_children`, rooms not held here are left out.

use serde_json::{json, Value};

use crate::api::client::spaces::entry;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::core::spaces::{self, Facts};
use crate::platform::{rooms, Ctx};
use crate::roomserver::protocol::RoomRequest;

/// Whether `origin` may see a room: anyone could (public, knockable, world-readable),
/// it is restricted (the asking server decides with `allowed_room_ids`), or the
/// server has a member joined. The room's server ACL must let it in.
async fn server_may_see(ctx: &Ctx, room: &Value, origin: &str) -> Result<bool, MatrixError> {
    let Some(room_id) = room["room_id"].as_str() else {
        return Ok(false);
    };
    let acl = rooms::call(
        ctx,
        room_id,
        &RoomRequest::ServerAllowed {
            server_name: origin.to_owned(),
        },
    )
    .await?;
    if acl["allowed"] != true {
        return Ok(false);
    }
    if spaces::accessible(&Facts::of(room)) || spaces::is_restricted(room) {
        return Ok(true);
    }
    let servers =
        crate::storage::rooms::servers_in_room(&ctx.db()?, room_id, &ctx.config.server_name).await?;
    Ok(servers.iter().any(|s| s == origin))
}

/// The summary fields of a child (no `children_state`).
fn child_entry(room: &Value) -> Value {
    let mut out = spaces::chunk_entry(room, Vec::new());
    if let Some(object) = out.as_object_mut() {
        object.remove("children_state");
    }
    out
}

/// `GET /_matrix/federation/v1/hierarchy/{roomId}`
pub async fn hierarchy(
    ctx: &Ctx,
    req: &HttpRequest,
    origin: &str,
    room_id: &str,
) -> Result<Value, MatrixError> {
    let not_found = || MatrixError::not_found("Room does not exist or is not accessible");
    if <&ruma::RoomId>::try_from(room_id).is_err() {
        return Err(MatrixError::invalid_param("Invalid room id"));
    }
    let suggested_only = match req.query_param("suggested_only") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(MatrixError::invalid_param("suggested_only must be true or false")),
    };
    let root = entry(ctx, room_id, "").await?.ok_or_else(not_found)?;
    if !server_may_see(ctx, &root, origin).await? {
        return Err(not_found());
    }
    let children = spaces::ordered_children(
        root["children_state"].as_array().map_or(&[][..], Vec::as_slice),
        suggested_only,
    );
    let ids: Vec<String> = children
        .iter()
        .filter_map(|c| c["state_key"].as_str())
        .filter(|c| <&ruma::RoomId>::try_from(*c).is_ok() && *c != room_id)
        .map(str::to_owned)
        .collect();
    let answers = futures_util::future::join_all(ids.iter().map(|c| entry(ctx, c, ""))).await;
    let mut found = Vec::new();
    let mut inaccessible = Vec::new();
    for (id, answer) in ids.into_iter().zip(answers) {
        let Some(child) = answer? else {
            continue;
        };
        if server_may_see(ctx, &child, origin).await? {
            found.push(child_entry(&child));
        } else {
            inaccessible.push(id);
        }
    }
    Ok(json!({
        "room": spaces::chunk_entry(&root, children),
        "children": found,
        "inaccessible_children": inaccessible,
    }))
}
