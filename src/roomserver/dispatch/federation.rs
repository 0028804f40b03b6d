//! Answers to other servers' questions (`FederationQuery`), in the shapes of the
//! federation API, events as their PDUs.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::super::engine::{membership_of, Engine, RoomError};
use super::super::protocol::{FederationQuery, RoomFailure};
use super::super::store::EventRow;
use super::fail;

/// Most events one answer carries (backfill, missing events).
const MAX_EVENTS: u32 = 1000;

fn unknown_event() -> RoomFailure {
    fail(404, "M_NOT_FOUND", "Unknown event")
}

/// PDU texts as JSON values (each was stored as valid JSON).
fn pdus(texts: Vec<String>) -> Result<Vec<Value>, RoomFailure> {
    texts
        .iter()
        .map(|t| serde_json::from_str(t).map_err(|e| RoomFailure::from(RoomError::Corrupt(e.to_string()))))
        .collect()
}

/// Whether `origin` may ask this room anything: the server ACL allows it, and it has
/// a user joined now or the room is world-readable.
fn may_ask(room: &mut Engine<'_>, origin: &str) -> Result<(), RoomFailure> {
    use ruma::events::StateEventType;
    let acl = room.current_entry(&StateEventType::from("m.room.server_acl"), "")?;
    if !crate::core::acl::allows(acl.map(|p| p.content()).as_ref(), origin) {
        return Err(fail(403, "M_FORBIDDEN", "Server is denied by the room's ACL"));
    }
    if room.current_state_nids()?.is_empty() {
        return Err(fail(404, "M_NOT_FOUND", "Unknown room"));
    }
    if !room.local_members(origin)?.is_empty() {
        return Ok(());
    }
    let visibility = room.current_entry(&StateEventType::RoomHistoryVisibility, "")?;
    let world_readable = visibility
        .map(|p| p.content()["history_visibility"] == "world_readable")
        .unwrap_or(false);
    if world_readable {
        Ok(())
    } else {
        Err(fail(403, "M_FORBIDDEN", "Server is not in the room"))
    }
}

/// Whether `origin` may see an event, per the history visibility rules for servers:
/// with `shared` or `world_readable` history, yes; with `invited` or `joined`, only
/// if one of its users was joined (or, for `invited`, invited) at the event. Answers
/// per state group are remembered in `memo`.
fn server_may_see(
    room: &mut Engine<'_>,
    row: &EventRow,
    origin: &str,
    memo: &mut HashMap<i64, bool>,
) -> Result<bool, RoomFailure> {
    let Some(group) = row.state_after.or(row.state_before) else {
        // An event without state here (an outlier): nothing says no.
        return Ok(true);
    };
    if let Some(seen) = memo.get(&group) {
        return Ok(*seen);
    }
    let visibility = match row.state_before {
        Some(g) => room
            .state_event_in_group(g, "m.room.history_visibility", "")?
            .and_then(|p| p.content()["history_visibility"].as_str().map(str::to_owned)),
        None => None,
    }
    .unwrap_or_else(|| "shared".to_owned());
    let seen = if visibility == "shared" || visibility == "world_readable" {
        true
    } else {
        let state = room.group_nids(group)?;
        let suffix = format!(":{origin}");
        room.members_in(&state)?.iter().any(|(user, pdu)| {
            let on_origin = user.ends_with(&suffix) && !user[..user.len() - suffix.len()].contains(':');
            let membership = membership_of(pdu);
            on_origin
                && (membership.as_deref() == Some("join")
                    || (visibility == "invited" && membership.as_deref() == Some("invite")))
        })
    };
    memo.insert(group, seen);
    Ok(seen)
}

