//! Rooms of a space this server does not hold, for `/hierarchy`: asked of the servers
//! their `m.space.child` event names (`via`), with
//! `GET /_matrix/federation/v1/hierarchy/{roomId}`. The answer's room stands in for
//! the room's own entry, and its direct children that are not spaces are kept for the
//! rest of the walk; what the server says is inaccessible is left out.

use serde_json::{json, Value};

use crate::api::http::percent_encode;
use crate::platform::Ctx;

/// Servers asked per room, at most (each may take the federation timeout).
const MAX_SERVERS: usize = 3;

/// What another server answered about one of its rooms.
pub struct RemoteRoom {
    pub room: Value,
    /// Children's entries (no `children_state`: only rooms that are not spaces).
    pub children: Vec<Value>,
    pub inaccessible: Vec<String>,
}

/// An entry as another server gave it, checked: it names `room_id`, its fields have
/// their types, and its children are stripped `m.space.child` events.
fn checked_entry(value: &Value, room_id: &str) -> Option<Value> {
    let object = value.as_object()?;
    if object.get("room_id")?.as_str()? != room_id {
        return None;
    }
    let mut entry = json!({
        "room_id": room_id,
        "num_joined_members": object.get("num_joined_members").and_then(Value::as_u64).unwrap_or(0),
        "world_readable": object.get("world_readable").and_then(Value::as_bool).unwrap_or(false),
        "guest_can_join": object.get("guest_can_join").and_then(Value::as_bool).unwrap_or(false),
        "join_rule": object.get("join_rule").and_then(Value::as_str).unwrap_or("public"),
        "membership": null,
    });
    for field in [
        "name",
        "topic",
        "avatar_url",
        "canonical_alias",
        "room_type",
        "room_version",
        "encryption",
    ] {
        if let Some(v) = object.get(field).filter(|v| v.is_string()) {
            entry[field] = v.clone();
        }
    }
    let allowed: Vec<Value> = object
        .get("allowed_room_ids")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| r.as_str().is_some_and(|r| <&ruma::RoomId>::try_from(r).is_ok()))
        .cloned()
        .collect();
    entry["allowed_room_ids"] = Value::Array(allowed);
    let children: Vec<Value> = object
        .get("children_state")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| {
            c["type"] == "m.space.child"
                && c["state_key"]
                    .as_str()
                    .is_some_and(|k| <&ruma::RoomId>::try_from(k).is_ok())
                && c["content"]["via"].as_array().is_some_and(|v| !v.is_empty())
        })
        .map(|c| {
            json!({
                "type": "m.space.child",
                "state_key": c["state_key"],
                "sender": c["sender"],
                "content": c["content"],
                "origin_server_ts": c["origin_server_ts"].as_u64().unwrap_or(0),
            })
        })
        .collect();
    entry["children_state"] = Value::Array(children);
    Some(entry)
}

/// Asks the `via` servers (not this one) about `room_id`, in order, until one answers.
pub async fn fetch(ctx: &Ctx, room_id: &str, via: &[String], suggested_only: bool) -> Option<RemoteRoom> {
    let target = format!(
        "/_matrix/federation/v1/hierarchy/{}?suggested_only={suggested_only}",
        percent_encode(room_id)
    );
    let servers = via
        .iter()
        .filter(|s| **s != ctx.config.server_name && crate::core::server_name::ServerName::parse(s).is_some())
        .take(MAX_SERVERS);
    for server in servers {
        let answer = match crate::federation::client::request(ctx, server, "GET", &target, None).await {
            Ok(a) => a,
            Err(e) => {
                crate::platform::log_error(&format!("hierarchy of {room_id} from {server}: {e}"));
                continue;
            }
        };
        let Some(room) = checked_entry(&answer["room"], room_id) else {
            continue;
        };
        let children = answer["children"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["room_type"] != "m.space")
            .filter_map(|c| checked_entry(c, c["room_id"].as_str()?))
            .collect();
        let inaccessible = answer["inaccessible_children"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect();
        return Some(RemoteRoom {
            room,
            children,
            inaccessible,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_from_other_servers_are_checked() {
        let answer = json!({"room_id": "!r:x", "name": "R", "num_joined_members": "lots", "join_rule": "public",
                            "children_state": [
                                {"type": "m.space.child", "state_key": "!c:x", "content": {"via": ["x"]}, "origin_server_ts": 5},
                                {"type": "m.space.child", "state_key": "bad", "content": {"via": ["x"]}},
                                {"type": "m.space.child", "state_key": "!d:x", "content": {"via": []}},
                            ],
                            "allowed_room_ids": ["!a:x", 7]});
        let e = checked_entry(&answer, "!r:x").expect("entry");
        assert_eq!(e["num_joined_members"], json!(0));
        assert_eq!(e["name"], json!("R"));
        assert_eq!(e["allowed_room_ids"], json!(["!a:x"]));
        assert_eq!(e["children_state"].as_array().map(Vec::len), Some(1));
        assert!(checked_entry(&answer, "!other:x").is_none());
        assert!(checked_entry(&json!("x"), "!r:x").is_none());
    }
}
