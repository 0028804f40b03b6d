//! The room as a space's hierarchy and the room summary show it
//! (`RoomRequest::SpaceEntry`): the summary fields, encryption, the rooms a restricted
//! join rule allows, the `m.space.child` events and the user's membership. Whether the
//! user may see it is the edge's decision (`core::spaces::accessible`).

use serde_json::{json, Value};

use super::super::super::engine::membership_of;
use super::super::super::protocol::RoomFailure;
use super::Engine;

/// Answers `RoomRequest::SpaceEntry`.
pub(super) fn entry(room: &mut Engine<'_>, user_id: &str) -> Result<Value, RoomFailure> {
    let state = room.current_state_nids()?;
    let content = super::summary_contents(room, &state)?;
    let get = |t: &str, field: &str| {
        content
            .get(t)
            .and_then(|c| c.get(field))
            .filter(|v| !v.is_null())
            .cloned()
    };
    let allowed_room_ids: Vec<Value> = get("m.room.join_rules", "allow")
        .and_then(|a| a.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["type"] == "m.room_membership")
        .filter_map(|c| c.get("room_id").filter(|r| r.is_string()).cloned())
        .collect();
    let membership = if user_id.is_empty() {
        None
    } else {
        room.entry_in(&state, "m.room.member", user_id)?
            .as_ref()
            .and_then(membership_of)
    };
    let joined = room
        .members_in(&state)?
        .iter()
        .filter(|(_, p)| membership_of(p).as_deref() == Some("join"))
        .count();
    // The children: current `m.space.child` entries whose `via` names a server.
    let mut children_state = Vec::new();
    let from = ("m.space.child".to_owned(), String::new());
    let child_nids: Vec<i64> = state
        .range(from..)
        .take_while(|((t, _), _)| t == "m.space.child")
        .map(|(_, nid)| *nid)
        .collect();
    for nid in child_nids {
        let Some(pdu) = room.pdu_by_nid(nid)? else {
            continue;
        };
        let c = pdu.content();
        let has_via = c["via"]
            .as_array()
            .is_some_and(|v| !v.is_empty() && v.iter().all(Value::is_string));
        if !has_via {
            continue;
        }
        let mut stripped = pdu.to_stripped_state();
        stripped["origin_server_ts"] = json!(pdu.origin_server_ts());
        children_state.push(stripped);
    }
    Ok(json!({
        "room_id": room.info.room_id,
        "name": get("m.room.name", "name"),
        "topic": get("m.room.topic", "topic"),
        "avatar_url": get("m.room.avatar", "url"),
        "canonical_alias": get("m.room.canonical_alias", "alias"),
        "num_joined_members": joined,
        "world_readable": get("m.room.history_visibility", "history_visibility") == Some(json!("world_readable")),
        "guest_can_join": get("m.room.guest_access", "guest_access") == Some(json!("can_join")),
        "join_rule": get("m.room.join_rules", "join_rule"),
        "room_type": get("m.room.create", "type"),
        "room_version": room.info.version,
        "encryption": get("m.room.encryption", "algorithm"),
        "allowed_room_ids": allowed_room_ids,
        "membership": membership,
        "children_state": children_state,
    }))
}