/// The events' PDUs as `origin` may have them: those it may not see, redacted.
fn visible_pdus(
    room: &mut Engine<'_>,
    rows: Vec<EventRow>,
    origin: Option<&str>,
) -> Result<Vec<Value>, RoomFailure> {
    let mut memo = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let visible = match origin {
            Some(origin) => server_may_see(room, &row, origin, &mut memo)?,
            None => true,
        };
        let value: Value = serde_json::from_str(&row.json)
            .map_err(|e| RoomFailure::from(RoomError::Corrupt(e.to_string())))?;
        if visible {
            out.push(value);
            continue;
        }
        let object: ruma::CanonicalJsonObject = serde_json::from_value(value)
            .map_err(|e| RoomFailure::from(RoomError::Corrupt(e.to_string())))?;
        let redacted = crate::core::event_hash::redact(object, &room.rules().redaction)
            .map_err(|e| RoomFailure::from(RoomError::Corrupt(e.to_string())))?;
        out.push(
            serde_json::to_value(redacted)
                .map_err(|e| RoomFailure::from(RoomError::Corrupt(e.to_string())))?,
        );
    }
    Ok(out)
}

pub(super) fn answer(
    room: &mut Engine<'_>,
    origin: Option<&str>,
    query: FederationQuery,
) -> Result<Value, RoomFailure> {
    if let Some(origin) = origin {
        may_ask(room, origin)?;
    }
    match query {
        FederationQuery::StateIds { event_id } => {
            let state = room.state_ids_before(&event_id)?.ok_or_else(unknown_event)?;
            let chain = room.auth_chain(&state)?;
            Ok(json!({ "pdu_ids": state, "auth_chain_ids": chain }))
        }
        FederationQuery::State { event_id } => {
            let state = room.state_ids_before(&event_id)?.ok_or_else(unknown_event)?;
            let chain = room.auth_chain(&state)?;
            Ok(json!({
                "pdus": pdus(room.federation_pdus(&state)?)?,
                "auth_chain": pdus(room.federation_pdus(&chain)?)?,
            }))
        }
        FederationQuery::EventAuth { event_id } => {
            if room.federation_pdu(&event_id)?.is_none() {
                return Err(unknown_event());
            }
            let chain = room.auth_chain(&[event_id])?;
            Ok(json!({ "auth_chain": pdus(room.federation_pdus(&chain)?)? }))
        }
        FederationQuery::Backfill { from, limit } => {
            let rows = room.backfill_rows(&from, limit.min(MAX_EVENTS) as usize)?;
            Ok(json!({ "pdus": visible_pdus(room, rows, origin)? }))
        }
        FederationQuery::MissingEvents {
            earliest,
            latest,
            limit,
            min_depth,
        } => {
            let rows = room.missing_rows(&earliest, &latest, limit.min(MAX_EVENTS) as usize, min_depth)?;
            Ok(json!({ "events": visible_pdus(room, rows, origin)? }))
        }
        FederationQuery::Events { mut event_ids } => {
            event_ids.truncate(MAX_EVENTS as usize);
            Ok(json!({ "pdus": pdus(room.federation_pdus(&event_ids)?)? }))
        }
        FederationQuery::Event { event_id } => {
            let (row, _) = room
                .pdu(&event_id)?
                .filter(|(r, _)| r.status != super::super::store::Status::Rejected as i64)
                .ok_or_else(unknown_event)?;
            Ok(json!({ "pdu": visible_pdus(room, vec![row], origin)?.pop() }))
        }
    }
}

/// The membership event (`join` or `leave`) another server's user may send now, as a
/// template: built on the current state and extremities, checked against the auth
/// rules, without hashes or signatures (the user's server adds them).
pub(super) fn make_membership(
    room: &mut Engine<'_>,
    host: &super::Host<'_>,
    user_id: &str,
    membership: &str,
    authorised_via: Option<String>,
) -> Result<Value, RoomFailure> {
    let user =
        <&ruma::UserId>::try_from(user_id).map_err(|_| fail(400, "M_INVALID_PARAM", "Invalid user id"))?;
    if !matches!(membership, "join" | "leave" | "knock") {
        return Err(fail(
            400,
            "M_INVALID_PARAM",
            "Only join, leave and knock templates are made",
        ));
    }
    if room.current_state_nids()?.is_empty() {
        return Err(fail(404, "M_NOT_FOUND", "Unknown room"));
    }
    let mut content = json!({ "membership": membership });
    if let Some(via) = authorised_via.filter(|_| membership == "join") {
        content["join_authorised_via_users_server"] = json!(via);
    }
    let new = crate::core::builder::NewEvent::state("m.room.member", user_id, content);
    let pdu = room.build_allowed(user, new, host.signer())?;
    let mut event = pdu.to_federation_value();
    if let Some(object) = event.as_object_mut() {
        object.remove("hashes");
        object.remove("signatures");
        object.remove("unsigned");
    }
    Ok(json!({ "room_version": room.version().to_string(), "event": event }))
}

/// Answers `RoomRequest::JoinAuthorisation`: whether the user's join needs a
/// condition of the restricted join rules, which rooms satisfy one, and the local
/// member who may vouch for the join (the most powerful one who may invite).
pub(super) fn join_authorisation(
    room: &mut Engine<'_>,
    host: &super::Host<'_>,
    user_id: &str,
) -> Result<Value, RoomFailure> {
    use crate::core::restricted;
    use ruma::events::StateEventType;
    if room.current_state_nids()?.is_empty() {
        return Err(fail(404, "M_NOT_FOUND", "Unknown room"));
    }
    let version = room.version().to_string();
    let join_rules = room
        .current_entry(&StateEventType::RoomJoinRules, "")?
        .map(|p| p.content());
    let allowed = restricted::allowed_rooms(&room.rules().authorization, join_rules.as_ref());
    let member = room.current_entry(&StateEventType::RoomMember, user_id)?;
    let membership = member.as_ref().and_then(membership_of);
    let Some(allow) = allowed.filter(|_| restricted::needs_condition(membership.as_deref())) else {
        return Ok(json!({ "needed": false, "room_version": version }));
    };
    let locals = room.local_members(host.server_name)?;
    let (mut candidates, mut invite_level) = (Vec::new(), 0);
    room.power_check(|p| {
        invite_level = p.action_level("invite");
        candidates = locals.iter().map(|u| (u.clone(), p.user_level(u))).collect();
        true
    })?;
    Ok(json!({
        "needed": true,
        "room_version": version,
        "allow": allow,
        "authoriser": restricted::authoriser(&candidates, invite_level),
    }))
}

/// The state an invitee is shown before joining (the spec's stripped state).
const INVITE_STATE: [&str; 6] = [
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
];

/// The room's stripped state (what an invitee or a knocking user is shown), with
/// `member`'s own membership event.
pub(super) fn stripped_state(room: &mut Engine<'_>, member: &str) -> Result<Vec<Value>, RoomFailure> {
    use ruma::events::StateEventType;
    let mut stripped = Vec::new();
    for kind in INVITE_STATE {
        if let Some(p) = room.current_entry(&StateEventType::from(kind), "")? {
            stripped
                .push(json!({"type": kind, "state_key": "", "content": p.content(), "sender": p.sender()}));
        }
    }
    if let Some(p) = room.current_entry(&StateEventType::RoomMember, member)? {
        stripped.push(json!({"type": "m.room.member", "state_key": member, "content": p.content(), "sender": p.sender()}));
    }
    Ok(stripped)
}

/// An invite of another server's user by a local one: built, signed and checked, not
/// stored; with the room's stripped state for the invitee.
pub(super) fn build_invite(
    room: &mut Engine<'_>,
    host: &super::Host<'_>,
    sender: &str,
    spec: super::super::protocol::EventSpec,
) -> Result<Value, RoomFailure> {
    let user =
        <&ruma::UserId>::try_from(sender).map_err(|_| fail(400, "M_INVALID_PARAM", "Invalid user id"))?;
    if spec.event_type != "m.room.member" || spec.content["membership"] != "invite" {
        return Err(fail(400, "M_INVALID_PARAM", "Not an invite"));
    }
    let new = crate::core::builder::NewEvent {
        event_type: spec.event_type,
        state_key: spec.state_key,
        content: spec.content,
        redacts: None,
    };
    let pdu = room.build_allowed(user, new, host.signer())?;
    let stripped = stripped_state(room, sender)?;
    Ok(json!({
        "event": pdu.to_federation_value(),
        "event_id": pdu.event_id(),
        "room_version": room.version().to_string(),
        "invite_room_state": stripped,
    }))
}
